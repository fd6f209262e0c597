"""Preference pairs as text: ``prompt``, ``chosen``, ``rejected``, each a string.

The prompt becomes the user turn; chosen and rejected are the two assistant answers.
"""

from __future__ import annotations

from typing import Any

from data_prep.rows import Reject, dpo_row, message

NAME = "pref-pairs"
KIND = "dpo"
SUMMARY = "prompt, chosen, rejected as strings (preference pairs)"


def text(record: dict[str, Any], field: str) -> str:
    """The checked, stripped text of ``field``."""
    if field not in record:
        raise Reject(f"missing field {field!r}")
    if isinstance(record[field], list):
        raise Reject(f"{field} is a list, not text (message lists are the pref-messages source)")
    return message(field, record[field])["content"]


def convert(record: dict[str, Any], system: str | None) -> dict[str, Any]:
    prompt, chosen, rejected = (text(record, field) for field in ("prompt", "chosen", "rejected"))
    return dpo_row([message("user", prompt)], chosen, rejected, system)
