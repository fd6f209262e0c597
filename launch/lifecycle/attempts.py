"""Attempts of one run: a run folder is reopened when its SLURM job is requeued, and every start is recorded.

    python -m launch sft RECIPE --run-id ID   # in a requeued job: same folder, resumes from the last checkpoint

A run is reopened only while its manifest says "queued" (submitted, not started), "preempted" (stopped
by a signal or the stop file, with a checkpoint when training had begun) or "lost". A "running" run whose
lock nobody holds (common/rundir.py) died without a word (SIGKILL, node loss): its attempt is recorded
"lost" and the run resumes from its last checkpoint. Each attempt records where it ran (host, SLURM job id,
restart count, node list), the
checkpoint it resumed from and the step training started at (``train_start.json``, written by
launch/plugins/preempt.py).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
from pathlib import Path
from typing import Any

from common.rundir import now
from launch.plugins import OOM_FILE, PLUGINS, PREEMPTED_FILE, TRAIN_START_FILE

REOPENABLE = ("queued", "preempted", "lost")
TRAINER_STATE = "trainer_state.json"  # transformers writes it last into a checkpoint
STOP_FILE = ".stop"  # touched to ask every rank for a checkpoint (LAUNCH_STOP_FILE)
# A step that died of one of these was stopped from outside, not broken: the run can resume.
STOPPED_BY = {-signal.SIGTERM, -signal.SIGUSR1, -signal.SIGINT, 128 + signal.SIGTERM, 128 + signal.SIGUSR1}


def launcher_settings(config: dict[str, Any]) -> None:
    """What every launcher run adds to its config: our plugins, and resuming from the newest checkpoint."""
    plugins = list(config.get("plugins") or [])
    config["plugins"] = plugins + [p for p in PLUGINS if p not in plugins]
    config.setdefault("auto_resume_from_checkpoints", True)


def slurm_nodes(nodelist: str) -> list[str]:
    """``n[1-2]`` -> ``["n1", "n2"]`` through ``scontrol show hostnames``."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=False)
    return out.stdout.split() if out.returncode == 0 else [nodelist]


def slurm_record() -> dict[str, Any] | None:
    """The SLURM job this process runs in, or None outside one."""
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    nodelist = env.get("SLURM_JOB_NODELIST", "")
    return {"job_id": env["SLURM_JOB_ID"], "restart_count": int(env.get("SLURM_RESTART_COUNT", 0)),
            "nodelist": nodelist, "nodes": slurm_nodes(nodelist) if nodelist else []}


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` folder, the one Axolotl's auto-resume picks."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def set_aside_incomplete(output_dir: Path) -> list[str]:
    """Rename checkpoints a killed attempt left half-written to ``incomplete-checkpoint-<step>``; return their names.

    The trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut off mid-save (SIGKILL,
    node loss). Renamed, neither we nor Axolotl's auto-resume (``checkpoint-*``) pick it; it stays to inspect.
    """
    incomplete = [p for p in output_dir.glob("checkpoint-*") if not (p / TRAINER_STATE).is_file()]
    for path in incomplete:
        path.rename(path.with_name(f"incomplete-{path.name}"))
    return sorted(p.name for p in incomplete)


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def mark_lost(record: dict[str, Any]) -> dict[str, Any] | None:
    """A "running" run nobody holds: close its last attempt as "lost" and the run with it; return that attempt."""
    record["status"] = "lost"
    last = (record.get("attempts") or [None])[-1]
    if last is not None and last.get("status") == "running":
        last.update(status="lost", lost_noticed_at=now())
        return last
    return None


def begin(record: dict[str, Any], run_dir: Path, topology: dict[str, Any]) -> dict[str, Any]:
    """Append a new attempt to ``record`` and return it; clears the previous attempt's markers."""
    for name in (PREEMPTED_FILE, TRAIN_START_FILE, OOM_FILE):
        (run_dir / "adapter" / name).unlink(missing_ok=True)
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    set_aside = set_aside_incomplete(run_dir / "adapter")
    checkpoint = last_checkpoint(run_dir / "adapter")
    attempt = {"attempt": len(record.get("attempts", [])) + 1, "started_at": now(), "ended_at": None,
               "status": "running", "exit_code": None, "host": platform.node(), "topology": topology,
               "slurm": slurm_record(), "resume_from": str(checkpoint.relative_to(run_dir)) if checkpoint else None,
               "incomplete_checkpoints": set_aside}
    for name in set_aside:
        print(f"run {run_dir.name}: {name} was cut off mid-save (no {TRAINER_STATE}); kept as incomplete-{name}")
    if checkpoint:
        print(f"run {run_dir.name}: resuming from {checkpoint.name}")
    record.setdefault("attempts", []).append(attempt)
    record["status"] = "running"
    return attempt


def end(attempt: dict[str, Any], run_dir: Path, exit_code: int, stop: str | None = None) -> str:
    """Close ``attempt``: "succeeded", "preempted" (stopped on request, checkpoint saved if training had begun)
    or "failed". ``stop`` names the signal the launcher received during the step, if any."""
    preempted = read_json_or_none(run_dir / "adapter" / PREEMPTED_FILE)
    stopped = preempted or stop or exit_code in STOPPED_BY
    status = "succeeded" if exit_code == 0 else "preempted" if stopped else "failed"
    attempt.update(ended_at=now(), status=status, exit_code=exit_code,
                   train_start=read_json_or_none(run_dir / "adapter" / TRAIN_START_FILE), preempted=preempted)
    if stop:
        attempt["stop_signal"] = stop
    return status
