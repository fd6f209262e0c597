"""A run folder's life in one type: ``Run`` makes or reopens it, locks it, records its attempts, losses and manifest.

    run = Run.open(StageRun("sft", Path("recipes/smollm2-135m/v1/sft.yaml")))  # new runs/<id>/, or a queued,
    with run:                                   # preempted or lost one reopened; locked until the ``with`` ends
        attempt = run.begin_attempt(topology)   # half-written checkpoints set aside, the resume point noted
        ...                                     # the stage's steps (launch/runner/stage.py)
        run.end_step(attempt, code, stop)       # "succeeded", "preempted" or "failed"
        run.record_training(log)                # losses by global step, the tokenized data's hash
        run.finish(exit_code=0)                 # the manifest, written last
    with Run.locked(run_dir) as run: ...        # a finished run: follow-ups (merge, eval), a submission's record
    Run.amend(run_dir, reproduces={...})        # one more entry in a run's manifest, under its lock

What the manifest holds is manifest.py's; an attempt, attempts.py's; the losses, train_record.py's; the config,
config.py's; the id, the lock and the manifest file, common/rundir.py's. Only this module uses them to change a run
folder: stages, submissions, follow-ups and reproduce all go through ``Run``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.rundir import (
    HASHED,
    MANIFEST,
    OUTPUT_HASHES,
    RunLock,
    check_run_id,
    create,
    hash_folder,
    latest_run,
    new_run_id,
    read_manifest,
    write_manifest,
)
from launch.lifecycle import attempts, manifest, train_record
from launch.lifecycle.config import (
    CONFIG,
    attach_paths,
    load_recipe,
    read_config,
    reattach,
    stage_env,
    write_config,
)
from launch.lifecycle.topology import Topology
from launch.registry import STAGE_PARENT, STAGE_STEPS  # each stage's Axolotl steps, and the stage it starts from

SLURM_LOCK_WAIT_S = 60  # a job may start while its submitter still records the submission


@dataclass
class StageRun:
    """What one invocation asks for."""

    stage: str
    recipe: Path
    runs_dir: Path = Path("runs")
    run_id: str | None = None
    parent: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    root: Path = field(default_factory=Path.cwd)
    topology: Topology = field(default_factory=Topology)  # nodes x processes the train step runs on
    merge: bool = True  # False: leave the merge to a separate `python -m launch merge runs/<id>` (SLURM chains)


def lock_wait_s() -> float:
    """How long to wait for a run's lock: a SLURM job may start while its submitter still holds it."""
    return SLURM_LOCK_WAIT_S if "SLURM_JOB_ID" in os.environ else 0


def parent_record(request: StageRun, pending_ok: bool) -> dict[str, Any] | None:
    """The run this stage starts from: a succeeded run of the parent stage (or, for a submission, one on its way)."""
    if request.stage not in STAGE_PARENT:
        return None
    want = STAGE_PARENT[request.stage]
    parent_dir = request.parent or latest_run(request.runs_dir, want)
    if not (parent_dir / MANIFEST).is_file():
        raise InputError(f"--parent {parent_dir}: not a run folder (no {MANIFEST})")
    record = read_manifest(parent_dir)
    allowed = ("succeeded", "queued", "running", "preempted", "lost") if pending_ok else ("succeeded",)
    if record.get("stage") != want or record.get("status") not in allowed:
        raise InputError(f"--parent {parent_dir}: a {request.stage} run starts from a succeeded {want} run; "
                         f"this is a {record.get('stage')} run that {record.get('status')}")
    return {"run_id": parent_dir.name, "path": str(parent_dir), "stage": record["stage"]}


def resolve_config(request: StageRun, run_dir: Path, parent: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe with the user's overrides and the run folder's paths applied."""
    config = load_recipe(request.recipe, request.overrides)
    if parent is not None:
        config["base_model"] = str(Path(parent["path"]) / "merged")
    attach_paths(config, run_dir)
    attempts.launcher_settings(config)  # our Axolotl plugins (CPU placement, preemption) and auto-resume
    return config


class Run:
    """One run folder, locked, with its config and manifest record; every change to the folder goes through it."""

    def __init__(self, path: Path, config: dict[str, Any], record: dict[str, Any], lock: RunLock | None) -> None:
        self.path, self.config, self.record, self.lock = path, config, record, lock

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def stop_file(self) -> Path:
        """Touched to ask every rank for a checkpoint (``LAUNCH_STOP_FILE``)."""
        return self.path / attempts.STOP_FILE

    @property
    def outputs(self) -> dict[str, str]:
        """What the run has written so far, by name (``config``, ``adapter``, ``merged``, ``log_train``, ...): a
        copy; :meth:`record_output` records one."""
        return dict(self.record.get("outputs") or {})

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # -- opening ---------------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, request: StageRun, submitting: bool = False) -> Run:
        """Create the run folder, config and opening manifest, locked; or reopen a queued, preempted or lost run."""
        if request.stage not in STAGE_STEPS:
            raise InputError(f"unknown stage {request.stage!r}: choose from {', '.join(STAGE_STEPS)}")
        if not request.recipe.is_file():
            raise InputError(f"recipe not found: {request.recipe}")
        if request.run_id is not None:
            check_run_id(request.run_id)
        parent = parent_record(request, pending_ok=submitting)
        run_id = request.run_id or new_run_id(request.stage, request.recipe)
        if request.run_id and (request.runs_dir / run_id).exists():
            return cls.reopen(request.runs_dir / run_id)
        config = resolve_config(request, request.runs_dir / run_id, parent)  # bad input fails before any folder
        created = create(request.runs_dir, run_id, exact=bool(request.run_id))
        if created is None:  # another start made it a moment ago
            return cls.reopen(request.runs_dir / run_id)
        run_dir, lock = created
        request.run_id = run_dir.name
        attach_paths(config, run_dir)
        try:
            write_config(run_dir, config)
            argv = [Path(sys.executable).name, "-m", "launch", *sys.argv[1:]]
            record = manifest.opening(run_dir, stage=request.stage, recipe=request.recipe, config=config,
                                      root=request.root, parent=parent, argv=argv, env=stage_env(config),
                                      overrides=request.overrides)
            write_manifest(run_dir, record)
        except BaseException:
            lock.release()
            raise
        return cls(run_dir, config, record, lock)

    @classmethod
    def reopen(cls, run_dir: Path) -> Run:
        """Lock an existing run folder to run it again; a "running" run nobody held is recorded "lost"."""
        if run_dir.is_dir() and not (run_dir / MANIFEST).is_file():
            raise InputError(f"{run_dir} exists and is not a run folder (no {MANIFEST}): choose another --run-id")
        run = cls.locked(run_dir)
        try:
            if run.record["status"] not in attempts.REOPENABLE:
                raise InputError(f"run {run.id} already {run.record['status']}: choose another --run-id")
            return run
        except BaseException:
            run.release()
            raise

    @classmethod
    def locked(cls, run_dir: Path) -> Run:
        """An existing run folder, locked, its config pointed at where the folder is now."""
        lock = RunLock.acquire(run_dir, lock_wait_s()) if run_dir.is_dir() else None
        try:
            if not (run_dir / MANIFEST).is_file():
                raise InputError(f"{run_dir}: not a run folder (no {MANIFEST})")
            record = read_manifest(run_dir)
            if record["status"] == "running":  # no process holds the lock: its last attempt died without a word
                lost = attempts.mark_lost(record)
                write_manifest(run_dir, record)
                if lost:
                    print(f"run {run_dir.name}: attempt {lost['attempt']} (host {lost['host']}) ended without a "
                          "record (killed, or its node lost): recorded as lost")
            config = read_config(run_dir) if (run_dir / CONFIG).is_file() else record.get("config") or {}
            reattach(run_dir, config)
            return cls(run_dir, config, record, lock)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @classmethod
    def amend(cls, run_dir: Path, **fields: Any) -> None:
        """Add or replace top-level entries of a run's manifest, under its lock."""
        with cls.locked(run_dir) as run:
            run.update(**fields)

    # -- recording -------------------------------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the manifest again: a command this run started under its lock (``launch eval``) updated it."""
        self.record = read_manifest(self.path)

    def save(self) -> None:
        """Write the manifest as it stands (the one writer, common.rundir.write_manifest)."""
        write_manifest(self.path, self.record)

    def update(self, **fields: Any) -> None:
        """Set top-level manifest entries and save."""
        self.record.update(fields)
        self.save()

    def append(self, key: str, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the manifest's list ``key`` (``followups``, ``slurm_jobs``) and save."""
        self.record.setdefault(key, []).append(entry)
        self.save()

    def record_output(self, name: str, path: str) -> None:
        """Record an output the run has written (``path``, relative to the run); for ``adapter`` and ``merged``,
        the sha256 of every file in it too (``output_sha256``: eval and release refuse a run whose files changed).
        Not saved: ``finish`` or ``append`` saves it."""
        self.record.setdefault("outputs", {})[name] = path
        if name in HASHED:
            self.record.setdefault(OUTPUT_HASHES, {})[name] = hash_folder(self.path / path)

    def begin_attempt(self, topology: Topology) -> dict[str, Any]:
        """A new attempt: the previous one's markers cleared, half-written checkpoints set aside; saved."""
        attempt = attempts.begin(self.record, self.path, topology.as_record())
        self.save()
        return attempt

    def end_step(self, attempt: dict[str, Any], exit_code: int, stop: str | None = None) -> str:
        """Close ``attempt`` after a step: "succeeded", "preempted" or "failed" (not saved: finish does)."""
        return attempts.end(attempt, self.path, exit_code, stop)

    def record_training(self, log: Path) -> None:
        """The train step's records: losses by global step (across attempts) and the tokenized data's hash."""
        self.record.update(train_record.summarize_training(self.path, self.config, log))

    def finish(self, exit_code: int, error: dict[str, Any] | None = None, status: str | None = None) -> None:
        """End the run: status, times, outputs and error, the manifest written last."""
        self.record_output("config", CONFIG)
        manifest.closing(self.record, exit_code=exit_code, error=error, outputs=self.outputs, status=status)
        self.save()

    def parent_check(self, request: StageRun) -> None:
        """A queued run's parent was on its way at submission; now it must have succeeded."""
        if self.record.get("parent"):
            parent_record(StageRun(request.stage, request.recipe, request.runs_dir,
                                   parent=Path(self.record["parent"]["path"])), pending_ok=False)
