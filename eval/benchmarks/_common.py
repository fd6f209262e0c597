"""Helpers the schema modules share: prepared MCQ rows, stable ids, row-by-row conversion with located errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from data_prep.readers import RawRow
from data_prep.rows import Reject

LETTERS = "ABCD"
MAX_LISTED_ERRORS = 20


class BenchmarkError(SystemExit):
    """Bad benchmark input; the message names the file, the place in it and the reason."""


@dataclass
class Loaded:
    """What a schema module read: prepared rows, facts about the files, and rows it left out on purpose."""

    rows: list[dict[str, Any]]
    facts: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> count (e.g. other MMLU subjects)


def text_value(name: str, value: Any) -> str:
    """``value`` unchanged when it is non-blank text (numbers become text); else ``Reject`` naming it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise Reject(f"{name} is {'null' if value is None else type(value).__name__}, not text")
    if not value.strip():
        raise Reject(f"{name} is empty")
    return value


def mcq_row(item_id: Any, question: Any, options: list[Any], answer: int, **extra: Any) -> dict[str, Any]:
    """A prepared four-option row; ``text`` is the question then ``A. option`` lines."""
    if len(options) != len(LETTERS):
        raise Reject(f"{len(options)} options; the task has exactly {len(LETTERS)}")
    if not 0 <= answer < len(LETTERS):
        raise Reject(f"answer index {answer} is not 0-3")
    question = text_value("question", question)
    choices = [text_value(f"option {letter}", o) for letter, o in zip(LETTERS, options, strict=True)]
    lines = [f"{letter}. {choice.strip()}" for letter, choice in zip(LETTERS, choices, strict=True)]
    text = question.strip() + "\n" + "\n".join(lines)
    return {"id": item_id, "question": question, "text": text, "choices": choices, "answer": answer, **extra}


def content_id(prefix: str, *parts: str) -> str:
    """A stable id from an item's content, for sources that publish none."""
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:12]
    return f"{prefix}-{digest}"


def convert_rows(raws: Iterable[RawRow], convert: Callable[[dict[str, Any]], dict[str, Any] | None],
                 left_out: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """``convert`` on each parsed row; stop with every bad row's file, place and reason.

    ``convert`` returns None for a row left out on purpose; it is counted under ``left_out``
    by the reason the caller gives in ``convert.left_out_reason``.
    """
    rows, errors = [], []
    for raw in raws:
        try:
            if raw.error is not None:
                raise Reject(raw.error)
            if not isinstance(raw.record, dict):
                raise Reject(f"row is a JSON {type(raw.record).__name__}, not an object")
            row = convert(raw.record)
        except Reject as err:
            errors.append(f"{raw.file}, {raw.where}: {err}")
            continue
        if row is None:
            if left_out is not None:
                reason = getattr(convert, "left_out_reason", "left out")
                left_out[reason] = left_out.get(reason, 0) + 1
            continue
        rows.append(row)
    if len(errors) == 1:
        raise BenchmarkError(f"{errors[0]}; a bad benchmark row, nothing written")
    if errors:
        listed = "\n".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise BenchmarkError(f"{len(errors)} bad benchmark row(s); nothing written:\n{listed}{more}")
    return rows


def unique_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids as text, unique within the file: a repeated id gets ``-2``, ``-3`` ... in file order."""
    seen: dict[str, int] = {}
    for row in rows:
        base = str(row["id"])
        seen[base] = seen.get(base, 0) + 1
        row["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return rows
