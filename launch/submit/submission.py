"""One stage as one SLURM job: the run folder made (queued) at submission, the job recorded in its manifest.

    python -m launch sft RECIPE --slurm launch/clusters/h100-8x.yaml --nodes 2 [--dry-run]
    python -m launch merge runs/<id> --slurm launch/clusters/h100-8x.yaml --after 1234

The job runs this launcher again on the run folder, without ``--slurm`` (``job_command``); a SLURM requeue reopens
the same folder and resumes (launch/lifecycle/run.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.rundir import check_run_id, new_run_id
from launch.lifecycle.config import load_recipe
from launch.lifecycle.run import Run, StageRun, parent_record
from launch.lifecycle.topology import Topology, topology
from launch.preflight.pinning import resolve_base_model
from launch.registry import FOLLOWUPS, STAGE_PARENT
from launch.submit import slurm


@dataclass
class Submission:
    """What to submit: a stage, its recipe (sft, dpo) or run folder (merge, eval), and the cluster profile."""

    stage: str
    target: Path
    cluster: Path
    runs_dir: Path = Path("runs")
    gpus_per_node: int | None = None  # follow-ups: their one node's GPUs
    after: list[str] = field(default_factory=list)
    dry_run: bool = False
    skip_merge: bool = False
    allow_unpinned: bool = False


def job_command(sub: Submission, topo: Topology, run_id: str | None) -> list[str]:
    """What the batch job runs: this launcher, on the run folder made at submission, without --slurm."""
    if sub.stage in FOLLOWUPS:
        return ["python", "-m", "launch", sub.stage, str(sub.target)]
    command = ["python", "-m", "launch", sub.stage, str(sub.target), "--run-id", str(run_id),
               "--runs-dir", str(sub.runs_dir), "--nodes", str(topo.nodes)]
    command += ["--gpus-per-node", str(topo.procs_per_node)] if topo.device == "gpu" else \
        ["--cpu-procs", str(topo.procs_per_node)]
    return command + (["--skip-merge"] if sub.skip_merge else [])


def pin_base_model(sub: Submission, request: StageRun) -> dict[str, Any] | None:
    """Resolve the recipe's base model to a commit before a SLURM submission (launch/preflight/pinning.py).

    A resolved commit becomes the run's ``revision_of_model``, so every attempt loads the same weights.
    A DPO stage starts from a run of ours (its parent's merged model), pinned by that run's records.
    """
    if request.stage in STAGE_PARENT:
        return None
    config = load_recipe(request.recipe, request.overrides)
    pin = resolve_base_model(config, allow_unpinned=sub.allow_unpinned or sub.dry_run)
    if pin["how"] == "resolved":
        request.overrides["revision_of_model"] = pin["commit"]
    print(f"base model {pin['base_model']}: {pin['how']}" + (f" at {pin['commit']}" if pin["commit"] else "")
          + (f" ({pin['reason']})" if pin.get("reason") else ""), file=sys.stderr)
    if pin["how"] == "unpinned" and not sub.allow_unpinned:
        print("a real submission refuses this without --allow-unpinned", file=sys.stderr)
    return pin


def submit_stage(sub: Submission, request: StageRun | None) -> str | None:
    """Create (unless a dry run) the run folder and submit the stage as one SLURM job."""
    topo = request.topology if request else topology(1, sub.gpus_per_node, None)  # follow-ups: one node
    run: Run | None = None
    if request is None:  # merge or eval of an existing run
        run_dir, run_id = sub.target, sub.target.name
        title = f"{sub.stage} of run {run_id}"
    else:
        if request.run_id is not None:
            check_run_id(request.run_id)
        pin = pin_base_model(sub, request)
        if sub.dry_run:  # a chain's dry run names a parent run that no dry run has made
            if request.parent is not None and request.parent.exists():
                parent_record(request, pending_ok=True)
            run_id = request.run_id or new_run_id(sub.stage, sub.target)
            run_dir = sub.runs_dir / run_id
        else:  # the folder stays locked until the submission is recorded (the job waits for it)
            run = Run.open(request, submitting=True)
            run_dir, run_id = run.path, run.id
            if pin is not None:
                run.update(base_model_pin=pin)
        title = f"{sub.stage} of {sub.target} as run {run_id}"
    try:
        if not sub.dry_run:
            (run_dir / "logs").mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
        job = slurm.Job(title=title, job_name=f"{sub.stage}-{run_id}"[:64], command=job_command(sub, topo, run_id),
                        topology=topo, log_path=run_dir / f"logs/slurm-{sub.stage}-%j.out",
                        stop_file=run_dir / ".stop", root=Path.cwd(), after=sub.after,
                        train_config=run_dir / "config.yaml" if request else None)
        return slurm.submit(sub.cluster, job, run, run_dir / f"sbatch-{sub.stage}.sh", sub.dry_run)
    finally:
        if run is not None:
            run.release()
