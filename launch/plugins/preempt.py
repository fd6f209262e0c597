"""Preemption-safe training: on SIGUSR1, SIGTERM or a stop file, save a checkpoint and exit for requeue.

    torchrun ... -m axolotl.cli.train runs/<id>/config.yaml   # config lists this plugin and
                                                               # auto_resume_from_checkpoints: true

Every rank installs the handlers. At each step end the ranks agree (an all-reduce of "stop asked") so
they stop at the same step; Trainer then writes ``checkpoint-<step>`` and rank 0 leaves
``preempted.json`` in the output folder before all ranks exit with code 75 (EX_TEMPFAIL). The stage
runner reads that file as "preempted, requeue me". A requeued run resumes through Axolotl's
``auto_resume_from_checkpoints``; rank 0 records the step training (re)started at in ``train_start.json``.
The batch script asks for a stop by touching the file named in ``LAUNCH_STOP_FILE`` (SLURM's
``--signal=B:USR1@secs`` before the time limit); ``scontrol requeue`` and preemption send SIGTERM.

A SIGTERM sent to every process (SLURM, ``kill -TERM -PGID``) also reaches the DataLoader workers, and torch's
worker handler dies of it, which fails the whole step. So the trainer blocks SIGTERM and SIGUSR1 in its main thread
before any worker is forked: workers inherit the mask and never see them, while the trainer reads them at each step
end as pending signals (or through its handler, when another thread takes them). The one thing the mask breaks is
Python's exit after an uncaught error (an out-of-memory): multiprocessing ends the workers still alive with SIGTERM
and waits for them, forever; so at exit the plugin kills them first (SIGKILL, which no mask stops), with torch's
"worker killed" SIGCHLD check off. Rank 0 also appends each logged training loss (with TRL's DPO reward margin,
``rewards/margins``, when logged), keyed by the trainer's global step and the attempt (``LAUNCH_ATTEMPT``), to
``train_losses.jsonl`` in the output folder, and each evaluation's ``eval_loss`` to ``eval_losses.jsonl``: the run's
losses across attempts.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
from pathlib import Path

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from common.files import write_json_atomic
from launch.plugins import (
    EVAL_LOSSES_FILE,
    LOSSES_FILE,
    MARGINS,
    PREEMPTED_EXIT,
    PREEMPTED_FILE,
    TRAIN_START_FILE,
)

LOG = logging.getLogger(__name__)
LOGGED_ROWS = {LOSSES_FILE: ("loss", MARGINS), EVAL_LOSSES_FILE: ("eval_loss", f"eval_{MARGINS}")}  # file: value, extra
STOP_SIGNALS = {signal.SIGTERM, signal.SIGUSR1}


class PreemptionCallback(TrainerCallback):
    """Turns a stop request into one checkpoint at the same step on every rank, then a clean exit."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.stopping = False
        self.stop_file = os.environ.get("LAUNCH_STOP_FILE")

    def ask_to_stop(self, signum: int, _frame) -> None:
        self.signal_name = signal.Signals(signum).name

    def stop_agreed(self, args) -> bool:
        """Whether any rank saw a signal or the stop file, agreed across ranks."""
        import torch
        import torch.distributed as dist

        pending = signal.sigpending() & STOP_SIGNALS  # blocked in this thread: they wait here until read
        if pending:
            self.signal_name = self.signal_name or min(pending).name
            signal.sigtimedwait(pending, 0)
        asked = self.signal_name is not None or bool(self.stop_file and os.path.exists(self.stop_file))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([int(asked)], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            asked = bool(flag.item())
        return asked

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_json_atomic(Path(args.output_dir) / TRAIN_START_FILE,
                       {"global_step": state.global_step, "max_steps": state.max_steps})
        if state.global_step > 0:
            LOG.info("resuming at step %d of %d", state.global_step, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """A training log (``loss``) is a row of LOSSES_FILE; an evaluation's (``eval_loss``), of EVAL_LOSSES_FILE."""
        if not (state.is_world_process_zero and logs):
            return
        attempt = os.environ.get("LAUNCH_ATTEMPT")
        for name, (key, extra) in LOGGED_ROWS.items():
            if key not in logs:
                continue
            row = {"step": state.global_step, key: float(logs[key]), "epoch": logs.get("epoch"),
                   "attempt": int(attempt) if attempt and attempt.isdigit() else None}
            if extra in logs:
                row[extra] = float(logs[extra])
            with open(Path(args.output_dir) / name, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")

    def on_step_end(self, args, state, control, **kwargs):
        if not self.stopping and self.stop_agreed(args):
            self.stopping = True
            LOG.warning("stop requested (%s): saving a checkpoint at step %d, then exiting for requeue",
                        self.signal_name or "stop file", state.global_step)
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        if not self.stopping:
            return control
        import torch.distributed as dist

        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            write_json_atomic(Path(args.output_dir) / PREEMPTED_FILE,
                       {"global_step": state.global_step, "checkpoint": str(checkpoint),
                        "reason": self.signal_name or "stop file"})
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank leaves while rank 0 is still writing
        LOG.warning("checkpoint-%d saved; exiting with %d so the job can be requeued", state.global_step,
                    PREEMPTED_EXIT)
        raise SystemExit(PREEMPTED_EXIT)


def end_workers() -> None:
    """At exit: kill the daemon processes still alive (DataLoader workers, whose SIGTERM is blocked), which
    multiprocessing's own exit would SIGTERM and then wait for without end."""
    import multiprocessing

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would raise "DataLoader worker ... killed"
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


class PreemptionPlugin(BasePlugin):
    """Adds :class:`PreemptionCallback`, routes SIGUSR1 and SIGTERM to it and keeps them from DataLoader workers."""

    def post_trainer_create(self, cfg, trainer) -> None:
        """DataLoader workers forked once, not again at every epoch (``dataloader_persistent_workers``).

        Forking the trainer while its other threads start or end (the last epoch's queue feeder threads)
        can leave the child stuck in CPython 3.11's after-fork code (seen with torchrun on 2 CPU processes
        and one-step epochs: a worker waiting forever in ``PyOS_AfterFork_Child``, its rank in the next
        all-reduce). The batches are the same; the sampler stays in the trainer.
        """
        if trainer.args.dataloader_num_workers > 0 and not trainer.args.dataloader_persistent_workers:
            trainer.args.dataloader_persistent_workers = True

    def add_callbacks_pre_trainer(self, cfg, model):
        callback = PreemptionCallback()
        for signum in STOP_SIGNALS:
            signal.signal(signum, callback.ask_to_stop)
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # inherited by the workers forked from here on
        atexit.register(end_workers)  # runs before multiprocessing's exit hook (registered earlier)
        return [callback]
