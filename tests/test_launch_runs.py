"""Run folders under hostile input: safe ids, exclusive creation, the lock, lost runs, parents, one-line errors.

Everything here runs the real launcher code or the real CLI, without training: folders and manifests are made by
``Run.open`` itself, and processes that hold or lose a lock are real processes, really killed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest
from helpers import DPO_RECIPE, ROOT, SFT_RECIPE, launch

from common.rundir import LOCK_FILE, RunLock, create, read_manifest, write_manifest
from common.secrets import REDACTED, redact, secret_values
from launch.lifecycle.run import Run, StageRun


def request(tmp_path, **kwargs) -> StageRun:
    return StageRun(stage="sft", recipe=SFT_RECIPE, runs_dir=tmp_path / "runs", root=ROOT, **kwargs)


def create_after(barrier, runs_dir, queue) -> None:
    barrier.wait()
    run_dir, lock = create(runs_dir, "same-second", exact=False)
    queue.put(run_dir.name)
    lock.release()


def test_starts_that_pick_the_same_name_get_different_folders(tmp_path):
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(4), context.Queue()
    procs = [context.Process(target=create_after, args=(barrier, tmp_path, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    names = sorted(queue.get(timeout=5) for _ in procs)
    assert names == ["same-second", "same-second-2", "same-second-3", "same-second-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no staging folder left behind


def test_unsafe_run_id_is_refused_and_nothing_is_made(tmp_path):
    for run_id in ("../escaped", "a/b", "..", ".hidden", "x" * 200):
        result = launch("sft", SFT_RECIPE, tmp_path / "runs", "--run-id", run_id)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "--run-id" in result.stderr
    assert not list(tmp_path.rglob("*"))


def test_a_run_in_use_is_not_reopened(tmp_path):
    run = Run.open(request(tmp_path, run_id="busy"))
    run.update(status="preempted")  # reopenable, but a process still works in it
    result = launch("sft", SFT_RECIPE, tmp_path / "runs", "--run-id", "busy")
    run.release()
    assert result.returncode == 1 and f"in use by pid {os.getpid()}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_whose_process_was_killed_is_recorded_lost_and_reopens(tmp_path):
    code = ("import sys, time; from pathlib import Path; "
            "from launch.lifecycle.run import Run, StageRun; from launch.lifecycle.topology import Topology; "
            f"r = StageRun('sft', Path({str(SFT_RECIPE)!r}), Path({str(tmp_path / 'runs')!r}), 'killed'); "
            "run = Run.open(r); run.begin_attempt(Topology()); print('ready', flush=True); "
            "time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    with pytest.raises(SystemExit, match="in use"):  # alive: locked
        Run.open(request(tmp_path, run_id="killed"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_manifest(tmp_path / "runs/killed")["status"] == "running"  # what it said when it died
    run = Run.open(request(tmp_path, run_id="killed"))
    run.release()
    assert run.record["status"] == "lost" and run.record["attempts"][0]["status"] == "lost"
    assert read_manifest(run.path)["status"] == "lost"


def test_lock_names_its_holder(tmp_path):
    (tmp_path / "run").mkdir()
    lock = RunLock.acquire(tmp_path / "run")
    lock.note(trainer_pid=12345)
    info = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert info["pid"] == os.getpid() and info["trainer_pid"] == 12345 and info["host"]
    lock.release()
    RunLock.acquire(tmp_path / "run").release()  # free again


@pytest.mark.parametrize("status", ["failed", "running"])
def test_parent_must_be_a_succeeded_run_of_the_parent_stage(tmp_path, status):
    parent = tmp_path / "runs/parent"
    write_manifest(parent, {"run_id": "parent", "stage": "sft", "status": status})
    result = launch("dpo", DPO_RECIPE, tmp_path / "runs", "--parent", str(parent), "--run-id", "child")
    assert result.returncode == 2, result.stderr
    assert f"--parent {parent}: a dpo run starts from a succeeded sft run" in result.stderr
    assert not (tmp_path / "runs/child").exists()


@pytest.mark.parametrize(("make", "args", "expected"), [
    (None, ["--set", "datasets.9.path=x"], "--set datasets.9.path: datasets is a list of 1 item(s)"),
    (None, ["--set", "datasets.0.path.x=y"], "--set datasets.0.path.x: datasets.0.path is"),
    ("", [], "this file is empty"),
    ("a: [\n", [], ":2: not valid YAML"),
    ("- a\n- b\n", [], "this file is a list"),
    ("x: !!python/object:os.system {}\n", [], "not valid YAML"),
    (None, ["--cpu-procs", "0"], "argument --cpu-procs: '0' is not a whole number of at least 1"),
    (None, ["--nodes", "-1"], "argument --nodes"),
    (None, ["--gpus-per-node", "x"], "argument --gpus-per-node"),
    (None, ["--runs-dir", "/proc/self/runs"], "cannot create a run folder there"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, make, args, expected):
    recipe = SFT_RECIPE
    if make is not None:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(make)
    runs = ["--runs-dir", str(tmp_path / "runs")] if "--runs-dir" not in args else []
    result = subprocess.run([sys.executable, "-m", "launch", "sft", str(recipe), *runs, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert "error:" in result.stderr.strip().splitlines()[-1]


def test_debug_shows_the_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "launch", "sft", str(SFT_RECIPE), "--runs-dir", str(tmp_path),
                             "--set", "datasets.9.path=x", "--debug"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_only_secret_names_with_secret_looking_values_are_secrets():
    env = {"TOKENIZERS_PARALLELISM": "false", "MY_KEY_COUNT": "8", "PAD_TOKEN_ID": "128001", "CI_JOB_TOKEN": "true",
           "TOKEN_MODE": "disabled", "HF_TOKEN": "hf_abcdef123", "HUGGING_FACE_HUB_TOKEN": "hf_zyxwv987",
           "WANDB_API_KEY": "0123456789abcdef0123", "JUPYTER_TOKEN": "j-4f8a9c2b1d"}
    assert sorted(secret_values(env)) == ["0123456789abcdef0123", "hf_abcdef123", "hf_zyxwv987", "j-4f8a9c2b1d"]
    config = {"tokenizer_type": "AutoTokenizer", "special_tokens": {"pad_token": "<|end_of_text|>"},
              "wandb_log_model": "false", "bf16": False, "hub_token": "hf_abcdef123", "wandb_api_key": "w",
              "note": "pushed with hf_abcdef123"}
    assert redact(config, secret_values(env)) == {**config, "hub_token": REDACTED, "wandb_api_key": REDACTED,
                                                  "note": f"pushed with {REDACTED}"}


def test_a_chains_dry_run_names_a_parent_that_is_not_made_yet(tmp_path):
    """The DPO stage of `launch chain --dry-run` names the SFT run the chain would make: not checked, not refused."""
    result = subprocess.run([sys.executable, "-m", "launch", "chain", "--slurm", str(ROOT / "launch/clusters/"
                             "local-test.yaml"), "--no-data", "--dry-run", "--runs-dir", str(tmp_path / "runs")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("#SBATCH --job-name=") == 5 and not (tmp_path / "runs").exists()


def test_a_checkpoint_cut_off_mid_save_is_set_aside_and_the_last_whole_one_resumed(tmp_path):
    """A SIGKILL during a save leaves checkpoint-N without trainer_state.json (written last by the trainer)."""
    from launch.lifecycle import attempts

    run_dir = tmp_path / "run"
    whole, cut = run_dir / "adapter/checkpoint-2", run_dir / "adapter/checkpoint-4"
    whole.mkdir(parents=True)
    (whole / attempts.TRAINER_STATE).write_text("{}")
    cut.mkdir()
    (cut / "tokens_state.json").write_text("{}")
    record = {"attempts": [{"attempt": 1, "status": "lost"}]}
    attempt = attempts.begin(record, run_dir, {"world_size": 1})
    assert attempt["resume_from"] == "adapter/checkpoint-2"
    assert attempt["incomplete_checkpoints"] == ["checkpoint-4"]
    assert not cut.exists() and (run_dir / "adapter/incomplete-checkpoint-4/tokens_state.json").is_file()
