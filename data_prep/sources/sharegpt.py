"""ShareGPT-style rows: ``conversations`` as ``[{from: human|gpt|system, value}]`` (UltraMedical).

UltraMedical adds ``id``, ``type``, ``answer`` and ``score``, which are not needed here. Some dumps
store ``conversations`` as text (JSON, or a Python list repr); that text is parsed as data, never run.
A system turn in the row is kept, and then ours is not added.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from data_prep.rows import Reject, message, sft_row

NAME = "sharegpt"
KIND = "sft"
SUMMARY = "conversations: [{from: human|gpt|system, value}] (UltraMedical)"

ROLES = {"human": "user", "gpt": "assistant", "system": "system"}


def parse_text(text: str) -> Any:
    """``conversations`` stored as text: JSON first, then a Python literal (``ast.literal_eval``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
        raise Reject("conversations is text that does not parse as a list") from err


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    if "conversations" not in record:
        raise Reject("missing field 'conversations'")
    turns = record["conversations"]
    if isinstance(turns, str):
        turns = parse_text(turns)
    if not isinstance(turns, list):
        raise Reject(f"conversations is {type(turns).__name__}, not a list")
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise Reject(f"conversations turn {number} is {type(turn).__name__}, not an object")
        for key in ("from", "value"):
            if key not in turn:
                raise Reject(f"conversations turn {number} has no {key!r}")
        speaker = turn["from"]
        if not isinstance(speaker, str) or speaker not in ROLES:
            raise Reject(f"unknown speaker {speaker!r} in conversations turn {number}")
        messages.append(message(ROLES[speaker], turn["value"]))
    return sft_row(messages, system)
