"""Text normalisation shared by deduplication and decontamination."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

NON_WORD = re.compile(r"[^\w\s]+")


def normalize(text: str) -> str:
    """Lowercase, NFKC, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(NON_WORD.sub(" ", text).split())


def prompt_text(row: dict[str, Any]) -> str:
    """The user turns of a row: what a model is asked."""
    return "\n".join(m["content"] for m in row["messages"] if m["role"] == "user")


def row_text(row: dict[str, Any]) -> str:
    """Every user and assistant text of a row, chosen and rejected answers included."""
    parts = [m["content"] for m in row["messages"] if m["role"] in ("user", "assistant")]
    parts += [row[side]["content"] for side in ("chosen", "rejected") if side in row]
    return "\n".join(parts)
