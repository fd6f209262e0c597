"""Axolotl plugin for bench/gpu_throughput.py: trained tokens per second per GPU, and peak memory.

    plugins:
      - bench.throughput_plugin.ThroughputPlugin     # results to the JSON file named by $BENCH_RESULT

Counts the trained tokens (labels other than -100) of every batch the trainer steps on, times the steps
after the first $BENCH_WARMUP (default 3) with the GPU synchronised at both ends, and at the end writes
the timed tokens, seconds, tokens/s and, on a GPU, its name and the peak allocated and reserved memory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback


class ThroughputPlugin(BasePlugin):
    """Adds the timing callback and wraps the trainer's step to count tokens."""

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
        meter = {"tokens": 0, "timed_tokens": 0, "seconds": 0.0, "steps": 0}
        step = trainer.training_step

        def counted(model, inputs, *args, **kwargs):
            meter["tokens"] += int((inputs["labels"] != -100).sum())
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted
        return [StepTimer(meter, int(os.environ.get("BENCH_WARMUP", "3")))]


class StepTimer(TrainerCallback):
    """Times each step after the warmup; writes the result when training ends."""

    def __init__(self, meter: dict[str, Any], warmup: int):
        self.meter, self.warmup = meter, warmup

    @staticmethod
    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self.sync()
        self.meter["start"], self.meter["before"] = time.perf_counter(), self.meter["tokens"]

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        if state.global_step > self.warmup:
            self.meter["seconds"] += time.perf_counter() - self.meter["start"]
            self.meter["timed_tokens"] += self.meter["tokens"] - self.meter["before"]
            self.meter["steps"] += 1

    def on_train_end(self, args, state, control, **kwargs):
        m = self.meter
        result = {"timed_steps": m["steps"], "tokens": m["timed_tokens"], "seconds": round(m["seconds"], 3),
                  "tokens_per_s_per_gpu": m["timed_tokens"] / m["seconds"] if m["seconds"] else None}
        if torch.cuda.is_available():
            result |= {"gpu": torch.cuda.get_device_name(0),
                       "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                       "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
        if args.process_index == 0:
            Path(os.environ["BENCH_RESULT"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
