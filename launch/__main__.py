"""The one way a stage starts, plus the checks around it: every command is in launch/registry.py.

    python -m launch --help                  the commands, from the registry
    python -m launch sft RECIPE [...]        start a stage (sft, dpo, ...): see launch/cli.py
    python -m launch check RECIPE            validate a recipe without a GPU or a download

Any command takes --verbose (show third-party import noise, common/quiet.py), --quiet (no progress bars) and
--debug (the traceback of an error). Bad input is one line and exit 2, a failure of the world one line and exit 1
(common/errors.py).
"""

from __future__ import annotations

import importlib
import sys

from common.errors import cli_main
from launch.registry import TOOLS, usage


def main(argv: list[str] | None = None) -> None:
    cli_main(run, argv, debug_streams=True)


def run(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] in TOOLS:
        importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
    else:
        importlib.import_module("launch.cli").main(argv)


if __name__ == "__main__":
    main()
