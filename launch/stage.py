"""Run one training stage locally: resolve the recipe, run Axolotl, merge the adapter, record it all.

    python -m launch sft recipes/smollm2-135m/v1/sft.yaml
    python -m launch dpo recipes/smollm2-135m/v1/dpo.yaml --parent runs/<sft-run-id>

A run folder ``runs/<run-id>/`` gets ``config.yaml`` (the recipe as run), ``adapter/``,
``merged/``, ``logs/`` and ``manifest.json``. Axolotl does the work; we give it paths and keep records.

The trainer runs in its own process group. A SIGTERM, SIGUSR1 or Ctrl-C to the launcher goes on to that
group (outside SLURM, which signals every process of a job itself) and touches the run's stop file, then
the launcher waits: the trainer saves a checkpoint, the run is recorded "preempted", and the same command
with the same ``--run-id`` resumes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common import quiet
from common.errors import InputError
from common.files import atomic_writer
from common.rundir import (
    MANIFEST,
    RunLock,
    check_run_id,
    create,
    latest_run,
    new_run_id,
    read_manifest,
    write_manifest,
)
from common.secrets import redact_text, secret_values
from launch import attempts, manifest, out_of_memory, train_record
from launch.distributed import Topology, train_command
from launch.plugins import OOM_MARK, PREEMPTED_EXIT
from launch.registry import STAGE_PARENT, STAGE_STEPS  # each stage's Axolotl steps, and the stage it starts from

LOG_TAIL_LINES = 40
RUN_PATHS = {"output_dir": "adapter", "dataset_prepared_path": "prepared"}  # the config keys inside the run folder
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
GROUP_EXIT_WAIT_S = 600  # after the trainer's first process exits, how long its group may take to follow
ALLOC_CONF = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")  # torch's allocator settings: the new name, the old
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


def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts and lists; InputError naming the key when the path does not fit."""
    keys = dotted.split(".")
    node: Any = config
    for depth, key in enumerate(keys):
        where, last = ".".join(keys[:depth]) or "the recipe", depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(f"--set {dotted}: {where} is a list of {len(node)} item(s); {key!r} is not an index "
                                 f"in it (0 to {len(node) - 1})")
            key = int(key)
        elif not isinstance(node, dict):
            raise InputError(f"--set {dotted}: {where} is {node!r}, not a mapping or a list")
        elif not last:
            node.setdefault(key, {})
        if last:
            node[key] = value
        else:
            node = node[key]


def load_recipe(recipe: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the user's ``--set`` overrides applied; InputError naming the file when it cannot be one."""
    try:
        with open(recipe, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{recipe}: cannot read the recipe ({getattr(err, 'strerror', None) or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{recipe}:{mark.line + 1}" if mark else str(recipe)
        raise InputError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(config, dict):
        found = "empty" if config is None else f"a {type(config).__name__}"
        raise InputError(f"{recipe}: a recipe is a mapping of Axolotl settings; this file is {found}")
    if not config.get("base_model"):
        raise InputError(f"{recipe}: no base_model")
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def resolve_config(request: StageRun, run_dir: Path, parent: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe with the user's overrides and the run folder's paths applied."""
    config = load_recipe(request.recipe, request.overrides)
    if parent is not None:
        config["base_model"] = str(Path(parent["path"]) / "merged")
    attach_paths(config, run_dir)
    attempts.launcher_settings(config)  # our Axolotl plugins (CPU placement, preemption) and auto-resume
    return config


def attach_paths(config: dict[str, Any], run_dir: Path) -> bool:
    """Point the config's run-folder paths at ``run_dir`` as it is now; True when they pointed elsewhere.

    Axolotl reads ``output_dir`` relative to its working directory, the repository root, where the recipe's data
    and model paths are too. So the run folder's own paths are set to where the folder is each time it is
    opened: a copied or moved run folder writes into itself, never into the folder it was copied from.
    """
    moved = False
    for key, name in RUN_PATHS.items():
        path = run_dir / name
        moved |= not config.get(key) or Path(str(config[key])).resolve() != path.resolve()
        config[key] = str(path)
    return moved


def reattach(run_dir: Path, config: dict[str, Any]) -> None:
    """Rewrite ``config.yaml`` when the run folder was copied or moved since it was written."""
    if attach_paths(config, run_dir):
        print(f"run {run_dir.name}: the folder moved; config.yaml now points into {run_dir}")
        with atomic_writer(run_dir / "config.yaml") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``config.yaml``."""
    return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))


def stage_env(config: dict[str, Any]) -> dict[str, str]:
    """The environment Axolotl runs in: offline by default, no telemetry, wandb off unless asked for, and torch's
    expandable memory segments unless the user set the allocator (as the ``axolotl`` command does; we start
    ``python -m axolotl.cli.train``, which does not)."""
    env = dict(os.environ)
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    if not any(name in env for name in ALLOC_CONF):
        env["PYTORCH_ALLOC_CONF"] = "expandable_segments:True"  # fewer unusable slivers of reserved GPU memory
    env.setdefault("HF_HUB_OFFLINE", "1")
    if not (config.get("use_wandb") or config.get("wandb_project")):
        env["WANDB_MODE"] = "disabled"
    elif not env.get("WANDB_API_KEY"):  # a recipe that logs to wandb logs offline until a key is set
        env.setdefault("WANDB_MODE", "offline")
    if env.get("WANDB_MODE") != "disabled" and config.get("output_dir"):  # wandb/ lands in the run folder
        env.setdefault("WANDB_DIR", str(Path(config["output_dir"]).resolve().parent))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows each step as it happens
    # torchrun passes SIGUSR1 on to its workers like SIGTERM, and gives them time to write the checkpoint.
    env.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(GROUP_EXIT_WAIT_S))
    return env


def step_command(step: str, config_path: Path, run_dir: Path, topology: Topology | None = None) -> list[str]:
    """The Axolotl command for one step (train through torchrun/srun when ``topology`` spans processes)."""
    if step == "train":
        return train_command(config_path, topology or Topology())
    if step == "merge":
        adapter = run_dir / "adapter"
        return [sys.executable, "-m", "axolotl.cli.merge_lora", str(config_path), f"--lora_model_dir={adapter}"]
    raise ValueError(f"unknown step {step!r}")


def place_merged(run_dir: Path) -> None:
    """Axolotl merges into ``adapter/merged``; the run keeps it at ``merged/``, replacing any earlier attempt's."""
    shutil.rmtree(run_dir / "merged", ignore_errors=True)
    shutil.move(run_dir / "adapter" / "merged", run_dir / "merged")


class Stopper:
    """Signal handlers for the launcher while a run works: pass a stop request on to the trainer and wait.

    The first SIGTERM, SIGUSR1 or SIGINT touches the stop file and is sent on to the running step's process
    group (SIGINT as SIGTERM); outside SLURM only, since SLURM signals every process of the job itself. A
    second SIGINT kills the group.
    """

    def __init__(self, run_id: str, stop_file: Path):
        self.run_id, self.stop_file = run_id, stop_file
        self.received: str | None = None
        self.interrupts = 0
        self.pgid: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> Stopper:
        for signum in STOP_SIGNALS:
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        self.received = self.received or name
        self.interrupts += signum == signal.SIGINT
        forward = signal.SIGKILL if self.interrupts > 1 else signal.SIGTERM if signum == signal.SIGINT else signum
        print(f"run {self.run_id}: {name}: asking the trainer for a checkpoint, waiting for it"
              + (" (Ctrl-C again to kill it)" if signum == signal.SIGINT and self.interrupts == 1 else ""), flush=True)
        self.stop_file.touch()
        if self.pgid is not None and (forward == signal.SIGKILL or "SLURM_JOB_ID" not in os.environ):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, forward)


def group_alive(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a live (not zombie) process."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def run_logged(command: list[str], log_path: Path, env: dict[str, str], cwd: Path, stopper: Stopper | None = None,
               lock: RunLock | None = None) -> tuple[int, list[str]]:
    """Run ``command`` in its own process group, echoing its output and writing it, secrets redacted, to ``log_path``.

    The run's lock passes to the command, so the run stays locked while any of its processes lives. When the
    first process exits, the rest of its group (a torchrun's workers, their DataLoader workers) is waited for.
    The log keeps every line; the terminal skips known third-party import noise, and everything from an
    out-of-memory's mark on (launch/plugins/oom.py: the traceback; the launcher says it in one line), unless
    --verbose (common/quiet.py).
    """
    secrets = secret_values(env)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:  # line by line: the log shows each step live
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                                errors="replace", start_new_session=True,
                                pass_fds=(lock.fd,) if lock and lock.fd is not None else ())
        if stopper is not None:
            stopper.pgid = proc.pid
        if lock is not None:
            lock.note(trainer_pid=proc.pid)
        assert proc.stdout is not None
        hidden = False
        try:
            for line in proc.stdout:
                line = redact_text(line, secrets)
                hidden = hidden or (OOM_MARK in line and not quiet.VERBOSE)
                if not hidden and not quiet.is_noise(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
                log.write(line)
                tail.append(line.rstrip("\n"))
        except BaseException:  # Ctrl-C without a Stopper, or the launcher broke: the step must not outlive it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        code = proc.wait()
        deadline = time.monotonic() + GROUP_EXIT_WAIT_S
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if stopper is not None:
            stopper.pgid = None
        return code, list(tail)


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


def reopen(run_dir: Path, wait_s: float) -> tuple[dict[str, Any], dict[str, Any], RunLock]:
    """Lock an existing run folder and read it; a "running" run nobody held is recorded "lost"."""
    lock = RunLock.acquire(run_dir, wait_s)
    try:
        if not (run_dir / MANIFEST).is_file():
            raise InputError(f"{run_dir} exists and is not a run folder (no {MANIFEST}): choose another "
                             "--run-id")
        record = read_manifest(run_dir)
        if record["status"] == "running":  # no process holds the lock: its last attempt died without a word
            lost = attempts.mark_lost(record)
            write_manifest(run_dir, record)
            if lost:
                print(f"run {run_dir.name}: attempt {lost['attempt']} (host {lost['host']}) ended without a record "
                      "(killed, or its node lost): recorded as lost")
        if record["status"] not in attempts.REOPENABLE:
            raise InputError(f"run {run_dir.name} already {record['status']}: choose another --run-id")
        config = read_config(run_dir)
        reattach(run_dir, config)
        return config, record, lock
    except BaseException:
        lock.release()
        raise


def open_run(request: StageRun, submitting: bool = False) -> tuple[Path, dict[str, Any], dict[str, Any], RunLock]:
    """Create the run folder, config and opening manifest, locked; or reopen a queued, preempted or lost run."""
    if request.stage not in STAGE_STEPS:
        raise InputError(f"unknown stage {request.stage!r}: choose from {', '.join(STAGE_STEPS)}")
    if not request.recipe.is_file():
        raise InputError(f"recipe not found: {request.recipe}")
    if request.run_id is not None:
        check_run_id(request.run_id)
    parent = parent_record(request, pending_ok=submitting)
    run_id = request.run_id or new_run_id(request.stage, request.recipe)
    wait_s = SLURM_LOCK_WAIT_S if "SLURM_JOB_ID" in os.environ else 0
    if request.run_id and (request.runs_dir / run_id).exists():
        config, record, lock = reopen(request.runs_dir / run_id, wait_s)
        return request.runs_dir / run_id, config, record, lock
    config = resolve_config(request, request.runs_dir / run_id, parent)  # bad input fails before any folder exists
    created = create(request.runs_dir, run_id, exact=bool(request.run_id))
    if created is None:  # another start made it a moment ago
        config, record, lock = reopen(request.runs_dir / run_id, wait_s)
        return request.runs_dir / run_id, config, record, lock
    run_dir, lock = created
    request.run_id = run_dir.name
    attach_paths(config, run_dir)
    try:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        argv = [Path(sys.executable).name, "-m", "launch", *sys.argv[1:]]
        record = manifest.start(run_dir, stage=request.stage, recipe=request.recipe, config=config, root=request.root,
                                parent=parent, argv=argv, env=stage_env(config),
                                overrides=request.overrides)
    except BaseException:
        lock.release()
        raise
    return run_dir, config, record, lock


def run_stage(request: StageRun) -> Path:
    """Run every step of a stage into its run folder and return it. Raises SystemExit on failure or preemption."""
    run_dir, config, record, lock = open_run(request)
    stopper = Stopper(run_dir.name, run_dir / attempts.STOP_FILE)
    try:
        stopper.install()
        return run_steps(request, run_dir, config, record, lock, stopper)
    finally:
        stopper.restore()
        lock.release()


def end_failed(run_dir: Path, record: dict[str, Any], attempt: dict[str, Any], config: dict[str, Any],
               error: dict[str, Any], outputs: dict[str, str], stage: str) -> None:
    """Record a failed step, "out of memory" when it was one, and end with one line (SystemExit)."""
    step, code, log = error["step"], attempt["exit_code"], run_dir / error["log"]
    oom = out_of_memory.report(run_dir, step, error["log_tail"], config, record)
    if oom:
        error.update(message=oom["message"], out_of_memory=oom)
        attempt["status"] = out_of_memory.STATUS
    manifest.finish(run_dir, record, exit_code=code, outputs=outputs, error=error,
                    status=out_of_memory.STATUS if oom else None)
    if oom:
        raise SystemExit(out_of_memory.report_line(run_dir.name, stage, step, oom, log))
    raise SystemExit(f"run {run_dir.name}: {step} failed with exit code {code}; see {log}")


def run_steps(request: StageRun, run_dir: Path, config: dict[str, Any], record: dict[str, Any], lock: RunLock,
              stopper: Stopper) -> Path:
    """The steps of one attempt, recorded in the manifest as they end."""
    run_id, config_path, env = run_dir.name, run_dir / "config.yaml", stage_env(config)
    if record.get("parent"):  # a queued run's parent was on its way at submission; now it must have succeeded
        parent_record(StageRun(request.stage, request.recipe, request.runs_dir, parent=Path(record["parent"]["path"])),
                      pending_ok=False)
    attempt = attempts.begin(record, run_dir, request.topology.as_record())
    env.update(LAUNCH_ATTEMPT=str(attempt["attempt"]))
    env.setdefault("LAUNCH_STOP_FILE", str((run_dir / attempts.STOP_FILE).resolve()))
    stopper.stop_file = Path(env["LAUNCH_STOP_FILE"])
    write_manifest(run_dir, record)
    print(f"run {run_id}: {request.stage} from {request.recipe}, base model {config['base_model']}, "
          f"attempt {attempt['attempt']}, {request.topology.world_size} process(es)")

    outputs = dict(record.get("outputs") or {}, config="config.yaml")
    steps = [s for s in STAGE_STEPS[request.stage] if request.merge or s != "merge"]
    for step in steps:
        suffix = "" if attempt["attempt"] == 1 else f".attempt{attempt['attempt']}"
        log_name = f"logs/{step}{suffix}.log"
        if stopper.received:  # asked to stop between steps
            code, tail = 128 + signal.Signals[stopper.received], []
        else:
            print(f"run {run_id}: {step} (log: {run_dir / log_name})")
            try:
                command = step_command(step, config_path, run_dir, request.topology)
                code, tail = run_logged(command, run_dir / log_name, env, request.root, stopper, lock)
            except BaseException as err:  # could not start, or broke: still say so in the manifest
                code, tail = 130 if isinstance(err, KeyboardInterrupt) else 1, [repr(err)]
                attempts.end(attempt, run_dir, code)
                manifest.finish(run_dir, record, exit_code=code, outputs=outputs,
                                error={"step": step, "message": repr(err), "log": log_name, "log_tail": tail})
                raise
            outputs[f"log_{step}"] = log_name
        if attempts.end(attempt, run_dir, code, stopper.received) == "preempted":
            if step == "train":
                record.update(train_record.summarize_training(run_dir, config, run_dir / log_name))  # losses so far
            manifest.finish(run_dir, record, exit_code=code, outputs=outputs, error=None)
            record["status"] = "preempted"
            write_manifest(run_dir, record)
            saved = (attempt.get("preempted") or {}).get("checkpoint")
            print(f"run {run_id}: preempted at {step}"
                  + (f", checkpoint {Path(saved).name} saved" if saved else ", no new checkpoint")
                  + f"; the same command (--run-id {run_id}) resumes it")
            raise SystemExit(PREEMPTED_EXIT)
        if code != 0:
            error = {"step": step, "message": f"axolotl {step} exited with {code}", "log": log_name, "log_tail": tail}
            end_failed(run_dir, record, attempt, config, error, outputs, request.stage)
        if step == "train":
            outputs["adapter"] = "adapter"
            # for `launch reproduce`
            record.update(train_record.summarize_training(run_dir, config, run_dir / log_name))
        if step == "merge":
            place_merged(run_dir)
            outputs["merged"] = "merged"

    manifest.finish(run_dir, record, exit_code=0, error=None, outputs=outputs)
    print(f"run {run_id}: done -> {run_dir}")
    return run_dir
