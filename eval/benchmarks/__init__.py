"""The registry of the nine benchmarks: each task's raw schema (one module per schema) and official row count.

A schema module (``medmcqa``, ``medqa``, ``pubmedqa``, ``mmlu``) defines:
    NAME      the schema's name
    SUMMARY   one line: the raw files it reads
    load(inputs, task) -> Loaded    the prepared rows, file-level facts and rows left out on purpose;
                                    raises BenchmarkError naming each bad row's file, place and reason

A prepared row (one line of ``<task>.jsonl``) holds a stable ``id``, the bare ``question``, the
``text`` a model sees (context, question, options; what ``data_prep decontaminate`` reads), and
what the task YAML in ``eval/tasks/`` renders: ``choices`` and ``answer`` (the gold index), and
``context`` for PubMedQA. Strings are kept exactly as published: lm-eval's prompts use them raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from common.benchmarks import BENCHMARKS
from eval.benchmarks import medmcqa, medqa, mmlu, pubmedqa
from eval.benchmarks._common import BenchmarkError, Loaded

__all__ = ["TASKS", "BenchmarkError", "Loaded", "Task"]


@dataclass(frozen=True)
class Task:
    """One benchmark: its canonical (leaderboard) name, raw schema, official split and row count."""

    name: str
    schema: ModuleType
    split: str
    rows: int
    subject: str | None = None  # MMLU only

    @property
    def lm_eval_task(self) -> str:
        """Our local lm-eval task name (``openbio_<name>``): upstream names stay free."""
        return f"openbio_{self.name}"


MMLU_SUBJECTS = {"anatomy": 135, "clinical_knowledge": 265, "college_biology": 144, "college_medicine": 173,
                 "medical_genetics": 100, "professional_medicine": 272}
TASKS: dict[str, Task] = {
    "medmcqa": Task("medmcqa", medmcqa, "validation", 4183),
    "medqa_4options": Task("medqa_4options", medqa, "test", 1273),
    "pubmedqa": Task("pubmedqa", pubmedqa, "test (PMIDs of test_ground_truth.json)", 500),
    **{f"mmlu_{s}": Task(f"mmlu_{s}", mmlu, "test", n, subject=s) for s, n in MMLU_SUBJECTS.items()},
}
if tuple(TASKS) != BENCHMARKS:  # the names data_prep decontaminates against (common/benchmarks.py)
    raise ImportError(f"eval/benchmarks defines {list(TASKS)}; common/benchmarks.py names {list(BENCHMARKS)}")
