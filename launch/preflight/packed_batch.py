"""What a packed recipe's optimizer step holds, in tokens and in examples (printed by ``python -m launch check``).

    python -m launch check recipes/openbiollm-8b/v3/sft.yaml

Unpacked, a micro-batch is micro_batch_size rows. Packed (sample_packing), it is micro_batch_size bins of
sequence_len tokens, so a step holds micro_batch_size x sequence_len x GPUs x gradient_accumulation_steps tokens
and, on average, those tokens x the packing efficiency / the mean row length examples. The mean is the built
mixture's (data/build/<mixture>/manifest.json: its token stats' mean, else estimated from their percentiles), or,
while the mixture is not built, that of the bench's rows (bench/gpu_throughput.py write_rows). The efficiency is
the bins' filled fraction when those lengths are packed as Axolotl packs them (launch/preflight/batches.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from launch.preflight import batches, utilisation

BENCH_ROWS = "bench-600"  # the rows every GPU figure in docs/benchmarks.md was measured on (measured_points.yaml)
AXOLOTL_DEFAULTS = {"sequence_len": 512, "micro_batch_size": 1}  # Axolotl 0.19's schema, for a recipe without them
CARD_TOLERANCE = 0.25  # a packed step's examples may differ this much from the card's batch (the mean is an average)


@dataclass(frozen=True)
class PackedBatch:
    """One optimizer step of a packed SFT recipe."""

    bins: int  # micro_batch_size
    sequence_len: int
    gpus: int
    accumulation: int  # gradient_accumulation_steps
    efficiency: float  # the bins' filled fraction
    mean: float  # tokens per row
    source: str  # where the mean comes from
    learning_rate: float
    warmup_steps: int

    @property
    def tokens(self) -> int:
        return self.bins * self.sequence_len * self.gpus * self.accumulation

    @property
    def examples(self) -> float:
        return self.tokens * self.efficiency / self.mean

    @property
    def gpu_count(self) -> str:
        return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}"

    def near(self, card_batch: int) -> bool:
        """Whether the average examples per step are within CARD_TOLERANCE of the card's batch."""
        return abs(self.examples - card_batch) <= CARD_TOLERANCE * card_batch

    def lines(self, card_batch: int | None = None, card_schedule: tuple[float, int] | None = None) -> list[str]:
        """The printed batch semantics, beside the card's batch and (learning rate, warmup steps) when given."""
        steps = f" x {self.accumulation} accumulation steps" if self.accumulation > 1 else ""
        card = f" (the card and v2: {card_batch} rows)" if card_batch else ""
        same = " as the card" if card_schedule == (self.learning_rate, self.warmup_steps) else ""
        return [f"  batch: {self.bins} packed bins x {self.sequence_len} tokens x {self.gpu_count}{steps} = "
                f"{self.tokens:,} tokens per step; ~{self.examples:.1f} examples per step at {self.mean:.0f} tokens "
                f"per row{card}; lr {self.learning_rate:g} and warmup {self.warmup_steps} steps{same}",
                f"  rows: {self.source}; packed bins {self.efficiency:.1%} full (launch/preflight/batches.py)"]

    def off_card(self, card_batch: int, devices: int) -> str:
        """The card rule's reason, when not ``near``."""
        return (f"micro_batch_size {self.bins}: packed bins of {self.sequence_len} tokens on {self.gpu_count} make "
                f"{self.tokens:,} tokens, ~{self.examples:.1f} examples per step at {self.mean:.0f} tokens per row; "
                f"the card trained {card_batch} examples per step (train_batch_size 12 x num_devices {devices}): "
                f"a packed step must hold that within {CARD_TOLERANCE:.0%}")


def bench_rows(sequence_len: int) -> batches.Rows:
    """The bench's rows' lengths (bench/gpu_throughput.py write_rows, as the measured points record them), at most
    ``sequence_len`` tokens."""
    rows = utilisation.row_set(BENCH_ROWS)
    return batches.Rows(np.minimum(rows.lengths, sequence_len), rows.count, rows.labelled, rows.source)


def mixture_tokens(config: dict[str, Any], root: Path) -> tuple[Path, dict[str, Any] | None, int]:
    """The manifest of the mixture the recipe trains on, its SFT token stats (None: not built, or no token
    lengths) and its training rows."""
    path = Path(str((config.get("datasets") or [{}])[0].get("path", "")))
    manifest = path.parent / "manifest.json"
    if not (root / manifest).is_file():
        return manifest, None, 0
    entry = json.loads((root / manifest).read_text(encoding="utf-8")).get("kinds", {}).get("sft") or {}
    rows = int(entry.get("outputs", {}).get(path.name, {}).get("rows") or 1)
    return manifest, entry.get("tokens"), rows


def row_lengths(config: dict[str, Any], root: Path) -> tuple[batches.Rows, float, str]:
    """Row lengths to pack, their mean in tokens, and where both come from."""
    sequence_len = int(config["sequence_len"])
    manifest, tokens, count = mixture_tokens(config, root)
    if not tokens or "p50" not in tokens:
        rows = bench_rows(sequence_len)
        why = "is not built" if tokens is None else "has no token lengths"
        return rows, float(rows.lengths.mean()), (
            f"{manifest.parent} {why}, so the mean is that of the bench's rows ({rows.source}, at most "
            f"{sequence_len} tokens)")
    rows = batches.from_percentiles(tokens, count, str(manifest))
    if tokens.get("mean"):
        return rows, float(tokens["mean"]), f"mean from {manifest}"
    return rows, float(rows.lengths.mean()), f"mean estimated from the length percentiles in {manifest} (no mean there)"


def packed_batch(config: dict[str, Any], gpus: int, root: Path) -> PackedBatch:
    """The step of a packed SFT ``config`` on ``gpus``, at the row lengths of its mixture (or the bench's)."""
    config = AXOLOTL_DEFAULTS | config
    rows, mean, source = row_lengths(config, root)
    micro = batches.micro_batch(rows, config)
    return PackedBatch(bins=int(config["micro_batch_size"]), sequence_len=int(config["sequence_len"]), gpus=gpus,
                       accumulation=int(config.get("gradient_accumulation_steps") or 1),
                       efficiency=micro.tokens / micro.executed, mean=mean, source=source,
                       learning_rate=float(config.get("learning_rate") or 0),
                       warmup_steps=int(config.get("warmup_steps") or 0))
