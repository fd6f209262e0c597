"""A CUDA out-of-memory, told in one line: the stage, the step, the GiB asked and free, and what would fit.

    run <id>: out of memory in sft train at step 3 of 6: asked 2.00 GiB with 1.10 GiB free of 79.19 GiB on NVIDIA
    H100 80GB HBM3; h100-80gb: micro_batch_size 2 with gradient_accumulation_steps 6 ... fits: ... (launch plan);
    log: runs/<id>/logs/train.log

The run's manifest says ``"status": "out of memory"``, with these figures under ``error.out_of_memory``. The step
comes from the plugin's note (launch/plugins/oom.py writes ``adapter/out_of_memory.json``); without one (a process
that never loaded the plugin, a run folder from before it) torch's message in the log's last lines is enough. The
figures are read from that message, as torch's CUDA caching allocator words it (c10/cuda/CUDACachingAllocator.cpp):
"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.10 GiB is
free. Including non-PyTorch memory, ...". The GPU's name (the trainer's CUDA device, else the host's first
nvidia-smi GPU in the manifest) picks ``launch plan``'s GPU kind for the suggestion.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from launch.plugins import OOM_FILE

STATUS = "out of memory"
TORCH_WORDS = "CUDA out of memory"
SIZE = r"([\d.]+) (bytes|KiB|MiB|GiB)"  # c10's format_size
TORCH_MESSAGE = re.compile(rf"{TORCH_WORDS}\. Tried to allocate {SIZE}\. GPU (\d+) has a total capac\w* of {SIZE} "
                           rf"of which {SIZE} is free")  # "capacty" until torch 2.2
TO_GIB = {"bytes": 2**-30, "KiB": 2**-20, "MiB": 2**-10, "GiB": 1.0}
GPU_KINDS = (("H200", "h200-141gb"), ("H100", "h100-80gb"), ("A100", "a100-80gb"))  # torch's device name -> plan's
# launch plan plans training; Axolotl merges shard by shard, on CUDA when torch sees a GPU, else on the CPU.
MERGE_ADVICE = ("launch plan plans training, not the merge: free the GPU, or merge on the CPU with "
                "CUDA_VISIBLE_DEVICES= python -m launch merge {run_dir}")


def gib(value: str, unit: str) -> float:
    return round(float(value) * TO_GIB[unit], 2)


def figures(message: str) -> dict[str, Any]:
    """GiB asked, free and in total, and the device index, from torch's message; {} when it is worded otherwise."""
    found = TORCH_MESSAGE.search(message)
    if not found:
        return {}
    asked, asked_unit, device, total, total_unit, free, free_unit = found.groups()
    return {"asked_gib": gib(asked, asked_unit), "free_gib": gib(free, free_unit),
            "total_gib": gib(total, total_unit), "device": int(device)}


def gpu_kind(name: str | None) -> str | None:
    """``launch plan``'s GPU kind for a device name ("NVIDIA H100 80GB HBM3" -> "h100-80gb"); None if it has none."""
    upper = (name or "").upper()
    if "40GB" in upper:  # an A100 40GB is not the planner's a100-80gb
        return None
    return next((kind for mark, kind in GPU_KINDS if mark in upper), None)


def host_gpu(host: dict[str, Any] | None) -> str | None:
    """The first GPU's name in the manifest's host record (nvidia-smi's "name, memory, driver" lines)."""
    gpus = (host or {}).get("gpus") or [""]
    return gpus[0].split(",")[0].strip() or None


def plan_advice(config: dict[str, Any], gpu: str | None, gpus: int = 1) -> str:
    """``launch plan``'s suggestion for that GPU, or why there is none."""
    kind = gpu_kind(gpu)
    if kind is None:
        return f"no suggestion: launch plan knows no GPU like {gpu!r}" if gpu else "no suggestion: no GPU name recorded"
    from launch.preflight.plan import suggestion as plan_suggestion

    try:
        return plan_suggestion(config, kind, gpus)
    except (SystemExit, OSError, LookupError, ValueError, TypeError) as err:  # the report must not fail in turn
        return f"no suggestion from launch plan for {kind} ({err})"


def read(run_dir: Path, tail: list[str]) -> dict[str, Any] | None:
    """The out-of-memory a failed step died of (the plugin's note, else torch's message in the log's tail), or None."""
    note: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        note = json.loads((run_dir / "adapter" / OOM_FILE).read_text(encoding="utf-8"))
    message = note.get("message") or next((line[line.index(TORCH_WORDS):] for line in reversed(tail)
                                           if TORCH_WORDS in line), None)
    if not message:
        return None
    kept = {key: note.get(key) for key in ("step", "max_steps", "phase", "gpu", "rank")}
    return {**kept, **figures(message), "message": message.splitlines()[0]}


def report(run_dir: Path, step: str, tail: list[str], config: dict[str, Any],
           record: dict[str, Any]) -> dict[str, Any] | None:
    """What the manifest records of a step's out-of-memory (with the GPU kind and a suggestion), or None."""
    found = read(run_dir, tail)
    if found is None:
        return None
    topology = ((record.get("attempts") or [{}])[-1].get("topology")) or {}
    gpus = int(topology.get("world_size", 1)) if topology.get("device") == "gpu" else 1
    found["gpu"] = found["gpu"] or host_gpu(record.get("host"))
    advice = MERGE_ADVICE.format(run_dir=run_dir) if step == "merge" else plan_advice(config, found["gpu"], gpus)
    found.update(gpu_kind=gpu_kind(found["gpu"]), suggestion=advice)
    return found


def when(found: dict[str, Any]) -> str:
    """In training: " at step 3 of 6", " after step 3 of 6 (...)", " before training began", or "" (not noted)."""
    step, total = found.get("step"), f" of {found['max_steps']}" if found.get("max_steps") else ""
    return {"in step": f" at step {step}{total}",
            "after step": f" after step {step}{total} (logging, evaluating or saving)",
            "before training": " before training began"}.get(found.get("phase") or "", "")


def report_line(run_id: str, stage: str, step: str, found: dict[str, Any], log: Path) -> str:
    """The line the launcher ends with."""
    if "asked_gib" in found:
        memory = (f"asked {found['asked_gib']:.2f} GiB with {found['free_gib']:.2f} GiB free of "
                  f"{found['total_gib']:.2f} GiB")
    else:
        memory = f"torch said: {found['message'][:200]}"
    on = f" on {found['gpu']}" if found.get("gpu") else ""
    at = when(found) if step == "train" else ""
    return f"run {run_id}: {STATUS} in {stage} {step}{at}: {memory}{on}; {found['suggestion']}; log: {log}"
