"""Which of the nine benchmarks a decontamination checked: all of them, or with --allow-partial the ones present.

    python -m data_prep decontaminate INPUT.jsonl --benchmarks DIR --out CLEAN.jsonl --allow-partial
    decontaminate: {benchmarks: DIR, allow_partial: true}     (in a mixture)

Without the flag a missing benchmark file stops the run, saying how to go on. With it, the index holds
the benchmarks present, and the manifest and the command's output name those checked and those not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.benchmarks import BENCHMARKS as TASKS


def missing_tasks(folder: Path) -> list[str]:
    """The benchmarks without a ``<task>.jsonl`` in ``folder``."""
    return [task for task in TASKS if not (folder / f"{task}.jsonl").is_file()]


def coverage(index: Any) -> dict[str, list[str]]:
    """The benchmarks a ``BenchmarkIndex`` checked and those not, in the registry's order."""
    return {"checked": [task for task in TASKS if task in index.files],
            "not_checked": [task for task in TASKS if task not in index.files]}


def describe(checked: dict[str, list[str]]) -> str:
    """One line for the command's output."""
    line = f"checked against {len(checked['checked'])} of {len(TASKS)} benchmarks: {', '.join(checked['checked'])}"
    if checked["not_checked"]:
        line += f"; NOT checked: {', '.join(checked['not_checked'])}"
    return line
