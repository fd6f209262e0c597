"""The one way a stage starts, plus the checks around it.

    python -m launch sft RECIPE [...]        start a stage (sft, dpo, ...): see launch/cli.py
    python -m launch check RECIPE            validate a recipe without a GPU or a download
    python -m launch plan RECIPE --gpus N --gpu h100-80gb    memory and time estimate
    python -m launch reproduce runs/<id>     re-run a finished run from its manifest
    python -m launch chain --slurm CLUSTER.yaml   data, sft, merge, dpo, merge, eval as dependent SLURM jobs

Any command takes --verbose (show third-party import noise, common/quiet.py) and --quiet (no progress bars).
"""

from __future__ import annotations

import importlib
import sys

from common import progress, quiet

# Commands other than stages, each one module with a main(argv).
COMMANDS = {"check": "launch.check", "plan": "launch.plan", "reproduce": "launch.reproduce", "chain": "launch.chain"}


def main(argv: list[str] | None = None) -> None:
    argv, verbose, silent = quiet.take_flags(sys.argv[1:] if argv is None else argv)
    quiet.install(verbose)
    progress.SHOW = not silent
    if argv and argv[0] in COMMANDS:
        importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    else:
        importlib.import_module("launch.cli").main(argv)


if __name__ == "__main__":
    main()
