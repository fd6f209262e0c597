"""MedQA-USMLE (4 options), in either published layout, decided row by row from its fields:

- ``question``, ``options`` {"A": ..., "D": ...}, ``answer_idx`` (a letter), ``answer`` (its text), ``meta_info``;
- the ``-hf`` layout: ``sent1`` (the question), ``sent2`` (empty), ``ending0``..``ending3``, ``label`` (0-3).

Rendered with the shared multiple-choice format (``_mcq``): the question and options as the user
turn, "The answer is X. <option>." as the assistant turn; MedQA has no explanation. Options are
lettered in letter (or ending-number) order; files with more options (A-E) convert the same way.
A row whose ``answer`` is not the text of option ``answer_idx`` is rejected rather than trusting either.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, message, sft_row
from data_prep.sources._mcq import LETTERS, render_answer, render_question

NAME = "medqa"
KIND = "sft"
SUMMARY = "question, options{A..D}, answer_idx, answer; or sent1, ending0..3, label (MedQA-USMLE, -hf)"


def from_options(record: dict[str, Any]) -> tuple[str, list[Any], int]:
    """(question, options, answer index) from the ``question`` / ``options`` / ``answer_idx`` layout."""
    for field in ("question", "options", "answer_idx", "answer"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    options, answer_idx = record["options"], record["answer_idx"]
    if not isinstance(options, dict):
        raise Reject(f"options is {type(options).__name__}, not an object")
    letters = sorted(options)
    if letters != list(LETTERS[: len(letters)]):
        raise Reject(f"option keys {', '.join(map(str, letters))} are not the letters A, B, C, ... in sequence")
    if not isinstance(answer_idx, str) or answer_idx not in options:
        raise Reject(f"answer_idx {answer_idx!r} is not one of the options {', '.join(letters)}")
    answer, correct = record["answer"], options[answer_idx]
    if not (isinstance(answer, str) and isinstance(correct, str) and answer.strip() == correct.strip()):
        raise Reject(f"answer does not match the text of option {answer_idx}")
    return record["question"], [options[letter] for letter in letters], letters.index(answer_idx)


def from_endings(record: dict[str, Any]) -> tuple[str, list[Any], int]:
    """(question, options, answer index) from the ``-hf`` layout: ``sent1``, ``ending0``.., ``label``."""
    for field in ("sent1", "ending0", "label"):
        if field not in record:
            raise Reject(f"missing field {field!r}")
    if record.get("sent2"):
        raise Reject("sent2 is not empty; the -hf rows carry the whole question in sent1")
    options = []
    while f"ending{len(options)}" in record:
        options.append(record[f"ending{len(options)}"])
    label = record["label"]
    if not isinstance(label, int) or isinstance(label, bool):
        raise Reject(f"label {label!r} is not an integer")
    if not 0 <= label < len(options):
        raise Reject(f"label {label} is not an option index (0-{len(options) - 1})")
    return record["sent1"], options, label


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    if "question" in record and "sent1" in record:
        raise Reject("row has both 'question' and 'sent1'; cannot tell which layout it is")
    if "question" in record:
        question, options, index = from_options(record)
    elif "sent1" in record:
        question, options, index = from_endings(record)
    else:
        raise Reject("missing field 'question' (or 'sent1' in the -hf layout)")
    user = render_question(question, options)
    assistant = render_answer(LETTERS[index], options[index])
    return sft_row([message("user", user), message("assistant", assistant)], system)
