"""The nine OpenBioLLM benchmarks through lm-evaluation-harness.

    python -m eval prepare TASK INPUT... --out DIR     raw benchmark files -> DIR/<task>.jsonl + manifest
    python -m eval prepare --all --out DIR [--from RAW_DIR]   all nine: from the hub, or raw files found by name
    python -m eval run --model PATH_OR_RUN [...]       lm-eval, zero-shot, on the local task YAMLs
    python -m eval generate-check [--model RUN]        greedy answers: does the model end its turn? (stop rate...)
    python -m eval report RESULTS... [--out report.md] a table against the model card, with a chart
    python -m eval all [--model RUN] [...]             run, generate-check, report: a run's whole evaluation
    python -m eval baseline RESULTS_DIR --out DIR      a base model's full test-set eval, committed (docs/baseline/)

Bad input ends with one line naming the file or option (exit 2); a failure of the world one line, exit 1;
--debug shows the traceback.
Every command takes --quiet (no progress) and --verbose (third-party import noise too, common/quiet.py;
for `run`, lm-eval's own output on the terminal as well as in its log).
"""

from __future__ import annotations

import importlib
import sys

from common.errors import cli_main

COMMANDS = {"prepare": "eval.prepare", "run": "eval.run", "generate-check": "eval.generation_check",
            "report": "eval.report", "baseline": "eval.commit_baseline", "all": "eval.all_steps"}


def run(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


def main(argv: list[str] | None = None) -> None:
    cli_main(run, argv)


if __name__ == "__main__":
    main()
