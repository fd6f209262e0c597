"""PubMedQA, the official test split: the 500 PMIDs of ``test_ground_truth.json``, taken from ``ori_pqal.json``.

    python -m eval prepare pubmedqa ori_pqal.json test_ground_truth.json --out data/benchmarks

``ori_pqal.json`` is an object keyed by PMID of ``QUESTION``, ``CONTEXTS``, ``final_decision``, ...
(1000 PMIDs); ``test_ground_truth.json`` maps each test PMID to its gold label (yes/no/maybe).
The split is stratified, not a slice of the file, so rows are picked by PMID, in the ground
truth's order, with its labels; a label that disagrees with the row's ``final_decision``, or a
test PMID missing from the rows, stops the run. Without a ground-truth file every row is taken
with its ``final_decision`` (a test split that is already cut, e.g. a hub copy; ids from ``pubid``).
The authors' hub copy (qiaojin/PubMedQA, pqa_labeled: ``pubid``, ``question``, ``context.contexts``,
``final_decision``) is read too; ``python -m eval prepare --all`` picks its test PMIDs with the shipped
``eval/benchmarks/data/pubmedqa_test_ground_truth.json``.

The prompt context is the ``CONTEXTS`` joined by newlines, as upstream lm-eval's ``pubmedqa``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import DECOMPRESS_ERRORS, format_suffix, read_text
from data_prep.readers import HUB_PREFIX, read_rows
from data_prep.rows import Reject
from eval.benchmarks._common import BenchmarkError, Loaded, content_id, convert_rows, text_value, unique_ids

NAME = "pubmedqa"
SUMMARY = "PubMedQA ori_pqal.json (PMID -> QUESTION, CONTEXTS, final_decision) + test_ground_truth.json (PMID -> label)"
DECISIONS = ("yes", "no", "maybe")
LEFT_OUT = "not in the official test split (test_ground_truth.json)"


def ground_truth(spec: str) -> dict[str, str] | None:
    """The PMID -> label map when ``spec`` is a ground-truth file (a JSON object of labels), else None."""
    if spec.startswith(HUB_PREFIX) or format_suffix(spec) != ".json" or not Path(spec).is_file():
        return None
    try:
        data = json.loads(read_text(spec, encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, *DECOMPRESS_ERRORS):
        return None  # the row reader reports it
    if not (isinstance(data, dict) and data and all(isinstance(v, str) for v in data.values())):
        return None
    bad = {pmid: label for pmid, label in data.items() if label not in DECISIONS}
    if bad:
        pmid, label = next(iter(bad.items()))
        raise BenchmarkError(f"{spec}, key {pmid}: label {label!r} is not yes, no or maybe ({len(bad)} such)")
    return data


def item(record: dict[str, Any], labels: dict[str, str] | None) -> dict[str, Any] | None:
    """One prepared row; None for a PMID outside the ground truth."""
    pmid = record.get("__key__", record.get("pubid", record.get("PUBMED_ID")))
    if labels is not None and str(pmid) not in labels:
        return None
    if "QUESTION" not in record and isinstance(record.get("context"), dict):  # the hub copy, qiaojin/PubMedQA
        record = {"QUESTION": record.get("question"), "CONTEXTS": record["context"].get("contexts"),
                  "final_decision": record.get("final_decision")}
    for name in ("QUESTION", "CONTEXTS"):
        if name not in record:
            raise Reject(f"missing field {name!r}")
    contexts = record["CONTEXTS"]
    if not isinstance(contexts, list) or not contexts:
        raise Reject("CONTEXTS is not a non-empty list")
    context = "\n".join(text_value(f"context {n}", c) for n, c in enumerate(contexts, start=1))
    question = text_value("QUESTION", record["QUESTION"])
    decision = record.get("final_decision")
    if labels is not None:
        if decision is not None and decision != labels[str(pmid)]:
            raise Reject(f"final_decision {decision!r} disagrees with the ground truth {labels[str(pmid)]!r}")
        decision = labels[str(pmid)]
    if decision not in DECISIONS:
        raise Reject(f"final_decision {decision!r} is not yes, no or maybe")
    item_id = str(pmid) if pmid is not None else content_id(NAME, question, context)
    text = f"Abstract: {context.strip()}\nQuestion: {question.strip()}"
    return {"id": item_id, "question": question, "context": context, "text": text,
            "answer": DECISIONS.index(decision), "final_decision": decision}


def load(inputs: list[str], task: Any) -> Loaded:
    """The ground-truth PMIDs (all rows without a ground-truth file), in the ground truth's order."""
    truths = {spec: labels for spec in inputs if (labels := ground_truth(spec)) is not None}
    if len(truths) > 1:
        raise BenchmarkError(f"pubmedqa: more than one ground-truth file given: {', '.join(truths)}")
    spec_truth, labels = next(iter(truths.items()), (None, None))
    sources = [spec for spec in inputs if spec not in truths]
    if not sources:
        raise BenchmarkError("pubmedqa: no rows given; pass ori_pqal.json (and test_ground_truth.json)")
    left_out: dict[str, int] = {}

    def convert(record: dict[str, Any]) -> dict[str, Any] | None:
        return item(record, labels)

    convert.left_out_reason = LEFT_OUT  # type: ignore[attr-defined]
    rows = []
    for spec in sources:
        rows += convert_rows(read_rows(spec), convert, left_out)
    if labels is not None:
        by_id = {row["id"]: row for row in rows}
        missing = [pmid for pmid in labels if pmid not in by_id]
        if missing:
            raise BenchmarkError(f"{spec_truth}: {len(missing)} test PMID(s) not found in {', '.join(sources)}: "
                                 f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        rows = [by_id[pmid] for pmid in labels]
    facts = {"ground_truth": spec_truth, "ground_truth_pmids": len(labels) if labels else None}
    return Loaded(unique_ids(rows), facts, left_out)
