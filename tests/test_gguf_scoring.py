"""GGUF files scored by llama.cpp itself (eval/llama_cpp_lm.py, ``eval run --backend llama-cpp``), held to
lm-eval's hf backend (HFLM) on the merged model: same tokens, close log-likelihoods, same answers.

Real items: the first ``LIMIT`` of PubMedQA and MedQA (4 options) prepared from data/published/. The GGUFs are
conftest.py's ``exports`` (the default model, SmolLM2-135M-Instruct, through llama.cpp's own converter); nothing
is mocked. Like tests/test_gguf.py these need llama-cpp-python (``make test`` builds it first): without it the
module is skipped, saying so. Every test that needs llama.cpp's tools (through ``exports``) is slow (conftest.py),
as are the ``eval run`` subprocesses, as in tests/test_eval_run.py.
"""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, read_jsonl, refused_in_one_line
from test_eval_run import eval_run

from common.errors import InputError
from eval.benchmarks import TASKS
from eval.prepare import prepare
from inference.gguf_file import GGUFFile
from inference.gguf_model import import_llama_cpp


def llama_cpp_missing() -> str | None:
    """Why llama-cpp-python cannot be imported here (``make test`` builds it first), or None."""
    try:
        import_llama_cpp()
    except InputError as err:
        return str(err)
    return None


MISSING = llama_cpp_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

LIMIT = 20  # items per task: 20 PubMedQA (3 choices) + 20 MedQA (4 choices) = 140 requests
PUBLISHED = ROOT / "data" / "published" / "eval"
INPUTS = {"pubmedqa": [PUBLISHED / "pubmedqa" / "ori_pqal.json.xz",
                       ROOT / "eval" / "benchmarks" / "data" / "pubmedqa_test_ground_truth.json"],
          "medqa_4options": [PUBLISHED / "medqa_4options" / "phrases_no_exclude_test.jsonl.xz"]}
# ours: llama.cpp on the F16 file against HFLM on the fp32 merged model, per request (log-likelihood in nats).
# F16 rounds every weight (and llama.cpp rounds activations to F16 in its F16 matrix products): measured
# 2026-12-06 on these 140 requests: mean |difference| 0.0045, largest 0.0151; bounds about 3 times those.
MEAN_DIFFERENCE = 0.015
MAX_DIFFERENCE = 0.05
MARGIN = 2 * MAX_DIFFERENCE  # where HFLM's best choice leads its runner-up by more (39 of the 40 items on
# 2026-12-06), no two requests' errors can swap the order: F16 must choose the same
# A score through the cache equals the request's own from an empty cache exactly: batches of two or more tokens
# gave identical logits however a sequence was split (2026-12-06, CPU); a token decoded alone differs by up to
# 0.012 nats (eval/llama_cpp_scorer.py keeps it out), a leaked one by more.


def instance(context: str, continuation: str):
    from lm_eval.api.instance import Instance

    return Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)


@pytest.fixture(scope="module")
def benchmarks(tmp_path_factory) -> Path:
    """PubMedQA and MedQA prepared whole from the published files (decompressed first)."""
    raw, out = tmp_path_factory.mktemp("raw"), tmp_path_factory.mktemp("benchmarks")
    for name, inputs in INPUTS.items():
        files = []
        for path in inputs:
            files.append(raw / path.name.removesuffix(".xz"))
            files[-1].write_bytes(lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes())
        prepare(TASKS[name], [str(p) for p in files], out)
    return out


@pytest.fixture(scope="module")
def llama_lm(exports):
    from eval.llama_cpp_lm import LlamaCppLM

    return LlamaCppLM(pretrained=str(exports["default"]["F16"]))


@pytest.fixture(scope="module")
def hf_lm(default_model):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(default_model), dtype="float32", device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def both_runs(exports, default_model, benchmarks, tmp_path_factory) -> dict[str, Path]:
    """``eval run`` on the same items: HFLM on the merged fp32 model, llama.cpp on the F16 GGUF."""
    tmp = tmp_path_factory.mktemp("scored")
    common = ["--benchmarks", str(benchmarks), "--tasks", *INPUTS, "--limit", str(LIMIT)]
    eval_run("--model", str(default_model), "--dtype", "float32", "--out", str(tmp / "hf"), *common, cwd=tmp)
    eval_run("--model", str(exports["default"]["F16"]), "--out", str(tmp / "llama"), *common, cwd=tmp)
    return {"hf": tmp / "hf", "llama": tmp / "llama"}


def samples(out: Path, task: str) -> list[dict]:
    return sorted(read_jsonl(out / "samples" / f"{task}.jsonl"), key=lambda s: s["doc_id"])


def logliks(sample: dict) -> list[float]:
    return [float(resp[0]) for resp in sample["filtered_resps"]]


@pytest.mark.slow
def test_f16_log_likelihoods_are_hflms_on_the_merged_model_within_tolerance(both_runs):
    differences, checked, near = [], 0, 0
    for task in INPUTS:
        hf, llama = samples(both_runs["hf"], task), samples(both_runs["llama"], task)
        assert [s["doc_id"] for s in hf] == [s["doc_id"] for s in llama] and len(hf) == LIMIT
        for ours, theirs in zip(llama, hf, strict=True):
            assert ours["arguments"] == theirs["arguments"]  # the same (context, continuation) requests
            a, b = logliks(ours), logliks(theirs)
            differences += [abs(x - y) for x, y in zip(a, b, strict=True)]
            top, second = sorted(b, reverse=True)[:2]
            if top - second > MARGIN:
                checked += 1
                assert a.index(max(a)) == b.index(max(b)), (task, ours["doc_id"], a, b)
            else:
                near += 1
    mean = sum(differences) / len(differences)
    print(f"{len(differences)} requests: mean |difference| {mean:.5f}, largest {max(differences):.5f}; "
          f"choice checked on {checked} items, {near} within the margin")
    assert mean <= MEAN_DIFFERENCE and max(differences) <= MAX_DIFFERENCE
    assert checked >= LIMIT  # the margin leaves most items checked


@pytest.mark.slow
def test_llama_cpp_scores_the_token_ids_the_hf_tokenizer_gives(both_runs, llama_lm, hf_lm):
    pairs = [tuple(s["arguments"][0]) for task in INPUTS for s in samples(both_runs["llama"], task)]
    pairs = list(dict.fromkeys(pairs))  # one per (context, continuation)
    for context, continuation in pairs:
        assert llama_lm._encode_pair(context, continuation) == hf_lm._encode_pair(context, continuation)
    chat = llama_lm.apply_chat_template([{"role": "user", "content": pairs[0][0]}])
    assert chat == hf_lm.apply_chat_template([{"role": "user", "content": pairs[0][0]}])
    assert llama_lm.tok_encode(chat) == hf_lm.tok_encode(chat)  # a context opening with the prefix token's text
    assert llama_lm.prefix_token_id == hf_lm.prefix_token_id and llama_lm.eot_token_id == hf_lm.eot_token_id
    requests = [instance(c, x) for c, x in pairs[:8]] + [instance("", "Magnetic resonance imaging")]
    by_strings = llama_lm.loglikelihood(requests)
    encoded = [((r.args), *llama_lm._encode_pair(*r.args)) for r in requests[:8]]
    assert llama_lm._loglikelihood_tokens(encoded) == by_strings[:8]  # what loglikelihood scores are these ids
    hf_empty = hf_lm.loglikelihood(requests[-1:])[0][0]
    assert abs(by_strings[-1][0] - hf_empty) <= MAX_DIFFERENCE  # an empty context: the prefix token


def test_multi_token_continuations_score_as_hflm_scores_them(llama_lm, hf_lm):
    requests = [instance("Question: What does MRI stand for?\nAnswer:", continuation)
                for continuation in (" Magnetic resonance imaging", " Medical radio isotope", " Magnetic")]
    ours, theirs = llama_lm.loglikelihood(requests), hf_lm.loglikelihood(requests)
    for (a, _), (b, _) in zip(ours, theirs, strict=True):
        assert abs(a - b) <= MAX_DIFFERENCE, (a, b)
    # is_greedy (an argmax at every continuation token) is not compared: a near tie flips it between F16 and
    # fp32 on another CPU's kernels; the log-likelihoods above are what both backends must agree on


def medqa_contexts(benchmarks: Path, count: int) -> list[str]:
    """The first ``count`` MedQA questions as the task's prompt renders them (they share ``Question: ``)."""
    return [f"Question: {r['question']}\n" + "".join(f"{k}. {c}\n" for k, c in zip("ABCD", r["choices"], strict=True))
            + "Answer:" for r in read_jsonl(benchmarks / "medqa_4options.jsonl")[:count]]


def test_one_context_is_decoded_once_for_all_its_choices(llama_lm, benchmarks):
    contexts = medqa_contexts(benchmarks, 2)
    first, second = (llama_lm.tok_encode(c) for c in contexts)
    llama_lm.scorer.keep(0)
    before = llama_lm.scorer.decoded
    llama_lm.loglikelihood([instance(c, f" {k}") for c in contexts for k in "ABCD"])
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert llama_lm.scorer.decoded - before == len(first) + len(second) - shared  # " A".." D": no token more


def test_scores_through_the_cache_equal_scores_from_an_empty_cache(llama_lm, benchmarks):
    """No state leaks between requests, and no numerics either: contexts sharing prefixes, multi-token
    continuations, a context that extends another request's continuation, an empty context (the prefix token
    alone) before a chat-templated one that opens with it, in two orders, each equal to itself alone."""
    mri = "Question: What does MRI stand for?\nAnswer:"
    chat = llama_lm.apply_chat_template([{"role": "user", "content": "What does MRI stand for?"}])
    requests = [instance(c, f" {k}") for c in medqa_contexts(benchmarks, 3) for k in "ABCD"]
    requests += [instance(mri, x) for x in (" Magnetic resonance imaging", " Magnetic resonance", " Magnetic")]
    requests += [instance(mri + " Magnetic", x) for x in (" resonance imaging", " radio")]
    requests += [instance("", "Magnetic resonance imaging"), instance(chat, "Magnetic resonance imaging")]
    assert llama_lm.tok_encode(chat)[0] == llama_lm.prefix_token_id
    alone = []
    for request in requests:
        llama_lm.scorer.keep(0)  # from an empty cache
        alone += llama_lm.loglikelihood([request])
    for order in (requests, requests[::-1]):
        llama_lm.scorer.keep(0)
        together = llama_lm.loglikelihood(order)
        assert (together if order is requests else together[::-1]) == alone


def test_tokens_left_in_the_cache_past_the_kept_prefix_change_nothing(llama_lm, benchmarks):
    scorer = llama_lm.scorer
    context, continuation = llama_lm._encode_pair(medqa_contexts(benchmarks, 1)[0], " B")
    scorer.keep(0)
    whole = scorer.continuation(len(context), scorer.context(context), continuation)
    junk = llama_lm.tok_encode(" unrelated words" * 40)
    scorer.keep(0)
    scorer.decode(context[:10] + junk, 0)  # shares 10 tokens with the context, then 80 others
    assert scorer.continuation(len(context), scorer.context(context), continuation) == whole
    assert scorer.cached == context  # the junk was dropped from the cache, not only from our list


def test_a_context_longer_than_a_batch_scores_as_when_decoded_from_a_cached_prefix(llama_lm, benchmarks):
    """Past ``n_batch`` tokens a context is decoded in chunks, the last never a single token."""
    scorer = llama_lm.scorer
    ids = [i for c in medqa_contexts(benchmarks, 6) for i in llama_lm.tok_encode(c)][:scorer.n_batch + 2]
    assert len(ids) == scorer.n_batch + 2  # a context of n_batch + 1 tokens: chunks of n_batch - 1 and 2
    scorer.keep(0)
    whole = scorer.continuation(len(ids) - 1, scorer.context(ids[:-1]), ids[-1:])
    for prefix in (100, scorer.n_batch - 1):
        scorer.keep(0)
        scorer.context(ids[:prefix])
        assert scorer.continuation(len(ids) - 1, scorer.context(ids[:-1]), ids[-1:]) == whole


def test_a_batch_is_never_one_token_but_for_a_one_token_sequence():
    from eval.llama_cpp_scorer import chunks

    assert chunks(1, 512) == [(0, 1)] and chunks(512, 512) == [(0, 512)]
    assert chunks(513, 512) == [(0, 511), (511, 513)] and chunks(1025, 512)[-1] == (1023, 1025)


def test_a_context_longer_than_max_length_is_left_truncated_as_hflm_does(exports, default_model):
    from lm_eval.models.huggingface import HFLM

    from eval.llama_cpp_lm import LlamaCppLM

    short = LlamaCppLM(pretrained=str(exports["default"]["F16"]), max_length="32")
    hf = HFLM(pretrained=str(default_model), dtype="float32", device="cpu", max_length=32)
    context = "Abstract: " + "The patient took aspirin and was watched for bleeding. " * 12 + "Question: safe?\nAnswer:"
    requests = [instance(context, continuation) for continuation in (" yes", " no", " maybe")]
    ours, theirs = short.loglikelihood(requests), hf.loglikelihood(requests)
    assert all(abs(a - b) <= MAX_DIFFERENCE for (a, _), (b, _) in zip(ours, theirs, strict=True))
    ids, continuation = short._encode_pair(context, " yes")
    assert len(ids) > 32 and short.fit(ids, continuation) == ids[-(33 - len(continuation)):]
    with pytest.raises(SystemExit) as refused:
        short.loglikelihood([instance("Answer:", " yes" * 40)])
    assert "40-token continuation is longer than the 32-token context" in str(refused.value.code)
    assert "\n" not in str(refused.value.code)


def test_llama_cpp_uses_every_core_by_default(llama_lm):
    import os

    assert llama_lm.n_threads == len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def bos_model(tiny, tools, tmp_path_factory) -> tuple[Path, Path, Path]:
    """The tiny Llama-3 twice, as a tokenizer that adds ``<|begin_of_text|>`` (as Llama-3's does) can be had:
    (``says``, ``adds``, the F16 GGUF of ``says``).

    ``says``: ``add_bos_token: true`` in tokenizer_config.json, which llama.cpp's converter writes into the file
    (``tokenizer.ggml.add_bos_token``) but transformers' generic tokenizer does not act on. ``adds``: the same with
    a post-processor that puts BOS first, which transformers does act on; the converter refuses that one (it knows
    a pre-tokenizer by the hash of its token ids: Llama-3's is known, this one's is not).
    """
    from release import gguf

    out = tmp_path_factory.mktemp("bos")
    says, adds = out / "says", out / "adds"
    shutil.copytree(tiny, says)
    config = json.loads((says / "tokenizer_config.json").read_text())
    (says / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True}))
    shutil.copytree(says, adds)
    spec = json.loads((adds / "tokenizer.json").read_text())
    bos = next(t["id"] for t in spec["added_tokens"] if t["content"] == "<|begin_of_text|>")
    first = {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}
    spec["post_processor"] = {"type": "TemplateProcessing",
                              "single": [first, {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [first, {"Sequence": {"id": "A", "type_id": 0}},
                                       {"Sequence": {"id": "B", "type_id": 1}}],
                              "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [bos],
                                                                       "tokens": ["<|begin_of_text|>"]}}}
    (adds / "tokenizer.json").write_text(json.dumps(spec))
    [f16] = gguf.export(says, out / "gguf", "bos", ["F16"], tools, out / "export.log")
    assert GGUFFile.of(f16).metadata["tokenizer.ggml.add_bos_token"] is True
    return says, adds, f16


def test_bos_is_added_as_hflm_adds_it_and_never_twice(bos_model):
    from lm_eval.models.huggingface import HFLM

    from eval.llama_cpp_lm import LlamaCppLM

    _, adds, f16 = bos_model
    ours, theirs = LlamaCppLM(pretrained=str(f16)), HFLM(pretrained=str(adds), device="cpu")
    bos = theirs.tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    plain = "Question: Is aspirin an NSAID?\nAnswer:"
    assert theirs.tok_encode(plain)[0] == bos  # the tokenizer adds BOS: the rule is exercised
    templated = theirs.apply_chat_template([{"role": "user", "content": plain}])
    assert templated.startswith("<|begin_of_text|>") and ours.apply_chat_template(
        [{"role": "user", "content": plain}]) == templated
    for context in (plain, templated):
        assert ours._encode_pair(context, " yes") == theirs._encode_pair(context, " yes")
        assert ours.tok_encode(context).count(bos) == 1
    assert ours.tok_encode(plain, add_special_tokens=False) == theirs.tok_encode(plain, add_special_tokens=False)
    assert LlamaCppLM(pretrained=str(f16), add_bos_token="false").tok_encode(plain)[0] != bos


def test_a_releases_gguf_takes_bos_from_the_releases_tokenizer(bos_model, tmp_path):
    """The file says BOS, the release's tokenizer adds none: eval run follows the tokenizer, as HFLM would."""
    from lm_eval.models.huggingface import HFLM

    from eval import run
    from eval.llama_cpp_lm import LlamaCppLM

    says, _, f16 = bos_model
    release = tmp_path / "release"
    shutil.copytree(says, release)
    (release / "gguf").mkdir()
    shutil.copy2(f16, release / "gguf" / "x-F16.gguf")
    args = run.parse_args(["--model", str(release / "gguf" / "x-F16.gguf"), "--out", str(tmp_path / "out")])
    margs = run.gguf_model_args(args, release / "gguf" / "x-F16.gguf")
    assert margs["add_bos_token"] is False and args.backend == "llama-cpp"
    plain = "Question: Is aspirin an NSAID?\nAnswer:"
    ours, theirs = LlamaCppLM(**margs), HFLM(pretrained=str(says), device="cpu")
    assert ours._encode_pair(plain, " yes") == theirs._encode_pair(plain, " yes")
    assert LlamaCppLM(pretrained=str(f16))._encode_pair(plain, " yes") != theirs._encode_pair(plain, " yes")


@pytest.mark.slow
def test_eval_run_scores_a_gguf_through_llama_cpp_by_default(exports, tmp_path):
    path = exports["default"]["Q8_0"]
    result = eval_run("--model", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert "scored by llama.cpp" in result.stdout and "llama.cpp in-process" in result.stdout
    assert "evaluate" in result.stderr + result.stdout and "requests" in result.stderr + result.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    summary = results["summary"]
    assert summary["settings"]["backend"] == "llama-cpp" and summary["pipeline_check"] is True
    assert summary["gguf"]["quant"] == "Q8_0" and summary["gguf"]["file"] == path.name
    assert results["config"]["model"] == "llama-cpp" and results["config"]["gguf"] == str(path.resolve())
    assert list(summary["tasks"]) == list(TASKS)
    for name, row in summary["tasks"].items():
        rows = read_jsonl(tmp_path / "out" / "samples" / f"{name}.jsonl")
        assert len(rows) == row["n"] == len(read_jsonl(tmp_path / "out" / "benchmarks" / f"{name}.jsonl"))
        assert row["acc"] == pytest.approx(sum(s["acc"] for s in rows) / len(rows))
        assert all(len(s["filtered_resps"]) == (3 if name == "pubmedqa" else 4) for s in rows)


@pytest.mark.slow
def test_the_hf_backend_still_reads_a_gguf_dequantized(exports, tmp_path):
    path = exports["default"]["Q8_0"]
    result = eval_run("--model", str(path), "--backend", "hf", "--tasks", "pubmedqa", "--limit", "2", "--out",
                      str(tmp_path / "out"), cwd=tmp_path)
    assert "dequantized by transformers" in result.stdout
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary["settings"]["backend"] == "hf" and summary["tasks"]["pubmedqa"]["n"] == 2


def test_a_truncated_or_foreign_gguf_ends_eval_in_one_line(exports, tmp_path, capsys):
    from eval.__main__ import main as eval_main

    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(exports["default"]["F16"].read_bytes()[:4096])
    line = refused_in_one_line(eval_main, capsys, "run", "--model", str(truncated), "--out", str(tmp_path / "a"))
    assert str(truncated) in line
    foreign = tmp_path / "weights.gguf"
    foreign.write_bytes(b"PK\x03\x04 not a gguf")
    line = refused_in_one_line(eval_main, capsys, "run", "--model", str(foreign), "--out", str(tmp_path / "b"))
    assert "not a GGUF file" in line


def test_the_llama_cpp_backend_takes_only_a_gguf(tiny_llama3, capsys):
    from eval.__main__ import main as eval_main

    line = refused_in_one_line(eval_main, capsys, "run", "--model", str(tiny_llama3), "--backend", "llama-cpp",
                               "--out", "x")
    assert "--backend llama-cpp scores a .gguf file" in line


def test_registering_llama_cpp_leaves_lm_evals_own_models_found():
    """In a fresh process, ours imported first: lm-eval fills its registry only when it is empty."""
    code = ("import eval.llama_cpp_lm\nfrom lm_eval.api.registry import get_model\n"
            "print(get_model('llama-cpp').__name__, get_model('hf').__name__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split() == ["LlamaCppLM", "HFLM"], done.stderr[-2000:]
