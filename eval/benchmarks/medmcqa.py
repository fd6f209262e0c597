"""MedMCQA: ``id``, ``question``, ``opa``..``opd``, ``cop``; JSON, JSONL or Parquet (original release or hub copy).

    python -m eval prepare medmcqa dev.json --out data/benchmarks

The validation split (``dev.json``, 4183 rows) is the evaluation split. ``cop`` counts from 1 in
the original release and from 0 in the hub copy; the base is found per file by the training
converter's rule (``data_prep.sources.medmcqa.inspect``) and recorded as ``cop_base``.
Rows keep the published ``id``; a row without one gets an id from its content.
"""

from __future__ import annotations

from typing import Any

from data_prep.readers import read_rows
from data_prep.rows import Reject
from data_prep.sources import medmcqa as training
from eval.benchmarks._common import BenchmarkError, Loaded, content_id, convert_rows, mcq_row, unique_ids

NAME = "medmcqa"
SUMMARY = "MedMCQA dev.json / validation (JSON, JSONL, Parquet): question, opa..opd, cop (1-4 or 0-3), id"


def item(record: dict[str, Any], cop_base: int) -> dict[str, Any]:
    """One prepared row from a MedMCQA record."""
    for name in ("question", *training.OPTION_FIELDS, "cop"):
        if name not in record:
            raise Reject(f"missing field {name!r}")
    cop = record["cop"]
    if not training.is_index(cop):
        raise Reject(f"cop {cop!r} is not an integer")
    options = [record[name] for name in training.OPTION_FIELDS]
    item_id = record.get("id") or content_id(NAME, str(record["question"]), *map(str, options))
    return mcq_row(item_id, record["question"], options, cop - cop_base)


def load(inputs: list[str], task: Any) -> Loaded:
    """Every row of every input, in order."""
    rows, bases = [], {}
    for spec in inputs:
        raws = list(read_rows(spec))
        try:
            facts = training.inspect([r.record for r in raws if r.error is None])
        except SystemExit as err:
            raise BenchmarkError(f"{spec}: {err}") from err
        bases[spec] = facts["cop_base"]
        rows += convert_rows(raws, lambda record, base=facts["cop_base"]: item(record, base))
    return Loaded(unique_ids(rows), {"cop_base": bases})
