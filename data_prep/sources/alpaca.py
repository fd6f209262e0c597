"""Alpaca-style rows: ``instruction``, ``input``, ``output`` (medAlpaca medical meadow, ChatDoctor).

The user turn is the instruction, then a blank line and the input when there is one.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, message, sft_row

NAME = "alpaca"
KIND = "sft"
SUMMARY = "instruction, input, output (medAlpaca medical meadow, ChatDoctor)"


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    for field in ("instruction", "output"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    instruction = record["instruction"] if isinstance(record["instruction"], str) else ""
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise Reject(f"input is {type(extra).__name__}, not text")
    prompt = "\n\n".join(part.strip() for part in (instruction, extra) if part.strip())
    return sft_row([message("user", prompt), message("assistant", record["output"])], system)
