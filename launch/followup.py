"""Stages that work on an existing run folder: merge its adapter, or evaluate its merged model.

    python -m launch merge runs/<id>     # Axolotl merge_lora: runs/<id>/adapter -> runs/<id>/merged/
    python -m launch eval runs/<id>      # python -m eval run --model runs/<id> -> runs/<id>/eval/

Each is recorded in the run's manifest under ``followups`` (step, times, exit code, log; a merge that runs out of
GPU memory is "out of memory", with the figures, and one line: launch/out_of_memory.py). The run folder is
locked meanwhile, and its config's own paths are set to where the folder is now: a copied run merges into the copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.rundir import MANIFEST, RunLock, now, read_manifest, write_manifest
from launch import out_of_memory
from launch.plugins import OOM_FILE
from launch.stage import SLURM_LOCK_WAIT_S, place_merged, read_config, reattach, run_logged, stage_env, step_command


def command_for(stage: str, run_dir: Path) -> list[str]:
    """The command a follow-up stage runs."""
    if stage == "merge":
        return step_command("merge", run_dir / "config.yaml", run_dir)
    if stage == "eval":
        return [sys.executable, "-m", "eval", "run", "--model", str(run_dir)]
    raise ValueError(f"unknown follow-up stage {stage!r}")


def run_followup(stage: str, run_dir: Path, root: Path) -> Path:
    """Run ``stage`` on ``run_dir`` and record it; SystemExit names the log when it fails."""
    if not (run_dir / MANIFEST).is_file():
        raise InputError(f"{run_dir}: not a run folder (no {MANIFEST}); `{stage}` takes runs/<id>")
    lock = RunLock.acquire(run_dir, SLURM_LOCK_WAIT_S if "SLURM_JOB_ID" in os.environ else 0)
    try:
        return followup_locked(stage, run_dir, root, lock)
    finally:
        lock.release()


def followup_locked(stage: str, run_dir: Path, root: Path, lock: RunLock) -> Path:
    record = read_manifest(run_dir)
    if record.get("status") != "succeeded":
        raise InputError(f"{run_dir}: run is {record.get('status')}, {stage} needs a succeeded run")
    if stage == "eval" and not (run_dir / "merged").is_dir():
        raise InputError(f"{run_dir}: no merged/ model yet; run `python -m launch merge {run_dir}` first")
    config = read_config(run_dir)
    reattach(run_dir, config)
    log_name = f"logs/{stage}.log"
    entry: dict[str, Any] = {"stage": stage, "started_at": now(), "log": log_name}
    print(f"run {run_dir.name}: {stage} (log: {run_dir / log_name})")
    (run_dir / "adapter" / OOM_FILE).unlink(missing_ok=True)
    code, tail = run_logged(command_for(stage, run_dir), run_dir / log_name, stage_env(config), root, lock=lock)
    entry.update(ended_at=now(), exit_code=code, status="succeeded" if code == 0 else "failed")
    oom = out_of_memory.report(run_dir, stage, tail, config, record) if code and stage == "merge" else None
    if oom:
        entry.update(status=out_of_memory.STATUS, out_of_memory=oom)
    if code != 0:
        entry["log_tail"] = tail
    elif stage == "merge":
        place_merged(run_dir)  # a requeued merge replaces a partial one
        record.setdefault("outputs", {})["merged"] = "merged"
    record.setdefault("followups", []).append(entry)
    write_manifest(run_dir, record)
    if oom:
        raise SystemExit(out_of_memory.report_line(run_dir.name, record["stage"], stage, oom, run_dir / log_name))
    if code != 0:
        raise SystemExit(f"run {run_dir.name}: {stage} failed with exit code {code}; see {run_dir / log_name}")
    return run_dir
