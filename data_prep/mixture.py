"""What a mixture YAML may hold: its shape and the range of every value, checked before anything is built.

Each refusal is one line naming the file and the key (``mix.yaml: sft entry 2: max_rows is -1, ...``).
Unknown keys are refused separately, with a suggestion (``data_prep.build.check_keys``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("sft", "dpo")


@dataclass(frozen=True)
class Range:
    """A number's allowed range: ``low``/``high`` (None: open), whether each bound is allowed, whole numbers only."""

    low: float | None
    high: float | None = None
    whole: bool = False
    low_ok: bool = True
    high_ok: bool = True

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.whole and not isinstance(value, int):
            return False
        above = self.low is None or value > self.low or (self.low_ok and value == self.low)
        below = self.high is None or value < self.high or (self.high_ok and value == self.high)
        return above and below

    def __str__(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low = None if self.low is None else f"{'at least' if self.low_ok else 'above'} {self.low}"
        high = None if self.high is None else f"{'at most' if self.high_ok else 'below'} {self.high}"
        bounds = " and ".join(b for b in (low, high) if b)
        return f"{kind}, {bounds}" if bounds else kind


NUMBERS = {
    "seed": Range(None, whole=True),
    "validation_fraction": Range(0, 1, high_ok=False),  # 1 would leave no training rows
    "max_reject_rate": Range(0, 1),
    "near_duplicate_threshold": Range(0, 1, low_ok=False),
    "sequence_len": Range(1, whole=True),
}
DECONTAMINATE_NUMBERS = {
    "ngram": Range(1, whole=True),
    "min_question_words": Range(1, whole=True),
    "max_item_frequency": Range(1, whole=True),
}
MAX_ROWS = Range(0, whole=True)
TEXTS = ("name", "tokenizer")


def kind_of(value: Any) -> str:
    """``a mapping``, ``a list``, ``text``, ``null``, ``int`` ...: what a YAML value is, in a message."""
    return "null" if value is None else {dict: "a mapping", list: "a list", str: "text"}.get(type(value),
                                                                                         type(value).__name__)


def check_number(value: Any, where: str, allowed: Range) -> None:
    """Refuse a value outside ``allowed`` (booleans, nan and text are not numbers)."""
    if not allowed.holds(value):
        raise SystemExit(f"{where} is {value!r}; expected {allowed}")


def check_entry(entry: Any, kind: str, where: str, sources: dict[str, Any]) -> None:
    """One ``sft:``/``dpo:`` entry: a known source of this kind, a list of inputs, an optional row cap, reject
    rate and exclude file."""
    if not isinstance(entry, dict):
        raise SystemExit(f"{where} is {kind_of(entry)}; expected a mapping with source and inputs")
    if "source" not in entry:
        raise SystemExit(f"{where}: no source (one of: {', '.join(sources)})")
    source = entry["source"]
    if source not in sources:
        near = difflib.get_close_matches(str(source), list(sources), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"one of: {', '.join(sources)}"
        raise SystemExit(f"{where}: unknown source {source!r}; {hint}")
    if kind != sources[source].KIND:
        raise SystemExit(f"{where}: {source} gives {sources[source].KIND} rows; it cannot go under {kind}")
    inputs = entry.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
        raise SystemExit(f"{where}: inputs is {kind_of(inputs)}; expected a list of files or hub ids, "
                         "as inputs: [a.jsonl, b.json]")
    if entry.get("max_rows") is not None:
        check_number(entry["max_rows"], f"{where}: max_rows", MAX_ROWS)
    if "max_reject_rate" in entry:
        check_number(entry["max_reject_rate"], f"{where}: max_reject_rate", NUMBERS["max_reject_rate"])
    if "exclude" in entry and not (isinstance(entry["exclude"], str) and entry["exclude"]):
        raise SystemExit(f"{where}: exclude is {kind_of(entry['exclude'])}; expected a JSON file of row keys, "
                         "as exclude: test_ids.json")


def check_mixture(mixture: Any, path: Path, sources: dict[str, Any]) -> None:
    """The whole mixture: a mapping, its numbers in range, its entries well formed."""
    if not isinstance(mixture, dict):
        raise SystemExit(f"{path}: the mixture is {kind_of(mixture)}; expected a mapping of name, sft, dpo, ... "
                         "(see data_prep/mixtures/default-v1.yaml)")
    for key, allowed in NUMBERS.items():
        if key in mixture:
            check_number(mixture[key], f"{path}: {key}", allowed)
    for key in TEXTS:
        if mixture.get(key) is not None and not isinstance(mixture[key], str):
            raise SystemExit(f"{path}: {key} is {kind_of(mixture[key])}, not text")
    if not isinstance(mixture.get("system_prompt", ""), str | None):
        raise SystemExit(f"{path}: system_prompt is {kind_of(mixture['system_prompt'])}; expected openbiollm, "
                         "null or the text")
    settings = mixture.get("decontaminate")
    if settings is not None:
        if not isinstance(settings, dict) or not isinstance(settings.get("benchmarks"), str):
            raise SystemExit(f"{path}: decontaminate needs a mapping with benchmarks: DIR")
        for key, allowed in DECONTAMINATE_NUMBERS.items():
            if key in settings:
                check_number(settings[key], f"{path}: decontaminate.{key}", allowed)
    if not any(mixture.get(kind) for kind in KINDS):
        raise SystemExit(f"{path}: no sft or dpo entries; nothing to build")
    for kind in KINDS:
        entries = mixture.get(kind) or []
        if not isinstance(entries, list):
            raise SystemExit(f"{path}: {kind} is {kind_of(entries)}; expected a list of entries (- source: ...)")
        for number, entry in enumerate(entries, start=1):
            check_entry(entry, kind, f"{path}: {kind} entry {number}", sources)
