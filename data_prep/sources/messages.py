"""Chat rows: ``messages`` as a list of ``{role, content}`` with roles system, user and assistant.

A system turn in the row is kept, and then ours is not added.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, message, sft_row

NAME = "messages"
KIND = "sft"
SUMMARY = "messages: [{role: system|user|assistant, content}] (chat format)"

ROLES = ("system", "user", "assistant")


def chat_messages(value: Any, field: str) -> list[dict[str, str]]:
    """The messages of ``field``: each an object with a known role and text content."""
    if not isinstance(value, list):
        raise Reject(f"{field} is {type(value).__name__}, not a list of messages")
    label = "message" if field == "messages" else f"{field} message"
    messages = []
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise Reject(f"{label} {number} is {type(item).__name__}, not an object")
        for key in ("role", "content"):
            if key not in item:
                raise Reject(f"{label} {number} has no {key!r}")
        if item["role"] not in ROLES:
            raise Reject(f"unknown role {item['role']!r} in {label} {number}")
        messages.append(message(item["role"], item["content"]))
    return messages


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    if "messages" not in record:
        raise Reject("missing field 'messages'")
    return sft_row(chat_messages(record["messages"], "messages"), system)
