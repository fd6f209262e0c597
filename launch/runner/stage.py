"""Run one training stage locally: resolve the recipe, run Axolotl, merge the adapter, record it all.

    python -m launch sft recipes/smollm2-135m/v1/sft.yaml
    python -m launch dpo recipes/smollm2-135m/v1/dpo.yaml --parent runs/<sft-run-id>

A run folder ``runs/<run-id>/`` gets ``config.yaml`` (the recipe as run), ``adapter/``, ``merged/``, ``logs/``,
``loss.png`` (launch/runner/loss_curve.py) and ``manifest.json``. Axolotl does the work; we give it paths; ``Run``
(launch/lifecycle/run.py) keeps the records. The terminal gets a header, a progress line per step and a summary
(launch/runner/terminal.py); the trainer's own output goes to ``logs/<step>.log`` (``--verbose``: the terminal too).

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
from pathlib import Path
from typing import Any

from common import quiet
from common.errors import StepFailed, note_log
from common.rundir import RunLock
from common.secrets import redact_text, secret_values
from launch.lifecycle.config import GROUP_EXIT_WAIT_S, stage_env
from launch.lifecycle.run import Run, StageRun
from launch.lifecycle.topology import Topology
from launch.plugins import OOM_MARK, PREEMPTED_EXIT
from launch.registry import STAGE_STEPS  # each stage's Axolotl steps
from launch.runner import loss_curve, out_of_memory, terminal
from launch.submit.distributed import train_command

LOG_TAIL_LINES = 40
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


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
        print(("\n" if sys.stderr.isatty() else "")  # below a progress bar, not on it
              + f"run {self.run_id}: {name}: asking the trainer for a checkpoint, waiting for it"
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
               lock: RunLock | None = None, watch: terminal.Watch | None = None,
               echo: bool = False) -> tuple[int, list[str]]:
    """Run ``command`` in its own process group, writing its output, secrets redacted, to ``log_path``.

    The run's lock passes to the command, so the run stays locked while any of its processes lives. When the
    first process exits, the rest of its group (a torchrun's workers, their DataLoader workers) is waited for.
    The log keeps every line. Each line moves ``watch`` (the step's progress line). With ``echo`` (a child whose
    output is already short) or --verbose, lines reach the terminal too, less known third-party noise and
    everything from an out-of-memory's mark on (launch/plugins/oom.py: the traceback; the launcher says it in one
    line) unless --verbose (common/quiet.py).
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
                if (echo or quiet.VERBOSE) and not hidden and not quiet.is_noise(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if watch is not None:
                    watch.feed(line)
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


def run_stage(request: StageRun) -> Path:
    """Run every step of a stage into its run folder and return it. Raises SystemExit on failure or preemption."""
    with Run.open(request) as run:
        note_log(run.path / "logs" / "launch.log")  # a launcher bug's traceback, named in its one line
        stopper = Stopper(run.id, run.stop_file)
        try:
            stopper.install()
            return run_steps(request, run, stopper)
        finally:
            stopper.restore()


def end_failed(run: Run, attempt: dict[str, Any], step: str, code: int, log_name: str, tail: list[str],
               stage: str) -> None:
    """Record a failed step, "out of memory" when it was one, and end with its cause and log (SystemExit)."""
    log = run.path / log_name
    error = {"step": step, "message": f"axolotl {step} exited with {code}: {terminal.cause(tail, code)}",
             "log": log_name, "log_tail": tail}
    oom = out_of_memory.report(run.path, step, tail, run.config, run.record)
    if oom:
        error.update(message=oom["message"], out_of_memory=oom)
        attempt["status"] = out_of_memory.STATUS
    run.finish(exit_code=code, error=error, status=out_of_memory.STATUS if oom else None)
    if oom:
        raise StepFailed(out_of_memory.report_line(run.id, stage, step, oom, log))
    raise StepFailed(terminal.failure(run.id, step, code, tail, log))


def record_train_step(run: Run, log: Path) -> None:
    """The train step's records (losses so far, the tokenized data's hash) and its loss curve, ``loss.png``."""
    run.record_training(log)
    try:
        if loss_curve.write_loss_curve(run.path, run.record) is not None:
            run.record_output("loss_curve", loss_curve.LOSS_CURVE)
    except (OSError, ValueError, RuntimeError) as err:  # a drawing that fails costs the picture, not the run
        terminal.say(f"run {run.id}: no loss curve: {err}")


def run_steps(request: StageRun, run: Run, stopper: Stopper) -> Path:
    """The steps of one attempt, recorded in the manifest as they end."""
    env = stage_env(run.config)
    run.parent_check(request)
    attempt = run.begin_attempt(request.topology)
    env.update(LAUNCH_ATTEMPT=str(attempt["attempt"]))
    env.setdefault("LAUNCH_STOP_FILE", str(run.stop_file.resolve()))
    stopper.stop_file = Path(env["LAUNCH_STOP_FILE"])
    for line in terminal.header_lines(request.stage, request.recipe, run.path, run.config, run.record,
                                      request.topology, attempt["attempt"], request.root):
        terminal.say(line)
    logged: dict[str, Any] = {}
    steps = [s for s in STAGE_STEPS[request.stage] if request.merge or s != "merge"]
    for step in steps:
        suffix = "" if attempt["attempt"] == 1 else f".attempt{attempt['attempt']}"
        log_name = f"logs/{step}{suffix}.log"
        if stopper.received:  # asked to stop between steps
            code, tail = 128 + signal.Signals[stopper.received], []
        else:
            watch = terminal.Watch(step)
            try:
                command = step_command(step, run.config_path, run.path, request.topology)
                code, tail = run_logged(command, run.path / log_name, env, request.root, stopper, run.lock, watch)
            except BaseException as err:  # could not start, or broke: still say so in the manifest
                watch.close("stopped")
                code, tail = 130 if isinstance(err, KeyboardInterrupt) else 1, [repr(err)]
                run.end_step(attempt, code)
                run.finish(exit_code=code, error={"step": step, "message": repr(err), "log": log_name,
                                                  "log_tail": tail})
                raise
            watch.close("done" if code == 0 else "stopped" if stopper.received else "failed")
            logged.update(watch.values)
            run.record_output(f"log_{step}", log_name)
        if run.end_step(attempt, code, stopper.received) == "preempted":
            if step == "train":
                record_train_step(run, run.path / log_name)  # losses so far
            run.finish(exit_code=code, status="preempted")
            saved = (attempt.get("preempted") or {}).get("checkpoint")
            terminal.say(f"run {run.id}: preempted at {step}"
                         + (f", checkpoint {Path(saved).name} saved" if saved else ", no new checkpoint")
                         + f"; the same command (--run-id {run.id}) resumes it")
            raise SystemExit(PREEMPTED_EXIT)
        if code != 0:
            end_failed(run, attempt, step, code, log_name, tail, request.stage)
        if step == "train":
            if "merge" not in steps:  # else after the merge, which writes into adapter/ too (Axolotl's debug.log)
                run.record_output("adapter", "adapter")
            record_train_step(run, run.path / log_name)  # for `launch reproduce`
        if step == "merge":
            place_merged(run.path)
            run.record_output("adapter", "adapter")
            run.record_output("merged", "merged")

    run.finish(exit_code=0)
    for line in terminal.summary_lines(request.stage, request.recipe, run.path, run.record, logged):
        terminal.say(line)
    return run.path
