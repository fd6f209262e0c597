"""Two models on the same items: each item's outcome, accuracy intervals, the paired difference, McNemar's test.

An outcome is what lm-eval's per-sample log says of one item: the gold choice, the choice with the highest
log-likelihood, and whether they agree (``acc``). Two models scored on the same items are compared item by item:

- accuracy with its 95% Wilson score interval (it stays inside 0-100% at small n, where ± 1.96 se does not);
- the paired difference B - A in accuracy, with its 95% interval from the paired (Wald) variance of the
  discordant items: b items only B got right, c items only A got right, n items in all,
  ``var = ((b + c) - (b - c)^2 / n) / n^2``;
- McNemar's exact test: the two-sided binomial probability of a split of the b + c discordant items at least as
  uneven as the one seen, if each were equally likely to go either way (1.0 when there are none);
- the floor: what answering without reading gives, per task: the majority share of the full test split for
  PubMedQA (yes, 55.2%), 25% for the four-option sets, and the measured score of always giving the same answer
  (the commonest gold answer among the items scored).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054
ALPHA = 0.05


@dataclass(frozen=True)
class Outcome:
    gold: int
    pred: int

    @property
    def correct(self) -> bool:
        return self.gold == self.pred


def outcome_of(sample: dict[str, Any]) -> Outcome:
    """One lm-eval per-sample record as an outcome: the prepared row's gold index and the highest log-likelihood's."""
    logliks = [float(resp[0]) for resp in sample["filtered_resps"]]
    pred = max(range(len(logliks)), key=logliks.__getitem__)
    return Outcome(int(sample["doc"]["answer"]), pred)


def outcomes_from_samples(path: Path) -> dict[str, Outcome]:
    """Item id -> outcome, from ``samples/<task>.jsonl`` as ``python -m eval run`` writes it."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                sample = json.loads(line)
                found[str(sample["doc"]["id"])] = outcome_of(sample)
    return found


def write_outcomes(path: Path, outcomes: dict[str, Outcome]) -> None:
    """The compact per-item file: one ``{"id", "gold", "pred"}`` a line, in id order."""
    from common.files import write_jsonl_atomic

    write_jsonl_atomic(path, ({"id": i, "gold": o.gold, "pred": o.pred} for i, o in sorted(outcomes.items())))


def read_outcomes(path: Path) -> dict[str, Outcome]:
    """What :func:`write_outcomes` wrote."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {str(r["id"]): Outcome(int(r["gold"]), int(r["pred"])) for r in rows}


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant items."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class Paired:
    """Model B against model A on the same n items."""

    n: int
    a_correct: int
    b_correct: int
    b_only: int  # items B got right and A wrong
    a_only: int  # items A got right and B wrong

    @property
    def a_acc(self) -> float:
        return self.a_correct / self.n

    @property
    def b_acc(self) -> float:
        return self.b_correct / self.n

    @property
    def difference(self) -> float:
        return (self.b_only - self.a_only) / self.n

    @property
    def difference_interval(self) -> tuple[float, float]:
        discordant, net = self.b_only + self.a_only, self.b_only - self.a_only
        half = Z95 * math.sqrt(max(0.0, discordant - net * net / self.n)) / self.n
        return self.difference - half, self.difference + half

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.b_only, self.a_only)

    def verdict(self, b_name: str = "the run", a_name: str = "its base") -> str:
        """``above its base (McNemar p = 0.012)``, ``below its base, not significant (McNemar p = 0.41)``..."""
        if self.b_only == self.a_only:
            return f"level with {a_name} (McNemar p = {self.p_value:.2g})"
        side = "above" if self.b_only > self.a_only else "below"
        note = "" if self.p_value < ALPHA else ", not significant"
        return f"{side} {a_name}{note} (McNemar p = {self.p_value:.2g})"

    def __add__(self, other: Paired) -> Paired:
        return Paired(self.n + other.n, self.a_correct + other.a_correct, self.b_correct + other.b_correct,
                      self.b_only + other.b_only, self.a_only + other.a_only)


def pair(a: dict[str, Outcome], b: dict[str, Outcome]) -> Paired:
    """B against A on the items both were scored on (the item sets should be the same)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("no item scored by both models")
    for item in shared:
        if a[item].gold != b[item].gold:
            raise ValueError(f"item {item}: gold answer {a[item].gold} in one, {b[item].gold} in the other")
    return Paired(n=len(shared), a_correct=sum(a[i].correct for i in shared),
                  b_correct=sum(b[i].correct for i in shared),
                  b_only=sum(b[i].correct and not a[i].correct for i in shared),
                  a_only=sum(a[i].correct and not b[i].correct for i in shared))


def always_same(outcomes: dict[str, Outcome]) -> tuple[int, float]:
    """(the commonest gold answer, its share): the score of always giving that answer on these items."""
    counts = Counter(o.gold for o in outcomes.values())
    answer, count = max(sorted(counts.items()), key=lambda kv: kv[1])
    return answer, count / len(outcomes)


def commonest_prediction(outcomes: dict[str, Outcome]) -> tuple[int, float]:
    """(the answer the model gives most often, the share of items it gives it on): a letter bias shows here."""
    counts = Counter(o.pred for o in outcomes.values())
    answer, count = max(sorted(counts.items()), key=lambda kv: kv[1])
    return answer, count / len(outcomes)


def floor(task: str, full_split_golds: list[int] | None = None) -> float:
    """The task's chance floor: PubMedQA's majority share of the full test split, else one in four."""
    if task == "pubmedqa" and full_split_golds:
        return max(Counter(full_split_golds).values()) / len(full_split_golds)
    return 0.25
