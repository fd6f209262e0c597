"""The one way a stage starts, plus the checks around it: every command is in launch/registry.py.

    python -m launch --help                  the commands, from the registry
    python -m launch sft RECIPE [...]        start a stage (sft, dpo, ...): see launch/cli.py
    python -m launch check RECIPE            validate a recipe without a GPU or a download

Any command takes --verbose (show third-party import noise, common/quiet.py) and --quiet (no progress bars).
"""

from __future__ import annotations

import importlib
import sys

from common import progress, quiet
from launch.registry import TOOLS, usage


def main(argv: list[str] | None = None) -> None:
    argv, verbose, silent = quiet.take_flags(sys.argv[1:] if argv is None else argv)
    quiet.install(verbose)
    progress.SHOW = not silent
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] in TOOLS:
        importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
    else:
        importlib.import_module("launch.cli").main(argv)


if __name__ == "__main__":
    main()
