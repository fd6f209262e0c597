"""Building the default mixture: every source row is accounted for, leaks and repeats are removed, reruns match."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, read_jsonl

from data_prep.build import build
from data_prep.tokens import conversation, token_lengths

MIXTURE = ROOT / "data_prep/mixtures/default-v1.yaml"


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_llama3):
    out = tmp_path_factory.mktemp("build")
    return out, build(MIXTURE, out, tokenizer=tiny_llama3)


def test_every_source_row_is_kept_or_left_out_with_a_reason(built):
    out, manifest = built
    left_out = read_jsonl(out / "rejects.jsonl")
    for kind, record in manifest["kinds"].items():
        outputs = sum(o["rows"] for o in record["outputs"].values())
        assert outputs == sum(s["kept"] for s in record["sources"])
        assert outputs == len(read_jsonl(out / f"{kind}.jsonl")) + len(read_jsonl(out / f"{kind}.validation.jsonl"))
        for source in record["sources"]:
            assert source["rows"] == source["kept"] + source["rejected"] + sum(source["left_out"].values())
        assert sum(s["rows"] for s in record["sources"]) == outputs + sum(1 for r in left_out if r["kind"] == kind)
    assert all(r["reason"] and r["file"] and r["where"] for r in left_out)


def changed_mixture(tmp_path: Path, change) -> Path:
    """The default mixture with ``change`` applied to its parsed YAML, written to a new file."""
    mixture = yaml.safe_load(MIXTURE.read_text())
    change(mixture)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(mixture))
    return path


def test_a_source_losing_most_rows_stops_the_build(tmp_path):
    def wrong_converter(mixture):
        mixture["sft"] = [{"source": "alpaca", "inputs": [str(ROOT / "data_prep/samples/medmcqa.synthetic.jsonl")]}]
        mixture.pop("dpo")
        mixture.pop("tokenizer")

    with pytest.raises(SystemExit, match="alpaca: more than 50% of rows rejected"):
        build(changed_mixture(tmp_path, wrong_converter), tmp_path / "out")


def test_a_tokenizer_that_cannot_be_loaded_stops_the_build_in_one_line_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match=r"tokenizer .*missing cannot be loaded: .*make model") as stopped:
        build(changed_mixture(tmp_path, lambda mixture: mixture.update(tokenizer=str(tmp_path / "missing"))),
              tmp_path / "out")
    assert "\n" not in str(stopped.value) and not list((tmp_path / "out").iterdir())


def test_planted_repeat_and_benchmark_leaks_are_removed(built):
    out, _ = built
    planted = [r for r in read_jsonl(out / "rejects.jsonl") if r["file"].endswith("leaks.synthetic.jsonl")]
    assert [(r["where"], r["stage"]) for r in planted] == [
        ("line 1", "dedup"), ("line 2", "decontaminate"), ("line 3", "decontaminate")]
    assert planted[0]["duplicate_of"]["file"] == "data/default/sft.jsonl"
    assert "medqa_4options" in planted[1]["reason"] and "pubmedqa" in planted[2]["reason"]
    kept_users = {m["content"] for row in read_jsonl(out / "sft.jsonl") for m in row["messages"] if m["role"] == "user"}
    assert any(text.startswith("How does regular aerobic exercise") for text in kept_users)  # the clean one stays


def test_outputs_are_axolotl_rows_with_the_card_system_prompt(built):
    out, manifest = built
    from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT

    sft, dpo = read_jsonl(out / "sft.jsonl"), read_jsonl(out / "dpo.jsonl")
    assert all(r["messages"][-1]["role"] == "assistant" for r in sft)
    assert all(r["messages"][-1]["role"] == "user" and r["chosen"]["role"] == "assistant" for r in dpo)
    systems = Counter(r["messages"][0]["content"] == OPENBIOLLM_SYSTEM_PROMPT for r in sft + dpo)
    assert systems[True] > 0.9 * len(sft + dpo)  # a few sharegpt rows bring their own system turn
    assert manifest["system_prompt"] == OPENBIOLLM_SYSTEM_PROMPT


def test_rebuilding_gives_byte_identical_files(built, tmp_path):
    out, manifest = built
    again = build(MIXTURE, tmp_path, tokenizer=Path(manifest["kinds"]["sft"]["tokens"]["tokenizer"]))
    for name in ("sft.jsonl", "sft.validation.jsonl", "dpo.jsonl", "dpo.validation.jsonl", "rejects.jsonl",
                 "manifest.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    assert again == manifest


@pytest.mark.parametrize("workers", [1, 3])
def test_the_files_are_the_same_bytes_whatever_the_worker_count(built, tmp_path, workers):
    out, manifest = built  # built with the default worker count (this machine's cores)
    again = build(MIXTURE, tmp_path, tokenizer=Path(manifest["kinds"]["sft"]["tokens"]["tokenizer"]), workers=workers)
    for name in ("sft.jsonl", "sft.validation.jsonl", "dpo.jsonl", "dpo.validation.jsonl", "rejects.jsonl",
                 "manifest.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    assert again == manifest


def test_a_worker_count_below_one_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="workers must be at least 1, not 0"):
        build(MIXTURE, tmp_path, workers=0)
    assert not (tmp_path / "manifest.json").exists()


def test_token_lengths_count_each_row_once_as_the_chat_template_tokenizes_it(built, tiny_llama3):
    out, _ = built
    rows = read_jsonl(out / "sft.jsonl")[:20] + read_jsonl(out / "dpo.jsonl")[:20]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    expected = [max(len(tokenizer.apply_chat_template(conversation(row, side), tokenize=True, return_dict=False))
                    for side in ("chosen", "rejected")) for row in rows]
    assert token_lengths(rows, tiny_llama3, workers=1) == expected
    assert token_lengths(rows, tiny_llama3, workers=2) == expected


def test_max_rows_counts_distinct_rows_and_the_manifest_says_how_many_repeats_went_first(tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Which enzyme is deficient in patient case number {i}?"},
                          {"role": "assistant", "content": f"Answer {i}."}]} for i in range(10)]
    source = tmp_path / "repeats.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows * 3))  # each prompt annotated three times

    def capped(mixture):
        mixture["sft"] = [{"source": "messages", "inputs": [str(source)], "max_rows": 8}]
        mixture["validation_fraction"] = 0.0
        mixture.pop("dpo")
        mixture.pop("tokenizer")

    manifest = build(changed_mixture(tmp_path, capped), tmp_path / "out")
    record = manifest["kinds"]["sft"]["sources"][0]
    assert len(read_jsonl(tmp_path / "out/sft.jsonl")) == record["kept"] == 8
    assert record["left_out"] == {"cap": 2, "dedup": 20}
    assert record["max_rows"] == {"cap": 8, "distinct_rows": 10, "over_cap": 2, "duplicates_before_cap": 20}


def test_a_mistyped_mixture_key_is_refused_with_a_suggestion(tmp_path):
    def typo(mixture):
        mixture["validaton_fraction"] = mixture.pop("validation_fraction")

    with pytest.raises(SystemExit, match="unknown key 'validaton_fraction'; did you mean 'validation_fraction'"):
        build(changed_mixture(tmp_path, typo), tmp_path / "out")


def test_rows_over_sequence_len_are_left_out_with_their_length(built):
    out, manifest = built
    tokens = manifest["kinds"]["sft"]["tokens"]
    kept = sum(o["rows"] for o in manifest["kinds"]["sft"]["outputs"].values())
    assert 0 < tokens["p50"] <= tokens["p90"] <= tokens["p99"] <= tokens["p100"]
    assert tokens["sequence_len"] == 512 and tokens["rows"] == kept + tokens["over_sequence_len"]
    too_long = [r for r in read_jsonl(out / "rejects.jsonl") if r["kind"] == "sft" and r["stage"] == "length"]
    assert len(too_long) == tokens["over_sequence_len"] > 0  # the tiny tokenizer splits text finely
    assert all(r["reason"].endswith("tokens is over sequence_len 512") for r in too_long)


def test_cli_builds_the_default_mixture_and_says_so_in_a_few_lines(tmp_path, tiny_llama3):
    done = subprocess.run([sys.executable, "-m", "data_prep", "build", str(MIXTURE), "--out", str(tmp_path),
                           "--tokenizer", str(tiny_llama3)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    assert 1 + len(lines) <= 40, done.stdout + done.stderr  # with make's echoed command: `make data` in 40 lines
    assert "\r" not in done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert out[0] == f"data build of {MIXTURE} (default v1) -> {tmp_path}/"
    mixture = yaml.safe_load(MIXTURE.read_text())
    for kind in ("sft", "dpo"):  # the header: each kind's input files and sources
        files = sum(len(entry["inputs"]) for entry in mixture[kind])
        assert any(line.startswith(f"  {kind}: {files} input files from {mixture[kind][0]['source']}") for line in out)
        rows = manifest["kinds"][kind]["outputs"]
        assert f"{kind}: {kind}.jsonl {rows[f'{kind}.jsonl']['rows']}, {kind}.validation.jsonl " \
               f"{rows[f'{kind}.validation.jsonl']['rows']}" in out
    assert f"left out: {manifest['rejects']['rows']} rows" in done.stdout and str(tmp_path / "rejects.jsonl") in out[-2]
    assert out[-1].startswith("data build done in ") and out[-1].endswith("; next: make sft")


def test_a_mixture_decontaminates_against_the_benchmarks_present_with_allow_partial(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    for task in ("pubmedqa", "medqa_4options"):
        (folder / f"{task}.jsonl").write_bytes((ROOT / f"data_prep/samples/benchmarks/{task}.jsonl").read_bytes())

    def partial(mixture, allow=True):
        mixture["decontaminate"]["benchmarks"] = str(folder)
        mixture["decontaminate"]["allow_partial"] = allow
        mixture.pop("tokenizer")
        mixture.pop("dpo")

    with pytest.raises(SystemExit, match=r"or pass allow_partial: true under decontaminate in .* to check against "
                                         r"the 2 present"):
        build(changed_mixture(tmp_path, lambda m: partial(m, allow=False)), tmp_path / "refused")
    manifest = build(changed_mixture(tmp_path, partial), tmp_path / "out")
    assert manifest["benchmarks"]["checked"] == ["medqa_4options", "pubmedqa"]
    assert len(manifest["benchmarks"]["not_checked"]) == 7 and "medmcqa" in manifest["benchmarks"]["not_checked"]
    planted = [r for r in read_jsonl(tmp_path / "out/rejects.jsonl") if r["stage"] == "decontaminate"]
    assert sorted(r["reason"].split()[1] for r in planted) == ["medqa_4options", "pubmedqa"]
