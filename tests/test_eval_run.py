"""``python -m eval run``: real lm-evaluation-harness on the tiny Llama-3 over our local tasks and prepared fixtures.

The runs take about a minute together (marked slow); the argument checks run in the fast loop.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, read_jsonl

from eval.benchmarks import TASKS
from eval.lm_eval_tasks import FIXTURES
from eval.prepare import prepare
from eval.run import from_fixtures


def eval_run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m eval run ARGS`` as a user runs it (from ``cwd``, with the repository importable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(cwd / ".hf-datasets")}
    result = subprocess.run([sys.executable, "-m", "eval", "run", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def prepare_fixtures(out: Path, names: list[str]) -> Path:
    for name in names:
        prepare(TASKS[name], sorted(str(p) for p in (FIXTURES / name).iterdir()), out, allow_partial=True)
    return out


@pytest.fixture(scope="module")
def nine_task_run(tiny_llama3, tmp_path_factory) -> tuple[Path, Path]:
    """All nine prepared fixture sets evaluated once on the tiny model: (benchmarks folder, output folder)."""
    tmp = tmp_path_factory.mktemp("eval-run")
    benchmarks = prepare_fixtures(tmp / "benchmarks", list(TASKS))
    out = tmp / "out"
    eval_run("--model", str(tiny_llama3), "--benchmarks", str(benchmarks), "--out", str(out), cwd=tmp)
    return benchmarks, out


@pytest.mark.slow
def test_summary_has_every_prepared_item_and_the_leaderboard_settings(nine_task_run, tiny_llama3):
    benchmarks, out = nine_task_run
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert list(summary["tasks"]) == list(TASKS)
    for name, row in summary["tasks"].items():
        assert row["n"] == len(read_jsonl(benchmarks / f"{name}.jsonl"))
    assert summary["model"] == str(tiny_llama3) and summary["run_id"] is None
    # a folder prepared from the bundled fixtures stays a pipeline check when named with --benchmarks
    assert summary["pipeline_check"] is True
    assert summary["benchmarks"] == str(benchmarks.resolve())
    assert summary["settings"] == {"backend": "hf", "chat_template": False, "dtype": "auto", "batch_size": "8",
                                   "limit": None, "num_fewshot": 0, "full": None}


def test_only_a_folder_prepared_from_the_bundled_fixtures_is_a_pipeline_check(tmp_path):
    fixtures = prepare_fixtures(tmp_path / "fixtures", ["pubmedqa"])
    copied = tmp_path / "copied"
    shutil.copytree(FIXTURES / "pubmedqa", copied)
    elsewhere = tmp_path / "elsewhere"
    prepare(TASKS["pubmedqa"], sorted(str(p) for p in copied.iterdir()), elsewhere, allow_partial=True)
    assert from_fixtures(fixtures, "pubmedqa") is True
    assert from_fixtures(elsewhere, "pubmedqa") is False
    assert from_fixtures(tmp_path / "missing", "pubmedqa") is False


@pytest.mark.slow
def test_accuracy_is_the_mean_of_the_per_sample_log(nine_task_run):
    benchmarks, out = nine_task_run
    summary = json.loads((out / "results.json").read_text())["summary"]
    for name, row in summary["tasks"].items():
        samples = read_jsonl(out / "samples" / f"{name}.jsonl")
        prepared = read_jsonl(benchmarks / f"{name}.jsonl")
        assert [s["doc"]["id"] for s in sorted(samples, key=lambda s: s["doc_id"])] == [p["id"] for p in prepared]
        accs = [s["acc"] for s in samples]
        assert row["acc"] == pytest.approx(sum(accs) / len(accs))
        # lm-eval's standard error of a mean: sample standard deviation / sqrt(n)
        assert row["stderr"] == pytest.approx(math.sqrt(row["acc"] * (1 - row["acc"]) / (len(accs) - 1)))


@pytest.mark.slow
def test_each_sample_scores_the_gold_answer_among_all_choices(nine_task_run):
    _, out = nine_task_run
    for name in TASKS:
        for sample in read_jsonl(out / "samples" / f"{name}.jsonl"):
            logliks = [resp[0] for resp in sample["filtered_resps"]]
            assert len(logliks) == (3 if name == "pubmedqa" else 4)
            best = max(range(len(logliks)), key=lambda i: float(logliks[i]))
            assert sample["acc"] == float(best == sample["doc"]["answer"])


@pytest.mark.slow
def test_rendered_task_yamls_read_the_prepared_files(nine_task_run):
    import yaml

    benchmarks, out = nine_task_run
    for name, task in TASKS.items():
        config = yaml.safe_load((out / "tasks" / f"{task.lm_eval_task}.yaml").read_text())
        assert config["dataset_kwargs"]["data_files"]["test"] == str((benchmarks / f"{name}.jsonl").resolve())
    results = json.loads((out / "results.json").read_text())
    assert set(results["benchmark_files"]) == set(TASKS)


@pytest.mark.slow
def test_default_run_is_the_latest_run_and_a_loud_pipeline_check_without_benchmarks(tiny_llama3, tmp_path):
    # A finished run folder as launch.runner.stage leaves it (manifest + merged/), built here instead of training.
    run = tmp_path / "runs" / "20260101-000000-sft-tiny"
    shutil.copytree(tiny_llama3, run / "merged")
    (run / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "succeeded",
                                                   "ended_at": "2026-01-01T00:10:00+00:00"}))
    result = eval_run("--tasks", "pubmedqa", "mmlu_anatomy", "--limit", "3", cwd=tmp_path)
    assert "PIPELINE CHECK, NOT A BENCHMARK" in result.stdout
    summary = json.loads((run / "eval" / "results.json").read_text())["summary"]
    assert summary["pipeline_check"] is True and summary["run_id"] == run.name
    assert summary["model"] == str(run / "merged")
    assert list(summary["tasks"]) == ["pubmedqa", "mmlu_anatomy"]
    assert [row["n"] for row in summary["tasks"].values()] == [3, 3]
    prepared = read_jsonl(run / "eval" / "benchmarks" / "pubmedqa.jsonl")
    assert len(prepared) == len(json.loads((FIXTURES / "pubmedqa" / "test_ground_truth.json").read_text()))


def adapter_run(base: Path, root: Path) -> Path:
    """A succeeded run folder with adapter/ (a fresh LoRA on ``base``) and no merged/."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = root / "runs" / "20260101-000000-sft-tiny"
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(run / "adapter")
    (run / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "succeeded",
                                                   "ended_at": "2026-01-01T00:10:00+00:00",
                                                   "base_model": {"id": str(base), "local": True}}))
    return run


def test_a_run_without_merged_is_scored_as_its_adapter_on_its_base(tiny_llama3, tmp_path):
    """The rules chat and release follow (inference/model_source.py): lm-eval loads the adapter as ``peft``."""
    from eval import run

    folder = adapter_run(tiny_llama3, tmp_path)
    args = run.parse_args(["--model", str(folder), "--backend", "hf"])
    source = run.resolve_model(args.model, args.runs_dir)
    found = run.model_args(args, str(source.model.resolve()), source)
    assert (source.run, found["pretrained"], found["peft"]) == (folder, str(tiny_llama3.resolve()),
                                                                str(folder / "adapter"))


@pytest.mark.slow
def test_eval_run_scores_a_runs_adapter_on_its_base(tiny_llama3, tmp_path):
    folder = adapter_run(tiny_llama3, tmp_path)
    benchmarks = prepare_fixtures(tmp_path / "benchmarks", ["pubmedqa"])
    result = eval_run("--model", str(folder), "--benchmarks", str(benchmarks), "--limit", "2", "--no-base",
                      cwd=tmp_path)
    assert "(its adapter on its base)" in result.stdout
    summary = json.loads((folder / "eval" / "results.json").read_text())["summary"]
    assert summary["adapter"] == str((folder / "adapter").resolve()) and summary["tasks"]["pubmedqa"]["n"] == 2


def test_a_plain_model_path_needs_an_output_folder(tiny_llama3):
    from eval import run

    with pytest.raises(SystemExit, match="pass --out DIR"):
        run.main(["--model", str(tiny_llama3)])


def test_vllm_backend_without_vllm_names_the_fix(monkeypatch):
    from eval import run

    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: None)
    args = run.parse_args(["--backend", "vllm", "--model", "m", "--out", "o"])
    with pytest.raises(SystemExit, match="vLLM is not installed"):
        run.model_args(args, "m")


def test_vllm_model_args_carry_the_adapter_and_extra_arguments(monkeypatch):
    from eval import run

    monkeypatch.setattr(run.importlib.util, "find_spec", lambda name: object())
    args = run.parse_args(["--backend", "vllm", "--adapter", "a", "--model-args", "tensor_parallel_size=8"])
    found = run.model_args(args, "m")
    assert found["lora_local_path"] == "a" and found["tensor_parallel_size"] == "8" and found["pretrained"] == "m"


@pytest.mark.slow
def test_chat_template_flag_wraps_prompts_in_the_models_template(tiny_llama3, tmp_path):
    benchmarks = prepare_fixtures(tmp_path / "benchmarks", ["pubmedqa"])
    eval_run("--model", str(tiny_llama3), "--benchmarks", str(benchmarks), "--out", str(tmp_path / "out"),
             "--chat-template", "--limit", "2", cwd=tmp_path)
    summary = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert summary["settings"]["chat_template"] is True and summary["tasks"]["pubmedqa"]["n"] == 2
    for sample in read_jsonl(tmp_path / "out" / "samples" / "pubmedqa.jsonl"):
        context = sample["arguments"][0][0]
        assert context.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nAbstract: ")
        assert context.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
