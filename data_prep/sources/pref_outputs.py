"""Model outputs for one multiple-choice question, with the gold letter (UltraMedical's medqa_outputs).

Fields: ``conversations`` ([{from: human|gpt, value}], the question and its gold reply), ``answer``
(the gold letter) and ``model_outputs`` ([{model_name: text}, ...]). Some dumps store ``conversations``
and ``model_outputs`` as Python list reprs; those are parsed with ``ast.literal_eval``, never run.

Pairing rule, one pair per row: each output's final letter is the last explicit answer statement in it
(see ``final_letter``). Chosen = the first output, in list order, whose final letter is the gold
``answer``; rejected = the first output whose final letter is another letter. Outputs that state no
final letter are never used. A row without such a correct and such a wrong output is rejected.

The prompt is the conversation up to its last human turn (human -> user, gpt -> assistant); the gold
reply after it is dropped. The option letters are the ``A. ...`` lines of that last human turn.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from data_prep.rows import Reject, dpo_row, message

NAME = "pref-outputs"
KIND = "dpo"
SUMMARY = "conversations, answer, model_outputs: [{model: text}] (UltraMedical medqa_outputs); right vs wrong"

ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
OPTION_LINE = re.compile(r"^([A-H])\.\s", re.MULTILINE)

# Explicit answer statements; group 1 is the letter. Letters stop at H so that the pronoun "I" is no letter.
LETTER = r"([A-H])(?![\w'\u2019-])"
STATEMENTS = [
    # "the answer is (C)", "Answer: C", "**Answer:** C", "the correct option is C", "answer would be option C"
    re.compile(r"(?i:\b(?:answer|option|choice)\b)[\s*]*"
               r"(?:(?i:is|would be|will be|should be|must be)\b|:)[\s*:]*"
               r"(?:(?i:likely|most likely|probably|therefore)\s+)?"
               r"(?:(?i:option|choice|letter)\s*)?[\s*(\[]*" + LETTER),
    # "Option C is correct", "(C) is the best answer"
    re.compile(r"(?:(?i:\b(?:option|choice))\s+\(?|\()([A-H])\)?\s+is\s+(?:the\s+)?(?:correct|right|best)\b"),
    # "\boxed{C}"
    re.compile(r"\\boxed\{\s*\(?([A-H])\)?\s*\}"),
]
# The text's last line alone: "C", "C.", "(C)", "**C.**", or a bold option "**C. Glycosaminoglycans**".
LAST_LINE = [
    re.compile(r"^[\s*_\[(]*([A-H])[.):\]]?[\s*_\]]*$"),
    re.compile(r"^\*\*\(?([A-H])[.)]\s+[^*\n]+\*\*\W*$"),
]


def final_letter(text: str, letters: str = "ABCD") -> str | None:
    """The letter of the last explicit answer statement in ``text``, or None when it states none.

    Letters mentioned along the way ("A. ... is not typical", "answer B is wrong") are not statements.
    When the last statement names a letter outside ``letters``, the answer is None too: no guess.
    """
    found = [(m.start(), m.group(1)) for pattern in STATEMENTS for m in pattern.finditer(text)]
    lines = text.rstrip().splitlines()
    if lines:
        start = len(text.rstrip()) - len(lines[-1])
        found += [(start, m.group(1)) for pattern in LAST_LINE if (m := pattern.match(lines[-1]))]
    if not found:
        return None
    letter = max(found)[1]
    return letter if letter in letters else None


def parsed_list(record: dict[str, Any], field: str) -> list[Any]:
    """``field`` as a list, parsing a Python list repr with ``ast.literal_eval``."""
    if field not in record:
        raise Reject(f"missing field {field!r}")
    value = record[field]
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as err:
            raise Reject(f"{field} is text that does not parse as a list") from err
    if not isinstance(value, list):
        raise Reject(f"{field} is {type(value).__name__}, not a list")
    return value


def prompt_turns(conversations: list[Any]) -> list[dict[str, str]]:
    """The conversation up to and including its last human turn, as messages."""
    messages = []
    for number, turn in enumerate(conversations, start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise Reject(f"conversations turn {number} is not an object with 'from' and 'value'")
        if turn["from"] not in ROLES:
            raise Reject(f"unknown speaker {turn['from']!r} in conversations turn {number}")
        messages.append(message(ROLES[turn["from"]], turn["value"]))
    while messages and messages[-1]["role"] != "user":
        messages.pop()
    if not messages:
        raise Reject("conversations has no human turn")
    return messages


def outputs(model_outputs: list[Any]) -> list[tuple[str, Any]]:
    """``(model_name, text)`` for every output, in list order."""
    if not model_outputs:
        raise Reject("model_outputs is empty")
    pairs = []
    for number, item in enumerate(model_outputs, start=1):
        if not isinstance(item, dict) or not item:
            raise Reject(f"model output {number} is not a {{model_name: text}} object")
        pairs += list(item.items())
    return pairs


def plural(count: int, noun: str, verb: str) -> str:
    """``"1 output states"``, ``"2 outputs state"``."""
    return f"{count} {noun} {verb}s" if count == 1 else f"{count} {noun}s {verb}"


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    prompt = prompt_turns(parsed_list(record, "conversations"))
    letters = "".join(OPTION_LINE.findall(prompt[-1]["content"]))
    if not letters:
        raise Reject("question lists no options as 'A. ...' lines")
    if "answer" not in record:
        raise Reject("missing field 'answer'")
    gold = record["answer"]
    if not isinstance(gold, str) or gold.strip() not in letters:
        raise Reject(f"answer {gold!r} is not one of the option letters {letters}")
    gold = gold.strip()
    right, wrong, unstated = [], [], 0
    for model, text in outputs(parsed_list(record, "model_outputs")):
        if not isinstance(text, str):
            raise Reject(f"output of {model!r} is {type(text).__name__}, not text")
        letter = final_letter(text, letters)
        if letter is None:
            unstated += 1
        else:
            (right if letter == gold else wrong).append(text)
    if not right and not wrong:
        raise Reject("the only output states no final letter" if unstated == 1
                     else f"none of the {unstated} outputs states a final letter")
    if not right or not wrong:
        missing = f"no output states the gold letter {gold}" if not right else "no output states a wrong final letter"
        raise Reject(missing + (f"; {plural(unstated, 'output', 'state')} no final letter" if unstated else ""))
    return dpo_row(prompt, right[0], wrong[0], system)
