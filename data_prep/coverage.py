"""Which of the nine benchmarks a decontamination checked: all of them, or with --allow-partial the ones present.

    python -m data_prep decontaminate INPUT.jsonl --benchmarks DIR --out CLEAN.jsonl --allow-partial
    decontaminate: {benchmarks: DIR, allow_partial: true}     (in a mixture)

Without the flag a missing benchmark file stops the run, saying how to go on. With it, the index holds
the benchmarks present, and the manifest and the command's output name those checked and those not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.decontaminate import TASKS, BenchmarkIndex


def missing_tasks(folder: Path) -> list[str]:
    """The benchmarks without a ``<task>.jsonl`` in ``folder``."""
    return [task for task in TASKS if not (folder / f"{task}.jsonl").is_file()]


def load_index(folder: Path, allow_partial: bool, where: str = "--allow-partial", **settings: Any) -> BenchmarkIndex:
    """The index of the benchmarks in ``folder``; all nine unless ``allow_partial``. ``where`` names the switch."""
    missing = missing_tasks(folder)
    present = len(TASKS) - len(missing)
    if missing and (not allow_partial or not present):
        go_on = f", or pass {where} to check against the {present} present" if present else ""
        raise SystemExit(f"{folder}: no benchmark file for {', '.join(missing)}; prepare them with "
                         f"`python -m eval prepare --all --out {folder}` (or `make benchmarks`){go_on}")
    return BenchmarkIndex.from_folder(folder, require_all=False, **settings)


def coverage(index: BenchmarkIndex) -> dict[str, list[str]]:
    """The benchmarks checked and those not, in the registry's order."""
    return {"checked": [task for task in TASKS if task in index.files],
            "not_checked": [task for task in TASKS if task not in index.files]}


def describe(checked: dict[str, list[str]]) -> str:
    """One line for the command's output."""
    line = f"checked against {len(checked['checked'])} of {len(TASKS)} benchmarks: {', '.join(checked['checked'])}"
    if checked["not_checked"]:
        line += f"; NOT checked: {', '.join(checked['not_checked'])}"
    return line
