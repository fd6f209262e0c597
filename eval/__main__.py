"""The nine OpenBioLLM benchmarks through lm-evaluation-harness.

    python -m eval prepare TASK INPUT... --out DIR     raw benchmark files -> DIR/<task>.jsonl + manifest
    python -m eval prepare --all --out DIR [--from RAW_DIR]   all nine: from the hub, or raw files found by name
    python -m eval run --model PATH_OR_RUN [...]       lm-eval, zero-shot, on the local task YAMLs
    python -m eval report RESULTS... [--out report.md] a table against the model card, with a chart

Every command takes --quiet (no progress) and --verbose (third-party import noise too, launch/quiet.py).
"""

from __future__ import annotations

import importlib
import sys

from launch import progress, quiet

COMMANDS = {"prepare": "eval.prepare", "run": "eval.run", "report": "eval.report"}


def main(argv: list[str] | None = None) -> None:
    argv, verbose, silent = quiet.take_flags(sys.argv[1:] if argv is None else argv)
    quiet.install(verbose)
    progress.SHOW = not silent
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
