"""eval and release write into a run only under its lock, replace their results whole, and refuse a tampered run.

The runs are test_release_build.py's: the tiny Llama-3 fixture copied into ``runs/<id>/merged`` beside manifests
as the launcher writes them (with the sha256 of every file in merged/, ``output_sha256``). The lock is a real
``flock`` held by another process; the commands are the real ones (``python -m release build`` in a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, refused_in_one_line
from test_release_build import make_runs, merged  # noqa: F401  (merged: the rigged tiny model, a fixture)

from common.rundir import LOCK_FILE, RunWriter, hash_folder, verify_outputs
from release import build as build_module
from release.__main__ import main as release_main
from release.build import build_release

HOLDER = """import sys, time
from pathlib import Path
from common.rundir import RunLock
lock = RunLock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
"""


def tree(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` (folders too), each file's sha256; the lock file's holder note aside (every
    process that takes the lock writes its own pid there)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_dir():
            found[name + "/"] = "dir"
        elif path.name != LOCK_FILE:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[name] = "lock"
    return found


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def run(merged, tmp_path) -> Path:  # noqa: F811
    run = make_runs(tmp_path, merged, None)
    (run / LOCK_FILE).touch()  # as the launcher leaves it
    return run


def test_one_bit_flipped_in_merged_is_refused_by_release_build_naming_the_file(run, tmp_path, capsys):
    flip_a_bit(run / "merged" / "model.safetensors")
    before = tree(run)
    err = refused_in_one_line(release_main, capsys, "build", str(run), "--out", str(tmp_path / "releases"),
                              "--quant", "none")
    assert f"{run / 'merged' / 'model.safetensors'}: sha256" in err and "manifest" in err, err
    assert tree(run) == before and not (ROOT / "releases" / run.name).exists()


def test_eval_run_and_publish_refuse_a_tampered_run_too(run, tmp_path, capsys):
    from eval.__main__ import main as eval_main

    release = build_release(run, out=tmp_path / "releases")
    (run / "merged" / "extra.safetensors").write_bytes(b"x")
    err = refused_in_one_line(eval_main, capsys, "run", "--model", str(run))
    assert f"{run / 'merged' / 'extra.safetensors'}: not in run" in err, err
    err = refused_in_one_line(eval_main, capsys, "all", "--model", str(run))
    assert "extra.safetensors: not in run" in err, err
    (run / "merged" / "extra.safetensors").unlink()
    (run / "merged" / "config.json").unlink()
    err = refused_in_one_line(release_main, capsys, "publish", str(release), "--repo", "org/tiny", "--dry-run")
    assert f"{run / 'merged' / 'config.json'}: missing" in err, err
    assert not (run / "eval").exists()


def test_a_run_made_before_hashes_is_built_with_a_note(merged, tmp_path, capsys):  # noqa: F811
    run = make_runs(tmp_path, merged, None, hashes=False)
    assert verify_outputs(run) == {}
    assert "predates recorded file hashes: merged/ not checked" in capsys.readouterr().err
    assert (build_release(run, out=tmp_path / "releases") / "release.json").is_file()


def test_a_failed_build_leaves_the_run_folder_exactly_as_it_was(run, tmp_path, monkeypatch):
    (run / "eval").mkdir()
    (run / "eval" / "gguf" / "Q8_0").mkdir(parents=True)
    (run / "eval" / "gguf" / "Q8_0" / "results.json").write_text("{}")  # a previous build's scores
    before = tree(run)

    def halfway(stage_dir, run_stage, *args, **kwargs):
        """What write_gguf writes into the run (a type's answers and scores, the tools' log), then a failure."""
        (run_stage / "Q4_K_M").mkdir()
        (run_stage / "Q4_K_M" / "results.json").write_text("{}")
        (run_stage / "Q8_0").mkdir()
        (run_stage / "gguf.log").write_text("llama-quantize: out of disk\n")
        raise RuntimeError("llama-quantize failed")

    monkeypatch.setattr(build_module, "write_gguf", lambda stage_dir, r, n, q, e, t, run_stage: halfway(
        stage_dir, run_stage))
    with pytest.raises(RuntimeError, match="llama-quantize failed"):
        build_release(run, out=tmp_path / "releases", quants=["Q8_0", "Q4_K_M"])
    assert tree(run) == before
    assert not list((tmp_path / "releases").iterdir())

    def whole(stage_dir, r, n, q, e, t, run_stage):
        (run_stage / "Q4_K_M").mkdir()
        (run_stage / "Q4_K_M" / "generation_check.json").write_text("{}")
        (run_stage / "gguf.log").write_text("done\n")
        return []

    monkeypatch.setattr(build_module, "write_gguf", whole)
    build_release(run, out=tmp_path / "releases", quants=["Q4_K_M"])
    assert (run / "eval" / "gguf" / "Q4_K_M" / "generation_check.json").is_file()
    assert (run / "eval" / "gguf" / "Q8_0" / "results.json").is_file()  # the other type's scores kept
    assert [r["name"] for r in json.loads((run / "manifest.json").read_text())["releases"]] == [run.name]
    assert not [p for p in run.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_make_release_of_a_run_another_process_holds_is_one_line_exit_1_and_changes_nothing(run, tmp_path):
    script = tmp_path / "hold_the_run.py"
    script.write_text(HOLDER)
    holder = subprocess.Popen([sys.executable, str(script), str(run)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree(run)
        # the user's command; -o: the venv and llama.cpp's tools taken as made (a fresh machine would build them)
        result = subprocess.run(["make", "-s", "-o", ".venv/.installed", "-o", "gguf-tools", "release",
                                 f"RUN={run}", "QUANT=none"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    err = "\n".join(line for line in result.stderr.strip().splitlines() if not line.startswith("make"))
    assert result.returncode != 0 and "release] Error 1" in result.stderr, result.stderr  # the command's exit 1
    assert len(err.splitlines()) == 1 and "Traceback" not in err, result.stderr
    assert f"run {run.name} is in use by pid {holder.pid} on host {platform.node()}" in err, err
    assert f"hold_the_run.py {run}" in err, err  # the holder's command, as its lock records it
    assert tree(run) == before and not (ROOT / "releases" / run.name).exists()


def test_a_writer_waits_for_nobody_and_a_launcher_can_hand_its_lock_down(run, monkeypatch):
    with RunWriter.open(run) as writer:
        with pytest.raises(SystemExit, match="is in use by pid"):
            RunWriter.open(run)
        monkeypatch.setenv("LAUNCH_RUN_LOCK", str(run))  # as `launch eval` starts `eval all`
        with RunWriter.open(run) as child:
            assert child.lock is None
        with pytest.raises(SystemExit):
            RunWriter.open(run.parent)  # not the run handed down
        assert writer.lock is not None


def test_launch_eval_and_the_chains_eval_job_run_what_make_eval_runs(tmp_path):
    from launch.lifecycle.topology import Topology
    from launch.runner.followup import command_for
    from launch.submit.submission import Submission, job_command

    make = subprocess.run(["make", "--no-print-directory", "-n", "-f", str(ROOT / "Makefile"), "-o",
                           ".venv/.installed", "-o", "data/benchmarks/.prepared", "eval", "RUN=runs/x", "PY=python",
                           f"PUBLISHED_EVAL={ROOT / 'data/published/eval'}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert make.stdout.split() == ["python", "-m", "eval", "all", "--model", "runs/x"], make.stdout
    assert command_for("eval", Path("runs/x"))[1:] == ["-m", "eval", "all", "--model", "runs/x"]
    job = job_command(Submission("eval", Path("runs/x"), Path("c.yaml")), Topology(), None)
    assert job == ["python", "-m", "launch", "eval", "runs/x"]  # the chain's eval step: launch eval, above


@pytest.mark.slow
def test_launch_eval_runs_scores_generation_check_and_report_under_the_lock_it_holds(tiny_llama3, tmp_path):
    run = tmp_path / "runs" / "20260101-000000-sft-tiny"
    shutil.copytree(tiny_llama3, run / "merged")
    (run / "manifest.json").write_text(json.dumps({
        "run_id": run.name, "stage": "sft", "status": "succeeded", "ended_at": "2026-01-01T00:10:00+00:00",
        "output_sha256": {"merged": hash_folder(run / "merged")}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(tmp_path / ".hf-datasets")}
    done = subprocess.run([sys.executable, "-m", "launch", "eval", str(run)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("results.json", "generation_check.json", "report.md"):
        assert (run / "eval" / name).is_file(), name
    record = json.loads((run / "manifest.json").read_text())
    assert record["eval"]["steps"] == ["scores", "generation check", "report"]  # eval all's, kept by the launcher
    assert [(f["stage"], f["status"]) for f in record["followups"]] == [("eval", "succeeded")]
