"""Real Axolotl QLoRA SFT, then DPO from its merged model, through the launcher, on the tiny Llama-3.

These are the slow tests: each stage trains for a few steps, merges, and leaves a run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import DPO_RECIPE, ROOT, SFT_RECIPE, launch, only_run, tiny_overrides
from safetensors.torch import load_file

from common.files import sha256_tree
from common.rundir import hash_folder, read_manifest, verify_outputs
from common.secrets import REDACTED

pytestmark = pytest.mark.slow

FAKE_SECRETS = {"HF_TOKEN": "hf_fake_token_for_tests_0123456789", "WANDB_API_KEY": "fake-wandb-key-0123456789"}
# Set in many ML environments; their names look secret-ish, their values are ordinary words and numbers.
NOT_SECRETS = {"TOKENIZERS_PARALLELISM": "false", "MY_KEY_COUNT": "8", "PAD_TOKEN_ID": "128001"}
MANIFEST_KEYS = {
    "run_id", "stage", "status", "exit_code", "error", "started_at", "ended_at", "duration_s", "parent", "command",
    "recipe", "config", "code", "datasets", "base_model", "python", "packages", "host", "environment", "outputs",
}


TERMINAL: dict[str, str] = {}  # what each stage of the ``runs`` fixture showed, stdout and stderr as one


@pytest.fixture(scope="module")
def runs(tiny_llama3, small_data, tmp_path_factory):
    """An SFT run and the DPO run that follows it, both through ``python -m launch``."""
    runs_dir = tmp_path_factory.mktemp("runs")
    env = {**os.environ, **FAKE_SECRETS, **NOT_SECRETS}
    sft = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["sft"]), env=env, merged=True)
    assert sft.returncode == 0, sft.stdout[-4000:]
    dpo = launch("dpo", DPO_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["dpo"]), env=env, merged=True)
    assert dpo.returncode == 0, dpo.stdout[-4000:]
    TERMINAL.update(sft=sft.stdout, dpo=dpo.stdout)
    return {"sft": only_run(runs_dir, "sft"), "dpo": only_run(runs_dir, "dpo")}


def assert_adapter_trained(run_dir):
    """PEFT starts every lora_B at zero; after training each one has moved."""
    weights = load_file(run_dir / "adapter/adapter_model.safetensors")
    lora_b = {name: w for name, w in weights.items() if "lora_B" in name}
    assert len(lora_b) == 2 * 7, sorted(lora_b)  # 2 layers x the 7 linear projections of the card
    unchanged = [name for name, w in lora_b.items() if torch.count_nonzero(w) == 0]
    assert not unchanged, f"adapter weights still at their initial zeros: {unchanged}"


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_stage_trains_the_adapter_and_merges_it(runs, stage):
    run_dir = runs[stage]
    assert_adapter_trained(run_dir)
    assert (run_dir / "merged/config.json").is_file()
    assert list((run_dir / "merged").glob("*.safetensors"))
    assert (run_dir / "logs/train.log").stat().st_size > 0
    assert (run_dir / "logs/merge.log").stat().st_size > 0


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_manifest_is_complete(runs, stage, small_data):
    record = read_manifest(runs[stage])
    assert set(record) >= MANIFEST_KEYS
    assert record["status"] == "succeeded" and record["exit_code"] == 0 and record["error"] is None
    assert record["started_at"] <= record["ended_at"] and record["duration_s"] >= 0
    assert record["command"][1:4] == ["-m", "launch", stage]
    assert record["environment"]["HF_HUB_OFFLINE"] == "1" and record["environment"]["WANDB_MODE"] == "disabled"
    assert len(record["recipe"]["sha256"]) == 64 and record["recipe"]["path"].endswith(f"{stage}.yaml")
    assert record["config"]["output_dir"].endswith("adapter")
    assert record["config"]["adapter"] == "qlora" and record["config"].get("rl") == ("dpo" if stage == "dpo" else None)
    assert set(record["code"]) >= {"commit", "dirty"}
    [dataset] = record["datasets"]
    assert dataset["path"] == str(small_data[stage]) and dataset["rows"] == 8 and len(dataset["sha256"]) == 64
    assert len(record["base_model"]["sha256_tree"]) == 64
    for package in ("axolotl", "torch", "transformers", "trl", "peft", "bitsandbytes", "datasets"):
        assert record["packages"][package], package
    assert record["host"]["hostname"] and record["host"]["cpu_count"] >= 1
    assert set(record["host"]["cpu"]) == {"model_name", "family", "model", "vector_extensions"}
    assert record["outputs"] == {"config": "config.yaml", "log_train": "logs/train.log", "adapter": "adapter",
                                 "loss_curve": "loss.png", "log_merge": "logs/merge.log", "merged": "merged"}
    assert (runs[stage] / "loss.png").read_bytes().startswith(b"\x89PNG")  # every training run has its loss curve
    hashes = record["output_sha256"]  # every file train wrote in adapter/, merge in merged/
    assert "adapter_model.safetensors" in hashes["adapter"] and "model.safetensors" in hashes["merged"]
    assert len(verify_outputs(runs[stage])) == len(hashes["adapter"]) + len(hashes["merged"])


def test_dpo_starts_from_the_sft_runs_merged_model(runs):
    record = read_manifest(runs["dpo"])
    assert record["parent"]["run_id"] == runs["sft"].name
    assert record["config"]["base_model"] == str(runs["sft"] / "merged")
    assert record["base_model"]["from_run"] == runs["sft"].name
    assert read_manifest(runs["sft"])["parent"] is None


def test_no_secret_reaches_any_file_of_a_run(runs):
    for run_dir in runs.values():
        for path in run_dir.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                data = path.read_bytes()
                for value in FAKE_SECRETS.values():
                    assert value.encode() not in data, f"{value} found in {path}"


def test_redaction_touches_nothing_but_secrets(runs):
    """TOKENIZERS_PARALLELISM=false and the like were exported: no ordinary value was taken for a secret."""
    for run_dir in runs.values():
        for path in [run_dir / "manifest.json", run_dir / "config.yaml", *run_dir.glob("logs/*.log")]:
            assert REDACTED not in path.read_text(encoding="utf-8"), path
        record = read_manifest(run_dir)
        assert record["config"]["bf16"] is False and record["config"]["tokenizer_type"] == "AutoTokenizer"


def test_merge_of_a_copied_run_writes_into_the_copy(runs, tmp_path):
    original = runs["sft"]
    before = sha256_tree(original)
    copy = tmp_path / "runs" / "copied-sft"
    shutil.copytree(original, copy)
    shutil.rmtree(copy / "merged")
    result = subprocess.run([sys.executable, "-m", "launch", "merge", str(copy)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (copy / "merged/config.json").is_file() and not (copy / "adapter/merged").exists()
    assert sha256_tree(original) == before  # the original run is untouched
    config = (copy / "config.yaml").read_text()
    assert str(original) not in config and str(copy / "adapter") in config
    record = json.loads((copy / "manifest.json").read_text())
    assert record["followups"][-1]["status"] == "succeeded"
    assert record["output_sha256"]["merged"] == hash_folder(copy / "merged")  # the merge's own files, recorded


def test_failed_run_leaves_a_manifest_saying_how(tmp_path, small_data):
    missing = tmp_path / "no-such-model"
    result = launch("sft", SFT_RECIPE, tmp_path / "runs", *tiny_overrides(missing, small_data["sft"]))
    assert result.returncode != 0
    record = read_manifest(only_run(tmp_path / "runs", "sft"))
    assert record["status"] == "failed" and record["exit_code"] not in (0, None)
    assert record["error"]["step"] == "train" and record["error"]["log"] == "logs/train.log"
    assert record["error"]["log_tail"] and record["ended_at"]
    assert "merged" not in record["outputs"]


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_the_terminal_shows_a_header_progress_and_a_summary_and_the_log_keeps_the_rest(runs, stage):
    """Not a terminal here (a pipe): plain progress lines, no carriage return; Axolotl's output only in the log."""
    shown, run_dir = TERMINAL[stage], runs[stage]
    lines = shown.splitlines()
    assert len(lines) <= 40 and "\r" not in shown, shown
    assert lines[0].startswith(f"{stage} of ") and f"run folder  {run_dir}/" in shown
    steps = read_manifest(run_dir)["config"]["max_steps"]
    assert any(line.startswith(f"train: {steps}/{steps} steps, loss ") for line in lines), shown
    assert any(line.startswith("merge: ") and line.endswith("done") for line in lines), shown
    losses = read_manifest(run_dir)["losses"]
    assert f"{losses[0]['loss']:.3f} (step 1) -> {losses[-1]['loss']:.3f} (step {losses[-1]['step']})" in shown
    assert "  next " in lines[-1] and ("make eval" if stage == "dpo" else "--parent") in lines[-1]
    assert "[INFO]" not in shown and "Loading weights" not in shown and "'loss':" not in shown
    assert "[axolotl.cli.config] config:" in (run_dir / "logs/train.log").read_text()


def test_a_missing_dataset_fails_in_one_line_naming_the_cause_and_the_log(tiny_llama3, small_data, tmp_path):
    result = launch("sft", SFT_RECIPE, tmp_path / "runs", *tiny_overrides(tiny_llama3, tmp_path / "missing.jsonl"))
    assert result.returncode == 1
    run_dir = only_run(tmp_path / "runs", "sft")
    failed = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert len(failed) == 1 and failed[0].startswith(f"run {run_dir.name}: train failed: ValueError: "), result.stderr
    assert "missing.jsonl" in failed[0] and f"last lines of {run_dir / 'logs/train.log'}:" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr.split(failed[0])[0]  # the cause comes first
    assert "ValueError: " in read_manifest(run_dir)["error"]["message"]
    verbose = launch("sft", SFT_RECIPE, tmp_path / "verbose", *tiny_overrides(tiny_llama3, tmp_path / "missing.jsonl"),
                     "--verbose")
    assert verbose.returncode == 1 and "[axolotl" in verbose.stdout  # --verbose streams the trainer's output too
