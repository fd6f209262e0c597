"""Ranked answers, Nectar style: ``prompt`` and ``answers: [{answer, model, rank}]``; ``score`` for ``rank`` too.

Pairing rule, one pair per row: chosen = the best answer (lowest ``rank``, rank 1 is best; or highest
``score``), rejected = the worst (highest rank, or lowest score). A tie for best or for worst goes to the
answer that comes first in the list. Every answer must carry a number under the same key (all ``rank``
or all ``score``). Rejected: fewer than 2 answers, a missing rank or score, or all answers ranked equal.

Nectar's prompt is a transcript, ``"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant:"``:
it is split on the ``Human:`` / ``Assistant:`` markers into user and assistant turns, and the trailing
empty ``Assistant:`` is dropped. A prompt without markers is a single user turn.
"""

from __future__ import annotations

import math
import re
from typing import Any

from data_prep.rows import Reject, dpo_row, message

NAME = "pref-ranked"
KIND = "dpo"
SUMMARY = "prompt, answers: [{answer, model, rank|score}] (Nectar); best vs worst"

# A turn marker: at the very start, or after a blank line, as Anthropic HH / Nectar transcripts write it.
MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
ROLES = {"Human": "user", "Assistant": "assistant"}


def prompt_turns(prompt: Any) -> list[dict[str, str]]:
    """The prompt's turns: a ``Human:``/``Assistant:`` transcript split into messages, or one user turn."""
    if not isinstance(prompt, str):
        raise Reject(f"prompt is {type(prompt).__name__}, not text")
    parts = MARKER.split(prompt)
    if len(parts) == 1:
        return [message("user", prompt)]
    if parts[0].strip():
        raise Reject("prompt has text before its first Human:/Assistant: marker")
    turns = list(zip(parts[1::2], parts[2::2], strict=True))
    if turns[-1][0] == "Assistant" and not turns[-1][1].strip():
        turns.pop()
    return [message(ROLES[speaker], text) for speaker, text in turns]


def ranking(answers: list[Any]) -> tuple[str, list[float]]:
    """``("rank", [...])`` or ``("score", [...])``: the key every answer carries, and its values in order."""
    for number, answer in enumerate(answers, start=1):
        if not isinstance(answer, dict):
            raise Reject(f"answer {number} is {type(answer).__name__}, not an object")
        if answer.get("rank") is None and answer.get("score") is None:
            raise Reject(f"answer {number} has no rank or score")
    key = next((k for k in ("rank", "score") if all(a.get(k) is not None for a in answers)), None)
    if key is None:
        raise Reject("answers mix rank and score")
    values = []
    for number, answer in enumerate(answers, start=1):
        value = answer[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Reject(f"answer {number} {key} {value!r} is not a number")
        values.append(value)
    return key, values


def answer_text(answers: list[dict[str, Any]], index: int) -> str:
    """The checked text of one answer (by list index); reasons name it by its number, from 1."""
    if "answer" not in answers[index]:
        raise Reject(f"answer {index + 1} has no 'answer' text")
    return message(f"answer {index + 1}", answers[index]["answer"])["content"]


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    for field in ("prompt", "answers"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    answers = record["answers"]
    if not isinstance(answers, list):
        raise Reject(f"answers is {type(answers).__name__}, not a list")
    if len(answers) < 2:
        raise Reject(f"{len(answers)} answer{'' if len(answers) == 1 else 's'}; a pair needs at least 2")
    key, values = ranking(answers)
    # Better is a lower rank or a higher score; min/max return the first of equals, i.e. the earlier answer.
    goodness = [-v for v in values] if key == "rank" else values
    best = max(range(len(answers)), key=lambda i: goodness[i])
    worst = min(range(len(answers)), key=lambda i: goodness[i])
    if goodness[best] == goodness[worst]:
        raise Reject("all answers ranked equal")
    prompt = prompt_turns(record["prompt"])
    return dpo_row(prompt, answer_text(answers, best), answer_text(answers, worst), system)
