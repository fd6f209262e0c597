"""PubMedQA PQA-L / PQA-A: an object keyed by PMID of ``QUESTION``, ``CONTEXTS``, ``LABELS``, ``LONG_ANSWER``,
``final_decision`` (the reader adds the PMID as ``__key__``).

User turn: the abstract's contexts, one paragraph each, written "LABEL: text" when ``LABELS`` has one
non-empty label per context (otherwise the bare text); a blank line; then "Question: <QUESTION>".
Assistant turn: ``LONG_ANSWER``, a blank line, then "Answer: yes|no|maybe". ``MESHES``, ``YEAR`` and
the ``reasoning_*`` predictions are not used. A ``final_decision`` other than yes, no or maybe is rejected.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, message, sft_row
from data_prep.sources._mcq import checked_text

NAME = "pubmedqa"
KIND = "sft"
SUMMARY = "{PMID: {QUESTION, CONTEXTS, LABELS, LONG_ANSWER, final_decision}} (PubMedQA PQA-L, PQA-A)"

DECISIONS = ("yes", "no", "maybe")


def render_contexts(contexts: Any, labels: Any) -> str:
    """The contexts as paragraphs, each prefixed by its label when every context has one."""
    if not isinstance(contexts, list):
        raise Reject(f"CONTEXTS is {type(contexts).__name__}, not a list")
    if not contexts:
        raise Reject("CONTEXTS is empty")
    texts = [checked_text(f"context {number}", text) for number, text in enumerate(contexts, start=1)]
    aligned = (isinstance(labels, list) and len(labels) == len(texts)
               and all(isinstance(label, str) and label.strip() for label in labels))
    if aligned:
        texts = [f"{label.strip()}: {text}" for label, text in zip(labels, texts, strict=True)]
    return "\n\n".join(texts)


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    for field in ("QUESTION", "CONTEXTS", "LONG_ANSWER", "final_decision"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    decision = record["final_decision"]
    if decision not in DECISIONS:
        raise Reject(f"final_decision {decision!r} is not yes, no or maybe")
    contexts = render_contexts(record["CONTEXTS"], record.get("LABELS"))
    user = f"{contexts}\n\nQuestion: {checked_text('QUESTION', record['QUESTION'])}"
    assistant = f"{checked_text('LONG_ANSWER', record['LONG_ANSWER'])}\n\nAnswer: {decision}"
    return sft_row([message("user", user), message("assistant", assistant)], system)
