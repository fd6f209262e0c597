"""A CUDA out-of-memory ends a run with one line and an "out of memory" record, never a traceback on the terminal.

The slow test injects torch's own error (tests/fault_injection.py) at step 3 of a real tiny SFT run through the
launcher, on a host whose nvidia-smi (a stand-in on PATH) names an H100. The others check the parts: torch's wording,
GPU names, the terminal filter, the plugin's note, a merge's log, and the allocator setting the trainers get.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from fault_injection import MESSAGE, PLUGIN, STEP_ENV
from helpers import SFT_RECIPE, launch, tiny_overrides

from common.rundir import read_manifest
from launch.lifecycle.config import stage_env
from launch.plugins import OOM_FILE, OOM_MARK
from launch.runner import out_of_memory
from launch.runner.stage import run_logged

H100 = "NVIDIA H100 80GB HBM3"


def fake_nvidia_smi(folder: Path) -> str:
    """A PATH whose ``nvidia-smi`` answers as an H100 host's does (``--query-gpu=name,memory.total,driver_version``)."""
    folder.mkdir()
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho '{H100}, 81559 MiB, 550.54.15'\n")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.slow
def test_out_of_memory_in_training_is_one_line_with_step_figures_and_suggestion(tiny_llama3, small_data, tmp_path):
    env = {**os.environ, "PATH": fake_nvidia_smi(tmp_path / "bin"), STEP_ENV: "3"}
    runs = tmp_path / "runs"
    args = [*tiny_overrides(tiny_llama3, small_data["sft"]), "--set", "max_steps=6", "--set", f"plugins=[{PLUGIN}]"]
    started = time.monotonic()
    result = launch("sft", SFT_RECIPE, runs, "--run-id", "oom", *args, env=env)
    output = result.stdout + result.stderr
    print(f"launch sft: {time.monotonic() - started:.0f} s")

    assert result.returncode != 0
    about = [line for line in output.splitlines() if "out of memory" in line.lower()]
    assert len(about) == 1, output[-3000:]
    assert "Traceback" not in output and "OutOfMemoryError" not in output and OOM_MARK not in output
    print(about[0])
    run_dir = runs / "oom"
    record = read_manifest(run_dir)
    found = record["error"]["out_of_memory"]
    assert about[0].startswith("run oom: out of memory in sft train at step 3 of 6: asked 2.00 GiB with 1.10 GiB "
                               f"free of 79.19 GiB on {H100}; h100-80gb")
    assert about[0].endswith(f"; log: {run_dir / 'logs/train.log'}") and found["suggestion"] in about[0]

    from launch.preflight.plan import suggestion

    assert found["suggestion"] == suggestion(record["config"], "h100-80gb")
    assert record["status"] == "out of memory" and record["attempts"][-1]["status"] == "out of memory"
    assert record["exit_code"] not in (0, None) and record["error"]["step"] == "train"
    assert {k: found[k] for k in ("step", "max_steps", "phase", "asked_gib", "free_gib", "total_gib", "gpu_kind")} == \
        {"step": 3, "max_steps": 6, "phase": "in step", "asked_gib": 2.0, "free_gib": 1.1, "total_gib": 79.19,
         "gpu_kind": "h100-80gb"}
    log = (run_dir / "logs/train.log").read_text()
    assert "Traceback" in log and MESSAGE in log  # the log keeps what the terminal leaves out
    assert record["environment"]["PYTORCH_ALLOC_CONF"] == "expandable_segments:True"

    again = launch("sft", SFT_RECIPE, runs, "--run-id", "oom", *args, env=env)  # as a failed run: not reopened
    assert again.returncode == 2 and "run oom already out of memory" in again.stderr


def test_torch_messages_give_the_gib_asked_free_and_total():
    assert out_of_memory.figures(MESSAGE) == {"asked_gib": 2.0, "free_gib": 1.1, "total_gib": 79.19, "device": 0}
    older = ("CUDA out of memory. Tried to allocate 570.00 MiB. GPU 1 has a total capacty of 79.25 GiB of which "
             "103.50 MiB is free. Including non-PyTorch memory, ...")  # torch before 2.2 misspelt capacity
    assert out_of_memory.figures(older) == {"asked_gib": 0.56, "free_gib": 0.1, "total_gib": 79.25, "device": 1}
    assert out_of_memory.figures("CUDA out of memory (something else)") == {}


@pytest.mark.parametrize(("name", "kind"), [
    (H100, "h100-80gb"), ("NVIDIA H200", "h200-141gb"), ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", None), ("Tesla T4", None), (None, None),
])
def test_gpu_names_map_to_the_planners_kinds(name, kind):
    assert out_of_memory.gpu_kind(name) == kind


def test_an_unknown_gpu_says_so_instead_of_a_suggestion():
    assert out_of_memory.plan_advice({}, "Tesla T4") == "no suggestion: launch plan knows no GPU like 'Tesla T4'"
    assert out_of_memory.plan_advice({}, None) == "no suggestion: no GPU name recorded"


def test_a_merge_out_of_memory_is_read_from_the_log(tmp_path):
    tail = ["Merging shard 3 of 30", f"torch.OutOfMemoryError: {MESSAGE}"]
    record = {"host": {"gpus": [f"{H100}, 81559 MiB, 550.54.15"]}}
    found = out_of_memory.report(tmp_path, "merge", tail, {}, record)
    line = out_of_memory.report_line("r", "dpo", "merge", found, tmp_path / "logs/merge.log")
    assert line.startswith("run r: out of memory in dpo merge: asked 2.00 GiB with 1.10 GiB free of 79.19 GiB "
                           f"on {H100}; launch plan plans training, not the merge")
    assert found["step"] is None and "CUDA_VISIBLE_DEVICES= python -m launch merge" in line
    assert out_of_memory.report(tmp_path, "merge", ["ValueError: no adapter"], {}, record) is None


def test_the_terminal_shows_nothing_after_the_out_of_memory_mark(tmp_path, capsys):
    """A step whose output reaches the terminal (``echo``, or --verbose) stops showing it at the mark."""
    script = f"print('step 2'); import sys; print({OOM_MARK!r}, file=sys.stderr); print('Traceback (most recent...')"
    code, tail = run_logged([sys.executable, "-c", script], tmp_path / "x.log", dict(os.environ), tmp_path, echo=True)
    assert code == 0 and tail == ["step 2", OOM_MARK, "Traceback (most recent..."]
    assert capsys.readouterr().out == "step 2\n"
    assert (tmp_path / "x.log").read_text().splitlines() == tail


def test_the_plugin_notes_the_step_then_leaves_the_traceback_to_python(tmp_path, monkeypatch):
    import torch

    from launch.plugins import oom

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
    monkeypatch.setattr(oom, "INSTALLED", [])
    monkeypatch.setattr(oom, "TRACKER", oom.StepTracker())
    oom.OutOfMemoryPlugin().register({"output_dir": str(tmp_path)})
    oom.OutOfMemoryPlugin().register({"output_dir": str(tmp_path / "elsewhere")})  # a second config load: one hook
    oom.TRACKER.on_step_begin(None, type("State", (), {"global_step": 4, "max_steps": 9})(), None)
    err = torch.cuda.OutOfMemoryError(MESSAGE)
    sys.excepthook(type(err), err, None)
    note = json.loads((tmp_path / OOM_FILE).read_text())
    assert note == {"step": 5, "max_steps": 9, "phase": "in step", "message": MESSAGE, "gpu": None, "rank": 0}
    assert seen == [err]  # the previous hook still prints it (to the log)


@pytest.mark.parametrize(("user", "expected"), [
    ({}, "expandable_segments:True"),
    ({"PYTORCH_ALLOC_CONF": "max_split_size_mb:512"}, "max_split_size_mb:512"),
    ({"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False"}, None),
])
def test_trainers_get_expandable_segments_unless_the_user_set_the_allocator(monkeypatch, user, expected):
    for name in ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF"):
        monkeypatch.delenv(name, raising=False)
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    env = stage_env({})
    assert env.get("PYTORCH_ALLOC_CONF") == expected
    assert env.get("PYTORCH_CUDA_ALLOC_CONF") == user.get("PYTORCH_CUDA_ALLOC_CONF")
