"""Real signals against a real tiny SFT run through the launcher: every way a stop arrives ends in a checkpoint,
``status: preempted``, and the same command resuming to ``succeeded`` with losses keyed by the true global step.

Axolotl's default gives the trainer a DataLoader worker, so a SIGTERM to the whole process group reaches one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, SFT_RECIPE, tiny_overrides

from common.rundir import read_manifest

pytestmark = pytest.mark.slow
MAX_STEPS = 6


def start(runs_dir: Path, run_id: str, model: Path, data: Path, *extra: str) -> subprocess.Popen:
    """``python -m launch sft`` in its own session, as a shell or a batch system starts it."""
    command = [sys.executable, "-m", "launch", "sft", str(SFT_RECIPE), "--runs-dir", str(runs_dir), "--run-id", run_id,
               *tiny_overrides(model, data), "--set", f"max_steps={MAX_STEPS}", "--skip-merge", *extra]
    log = open(runs_dir.parent / f"{run_id}.out", "a")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_steps(run_dir: Path, proc: subprocess.Popen, steps: int, checkpoint: bool = False) -> None:
    """Until the trainer has logged ``steps`` losses (and saved a checkpoint, if asked)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, (run_dir.parent.parent / f"{run_dir.name}.out").read_text()[-3000:]
        log = run_dir / "logs/train.log"
        logged = log.is_file() and log.read_text(errors="replace").count("{'loss':") >= steps
        if logged and (not checkpoint or list((run_dir / "adapter").glob("checkpoint-*"))):
            return
        time.sleep(0.3)
    raise AssertionError("training did not get going")


def rerun(runs_dir: Path, run_id: str, model: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = start(runs_dir, run_id, model, data, *extra)
    proc.wait(timeout=1200)
    return proc


def assert_resumed_with_true_steps(run_dir: Path, first_status: str) -> None:
    record = read_manifest(run_dir)
    assert record["status"] == "succeeded", record["attempts"]
    first, last = record["attempts"][0], record["attempts"][-1]
    assert first["status"] == first_status and last["status"] == "succeeded"
    resumed_at = last["train_start"]["global_step"]
    assert resumed_at > 0 and last["resume_from"] == f"adapter/checkpoint-{resumed_at}"
    steps = [row["step"] for row in record["losses"]]
    assert steps == list(range(1, MAX_STEPS + 1)), record["losses"]  # every step once, by the trainer's global step
    assert {row["attempt"] for row in record["losses"] if row["step"] <= resumed_at} == {1}
    assert {row["attempt"] for row in record["losses"] if row["step"] > resumed_at} == {len(record["attempts"])}


@pytest.mark.parametrize(("target", "signum", "extra"), [
    pytest.param("process group", signal.SIGTERM, [], id="SIGTERM-process-group"),
    pytest.param("launcher", signal.SIGTERM, [], id="SIGTERM-launcher"),
    pytest.param("trainer group", signal.SIGUSR1, [], id="SIGUSR1-trainer"),
    pytest.param("launcher", signal.SIGUSR1, ["--cpu-procs", "2"], id="SIGUSR1-launcher-torchrun"),
])
def test_a_stop_signal_checkpoints_and_the_same_command_resumes(tiny_llama3, small_data, tmp_path, target, signum,
                                                                extra):
    runs_dir, run_id = tmp_path / "runs", "preempted"
    proc = start(runs_dir, run_id, tiny_llama3, small_data["sft"], *extra)
    run_dir = runs_dir / run_id
    wait_for_steps(run_dir, proc, 2)
    if target == "process group":
        os.killpg(proc.pid, signum)
    elif target == "launcher":
        os.kill(proc.pid, signum)
    else:
        os.killpg(json.loads((run_dir / ".lock").read_text())["trainer_pid"], signum)
    assert proc.wait(timeout=600) == 75
    record = read_manifest(run_dir)
    assert record["status"] == "preempted" and record["attempts"][0]["ended_at"]
    step = record["attempts"][0]["preempted"]["global_step"]
    assert 2 <= step < MAX_STEPS and (run_dir / f"adapter/checkpoint-{step}").is_dir()
    output = (tmp_path / f"{run_id}.out").read_text()
    assert "DataLoader worker" not in output
    assert extra or "Traceback" not in output  # torchrun itself prints one for the signal it passed on

    assert rerun(runs_dir, run_id, tiny_llama3, small_data["sft"], *extra).returncode == 0, \
        (tmp_path / f"{run_id}.out").read_text()[-3000:]
    assert_resumed_with_true_steps(run_dir, "preempted")


def test_two_starts_together_get_two_run_folders(tmp_path, small_data):
    """The issue's probe: two `launch sft` in the same second; the base model does not exist, so both stop early."""
    command = [sys.executable, "-m", "launch", "sft", str(SFT_RECIPE), "--runs-dir", str(tmp_path / "runs"),
               "--set", f"base_model={tmp_path}/no-such-model", "--set", f"datasets.0.path={small_data['sft']}"]
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert not any("FileExistsError" in out for out in outputs), outputs
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(read_manifest(f)["status"] == "failed" for f in folders)


def test_killed_run_is_recorded_lost_and_resumes(tiny_llama3, small_data, tmp_path):
    runs_dir, run_id = tmp_path / "runs", "killed"
    saves = ["--set", "save_strategy=steps", "--set", "save_steps=2"]
    proc = start(runs_dir, run_id, tiny_llama3, small_data["sft"], *saves)
    run_dir = runs_dir / run_id
    wait_for_steps(run_dir, proc, 3, checkpoint=True)
    trainer = json.loads((run_dir / ".lock").read_text())["trainer_pid"]
    os.killpg(proc.pid, signal.SIGKILL)  # the node is gone: launcher and trainer, without a word
    os.killpg(trainer, signal.SIGKILL)
    proc.wait()
    assert read_manifest(run_dir)["status"] == "running"
    for _ in range(100):  # the kernel drops the lock once the last of the trainer's processes is gone
        try:
            os.killpg(trainer, 0)
            time.sleep(0.1)
        except ProcessLookupError:
            break

    assert rerun(runs_dir, run_id, tiny_llama3, small_data["sft"], *saves).returncode == 0
    output = (tmp_path / f"{run_id}.out").read_text()
    assert "attempt 1 (host" in output and "recorded as lost" in output
    assert_resumed_with_true_steps(run_dir, "lost")


def test_dataloader_workers_are_forked_once_not_at_every_epoch(tmp_path):
    """A fork per epoch could hang a worker in CPython's after-fork code (launch/plugins/preempt.py)."""
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from launch.plugins.preempt import PreemptionPlugin

    for workers, persistent in ((2, True), (0, False)):
        trainer = SimpleNamespace(args=TrainingArguments(output_dir=str(tmp_path), dataloader_num_workers=workers,
                                                         use_cpu=True, report_to=[]))
        PreemptionPlugin().post_trainer_create(None, trainer)
        assert trainer.args.dataloader_persistent_workers is persistent  # persistent workers need workers
