"""A run beside its base model: ``python -m eval run`` finds the base through the manifests, scores it once on the
items the run was scored on, pairs the outcomes, and reads them from the cache the next time.

Real lm-eval runs on two tiny random Llamas (the base, and another seed as the run's merged model) over the bundled
fixtures; the base's outcomes are checked against a separate ``eval run`` of the base model itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, read_jsonl

from common.files import sha256_file, sha256_tree
from eval import baseline
from eval.benchmarks import TASKS
from eval.paired import Outcome, outcomes_from_samples, write_outcomes

TASK_NAMES = ["pubmedqa", "medqa_4options", "mmlu_anatomy"]


def eval_run(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(cwd / ".hf-datasets"),
           "OPENBIOLLM_CACHE": str(cache)}
    done = subprocess.run([sys.executable, "-m", "eval", "run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def manifest(run: Path, stage: str, base: dict | None = None, parent: Path | None = None) -> None:
    record = {"run_id": run.name, "stage": stage, "status": "succeeded", "ended_at": "2026-01-01T00:10:00+00:00",
              "parent": {"run_id": parent.name, "path": str(parent), "stage": "sft"} if parent else None,
              "base_model": base or {}}
    (run / "manifest.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def runs(tiny_llama3, tmp_path_factory) -> dict[str, Path]:
    """models/base (the tiny Llama), an SFT run from it (another seed as merged/), a DPO run from the SFT run."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    tmp = tmp_path_factory.mktemp("versus-base")
    base = tmp / "models/base"
    shutil.copytree(tiny_llama3, base)
    sft, dpo = tmp / "runs/20260101-000000-sft-tiny", tmp / "runs/20260101-001000-dpo-tiny"
    for run, seed in ((sft, 1), (dpo, 2)):
        torch.manual_seed(seed)
        LlamaForCausalLM(AutoConfig.from_pretrained(tiny_llama3)).save_pretrained(run / "merged")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tiny_llama3 / name).is_file():
                shutil.copy(tiny_llama3 / name, run / "merged" / name)
    manifest(sft, "sft", {"id": "models/base", "local": True, "sha256_tree": sha256_tree(base)})
    manifest(dpo, "dpo", {"id": str(sft / "merged"), "local": True, "from_run": sft.name}, parent=sft)
    return {"root": tmp, "base": base, "sft": sft, "dpo": dpo, "cache": tmp / "cache"}


@pytest.fixture(scope="module")
def first_and_second(runs) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The DPO run evaluated twice on three fixture tasks: the base scored the first time, cached the second."""
    args = ("--model", str(runs["dpo"]), "--tasks", *TASK_NAMES)
    first = eval_run(*args, cwd=runs["root"], cache=runs["cache"])
    second = eval_run(*args, cwd=runs["root"], cache=runs["cache"])
    return first, second


@pytest.mark.slow
def test_a_dpo_run_is_put_beside_the_model_its_sft_run_started_from(runs, first_and_second):
    summary = json.loads((runs["dpo"] / "eval/results.json").read_text())["summary"]
    versus = summary["versus_base"]
    assert versus["base"]["key"] == sha256_tree(runs["base"])
    assert versus["base"]["model"] == "models/base"
    assert list(versus["tasks"]) == TASK_NAMES
    for name, entry in versus["tasks"].items():
        assert entry["n"] == summary["tasks"][name]["n"]
        assert entry["run_correct"] == round(summary["tasks"][name]["acc"] * entry["n"])
        assert entry["run_correct"] - entry["base_correct"] == entry["run_only"] - entry["base_only"]


@pytest.mark.slow
def test_the_base_outcomes_are_those_of_evaluating_the_base_itself(runs, first_and_second, tmp_path):
    eval_run("--model", str(runs["base"]), "--tasks", *TASK_NAMES, "--out", str(tmp_path / "base"),
             cwd=runs["root"], cache=tmp_path / "no-cache")
    for name in TASK_NAMES:
        direct = outcomes_from_samples(tmp_path / "base/samples" / f"{name}.jsonl")
        recorded = {r["id"]: Outcome(r["gold"], r["pred"]) for r in read_jsonl(runs["dpo"] / "eval/base" /
                                                                                 f"{name}.jsonl")}
        assert recorded == direct, name


@pytest.mark.slow
def test_the_second_eval_reads_the_base_from_the_cache_and_scores_it_no_more(runs, first_and_second):
    first, second = first_and_second
    assert "base: evaluate" in first.stdout + first.stderr
    assert "base: evaluate" not in second.stdout + second.stderr
    versus = json.loads((runs["dpo"] / "eval/results.json").read_text())["summary"]["versus_base"]
    assert set(versus["base"]["outcomes_from"].values()) == {"cache"}
    assert "all tasks, " in second.stdout


def test_committed_outcomes_are_found_by_model_and_test_set_hash(tmp_path, monkeypatch):
    """docs/baseline/<name>/baseline.json: full test-set outcomes keyed by the model's tree hash and the set's."""
    monkeypatch.setattr(baseline, "COMMITTED", tmp_path / "baseline")
    monkeypatch.setenv("OPENBIOLLM_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "baseline/tiny"
    outcomes = {"a": Outcome(0, 0), "b": Outcome(1, 2), "c": Outcome(3, 3)}
    write_outcomes(folder / "items/pubmedqa.jsonl", outcomes)
    (folder / "baseline.json").write_text(json.dumps({"model": {"key": "K"}, "tasks": {"pubmedqa": {
        "benchmark_sha256": "S", "items": "items/pubmedqa.jsonl"}}}))
    base = baseline.BaseModel("models/tiny", "K", "tiny")
    assert baseline.lookup(base, "pubmedqa", "S", ["a", "c"]) == ({"a": outcomes["a"], "c": outcomes["c"]},
                                                                   "committed")
    assert baseline.lookup(base, "pubmedqa", "other set", ["a"]) == ({}, "none")
    assert baseline.lookup(baseline.BaseModel("m", "other model", "m"), "pubmedqa", "S", ["a"]) == ({}, "none")
    baseline.remember(base, "pubmedqa", "S", {"d": Outcome(2, 2)})
    assert baseline.lookup(base, "pubmedqa", "S", ["a", "d"]) == ({"a": outcomes["a"], "d": Outcome(2, 2)},
                                                                   "committed + cache")


def test_the_committed_baseline_names_the_shipped_test_sets_and_the_embedded_model():
    """What `make eval` reads on a fresh clone: every task's outcomes, for the prepared files' hashes."""
    manifests = sorted(baseline.COMMITTED.glob("*/baseline.json"))
    assert manifests, "docs/baseline/ holds no committed base-model scores"
    record = json.loads(manifests[0].read_text())
    assert record["model"]["key"] and list(record["tasks"]) == list(TASKS)
    for name, entry in record["tasks"].items():
        rows = read_jsonl(manifests[0].parent / entry["items"])
        assert len(rows) == TASKS[name].rows, name
        assert sha256_file(manifests[0].parent / entry["items"]) == entry["items_sha256"]
