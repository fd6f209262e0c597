"""A base model is pinned to a commit before submission, or refused unless --allow-unpinned.

The hub's network API (``HfApi.model_info``) is mocked here, and only it: the tests must not depend on
network access, on a token for Meta's gated repositories, or on where ``main`` points today.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import OfflineModeIsEnabled

from launch.preflight.pinning import resolve_base_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MODEL = "meta-llama/Meta-Llama-3-8B"


@pytest.fixture
def hub(monkeypatch):
    """Replace the hub's model_info call: record what was asked, answer with ``hub.answer`` (or raise it)."""
    calls = []
    state = SimpleNamespace(calls=calls, answer=SimpleNamespace(sha=COMMIT))

    def model_info(self, repo_id, revision=None, **kwargs):
        calls.append((repo_id, revision))
        if isinstance(state.answer, Exception):
            raise state.answer
        return state.answer

    monkeypatch.setattr(HfApi, "model_info", model_info)
    return state


def test_a_commit_revision_is_pinned_without_asking_the_hub(hub):
    pin = resolve_base_model({"base_model": MODEL, "revision_of_model": COMMIT})
    assert pin == {"base_model": MODEL, "revision": COMMIT, "commit": COMMIT, "pinned": True, "how": "commit"}
    assert hub.calls == []


def test_a_branch_is_resolved_to_the_commit_the_hub_reports(hub):
    pin = resolve_base_model({"base_model": MODEL, "revision_of_model": "main"})
    assert (pin["commit"], pin["how"], pin["pinned"]) == (COMMIT, "resolved", True)
    assert hub.calls == [(MODEL, "main")]


def test_no_revision_means_main(hub):
    assert resolve_base_model({"base_model": MODEL})["commit"] == COMMIT
    assert hub.calls == [(MODEL, "main")]


def test_unreachable_hub_refuses_an_unpinned_model_and_names_the_fix(hub):
    hub.answer = OfflineModeIsEnabled("offline mode is enabled")
    with pytest.raises(SystemExit) as refused:
        resolve_base_model({"base_model": MODEL, "revision_of_model": "main"})
    message = str(refused.value)
    assert f"{MODEL}@main is not pinned" in message and "--allow-unpinned" in message
    assert "revision_of_model" in message and "HF_HUB_OFFLINE=0" in message


def test_allow_unpinned_records_the_model_as_unpinned_with_the_reason(hub):
    hub.answer = OfflineModeIsEnabled("offline mode is enabled")
    pin = resolve_base_model({"base_model": MODEL, "revision_of_model": "main"}, allow_unpinned=True)
    assert (pin["pinned"], pin["commit"], pin["how"]) == (False, None, "unpinned")
    assert "OfflineModeIsEnabled" in pin["reason"]


def test_a_local_model_folder_needs_no_hub(hub, tmp_path):
    pin = resolve_base_model({"base_model": str(tmp_path)})
    assert (pin["how"], pin["pinned"]) == ("local", True)
    assert hub.calls == []


def test_a_dataset_branch_resolves_through_the_datasets_api(monkeypatch):
    from launch.preflight.pinning import hub_commit

    asked = []
    monkeypatch.setattr(HfApi, "dataset_info",
                        lambda self, repo_id, revision=None, **kw: asked.append((repo_id, revision)) or
                        SimpleNamespace(sha=COMMIT))
    assert hub_commit("berkeley-nest/Nectar", "main", repo_type="dataset") == COMMIT
    assert asked == [("berkeley-nest/Nectar", "main")]


def test_slurm_submission_refuses_an_unresolvable_branch_and_creates_no_run(hub, tmp_path, capsys):
    from launch.cli import main

    hub.answer = OfflineModeIsEnabled("offline")
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"base_model: {MODEL}\nrevision_of_model: main\n", encoding="utf-8")
    with pytest.raises(SystemExit) as end:
        main(["sft", str(recipe), "--slurm", "launch/clusters/local-test.yaml", "--runs-dir", str(tmp_path / "runs")])
    assert end.value.code == 2 and "--allow-unpinned" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_slurm_submission_runs_on_the_resolved_commit(hub, tmp_path):
    from launch.lifecycle.run import StageRun
    from launch.submit.submission import Submission, pin_base_model

    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"base_model: {MODEL}\nrevision_of_model: main\n", encoding="utf-8")
    request = StageRun(stage="sft", recipe=recipe)
    pin = pin_base_model(Submission("sft", recipe, Path("launch/clusters/local-test.yaml")), request)
    assert pin["how"] == "resolved" and hub.calls == [(MODEL, "main")]
    assert request.overrides["revision_of_model"] == COMMIT  # the run's config.yaml loads exactly this commit


def test_a_path_is_a_local_model_even_before_it_exists(hub, tmp_path):
    pin = resolve_base_model({"base_model": str(tmp_path / "runs/sft/merged")})
    assert pin["how"] == "local" and hub.calls == []
