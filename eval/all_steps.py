"""python -m eval all [--model RUN] [eval run's options]: a run's whole evaluation, the one that every path runs.

    make eval [RUN=runs/<id>]              # python -m eval all [--model runs/<id>]
    python -m launch eval runs/<id>        # the same command, under the lock the launcher holds
    make all SLURM=...                     # the chain's eval job: python -m launch eval runs/<id>

Three steps, in this order: the scores (``eval run``: zero-shot lm-eval on the benchmarks, beside the base), the
generation check (``eval generate-check``: does the model end its turn; it catches an untrained end-of-turn token,
which scores cannot), and the brief report (``eval report --brief``: each run's Avg against the card, report.md).
The run is locked throughout (common/rundir.py's ``RunWriter``), its adapter/ and merged/ checked against the
hashes its manifest records; the scores and the generation check are written aside and replace ``runs/<id>/eval/``
whole only when both succeed (a release's GGUF scores, ``eval/gguf/``, carried over), so a failure leaves the
previous evaluation as it was. The manifest's ``eval`` entry says when and where.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import InputError
from common.rundir import RunWriter, now
from inference.model_source import find_source

RESULTS = "eval/results.json"


def main(argv: list[str] | None = None) -> None:
    from eval import generation_check, report
    from eval import run as eval_run

    parser = argparse.ArgumentParser(prog="python -m eval all", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="runs/<id> (default: the latest successful dpo, else sft, run)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders live")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if "--out" in rest or any(arg.startswith("--out=") for arg in rest):
        raise InputError("--out: eval all writes a run's eval/; use `python -m eval run --out DIR` for another "
                         "model")
    run = find_source(args.model, args.runs_dir).run
    if run is None:
        raise InputError(f"--model {args.model}: eval all evaluates a run folder (runs/<id>); use `python -m eval "
                         "run --out DIR` for another model")
    with RunWriter.open(run) as writer:
        writer.verify()
        with writer.staged("eval", keep=("gguf",)) as stage:
            eval_run.main(["--model", str(run), "--out", str(stage), "--runs-dir", str(args.runs_dir), *rest])
            generation_check.main(["--model", str(run), "--out", str(stage)])
        report.main([str(run / RESULTS), "--brief"])
        writer.update_manifest(eval={"at": now(), "results": RESULTS, "steps": ["scores", "generation check",
                                                                                  "report"]})
