"""Axolotl plugin for bench/gpu_throughput.py: trained tokens per second per GPU, peak memory, attention run.

    plugins:
      - bench.throughput_plugin.ThroughputPlugin     # results to the JSON file named by $BENCH_RESULT

Counts the trained tokens (labels other than -100) of every batch the trainer steps on, and times the steps
after the first $BENCH_WARMUP (default 3) with the GPU synchronised at both ends. Peak memory is the running
maximum of torch's peak allocated and reserved bytes, read at each timed step's end: the trainer's log, which
comes after the step-end callbacks, resets the peak counters (Axolotl's get_gpu_memory_usage), so a reading
at train end sees only what stays resident. The counters are reset once, when the warmup ends. The result
also names the attention the model really ran: its ``_attn_implementation``, and whether Axolotl's
variable-length SDPA path (packed rows kept apart through cu_seqlens) was installed.
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

GIB = 2**30


def attention_run(model: Any) -> str:
    """The attention implementation the model runs, with Axolotl's varlen SDPA patch when it is installed."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = str(getattr(getattr(model, "config", None), "_attn_implementation", None) or "unknown")
    if name == "sdpa" and hasattr(ALL_ATTENTION_FUNCTIONS["sdpa"], "_axolotl_sdpa_original"):
        return "sdpa (varlen_attn for packed rows)"
    return name


class ThroughputPlugin(BasePlugin):
    """Adds the timing callback and wraps the trainer's step to count tokens."""

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
        meter = {"tokens": 0, "timed_tokens": 0, "seconds": 0.0, "steps": 0, "allocated": 0, "reserved": 0,
                 "batch_shapes": set()}
        step = trainer.training_step

        def counted(model, inputs, *args, **kwargs):
            meter["tokens"] += int((inputs["labels"] != -100).sum())
            meter["batch_shapes"].add(tuple(inputs["input_ids"].shape))
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = counted
        return [StepTimer(meter, int(os.environ.get("BENCH_WARMUP", "3")), trainer)]


class StepTimer(TrainerCallback):
    """Times each step after the warmup, keeps the running memory peak; writes the result when training ends."""

    def __init__(self, meter: dict[str, Any], warmup: int, trainer: Any):
        self.meter, self.warmup, self.trainer = meter, warmup, trainer

    @staticmethod
    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.meter["attention"] = attention_run(model or self.trainer.model)

    def on_step_begin(self, args, state, control, **kwargs):
        self.sync()
        self.meter["start"], self.meter["before"] = time.perf_counter(), self.meter["tokens"]

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        if state.global_step > self.warmup:
            self.meter["seconds"] += time.perf_counter() - self.meter["start"]
            self.meter["timed_tokens"] += self.meter["tokens"] - self.meter["before"]
            self.meter["steps"] += 1
            if torch.cuda.is_available():  # before the trainer's log resets the counters
                self.meter["allocated"] = max(self.meter["allocated"], torch.cuda.max_memory_allocated())
                self.meter["reserved"] = max(self.meter["reserved"], torch.cuda.max_memory_reserved())
        elif state.global_step == self.warmup and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_end(self, args, state, control, **kwargs):
        m = self.meter
        result = {"timed_steps": m["steps"], "tokens": m["timed_tokens"], "seconds": round(m["seconds"], 3),
                  "tokens_per_s_per_gpu": m["timed_tokens"] / m["seconds"] if m["seconds"] else None,
                  "attention": m.get("attention"), "batch_shapes": sorted(m["batch_shapes"]),
                  "alloc_conf": os.environ.get("PYTORCH_ALLOC_CONF") or os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
        if torch.cuda.is_available():
            result |= {"gpu": torch.cuda.get_device_name(0), "peak_allocated_gib": m["allocated"] / GIB,
                       "peak_reserved_gib": m["reserved"] / GIB}
        if args.process_index == 0:
            Path(os.environ["BENCH_RESULT"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
