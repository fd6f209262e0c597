"""The launcher against a real two-node SLURM cluster (tests/slurm_cluster.py): submit, run, requeue, chain.

Each job trains the tiny Llama-3 for a few steps as a real 2-node torchrun (one CPU process per node).
The fast tests at the top need no cluster: they render scripts with --dry-run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import DPO_RECIPE, ROOT, SFT_RECIPE, launch, tiny_overrides
from slurm_cluster import slurm_cluster  # noqa: F401  (the session fixture)

from common.rundir import read_manifest

LOCAL_TEST = ROOT / "launch/clusters/local-test.yaml"
H100 = ROOT / "launch/clusters/h100-8x.yaml"
FAKE_SECRETS = {"HF_TOKEN": "hf_fake_slurm_token_0123456789", "WANDB_API_KEY": "fake-slurm-wandb-key-0123456789"}
DONE = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")


def submitted_job(result: subprocess.CompletedProcess) -> str:
    """The job id the launcher printed ("submitted job N: ...")."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return re.findall(r"submitted job (\d+)", result.stdout)[-1]


def run_dir_of(runs_dir, stage):
    return next(p for p in runs_dir.iterdir() if f"-{stage}-" in p.name)


def assert_losses_by_global_step(record: dict, max_steps: int) -> None:
    """Every step once, keyed by the trainer's global step, each with the attempt that produced it."""
    assert [row["step"] for row in record["losses"]] == list(range(1, max_steps + 1)), record["losses"]
    resumed_at = record["attempts"][-1]["train_start"]["global_step"]
    assert {row["attempt"] for row in record["losses"] if row["step"] <= resumed_at} == {1}
    assert {row["attempt"] for row in record["losses"] if row["step"] > resumed_at} == {len(record["attempts"])}


def launcher_pid(run_dir: Path) -> int:
    """The job's `python -m launch` process (every test node runs on this machine)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"launch" in argv and run_dir.name.encode() in argv and b"-m" in argv:
            return int(proc.name)
    raise AssertionError(f"no launcher process for {run_dir}")


# ---- no cluster needed

def test_dry_run_prints_a_concrete_8_gpu_script_and_submits_nothing(tmp_path):
    result = launch("sft", SFT_RECIPE, tmp_path / "runs", "--slurm", str(H100), "--nodes", "2",
                    "--gpus-per-node", "8", "--dry-run", "--run-id", "dry")
    assert result.returncode == 0, result.stderr
    script = result.stdout
    sbatch_lines = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert all("$" not in line and "{" not in line for line in sbatch_lines), sbatch_lines
    for expected in ("--nodes=2", "--gpus-per-node=8", "--partition=gpu", "--account=my-lab", "--qos=normal",
                     "--requeue", "--signal=B:USR1@600", "--time=2-00:00:00", "--exclusive"):
        assert any(line.endswith(expected) for line in sbatch_lines), expected
    assert '--node-rank="$SLURM_PROCID"' in script and "--rdzv-backend=c10d" in script
    assert "scontrol show node" in script and "SLURM_JOB_ID % 20000" in script
    assert not (tmp_path / "runs").exists()


def test_multi_node_without_slurm_is_refused(tmp_path, tiny_llama3, small_data):
    result = launch("sft", SFT_RECIPE, tmp_path, "--nodes", "2", *tiny_overrides(tiny_llama3, small_data["sft"]))
    assert result.returncode != 0 and "--slurm" in result.stderr


def test_cluster_profile_with_an_unknown_key_names_the_file(tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text(yaml.safe_dump({**yaml.safe_load(LOCAL_TEST.read_text()), "partiton": "x"}))
    result = launch("sft", SFT_RECIPE, tmp_path, "--slurm", str(profile), "--dry-run")
    assert result.returncode != 0 and str(profile) in result.stderr and "partiton" in result.stderr


# ---- against the cluster

@pytest.fixture(scope="module")
def secret_profile(tmp_path_factory):
    """local-test, plus a line that proves the secrets reached the job through its environment."""
    profile = yaml.safe_load(LOCAL_TEST.read_text())
    profile["env_setup"] += '[ -n "${HF_TOKEN:-}" ] && echo "HF_TOKEN reached the job"\n'
    path = tmp_path_factory.mktemp("profiles") / "local-test-secrets.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


@pytest.fixture(scope="module")
def two_node_run(slurm_cluster, secret_profile, tiny_llama3, small_data, tmp_path_factory):  # noqa: F811
    """The tiny SFT recipe on 2 nodes x 1 CPU process, with fake secrets in the submitting environment."""
    runs_dir = tmp_path_factory.mktemp("runs")
    started = time.monotonic()
    result = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["sft"]), "--set",
                    "max_steps=4", "--slurm", str(secret_profile), "--nodes", "2", "--cpu-procs", "1",
                    env={**slurm_cluster.env, **FAKE_SECRETS})
    job_id = submitted_job(result)
    state = slurm_cluster.wait_for(job_id, DONE, timeout_s=600)
    print(f"two-node SFT job {job_id}: {state['JobState']} in {time.monotonic() - started:.0f}s")
    return {"job_id": job_id, "state": state, "run_dir": run_dir_of(runs_dir, "sft"), "stdout": result.stdout}


@pytest.mark.slow
def test_tiny_sft_runs_as_a_two_node_torchrun_through_sbatch(two_node_run):
    run_dir, job_id = two_node_run["run_dir"], two_node_run["job_id"]
    slurm_log = (run_dir / f"logs/slurm-sft-{job_id}.out").read_text()
    assert two_node_run["state"]["JobState"] == "COMPLETED", slurm_log[-3000:]
    assert (run_dir / "adapter/adapter_model.safetensors").is_file()
    assert (run_dir / "merged/config.json").is_file()
    train_log = (run_dir / "logs/train.log").read_text()
    assert train_log.count('"world_size": 2') == 2  # both nodes' processes joined one 2-process group
    assert "rendezvous 127.0.0.1:" in slurm_log  # NodeAddr, resolved through scontrol
    record = read_manifest(run_dir)
    assert record["status"] == "succeeded"
    assert record["slurm_jobs"][0]["job_id"] == job_id
    assert (run_dir / record["slurm_jobs"][0]["script"]).is_file()
    (attempt,) = record["attempts"]
    assert attempt["slurm"]["job_id"] == job_id and attempt["slurm"]["nodes"] == ["n1", "n2"]
    assert attempt["topology"]["world_size"] == 2
    assert f"squeue -j {job_id}" in two_node_run["stdout"]


@pytest.mark.slow
def test_secrets_reach_the_job_but_no_file_it_writes(two_node_run):
    run_dir = two_node_run["run_dir"]
    assert "HF_TOKEN reached the job" in (run_dir / f"logs/slurm-sft-{two_node_run['job_id']}.out").read_text()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("sbatch-") for p in files) and any(p.name == "manifest.json" for p in files)
    leaks = [str(p) for p in files for value in FAKE_SECRETS.values() if value.encode() in p.read_bytes()]
    assert not leaks, leaks


@pytest.mark.slow
def test_requeued_job_resumes_from_last_checkpoint(slurm_cluster, tiny_llama3, small_data, tmp_path):  # noqa: F811
    runs_dir = tmp_path / "runs"
    result = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["sft"]),
                    "--set", "max_steps=10", "--set", "save_strategy=steps", "--set", "save_steps=1",
                    "--set", "save_total_limit=2", "--skip-merge", "--slurm", str(LOCAL_TEST), "--nodes", "2",
                    "--cpu-procs", "1", env=slurm_cluster.env)
    job_id, run_dir = submitted_job(result), run_dir_of(runs_dir, "sft")
    deadline = time.monotonic() + 400
    while not list((run_dir / "adapter").glob("checkpoint-*")):
        assert time.monotonic() < deadline, slurm_cluster.job_state(job_id)
        time.sleep(0.5)
    requeue = slurm_cluster.run("scontrol", "requeue", job_id)
    assert requeue.returncode == 0, requeue.stderr
    slurm_cluster.release_requeued(job_id)
    state = slurm_cluster.wait_for(job_id, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout_s=600)
    assert state["JobState"] == "COMPLETED", (run_dir / f"logs/slurm-sft-{job_id}.out").read_text()[-3000:]
    assert int(state["Restarts"]) >= 1
    record = read_manifest(run_dir)
    assert record["status"] == "succeeded" and record["run_id"] == run_dir.name
    first, last = record["attempts"][0], record["attempts"][-1]
    assert first["status"] == "preempted" and first["preempted"]["global_step"] > 0
    assert last["status"] == "succeeded" and last["resume_from"].startswith("adapter/checkpoint-")
    assert last["train_start"]["global_step"] > 0  # the trainer carried on from the checkpoint, not from step 0
    assert last["slurm"]["restart_count"] >= 1 and last["slurm"]["job_id"] == job_id
    assert (run_dir / "adapter/adapter_model.safetensors").is_file()
    assert_losses_by_global_step(record, 10)


@pytest.mark.slow
def test_sigterm_to_the_jobs_process_group_checkpoints_and_requeues(slurm_cluster, tiny_llama3, small_data,  # noqa: F811
                                                                   tmp_path):
    """SIGTERM to the batch shell's process group (the shell and the launcher): both ask every rank, on both
    nodes, through the stop file; the trainer checkpoints, exits 75, and the batch shell requeues the job."""
    runs_dir = tmp_path / "runs"
    result = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["sft"]),
                    "--set", "max_steps=8", "--skip-merge", "--slurm", str(LOCAL_TEST), "--nodes", "2",
                    "--cpu-procs", "1", env=slurm_cluster.env)
    job_id, run_dir = submitted_job(result), run_dir_of(runs_dir, "sft")
    train_log, deadline = run_dir / "logs/train.log", time.monotonic() + 400
    while not train_log.is_file() or train_log.read_text(errors="replace").count("{'loss':") < 2:
        assert time.monotonic() < deadline, slurm_cluster.job_state(job_id)
        time.sleep(0.5)
    os.killpg(os.getpgid(launcher_pid(run_dir)), signal.SIGTERM)
    slurm_cluster.release_requeued(job_id)
    state = slurm_cluster.wait_for(job_id, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout_s=600)
    slurm_log = (run_dir / f"logs/slurm-sft-{job_id}.out").read_text()
    assert state["JobState"] == "COMPLETED", slurm_log[-3000:]
    assert "checkpoint saved: requeueing job" in slurm_log and "DataLoader worker" not in slurm_log
    record = read_manifest(run_dir)
    first, last = record["attempts"][0], record["attempts"][-1]
    assert record["status"] == "succeeded"
    assert first["status"] == "preempted" and first["preempted"]["global_step"] >= 2
    assert last["resume_from"] == f"adapter/checkpoint-{first['preempted']['global_step']}"
    assert_losses_by_global_step(record, 8)


@pytest.mark.slow
def test_failed_stage_stops_the_chain(slurm_cluster, tmp_path, small_data):  # noqa: F811
    runs_dir = tmp_path / "runs"
    command = ["-m", "launch", "chain", "--slurm", str(LOCAL_TEST), "--no-data", "--runs-dir", str(runs_dir),
               "--sft", str(SFT_RECIPE), "--dpo", str(DPO_RECIPE), "--set", f"base_model={tmp_path}/no-such-model",
               "--set", f"datasets.0.path={small_data['sft']}"]
    result = subprocess.run([".venv/bin/python", *command], cwd=ROOT, capture_output=True, text=True,
                            env=slurm_cluster.env, timeout=300)
    jobs = re.findall(r"submitted job (\d+)", result.stdout)
    assert result.returncode == 0 and len(jobs) == 5, result.stdout + result.stderr  # sft, merge, dpo, merge, eval
    first = slurm_cluster.wait_for(jobs[0], DONE, timeout_s=300)
    assert first["JobState"] == "FAILED"
    sft = read_manifest(run_dir_of(runs_dir, "sft"))
    assert sft["status"] == "failed" and sft["error"]["step"] == "train" and sft["error"]["log_tail"]
    assert list(runs_dir.glob(f"*/logs/slurm-*-{jobs[0]}.out"))  # a job that ran leaves its output here
    for job in jobs[1:]:
        state = slurm_cluster.wait_for(job, DONE, timeout_s=60)
        # never ran: SLURM cancelled it for its failed dependency, and its batch script wrote no output. (Not
        # RunTime: asked at the wrong moment, scontrol prints it as the time since the epoch for such a job.)
        assert state["JobState"] == "CANCELLED" and state["Reason"] == "DependencyNeverSatisfied", state
        assert not list(runs_dir.glob(f"*/logs/slurm-*-{job}.out")), state
    dpo = read_manifest(run_dir_of(runs_dir, "dpo"))
    assert dpo["status"] == "queued" and not dpo.get("attempts")  # never started
