"""Token-length statistics of built rows, with the chat template applied as training will apply it.

Two savings keep this cheap on large mixtures, both exact where it matters:

- A row is encoded only when its length is needed. With a byte-level BPE tokenizer (no normalizer,
  no added prefix space) every token is at least one byte of the rendered text, so a row whose rendered
  text has at most ``sequence_len`` UTF-8 bytes cannot be over ``sequence_len``: only longer rows are
  encoded for the length filter, which therefore stays exact.
- Percentiles come from every row up to ``SAMPLE_ROWS`` rows; above that, from the rows whose rendered
  text hashes into a fixed fraction (the same rows on every rebuild and for any worker count), and the
  manifest says so (``sampled``).

The tokenizer is loaded from ``tokenizer.json`` with the ``tokenizers`` library. Llama-3's chat template is
rendered in plain Python (data_prep/templates.py); others are compiled by transformers' own chat-template
compiler, without importing torch or the tokenizer classes (seconds). Folders this does not cover are
loaded with ``AutoTokenizer``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from data_prep.parallel import SHARED, map_chunks
from data_prep.templates import plain_renderer

PERCENTILES = (50, 90, 99, 100)
SAMPLE_ROWS = 10_000  # ours: percentiles over about this many rows (p99 from about 100 above it)
FORK_ROWS = 2_000  # ours: fewer rows to encode than this are encoded in this process
FAST_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}  # tokenizer.json as saved, nothing rebuilt
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
PRE_TOKENIZERS_ADDING_NOTHING = {"ByteLevel", "Split", "Digits", "Punctuation", "Sequence"}


@dataclass
class ChatTokenizer:
    """A fast tokenizer and the chat template, rendered as ``apply_chat_template`` renders it."""

    backend: Any  # tokenizers.Tokenizer
    template: str
    special: dict[str, str]  # bos_token, eos_token, ...: the names the template may use

    def render(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        plain = plain_renderer(self.template, self.special)
        if plain is not None:
            return [plain(chat) for chat in conversations]
        compiled = compile_template(self.template)
        return [compiled.render(messages=chat, tools=None, documents=None, add_generation_prompt=False,
                                **self.special) for chat in conversations]


@lru_cache(maxsize=4)
def compile_template(template: str) -> Any:
    """The template compiled by transformers' own ``apply_chat_template`` compiler (its sandboxed jinja2
    environment, filters and globals); ``transformers.utils.chat_template_utils`` imports neither torch nor the
    tokenizer classes, so this costs under a second. A test checks the output against ``apply_chat_template``.
    """
    from transformers.utils.chat_template_utils import _compile_jinja_template

    return _compile_jinja_template(template)


def conversation(row: dict[str, Any], side: str = "chosen") -> list[dict[str, str]]:
    """The full conversation a row trains on (for DPO rows, the prompt and one answer)."""
    return [*row["messages"], row[side]] if side in row else row["messages"]


@lru_cache(maxsize=4)
def load_tokenizer(path: Path) -> ChatTokenizer:
    """The folder's tokenizer.json and chat template directly where transformers would load them as saved."""
    folder = Path(path)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    template_path = folder / "chat_template.jinja"
    template = template_path.read_text(encoding="utf-8") if template_path.is_file() else config.get("chat_template")
    special = {name: value["content"] if isinstance(value, dict) else value for name, value in config.items()
               if name in SPECIAL_NAMES and value is not None}
    if (folder / "tokenizer.json").is_file() and isinstance(template, str) and \
            config.get("tokenizer_class") in FAST_CLASSES and not (folder / "special_tokens_map.json").exists():
        import tokenizers

        special = {k: v for k, v in special.items() if isinstance(v, str)}
        if plain_renderer(template, special) is None:
            compile_template(template)  # here, so that forked workers inherit it compiled
        return ChatTokenizer(tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")), template, special)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return ChatTokenizer(tokenizer.backend_tokenizer, tokenizer.get_chat_template(), tokenizer.special_tokens_map)


def tokens_at_most_bytes(backend: Any) -> bool:
    """Whether no text can encode to more tokens than its UTF-8 bytes: byte-level BPE adding no text.

    Every token of such a tokenizer stands for at least one byte of the text, special tokens included.
    A normalizer (NFKC expands some characters) or a prefix space (Metaspace, ByteLevel's
    ``add_prefix_space``) could add tokens, so those tokenizers are always encoded.
    """
    spec = json.loads(backend.to_str())
    normalizer = spec.get("normalizer")
    if normalizer and not (normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")):
        return False
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return (spec.get("model", {}).get("type") == "BPE" and any(s.get("type") == "ByteLevel" for s in steps)
            and all(s.get("type") in PRE_TOKENIZERS_ADDING_NOTHING and not s.get("add_prefix_space")
                    for s in steps)
            and all(t.content for t in backend.get_added_tokens_decoder().values()))


def token_lengths(rows: list[dict[str, Any]], tokenizer_path: Path, workers: int | None = 1,
                  label: str | None = None) -> list[int]:
    """Each row's length in tokens, chat template applied (for DPO rows, the longer of its two sides)."""
    return measure_lengths(rows, tokenizer_path, workers, label=label, sample=False)[0]


def measure_lengths(rows: list[dict[str, Any]], tokenizer_path: Path, workers: int | None = 1,
                    sequence_len: int | None = None, label: str | None = None, sample: bool = True
                    ) -> tuple[list[int | None], list[bool]]:
    """Each row's length in tokens where needed (else None), and whether the row is in the percentile sample.

    A row is encoded when it is in the sample, or when its rendered text has more UTF-8 bytes than
    ``sequence_len`` (or the tokenizer is not byte-level BPE): a None is a row known to fit.
    ``label`` names the step in the progress bar.
    """
    shared = {"tokenizer": tokenizer_path, "wanted": wanted(tokenizer_path, len(rows), sequence_len, sample)}
    facts = [f for part in map_chunks(chunk_measured, rows, len(rows), workers, shared=shared, label=label)
             for f in part]
    return choose(facts, tokenizer_path, sequence_len, sample)


Measured = tuple[int, int, int | None]  # (UTF-8 bytes of the longest rendered side, 64-bit hash, tokens or None)


def wanted(tokenizer_path: Path, rows: int, sequence_len: int | None, sample: bool = True
           ) -> tuple[int, int | None, bool]:
    """What ``measure_rows`` encodes for a set of at most ``rows`` rows: (hash threshold, byte limit, byte bound).

    A row is sampled for the percentiles when its hash is under the threshold, ``SAMPLE_ROWS / rows`` of
    the hash range (all of it up to ``SAMPLE_ROWS`` rows); fewer rows later only raise the threshold.
    """
    fraction = min(1.0, SAMPLE_ROWS / rows) if sample and rows else 1.0
    return int(fraction * 2**64), sequence_len, sample and byte_bound(tokenizer_path)


def needs_tokens(size: int, digest: int, want: tuple[int, int | None, bool]) -> bool:
    """Whether a row of ``size`` rendered bytes and this hash is encoded under ``want`` (``wanted``): it is in the
    sample, or the tokenizer has no byte bound, or it has more bytes than the limit."""
    threshold, limit, bound = want
    return digest < threshold or not bound or (limit is not None and size > limit)


@lru_cache(maxsize=4)
def byte_bound(tokenizer_path: Path) -> bool:
    """``tokens_at_most_bytes`` of the tokenizer at ``tokenizer_path``, worked out once."""
    return tokens_at_most_bytes(load_tokenizer(tokenizer_path).backend)


def measure_rows(rows: list[dict[str, Any]], tokenizer: ChatTokenizer, want: tuple[int, int | None, bool]
                 ) -> list[Measured]:
    """For each row: the UTF-8 bytes of its longest rendered conversation, a 64-bit hash of them all, and its
    length in tokens (the longer side) where ``want`` (``wanted``) asks for it now, else None.

    Each conversation is rendered once; the texts to encode are encoded in one batch.
    """
    per_row = render_rows(rows, tokenizer)
    facts = [(max(len(text.encode()) for text in texts),
              int.from_bytes(hashlib.blake2b("\0".join(texts).encode(), digest_size=8).digest(), "little"))
             for texts in per_row]
    now = [needs_tokens(size, digest, want) for size, digest in facts]
    lengths = iter(encoded_lengths(tokenizer, [text for texts, n in zip(per_row, now, strict=True) if n
                                               for text in texts]))
    return [(size, digest, max(next(lengths) for _ in texts) if n else None)
            for (size, digest), texts, n in zip(facts, per_row, now, strict=True)]


def render_rows(rows: list[dict[str, Any]], tokenizer: ChatTokenizer) -> list[list[str]]:
    """Each row's conversations (both sides of a DPO row) rendered by the chat template, in one call."""
    per_row = [conversations(row) for row in rows]
    texts = iter(tokenizer.render([chat for chats in per_row for chat in chats]))
    return [[next(texts) for _ in chats] for chats in per_row]


def conversations(row: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The conversations a row trains on: prompt + chosen and prompt + rejected for DPO rows, else its messages."""
    if "chosen" not in row and "rejected" not in row:
        return [row["messages"]]
    return [conversation(row, side) for side in ("chosen", "rejected") if side in row]


def chunk_measured(rows: list[Any]) -> list[Measured]:
    """``measure_rows`` in a worker, with the tokenizer path and ``wanted`` in ``SHARED``; rows may be JSON lines."""
    rows = [json.loads(row) if isinstance(row, str) else row for row in rows]
    return measure_rows(rows, load_tokenizer(SHARED["tokenizer"]), SHARED["wanted"])


def choose(facts: list[Measured], tokenizer_path: Path, sequence_len: int | None, sample: bool = True
           ) -> tuple[list[int | None], list[bool]]:
    """From the rows' ``measure_rows`` facts: each row's length where it is needed (else None), and whether it is
    in the percentile sample. Rows needed but not yet encoded go to ``encode_missing`` first (``missing``).
    """
    want = wanted(tokenizer_path, len(facts), sequence_len, sample)
    sampled = [digest < want[0] for _, digest, _ in facts]
    needed = [needs_tokens(size, digest, want) for size, digest, _ in facts]
    lengths = [length if need else None for need, (_, _, length) in zip(needed, facts, strict=True)]
    if any(need and length is None for need, length in zip(needed, lengths, strict=True)):
        raise ValueError("some needed rows are not encoded yet: encode_missing() them first")
    return lengths, sampled


def missing(facts: list[Measured], tokenizer_path: Path, sequence_len: int | None) -> list[bool]:
    """Which rows ``choose`` needs encoded that are not yet (a pass over more rows sampled fewer)."""
    want = wanted(tokenizer_path, len(facts), sequence_len)
    return [length is None and needs_tokens(size, digest, want) for size, digest, length in facts]


def encode_missing(lines: list[str], facts: list[Measured], tokenizer_path: Path, sequence_len: int | None,
                   workers: int | None = 1, label: str | None = None) -> list[Measured]:
    """``facts`` with every row ``choose`` needs encoded: the ``missing`` ones (given as JSON lines) encoded now.

    After dedup and decontamination fewer rows are left than the pass sampled for, so the sample grows a little.
    """
    todo = [at for at, miss in enumerate(missing(facts, tokenizer_path, sequence_len)) if miss]
    shared = {"tokenizer": tokenizer_path, "wanted": (2**64, None, False)}  # encode every one given
    workers = 1 if len(todo) < FORK_ROWS else workers  # a few hundred rows: quicker than starting workers
    parts = map_chunks(chunk_measured, (lines[at] for at in todo), len(todo), workers, shared=shared,
                       label=label if todo else None)
    done = list(facts)
    for at, fact in zip(todo, (f for part in parts for f in part), strict=True):
        done[at] = fact
    return done


def encoded_lengths(tokenizer: ChatTokenizer, texts: list[str]) -> list[int]:
    """How many tokens each text is, encoded as apply_chat_template encodes it (no special tokens added).

    A fast tokenizer cuts a text at its special tokens before anything else, so a text's length is
    the number of special tokens plus the lengths of the pieces between them. Pieces repeat from row to
    row (the system prompt, the role names) and each distinct one is encoded once. Where a tokenizer
    does not split that way (checked once against whole-text encoding), the whole texts are encoded.
    """
    if not texts:
        return []
    backend = tokenizer.backend
    splitter = special_splitter(backend)
    if splitter is None:
        return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    split = [splitter.split(text) for text in texts]  # text, special, text, special, ..., text
    distinct = list(dict.fromkeys(piece for parts in split for piece in parts[::2] if piece))
    piece_lengths = dict(zip(distinct, map(len, backend.encode_batch_fast(distinct, add_special_tokens=False)),
                             strict=True))
    lengths = [len(parts) // 2 + sum(piece_lengths[p] for p in parts[::2] if p) for parts in split]
    if not SPLIT_CHECKED.get(id(backend)):
        whole = [len(e) for e in backend.encode_batch_fast(texts[:64], add_special_tokens=False)]
        SPLIT_CHECKED[id(backend)] = True
        if whole != lengths[:64]:
            SPLITTERS[id(backend)] = None
            return encoded_lengths(tokenizer, texts)
    return lengths


SPLITTERS: dict[int, re.Pattern | None] = {}
SPLIT_CHECKED: dict[int, bool] = {}


def special_splitter(backend: Any) -> re.Pattern | None:
    """A pattern that splits text at the tokenizer's special tokens, or None where cutting there may not be exact."""
    if id(backend) not in SPLITTERS:
        added = list(backend.get_added_tokens_decoder().values())
        plain = all(t.special and not (t.lstrip or t.rstrip or t.single_word) for t in added)
        contents = sorted((t.content for t in added), key=len, reverse=True)  # leftmost-longest, as tokenizers
        SPLITTERS[id(backend)] = re.compile("(" + "|".join(map(re.escape, contents)) + ")") \
            if plain and contents else None
    return SPLITTERS[id(backend)]


def token_stats(lengths: list[int | None], tokenizer_path: Path, sequence_len: int | None,
                sampled: list[bool] | None = None) -> dict[str, Any]:
    """Length percentiles in tokens and how many rows exceed ``sequence_len`` (Axolotl would drop those).

    The percentiles are over the ``sampled`` rows (default: all); ``over_sequence_len`` counts every row,
    since every row that could be over it was encoded.
    """
    sampled = [True] * len(lengths) if sampled is None else sampled
    chosen = sorted(n for n, s in zip(lengths, sampled, strict=True) if s)
    if not chosen:
        return {"rows": 0}
    stats: dict[str, Any] = {"tokenizer": str(tokenizer_path), "rows": len(lengths)}
    for p in PERCENTILES:
        stats[f"p{p}"] = chosen[min(len(chosen) - 1, (len(chosen) * p) // 100)]
    if len(chosen) < len(lengths):
        stats["sampled"] = {"rows": len(chosen), "of": len(lengths),
                            "how": "percentiles over the rows whose rendered text's blake2b hash falls in a fixed "
                                   "fraction; over_sequence_len counts every row"}
    if sequence_len is not None:
        stats["sequence_len"] = sequence_len
        stats["over_sequence_len"] = sum(1 for n in lengths if n is not None and n > sequence_len)
    return stats
