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


# What an Axolotl train step prints through a pipe (shortened from a real logs/train.log).
TRAIN_OUTPUT = """[2026-12-04 19:50:36,970] [INFO] [axolotl.cli.config] config:
Tokenizing Prompts (num_proc=2):  51%|█████     | 43/85 [00:00<00:00, 144.44 examples/s]
Loading weights:   7%|▋         | 18/272 [00:00<00:01, 173.01it/s]
[2026-12-04 19:50:43,557] [INFO] [axolotl.train] Starting trainer...
  0%|          | 0/4 [00:00<?, ?it/s]
 25%|██▌       | 1/4 [00:21<03:56, 21.49s/it]
{'loss': '3.127', 'grad_norm': '0.8261', 'tokens/train_per_sec_per_gpu': '45.5', 'epoch': '0.04545'}
 50%|█████     | 2/4 [00:28<02:12, 13.22s/it]
{'loss': '3.254', 'grad_norm': '0.9933', 'tokens/train_per_sec_per_gpu': '23.28', 'epoch': '0.09'}
  0%|          | 0/2 [00:00<?, ?it/s]
{'eval_loss': '3.001', 'epoch': '0.09'}
 75%|███████▌  | 3/4 [00:36<01:34, 10.46s/it]
100%|██████████| 4/4 [00:47<00:00, 10.96s/it]
{'loss': '2.725', 'grad_norm': '0.7599', 'tokens/train_per_sec_per_gpu': '37.89', 'epoch': '0.18'}
{'train_runtime': '47.4', 'train_loss': '3.0', 'epoch': '0.18'}
"""


def test_a_train_steps_output_becomes_two_progress_lines_with_the_loss(capsys, monkeypatch):
    from launch.runner.terminal import Watch

    monkeypatch.setattr(progress, "SHOW", True)
    watch = Watch("train")
    for line in TRAIN_OUTPUT.splitlines(keepends=True):
        watch.feed(line)
    watch.close("done")
    shown = capsys.readouterr().err
    assert "\r" not in shown and "[INFO]" not in shown
    lines = shown.splitlines()
    assert lines[0].startswith("prepare: ") and lines[0].endswith("done")  # closed when the trainer started
    assert lines[1].startswith("train: 1/4 steps")  # the first position; the eval bar (0/2) is not training's
    assert lines[-1].startswith("train: 4/4 steps, loss 2.725, tok/s 37.89, eval loss 3.001, ") and \
        lines[-1].endswith("done")
    assert len(lines) == 3  # plain lines come every 30 s, and this all took less


def test_a_step_line_on_a_terminal_updates_in_place_and_off_one_only_closes_with_quiet(capsys, monkeypatch):
    class Terminal:
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    monkeypatch.setattr(progress, "SHOW", True)
    screen = Terminal()
    line = progress.StepLine("train", total=3, stream=screen)
    for n in (1, 2, 3):
        line.update(n, loss=f"{3 - n / 10:.2f}")
    line.close("done")
    assert "\r" in screen.text and "3/3" in screen.text and "loss 2.70, done" in screen.text  # tqdm, in place
    code, output = run_in_pty([sys.executable, "-c", "from common.progress import StepLine\n"
                               "line = StepLine('train')\nline.update(now='loading')\nline.update(1, total=3)\n"
                               "line.update(3, loss='2.70')\nline.close('done')"])
    assert code == 0 and "\r" in output and "train: 100%|" in output and "| 3/3 [" in output, output  # a real pty
    monkeypatch.setattr(progress, "SHOW", False)  # --quiet: only the closing line
    with progress.StepLine("merge") as quiet_line:
        quiet_line.update(now="loading")
    assert capsys.readouterr().err.splitlines() == ["merge: now loading, 0:00 elapsed"]
