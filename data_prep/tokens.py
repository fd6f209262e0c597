"""Token-length statistics of built rows, with the chat template applied as training will apply it."""

from __future__ import annotations

import re
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


def token_lengths(rows: list[dict[str, Any]], tokenizer_path: Path, workers: int | None = 1,
                  label: str | None = None) -> list[int]:
    """Each row's length in tokens, chat template applied (for DPO rows, the longer of its two sides).

    ``label`` names the step in the progress bar."""
    load_tokenizer(tokenizer_path)  # here, so that forked workers inherit it loaded
    parts = map_chunks(chunk_lengths, rows, len(rows), workers, shared={"tokenizer": tokenizer_path},
                       label=label)
    return [length for part in parts for length in part]


def chunk_lengths(rows: list[dict[str, Any]]) -> list[int]:
    """``token_lengths`` of a chunk: each conversation rendered once, then encoded in batches (in Rust)."""
    tokenizer = load_tokenizer(SHARED["tokenizer"])
    owners, conversations = [], []
    for number, row in enumerate(rows):
        for side in [side for side in ("chosen", "rejected") if side in row] or ["chosen"]:
            owners.append(number)
            conversations.append(conversation(row, side))
    if not conversations:
        return []
    texts = tokenizer.apply_chat_template(conversations, tokenize=False)
    lengths = [0] * len(rows)
    for number, length in zip(owners, encoded_lengths(tokenizer, texts), strict=True):
        lengths[number] = max(lengths[number], length)
    return lengths


def encoded_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """How many tokens each text is, encoded as apply_chat_template encodes it (no special tokens added).

    A fast tokenizer cuts a text at its special tokens before anything else, so a text's length is
    the number of special tokens plus the lengths of the pieces between them. Pieces repeat from row to
    row (the system prompt, the role names) and each distinct one is encoded once. Where a tokenizer
    does not split that way (checked once against whole-text encoding), the whole texts are encoded.
    """
    backend = tokenizer.backend_tokenizer
    splitter = special_splitter(tokenizer)
    if splitter is None:
        return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    split = [splitter.split(text) for text in texts]  # text, special, text, special, ..., text
    distinct = list(dict.fromkeys(piece for parts in split for piece in parts[::2] if piece))
    piece_lengths = dict(zip(distinct, map(len, backend.encode_batch_fast(distinct, add_special_tokens=False)),
                             strict=True))
    lengths = [len(parts) // 2 + sum(piece_lengths[p] for p in parts[::2] if p) for parts in split]
    if not SPLIT_CHECKED.get(id(tokenizer)):
        whole = [len(e) for e in backend.encode_batch_fast(texts[:64], add_special_tokens=False)]
        SPLIT_CHECKED[id(tokenizer)] = True
        if whole != lengths[:64]:
            SPLITTERS[id(tokenizer)] = None
            return encoded_lengths(tokenizer, texts)
    return lengths


SPLITTERS: dict[int, re.Pattern | None] = {}
SPLIT_CHECKED: dict[int, bool] = {}


def special_splitter(tokenizer: Any) -> re.Pattern | None:
    """A pattern that splits text at the tokenizer's special tokens, or None where cutting there may not be exact."""
    if id(tokenizer) not in SPLITTERS:
        added = list(tokenizer.backend_tokenizer.get_added_tokens_decoder().values())
        plain = all(t.special and not (t.lstrip or t.rstrip or t.single_word) for t in added)
        contents = sorted((t.content for t in added), key=len, reverse=True)  # leftmost-longest, as tokenizers
        SPLITTERS[id(tokenizer)] = re.compile("(" + "|".join(map(re.escape, contents)) + ")") \
            if plain and contents else None
    return SPLITTERS[id(tokenizer)]


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
