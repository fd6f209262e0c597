"""Record a CUDA out-of-memory with the training step it hit, so the launcher can say it in one line.

    torchrun ... -m axolotl.cli.train runs/<id>/config.yaml   # config lists launch.plugins.oom.OutOfMemoryPlugin

Axolotl registers plugins when it loads the config, in training and in ``merge_lora`` alike; from then on the
plugin's ``sys.excepthook`` sees an uncaught ``torch.OutOfMemoryError`` (anywhere: model load, a step, evaluation,
saving, the merge). It writes ``out_of_memory.json`` into the output folder (the step, torch's message, the GPU,
the rank), prints ``OOM_MARK`` and hands the error to the previous hook, which prints the traceback as before:
the process fails as it would have. The launcher keeps everything from the mark on out of the terminal (the log
has it) and prints one line instead (launch/runner/out_of_memory.py). A callback keeps the trainer's step for the note.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from common.files import write_json_atomic
from launch.plugins import OOM_FILE, OOM_MARK


class StepTracker(TrainerCallback):
    """Where training is: inside optimizer step ``global_step + 1``, or between steps."""

    def __init__(self) -> None:
        self.state: Any = None
        self.in_step = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.state = state

    def on_step_begin(self, args, state, control, **kwargs):
        self.state, self.in_step = state, True

    def on_step_end(self, args, state, control, **kwargs):
        self.in_step = False

    def where(self) -> dict[str, Any]:
        """The step (as the losses number it) and whether the error came inside it, after it, or before training."""
        if self.state is None:
            return {"step": None, "max_steps": None, "phase": "before training"}
        done = int(self.state.global_step)
        return {"step": done + 1 if self.in_step else done, "max_steps": int(self.state.max_steps or 0) or None,
                "phase": "in step" if self.in_step else "after step"}


def out_of_memory(err: BaseException | None) -> BaseException | None:
    """The CUDA out-of-memory error ``err`` is, or was raised from (its cause or context), if any."""
    import torch

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in str(err):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def gpu_name() -> str | None:
    """The name of this process's CUDA device, or None without one."""
    import torch

    with contextlib.suppress(Exception):
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.cuda.current_device())
    return None


def note(tracker: StepTracker, err: BaseException) -> dict[str, Any]:
    """What ``out_of_memory.json`` holds."""
    return {**tracker.where(), "message": str(err).strip(), "gpu": gpu_name(), "rank": int(os.environ.get("RANK", 0))}


TRACKER = StepTracker()  # one per process: Axolotl makes a new plugin instance each time it loads the config
INSTALLED: list[Path] = []


def install_excepthook(output_dir: Path) -> None:
    """Chain an excepthook that notes an out-of-memory in ``output_dir``, then lets the previous hook print it."""
    previous = sys.excepthook

    def hook(kind, err, tb) -> None:
        found = out_of_memory(err)
        if found is not None:
            with contextlib.suppress(Exception):  # the note must never hide the error itself
                write_json_atomic(output_dir / OOM_FILE, note(TRACKER, found))
            print(OOM_MARK, file=sys.stderr, flush=True)
        previous(kind, err, tb)

    sys.excepthook = hook
    INSTALLED.append(output_dir)


class OutOfMemoryPlugin(BasePlugin):
    """Notes an uncaught CUDA out-of-memory, with the training step, in ``<output_dir>/out_of_memory.json``."""

    def register(self, cfg) -> None:
        if not INSTALLED and cfg.get("output_dir"):  # Axolotl's merge loads the config twice: one hook
            install_excepthook(Path(cfg["output_dir"]))

    def add_callbacks_pre_trainer(self, cfg, model):
        return [TRACKER]
