"""The rows we write, and the checks every row passes before it is kept.

SFT:  {"messages": [system?, user, assistant, user, assistant, ...]}  (ends with the assistant)
DPO:  {"messages": [system?, user, ...], "chosen": {"role": "assistant", ...}, "rejected": {...}}

Axolotl reads them with ``type: chat_template`` and ``type: chat_template.default``; the chat
template is applied at training time, so the same rows serve Llama-3 and SmolLM2.
"""

from __future__ import annotations

from typing import Any

# From the OpenBioLLM-70B model card, verbatim (its grammar included).
OPENBIOLLM_SYSTEM_PROMPT = (
    "You are an expert and experienced from the healthcare and biomedical domain with extensive medical knowledge "
    "and practical experience. Your name is OpenBioLLM, and you were developed by Saama AI Labs. who's willing to "
    "help answer the user's query with explanation. In your explanation, leverage your deep medical expertise such "
    "as relevant anatomical structures, physiological processes, diagnostic criteria, treatment guidelines, or other "
    "pertinent medical concepts. Use precise medical terminology while still aiming to make the explanation clear "
    "and accessible to a general audience."
)


class Reject(ValueError):
    """A source row that cannot become a training row; the message is the reason, kept in the rejects file."""


def message(role: str, content: Any) -> dict[str, str]:
    """One chat message, with its content checked: a non-empty string of valid UTF-8."""
    if not isinstance(content, str):
        raise Reject(f"{role} content is {type(content).__name__}, not text")
    if not content.strip():
        raise Reject(f"empty {role} content")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as err:
        raise Reject(f"{role} content is not valid UTF-8: {err.reason}") from err
    return {"role": role, "content": content.strip()}


def check_turns(messages: list[dict[str, str]], last: str) -> None:
    """An optional system turn, then user/assistant alternating from the user, ending with ``last``."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise Reject("no user or assistant turns")
    for position, turn in enumerate(turns):
        expected = "user" if position % 2 == 0 else "assistant"
        if turn["role"] != expected:
            raise Reject(f"turn {position + 1} is {turn['role']!r}, expected {expected!r}")
    if turns[-1]["role"] != last:
        raise Reject(f"conversation ends with {turns[-1]['role']!r}, expected {last!r}")


def with_system(messages: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """Prepend ``system`` unless the row brings its own system turn, or ``system`` is None."""
    if system is None or (messages and messages[0]["role"] == "system"):
        return messages
    return [message("system", system), *messages]


def sft_row(messages: list[dict[str, str]], system: str | None) -> dict[str, Any]:
    """A validated SFT row."""
    messages = with_system(messages, system)
    check_turns(messages, last="assistant")
    return {"messages": messages}


def dpo_row(prompt: list[dict[str, str]], chosen: str, rejected: str, system: str | None) -> dict[str, Any]:
    """A validated DPO row: the shared prompt, then one chosen and one rejected assistant answer."""
    prompt = with_system(prompt, system)
    check_turns(prompt, last="user")
    chosen_message, rejected_message = message("assistant", chosen), message("assistant", rejected)
    if chosen_message["content"] == rejected_message["content"]:
        raise Reject("chosen and rejected are the same text")
    return {"messages": prompt, "chosen": chosen_message, "rejected": rejected_message}
