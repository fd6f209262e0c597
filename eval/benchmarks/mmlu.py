"""MMLU, one subject's test split: the original CSV or the hub copy (Parquet, JSON, JSONL).

    python -m eval prepare mmlu_anatomy data/mmlu/test/anatomy_test.csv --out data/benchmarks

- CSV (the original ``data/test/<subject>_test.csv``, or it compressed, ``.csv.xz``/``.csv.gz``): no header;
  question, A, B, C, D, answer letter;
- hub copy (cais/mmlu, what upstream lm-eval reads): ``question``, ``subject``, ``choices`` [4], ``answer`` (0-3).
  A file of several subjects (the ``all`` config) is filtered to the task's subject; the rows of
  other subjects are counted in the manifest.

A CSV named ``<subject>_<split>.csv`` for another subject or split than the task's test split is refused.
Rows have no published id; the id comes from the content.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.files import format_suffix, open_text, plain_name
from data_prep.readers import HUB_PREFIX, RawRow, decompressing, read_rows
from data_prep.rows import Reject
from eval.benchmarks._common import LETTERS, BenchmarkError, Loaded, content_id, convert_rows, mcq_row, unique_ids

NAME = "mmlu"
SUMMARY = "MMLU <subject>_test.csv (question,A,B,C,D,answer; no header) or hub Parquet (question, choices, answer)"
CSV_NAME = re.compile(r"(?P<subject>.+)_(?P<split>dev|val|test)\.csv")
CSV_FIELDS = 6


def read_csv(path: Path) -> Iterator[RawRow]:
    """Rows of a header-less MMLU CSV as records; a row without six fields is a row with an error."""
    with decompressing(path), open_text(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        start = 1
        for fields in reader:
            where, start = f"line {start}", reader.line_num + 1
            if len(fields) != CSV_FIELDS:
                yield RawRow(str(path), where, fields, f"{len(fields)} fields; expected {CSV_FIELDS} "
                                                       "(question, A, B, C, D, answer)")
                continue
            question, *options, answer = fields
            yield RawRow(str(path), where, {"question": question, "choices": options, "answer": answer})


def check_csv_name(path: Path, subject: str) -> None:
    """Refuse ``<other subject>_test.csv`` or ``<subject>_dev.csv`` for this task."""
    match = CSV_NAME.fullmatch(plain_name(path))
    if match and (match["subject"] != subject or match["split"] != "test"):
        raise BenchmarkError(f"{path}: this is MMLU {match['subject']} {match['split']}, but the task is "
                             f"mmlu_{subject} on the test split")


def item(record: dict[str, Any], subject: str) -> dict[str, Any] | None:
    """One prepared row; None for a row of another subject."""
    if record.get("subject") not in (None, subject):
        return None
    for name in ("question", "choices", "answer"):
        if name not in record:
            raise Reject(f"missing field {name!r}")
    choices, answer = record["choices"], record["answer"]
    if not isinstance(choices, list):
        raise Reject(f"choices is {type(choices).__name__}, not a list")
    if isinstance(answer, str) and len(answer) == 1 and answer in LETTERS:
        answer = LETTERS.index(answer)
    elif not (isinstance(answer, int) and not isinstance(answer, bool)):
        raise Reject(f"answer {answer!r} is not a letter A-D or an index 0-3")
    item_id = content_id(f"mmlu_{subject}", str(record["question"]), *map(str, choices))
    return mcq_row(item_id, record["question"], choices, answer, subject=subject)


def load(inputs: list[str], task: Any) -> Loaded:
    """Every row of the task's subject in every input, in order."""
    subject, rows, left_out = task.subject, [], {}

    def convert(record: dict[str, Any]) -> dict[str, Any] | None:
        return item(record, subject)

    convert.left_out_reason = "another MMLU subject"  # type: ignore[attr-defined]
    for spec in inputs:
        if not spec.startswith(HUB_PREFIX) and format_suffix(spec) == ".csv":
            path = Path(spec)
            if not path.is_file():
                raise BenchmarkError(f"{spec}: no such file")
            check_csv_name(path, subject)
            raws: Any = read_csv(path)
        else:
            raws = read_rows(spec)
        rows += convert_rows(raws, convert, left_out)
    return Loaded(unique_ids(rows), {"subject": subject}, left_out)
