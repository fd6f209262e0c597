"""Utilisation from measured points: the share of a GPU's dense bf16 peak that a training mode executes.

    python -m launch plan --points          the points, the utilisation each implies, one value per GPU and mode

preflight/measured_points.yaml holds each measured run: GPU, date, source file, trained tokens/s, the configuration
and the rows. A point's utilisation is what it implies: executed FLOPs per second (launch/preflight/batches.py: padding,
packing, recomputation all count) over the GPU's peak. A mode is what changes that efficiency: the LoRA path
(PEFT's or Axolotl's fused kernels), Liger's kernels, a fused loss, checkpointing, trainable token rows, the
stage and the engine. Padding and packing are not part of it: the FLOP count covers them, so one value per (GPU,
mode), the geometric mean of its points, must predict a mode's unpacked and packed runs alike. A plan for a GPU
or mode without points takes the nearest: same GPU first, then a GPU of the same peak, then the fewest differing
features, and says it is a fallback.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from launch.preflight import batches
from launch.preflight import estimates as est

ROOT = Path(__file__).resolve().parents[2]
POINTS = Path(__file__).with_name("measured_points.yaml")


@dataclass(frozen=True)
class Point:
    """One measured run and the utilisation it implies."""

    name: str
    gpu: str
    date: str
    source: str
    model: str
    config: dict[str, Any]
    mode: dict[str, Any]
    tokens_per_s: float
    utilisation: float
    peak_reserved_gib: float | None
    peak_allocated_gib: float | None
    alloc_conf: str


@dataclass(frozen=True)
class Choice:
    """The utilisation a plan uses, the points behind it, and why those (a fallback says so)."""

    value: float
    points: tuple[Point, ...]
    fallback: str | None


def lora_kernels(config: dict[str, Any], gpus: int) -> bool:
    """Whether Axolotl runs its fused LoRA kernels: as the recipe sets them, else on by Axolotl 0.19's default
    for LoRA/QLoRA SFT (utils/schemas/config.py) unless remote code or FSDP1 on several GPUs."""
    keys = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")
    if any(config.get(key) is not None for key in (*keys, "lora_embedding_kernel")) or config.get("rl"):
        return any(config.get(key) for key in keys)
    fsdp1 = bool(config.get("fsdp_config")) and str(config.get("fsdp_version")) != "2" and gpus > 1
    return config.get("adapter") in ("lora", "qlora") and not config.get("trust_remote_code") and not fsdp1


def mode_of(config: dict[str, Any], engine: str, gpus: int) -> dict[str, Any]:
    """The features of a configuration that change how efficiently the GPU executes its FLOPs."""
    return {"lora": "fused kernels" if lora_kernels(config, gpus) else "PEFT",
            "liger": any(config.get(f"liger_{k}") for k in ("rope", "rms_norm", "glu_activation", "layer_norm")),
            "fused loss": bool(config.get("liger_fused_linear_cross_entropy") or config.get("cut_cross_entropy")),
            "checkpointing": bool(config.get("gradient_checkpointing")),
            "token rows": bool(config.get("peft_trainable_token_indices")),
            "stage": "dpo" if config.get("rl") else "sft", "engine": engine}


def mode_words(mode: dict[str, Any]) -> str:
    """A mode in a few words: "PEFT, checkpointing, token rows"."""
    return ", ".join(str(value) if not isinstance(value, bool) else key for key, value in mode.items()
                     if value and (key, value) not in (("stage", "sft"), ("engine", "one GPU")))


def point_config(entry: dict[str, Any]) -> dict[str, Any]:
    """A point's configuration: its recipe with the keys the run set (null: removed)."""
    config = yaml.safe_load((ROOT / entry["recipe"]).read_text(encoding="utf-8"))
    for key, value in (entry.get("set") or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


@functools.cache
def points_file(path: Path = POINTS) -> dict[str, Any]:
    """measured_points.yaml as read: its row sets and points."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def row_set(name: str, path: Path = POINTS) -> batches.Rows:
    """A row set the points were measured on ("bench-600": bench/gpu_throughput.py write_rows' lengths)."""
    entry = points_file(path)["rows"][name]
    return batches.Rows(np.array(entry["lengths"]), len(entry["lengths"]), float(entry.get("labelled", 1.0)),
                        entry.get("source", name))


@functools.cache
def load(path: Path = POINTS) -> tuple[Point, ...]:
    """Every measured point with the utilisation it implies."""
    found = []
    for entry in points_file(path)["points"]:
        rows = row_set(entry["rows"], path)
        config, shape = point_config(entry), est.MODELS[entry["model"]]
        n_lora = est.lora_params(shape, int(config["lora_r"]), config.get("lora_target_modules") or est.LINEAR_NAMES)
        batch = batches.micro_batch(rows, config)
        per_token = batches.flops(shape, n_lora, config, batch)["hardware"] / (batch.tokens * rows.labelled)
        tokens_per_s = float(entry["trained_tokens_per_s_per_gpu"])
        found.append(Point(entry["name"], entry["gpu"], str(entry["date"]), entry["source"], entry["model"], config,
                           mode_of(config, "one GPU", 1), tokens_per_s,
                           tokens_per_s * per_token / est.GPUS[entry["gpu"]][1], entry.get("peak_reserved_gib"),
                           entry.get("peak_allocated_gib"), str(entry.get("alloc_conf", "default"))))
    return tuple(found)


def nearest(points: tuple[Point, ...], gpu: str, mode: dict[str, Any]) -> Choice:
    """One utilisation for ``gpu`` and ``mode``: the geometric mean of the nearest (GPU, mode)'s points."""
    if not points:
        raise SystemExit(f"{POINTS}: no measured points; pass --utilisation")

    def distance(point: Point) -> tuple[int, int, int]:
        differs = sum(point.mode[key] != value for key, value in mode.items())
        return (est.GPUS[point.gpu][1] != est.GPUS[gpu][1], point.gpu != gpu, differs)

    best = min(points, key=lambda p: (*distance(p), p.gpu, mode_words(p.mode)))
    chosen = tuple(p for p in points if p.gpu == best.gpu and p.mode == best.mode)
    mean = math.exp(sum(math.log(p.utilisation) for p in chosen) / len(chosen))
    notes = []
    if chosen[0].gpu != gpu:
        same = est.GPUS[chosen[0].gpu][1] == est.GPUS[gpu][1]
        notes.append(f"no point on {gpu}: {chosen[0].gpu}'s" + (
            f" ({gpu} has its dense bf16 peak, {est.GPUS[gpu][1] / 1e12:.0f} TFLOP/s)" if same else
            f" (a GPU of another peak: {est.GPUS[chosen[0].gpu][1] / 1e12:.0f}, not "
            f"{est.GPUS[gpu][1] / 1e12:.0f} TFLOP/s)"))
    differs = [f"{key} {_said(chosen[0].mode[key])} there, {_said(value)} here" for key, value in mode.items()
               if chosen[0].mode[key] != value]
    if differs:
        notes.append("no point in this mode: the nearest (" + "; ".join(differs) + ")")
    return Choice(mean, chosen, "; ".join(notes) or None)


def _said(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def table(points: tuple[Point, ...]) -> list[str]:
    """The points as a markdown table: each one's utilisation, its mode's value, and that value's prediction."""
    lines = ["| GPU | date | point | mode | packed | trained tokens/s | implied utilisation | mode's utilisation | "
             "predicted tokens/s | predicted / measured | source |", "|" + " --- |" * 11]
    for point in points:
        mode = nearest(points, point.gpu, point.mode).value
        predicted = point.tokens_per_s * mode / point.utilisation
        lines.append(f"| {point.gpu} | {point.date} | {point.name} | {mode_words(point.mode)} | "
                     f"{'yes' if point.config.get('sample_packing') else 'no'} | {point.tokens_per_s:,.0f} | "
                     f"{point.utilisation:.1%} | {mode:.1%} | {predicted:,.0f} | {predicted / point.tokens_per_s:.2f} "
                     f"| {point.source} |")
    return lines
