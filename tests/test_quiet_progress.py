"""Our commands print their own output first: known third-party noise filtered, progress on our long steps."""

from __future__ import annotations

import logging
import os
import pty
import select
import subprocess
import sys

from helpers import ROOT

from common import progress, quiet

MIXTURE = ROOT / "data_prep/mixtures/default-v1.yaml"
NOISE = ("Failed to load", "_pytree", "clean_up_tokenization")


def test_known_noise_is_filtered_by_message_and_other_warnings_still_show(caplog):
    quiet.install(verbose=False)
    torchao = logging.getLogger("torchao")
    with caplog.at_level(logging.WARNING):
        torchao.warning("Failed to load /venv/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: no such library")
        logging.getLogger("torch.utils._pytree").warning(
            "%s is an Enum subclass and is now natively supported by torch.compile", "<enum 'KernelPreference'>")
        torchao.warning("torchao: something else went wrong")
    assert [r.getMessage() for r in caplog.records] == ["torchao: something else went wrong"]
    assert quiet.is_noise("W1127 13:57:14 _pytree.py:630] <enum 'X'> is an Enum subclass and is now natively "
                          "supported by torch.compile as an opaque value type.\n")
    assert not quiet.is_noise("{'loss': 1.23, 'epoch': 0.5}\n")


def test_launch_check_prints_no_import_noise():
    done = subprocess.run([sys.executable, "-m", "launch", "check", "recipes/smollm2-135m/v1/sft.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert [line for line in output.splitlines() if any(noise in line for noise in NOISE)] == []
    assert output.splitlines()[0].startswith("recipes/smollm2-135m/v1/sft.yaml: ok")


def test_progress_off_a_terminal_is_one_summary_line_per_step(capsys, monkeypatch):
    monkeypatch.setattr(progress, "SHOW", True)
    tracked = progress.track(range(250), "sft: dedup")
    assert len(tracked) == 250 and sum(tracked) == sum(range(250))
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("sft: dedup: 250 rows in ") and line.endswith(" rows/s)")

    monkeypatch.setattr(progress, "SHOW", False)  # --quiet
    assert list(progress.track(iter("abc"), "quiet step")) == ["a", "b", "c"]
    assert capsys.readouterr().err == ""


def run_in_pty(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as its stdout and stderr; its exit code and everything it wrote."""
    main, child = pty.openpty()
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=child, stderr=child,
                            env={**os.environ, "COLUMNS": "160"})
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(main)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


def test_build_on_a_terminal_shows_progress_bars_with_a_rate(tmp_path, tiny_llama3):
    code, output = run_in_pty([sys.executable, "-m", "data_prep", "build", str(MIXTURE), "--out", str(tmp_path),
                               "--tokenizer", str(tiny_llama3)])
    assert code == 0, output[-3000:]
    for step in (f"{kind}: convert, dedup, decontaminate, token lengths" for kind in ("sft", "dpo")):
        bars = [line for line in output.replace("\r", "\n").splitlines() if line.startswith(step)]
        assert bars and "100%|" in bars[-1] and " rows/s]" in bars[-1], (step, bars[-1:])


def test_build_off_a_terminal_prints_a_summary_per_step_and_nothing_with_quiet(tmp_path, tiny_llama3):
    command = [sys.executable, "-m", "data_prep", "build", str(MIXTURE), "--tokenizer", str(tiny_llama3)]
    done = subprocess.run([*command, "--out", str(tmp_path / "a")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summaries = [line.split(":")[0] + ":" + line.split(":")[1] for line in done.stderr.splitlines()
                 if line.endswith(" rows/s)")]
    assert {"sft: convert, dedup, decontaminate, token lengths", "dpo: convert, dedup, decontaminate, token lengths"
            } <= set(summaries)
    silent = subprocess.run([*command, "--out", str(tmp_path / "b"), "--quiet"], cwd=ROOT, capture_output=True,
                            text=True)
    assert silent.returncode == 0 and "rows/s" not in silent.stderr, silent.stderr
    assert (tmp_path / "b/sft.jsonl").read_bytes() == (tmp_path / "a/sft.jsonl").read_bytes()
