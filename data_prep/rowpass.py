"""One pass over a kind's source rows in worker processes: each row converted and measured once.

A worker parses and converts each source row (or gives the reason it is rejected) and, for a kept row,
computes everything the later steps need: its JSON line as written, the digest and MinHash signature
that dedup decides on, its benchmark match, and its rendered-text facts for token lengths (with the
tokens of the rows sampled for the percentiles or possibly over ``sequence_len``). The parent
reads the files and decides, in input order, what stays; results come back in input order, so the
outputs do not depend on the worker count. Decontamination and rendering also cover the few rows that
dedup removes afterwards: cheaper than a second pass over the rows that stay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.convert import convert_one, input_record, read_input, reject_record
from data_prep.decontaminate import DEFAULT_THRESHOLD, BenchmarkIndex
from data_prep.dedup import NUM_PERM, features
from data_prep.parallel import SHARED, map_chunks
from data_prep.readers import RawRow, parsed
from data_prep.sources import load_sources
from data_prep.tokens import load_tokenizer, measured, wanted

Job = tuple[int, RawRow]  # (the input's number in this pass, one of its rows)


@dataclass
class Converted:
    """A kind's rows after the pass, in input order."""

    entries: list[dict[str, Any]] = field(default_factory=list)  # {"line", "origin", "match", "measured"}
    rejects: list[dict[str, Any]] = field(default_factory=list)  # convert-stage rejects (convert.reject_record)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # convert.input_record of each input
    digests: list[bytes] = field(default_factory=list)  # of each entry's normalised text (dedup)
    matrix: np.ndarray | None = None  # each entry's prompt signature, (entries, NUM_PERM)


def convert_rows(inputs: list[tuple[str, str, int]], system: str | None, index: BenchmarkIndex | None,
                 tokenizer: Path | None, sequence_len: int | None, workers: int, label: str | None = None
                 ) -> Converted:
    """Convert every (source name, input, mixture entry) and measure each kept row, in ``workers`` processes.

    An entry's ``origin`` is the source, file, row position and mixture entry; ``match`` is its benchmark
    overlap or None; ``measured`` is ``tokens.measured``'s (bytes, hash, tokens or None) when a tokenizer is
    given, with the tokens of the rows sampled from all the converted ones (``tokens.wanted``).
    """
    sources = load_sources()
    jobs: list[Job | None] = []
    facts: list[tuple[str, dict[str, Any]]] = []
    for number, (name, spec, _) in enumerate(inputs):
        raws, found = read_input(sources[name], spec, parse=False)
        jobs += [(number, raw) for raw in raws]
        facts.append((name, found))
    want = wanted(tokenizer, len(jobs), sequence_len) if tokenizer is not None else None
    shared = {"facts": facts, "system": system, "index": index, "tokenizer": tokenizer, "wanted": want}
    out = Converted(matrix=np.empty((len(jobs), NUM_PERM), dtype=np.uint32))
    kept = [0] * len(inputs)
    rejects: list[list[dict[str, Any]]] = [[] for _ in inputs]
    done = 0
    for outcomes, signatures in map_chunks(chunk_rows, iter(jobs), len(jobs), workers, shared=shared, label=label):
        out.matrix[len(out.entries):len(out.entries) + len(signatures)] = signatures
        for outcome in outcomes:
            number, raw = jobs[done]
            jobs[done] = None  # the source row is no longer needed
            done += 1
            name = facts[number][0]
            if outcome[0] == "reject":
                _, reason, raw = outcome
                rejects[number].append(reject_record(name, raw, reason))
                continue
            _, line, digest, match, fact = outcome
            kept[number] += 1
            out.digests.append(digest)
            origin = {"source": name, "file": raw.file, "where": raw.where, "entry": inputs[number][2]}
            out.entries.append({"line": line, "origin": origin, "match": match, "measured": fact})
    out.matrix = out.matrix[:len(out.entries)]
    for number, (_, spec, _) in enumerate(inputs):
        out.inputs.append(input_record(spec, kept[number] + len(rejects[number]), kept[number], rejects[number],
                                       facts[number][1]))
        out.rejects += rejects[number]
    return out


def chunk_rows(jobs: list[Job]) -> tuple[list[tuple], np.ndarray]:
    """In a worker: each job's outcome, ("reject", reason, parsed row) or ("row", line, digest, match, measured),
    and the kept rows' signatures."""
    sources, facts, system = load_sources(), SHARED["facts"], SHARED["system"]
    outcomes: list[tuple] = []
    rows = []
    for number, raw in jobs:
        name, found = facts[number]
        raw = parsed(raw)
        row = convert_one(sources[name], raw, system, found)
        if isinstance(row, str):
            outcomes.append(("reject", row, raw))
        else:
            outcomes.append(())
            rows.append(row)
    digests, signatures, texts = features(rows)
    index, tokenizer = SHARED["index"], SHARED["tokenizer"]
    matches = [index.match_words(text, DEFAULT_THRESHOLD) for text in texts] if index is not None else \
        [None] * len(rows)
    facts = measured(rows, load_tokenizer(tokenizer), SHARED["wanted"]) if tokenizer is not None else \
        [None] * len(rows)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    made = iter(zip(["row"] * len(rows), lines, digests, matches, facts, strict=True))
    return [outcome or next(made) for outcome in outcomes], signatures
