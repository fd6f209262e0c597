"""`python -m launch reproduce runs/<id>`: the checks before re-running a run, and a real reproduction.

The fast tests record a finished run with the launcher's own manifest code (no training), change one input,
and show that the reproduction is refused with the file and both hashes named. The slow test trains a tiny SFT
through the launcher, reproduces it, and compares the tokenized dataset hash and the first steps' losses.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, SFT_DATA, SFT_RECIPE, launch, only_run, read_jsonl, tiny_overrides, write_jsonl

from common.files import sha256_file
from common.rundir import MANIFEST, read_manifest, write_manifest
from launch.lifecycle import manifest, train_record
from launch.lifecycle.run import StageRun, resolve_config
from launch.lifecycle.train_record import parse_losses
from launch.runner import reproduce

HUB_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # named only: nothing is downloaded in these tests


def finished_run(tmp_path: Path, recipe: Path, overrides: dict, name: str = "original") -> Path:
    """A succeeded SFT run folder as the launcher records one, without training: config, manifest, a log."""
    run_dir = tmp_path / "runs" / name
    request = StageRun(stage="sft", recipe=recipe, runs_dir=run_dir.parent, overrides=overrides, root=ROOT)
    config = resolve_config(request, run_dir, None)
    run_dir.mkdir(parents=True)
    argv = ["python", "-m", "launch", "sft", str(recipe)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    record = manifest.opening(run_dir, stage="sft", recipe=recipe, config=config, root=ROOT, parent=None,
                              argv=argv, env={})
    write_manifest(run_dir, manifest.closing(record, exit_code=0, error=None, outputs={}))
    return run_dir


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A copy of the default SFT recipe that the test may edit."""
    path = tmp_path / "recipes/smollm2-135m/v9/sft.yaml"
    path.parent.mkdir(parents=True)
    shutil.copyfile(SFT_RECIPE, path)
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "sft.jsonl", read_jsonl(SFT_DATA)[:6])


def prepare(run_dir: Path, **kwargs) -> StageRun:
    return reproduce.rerun_request(read_manifest(run_dir), run_dir, ROOT, **kwargs)


def test_unchanged_run_is_re_run_with_its_recipe_and_overrides(tmp_path, recipe, data):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data), "num_epochs": 2})
    request = prepare(run_dir, run_id="again")
    assert request.stage == "sft" and request.recipe == recipe and request.run_id == "again"
    assert request.overrides == {"base_model": HUB_MODEL, "datasets.0.path": str(data), "num_epochs": 2}
    assert request.runs_dir == run_dir.parent
    with pytest.raises(SystemExit, match="original already exists: choose another --run-id"):
        prepare(run_dir, run_id="original")


def test_changed_recipe_is_refused_naming_both_hashes(tmp_path, recipe, data):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    before = sha256_file(recipe)
    recipe.write_text(recipe.read_text().replace("learning_rate: 2.0e-4", "learning_rate: 3.0e-4"))
    with pytest.raises(SystemExit) as refused:
        prepare(run_dir)
    message = str(refused.value)
    assert f"recipe {recipe} changed" in message
    assert before in message and sha256_file(recipe) in message and "--allow-recipe-change" in message


def test_changed_recipe_runs_with_allow_recipe_change_and_says_what_changed(tmp_path, recipe, data, capsys):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    recipe.write_text(recipe.read_text().replace("learning_rate: 2.0e-4", "learning_rate: 3.0e-4"))
    request = prepare(run_dir, allow_recipe_change=True)
    assert request.recipe == recipe
    out = capsys.readouterr().out
    assert "running the new content" in out and "learning_rate: recorded 0.0002, now 0.0003" in out


def test_overrides_recorded_in_the_manifest_are_read_rather_than_the_command(tmp_path, recipe, data):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    record = read_manifest(run_dir)
    record["overrides"] = {"base_model": HUB_MODEL, "datasets.0.path": str(data)}
    record["command"] = ["python", "-m", "launch", "sft", str(recipe), "--set", "num_epochs=7"]  # not what ran
    write_manifest(run_dir, record)
    assert prepare(run_dir).overrides == {"base_model": HUB_MODEL, "datasets.0.path": str(data)}


def test_overrides_lost_from_the_record_are_refused(tmp_path, recipe, data):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    record = read_manifest(run_dir)
    record["config"]["num_epochs"] = 3  # as if the run had been started with an override we no longer see
    write_manifest(run_dir, record)
    with pytest.raises(SystemExit, match="num_epochs: recorded 3, now 1"):
        prepare(run_dir)


def test_changed_dataset_file_is_refused_with_expected_and_found_hash(tmp_path, recipe, data):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    before = sha256_file(data)
    write_jsonl(data, read_jsonl(data)[:5])
    with pytest.raises(SystemExit) as refused:
        prepare(run_dir)
    assert f"dataset {data} changed: expected sha256 {before}, found {sha256_file(data)}" in str(refused.value)


def mixture_build(tmp_path: Path) -> tuple[Path, Path]:
    """A one-source mixture over a copy of the bundled SFT rows, built with `data_prep build`: (input, sft.jsonl)."""
    source = write_jsonl(tmp_path / "source.jsonl", read_jsonl(SFT_DATA)[:10])
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text(yaml.safe_dump({"name": "tiny", "version": 1, "seed": 1, "system_prompt": None,
                                       "validation_fraction": 0.2,
                                       "sft": [{"source": "messages", "inputs": [str(source)]}]}))
    out = tmp_path / "build"
    subprocess.run([sys.executable, "-m", "data_prep", "build", str(mixture), "--out", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return source, out / "sft.jsonl"


def test_mixture_that_now_builds_different_rows_is_refused(tmp_path, recipe):
    source, built = mixture_build(tmp_path)
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(built)})
    assert read_manifest(run_dir)["datasets"][0]["data_manifest"]["mixture"]["path"] == str(tmp_path / "mixture.yaml")
    before = sha256_file(built)
    rows = read_jsonl(source)
    rows[0]["messages"][-1]["content"] += " Edited after the run."
    write_jsonl(source, rows)
    with pytest.raises(SystemExit) as refused:
        prepare(run_dir)
    message = str(refused.value)
    assert f"dataset {built}, rebuilt from {tmp_path / 'mixture.yaml'}: expected sha256 {before}, found" in message
    assert message.split("found ")[-1] != before


def test_missing_mixture_output_is_rebuilt_with_the_recorded_hash(tmp_path, recipe):
    _, built = mixture_build(tmp_path)
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(built)})
    before = sha256_file(built)
    shutil.rmtree(built.parent)  # a fresh clone: data/build/ is not in git
    prepare(run_dir)
    assert sha256_file(built) == before and (built.parent / MANIFEST).is_file()


def test_changed_base_model_is_refused_with_its_tree_hashes(tmp_path, recipe, data, tiny_llama3):
    model = tmp_path / "model"
    shutil.copytree(tiny_llama3, model)
    run_dir = finished_run(tmp_path, recipe, {"base_model": str(model), "datasets.0.path": str(data)})
    before = read_manifest(run_dir)["base_model"]["sha256_tree"]
    (model / "generation_config.json").write_text('{"do_sample": true}')
    with pytest.raises(SystemExit, match=f"base model {model} changed: expected sha256_tree {before}, found"):
        prepare(run_dir)


def test_package_version_differences_are_listed_as_a_warning(tmp_path, recipe, data, capsys):
    run_dir = finished_run(tmp_path, recipe, {"base_model": HUB_MODEL, "datasets.0.path": str(data)})
    record = read_manifest(run_dir)
    record["packages"]["transformers"] = "4.0.0"
    write_manifest(run_dir, record)
    prepare(run_dir)
    now = manifest.package_versions()["transformers"]
    assert f"transformers: 4.0.0 at the run, {now} now" in capsys.readouterr().out


def test_comparison_flags_a_loss_outside_the_tolerance():
    original = {"tokenized_dataset": {"sha256": "a"}, "losses": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}]}
    close = {"tokenized_dataset": {"sha256": "a"}, "losses": [{"step": 1, "loss": 3.001}, {"step": 2, "loss": 2.5}]}
    far = {"tokenized_dataset": {"sha256": "a"}, "losses": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.6}]}
    assert train_record.compare_losses(original, close, steps=2, tolerance=1e-3)["reproduced"]
    result = train_record.compare_losses(original, far, steps=2, tolerance=1e-3)
    assert not result["reproduced"] and [r["within_tolerance"] for r in result["losses"]] == [True, False]
    other_data = {**close, "tokenized_dataset": {"sha256": "b"}}
    assert not train_record.compare_losses(original, other_data, steps=2, tolerance=1e-3)["tokenized_dataset"]["same"]
    one_step_short = {**close, "losses": close["losses"][:1]}
    assert not train_record.compare_losses(original, one_step_short, steps=2, tolerance=1)["reproduced"]


def test_training_losses_are_read_from_the_trainer_log_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("[INFO] starting\n"
                   "{'loss': '3.127', 'grad_norm': '0.85', 'epoch': '0.5'}\n"
                   "{'eval_loss': '3.5', 'epoch': '0.5'}\n"
                   "{'loss': '2.9', 'grad_norm': '1.0', 'epoch': '1'}\n"
                   "{'train_runtime': '3.1', 'train_loss': '3.0', 'epoch': '1'}\n")
    assert parse_losses(log, logging_steps=5) == [{"step": 5, "loss": 3.127, "epoch": 0.5},
                                                  {"step": 10, "loss": 2.9, "epoch": 1.0}]


@pytest.mark.slow
def test_reproducing_an_sft_run_gives_the_same_tokenized_data_and_losses(tiny_llama3, small_data, tmp_path):
    runs_dir = tmp_path / "runs"
    first = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, small_data["sft"]))
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    original = only_run(runs_dir, "sft")
    again = subprocess.run([sys.executable, "-m", "launch", "reproduce", str(original), "--run-id", "again"],
                           cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]

    a, b = read_manifest(original), read_manifest(runs_dir / "again")
    assert b["status"] == "succeeded" and b["reproduces"]["run_id"] == original.name
    assert b["config"]["datasets"] == a["config"]["datasets"] and b["config"]["base_model"] == str(tiny_llama3)
    assert a["tokenized_dataset"]["rows"] == 8
    assert b["tokenized_dataset"]["sha256"] == a["tokenized_dataset"]["sha256"]
    steps, tolerance = min(len(a["losses"]), train_record.DEFAULT_STEPS), train_record.DEFAULT_TOLERANCE
    assert steps >= 5 and len(b["losses"]) >= steps
    for x, y in zip(a["losses"][:steps], b["losses"][:steps], strict=True):
        assert x["step"] == y["step"] and math.isclose(x["loss"], y["loss"], rel_tol=tolerance), (x, y)
    assert b["reproduction"]["reproduced"] and "tokenized dataset: original" in again.stdout
