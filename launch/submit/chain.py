"""Submit the pipeline to SLURM as dependent jobs: data, sft, merge, dpo, merge, eval (each --dependency=afterok).

    python -m launch chain --slurm launch/clusters/h100-8x.yaml [--nodes 2] [--gpus-per-node 8 | --cpu-procs P]
        [--sft RECIPE] [--dpo RECIPE] [--mixture data_prep/mixtures/default-v2.yaml | --no-data] [--dry-run]

Run folders are made at submission, so the DPO run already names its SFT parent. A stage that fails
records its reason in its run's manifest; SLURM then cancels every later job (--kill-on-invalid-dep),
so nothing downstream runs. ``runs/chain-<time>/chain.json`` lists the jobs.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from common.errors import cli_main, positive_int
from common.files import write_json_atomic
from common.rundir import new_run_id
from launch.lifecycle.config import parse_override
from launch.lifecycle.run import StageRun
from launch.lifecycle.topology import topology
from launch.registry import DEFAULT_RECIPES
from launch.submit import slurm
from launch.submit.submission import Submission, submit_stage

DEFAULT = DEFAULT_RECIPES
# The data job: the nine test sets first (the mixture decontaminates against them), from the shipped files.
DATA_COMMAND = ("python -m eval prepare --all --from data/published/eval --out data/benchmarks && "
                "exec python -m data_prep build {mixture} --out {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m launch chain", description=__doc__.splitlines()[0])
    p.add_argument("--slurm", type=Path, required=True, metavar="CLUSTER.yaml")
    p.add_argument("--sft", type=Path, default=DEFAULT / "sft.yaml")
    p.add_argument("--dpo", type=Path, default=DEFAULT / "dpo.yaml")
    p.add_argument("--mixture", type=Path, default=Path("data_prep/mixtures/default-v2.yaml"))
    p.add_argument("--data-out", type=Path, default=Path("data/build/default-v2"))
    p.add_argument("--no-data", action="store_true", help="skip the data job (the data is built already)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"))
    p.add_argument("--nodes", type=positive_int, default=1)
    p.add_argument("--gpus-per-node", type=positive_int)
    p.add_argument("--cpu-procs", type=positive_int)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to both training stages")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    chain_dir = args.runs_dir / f"chain-{stamp}"
    jobs: list[dict[str, str | None]] = []
    after: list[str] = []

    def note_job(stage: str, job_id: str | None, run: str | None) -> None:
        jobs.append({"stage": stage, "job_id": job_id, "run": run})
        after[:] = [job_id] if job_id else []

    if not args.no_data:
        job = slurm.Job(title=f"data: build {args.mixture}", job_name=f"data-{stamp}",
                        command=["sh", "-c", DATA_COMMAND.format(mixture=shlex.quote(str(args.mixture)),
                                                                 out=shlex.quote(str(args.data_out)))],
                        topology=topology(1, None, None), log_path=chain_dir / "slurm-data-%j.out",
                        stop_file=chain_dir / ".stop", root=Path.cwd())
        if not args.dry_run:
            chain_dir.mkdir(parents=True, exist_ok=True)
        note_job("data", slurm.submit(args.slurm, job, None, chain_dir / "sbatch-data.sh", args.dry_run), None)

    topo = topology(args.nodes, args.gpus_per_node, args.cpu_procs)
    # merge and eval take one node, with its GPUs when training has them
    parent = None
    for stage, recipe in (("sft", args.sft), ("dpo", args.dpo)):
        run_id = new_run_id(stage, recipe, stamp)
        train = Submission(stage, recipe, args.slurm, args.runs_dir, after=list(after), dry_run=args.dry_run,
                           skip_merge=True)
        request = StageRun(stage=stage, recipe=recipe, runs_dir=args.runs_dir, run_id=run_id, parent=parent,
                           overrides=dict(parse_override(kv) for kv in args.overrides), topology=topo, merge=False)
        note_job(stage, submit_stage(train, request), run_id)
        run_dir = args.runs_dir / run_id
        merge = Submission("merge", run_dir, args.slurm, gpus_per_node=args.gpus_per_node, after=list(after),
                           dry_run=args.dry_run)
        note_job("merge", submit_stage(merge, None), run_id)
        parent = run_dir
    evaluate = Submission("eval", parent, args.slurm, gpus_per_node=args.gpus_per_node, after=list(after),
                          dry_run=args.dry_run)
    note_job("eval", submit_stage(evaluate, None), parent.name if parent else None)
    if not args.dry_run:
        write_json_atomic(chain_dir / "chain.json", {"cluster": str(args.slurm), "jobs": jobs})
        print(f"chain: {len(jobs)} jobs, each after the one before; record in {chain_dir / 'chain.json'}")


if __name__ == "__main__":
    cli_main(main)
