"""A run's loss curve, ``runs/<id>/loss.png``: train and eval loss by global step, one colour per attempt.

    python -m launch.runner.loss_curve runs/<run-id>      draw it again from the run's manifest (left unchanged)

Drawn from the run's records (``losses``, ``eval_losses``: launch/lifecycle/train_record.py; ``attempts``) when a
train step ends, finished or preempted (launch/runner/stage.py), so a preempted run shows its progress so far. A
dotted line marks where each resumed attempt started (its ``train_start`` global step, else the first step it
logged); a DPO run's reward margin (TRL's ``rewards/margins``) gets a second panel.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from common.errors import InputError, cli_main
from common.rundir import MANIFEST, read_manifest
from launch.plugins import MARGINS

LOSS_CURVE = "loss.png"
MARKED_POINTS = 200  # a series this long or shorter gets a marker on each point

Points = list[tuple[int, float]]  # (global step, value)


def by_attempt(rows: list[dict[str, Any]], key: str) -> dict[int | None, Points]:
    """``key``'s values by step, split by the attempt that logged them; a step logged twice keeps its last row."""
    last: dict[int, dict[str, Any]] = {}
    for row in rows:
        value = row.get(key)
        if isinstance(row.get("step"), int) and isinstance(value, int | float) and not isinstance(value, bool):
            last[row["step"]] = row
    series: dict[int | None, Points] = {}
    for step in sorted(last):
        series.setdefault(last[step].get("attempt"), []).append((step, float(last[step][key])))
    return series


def attempt_starts(record: dict[str, Any], train: dict[int | None, Points]) -> dict[int, int]:
    """The global step each attempt after the first started at: its ``train_start``, else its first logged step."""
    starts = {}
    for attempt in record.get("attempts") or []:
        number = attempt.get("attempt")
        if not isinstance(number, int) or number < 2:
            continue
        start = attempt.get("train_start")
        step = start.get("global_step") if isinstance(start, dict) else None
        if not isinstance(step, int) and train.get(number):
            step = train[number][0][0]
        if isinstance(step, int):
            starts[number] = step
    return starts


def curve_series(record: dict[str, Any]) -> dict[str, Any]:
    """What the curve shows: each series by attempt (``train``, ``eval``, ``margins``, ``eval_margins``) and
    ``starts``, the step each resumed attempt started at."""
    losses, evals = record.get("losses") or [], record.get("eval_losses") or []
    train = by_attempt(losses, "loss")
    return {"train": train, "eval": by_attempt(evals, "eval_loss"), "margins": by_attempt(losses, MARGINS),
            "eval_margins": by_attempt(evals, f"eval_{MARGINS}"), "starts": attempt_starts(record, train)}


def colour(attempt: int | None) -> str:
    return f"C{((attempt or 1) - 1) % 10}"


def plot_attempts(ax: Any, series: dict[int | None, Points], name: str, style: str, marker: str) -> None:
    """One line per attempt, in the attempt's colour."""
    for attempt, points in series.items():
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, style, color=colour(attempt), marker=marker if len(points) <= MARKED_POINTS else None,
                markersize=3.5, linewidth=1.2, label=name if attempt is None else f"{name}, attempt {attempt}")


def write_loss_curve(run_dir: Path, record: dict[str, Any]) -> Path | None:
    """Draw ``run_dir/loss.png`` from ``record`` (atomically: a temp file, then a rename); None when no loss is
    recorded."""
    series = curve_series(record)
    if not series["train"]:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    dpo = bool(series["margins"] or series["eval_margins"])
    fig, axes = plt.subplots(2 if dpo else 1, 1, sharex=True, squeeze=False, figsize=(10, 7.5 if dpo else 5), dpi=100)
    panels = list(axes[:, 0])
    plot_attempts(panels[0], series["train"], "train loss", "-", "o")
    plot_attempts(panels[0], series["eval"], "eval loss", "--", "s")
    panels[0].set_ylabel("loss")
    if dpo:
        plot_attempts(panels[1], series["margins"], "reward margin", "-", "o")
        plot_attempts(panels[1], series["eval_margins"], "eval reward margin", "--", "s")
        panels[1].axhline(0, color="grey", linewidth=0.8)
        panels[1].set_ylabel(f"reward margin ({MARGINS})")
    for ax in panels:
        for attempt, step in series["starts"].items():
            ax.axvline(step, color=colour(attempt), linestyle=":", linewidth=1.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    for attempt, step in series["starts"].items():
        panels[0].text(step, 0.98, f" attempt {attempt} from step {step}", color=colour(attempt), fontsize="small",
                       va="top", transform=panels[0].get_xaxis_transform())
    panels[-1].set_xlabel("global step")
    panels[0].set_title(f"{record.get('run_id') or run_dir.name}: {record.get('stage') or 'training'} loss")
    fig.tight_layout()
    out = run_dir / LOSS_CURVE
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch.runner.loss_curve", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder, e.g. runs/<run-id>")
    args = parser.parse_args(argv)
    if not (args.run / MANIFEST).is_file():
        raise InputError(f"{args.run}: not a run folder (no {MANIFEST})")
    out = write_loss_curve(args.run, read_manifest(args.run))
    if out is None:
        raise InputError(f"{args.run}: no training loss recorded, so no loss curve")
    print(out)


if __name__ == "__main__":
    cli_main(main)
