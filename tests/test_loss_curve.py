"""A run's loss curve (launch/runner/loss_curve.py): what it plots from the run's records, the png it writes, the rows
the preemption plugin logs for it, and the stage step and command that draw it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import read_jsonl, write_jsonl
from PIL import Image

from common.errors import cli_main
from launch.lifecycle.run import Run
from launch.lifecycle.train_record import summarize_training
from launch.plugins import EVAL_LOSSES_FILE, LOSSES_FILE, MARGINS
from launch.runner import loss_curve, stage
from launch.runner.loss_curve import curve_series, write_loss_curve


def loss(step: int, attempt: int) -> float:
    return round(3.0 - 0.2 * step + 0.05 * attempt, 4)  # each attempt's value at a step differs


def margin(step: int, attempt: int) -> float:
    return round(0.1 * step + 0.01 * attempt, 4)


def train_rows(dpo: bool) -> list[dict]:
    """As the plugin appends them: attempt 1 logs steps 1-5, is preempted after checkpoint-3; attempt 2 logs 4-8."""
    spans = [(1, range(1, 6)), (2, range(4, 9))]
    return [{"step": s, "loss": loss(s, a), "epoch": s / 8, "attempt": a} | ({MARGINS: margin(s, a)} if dpo else {})
            for a, steps in spans for s in steps]


def eval_rows(dpo: bool) -> list[dict]:
    return [{"step": s, "eval_loss": loss(s, a) + 0.3, "epoch": s / 8, "attempt": a}
            | ({f"eval_{MARGINS}": margin(s, a)} if dpo else {}) for a, s in [(1, 4), (2, 4), (2, 8)]]


def adapter(run_dir: Path) -> Path:
    """The run's output folder, where the plugin writes its rows."""
    (run_dir / "adapter").mkdir()
    return run_dir / "adapter"


def record(dpo: bool = True, train_start: bool = True) -> dict:
    start = {"global_step": 3, "max_steps": 8} if train_start else None
    return {"run_id": "test-run", "stage": "dpo" if dpo else "sft", "losses": train_rows(dpo),
            "eval_losses": eval_rows(dpo), "attempts": [{"attempt": 1, "train_start": {"global_step": 0}},
                                                     {"attempt": 2, "train_start": start}]}


def test_the_series_split_by_attempt_with_the_last_attempt_winning_each_step():
    series = curve_series(record())
    assert series["train"] == {1: [(s, loss(s, 1)) for s in (1, 2, 3)], 2: [(s, loss(s, 2)) for s in range(4, 9)]}
    assert series["margins"] == {1: [(s, margin(s, 1)) for s in (1, 2, 3)],
                                 2: [(s, margin(s, 2)) for s in range(4, 9)]}
    assert series["eval"] == {2: [(4, loss(4, 2) + 0.3), (8, loss(8, 2) + 0.3)]}  # step 4 evaluated again
    assert series["eval_margins"] == {2: [(4, margin(4, 2)), (8, margin(8, 2))]}
    assert series["starts"] == {2: 3}  # from train_start; attempt 1 is not marked


def test_an_attempt_without_train_start_starts_at_its_first_logged_step_and_sft_has_no_margins():
    series = curve_series(record(dpo=False, train_start=False))
    assert series["starts"] == {2: 4}
    assert series["margins"] == {} and series["eval_margins"] == {}


def test_the_record_summarize_training_makes_gives_the_same_series(tmp_path):
    write_jsonl(adapter(tmp_path) / LOSSES_FILE, train_rows(dpo=True))
    without_evals = summarize_training(tmp_path, {}, tmp_path / "logs/train.log")
    assert without_evals["eval_losses"] == []
    write_jsonl(tmp_path / "adapter" / EVAL_LOSSES_FILE, eval_rows(dpo=True))
    summary = summarize_training(tmp_path, {}, tmp_path / "logs/train.log")
    assert [(r["step"], r["attempt"]) for r in summary["losses"]] == [(1, 1), (2, 1), (3, 1)] + [
        (s, 2) for s in range(4, 9)]
    assert summary["losses"][0] == {"step": 1, "loss": loss(1, 1), "epoch": 1 / 8, "attempt": 1, MARGINS: margin(1, 1)}
    assert [(r["step"], r["attempt"]) for r in summary["eval_losses"]] == [(4, 2), (8, 2)]
    assert curve_series({**record(), **summary}) == curve_series(record())


@pytest.mark.parametrize(("dpo", "height"), [(True, 750), (False, 500)])
def test_the_png_is_written_whole_and_a_dpo_run_gets_a_margin_panel(tmp_path, dpo, height):
    out = write_loss_curve(tmp_path, record(dpo=dpo))
    assert out == tmp_path / "loss.png"
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1000, height)
        colours = len(set(image.convert("RGB").getdata()))
    assert colours > 50  # lines, text and legend drawn, not a blank canvas
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]  # no temp file left


@pytest.mark.parametrize("rec", [{}, {"losses": [], "eval_losses": eval_rows(dpo=True)}, {"losses": [{"step": 1}]},
                                 {"losses": None, "attempts": [{"attempt": 2, "train_start": None}]}])
def test_no_recorded_loss_means_no_file(tmp_path, rec):
    assert write_loss_curve(tmp_path, rec) is None
    assert list(tmp_path.iterdir()) == []


def test_the_stage_step_records_the_curve_and_a_failed_drawing_does_not_end_the_run(tmp_path, monkeypatch, capsys):
    write_jsonl(adapter(tmp_path) / LOSSES_FILE, train_rows(dpo=False))
    run = Run(tmp_path, {}, {"run_id": "r", "stage": "sft", "attempts": [{"attempt": 1}]}, lock=None)
    stage.record_train_step(run, tmp_path / "logs/train.log")
    assert run.outputs["loss_curve"] == "loss.png" and (tmp_path / "loss.png").is_file()
    assert [r["step"] for r in run.record["losses"]] == list(range(1, 9))

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(loss_curve, "write_loss_curve", broken)
    run = Run(tmp_path, {}, {"attempts": []}, lock=None)
    stage.record_train_step(run, tmp_path / "logs/train.log")
    assert "loss_curve" not in run.outputs and run.record["losses"]
    assert "no loss curve: disk full" in capsys.readouterr().out


def test_the_command_draws_an_existing_runs_curve_and_leaves_its_manifest(tmp_path, capsys):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(record()), encoding="utf-8")
    before = manifest.read_bytes()
    loss_curve.main([str(tmp_path)])
    assert (tmp_path / "loss.png").is_file() and manifest.read_bytes() == before
    assert capsys.readouterr().out.strip() == str(tmp_path / "loss.png")
    manifest.write_text(json.dumps({"losses": []}), encoding="utf-8")
    (tmp_path / "loss.png").unlink()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(loss_curve.main, [str(tmp_path)])  # the entry `python -m launch.runner.loss_curve` runs
    assert exit_info.value.code == 2 and not (tmp_path / "loss.png").exists()
    assert "no training loss recorded" in capsys.readouterr().err


def test_the_plugin_logs_train_rows_with_margins_and_eval_rows(tmp_path, monkeypatch):
    pytest.importorskip("axolotl")
    from launch.plugins.preempt import PreemptionCallback

    monkeypatch.setenv("LAUNCH_ATTEMPT", "2")
    callback, args = PreemptionCallback(), SimpleNamespace(output_dir=str(tmp_path))
    rank0 = SimpleNamespace(is_world_process_zero=True, global_step=4)
    callback.on_log(args, rank0, None, logs={"loss": 0.5, MARGINS: 0.25, "epoch": 0.5, "learning_rate": 1e-4})
    callback.on_log(args, SimpleNamespace(is_world_process_zero=True, global_step=5), None, logs={"loss": 0.4})
    callback.on_log(args, rank0, None, logs={"eval_loss": 0.7, f"eval_{MARGINS}": 0.125, "epoch": 0.5})
    callback.on_log(args, rank0, None, logs={"train_loss": 0.45, "train_runtime": 3.0})  # the closing summary
    callback.on_log(args, SimpleNamespace(is_world_process_zero=False, global_step=6), None, logs={"loss": 0.3})
    assert read_jsonl(tmp_path / LOSSES_FILE) == [
        {"step": 4, "loss": 0.5, "epoch": 0.5, "attempt": 2, MARGINS: 0.25},
        {"step": 5, "loss": 0.4, "epoch": None, "attempt": 2}]
    assert read_jsonl(tmp_path / EVAL_LOSSES_FILE) == [
        {"step": 4, "eval_loss": 0.7, "epoch": 0.5, "attempt": 2, f"eval_{MARGINS}": 0.125}]


FAKE_TRAINER = """
import json, os, sys
from pathlib import Path
adapter, attempt = Path(sys.argv[1]), int(os.environ["LAUNCH_ATTEMPT"])
adapter.mkdir(exist_ok=True)
start, end = (0, 5) if attempt == 1 else (3, 8)
(adapter / "train_start.json").write_text(json.dumps({"global_step": start, "max_steps": 8}))
with open(adapter / "train_losses.jsonl", "a") as handle:
    for step in range(start + 1, end + 1):
        handle.write(json.dumps({"step": step, "loss": 3.0 - 0.2 * step + 0.05 * attempt, "attempt": attempt}) + "\\n")
if attempt == 1:
    (adapter / "preempted.json").write_text(json.dumps({"global_step": 3, "checkpoint": "checkpoint-3"}))
    sys.exit(75)
"""


def test_a_preempted_and_a_finished_train_step_each_draw_the_curve(tmp_path, monkeypatch):
    """The real run_steps with a stand-in trainer: preempted after logging steps 1-5, resumed from step 3 to 8."""
    from helpers import ROOT, SFT_RECIPE

    from common.rundir import read_manifest
    from launch.lifecycle.run import StageRun

    monkeypatch.setattr(stage, "step_command", lambda step, config, run_dir, topology=None: [
        sys.executable, "-c", FAKE_TRAINER, str(run_dir / "adapter")])
    request = StageRun("sft", SFT_RECIPE, runs_dir=tmp_path, run_id="curve", root=ROOT, merge=False)
    for expected in (stage.PREEMPTED_EXIT, None):
        with Run.open(request) as run:
            if expected is None:
                stage.run_steps(request, run, stage.Stopper(run.id, run.stop_file))
            else:
                with pytest.raises(SystemExit) as exit_info:
                    stage.run_steps(request, run, stage.Stopper(run.id, run.stop_file))
                assert exit_info.value.code == expected
        record = read_manifest(tmp_path / "curve")
        assert record["outputs"]["loss_curve"] == "loss.png" and (tmp_path / "curve/loss.png").is_file()
    assert record["status"] == "succeeded"
    series = curve_series(record)
    assert sorted(series["train"]) == [1, 2] and series["starts"] == {2: 3}
    assert [step for step, _ in series["train"][1]] == [1, 2, 3]
    assert series["train"][2] == [(s, pytest.approx(loss(s, 2))) for s in range(4, 9)]
