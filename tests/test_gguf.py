"""GGUF exports made by llama.cpp's own tools, read back by llama.cpp and by transformers, on two models.

- ``tiny``: a random 2-layer Llama with Llama-3's special tokens, chat template and eos ``<|eot_id|>``, on
  SmolLM2's byte-level BPE vocabulary. llama.cpp's converter only takes a BPE whose pre-tokenizer it knows by a
  hash of its output, so the in-process tokenizer of ``tiny_llama3`` is refused (tested below) and this one
  borrows a known vocabulary.
- ``default``: the embedded default model (SmolLM2-135M-Instruct, ``make model``).

The tools are llama-cpp-python's pinned source build (inference/llama_cpp_tools.py): ``make test`` builds or finds
them first (``make gguf-tools``); a test never builds them. The tests that need them are slow (conftest.py marks
every test that uses ``tools``), so ``make test-fast`` leaves them out, and they skip, saying why, where the cache
lacks them. Nothing is mocked. The models and their exports are conftest.py's fixtures (``tools``,
``default_model``, ``tiny``, ``exports``), shared with tests/test_gguf_scoring.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GGUF_QUANTS, ROOT, refused_in_one_line

from inference.card_usage import SYSTEM_PROMPT
from inference.gguf_file import GGUFFile
from inference.gguf_model import GGUFModel
from inference.reply import Decoding, new_tokens, reply_of
from release import gguf
from release.__main__ import main as release_main

QUANTS = GGUF_QUANTS
PROMPTS = ["What is the normal range of adult resting heart rate?", "Explain what hypertension is.",
           "List two symptoms of anemia.", "What does MRI stand for?", "How is type 2 diabetes treated?",
           "What is the function of the kidneys?"]
FIRST = 16  # greedy tokens compared with the merged model
NEAR_TIE_F16 = 0.02  # ours: F16 may leave the merged model's path only where its top two are this close (x std of
# logits): ~30 times F16's measured mean logit error (0.0007 std, below), a fifth of Q8_0's margin
NEAR_TIE = 0.1  # ours: Q8_0 may take the merged model's runner-up where its top two are this close (x std of logits;
# the default model's three such steps on 2026-12-04: 0.047, 0.014 and 0.012)
# ours: transformers' dequantized logits against the merged model's, per type: (mean |difference| / std of the
# merged logits, share of positions with the same top token). Measured on the default model 2026-12-04: F16
# 0.0007 / 1.0, Q8_0 0.018 / 0.97, Q4_K_M 0.12 / 0.93 (the tiny model's errors: 0.0004, 0.010, 0.126).
TOLERANCE = {"F16": (0.01, 0.98), "Q8_0": (0.1, 0.9), "Q4_K_M": (0.4, 0.75)}


def merged_of(name: str, tiny: Path, default_model: Path) -> Path:
    return tiny if name == "tiny" else default_model


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


@pytest.fixture(scope="session")
def loaded(exports) -> dict[tuple[str, str], GGUFModel]:
    return {(name, quant): GGUFModel(path) for name, files in exports.items() for quant, path in files.items()}


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_each_file_carries_the_chat_template_eos_and_end_of_turn_ids(exports, tiny, default_model, name):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged_of(name, tiny, default_model))
    end_of_turn = "<|eot_id|>" if name == "tiny" else "<|im_end|>"
    for quant, path in exports[name].items():
        meta = GGUFFile.of(path).metadata  # the gguf reader, reading the file back
        assert meta[gguf.TEMPLATE_KEY] == tokenizer.chat_template
        assert meta[gguf.EOS_KEY] == tokenizer.eos_token_id
        assert meta[gguf.EOT_KEY] == tokenizer.convert_tokens_to_ids(end_of_turn)
        assert GGUFFile.of(path).quant == quant
        kinds = set(meta["tensor_types"])
        assert {"F16": "F16", "Q8_0": "Q8_0", "Q4_K_M": "Q4_K"}[quant] in kinds, (quant, kinds)
    sizes = [exports[name][q].stat().st_size for q in QUANTS]
    assert sizes == sorted(sizes, reverse=True)  # F16 > Q8_0 > Q4_K_M


@pytest.mark.parametrize("name", ["tiny", "default"])
@pytest.mark.parametrize("quant", QUANTS)
def test_llama_cpp_loads_each_file_generates_and_stops_on_the_end_of_turn_token(loaded, name, quant):
    model = loaded[(name, quant)]
    llama_cpp = pytest.importorskip("llama_cpp")  # built by the tools fixture: never skips here
    end_of_turn = "<|eot_id|>" if name == "tiny" else "<|im_end|>"
    eot = model.tokenizer.convert_tokens_to_ids(end_of_turn)
    assert llama_cpp.llama_vocab_is_eog(model.llm._model.vocab, eot)  # llama.cpp itself ends generation there
    decoding = Decoding(max_new_tokens=8)
    new, stops = new_tokens(model, model.tokenizer, messages(PROMPTS[0]), decoding)
    assert 1 <= len(new) <= 8 and eot in stops
    if name == "default":  # a trained chat model ends a short answer itself
        reply = reply_of(model.tokenizer, *new_tokens(model, model.tokenizer, messages("What does MRI stand for?"),
                                                      Decoding(max_new_tokens=128)))
        # 128 tokens: twice the 64 its answer has ended within on the machines measured, so a near tie another
        # CPU breaks otherwise (a longer wording) still ends in time; the words are asserted where rounding stays
        # near F16's (Q4_K_M's errors are ~7 times Q8_0's, TOLERANCE)
        assert reply.stop == "end_of_turn" and reply.stop_token == end_of_turn
        if quant != "Q4_K_M":
            assert "Magnetic" in reply.text


def merged_model(path: Path):
    from inference.model_source import find_source, load_model

    return load_model(find_source(str(path)))


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_greedy_tokens_equal_the_merged_models_at_f16_and_q8_0(loaded, tiny, default_model, name):
    """F16 and Q8_0: the first 16 tokens equal the merged model's, up to a step where its top two are within the
    type's margin (NEAR_TIE_F16, NEAR_TIE standard deviations of its logits), and there a token within that margin
    of the top one. Which of near-tied tokens a file takes depends on the CPU's kernels (their rounding), not on
    the file: on one machine Q8_0 took the runner-up, on another the third-ranked (issue 30); only the margin holds
    everywhere. On the machines measured, F16 equalled the merged model on every prompt."""
    hf, tokenizer = merged_model(merged_of(name, tiny, default_model))
    decoding = Decoding(max_new_tokens=FIRST)
    for prompt in PROMPTS:
        ours = new_tokens(hf, tokenizer, messages(prompt), decoding)[0]
        for quant, margin in (("F16", NEAR_TIE_F16), ("Q8_0", NEAR_TIE)):
            model = loaded[(name, quant)]
            theirs = new_tokens(model, model.tokenizer, messages(prompt), decoding)[0]
            assert_same_up_to_a_near_tie(hf, tokenizer, prompt, ours, theirs, margin)


def assert_same_up_to_a_near_tie(hf, tokenizer, prompt: str, ours: list[int], theirs: list[int],
                                 margin: float) -> None:
    """``theirs`` equals ``ours``, or first differs where the merged model's top two (and the token taken) are
    within ``margin`` standard deviations of its logits."""
    import torch

    if theirs == ours:
        return
    # the first step where they differ; where one reply is the other's prefix, the step where the shorter stopped
    step = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), min(len(ours), len(theirs)))
    ids = tokenizer.apply_chat_template(messages(prompt), add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = hf(torch.cat([ids, torch.tensor([ours[:step]], dtype=ids.dtype)], 1)).logits[0, -1]
    top = torch.topk(logits, 2)
    assert float(top.values[0] - top.values[1]) < margin * float(logits.std()), (prompt, step, margin)
    if step < len(theirs):
        assert float(top.values[0] - logits[theirs[step]]) < margin * float(logits.std()), (prompt, step, margin)


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_transformers_reads_each_file_back_with_logits_close_to_the_merged_models(exports, tiny, default_model, name):
    import torch
    from transformers import AutoModelForCausalLM

    hf, tokenizer = merged_model(merged_of(name, tiny, default_model))
    ids = tokenizer.apply_chat_template(messages(PROMPTS[1]), add_generation_prompt=True, return_dict=True,
                                        return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = hf(ids).logits[0]
    for quant, path in exports[name].items():
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        with torch.no_grad():
            logits = model(ids).logits[0]
        error = float((logits - reference).abs().mean() / reference.std())
        agree = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
        most, least = TOLERANCE[quant]
        print(f"{name} {quant}: mean |logit difference| / std {error:.4f}, same top token {agree:.3f}")
        assert error <= most, (quant, error)
        if name == "default":  # the random tiny model's top tokens are near ties everywhere: Q4_K_M agrees on 0.57
            assert agree >= least, (quant, agree)


def test_a_tokenizer_llama_cpp_does_not_know_is_refused_in_one_line(tiny_llama3, tools, tmp_path):
    with pytest.raises(SystemExit) as refused:
        gguf.export(tiny_llama3, tmp_path / "gguf", "x", ["Q8_0"], tools, tmp_path / "export.log")
    assert refused.value.code.startswith("convert_hf_to_gguf.py ") and "pre-tokenizer" in refused.value.code
    assert "\n" not in refused.value.code and not list((tmp_path / "gguf").glob("*.gguf"))


def test_an_unknown_type_is_refused_before_anything_is_built(capsys, tmp_path):
    line = refused_in_one_line(release_main, capsys, "build", str(tmp_path), "--quant", "Q9_K")
    assert "--quant Q9_K: not a GGUF type" in line and "Q4_K_M" in line


def test_a_truncated_or_foreign_file_is_refused_in_one_line(exports, tmp_path, capsys):
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(exports["tiny"]["Q8_0"].read_bytes()[:4096])
    line = refused_in_one_line(release_main, capsys, "generate", str(truncated), "hi")
    assert str(truncated) in line and "truncated" in line  # its metadata is read (the context) before llama.cpp
    foreign = tmp_path / "weights.gguf"
    foreign.write_bytes(b"PK\x03\x04 not a gguf")
    assert "not a GGUF file" in refused_in_one_line(release_main, capsys, "generate", str(foreign), "hi")


def test_a_first_build_without_a_compiler_is_one_line(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    done = subprocess.run([sys.executable, "-m", "inference.llama_cpp_tools"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": str(bare), "OPENBIOLLM_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "needs a C and a C++ compiler" in done.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_generate_and_chat_answer_from_a_gguf_as_from_a_run(exports, capsys):
    path = exports["default"]["Q8_0"]
    release_main(["generate", str(path), "What does MRI stand for?", "--max-new-tokens", "64"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(row) == {"prompt", "text", "tokens", "stop", "stop_token"}
    assert row["stop"] == "end_of_turn" and row["stop_token"] == "<|im_end|>" and "Magnetic" in row["text"]
    chat = subprocess.run([sys.executable, "-m", "release", "chat", str(path), "--max-new-tokens", "64"], cwd=ROOT,
                          input="What does MRI stand for?\n/exit\n", capture_output=True, text=True, timeout=300)
    assert chat.returncode == 0, chat.stderr
    assert "model> " in chat.stdout and "Magnetic" in chat.stdout.split("model> ", 1)[1]


def test_a_release_carries_its_ggufs_answered_by_llama_cpp_and_scored_beside_merged(default_model, tools, tmp_path,
                                                                                     capsys, monkeypatch):
    from collections import Counter

    from test_release_build import make_runs, summary
    from transformers import AutoTokenizer

    import inference.gguf_file
    import release.build
    from eval.benchmarks import TASKS
    from eval.lm_eval_tasks import FIXTURES
    from eval.prepare import prepare
    from eval.report import main as report_main
    from release.build import build_release

    hashed, loaded = Counter(), Counter()  # file name -> sha256 computed; folder -> tokenizer loaded
    for module in (inference.gguf_file, release.build):
        monkeypatch.setattr(module, "sha256_file", lambda path, real=module.sha256_file: hashed.update([path.name])
                            or real(path))
    real_load = AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda path, *rest, **named: loaded.update([Path(path)])
                        or real_load(path, *rest, **named))

    run = make_runs(tmp_path, default_model, summary(True, {"pubmedqa": (0.4, 5)}))
    fixtures = run / "eval" / "benchmarks"  # what a pipeline check prepares and records (eval run)
    prepare(TASKS["pubmedqa"], sorted(str(p) for p in (FIXTURES / "pubmedqa").iterdir()), fixtures, allow_partial=True)
    results = json.loads((run / "eval/results.json").read_text())
    results["summary"]["benchmarks"] = str(fixtures)
    (run / "eval/results.json").write_text(json.dumps(results))
    release = build_release(run, out=tmp_path / "releases", quants=["F16", "Q8_0"])
    record = json.loads((release / "release.json").read_text())
    assert [hashed[g["file"]] for g in record["gguf"]] == [1, 1]  # GGUFFile: hashed once, for eval and release.json
    assert loaded[run / "merged"] == 1  # the merged tokenizer: once, for the GGUFs, the terminators and the card
    assert [g["quant"] for g in record["gguf"]] == ["F16", "Q8_0"]
    for entry in record["gguf"]:
        path = f"gguf/{entry['file']}"
        assert (release / path).is_file() and record["files"][path]["sha256"] == entry["sha256"]
        assert entry["eot_id"] == entry["eos_id"] == 2 and entry["chat_template"]  # SmolLM2's <|im_end|>
        assert entry["generation_check"]["answers"] > 0 and 0 <= entry["generation_check"]["stop_rate"] <= 1
    f16, q8 = (run / "eval" / "gguf" / q for q in ("F16", "Q8_0"))
    assert (f16 / "generation_check.json").is_file() and not (f16 / "results.json").exists()  # the reference
    scored = json.loads((q8 / "results.json").read_text())["summary"]
    assert scored["gguf"]["quant"] == "Q8_0" and scored["gguf"]["sha256"] == record["gguf"][1]["sha256"]
    assert scored["pipeline_check"] is True and list(scored["tasks"]) == ["pubmedqa"]
    card = (release / "README.md").read_text()
    assert "## Quantized versions (GGUF)" in card and f"`gguf/{record['gguf'][1]['file']}` | Q8_0 |" in card
    assert "| Q8_0 GGUF |" in card and "PIPELINE CHECK (merged, Q8_0)" in card
    capsys.readouterr()
    report_main([str(run)])
    shown = capsys.readouterr().out
    assert "## Merged vs quantized (GGUF)" in shown and "| Q8_0 GGUF | " in shown and "MiB" in shown


def test_a_gguf_from_another_model_is_refused_by_eval_in_one_line(exports, tiny, tmp_path, capsys):
    from eval.__main__ import main as eval_main

    release = tmp_path / "release"
    shutil.copytree(tiny, release)  # the tiny model's tokenizer beside the default model's GGUF
    (release / "gguf").mkdir()
    shutil.copy2(exports["default"]["Q8_0"], release / "gguf" / "x-Q8_0.gguf")
    line = refused_in_one_line(eval_main, capsys, "run", "--model", str(release / "gguf" / "x-Q8_0.gguf"), "--out",
                               str(tmp_path / "out"))
    assert "a GGUF from another model" in line and "49152 tokens" in line
