"""The eval report's bar chart: per task, our runs with 95% error bars beside published rows.

    python -m eval report RESULTS... --out report.md     (draws report.png beside report.md)
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

# One series: its name, a value per group (percent, None where missing) and 95% half-widths (or None).
Series = tuple[str, list[float | None], list[float | None] | None]


def draw(groups: list[str], series: list[Series], out: Path, title: str) -> None:
    """Grouped bars, one group per task, written to ``out`` as PNG (atomically: temp file, then rename)."""
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=100)
    for i, (name, values, errors) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [float("nan") if v is None else v for v in values]
        yerr = None if errors is None else [0.0 if e is None else e for e in errors]
        ax.bar(xs, heights, width, yerr=yerr, capsize=2 if yerr else 0, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=25, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncols=min(len(series), 4), loc="upper center", bbox_to_anchor=(0.5, -0.28))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
