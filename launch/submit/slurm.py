"""Submit a stage to SLURM: render the sbatch script from a cluster profile, save it in the run folder, sbatch it.

    python -m launch sft RECIPE --slurm launch/clusters/h100-8x.yaml --nodes 2 [--dry-run]
    python -m launch merge runs/<id> --slurm launch/clusters/h100-8x.yaml

A cluster profile (launch/clusters/*.yaml, one per cluster) names partition, account, qos, GPUs and CPUs
per node, memory, time limit, the environment setup and extra #SBATCH flags. The run folder is created
at submission (config.yaml, a "queued" manifest); the job reopens it, and so does every requeue.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from common.errors import WorldError
from common.files import atomic_writer
from common.rundir import now
from launch.lifecycle.run import Run
from launch.lifecycle.topology import Topology
from launch.plugins import PREEMPTED_EXIT
from launch.submit.distributed import per_node_command

TEMPLATE = Path(__file__).parent / "templates" / "sbatch.sh.j2"
PROFILE_KEYS = {"partition", "account", "qos", "gpus_per_node", "cpus_per_node", "mem", "time", "signal_before_s",
                "env_setup", "env", "extra_sbatch"}
REQUIRED_KEYS = {"cpus_per_node", "mem", "time"}


def load_profile(path: Path) -> dict[str, Any]:
    """A cluster profile, checked: unknown or missing keys are errors naming the file."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such cluster profile (profiles: {', '.join(p.name for p in clusters())})")
    profile = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown, missing = set(profile) - PROFILE_KEYS, REQUIRED_KEYS - set(profile)
    if unknown or missing:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                         f"a profile takes {sorted(PROFILE_KEYS)}")
    profile.setdefault("signal_before_s", 300)
    return profile


def clusters() -> list[Path]:
    """The cluster profiles this repository ships."""
    return sorted((Path(__file__).parents[1] / "clusters").glob("*.yaml"))


@dataclass
class Job:
    """One batch job: the command the batch shell runs, on ``topology``, with the files it belongs with."""

    title: str
    job_name: str
    command: list[str]
    topology: Topology
    log_path: Path
    stop_file: Path
    root: Path
    train_config: Path | None = None  # set for training jobs: the per-node command is shown in the script
    after: list[str] = field(default_factory=list)


def render_script(profile: dict[str, Any], profile_path: Path, job: Job) -> str:
    """The sbatch script: every #SBATCH line a concrete value."""
    if job.topology.device == "gpu" and job.topology.procs_per_node > (profile.get("gpus_per_node") or 0):
        raise SystemExit(f"{profile_path}: {job.topology.procs_per_node} GPUs per node asked for, "
                         f"the profile has {profile.get('gpus_per_node') or 0}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    per_node = ""
    if job.train_config is not None:  # show the admin what each node runs for the train step
        per_node = per_node_command(job.train_config, job.topology, "python").removeprefix("exec ")
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        title=job.title, profile_path=profile_path, job_name=job.job_name, nodes=job.topology.nodes,
        cpus_per_node=profile["cpus_per_node"], gpus_per_node=job.topology.procs_per_node
        if job.topology.device == "gpu" else 0, mem=profile["mem"], time=profile["time"],
        partition=profile.get("partition"), account=profile.get("account"), qos=profile.get("qos"),
        root=job.root.resolve(), log_path=job.log_path.resolve(), signal_before_s=profile["signal_before_s"],
        extra_sbatch=profile.get("extra_sbatch") or [], env_setup=(profile.get("env_setup") or "").rstrip(),
        env=profile.get("env") or {}, stop_file=job.stop_file.resolve(), per_node=per_node,
        command=shlex.join(job.command), preempted_exit=PREEMPTED_EXIT).rstrip("\n") + "\n"


def sbatch(script: Path, after: list[str], cwd: Path) -> str:
    """Submit ``script`` (after the jobs in ``after`` succeed) and return its job id."""
    command = ["sbatch", "--parsable"]
    if after:
        command += [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"]
    result = subprocess.run([*command, str(script)], capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise WorldError(f"sbatch {script} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]


def submit(profile_path: Path, job: Job, run: Run | None, script_path: Path, dry_run: bool) -> str | None:
    """Render, then print (dry run) or save, submit and record the job in ``run`` (locked); returns the job id."""
    profile = load_profile(profile_path)
    script = render_script(profile, profile_path, job)
    if dry_run:
        sys.stdout.write(script)
        return None
    with atomic_writer(script_path) as handle:
        handle.write(script)
    job_id = sbatch(script_path, job.after, job.root)
    if run is not None:
        run.append("slurm_jobs", {
            "job_id": job_id, "title": job.title, "script": str(script_path.relative_to(run.path)),
            "cluster": str(profile_path), "topology": job.topology.as_record(), "after": job.after,
            "log": str(job.log_path.relative_to(run.path)).replace("%j", job_id), "submitted_at": now()})
        if run.record["status"] == "running" and not run.record.get("attempts"):
            run.update(status="queued")
    log = str(job.log_path).replace("%j", job_id)
    print(f"submitted job {job_id}: {job.title}\n  follow it: squeue -j {job_id}; tail -f {log}; "
          f"sacct -j {job_id} --format=JobID,State,ExitCode,Elapsed,NodeList")
    return job_id
