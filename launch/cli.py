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
import sys
import traceback
from pathlib import Path

import yaml

from common import quiet
from common.errors import InputError, positive_int
from common.rundir import check_run_id, new_run_id, write_manifest
from launch import slurm
from launch.distributed import Topology, topology
from launch.pinning import resolve_base_model
from launch.registry import FOLLOWUPS
from launch.stage import (
    STAGE_PARENT,
    STAGE_STEPS,
    StageRun,
    load_recipe,
    open_run,
    parent_record,
    run_stage,
)


def parse_override(text: str) -> tuple[str, object]:
    """``key.path=value`` with the value read as YAML (``2`` is an int, ``[a, b]`` a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


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
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p


def job_command(args: argparse.Namespace, topo: Topology, run_id: str | None) -> list[str]:
    """What the batch job runs: this launcher, on the run folder made at submission, without --slurm."""
    if args.stage in FOLLOWUPS:
        return ["python", "-m", "launch", args.stage, str(args.recipe)]
    command = ["python", "-m", "launch", args.stage, str(args.recipe), "--run-id", str(run_id),
               "--runs-dir", str(args.runs_dir), "--nodes", str(topo.nodes)]
    command += ["--gpus-per-node", str(topo.procs_per_node)] if topo.device == "gpu" else \
        ["--cpu-procs", str(topo.procs_per_node)]
    return command + (["--skip-merge"] if args.skip_merge else [])


def pin_base_model(args: argparse.Namespace, request: StageRun) -> dict | None:
    """Resolve the recipe's base model to a commit before a SLURM submission (launch/pinning.py).

    A resolved commit becomes the run's ``revision_of_model``, so every attempt loads the same weights.
    A DPO stage starts from a run of ours (its parent's merged model), pinned by that run's records.
    """
    if request.stage in STAGE_PARENT:
        return None
    config = load_recipe(request.recipe, request.overrides)
    pin = resolve_base_model(config, allow_unpinned=args.allow_unpinned or args.dry_run)
    if pin["how"] == "resolved":
        request.overrides["revision_of_model"] = pin["commit"]
    print(f"base model {pin['base_model']}: {pin['how']}" + (f" at {pin['commit']}" if pin["commit"] else "")
          + (f" ({pin['reason']})" if pin.get("reason") else ""), file=sys.stderr)
    if pin["how"] == "unpinned" and not args.allow_unpinned:
        print("a real submission refuses this without --allow-unpinned", file=sys.stderr)
    return pin


def submit_stage(args: argparse.Namespace, request: StageRun | None) -> str | None:
    """Create (unless a dry run) the run folder and submit the stage as one SLURM job."""
    topo = request.topology if request else topology(1, args.gpus_per_node, None)  # follow-ups: one node
    root, lock = Path.cwd(), None
    if request is None:  # merge or eval of an existing run
        run_dir, run_id = args.recipe, args.recipe.name
        title = f"{args.stage} of run {run_id}"
    else:
        if request.run_id is not None:
            check_run_id(request.run_id)
        pin = pin_base_model(args, request)
        if args.dry_run:  # a chain's dry run names a parent run that no dry run has made
            if request.parent is not None and request.parent.exists():
                parent_record(request, pending_ok=True)
            run_id = request.run_id or new_run_id(args.stage, args.recipe)
            run_dir = args.runs_dir / run_id
        else:  # the folder stays locked until the submission is recorded (the job waits for it)
            run_dir, _, record, lock = open_run(request, submitting=True)
            run_id = run_dir.name
            if pin is not None:
                record["base_model_pin"] = pin
                write_manifest(run_dir, record)
        title = f"{args.stage} of {args.recipe} as run {run_id}"
    try:
        if not args.dry_run:
            (run_dir / "logs").mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
        job = slurm.Job(title=title, job_name=f"{args.stage}-{run_id}"[:64], command=job_command(args, topo, run_id),
                        topology=topo, log_path=run_dir / f"logs/slurm-{args.stage}-%j.out",
                        stop_file=run_dir / ".stop", root=root, after=args.after,
                        train_config=run_dir / "config.yaml" if request else None)
        return slurm.submit(args.slurm, job, None if args.dry_run else run_dir,
                            run_dir / f"sbatch-{args.stage}.sh", args.dry_run)
    finally:
        if lock is not None:
            lock.release()


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    quiet.VERBOSE = quiet.VERBOSE or args.debug  # --debug: the trainer's traceback too (an out-of-memory's)
    try:
        run(args)
    except (InputError, OSError) as err:  # OSError: a runs dir that cannot be written, a file that vanished
        if args.debug:
            traceback.print_exc()
        message = str(err) if isinstance(err, InputError) else \
            f"{err.filename or ''}{': ' if err.filename else ''}{err.strerror or err} (--debug shows the traceback)"
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(InputError.exit_code) from None


def run(args: argparse.Namespace) -> None:
    """Start or submit what ``args`` ask for."""
    if args.dry_run and not args.slurm:
        raise InputError("--dry-run prints the sbatch script: it needs --slurm CLUSTER.yaml")
    if args.stage in FOLLOWUPS:
        if args.slurm:
            submit_stage(args, None)
        else:
            from launch.followup import run_followup

            run_followup(args.stage, args.recipe, Path.cwd())
        return
    request = StageRun(stage=args.stage, recipe=args.recipe, runs_dir=args.runs_dir, run_id=args.run_id,
                       parent=args.parent, overrides=dict(args.overrides), root=Path.cwd(),
                       topology=topology(args.nodes, args.gpus_per_node, args.cpu_procs), merge=not args.skip_merge)
    if args.slurm:
        submit_stage(args, request)
    else:
        run_stage(request)


if __name__ == "__main__":
    main()
