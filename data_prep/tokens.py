"""Token-length statistics of built rows, with the chat template applied as training will apply it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from data_prep.parallel import SHARED, map_chunks

PERCENTILES = (50, 90, 99, 100)


def conversation(row: dict[str, Any], side: str = "chosen") -> list[dict[str, str]]:
    """The full conversation a row trains on (for DPO rows, the prompt and one answer)."""
    return [*row["messages"], row[side]] if side in row else row["messages"]


@lru_cache(maxsize=4)
def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def token_lengths(rows: list[dict[str, Any]], tokenizer_path: Path, workers: int | None = 1) -> list[int]:
    """Each row's length in tokens, chat template applied (for DPO rows, the longer of its two sides)."""
    return list(map_chunks(chunk_lengths, rows, len(rows), workers, shared={"tokenizer": tokenizer_path}))


def chunk_lengths(rows: list[dict[str, Any]]) -> list[int]:
    """``token_lengths`` of a chunk: each conversation rendered once, then all encoded in one batch (in Rust)."""
    tokenizer = load_tokenizer(SHARED["tokenizer"])
    owners, conversations = [], []
    for number, row in enumerate(rows):
        for side in [side for side in ("chosen", "rejected") if side in row] or ["chosen"]:
            owners.append(number)
            conversations.append(conversation(row, side))
    if not conversations:
        return []
    texts = tokenizer.apply_chat_template(conversations, tokenize=False)
    # As apply_chat_template(tokenize=True) encodes: without special tokens (the template writes them).
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    lengths = [0] * len(rows)
    for number, encoding in zip(owners, encodings, strict=True):
        lengths[number] = max(lengths[number], len(encoding))
    return lengths


def token_stats(lengths: list[int], tokenizer_path: Path, sequence_len: int | None) -> dict[str, Any]:
    """Length percentiles in tokens and how many rows exceed ``sequence_len`` (Axolotl would drop those)."""
    lengths = sorted(lengths)
    if not lengths:
        return {"rows": 0}
    stats: dict[str, Any] = {"tokenizer": str(tokenizer_path), "rows": len(lengths)}
    for p in PERCENTILES:
        stats[f"p{p}"] = lengths[min(len(lengths) - 1, (len(lengths) * p) // 100)]
    if sequence_len is not None:
        stats["sequence_len"] = sequence_len
        stats["over_sequence_len"] = sum(1 for n in lengths if n > sequence_len)
    return stats
