"""Stages that work on an existing run folder: merge its adapter, or evaluate its merged model.

    python -m launch merge runs/<id>     # Axolotl merge_lora: runs/<id>/adapter -> runs/<id>/merged/
    python -m launch eval runs/<id>      # python -m eval all --model runs/<id> -> runs/<id>/eval/ (as make eval)

Each is recorded in the run's manifest under ``followups`` (step, times, exit code, log; a merge that runs out of
GPU memory is "out of memory", with the figures, and one line: launch/runner/out_of_memory.py). The run folder is
locked meanwhile (``Run.locked``), and its config's own paths are set to where the folder is now: a copied run
merges into the copy. A merge shows one progress line and logs Axolotl to ``logs/merge.log``; an eval runs what
``make eval`` runs (``python -m eval all``: scores, the generation check, the report), under the lock this process
holds and hands down (``LAUNCH_RUN_LOCK``), and shows that command's own short output, which logs lm-eval to
``logs/eval.log`` itself (``logs/eval-launch.log`` is ours).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.errors import InputError, StepFailed
from common.rundir import HELD_LOCK_ENV, now
from launch.lifecycle.config import stage_env
from launch.lifecycle.run import Run
from launch.plugins import OOM_FILE
from launch.runner import out_of_memory, terminal
from launch.runner.stage import place_merged, run_logged, step_command

LOGS = {"merge": "logs/merge.log", "eval": "logs/eval-launch.log"}


def command_for(stage: str, run_dir: Path) -> list[str]:
    """The command a follow-up stage runs."""
    if stage == "merge":
        return step_command("merge", run_dir / "config.yaml", run_dir)
    if stage == "eval":
        return [sys.executable, "-m", "eval", "all", "--model", str(run_dir)]
    raise ValueError(f"unknown follow-up stage {stage!r}")


def run_followup(stage: str, run_dir: Path, root: Path) -> Path:
    """Run ``stage`` on ``run_dir`` and record it; SystemExit names the cause and the log when it fails."""
    try:
        run = Run.locked(run_dir)
    except InputError as err:
        raise InputError(f"{err}; `{stage}` takes runs/<id>") from None
    with run:
        return followup_locked(stage, run, root)


def followup_locked(stage: str, run: Run, root: Path) -> Path:
    if run.record.get("status") != "succeeded":
        raise InputError(f"{run.path}: run is {run.record.get('status')}, {stage} needs a succeeded run")
    if stage == "eval" and not (run.path / "merged").is_dir():
        raise InputError(f"{run.path}: no merged/ model yet; run `python -m launch merge {run.path}` first")
    log_name = LOGS[stage]
    entry: dict[str, Any] = {"stage": stage, "started_at": now(), "log": log_name}
    (run.path / "adapter" / OOM_FILE).unlink(missing_ok=True)
    watch = terminal.Watch(stage) if stage == "merge" else None
    env = {**stage_env(run.config), HELD_LOCK_ENV: str(run.path.resolve())}  # eval writes under our lock
    code, tail = run_logged(command_for(stage, run.path), run.path / log_name, env, root,
                            lock=run.lock, watch=watch, echo=stage == "eval")
    if watch is not None:
        watch.close("done" if code == 0 else "failed")
    if stage == "eval":
        run.reload()  # eval all recorded its entry under the lock we handed it
    entry.update(ended_at=now(), exit_code=code, status="succeeded" if code == 0 else "failed")
    oom = out_of_memory.report(run.path, stage, tail, run.config, run.record) if code and stage == "merge" else None
    if oom:
        entry.update(status=out_of_memory.STATUS, out_of_memory=oom)
    if code != 0:
        entry["log_tail"] = tail
    elif stage == "merge":
        place_merged(run.path)  # a requeued merge replaces a partial one
        run.record_output("adapter", "adapter")  # the merge writes into adapter/ too (Axolotl's debug.log)
        run.record_output("merged", "merged")
    run.append("followups", entry)
    if oom:
        raise StepFailed(out_of_memory.report_line(run.id, run.record["stage"], stage, oom, run.path / log_name))
    if code != 0:
        raise StepFailed(terminal.failure(run.id, stage, code, tail, run.path / log_name))
    if stage == "merge":
        terminal.say(f"merged: {run.path / 'merged'}/  next: make eval RUN={run.path}")
    return run.path
