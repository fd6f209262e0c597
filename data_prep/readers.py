"""Read source rows from JSONL, JSON, Parquet, or a hub dataset at a pinned revision.

JSONL and JSON files may be compressed (``dev.json.xz``, ``test.jsonl.gz``): they are read as they are
decompressed (``common.files.open_text``), and a damaged file stops with one line. Each row comes with
where it was found (``line 12``, ``index 3``, ``key 21645374``) so a rejected row can be traced to its place.
A JSONL line that is not JSON, not UTF-8, holds a lone surrogate or is nested too deeply is a row with an
error, not a crash. A UTF-8 BOM is skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import COMPRESSED, DECOMPRESS_ERRORS, format_suffix, open_text

HUB_PREFIX = "hub:"
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON \uD800-\uDFFF escape: half of a pair, or alone


@dataclass
class RawRow:
    """One source row: its file, its place in the file, the parsed record, or why it could not be parsed."""

    file: str
    where: str
    record: Any
    error: str | None = None
    line: str | None = None  # a JSONL line read but not parsed yet (``parsed`` parses it)

    def __reduce__(self) -> tuple[type, tuple]:
        """Pickled as its fields alone: rows go to worker processes by the hundred thousand."""
        return RawRow, (self.file, self.where, self.record, self.error, self.line)


def parsed(raw: RawRow) -> RawRow:
    """``raw`` with its JSONL line parsed, where it was read unparsed (``read_rows(..., parse=False)``)."""
    return raw if raw.line is None else parse_line(raw.file, raw.where, raw.line)


def parse_hub_spec(spec: str) -> tuple[str, str, str]:
    """``hub:ORG/NAME@REVISION[:SPLIT]`` -> (name, revision, split). The revision is required."""
    body = spec.removeprefix(HUB_PREFIX)
    body, _, split = body.partition(":")
    name, _, revision = body.partition("@")
    if not name or not revision:
        raise SystemExit(f"{spec}: hub datasets need a pinned revision, as hub:ORG/NAME@REVISION[:SPLIT]")
    return name, revision, split or "train"


def read_hub(spec: str) -> Iterator[RawRow]:
    """Rows of a hub dataset at a pinned revision, through ``datasets.load_dataset``.

    The split may name a config first, ``CONFIG/SPLIT`` (``hub:cais/mmlu@REV:anatomy/test``).
    """
    from datasets import load_dataset

    name, revision, split = parse_hub_spec(spec)
    config, _, split = split.rpartition("/")
    for index, record in enumerate(load_dataset(name, config or None, revision=revision, split=split)):
        yield RawRow(spec, f"index {index}", record)


@contextmanager
def decompressing(path: Path) -> Iterator[None]:
    """A damaged or truncated compressed file as one line naming it, not a traceback."""
    try:
        yield
    except DECOMPRESS_ERRORS as err:
        raise SystemExit(f"{path}: cannot decompress ({type(err).__name__}: {err})") from None


def read_jsonl(path: Path, parse: bool = True) -> Iterator[RawRow]:
    """Rows of a JSONL file (plain or compressed); blank lines are skipped, malformed lines are rows with an error.

    ``parse=False`` leaves each line to be parsed later (``parsed``), in a worker process for instance.
    """
    with decompressing(path), open_text(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield parse_line(str(path), f"line {number}", line) if parse else \
                    RawRow(str(path), f"line {number}", None, line=line)


def count_jsonl_rows(path: Path) -> int:
    """How many rows ``read_jsonl`` gives for ``path`` (its non-blank lines), without parsing them."""
    with decompressing(path), open_text(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        return sum(1 for line in handle if line.strip())


def parse_line(file: str, where: str, line: str) -> RawRow:
    """One JSONL line as a row, or as a row with an error (kept as text the rejects file can hold)."""
    text = line.rstrip("\n")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as err:  # undecodable bytes, carried as surrogate escapes
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return RawRow(file, where, text, f"not valid UTF-8 at character {err.start + 1}")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return RawRow(file, where, text, f"malformed JSON: {err.msg}")
    except RecursionError:
        return RawRow(file, where, text, "JSON nested too deeply to read")
    if SURROGATE_ESCAPE.search(line) and not encodable(record):
        return RawRow(file, where, text, "not valid UTF-8: a \\u escape of a lone surrogate")
    return RawRow(file, where, record)


def encodable(record: Any) -> bool:
    """Whether ``record`` holds only text that UTF-8 can encode (no lone surrogate)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_json(path: Path) -> Iterator[RawRow]:
    """Rows of a JSON file: a list (by index) or an object of objects keyed by id (PubMedQA, by PMID).

    A ``.json`` file holding one object per line (MedMCQA's original release) is read as JSONL.
    """
    try:
        with decompressing(path), open_text(path, encoding="utf-8-sig") as handle:
            text = handle.read()
        data = json.loads(text)
    except RecursionError:
        raise SystemExit(f"{path}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":
            yield from read_jsonl(path)
            return
        raise SystemExit(f"{path}: not a JSON file: {err}") from err
    except UnicodeDecodeError as err:
        raise SystemExit(f"{path}: not UTF-8 text: {err}") from err
    if isinstance(data, list):
        rows = ((f"index {index}", record) for index, record in enumerate(data))
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        rows = ((f"key {key}", {"__key__": key, **record}) for key, record in data.items())
    else:
        raise SystemExit(f"{path}: expected a JSON list of rows or an object of rows keyed by id")
    check = SURROGATE_ESCAPE.search(text) is not None
    for where, record in rows:
        if check and not encodable(record):
            safe = json.dumps(record, ensure_ascii=True)
            yield RawRow(str(path), where, safe, "not valid UTF-8: a \\u escape of a lone surrogate")
        else:
            yield RawRow(str(path), where, record)


def read_parquet(path: Path) -> Iterator[RawRow]:
    """Rows of a Parquet file, by index."""
    import pyarrow.parquet as pq

    for index, record in enumerate(pq.read_table(path).to_pylist()):
        yield RawRow(str(path), f"index {index}", record)


def read_rows(spec: str, parse: bool = True) -> Iterator[RawRow]:
    """Rows of one input: a local file by its format suffix, or ``hub:ORG/NAME@REVISION[:[CONFIG/]SPLIT]``.

    ``parse=False``: JSONL lines are left unparsed (``parsed``); other formats are parsed as they are read.
    A ``.xz`` or ``.gz`` suffix after ``.jsonl`` or ``.json`` is decompressed as the file is read.
    """
    if spec.startswith(HUB_PREFIX):
        return read_hub(spec)
    path = Path(spec)
    if not path.is_file():
        raise SystemExit(f"{spec}: no such file")
    readers = {".jsonl": read_jsonl, ".json": read_json, ".parquet": read_parquet}
    suffix = format_suffix(path)
    if suffix not in readers:
        raise SystemExit(f"{spec}: unknown file type {suffix!r}; expected .jsonl, .json or .parquet "
                         f"(the first two may end in {' or '.join(COMPRESSED)})")
    if suffix == ".parquet" and path.suffix != suffix:
        raise SystemExit(f"{spec}: a compressed Parquet file; Parquet compresses its own columns, give the .parquet")
    return read_jsonl(path, parse) if suffix == ".jsonl" else readers[suffix](path)
