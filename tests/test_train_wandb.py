"""A recipe that sets wandb_project logs offline into its run folder until a key is set, and no secret is written."""

from __future__ import annotations

import os

import pytest
from helpers import SFT_RECIPE, launch, only_run, tiny_overrides

from common.rundir import read_manifest

pytestmark = pytest.mark.slow

FAKE_HF_TOKEN = "hf_fake_token_for_wandb_test_0123456789"


def test_wandb_project_without_a_key_leaves_an_offline_run_inside_the_run_folder(tiny_llama3, small_data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR")}
    env["HF_TOKEN"] = FAKE_HF_TOKEN
    done = launch("sft", SFT_RECIPE, tmp_path / "runs", *tiny_overrides(tiny_llama3, small_data["sft"]),
                  "--set", "use_wandb=true", "--set", "wandb_project=openbio-test", "--skip-merge", env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run_dir = only_run(tmp_path / "runs", "sft")
    assert read_manifest(run_dir)["environment"]["WANDB_MODE"] == "offline"
    [offline] = (run_dir / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")), sorted(p.name for p in offline.iterdir())
    assert not (tmp_path / "wandb").exists() and not (run_dir / "adapter/wandb").exists()
    for path in run_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert FAKE_HF_TOKEN.encode() not in path.read_bytes(), f"the token reached {path}"
