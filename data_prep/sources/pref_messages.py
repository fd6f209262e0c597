"""Preference pairs as chats: ``chosen`` and ``rejected`` message lists that share a prompt.

As in UltraMedical-Preference and argilla's sets: each side is the prompt's messages, then one
assistant answer. The prompt (every message before that answer) must be the same on both sides.
An explicit ``prompt`` string, when present, must be the last user turn of that prompt; when the
lists hold no user turn, it is the user turn. Rows in our own output shape (Axolotl's
``chat_template.default``: a ``messages`` prompt, with ``chosen`` and ``rejected`` as single
assistant messages) are read as the same lists.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, dpo_row, message
from data_prep.sources.messages import chat_messages

NAME = "pref-messages"
KIND = "dpo"
SUMMARY = "chosen, rejected as message lists sharing a prompt (UltraMedical-Preference), or messages + two answers"


def side(record: dict[str, Any], field: str) -> tuple[list[dict[str, str]], str]:
    """The prompt messages of one side, and its final assistant answer."""
    if field not in record:
        raise Reject(f"missing field {field!r}")
    value = record[field]
    if isinstance(value, str):
        raise Reject(f"{field} is text, not a list of messages (text pairs are the pref-pairs source)")
    if isinstance(value, dict) and isinstance(record.get("messages"), list):
        value = [*record["messages"], value]  # a shared ``messages`` prompt and one answer message
    messages = chat_messages(value, field)
    if not messages:
        raise Reject(f"{field} has no messages")
    if messages[-1]["role"] != "assistant":
        raise Reject(f"{field} ends with a {messages[-1]['role']!r} message, not the assistant's")
    return messages[:-1], messages[-1]["content"]


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    prompt, chosen = side(record, "chosen")
    rejected_prompt, rejected = side(record, "rejected")
    if prompt != rejected_prompt:
        raise Reject("chosen and rejected have different prompts")
    users = [m["content"] for m in prompt if m["role"] == "user"]
    if record.get("prompt") is not None:
        stated = message("prompt", record["prompt"])["content"]
        if not users:
            prompt = [*prompt, message("user", stated)]
        elif users[-1] != stated:
            raise Reject("prompt field is not the last user turn of chosen and rejected")
    elif not users:
        raise Reject("no user turn before the assistant answers")
    return dpo_row(prompt, chosen, rejected, system)
