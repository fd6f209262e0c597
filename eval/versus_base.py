"""A run beside its base model on the same items: the base's outcomes (committed, cached or scored now), paired.

``python -m eval run`` calls :func:`versus_base` after scoring a run; the result goes into results.json's
``summary.versus_base`` (eval/report.py renders it, the release card too), and the base's per-item outcomes
into ``eval/base/<task>.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.files import sha256_file, write_jsonl_atomic
from eval.baseline import base_of, base_record, lookup, remember
from eval.paired import (
    ALPHA,
    Outcome,
    Paired,
    always_same,
    commonest_prediction,
    floor,
    outcome_of,
    outcomes_from_samples,
    pair,
    write_outcomes,
)
from eval.sample import read_prepared

# (model to load, task names, folder of <task>.jsonl to score) -> lm-eval's per-sample logs by task name
Scorer = Callable[[str, list[str], Path], dict[str, list[dict[str, Any]]]]


def versus_base(run: Path, out: Path, names: list[str], items: Path, full_files: dict[str, Path],
                score: Scorer) -> dict[str, Any] | None:
    """The run's outcomes (``out/samples/``) paired with its base's on the same items; None without a known base.

    ``items`` holds the ``<task>.jsonl`` the run was scored on, ``full_files`` each task's whole prepared test set
    (its sha256 keys the base's outcomes). Items the base was never scored on are scored with ``score``.
    """
    base = base_of(run)
    if base is None:
        return None
    hashes = {name: sha256_file(full_files[name]) for name in names}
    ran = {name: outcomes_from_samples(out / "samples" / f"{name}.jsonl") for name in names}
    known: dict[str, dict[str, Outcome]] = {}
    where: dict[str, str] = {}
    missing: dict[str, set[str]] = {}
    for name in names:
        known[name], where[name] = lookup(base, name, hashes[name], list(ran[name]))
        lacking = set(ran[name]) - set(known[name])
        if lacking:
            missing[name] = lacking
    if missing:
        folder = out / "base" / "to_score"
        for name, ids in missing.items():
            write_jsonl_atomic(folder / f"{name}.jsonl",
                               [row for row in read_prepared(items / f"{name}.jsonl") if str(row["id"]) in ids])
        for name, samples in score(base.load, list(missing), folder).items():
            new = {str(s["doc"]["id"]): outcome_of(s) for s in samples}
            remember(base, name, hashes[name], new)
            known[name].update(new)
            where[name] = "scored now" if where[name] == "none" else f"{where[name]} + scored now"
    tasks = {}
    for name in names:
        write_outcomes(out / "base" / f"{name}.jsonl", known[name])
        golds = [int(row["answer"]) for row in read_prepared(full_files[name])]
        answer, share = always_same(ran[name])
        paired = pair(known[name], ran[name])
        tasks[name] = {"n": paired.n, "base_correct": paired.a_correct, "run_correct": paired.b_correct,
                       "run_only": paired.b_only, "base_only": paired.a_only, "floor": floor(name, golds),
                       "always_same": {"answer": answer, "share": share},
                       "most_given": {who: dict(zip(("answer", "share"), commonest_prediction(found), strict=True))
                                      for who, found in (("base", known[name]), ("run", ran[name]))}}
    return {"base": base_record(base, where), "tasks": tasks}


def paired_of(entry: dict[str, Any]) -> Paired:
    """One task's counts in ``summary.versus_base.tasks`` as a :class:`Paired` (A = the base, B = the run)."""
    return Paired(entry["n"], entry["base_correct"], entry["run_correct"], entry["run_only"], entry["base_only"])


def loaded(summary: dict[str, Any], where: str) -> dict[str, Any] | None:
    """``summary.versus_base`` of a results.json, checked enough to render (None when absent)."""
    found = summary.get("versus_base")
    if found is None:
        return None
    keys = ("n", "base_correct", "run_correct", "run_only", "base_only", "floor", "always_same")
    tasks = found.get("tasks") if isinstance(found, dict) else None
    if not isinstance(tasks, dict) or not all(isinstance(e, dict) and all(k in e for k in keys)
                                              for e in tasks.values()):
        raise ValueError(f"{where}: summary.versus_base is {json.dumps(found)[:80]}...; expected base and tasks "
                         f"with {', '.join(keys)}")
    return found


def overall(found: dict[str, Any]) -> Paired:
    """Every task's items pooled: the McNemar test over all tasks."""
    pairs = [paired_of(entry) for entry in found["tasks"].values()]
    return sum(pairs[1:], pairs[0])


def points(share: float) -> str:
    return f"{100 * share:+.1f}"


def difference_words(paired: Paired) -> str:
    """``Δ -3.0 [-9.2, +3.2] points, p 0.45``."""
    low, high = paired.difference_interval
    return f"Δ {points(paired.difference)} [{points(low)}, {points(high)}], p {paired.p_value:.2g}"


def task_words(entry: dict[str, Any]) -> str:
    """The base's accuracy and the run's paired difference on one task, for a terminal line."""
    paired = paired_of(entry)
    return f"base {100 * paired.a_acc:.1f}  {difference_words(paired)}"


def overall_words(found: dict[str, Any]) -> str:
    """One line: the run and its base over all the items, and the verdict, plainly."""
    paired = overall(found)
    verdict = paired.verdict("the run", f"its base ({found['base']['name']})")
    low, high = paired.difference_interval
    return (f"all tasks, {paired.n} items: run {100 * paired.b_acc:.1f}%, base {100 * paired.a_acc:.1f}%, "
            f"Δ {points(paired.difference)} [{points(low)}, {points(high)}] points: "
            f"{shout(verdict) if paired.b_only < paired.a_only and paired.p_value < ALPHA else verdict}")


def shout(verdict: str) -> str:
    """``BELOW its base (...)``: a significant loss against the base, plainly."""
    return verdict.replace("below", "BELOW", 1)
