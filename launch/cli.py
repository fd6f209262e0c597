"""Start a stage: `python -m launch STAGE RECIPE ...` (see launch/__main__.py for the other commands).

    python -m launch sft recipes/smollm2-135m/v1/sft.yaml [--cpu-procs 2 | --gpus-per-node 8]
    python -m launch dpo recipes/smollm2-135m/v1/dpo.yaml [--parent runs/<sft-run-id>]
    python -m launch sft RECIPE --set num_epochs=2 --set datasets.0.path=data/build/sft.jsonl
    python -m launch sft RECIPE --slurm launch/clusters/h100-8x.yaml --nodes 2 [--dry-run]
    python -m launch merge runs/<id>     python -m launch eval runs/<id>     (also with --slurm)

Each run lands in ``runs/<run-id>/`` with its config, adapter, merged model, logs and manifest.
Bad input (a recipe, a ``--set`` key, a number, a run id) is one line and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from common.errors import InputError, cli_main, positive_int
from launch.lifecycle.config import parse_override
from launch.lifecycle.run import StageRun
from launch.lifecycle.topology import topology
from launch.registry import FOLLOWUPS, STAGE_STEPS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m launch", description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=[*sorted(STAGE_STEPS), *FOLLOWUPS], help="which stage to run")
    p.add_argument("recipe", type=Path, help="an Axolotl recipe (sft, dpo) or a run folder runs/<id> (merge, eval)")
    p.add_argument("--run-id", help="name of the run folder (default: <time>-<stage>-<recipe>)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)")
    p.add_argument("--parent", type=Path, help="the run this one starts from (dpo: default the latest sft run)")
    p.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[],
                   metavar="KEY=VALUE", help="override a recipe value; dotted keys reach into lists and maps")
    p.add_argument("--slurm", type=Path, metavar="CLUSTER.yaml", help="submit to SLURM with this cluster profile "
                   "(launch/clusters/)")
    p.add_argument("--nodes", type=positive_int, default=1, help="nodes to train on (more than one needs --slurm)")
    p.add_argument("--gpus-per-node", type=positive_int, help="one training process per GPU")
    p.add_argument("--cpu-procs", type=positive_int, help="training processes per node on CPU (gloo)")
    p.add_argument("--dry-run", action="store_true", help="with --slurm: print the sbatch script, submit nothing")
    p.add_argument("--skip-merge", action="store_true", help="train only; merge later with `launch merge runs/<id>`")
    p.add_argument("--after", action="append", default=[], metavar="JOB_ID",
                   help="with --slurm: start after this job succeeds (--dependency=afterok)")
    p.add_argument("--allow-unpinned", action="store_true",
                   help="with --slurm: submit even when the base model's branch cannot be resolved to a commit")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error (and stream the "
                   "trainer's output, as --verbose)")
    return p


def main(argv: list[str] | None = None) -> None:
    """``python -m launch STAGE ...`` (common/errors.py's entry: --debug, --verbose, --quiet, one-line errors)."""
    cli_main(lambda rest: run(parser().parse_args(rest)), argv, debug_streams=True)


def refuse_flags(args: argparse.Namespace) -> None:
    """A combination of flags that cannot work, refused before anything (a run folder) is written."""
    if args.dry_run and not args.slurm:
        raise InputError("--dry-run prints the sbatch script: it needs --slurm CLUSTER.yaml")
    if args.slurm:
        return
    if args.nodes > 1 and not os.environ.get("SLURM_JOB_ID"):  # inside the job a submission made: its nodes
        raise InputError(f"--nodes {args.nodes}: multi-node runs start through SLURM; add --slurm CLUSTER.yaml")
    for flag, given in (("--after", args.after), ("--allow-unpinned", args.allow_unpinned)):
        if given:
            raise InputError(f"{flag}: only with --slurm CLUSTER.yaml (it is about the submission)")


def run(args: argparse.Namespace) -> None:
    """Start or submit what ``args`` ask for."""
    refuse_flags(args)
    request = None if args.stage in FOLLOWUPS else StageRun(
        stage=args.stage, recipe=args.recipe, runs_dir=args.runs_dir, run_id=args.run_id, parent=args.parent,
        overrides=dict(args.overrides), root=Path.cwd(),
        topology=topology(args.nodes, args.gpus_per_node, args.cpu_procs), merge=not args.skip_merge)
    if args.slurm:
        from launch.submit.submission import submit_stage

        submit_stage(submission(args), request)
    elif request is None:
        from launch.runner.followup import run_followup

        run_followup(args.stage, args.recipe, Path.cwd())
    else:
        from launch.runner.stage import run_stage

        run_stage(request)


def submission(args: argparse.Namespace) -> Any:
    """The command line's SLURM submission (launch/submit/submission.py)."""
    from launch.submit.submission import Submission

    return Submission(stage=args.stage, target=args.recipe, cluster=args.slurm, runs_dir=args.runs_dir,
                      gpus_per_node=args.gpus_per_node, after=args.after, dry_run=args.dry_run,
                      skip_merge=args.skip_merge, allow_unpinned=args.allow_unpinned)


if __name__ == "__main__":
    main()
