"""The one multiple-choice rendering every exam converter uses, so their rows look alike.

    user:       "<question>\\n\\nA. <option>\\nB. <option>\\n..."
    assistant:  "The answer is B. <option text>."  then "\\n\\n<explanation>" when the source has one

A period closes the option text unless it already ends with ``.``, ``!`` or ``?``. Letters are
A, B, C, ... in the order the options are given.

The API (kept small; other converters import it):
    render_question(question, options) -> user text
    render_answer(letter, option_text, explanation=None) -> assistant text
    checked_text(name, value) -> stripped text, or Reject naming it ("option C is empty")
    LETTERS  "ABC...Z"; LETTERS[index] is an option's letter
The functions raise ``Reject`` for a question, option or explanation that is not usable text.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def checked_text(name: str, value: Any) -> str:
    """``value`` stripped, or ``Reject`` when it is null, not a string, or blank; ``name`` goes in the reason."""
    if value is None:
        raise Reject(f"{name} is null")
    if not isinstance(value, str):
        raise Reject(f"{name} is {type(value).__name__}, not text")
    if not value.strip():
        raise Reject(f"{name} is empty")
    return value.strip()


def render_question(question: Any, options: list[Any]) -> str:
    """The user turn: the question, a blank line, then one ``"A. text"`` line per option."""
    if not 2 <= len(options) <= len(LETTERS):
        raise Reject(f"{len(options)} options; expected 2 to {len(LETTERS)}")
    lines = [f"{letter}. {checked_text(f'option {letter}', text)}"
             for letter, text in zip(LETTERS[: len(options)], options, strict=True)]
    return checked_text("question", question) + "\n\n" + "\n".join(lines)


def render_answer(letter: str, option_text: Any, explanation: Any = None) -> str:
    """The assistant turn: ``"The answer is X. <option text>."``, then a blank line and the explanation if any.

    A null or blank ``explanation`` means none; any other non-string is rejected.
    """
    if len(letter) != 1 or letter not in LETTERS:
        raise Reject(f"{letter!r} is not an option letter")
    text = checked_text(f"option {letter}", option_text)
    answer = f"The answer is {letter}. {text}" + ("" if text.endswith((".", "!", "?")) else ".")
    if explanation is None or (isinstance(explanation, str) and not explanation.strip()):
        return answer
    return answer + "\n\n" + checked_text("explanation", explanation)
