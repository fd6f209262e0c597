"""MedMCQA: ``question``, ``opa``..``opd``, ``cop`` (the correct option), ``exp`` (explanation, may be null).

Rendered with the shared multiple-choice format (``_mcq``): the question and options A-D as the
user turn; "The answer is X. <option>." as the assistant turn, then a blank line and ``exp`` when
it is not null or blank. ``id``, ``choice_type``, ``subject_name`` and ``topic_name`` are not used.

``cop`` counts from 0 in the hub copy and from 1 in the original release. ``inspect`` decides the
base for the whole file from its values: a 0 means 0-based, a 4 means 1-based; both, or only 1-3,
stop the conversion, since guessing would shift every answer by one. The base is recorded in the
manifest as ``cop_base``.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, message, sft_row
from data_prep.sources._mcq import LETTERS, render_answer, render_question

NAME = "medmcqa"
KIND = "sft"
SUMMARY = "question, opa..opd, cop (0-3 hub copy or 1-4 original, found per file), exp (MedMCQA)"

OPTION_FIELDS = ("opa", "opb", "opc", "opd")


def is_index(value: Any) -> bool:
    """An int, not a bool (JSON ``true`` would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def inspect(records: list[dict[str, Any]]) -> dict[str, int]:
    """``{"cop_base": 0 or 1}`` from the ``cop`` values of the file; stops when they do not settle it."""
    seen = {r["cop"] for r in records if isinstance(r, dict) and is_index(r.get("cop")) and 0 <= r["cop"] <= 4}
    if 0 in seen and 4 in seen:
        raise SystemExit(f"{NAME}: cop values include both 0 and 4, so the file mixes 0-based (hub copy) and "
                         "1-based (original release) answers; convert each release separately")
    if 0 in seen:
        return {"cop_base": 0}
    if 4 in seen:
        return {"cop_base": 1}
    if not seen:
        raise SystemExit(f"{NAME}: no row has an integer cop from 0 to 4 (an unlabelled test split?); "
                         "nothing to train on")
    raise SystemExit(f"{NAME}: cop values are only {sorted(seen)}, so the file does not show whether cop counts "
                     "from 0 (hub copy) or from 1 (original release); the base has to be given explicitly, "
                     "which the command line does not support yet, so this file cannot be converted")


def convert(record: dict[str, Any], system: str | None, cop_base: int) -> dict[str, Any]:
    for field in ("question", *OPTION_FIELDS, "cop"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    cop = record["cop"]
    if not is_index(cop):
        raise Reject(f"cop {cop!r} is not an integer")
    index = cop - cop_base
    if not 0 <= index < len(OPTION_FIELDS):
        raise Reject(f"cop {cop} is not an option index ({cop_base}-{cop_base + len(OPTION_FIELDS) - 1})")
    options = [record[field] for field in OPTION_FIELDS]
    user = render_question(record["question"], options)
    assistant = render_answer(LETTERS[index], options[index], record.get("exp"))
    return sft_row([message("user", user), message("assistant", assistant)], system)
