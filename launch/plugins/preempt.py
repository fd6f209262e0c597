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
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from launch.records import write_json_atomic

LOG = logging.getLogger(__name__)
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: try again later
PREEMPTED_FILE = "preempted.json"
TRAIN_START_FILE = "train_start.json"


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


class PreemptionPlugin(BasePlugin):
    """Adds :class:`PreemptionCallback` and routes SIGUSR1 and SIGTERM to it."""

    def add_callbacks_pre_trainer(self, cfg, model):
        callback = PreemptionCallback()
        for signum in (signal.SIGUSR1, signal.SIGTERM):
            signal.signal(signum, callback.ask_to_stop)
        return [callback]
