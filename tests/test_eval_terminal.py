"""What ``make eval`` shows: a header, one progress line per step, the summary; lm-eval's own output in the log.

The real ``make eval`` runs (the repository's Makefile, from a folder holding one run: ``python -m eval all``, the
scores, the generation check and the report), its output piped (not a terminal), on a run folder holding the tiny
model and no prepared benchmarks: the pipeline check on the bundled fixtures, as on a fresh clone. make's own
set-up targets (the virtual environment, the prepared benchmarks) are taken as done (``make -o``).
``common.capture`` itself runs in a small script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT, read_jsonl

from eval.benchmarks import TASKS

MOST_LINES = 40


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from ``cwd`` with the repository importable, output piped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(cwd / ".hf-datasets")}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def shown(done: subprocess.CompletedProcess) -> list[str]:
    """Every line a command wrote, stdout then stderr."""
    return done.stdout.splitlines() + done.stderr.splitlines()


def finished_run(tmp: Path, model: Path) -> Path:
    """A finished SFT run folder as the launcher leaves it (manifest + merged/), the tiny model as its merged model."""
    run = tmp / "runs" / "20260101-000000-sft-tiny"
    shutil.copytree(model, run / "merged")
    (run / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "succeeded",
                                                   "ended_at": "2026-01-01T00:10:00+00:00"}))
    return run


def run_make(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The repository's ``make ARGS`` from ``cwd``, this Python as its ``PY``, the set-up stamps taken as made."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": str(cwd / ".hf-datasets")}
    command = ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-o", ".venv/.installed",
               "-o", "data/benchmarks/.prepared", f"PY={sys.executable}",
               f"PUBLISHED_EVAL={ROOT / 'data/published/eval'}", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def make_eval(tiny_llama3, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The real ``make eval`` on the default (latest) run: (run folder, what it printed)."""
    tmp = tmp_path_factory.mktemp("make-eval")
    run = finished_run(tmp, tiny_llama3)
    done = run_make("eval", cwd=tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run, done


@pytest.mark.slow
def test_make_eval_prints_at_most_40_lines_and_ends_with_the_summary(make_eval):
    run, done = make_eval
    lines = shown(done)
    assert len(lines) <= MOST_LINES, "\n".join(lines)
    assert "\r" not in done.stdout + done.stderr
    out = done.stdout.splitlines()
    assert ["next", "python", "-m", "eval", "report", f"runs/{run.name}", "(the", "table", "beside", "the", "model",
            "card)"] in [line.split() for line in out]  # the scores' footer
    assert any(line.startswith("generation check done in ") for line in out)  # the generation check
    assert out[-1].startswith(f"report: runs/{run.name}/eval/report.md and ")  # the report, last
    assert not any(".partial-" in line for line in lines)  # the folders as they are once renamed in
    for name in ("report.md", "results.json", "generation_check.json"):
        assert (run / "eval" / name).is_file(), name
    results = json.loads((run / "eval/results.json").read_text())
    assert results["generation_check"]["overall"]["answers"] > 0
    assert json.loads((run / "manifest.json").read_text())["eval"]["steps"] == ["scores", "generation check",
                                                                                 "report"]
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == [".lock"]  # no stage left behind


@pytest.mark.slow
def test_the_header_names_the_run_each_benchmark_with_its_rows_and_the_pipeline_check(make_eval):
    run, done = make_eval
    out = done.stdout
    assert "PIPELINE CHECK, NOT A BENCHMARK" in out.splitlines()[1]  # the banner, first
    header = out[out.index("eval of "):out.index("  results ")]
    assert header.startswith(f"eval of runs/{run.name}/ (its merged model)")
    for name in TASKS:
        assert f"{name} {len(read_jsonl(run / 'eval/benchmarks' / f'{name}.jsonl'))}" in header, name
    assert "a PIPELINE CHECK" in header and "hf on cpu, zero-shot, batch size 8" in header


@pytest.mark.slow
def test_one_progress_line_per_step_counts_every_request_lm_eval_answered(make_eval):
    run, done = make_eval
    requests = sum(len(sample["resps"]) for name in TASKS for sample in read_jsonl(run / f"eval/samples/{name}.jsonl"))
    steps = [line for line in done.stderr.splitlines() if line.startswith(("load model and data: ", "evaluate: "))]
    assert steps[0].startswith("load model and data: ") and steps[0].endswith(", done")
    assert steps[-1].startswith(f"evaluate: {requests}/{requests} requests, ") and steps[-1].endswith(", done")


@pytest.mark.slow
def test_lm_evals_own_output_goes_to_the_runs_log_not_the_terminal(make_eval):
    run, done = make_eval
    log = (run / "logs/eval.log").read_text(encoding="utf-8")
    for text in ("Running loglikelihood requests", "Generating test split", "num_fewshot"):
        assert text in log, text
        assert text not in done.stdout + done.stderr, text
    assert f"runs/{run.name}/logs/eval.log" in done.stdout
    summary = json.loads((run / "eval/results.json").read_text())["summary"]
    for name, row in summary["tasks"].items():  # the accuracy table is still on the terminal
        assert f"  {name:<28} acc {row['acc']:.4f} " in done.stdout


@pytest.mark.slow
def test_a_model_folder_without_weights_fails_in_one_line_with_the_log(tiny_llama3, tmp_path):
    model = tmp_path / "no-weights"
    shutil.copytree(tiny_llama3, model, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    done = run_cli("eval", "run", "--model", str(model), "--out", "out", "--tasks", "pubmedqa", "--limit", "2",
                   cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stderr.splitlines() if line.startswith("eval run failed: ")]
    assert len(failed) == 1 and str(model) in failed[0], done.stderr
    assert "load model and data: " in done.stderr and ", stopped" in done.stderr
    assert done.stderr.splitlines()[-1] == f"  traceback and everything else: {tmp_path / 'out/logs/eval.log'}"
    assert "Traceback" not in done.stdout + done.stderr
    assert "Traceback (most recent call last)" in (tmp_path / "out/logs/eval.log").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_corrupt_benchmark_file_fails_with_the_logs_last_lines_and_verbose_shows_the_library(tiny_llama3,
                                                                                               tmp_path):
    benchmarks = tmp_path / "benchmarks"
    benchmarks.mkdir()
    (benchmarks / "pubmedqa.jsonl").write_text('{"id": "1", "question": "cut here\n')
    done = run_cli("eval", "run", "--model", str(tiny_llama3), "--benchmarks", str(benchmarks), "--out", "out",
                   "--verbose", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = done.stderr.splitlines()
    cause = next(i for i, line in enumerate(errors) if line.startswith("eval run failed: "))
    assert errors[cause + 1] == f"  last lines of {tmp_path / 'out/logs/eval.log'}:"
    tail = errors[cause + 2:-1]
    assert tail and any(str(benchmarks / "pubmedqa.jsonl") in line for line in tail), errors
    assert not any("%|" in line or "examples/s]" in line for line in tail)
    assert any(line.startswith("load model and data: ") and line.endswith(", stopped") for line in errors)
    assert "Generating test split" in "\n".join(errors[:cause])  # --verbose: the library's output here too
    assert "Traceback" not in done.stdout + done.stderr


CAPTURE_SCRIPT = textwrap.dedent("""
    import logging, os, subprocess, sys
    from pathlib import Path
    from common.capture import output_to_log

    with output_to_log(Path(sys.argv[1]), "demo", tee="--tee" in sys.argv, title="demo") as terminal:
        print("python print", os.environ["DEMO_API_KEY"], flush=True)
        logging.getLogger("library").warning("library warning")
        os.write(2, b"raw fd 2 write\\n")
        subprocess.run(["echo", "child process", os.environ["DEMO_API_KEY"]], check=True)
        sys.stderr.write("step:  50%|#####     | 1/2 [00:00<00:00, 3.21it/s]\\r")
        print("our own line", file=terminal)
        if "--fail" in sys.argv:
            raise ValueError("no such thing\\nsecond line")
    print("after the block")
""")
SECRET = "sk-demo-0123456789"


def run_capture(tmp_path: Path, *flags: str) -> tuple[subprocess.CompletedProcess, str]:
    script = tmp_path / "capture_demo.py"
    script.write_text(CAPTURE_SCRIPT)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "logs/demo.log"), *flags], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(ROOT), "DEMO_API_KEY": SECRET},
                          capture_output=True, text=True, timeout=60)
    return done, (tmp_path / "logs/demo.log").read_text(encoding="utf-8")


def test_capture_sends_python_c_and_child_output_to_the_log_with_secrets_redacted(tmp_path):
    done, log = run_capture(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "after the block\n" and done.stderr == "our own line\n"
    for text in ("python print <redacted>", "library warning", "raw fd 2 write", "child process <redacted>",
                 "1/2 [00:00<00:00, 3.21it/s]"):
        assert text in log, text
    assert SECRET not in log


def test_tee_shows_the_captured_output_on_the_terminal_too(tmp_path):
    done, log = run_capture(tmp_path, "--tee")
    assert done.returncode == 0 and "child process <redacted>" in done.stderr and SECRET not in done.stderr
    assert "child process <redacted>" in log


def test_a_failure_in_the_block_is_one_line_then_the_logs_last_lines_and_the_traceback_stays_in_the_log(tmp_path):
    done, log = run_capture(tmp_path, "--fail")
    assert done.returncode == 1 and "after the block" not in done.stdout
    lines = done.stderr.splitlines()
    assert lines[:3] == ["our own line", "demo failed: ValueError: no such thing second line",
                         f"  last lines of {tmp_path / 'logs/demo.log'}:"]
    assert lines[3:-1] == ["    python print <redacted>", "    library warning", "    raw fd 2 write",
                           "    child process <redacted>"]  # not the progress bar
    assert lines[-1] == f"  traceback and everything else: {tmp_path / 'logs/demo.log'}"
    assert "Traceback (most recent call last)" in log and "ValueError: no such thing" in log
