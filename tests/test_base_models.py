"""The vendored base-model config files: what launch check resolves with, and their comparison with the hub.

The hub itself cannot be reached here: the comparison tests replace huggingface_hub's two network calls
(``HfApi.model_info`` and ``hf_hub_download``) with a fake hub built from the vendored files, and say so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT

from launch.preflight.base_models import CONFIGS, FILES, compare, stand_in_tokenizer, vendored

FOLDERS = {source["repo"]: folder for folder, source in vendored(ROOT)}


def test_the_three_base_models_are_vendored_at_the_recipes_revision():
    assert set(FOLDERS) == {"meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct",
                            "meta-llama/Meta-Llama-3-70B-Instruct"}
    for folder in FOLDERS.values():
        assert {p.name for p in folder.iterdir()} == {*FILES, "source.json"}
        assert sum(p.stat().st_size for p in folder.iterdir()) < 100_000  # config files, never weights


@pytest.mark.parametrize(("repo", "eos", "layers"), [("meta-llama/Meta-Llama-3-8B", "<|end_of_text|>", 32),
                                                     ("meta-llama/Meta-Llama-3-8B-Instruct", "<|eot_id|>", 32),
                                                     ("meta-llama/Meta-Llama-3-70B-Instruct", "<|eot_id|>", 80)])
def test_stand_in_tokenizer_carries_the_models_special_tokens_at_their_ids(repo, eos, layers, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(stand_in_tokenizer(FOLDERS[repo], tmp_path))
    assert tokenizer.eos_token == eos and tokenizer.bos_token == "<|begin_of_text|>"
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                                         "<|end_header_id|>", "<|eot_id|>")] == \
        [128000, 128001, 128006, 128007, 128009]
    assert len(tokenizer) == 128256
    text = "<|start_header_id|>assistant<|end_header_id|>\n\nAspirin.<|eot_id|>"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert (tokenizer.chat_template is not None) == repo.endswith("Instruct")
    config = AutoConfig.from_pretrained(FOLDERS[repo])
    assert (config.num_hidden_layers, config.vocab_size, config.tie_word_embeddings) == (layers, 128256, False)


def fake_hub(monkeypatch, files: dict[str, Path]) -> list[tuple[str, str]]:
    """Mock (the hub cannot be reached here): model_info and hf_hub_download answer from ``files``."""
    import huggingface_hub

    asked = []

    def download(repo, name, revision=None):
        asked.append((repo, revision))
        return str(files[repo] / name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: SimpleNamespace(
        model_info=lambda repo, revision=None: SimpleNamespace(sha="0" * 40)))
    return asked


def copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / CONFIGS, tmp_path / "repo" / CONFIGS)
    return tmp_path / "repo"


def test_check_models_passes_when_the_hub_matches(monkeypatch, tmp_path):
    root = copy_tree(tmp_path)
    asked = fake_hub(monkeypatch, {repo: root / CONFIGS / repo for repo in FOLDERS})
    assert compare(root) == []
    assert set(asked) == {(repo, "main") for repo in FOLDERS}  # at the revision source.json pins


def test_check_models_names_every_difference_and_write_replaces_the_file(monkeypatch, tmp_path):
    root, hub = copy_tree(tmp_path), tmp_path / "hub"
    shutil.copytree(ROOT / CONFIGS, hub)
    changed = hub / "meta-llama/Meta-Llama-3-70B-Instruct/tokenizer_config.json"
    spec = json.loads(changed.read_text())
    changed.write_text(json.dumps(spec | {"eos_token": "<|end_of_text|>"}))
    fake_hub(monkeypatch, {repo: hub / repo for repo in FOLDERS})
    assert compare(root) == ["base_model_configs/meta-llama/Meta-Llama-3-70B-Instruct/tokenizer_config.json: "
                             "eos_token: ours '<|eot_id|>' -> hub '<|end_of_text|>'"]
    compare(root, write=True)
    assert compare(root) == []
    source = json.loads((root / CONFIGS / "meta-llama/Meta-Llama-3-70B-Instruct/source.json").read_text())
    assert source["commit"] == "0" * 40 and source["obtained"] == "downloaded from the hub"
