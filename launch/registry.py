"""Every command of ``python -m launch`` in one table: the stages with their steps and parent stage, the follow-ups
on a finished run, and the tools around them. ``python -m launch --help`` and ``make help`` print it; the launcher
reads each stage's steps and parent from it. It imports nothing, so ``--help`` answers at once.

    python -m launch --help
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_RECIPES = Path("recipes/smollm2-135m/v2")  # what make sft, make dpo and the SLURM chain run by default


@dataclass(frozen=True)
class Command:
    """One command: what it takes, what it does, and the module whose ``main(argv)`` runs it."""

    name: str
    args: str
    summary: str
    module: str = "launch.cli"
    steps: tuple[str, ...] = ()  # a stage: its Axolotl CLI steps, run in order on the resolved config
    parent: str | None = None  # a stage: the stage whose run's merged model it starts from
    followup: bool = False  # runs on an existing run folder (launch/runner/followup.py)


TABLE = (
    Command("sft", "RECIPE", "QLoRA SFT of a recipe -> runs/<id>/", steps=("train", "merge")),
    Command("dpo", "RECIPE", "DPO from an SFT run (--parent, default the latest) -> runs/<id>/",
            steps=("train", "merge"), parent="sft"),
    Command("merge", "runs/<id>", "merge a run's adapter into runs/<id>/merged/", followup=True),
    Command("eval", "runs/<id>", "a finished run's evaluation, as make eval: scores, generation check, report "
            "-> runs/<id>/eval/", followup=True),
    Command("check", "RECIPE", "validate a recipe without a GPU or a download", "launch.preflight.check"),
    Command("plan", "RECIPE --gpus N --gpu KIND", "memory and time estimate for a recipe on a GPU",
            "launch.preflight.plan"),
    Command("reproduce", "runs/<id>", "re-run a finished run from its manifest and compare its losses",
            "launch.runner.reproduce"),
    Command("chain", "--slurm CLUSTER.yaml", "data, sft, merge, dpo, merge, eval as dependent SLURM jobs",
            "launch.submit.chain"),
)
COMMANDS = {command.name: command for command in TABLE}
STAGE_STEPS = {c.name: list(c.steps) for c in TABLE if c.steps}
STAGE_PARENT = {c.name: c.parent for c in TABLE if c.parent}
FOLLOWUPS = tuple(c.name for c in TABLE if c.followup)
TOOLS = {c.name: c.module for c in TABLE if c.module != "launch.cli"}  # commands with their own main(argv)


def usage() -> str:
    """The table as ``python -m launch --help`` prints it."""
    width = max(len(f"{c.name} {c.args}") for c in TABLE)
    lines = [f"  python -m launch {f'{c.name} {c.args}':<{width}}  {c.summary}" for c in TABLE]
    return ("usage: python -m launch COMMAND ... (python -m launch COMMAND --help for its options)\n\ncommands:\n"
            + "\n".join(lines) + "\n\nEvery command takes --verbose (third-party import noise too), --quiet "
            "(no progress bars)\nand --debug (an error's traceback). Bad input ends in one line, exit 2; a failure "
            "of the world\n(no network, a full disk, a failed step) in one line, exit 1.")
