"""What one micro-batch makes the GPU compute under Axolotl 0.19: rows, padding, packed bins, and their FLOPs.

    python -m launch plan RECIPE --gpus 1 --gpu h200-141gb --dataset rows.jsonl     (uses these)

Unpacked, Axolotl's DataCollatorForSeq2Seq pads micro_batch_size random rows to the longest of them, rounded up
to pad_to_multiple_of (core/builders/causal.py: 64 while pad_to_sequence_len is unset, sequence_len when it is
true, none when it is false; DPO: the recipe's pad_to_multiple_of only). A padded row attends over its padded
length. Packed (sample_packing; pad_to_sequence_len then defaults to true), utils/samplers/multipack.py's
pack_group puts each row, in the sampler's random order, into the first bin with room (first fit, at most
sample_packing_bin_size rows a bin); bins keep creation order and are padded like rows. With attention that
packs natively (flash, flex) a micro-batch is one bin of micro_batch_size x sequence_len tokens; otherwise
(sdpa, eager: multipack_real_batches) it is micro_batch_size bins of sequence_len. Packed rows are kept apart
(varlen attention), so each attends only over itself. Every draw uses SEED: the same rows give the same plan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError
from launch.preflight import estimates as est

SEED = 0
SIMULATED_ROWS = 4000  # rows drawn at least (epochs of a small file), and at most at once (Axolotl packs 100,000)
MIN_ROW = 2  # Axolotl drops shorter rows (min_sample_len)
NATIVE_PACKING = ("flash_attention", "flex_attention", "xformers", "sage")  # ATTN_IMPLS_SUPPORTING_PACKING


@dataclass(frozen=True)
class Rows:
    """A dataset's row lengths in tokens (all, or a sample standing for ``count`` rows)."""

    lengths: np.ndarray
    count: int
    labelled: float  # fraction of the rows' tokens that carry a label (labels other than -100)
    source: str


@dataclass(frozen=True)
class MicroBatch:
    """One GPU's micro-batch, averaged over the simulated batches."""

    rows: float
    tokens: float  # the rows' tokens, no padding
    executed: float  # tokens computed, padding included
    spans: float  # sum over rows of (tokens attended over)**2: attention's executed FLOPs
    own_spans: float  # sum over rows of (row's tokens)**2: attention's model FLOPs
    packed: bool
    bins: int  # packed: bins per micro-batch
    capacity: int  # packed: tokens a bin holds
    multiple: int  # each row or bin is padded to a multiple of this


def tokenized_rows(path: Path) -> Rows:
    """Lengths of pre-tokenized rows (``input_ids``, as bench/gpu_throughput.py writes them)."""
    lengths, labelled = [], 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ids = row["input_ids"]
            except (json.JSONDecodeError, TypeError, KeyError):
                raise InputError(f"{path} line {number}: not a pre-tokenized row (a JSON object with input_ids); "
                                 "--dataset takes such a file or a built mixture's folder") from None
            lengths.append(len(ids))
            labels = row.get("labels")
            labelled += len(ids) if labels is None else sum(1 for label in labels if label != -100)
    if not lengths:
        raise InputError(f"{path}: no rows")
    return Rows(np.array(lengths), len(lengths), labelled / max(1, sum(lengths)), str(path))


def from_percentiles(tokens: dict[str, Any], count: int, source: str) -> Rows:
    """Lengths standing for a built mixture's rows, from its manifest's percentiles (p50, p90, p99, p100).

    The upper half follows the percentiles (linear between them); the lower half mirrors it in log space
    (length at q = p50**2 / length at 1 - q), the shape of a log-normal, which row lengths roughly follow.
    """
    points = sorted((int(key[1:]) / 100, float(value)) for key, value in tokens.items()
                    if key[:1] == "p" and key[1:].isdigit())
    if not points or points[0][0] != 0.5:
        raise InputError(f"{source}: no p50 among the token percentiles")
    q = (np.arange(min(count, SIMULATED_ROWS)) + 0.5) / min(count, SIMULATED_ROWS)
    upper = np.interp(np.maximum(q, 1 - q), *zip(*points, strict=True))
    lengths = np.where(q >= 0.5, upper, points[0][1] ** 2 / upper)
    return Rows(np.maximum(MIN_ROW, np.rint(lengths)).astype(int), count, 1.0, source)


def full_rows(sequence_len: int) -> Rows:
    """No dataset: every row sequence_len tokens long (nothing to pad)."""
    return Rows(np.full(256, sequence_len), 1, 1.0, f"every row {sequence_len} tokens (no --dataset)")


def pad_multiple(config: dict[str, Any]) -> int:
    """The collator's pad_to_multiple_of (1: none), as core/builders/causal.py (SFT) and rl.py (DPO) set it."""
    multiple = int(config.get("pad_to_multiple_of") or 0)
    if config.get("rl"):
        return multiple or 1
    padded = config.get("pad_to_sequence_len")
    if padded is None and config.get("sample_packing"):
        padded = True  # Axolotl's validation turns it on for packing
    if padded:
        return (multiple or 64) * math.ceil(int(config["sequence_len"]) / (multiple or 64))
    return (multiple or 64) if padded is None else 1


def first_fit(lengths: np.ndarray, capacity: int, most: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens, rows and sum of squared row lengths of each bin, filled as pack_group does, in creation order."""
    room, rows = np.zeros(len(lengths), dtype=np.int64), np.zeros(len(lengths), dtype=np.int64)
    squares, used = np.zeros(len(lengths)), 0
    for n in lengths:
        fits = np.flatnonzero((room[:used] >= n) & (rows[:used] < most))
        k = int(fits[0]) if len(fits) else used
        if k == used:
            room[k], used = capacity, used + 1
        room[k], rows[k], squares[k] = room[k] - n, rows[k] + 1, squares[k] + float(n) ** 2
    return capacity - room[:used], rows[:used], squares[:used]


def micro_batch(rows: Rows, config: dict[str, Any]) -> MicroBatch:
    """The average micro-batch of ``config`` over shuffles of ``rows`` (several epochs of a small file)."""
    seq, mbs = int(config["sequence_len"]), int(config["micro_batch_size"])
    lengths = rows.lengths[(rows.lengths >= MIN_ROW) & (rows.lengths <= seq)]
    if not len(lengths):
        raise InputError(f"{rows.source}: no row between {MIN_ROW} and sequence_len {seq} tokens")
    packed = bool(config.get("sample_packing")) and not config.get("rl")
    native = any(name in str(config.get("attn_implementation") or "") for name in NATIVE_PACKING)
    # DPO: each pair's chosen and rejected rows are padded together
    capacity, per_batch = (mbs * seq, 1) if packed and native else (seq, mbs * (2 if config.get("rl") else 1))
    multiple, rng, found = pad_multiple(config), np.random.default_rng(SEED), []
    for _ in range(math.ceil(SIMULATED_ROWS / len(lengths))):
        order = rng.permutation(lengths)[:SIMULATED_ROWS]  # a large dataset: a sample of it
        if packed:
            tokens, count, squares = first_fit(order, capacity, int(config.get("sample_packing_bin_size") or 200))
        else:
            tokens, count, squares = order, np.ones(len(order)), order.astype(float) ** 2
        batches = len(tokens) // per_batch  # drop_last
        if batches:
            cut = batches * per_batch
            width = np.ceil(tokens[:cut].reshape(batches, per_batch).max(axis=1) / multiple) * multiple
            spans = squares[:cut].sum() if packed else (per_batch * width**2).sum()
            found.append((count[:cut].sum(), tokens[:cut].sum(), per_batch * width.sum(), spans, squares[:cut].sum(),
                          batches))
    if not found:
        raise InputError(f"{rows.source}: too few rows for one micro-batch of {per_batch}")
    total = np.sum(found, axis=0)
    return MicroBatch(*(float(x) for x in total[:5] / total[5]), packed=packed, bins=per_batch if packed else 0,
                      capacity=capacity if packed else 0, multiple=multiple)


def flops(shape: est.Shape, n_lora: int, config: dict[str, Any], batch: MicroBatch) -> dict[str, float]:
    """FLOPs of one micro-batch: ``hardware`` (executed: padding and recomputation too) and ``model`` (for MFU:
    the rows' own tokens and spans, once)."""
    checkpointing, dpo = bool(config.get("gradient_checkpointing")), bool(config.get("rl"))
    linear = est.linear_flops(shape, n_lora, checkpointing, dpo)
    attention = est.attention_flops(shape, checkpointing, dpo)
    return {"hardware": batch.executed * linear["hardware"] + batch.spans * attention["hardware"],
            "model": batch.tokens * linear["model"] + batch.own_spans * attention["model"]}
