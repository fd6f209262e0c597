"""``python -m release build|publish``: a release folder, its model card, and one hub commit.

The runs here are built without training: the tiny Llama-3 fixture, rigged to always emit ``<|eot_id|>``
(tests/test_release_generate.py), copied into ``runs/<id>/merged`` with a ``generation_config.json`` that stops
only on ``<|end_of_text|>`` (as a Llama-3 base model's), beside manifests as the launcher writes them.
The hub test mocks ONLY ``HfApi``'s two network methods (``create_repo``, ``create_commit``); everything else
(the commit operations, their hashing, release.json) is real.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT, refused_in_one_line
from test_release_generate import rigged

from common.rundir import hash_folder
from eval.fetch import HUB
from release import build as build_module
from release.__main__ import main
from release.build import build_release

SFT_ID, DPO_ID = "20260101-000000-sft-tiny-v1", "20260101-001000-dpo-tiny-v1"
RECIPE = """# a tiny recipe
base_model: meta-llama/Meta-Llama-3-8B  # card: the 8B card's base
adapter: qlora            # card: adapter qlora
lora_r: 8                 # ours: a tiny model
learning_rate: 0.0002     # card
micro_batch_size: 2
"""
PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image"
TOKEN = "hf_TESTtoken0123456789abcdef"


@pytest.fixture(scope="module")
def merged(tiny_llama3, tmp_path_factory) -> Path:
    """The rigged model, its generation_config.json stopping only on <|end_of_text|>."""
    from transformers import AutoTokenizer

    model = rigged(tiny_llama3, tmp_path_factory.mktemp("merged") / "merged", "<|eot_id|>", eos="<|end_of_text|>")
    end_of_text = AutoTokenizer.from_pretrained(model).convert_tokens_to_ids("<|end_of_text|>")
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": end_of_text}))
    return model


def summary(pipeline_check: bool, tasks: dict[str, tuple[float, int]]) -> dict:
    return {"summary": {"model": "merged", "run_id": DPO_ID, "pipeline_check": pipeline_check,
                        "settings": {"backend": "hf"},
                        "tasks": {t: {"acc": acc, "stderr": 0.02, "n": n} for t, (acc, n) in tasks.items()}}}


def make_runs(root: Path, merged: Path, results: dict | None, hashes: bool = True) -> Path:
    """runs/<sft> and runs/<dpo> (parent: the sft run) as the launcher leaves them; returns the dpo run."""
    recipe = root / "recipes" / "tiny.yaml"
    recipe.parent.mkdir(parents=True)
    recipe.write_text(RECIPE)
    sha = hashlib.sha256(recipe.read_bytes()).hexdigest()
    runs = {}
    for run_id, stage in ((SFT_ID, "sft"), (DPO_ID, "dpo")):
        run = runs[stage] = root / "runs" / run_id
        shutil.copytree(merged, run / "merged")
        (run / "loss.png").write_bytes(PNG + stage.encode())
        manifest = {
            "run_id": run_id, "stage": stage, "status": "succeeded", "ended_at": "2026-01-01T00:10:00+00:00",
            "recipe": {"path": str(recipe), "sha256": sha},
            "config": {"adapter": "qlora", "lora_r": 8, "learning_rate": 0.0002, "micro_batch_size": 2},
            "code": {"commit": "0123abcd" * 5, "dirty": False},
            "datasets": [{"path": f"data/build/tiny-v1/{stage}.jsonl", "sha256": "ab" * 32, "rows": 12,
                          "data_manifest": {"mixture": {"name": "tiny", "version": 1}}}],
            "base_model": {"id": "meta-llama/Meta-Llama-3-8B", "local": False},
            "python": "3.11.7", "packages": {"transformers": "5.16.1", "torch": "2.13.0"},
        }
        if hashes:  # as the launcher records them since it hashes adapter/ and merged/
            manifest["output_sha256"] = {"merged": hash_folder(run / "merged")}
        if stage == "dpo":
            manifest["parent"] = {"run_id": SFT_ID, "path": str(runs["sft"]), "stage": "sft"}
        (run / "manifest.json").write_text(json.dumps(manifest))
    if results is not None:
        (runs["dpo"] / "eval").mkdir()
        (runs["dpo"] / "eval" / "results.json").write_text(json.dumps(results))
    return runs["dpo"]


@pytest.fixture
def checked_release(merged, tmp_path) -> Path:
    """A release of a dpo run scored on three real test sets."""
    real = summary(False, {"pubmedqa": (0.5, 500), "medmcqa": (0.25, 4183), "mmlu_anatomy": (0.4, 135)})
    figures = {"answers": 20, "stop_rate": 0.95, "median_tokens": 88, "p95_tokens": 240, "repetition_rate": 0.05,
               "leak_rate": 0.0}
    real["generation_check"] = {"overall": figures, "use_cases": {"clinical notes": figures}, "max_new_tokens": 256}
    return build_release(make_runs(tmp_path, merged, real), out=tmp_path / "releases")


def listing(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, *argv: str) -> str:
    return refused_in_one_line(main, capsys, *argv)


def test_a_release_holds_the_weights_every_terminator_hashes_card_and_loss_curves(merged, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoTokenizer

    run = make_runs(tmp_path, merged, summary(True, {"pubmedqa": (0.4, 5), "mmlu_anatomy": (0.2, 5)}))
    release = build_release(run, out=tmp_path / "releases")
    assert release == tmp_path / "releases" / DPO_ID
    end_of_text, eot = AutoTokenizer.from_pretrained(merged).convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    assert json.loads((merged / "generation_config.json").read_text())["eos_token_id"] == end_of_text
    generation = json.loads((release / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [end_of_text, eot] and generation["do_sample"] is False
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (release / name).read_bytes() == (run / "merged" / name).read_bytes(), name
    template = [p.name for p in (run / "merged").glob("chat_template.*")]
    assert all((release / n).read_bytes() == (run / "merged" / n).read_bytes() for n in template)
    assert (release / "loss.png").read_bytes() == PNG + b"dpo"
    assert (release / "loss-sft.png").read_bytes() == PNG + b"sft"

    record = json.loads((release / "release.json").read_text())
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
             for name, data in listing(release).items() if name != "release.json"}
    assert record["files"] == files and "README.md" in files
    assert [r["run_id"] for r in record["runs"]] == [SFT_ID, DPO_ID]
    assert record["code"]["commit"] == "0123abcd" * 5 and record["hub"] is None

    card = ModelCard.load(release / "README.md")
    assert card.data.base_model == "meta-llama/Meta-Llama-3-8B" and card.data.license == "llama3"
    assert card.data.pipeline_tag == "text-generation" and card.data.language == ["en"]
    assert card.data.datasets == ["tiny-v1"] and "dpo" in card.data.tags
    assert not card.data.eval_results and "model-index" not in card.data.to_dict()
    assert "PIPELINE CHECK" in card.text and "not for patient care" in card.text
    assert "- learning_rate: 0.0002 (card)" in card.text and "- lora_r: 8 (ours: a tiny model)" in card.text
    assert "| OpenBioLLM-8B (published card) | 76.101 |" in card.text and "40.0 ± 3.9 (n=5)" in card.text
    assert "![dpo loss](loss.png)" in card.text and "![sft loss](loss-sft.png)" in card.text


def test_real_results_give_one_model_index_entry_per_benchmark(checked_release):
    import yaml
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = ModelCard.load(checked_release / "README.md")
    front = yaml.safe_load(card.content.split("---")[1])
    name, results = model_index_to_eval_results(front["model-index"])
    assert name == DPO_ID and "PIPELINE CHECK" not in card.text
    assert "| clinical notes | 20 |" in card.text and "Generation check" in card.text
    assert {(r.dataset_type, r.dataset_config, r.metric_type, r.metric_value) for r in results} == {
        (HUB["pubmedqa"].dataset, "pqa_labeled", "accuracy", 50.0), (HUB["medmcqa"].dataset, None, "accuracy", 25.0),
        ("cais/mmlu", "anatomy", "accuracy", 40.0)}


def test_the_cards_snippet_and_a_plain_pipeline_stop_on_their_own(checked_release, merged):
    """The card's snippet, run as written (model id and device changed), generates one token: <|eot_id|>. A plain
    pipeline on the release stops there too, thanks to generation_config.json; on merged/ it runs to the limit."""
    from transformers import pipeline

    snippet = re.search(r"```python\n(.*?)```", (checked_release / "README.md").read_text(), re.S)[1]
    snippet = re.sub(r'model_id = ".*"', f"model_id = {json.dumps(str(checked_release))}", snippet)
    snippet = snippet.replace('device_map="auto"', 'device="cpu"')
    counter = ("import transformers.models.llama.modeling_llama as llama\ncalls = []\n"
               "forward = llama.LlamaForCausalLM.forward\n"
               "llama.LlamaForCausalLM.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)\n")
    done = subprocess.run([sys.executable, "-c", counter + snippet + "\nprint('forward calls', len(calls))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "forward calls 1", done.stdout

    def new_tokens(model: Path) -> int:
        generator = pipeline("text-generation", model=str(model), device="cpu")
        out = generator("How long does newborn jaundice last?", max_new_tokens=20, return_tensors=True)
        return len(out[0]["generated_token_ids"]) - len(generator.tokenizer("How long does newborn jaundice last?")
                                                            .input_ids)
    assert new_tokens(checked_release) == 1
    assert new_tokens(merged) == 20


def test_a_failure_midway_leaves_the_old_release_intact_and_a_rebuild_replaces_it_whole(merged, tmp_path,
                                                                                       monkeypatch):
    run = make_runs(tmp_path, merged, None)
    out = tmp_path / "releases"
    release = build_release(run, out=out)
    (release / "stray.txt").write_text("left by hand")
    before = listing(release)

    def broken(*args, **kwargs):
        raise RuntimeError("the card failed midway")
    monkeypatch.setattr(build_module, "render_card", broken)
    with pytest.raises(RuntimeError):
        build_release(run, out=out)
    assert listing(release) == before and sorted(p.name for p in out.iterdir()) == [DPO_ID]

    monkeypatch.undo()
    build_release(run, out=out)
    assert not (release / "stray.txt").exists() and sorted(p.name for p in out.iterdir()) == [DPO_ID]
    assert "No eval results" in (release / "README.md").read_text()


def test_publish_dry_run_lists_every_file_with_its_size_and_touches_no_network(checked_release, capsys,
                                                                             monkeypatch):
    from huggingface_hub import HfApi

    def offline(*args, **kwargs):
        raise AssertionError("network call in a dry run")
    monkeypatch.setattr(HfApi, "create_repo", offline)
    monkeypatch.setattr(HfApi, "create_commit", offline)
    before = (checked_release / "release.json").read_bytes()
    main(["publish", str(checked_release), "--repo", "org/tiny", "--dry-run"])
    out = capsys.readouterr().out
    for name, entry in json.loads(before)["files"].items():
        assert re.search(rf"^\s*{entry['size']:,}  {re.escape(name)}$", out, re.M), name
    assert "dry run, nothing sent" in out and (checked_release / "release.json").read_bytes() == before


def test_publish_makes_one_commit_of_every_file_records_the_revision_and_writes_no_token(checked_release,
                                                                                      monkeypatch, capsys):
    """Mocked: ONLY HfApi.create_repo and HfApi.create_commit (the network calls)."""
    from huggingface_hub import HfApi

    calls: dict[str, list] = {"repo": [], "commit": []}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls["repo"].append((repo_id, kw)))

    def create_commit(self, repo_id, operations, **kw):
        calls["commit"].append((self.token, repo_id, list(operations)))
        return SimpleNamespace(oid="f" * 40, commit_url=f"https://huggingface.co/{repo_id}/commit/{'f' * 40}")
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    files = json.loads((checked_release / "release.json").read_text())["files"]
    main(["publish", str(checked_release), "--repo", "org/tiny", "--private"])

    assert calls["repo"] == [("org/tiny", {"repo_type": "model", "private": True, "exist_ok": True})]
    [(token, repo, operations)] = calls["commit"]
    assert token == TOKEN and repo == "org/tiny"
    assert sorted(op.path_in_repo for op in operations) == sorted([*files, "release.json"])
    for op in operations:
        if op.path_in_repo in files:
            assert op.upload_info.sha256.hex() == files[op.path_in_repo]["sha256"]
    record = json.loads((checked_release / "release.json").read_text())
    assert record["hub"]["revision"] == "f" * 40 and record["hub"]["repo"] == "org/tiny"
    assert record["files"] == files
    for path in checked_release.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in capsys.readouterr().out


def test_a_tampered_release_and_one_without_results_are_refused(checked_release, merged, tmp_path, capsys):
    config = checked_release / "config.json"
    config.write_text(config.read_text().replace("}", ' }'))
    err = refused(capsys, "publish", str(checked_release), "--repo", "org/tiny", "--dry-run")
    assert "config.json: changed since the build" in err
    (checked_release / "extra.bin").write_bytes(b"x")
    config.unlink()
    assert "config.json: missing" in refused(capsys, "publish", str(checked_release), "--repo", "org/tiny")

    pipeline_check = summary(True, {"pubmedqa": (0.4, 5)})
    check = build_release(make_runs(tmp_path / "check", merged, pipeline_check), out=tmp_path / "r")
    assert "card has no results" in refused(capsys, "publish", str(check), "--repo", "org/tiny", "--dry-run")
