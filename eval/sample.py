"""The default eval's items: a fixed, seeded sample of each prepared test set, stratified by gold answer.

    python -m eval run                # the sample (SIZES items per task), about 10 minutes for SmolLM2-135M on 2 cores
    python -m eval run --full         # every item of the nine test sets

The same prepared file, seed and size always give the same items: each answer class gets its share of the
sample (largest remainder), and within a class the items whose ``sha256(seed:id)`` is lowest are taken, so a
larger sample contains a smaller one. The sampled rows keep the file's order. A task with no more items than its
size is taken whole.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.files import sha256_file, write_json_atomic, write_jsonl_atomic

SEED = 0
# ours: sized so that scoring a 135M model on 2 CPU cores takes about 6 minutes (docs/eval.md: ~95k tokens of
# context of the full sets' 787k); PubMedQA's 100 fix the yes/no/maybe shares to within a few points.
SIZES = {"medmcqa": 200, "medqa_4options": 100, "pubmedqa": 100, "mmlu_anatomy": 50, "mmlu_clinical_knowledge": 50,
         "mmlu_college_biology": 50, "mmlu_college_medicine": 50, "mmlu_medical_genetics": 50,
         "mmlu_professional_medicine": 50}
SAMPLE_FILE = "sample.json"


def rank(seed: int, item_id: str) -> str:
    """An item's place in the seeded order: the hex sha256 of ``seed:id``."""
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def shares(counts: dict[Any, int], size: int) -> dict[Any, int]:
    """``size`` split over the classes in proportion to ``counts`` (largest remainder, ties by class order)."""
    total = sum(counts.values())
    exact = {key: size * count / total for key, count in counts.items()}
    given = {key: int(value) for key, value in exact.items()}
    order = sorted(counts, key=lambda key: (-(exact[key] - given[key]), str(key)))
    for key in order[:size - sum(given.values())]:
        given[key] += 1
    return given


def stratified(rows: list[dict[str, Any]], size: int, seed: int = SEED) -> list[dict[str, Any]]:
    """``size`` rows of ``rows``, each gold answer in proportion, in file order; all rows if there are no more."""
    if len(rows) <= size:
        return list(rows)
    by_answer: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_answer[row["answer"]].append(row)
    taken: set[str] = set()
    for answer, count in shares({a: len(r) for a, r in by_answer.items()}, size).items():
        ranked = sorted(by_answer[answer], key=lambda row: rank(seed, str(row["id"])))
        taken.update(str(row["id"]) for row in ranked[:count])
    return [row for row in rows if str(row["id"]) in taken]


def read_prepared(path: Path) -> list[dict[str, Any]]:
    """A prepared ``<task>.jsonl``; InputError naming the line that is not a JSON row."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InputError(f"{path}, line {number}: not a prepared row ({err.msg}); prepare it again "
                                     "(make benchmarks)") from None
    return rows


def count_prepared(path: Path) -> int:
    """Rows in a prepared ``<task>.jsonl`` (its non-blank lines), without parsing them."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip())


def write_sample(benchmarks: Path, names: list[str], out: Path, sizes: dict[str, int] | None = None,
                 seed: int = SEED) -> dict[str, Any]:
    """Sample each task's prepared file into ``out/<task>.jsonl``; write and return ``out/sample.json``."""
    sizes = SIZES if sizes is None else sizes
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"seed": seed, "stratified_by": "gold answer", "tasks": {}}
    for name in names:
        source = benchmarks / f"{name}.jsonl"
        count = count_prepared(source)
        if count <= sizes.get(name, count):  # taken whole, as prepared (lm-eval reads and checks it)
            shutil.copyfile(source, out / f"{name}.jsonl")
            taken = count
        else:
            taken = write_jsonl_atomic(out / f"{name}.jsonl", stratified(read_prepared(source), sizes[name], seed))
        record["tasks"][name] = {"n": taken, "of": count, "source": str(source.resolve()),
                                 "source_sha256": sha256_file(source)}
    write_json_atomic(out / SAMPLE_FILE, record)
    return record
