"""One CLI convention (common/errors.py's ``cli_main``) for launch, eval, data_prep and release: bad input is one line
and exit 2, a failure of the world one line and exit 1, ``--debug`` shows the traceback, ``--quiet`` is taken by
every command, and a refused combination of flags writes nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SFT_RECIPE

from common.errors import InputError, StepFailed, WorldError, cli_main, note_log


def cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line(done: subprocess.CompletedProcess, code: int) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_launch_check_of_a_missing_recipe_is_bad_input_and_takes_debug(tmp_path):
    assert "recipe not found: /nonexistent.yaml" in one_line(cli("launch", "check", "/nonexistent.yaml"), 2)
    debug = cli("launch", "check", "/nonexistent.yaml", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == "error: recipe not found: /nonexistent.yaml"


def test_nodes_without_slurm_is_refused_before_a_run_folder_is_made(tmp_path):
    line = one_line(cli("launch", "sft", str(SFT_RECIPE), "--nodes", "2", "--runs-dir", str(tmp_path / "runs")), 2)
    assert "--nodes 2: multi-node runs start through SLURM; add --slurm CLUSTER.yaml" in line
    assert not (tmp_path / "runs").exists()
    line = one_line(cli("launch", "sft", str(SFT_RECIPE), "--after", "123", "--runs-dir", str(tmp_path / "runs")), 2)
    assert "--after: only with --slurm" in line and not (tmp_path / "runs").exists()


def test_inside_a_slurm_job_nodes_is_not_refused(tmp_path, monkeypatch):
    """The job a submission made runs ``python -m launch sft ... --nodes N`` without --slurm (submission.py)."""
    from launch.cli import parser, refuse_flags

    args = parser().parse_args(["sft", str(SFT_RECIPE), "--nodes", "2"])
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    refuse_flags(args)
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(InputError, match="--nodes 2"):
        refuse_flags(args)


@pytest.mark.parametrize("argv", [
    ["launch", "sft", str(SFT_RECIPE), "--no-such-flag"],
    ["launch", "plan", str(SFT_RECIPE), "--gpus", "0", "--gpu", "H100"],
    ["launch", "chain", "--nodes", "x"],
    ["eval", "run", "--batch-size", "0"],
    ["data_prep", "convert"],
    ["release", "generate"],
    ["release", "publish", "x"],
], ids=lambda argv: "-".join(argv[:2]))
def test_a_usage_error_is_one_line_exit_2_naming_the_help(argv):
    assert "--help shows the usage" in one_line(cli(*argv), 2)


def test_release_takes_quiet_and_debug(tmp_path):
    line = one_line(cli("release", "build", str(tmp_path / "nothing"), "--quiet"), 2)
    assert "not a run folder" in line and "--quiet" not in line
    debug = cli("release", "build", str(tmp_path / "nothing"), "--quiet", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_an_unknown_command_is_exit_2():
    for package in ("eval", "release"):
        done = cli(package, "no-such-command")
        assert done.returncode == 2 and "Traceback" not in done.stderr


def failing(err: BaseException):
    def run(argv: list[str]) -> None:
        raise err
    return run


@pytest.mark.parametrize(("err", "code", "expected"), [
    (InputError("x.yaml: bad key"), 2, "error: x.yaml: bad key"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope"), 2, "/nope: No such file or directory"),
    (OSError(errno.ENOSPC, "No space left on device", "/full"), 1, "/full: No space left on device"),
    (WorldError("the hub could not be reached"), 1, "error: the hub could not be reached"),
    (ValueError("a bug\nover two lines"), 1, "error: unexpected error: ValueError: a bug over two lines"),
])
def test_every_error_ends_in_one_line_with_its_exit_code(err, code, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OPENBIOLLM_CACHE", str(tmp_path))  # a bug's traceback is kept there
    with pytest.raises(SystemExit) as end:
        cli_main(failing(err), [])
    assert end.value.code == code
    err_text = capsys.readouterr().err
    assert len(err_text.strip().splitlines()) == 1 and expected in err_text and "Traceback" not in err_text
    with pytest.raises(SystemExit) as end:
        cli_main(failing(err), ["--debug"])
    assert end.value.code == code and "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_names_the_log_that_keeps_its_traceback(tmp_path, capsys):
    log = tmp_path / "run.log"

    def run(argv: list[str]) -> None:
        note_log(log)
        raise KeyError("surprise")

    with pytest.raises(SystemExit) as end:
        cli_main(run, [])
    line = capsys.readouterr().err.strip()
    assert end.value.code == 1 and "\n" not in line and f"traceback in {log}" in line
    assert "Traceback" in log.read_text() and "KeyError: 'surprise'" in log.read_text()


def test_a_command_without_a_log_keeps_the_traceback_in_the_cache_with_secrets_redacted(tmp_path, capsys,
                                                                                          monkeypatch):
    monkeypatch.setenv("OPENBIOLLM_CACHE", str(tmp_path))
    token = "hf_" + "Q" * 30
    monkeypatch.setenv("HF_TOKEN", token)

    def run(argv: list[str]) -> None:
        raise RuntimeError(f"token {token} went astray")

    monkeypatch.setattr(sys, "argv", ["release", "publish", "--token", token])  # the command line is kept too
    with pytest.raises(SystemExit) as end:
        cli_main(run, [])
    line = capsys.readouterr().err.strip()
    kept = list((tmp_path / "errors").glob("*.log"))
    assert end.value.code == 1 and "\n" not in line and len(kept) == 1 and f"traceback in {kept[0]}" in line
    text = kept[0].read_text()
    assert "Traceback" in text and "RuntimeError: token <redacted> went astray" in text and token not in text
    assert text.startswith("release publish --token <redacted>\n")


def test_a_bug_in_a_fresh_process_is_one_line_naming_the_file_that_keeps_its_traceback(tmp_path):
    """The whole path in a process of its own, as a command's bug reaches a user: stderr holds one line."""
    program = "from common.errors import cli_main\ncli_main(lambda argv: 1 / 0, [])\n"
    env = {**os.environ, "OPENBIOLLM_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    line = one_line(done, 1)
    kept = list((tmp_path / "errors").glob("*.log"))
    assert len(kept) == 1 and f"traceback in {kept[0]}" in line and "ZeroDivisionError" in line
    assert "ZeroDivisionError: division by zero" in kept[0].read_text()


def test_quiet_and_verbose_are_taken_off_the_command_line(capsys):
    from common import progress

    seen = []
    cli_main(seen.append, ["a", "--quiet", "b", "--verbose"])
    assert seen == [["a", "b"]] and progress.SHOW is False
    cli_main(seen.append, ["c"])
    assert progress.SHOW is True


def test_a_network_clients_error_is_the_worlds_and_a_failed_step_keeps_its_own_lines(capsys):
    connect_error = type("ConnectError", (Exception,), {"__module__": "httpx"})  # as httpx names its own
    with pytest.raises(SystemExit) as end:
        cli_main(failing(connect_error("[Errno -2] Name or service not known")), [])
    line = capsys.readouterr().err.strip()
    assert end.value.code == 1 and line.startswith("error: ConnectError: [Errno -2]") and "unexpected" not in line
    with pytest.raises(SystemExit) as end:
        cli_main(failing(StepFailed("run r: train failed: ValueError: x\n  log: runs/r/logs/train.log")), [])
    assert end.value.code == 1
    assert capsys.readouterr().err == "run r: train failed: ValueError: x\n  log: runs/r/logs/train.log\n"


def test_a_command_inside_another_entry_is_handled_by_that_entry_once(capsys):
    def inner(argv: list[str]) -> None:
        raise InputError(f"inner {argv}")

    with pytest.raises(SystemExit) as end:
        cli_main(lambda argv: cli_main(inner, argv), ["x", "--debug"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and "Traceback" in err and err.strip().endswith("error: inner ['x']")
