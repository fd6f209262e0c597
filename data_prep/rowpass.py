"""One pass over a kind's source rows in worker processes: each row converted and measured once.

A worker parses and converts each source row (or gives the reason it is rejected) and, for a kept row,
computes everything the later steps need: its JSON line as written, the digest and MinHash signature
that dedup decides on, its benchmark match, and its rendered-text facts for token lengths (with the
tokens of the rows sampled for the percentiles or possibly over ``sequence_len``). The parent
reads the files as the workers take their rows (a JSONL file is only counted first) and decides, in input
order, what stays; results come back in input order, so the
outputs do not depend on the worker count. Decontamination and rendering also cover the few rows that
dedup removes afterwards: cheaper than a second pass over the rows that stay.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.files import format_suffix
from data_prep.convert import convert_one, describe_input, read_input, reject_record
from data_prep.decontaminate import DEFAULT_THRESHOLD, BenchmarkIndex, Match
from data_prep.dedup import NUM_PERM, features
from data_prep.exclude import row_key
from data_prep.parallel import SHARED, map_chunks
from data_prep.readers import HUB_PREFIX, RawRow, count_jsonl_rows, parsed, read_rows
from data_prep.sources import load_sources
from data_prep.tokens import load_tokenizer, measure_rows, wanted

Job = tuple[int, RawRow]  # (the input's number in this pass, one of its rows)


@dataclass
class Converted:
    """A kind's rows after the pass, in input order."""

    entries: list[dict[str, Any]] = field(default_factory=list)  # {"line", "origin", "match", "measured"}
    rejects: list[dict[str, Any]] = field(default_factory=list)  # convert-stage rejects (convert.reject_record)
    excluded: list[dict[str, Any]] = field(default_factory=list)  # rows left out by key, never converted
    inputs: list[dict[str, Any]] = field(default_factory=list)  # convert.describe_input of each input
    digests: list[bytes] = field(default_factory=list)  # of each entry's normalised text (dedup)
    matrix: np.ndarray | None = None  # each entry's prompt signature, (entries, NUM_PERM)


def convert_and_measure(inputs: list[tuple[str, str, int]], system: str | None, index: BenchmarkIndex | None,
                        tokenizer: Path | None, sequence_len: int | None, workers: int, label: str | None = None,
                        exclude: dict[int, set[str]] | None = None) -> Converted:
    """Convert every (source name, input, mixture entry) and measure each kept row, in ``workers`` processes.

    An entry's ``origin`` is the source, file, row position and mixture entry; ``match`` is its benchmark
    overlap or None; ``measured`` is ``tokens.measure_rows``'s (bytes, hash, tokens or None) when a tokenizer is
    given, with the tokens of the rows sampled from all the converted ones (``tokens.wanted``).
    ``exclude`` maps a mixture entry to the row keys it leaves out (``data_prep.exclude``): those rows are not
    converted; they come back in ``excluded`` with their origin and source row.
    """
    exclude = exclude or {}
    sources = load_sources()
    streams: list[Iterable[RawRow]] = []
    facts: list[tuple[str, dict[str, Any]]] = []
    excluded: list[list[dict[str, Any]]] = [[] for _ in inputs]
    count = 0
    for number, (name, spec, entry) in enumerate(inputs):
        module = sources[name]
        if (format_suffix(spec) == ".jsonl" and not spec.startswith(HUB_PREFIX)
                and not hasattr(module, "inspect") and not hasattr(module, "read")):
            streams.append(read_rows(spec, parse=False))  # read as the workers take the rows
            found, rows = {}, count_jsonl_rows(Path(spec))
        else:  # read whole first: the converter inspects the file or reads it, or the format is parsed as read
            raws, found = read_input(module, spec, parse=False)
            if keys := exclude.get(entry):  # only rows read whole have a key (rows of a JSON object keyed by id)
                excluded[number] = [{"source": name, "file": r.file, "where": r.where, "entry": entry, "raw": r.record}
                                    for r in raws if row_key(r) in keys]
                raws = [r for r in raws if row_key(r) not in keys]
            streams.append(raws)
            rows = len(raws)
        facts.append((name, found))
        count += rows
    want = wanted(tokenizer, count, sequence_len) if tokenizer is not None else None
    shared = {"facts": facts, "system": system, "index": index, "tokenizer": tokenizer, "wanted": want}
    sent: deque[Job] = deque()  # jobs handed to the workers and not answered yet, in order

    def jobs() -> Iterator[Job]:
        for number, stream in enumerate(streams):
            for raw in stream:
                sent.append((number, raw))
                yield number, raw
            streams[number] = []  # the rows read whole are no longer needed

    out = Converted(matrix=np.empty((count, NUM_PERM), dtype=np.uint32))
    kept = [0] * len(inputs)
    rejects: list[list[dict[str, Any]]] = [[] for _ in inputs]
    for part in map_chunks(chunk_rows, jobs(), count, workers, shared=shared, label=label):
        lines = part.lines.split("\n") if part.lines else []
        if len(out.entries) + len(lines) > count:
            raise SystemExit(f"{', '.join(spec for _, spec, _ in inputs)}: a file changed while it was read")
        out.matrix[len(out.entries):len(out.entries) + len(lines)] = part.signatures
        measures = part.measured.tolist() if part.measured is not None else [None] * len(lines)
        at = 0
        for position in range(len(lines) + len(part.rejects)):
            number, raw = sent.popleft()
            name = facts[number][0]
            if position in part.rejects:
                reason, raw = part.rejects[position]
                rejects[number].append(reject_record(name, raw, reason))
                continue
            kept[number] += 1
            out.digests.append(part.digests[32 * at:32 * at + 32])
            origin = {"source": name, "file": raw.file, "where": raw.where, "entry": inputs[number][2]}
            out.entries.append({"line": lines[at], "origin": origin, "match": part.matches.get(at),
                                "measured": measures[at] and unpacked(measures[at])})
            at += 1
    out.matrix = out.matrix[:len(out.entries)]
    for number, (_, spec, _) in enumerate(inputs):
        rows = kept[number] + len(rejects[number]) + len(excluded[number])
        out.inputs.append(describe_input(spec, rows, kept[number], rejects[number], facts[number][1],
                                         len(excluded[number])))
        out.rejects += rejects[number]
        out.excluded += excluded[number]
    return out


@dataclass
class Chunk:
    """A worker's answer for a chunk of jobs, by column (a few large objects pickle faster than many small ones)."""

    rejects: dict[int, tuple[str, RawRow]]  # position in the chunk -> (reason, the parsed source row)
    lines: str  # the kept rows' JSON lines, joined by newlines (JSON text has none of its own)
    digests: bytes  # 32 bytes a kept row (dedup.features)
    signatures: np.ndarray  # (kept rows, NUM_PERM)
    matches: dict[int, Match]  # kept row -> its benchmark match, for the few that have one
    measured: np.ndarray | None  # (kept rows, 3) uint64: tokens.measure_rows, tokens NO_LENGTH where not encoded


NO_LENGTH = 2**64 - 1


def unpacked(measure: list[int]) -> tuple[int, int, int | None]:
    """A ``Chunk.measured`` row as ``tokens.measure_rows`` gives it."""
    size, digest, length = measure
    return size, digest, None if length == NO_LENGTH else length


def chunk_rows(jobs: list[Job]) -> Chunk:
    """In a worker: convert each job's row, or give the reason it is rejected; measure the kept rows."""
    sources, facts, system = load_sources(), SHARED["facts"], SHARED["system"]
    rejects: dict[int, tuple[str, RawRow]] = {}
    rows = []
    for position, (number, raw) in enumerate(jobs):
        name, found = facts[number]
        raw = parsed(raw)
        row = convert_one(sources[name], raw, system, found)
        if isinstance(row, str):
            rejects[position] = (row, raw)
        else:
            rows.append(row)
    digests, signatures, texts = features(rows)
    index, tokenizer = SHARED["index"], SHARED["tokenizer"]
    matches = {at: match for at, text in enumerate(texts)
               if (match := index.match_words(text, DEFAULT_THRESHOLD)) is not None} if index is not None else {}
    measures = None
    if tokenizer is not None:
        found = measure_rows(rows, load_tokenizer(tokenizer), SHARED["wanted"])
        measures = np.array([(size, digest, NO_LENGTH if length is None else length) for size, digest, length in found],
                            dtype=np.uint64).reshape(len(rows), 3)
    lines = "\n".join([json.dumps(row, ensure_ascii=False) for row in rows])
    return Chunk(rejects, lines, b"".join(digests), signatures, matches, measures)
