"""The mini reproduction (bench/mini_repro.py): its GPU settings, its payload's journey in parts, and its CPU run.

The GPU run cannot happen here. ``mini_repro.py --cpu`` runs every step on a slice of the real default-v2 split and
the first items of each of the nine full test sets, while bench/gpu_wheels.py's simulation hides every package that
neither the GPU machine nor the payload (bench/mini_repro_pack.py) would provide. Like `make benchmarks`, it prepares
the nine test sets into data/benchmarks/, where the default-v2 mixture's decontamination reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from bench import gpu_wheels, mini_repro, mini_repro_pack
from eval.benchmarks import TASKS


def test_the_gpu_run_trains_each_whole_split_once_in_the_cards_schedule_shape():
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    from launch.lifecycle.config import load_recipe

    for stage, values in (("sft", mini_repro.SFT_GPU), ("dpo", mini_repro.DPO_GPU)):
        recipe = load_recipe(mini_repro.steps.RECIPES[stage], {**values, "base_model": "models/smollm2-135m-instruct"})
        config = validate_config(DictDefault({k: v for k, v in recipe.items() if v is not None}))
        assert config.max_steps is None and config.num_epochs == 1 and not config.warmup_steps
        assert config.warmup_ratio == 0.05 and config.lr_scheduler == "cosine" and config.bf16 is True
        assert (config.adapter, config.lora_r, config.lora_alpha) == ("qlora", 16, 32)
        assert config.optimizer == "adamw_bnb_8bit" and config.sequence_len == 1024
    assert mini_repro.SFT_GPU["micro_batch_size"] * mini_repro.SFT_GPU["gradient_accumulation_steps"] == 96
    assert mini_repro.SFT_GPU["learning_rate"] == 2.0e-4 and mini_repro.DPO_GPU["learning_rate"] == 5.0e-5


def test_the_steps_fit_the_device_tools_ten_minutes_and_every_call_its_limits():
    assert sum(gpu for _, gpu, _ in mini_repro.STEPS) <= mini_repro.GPU_BUDGET_S <= 570
    for _, timeout, command in mini_repro_pack.calls("mini-repro-pack", 3):
        assert timeout <= 600 and len(command) <= 2000


def test_the_payload_travels_in_parts_under_the_call_limit_and_joins_back_intact(tmp_path):
    wheels = []
    for name, size in (("a-1.0-py3-none-any.whl", 300_000), ("b-2.0-py3-none-any.whl", 500_000),
                       ("c-3.0-py3-none-any.whl", 200_000)):
        wheels.append(tmp_path / name)
        wheels[-1].write_bytes(os.urandom(size))
    count = mini_repro_pack.write_parts(wheels, tmp_path / "pack", room=400_000)
    parts = [tmp_path / f"pack/{k}/part-{k}" for k in range(1, count + 1)]
    assert count == 3 and all(p.stat().st_size <= 400_000 for p in parts)
    assert sorted(p.name for p in (tmp_path / "pack/3").iterdir()) == ["part-3", "parts.sha256", "payload.sha256"]
    machine = str(tmp_path / "machine")

    def shell(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    for k in range(1, count + 1):  # one device call each, in order
        assert shell(mini_repro_pack.receive("pack", k, machine)).returncode == 0
    (tmp_path / "machine/part-2").rename(tmp_path / "machine/part-2.held")  # a call that never arrived
    missing = shell(mini_repro_pack.unpack_command(count, machine))
    assert missing.returncode != 0 and "part-2" in missing.stdout + missing.stderr
    (tmp_path / "machine/part-2.held").rename(tmp_path / "machine/part-2")
    done = shell(mini_repro_pack.unpack_command(count, machine))
    assert done.returncode == 0, done.stdout + done.stderr
    for wheel in wheels:
        assert (tmp_path / "machine/wheels" / wheel.name).read_bytes() == wheel.read_bytes()
    last = mini_repro_pack.calls("pack", count)[-1][2]
    assert last.startswith(f"{mini_repro_pack.receive('pack', count)} && {mini_repro_pack.unpack_command(count)}")


def accuracy_by_item(path) -> dict[str, bool]:
    """Item id -> lm-eval's own ``acc`` for it, from a per-sample log."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {str(row["doc"]["id"]): row["acc"] == 1.0 for row in rows}


@pytest.mark.slow
def test_mini_repro_cpu_trains_scores_and_pairs_each_stage_with_the_base_item_by_item(tmp_path):
    simulation = gpu_wheels.write_simulation(tmp_path / "simulation", mini_repro_pack.wheel_names())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(simulation)])}
    done = subprocess.run([sys.executable, "bench/mini_repro.py", "--cpu", "--out", str(tmp_path / "out")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert done.returncode == 0, done.stdout[-3000:] + (tmp_path / "out/logs.txt").read_text()[-4000:]
    assert {name: entry["status"] for name, entry in results["steps"].items()} == {
        name: "passed" for name, _, _ in mini_repro.STEPS}
    work, limit = tmp_path / "out/work", mini_repro.CPU_SLICE["eval_limit"]
    for stage in ("sft", "dpo"):
        manifest = json.loads((work / f"runs/mini-{stage}/manifest.json").read_text())
        assert manifest["stage"] == stage and manifest["status"] == "succeeded"
        assert manifest["datasets"][0]["rows"] == mini_repro.CPU_SLICE["rows"][stage]
    assert json.loads((work / "runs/mini-dpo/manifest.json").read_text())["parent"]["run_id"] == "mini-sft"
    base = {task: accuracy_by_item(work / f"base-eval/samples/{task}.jsonl") for task in TASKS}
    for stage, versus in results["steps"]["paired"]["paired"].items():
        for task, entry in versus["tasks"].items():
            run = accuracy_by_item(work / f"runs/mini-{stage}/eval/samples/{task}.jsonl")
            assert set(run) == set(base[task]) and entry["n"] == len(run) == limit
            assert (entry["base_correct"], entry["run_correct"]) == (sum(base[task].values()), sum(run.values()))
            assert entry["run_only"] == sum(run[i] and not base[task][i] for i in run)
            assert entry["base_only"] == sum(base[task][i] and not run[i] for i in run)
        assert versus["all"]["n"] == limit * len(TASKS) == sum(e["n"] for e in versus["tasks"].values())
        assert versus["all"]["run_only"] == sum(e["run_only"] for e in versus["tasks"].values())
        assert versus["all"]["base_ci"][0] <= versus["all"]["base_acc"] <= versus["all"]["base_ci"][1]
    assert {"bf16", "optimizer", "max_steps", "data", "eval_limit"} <= set(results["substitutions"])
    table = (tmp_path / "out/results.md").read_text()
    assert "| paired | passed |" in table and "## DPO (mini-dpo) beside its base model, item by item" in table
