"""The model card's published table (eval/published.yaml): loading, and the checks the report flags.

    python -m eval report RESULTS...      (reads this table; see eval/report.py)

A card figure p on an n-item test set must be 100*k/n for a whole k, up to the card's rounding; a row's
Avg must be the plain mean of its nine cells. Figures are kept as printed strings, so trailing digits count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import yaml

from eval.benchmarks import TASKS as BENCHMARKS

COLUMNS = {  # the card's column order and labels
    "mmlu_clinical_knowledge": "Clinical KG", "mmlu_medical_genetics": "Medical Genetics", "mmlu_anatomy": "Anatomy",
    "mmlu_professional_medicine": "Pro Medicine", "mmlu_college_biology": "College Biology",
    "mmlu_college_medicine": "College Medicine", "medqa_4options": "MedQA 4 opts", "pubmedqa": "PubMedQA",
    "medmcqa": "MedMCQA",
}
TASKS = {task: (label, BENCHMARKS[task].rows) for task, label in COLUMNS.items()}  # -> (label, full test-set size)
PUBLISHED = Path(__file__).with_name("published.yaml")
FIGURE = re.compile(r"\d{1,3}(\.\d+)?")  # a percentage as printed: 93, 93.7, 93.197


class BadInput(ValueError):
    """Bad input, with the file (and line, where known) in the message."""


@dataclass
class Published:
    name: str
    cells: dict[str, str]  # task -> the card's figure, as printed
    avg: str
    unsure: list[str]
    avg_disagrees: bool
    note: str


def decimals(printed: str) -> int:
    """Digits after the point in a figure as printed."""
    return len(printed.partition(".")[2])


def achievable(printed: str, n: int) -> bool:
    """Whether ``printed`` is 100*k/n for a whole k, rounded or truncated to the decimals it shows."""
    p, ulp = Fraction(Decimal(printed)), Fraction(1, 10 ** decimals(printed))
    centre = p * n / 100
    for k in range(max(0, math.floor(centre) - 1), min(n, math.ceil(centre) + 1) + 1):
        v = Fraction(100 * k, n)
        if abs(v - p) <= ulp / 2 or p <= v < p + ulp:
            return True
    return False


def neighbours(printed: str, n: int) -> str:
    """The two percentages a whole count of ``n`` items gives either side of ``printed``."""
    k = math.floor(Fraction(Decimal(printed)) * n / 100)
    return " and ".join(f"{100 * j / n:.3f} ({j}/{n})" for j in (k, k + 1) if 0 <= j <= n)


def mean_of_cells(row: Published) -> Fraction:
    return sum(Fraction(Decimal(c)) for c in row.cells.values()) / len(TASKS)


def avg_agrees(row: Published) -> bool:
    """Whether the printed Avg is the mean of the nine printed cells, up to the card's rounding of each."""
    cell_rounding = sum(Fraction(1, 2 * 10 ** decimals(c)) for c in row.cells.values()) / len(TASKS)
    slack = Fraction(1, 10 ** decimals(row.avg)) + cell_rounding
    return abs(mean_of_cells(row) - Fraction(Decimal(row.avg))) <= slack


def load_published(path: Path = PUBLISHED) -> tuple[dict, list[Published]]:
    """The source block and the rows of the published table, checked."""
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BadInput(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise BadInput(f"{path}: expected a mapping with `columns` and a list of `rows`")
    if data.get("columns") != list(TASKS):
        raise BadInput(f"{path}: columns must be the card's order: {list(TASKS)}")
    lines = [item.start_mark.line + 1 for key, value in yaml.compose(text).value if key.value == "rows"
             for item in value.value]
    rows = []
    for line, raw in zip(lines, data["rows"], strict=True):
        raw = raw if isinstance(raw, dict) else {}
        where = f"{path}:{line}: row {raw.get('name')!r}"
        cells, avg = raw.get("cells"), raw.get("avg")
        if not raw.get("name") or not isinstance(cells, list) or len(cells) != len(TASKS):
            raise BadInput(f"{where}: needs a name and {len(TASKS)} cells in the columns' order, found {cells!r}")
        for value in [*cells, avg]:
            if not isinstance(value, str) or not FIGURE.fullmatch(value) or Decimal(value) > 100:
                raise BadInput(f"{where}: {value!r} must be a quoted percentage as the card prints it, like \"93.75\"")
        unsure = raw.get("unsure", [])
        if not isinstance(unsure, list) or not set(unsure) <= {*TASKS, "avg"}:
            raise BadInput(f"{where}: unsure must list column keys or avg, found {unsure!r}")
        if raw.get("avg_check", "disagrees") != "disagrees":
            raise BadInput(f"{where}: avg_check can only be `disagrees`, found {raw['avg_check']!r}")
        rows.append(Published(raw["name"], dict(zip(TASKS, cells, strict=True)), avg, unsure,
                              raw.get("avg_check") == "disagrees", raw.get("note", "")))
    return data.get("source", {}), rows
