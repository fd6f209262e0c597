"""Anthropic HH-RLHF (Bai et al., 2022): ``chosen`` and ``rejected``, each a whole conversation as one string.

    python -m data_prep convert hh-rlhf data/published/dpo/hh_rlhf/helpful-base_test.jsonl.gz --out hh.jsonl

Each string is ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."``: it is split into turns at
``\\n\\nHuman:`` and ``\\n\\nAssistant:``. The turns must start with Human, alternate, and end with Assistant;
every turn but the last is the shared prompt (Human -> user, Assistant -> assistant), which must be the
same in chosen and rejected; the two last Assistant turns are the chosen and rejected answers.
Rejected with the reason: a missing field or one that is not text, text before the first turn, no Human
turn, turns out of order, a conversation not ending with Assistant, an empty turn, prompts that differ,
chosen equal to rejected.
"""

from __future__ import annotations

import re
from typing import Any

from data_prep.rows import Reject, dpo_row, message

NAME = "hh-rlhf"
KIND = "dpo"
SUMMARY = 'chosen, rejected as "\\n\\nHuman: ...\\n\\nAssistant: ..." strings (Anthropic HH-RLHF)'

TURN = re.compile(r"\n\n(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}


def turns(record: dict[str, Any], field: str) -> list[tuple[str, str]]:
    """``field``'s conversation as (speaker, text) turns, checked: Human first, alternating, Assistant last."""
    if field not in record:
        raise Reject(f"missing field {field!r}")
    text = record[field]
    if not isinstance(text, str):
        raise Reject(f"{field} is {'null' if text is None else type(text).__name__}, not text")
    parts = TURN.split(text)
    if parts[0].strip():
        raise Reject(f"{field}: text before the first Human or Assistant turn")
    found = list(zip(parts[1::2], (part.strip() for part in parts[2::2]), strict=True))
    if not any(speaker == "Human" for speaker, _ in found):
        raise Reject(f"{field}: no Human turn")
    for position, (speaker, said) in enumerate(found):
        if speaker != ("Human" if position % 2 == 0 else "Assistant"):
            raise Reject(f"{field}: turns out of order (Human and Assistant must alternate, Human first)")
        if not said:
            raise Reject(f"{field}: empty {speaker} turn")
    if found[-1][0] != "Assistant":
        raise Reject(f"{field}: does not end with an Assistant turn")
    return found


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    chosen, rejected = turns(record, "chosen"), turns(record, "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise Reject("chosen and rejected have different prompts")
    prompt = [message(ROLES[speaker], said) for speaker, said in chosen[:-1]]
    return dpo_row(prompt, chosen[-1][1], rejected[-1][1], system)
