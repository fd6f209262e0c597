"""The launcher's small pieces: overrides, run naming, parent lookup, redaction, atomic records."""

from __future__ import annotations

import json

import pytest
from helpers import SFT_RECIPE

from common.files import count_rows, write_json_atomic
from common.rundir import latest_run, recipe_slug, write_manifest
from common.secrets import REDACTED, redact, secret_values
from launch.lifecycle.config import parse_override, set_dotted
from launch.lifecycle.run import StageRun, resolve_config


def test_override_values_are_read_as_yaml():
    assert parse_override("num_epochs=2") == ("num_epochs", 2)
    assert parse_override("lora_target_modules=[q_proj, v_proj]") == ("lora_target_modules", ["q_proj", "v_proj"])
    assert parse_override("base_model=/a/b=c") == ("base_model", "/a/b=c")


def test_override_without_equals_is_refused():
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_override("num_epochs")


def test_dotted_keys_reach_into_lists():
    config = {"datasets": [{"path": "a.jsonl"}]}
    set_dotted(config, "datasets.0.path", "b.jsonl")
    set_dotted(config, "special_tokens.pad_token", "<pad>")
    assert config == {"datasets": [{"path": "b.jsonl"}], "special_tokens": {"pad_token": "<pad>"}}


def test_run_names_come_from_the_recipe_path():
    assert recipe_slug(SFT_RECIPE) == "smollm2-135m-v1"


def test_resolved_config_writes_into_the_run_folder(tmp_path):
    request = StageRun(stage="sft", recipe=SFT_RECIPE, overrides={"num_epochs": 3})
    config = resolve_config(request, tmp_path / "run", None)
    assert config["num_epochs"] == 3
    assert config["output_dir"] == str(tmp_path / "run/adapter")
    assert config["dataset_prepared_path"] == str(tmp_path / "run/prepared")
    parent = {"run_id": "p", "path": str(tmp_path / "p")}
    assert resolve_config(request, tmp_path / "run", parent)["base_model"] == str(tmp_path / "p/merged")


def test_latest_run_picks_the_newest_successful_run_of_the_stage(tmp_path):
    for name, stage, status, ended in [("a", "sft", "succeeded", "2026-01-01T00:00:00"),
                                       ("b", "sft", "succeeded", "2026-01-02T00:00:00"),
                                       ("c", "sft", "failed", "2026-01-03T00:00:00"),
                                       ("d", "dpo", "succeeded", "2026-01-04T00:00:00")]:
        write_manifest(tmp_path / name, {"stage": stage, "status": status, "ended_at": ended})
    assert latest_run(tmp_path, "sft") == tmp_path / "b"
    with pytest.raises(SystemExit, match="no successful merge run"):
        latest_run(tmp_path, "merge")


def test_secrets_are_redacted_by_name_and_by_value():
    env = {"HF_TOKEN": "hf_abcdef123", "WANDB_API_KEY": "wk_987654", "HOME": "/root"}
    secrets = secret_values(env)
    assert sorted(secrets) == ["hf_abcdef123", "wk_987654"]
    config = {"wandb_api_key": "wk_987654", "hub_token": "x-y-z", "note": "token hf_abcdef123 here", "lr": 0.1,
              "datasets": [{"path": "hf_abcdef123/data"}]}
    assert redact(config, secrets) == {"wandb_api_key": REDACTED, "hub_token": REDACTED,
                                       "note": f"token {REDACTED} here", "lr": 0.1,
                                       "datasets": [{"path": f"{REDACTED}/data"}]}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": 1})
    write_json_atomic(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_rows_are_counted_for_jsonl_and_json(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    (tmp_path / "b.json").write_text('[{"x": 1}, {"x": 2}, {"x": 3}]')
    assert count_rows(tmp_path / "a.jsonl") == 2
    assert count_rows(tmp_path / "b.json") == 3
