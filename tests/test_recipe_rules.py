"""`python -m launch check` rejects what Axolotl would silently accept: typos, stray data, unpinned models, drift."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from launch.preflight.check import check

RECIPES = sorted((ROOT / "recipes").glob("*/v*/*.yaml"))
LATEST = sorted(max((p for p in RECIPES if p.parts[-3] == model and p.name == name),
                    key=lambda p: int(p.parent.name[1:])) for model, name in {(p.parts[-3], p.name) for p in RECIPES})
SFT_70B = ROOT / "recipes/openbiollm-70b/v2/sft.yaml"
DPO_70B = ROOT / "recipes/openbiollm-70b/v2/dpo.yaml"
SFT_8B = ROOT / "recipes/openbiollm-8b/v2/sft.yaml"


def variant(tmp_path: Path, edit, source: Path = SFT_70B) -> Path:
    """A copy of a recipe, edited as text, under a folder named like the original's model (so card rules apply)."""
    path = tmp_path / source.parts[-3] / "v99" / source.name
    path.parent.mkdir(parents=True)
    path.write_text(edit(source.read_text(encoding="utf-8")), encoding="utf-8")
    return path


@pytest.mark.parametrize("path", LATEST, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_latest_recipe_passes_launch_check(path):
    assert check(path) == []


def line_of(recipe: Path, start: str) -> int:
    return next(n for n, text in enumerate(recipe.read_text().splitlines(), start=1) if text.startswith(start))


@pytest.mark.parametrize(("path", "expected"), [
    ("recipes/openbiollm-8b/v1/sft.yaml", ["Axolotl warns: EOS token '<|end_of_text|>' not found in chat_template",
                                           "(<|eot_id|>) carries no label, so the model would not learn to stop"]),
    ("recipes/openbiollm-8b/v1/dpo.yaml", [":46: max_prompt_len: nothing reads it in a DPO recipe"]),
    ("recipes/openbiollm-70b/v1/dpo.yaml", [":46: max_prompt_len: nothing reads it in a DPO recipe",
                                            "Axolotl warns: qlora + zero3 with use_reentrant: false may result in a "
                                            "CheckpointError"]),
    ("recipes/openbiollm-70b/v1/sft.yaml", ["Axolotl warns: Tokenizer does not have a pad_token"]),
], ids=lambda value: value if isinstance(value, str) else "")
def test_released_v1_recipes_are_refused_for_what_v2_fixes(path, expected):
    problems = check(ROOT / path)
    for text in expected:
        assert any(text in problem for problem in problems), (text, problems)


def test_dpo_recipe_with_max_prompt_len_is_refused_naming_key_line_and_why(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("\nsequence_len:", "\nmax_prompt_len: 512\nsequence_len:"),
                     DPO_70B)
    problems = check(recipe)
    assert problems == [f"{recipe}:{line_of(recipe, 'max_prompt_len')}: max_prompt_len: nothing reads it in a DPO "
                        "recipe: Axolotl 0.19 reads it nowhere on the DPO path (core/builders/rl.py passes "
                        "sequence_len as TRL's max_length) and TRL 1.9's DPOConfig has no prompt limit"]


def test_sft_recipe_with_rl_beta_is_refused_naming_key_line_and_why(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("\nseed:", "\nrl_beta: 0.1\nseed:"), SFT_8B)
    (problem,) = check(recipe)
    assert problem.startswith(f"{recipe}:{line_of(recipe, 'rl_beta')}: rl_beta: nothing reads it in an SFT recipe")
    assert "core/builders/rl.py" in problem and "never builds" in problem


def test_8b_recipe_on_eight_gpus_is_refused_as_off_card():
    (problem,) = check(SFT_8B, gpus=8, gpu="h100-80gb")
    assert "total batch 96 on 8 GPUs; the card trained 12 (train_batch_size 12 x num_devices 1)" in problem
    assert check(SFT_70B, gpus=8, gpu="h100-80gb") == [] and check(SFT_8B, gpus=1, gpu="h100-80gb") == []


def test_launch_check_prints_what_axolotl_resolves_for_the_latest_recipes():
    done = subprocess.run([sys.executable, "-m", "launch", "check", str(SFT_8B), str(SFT_70B), str(DPO_70B)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "total batch 12 on 1 x h100-80gb; precision bf16 + tf32; attention flash_attention_2; engine one process" \
        in out
    assert "eos <|end_of_text|>; end-of-turn tokens ['<|eot_id|>']; after each assistant turn: <|eot_id|> trained, " \
           "<|eot_id|> trained" in out
    assert "total batch 96 on 8 x h100-80gb" in out
    assert "engine DeepSpeed ZeRO-3; gradient checkpointing on, reentrant" in out
    assert "total batch 128 on 8 x h100-80gb" in out and "engine DeepSpeed ZeRO-2" in out
    assert "acknowledged Axolotl warning (the card's eval_batch_size 8 beside its train_batch_size 12" in out


def test_launch_check_takes_the_gpus_of_a_cluster_profile():
    done = subprocess.run([sys.executable, "-m", "launch", "check", str(SFT_8B), "--cluster",
                           "launch/clusters/h100-8x.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "total batch 96 on 8 GPUs; the card trained 12" in done.stdout


def test_misspelt_key_is_rejected_with_a_suggestion_and_its_line(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("\nlora_alpha:", "\nlora_alhpa:"))
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), start=1) if text.startswith("lora_alhpa"))
    problems = check(recipe)
    assert f"{recipe}:{line}: unknown key 'lora_alhpa', Axolotl would ignore it; did you mean 'lora_alpha'?" in problems
    assert any("lora_alpha is None; the model card says 256" in p for p in problems)  # the card rule sees it missing


def test_launch_check_command_exits_nonzero_on_a_typo(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("\nlora_alpha:", "\nlora_alhpa:"))
    done = subprocess.run([sys.executable, "-m", "launch", "check", str(recipe)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 1
    assert "did you mean 'lora_alpha'?" in done.stdout


def test_misspelt_dataset_key_is_rejected_with_a_suggestion(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("field_messages: messages", "field_mesages: messages", 1))
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), start=1) if "field_mesages" in text)
    assert (f"{recipe}:{line}: unknown key 'field_mesages' in datasets.0, Axolotl would ignore it; "
            "did you mean 'field_messages'?") in check(recipe)


def test_dataset_that_is_no_mixture_output_is_rejected(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("data/build/openbiollm-v1/sft.jsonl", "data/my_rows.jsonl"))
    assert any("'data/my_rows.jsonl' is not the output of a mixture" in p for p in check(recipe))


def test_dpo_recipe_reading_sft_rows_is_rejected(tmp_path):
    source = ROOT / "recipes/openbiollm-70b/v1/dpo.yaml"
    recipe = variant(tmp_path, lambda text: text.replace("openbiollm-v1/dpo.jsonl", "openbiollm-v1/sft.jsonl"), source)
    assert any("holds sft rows; this recipe trains dpo" in p for p in check(recipe))


def test_hub_base_model_without_a_revision_is_rejected(tmp_path):
    recipe = variant(tmp_path, lambda text: "\n".join(line for line in text.splitlines()
                                                      if not line.startswith("revision_of_model")))
    assert any("is not pinned: add revision_of_model" in p for p in check(recipe))


def test_local_default_model_needs_no_revision():
    config = yaml.safe_load((ROOT / "recipes/smollm2-135m/v1/sft.yaml").read_text())
    assert config["base_model"].startswith("models/") and "revision_of_model" not in config
    assert not [p for p in check(ROOT / "recipes/smollm2-135m/v1/sft.yaml") if "pinned" in p]


def test_openbiollm_recipe_that_drifts_from_the_card_is_rejected(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("learning_rate: 0.0002", "learning_rate: 0.0001")
                     .replace("micro_batch_size: 12", "micro_batch_size: 8"))
    problems = check(recipe)
    assert any("learning_rate is 0.0001; the model card says 0.0002" in p for p in problems)
    assert any("micro_batch_size is 8; the model card says 12" in p for p in problems)


def test_missing_deepspeed_config_is_rejected(tmp_path):
    recipe = variant(tmp_path, lambda text: text.replace("launch/engines/zero3.json", "launch/engines/zero9.json"))
    assert any("deepspeed config 'launch/engines/zero9.json' does not exist" in p for p in check(recipe))


def test_openbiollm_recipes_use_the_cards_base_models():
    base = {p.parts[-3]: yaml.safe_load(p.read_text())["base_model"] for p in RECIPES if p.stem == "sft"}
    assert base["openbiollm-70b"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert base["openbiollm-8b"] == "meta-llama/Meta-Llama-3-8B"


@pytest.mark.parametrize("name", ["openbiollm-70b", "openbiollm-8b"])
def test_production_recipes_log_to_wandb_and_go_offline_without_a_key(name, monkeypatch):
    from launch.lifecycle.config import stage_env

    config = yaml.safe_load((ROOT / f"recipes/{name}/v1/sft.yaml").read_text())
    assert config["wandb_project"] == name and "wandb_entity" not in config and "wandb_mode" not in config
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert stage_env(config)["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "not-a-real-key")
    assert "WANDB_MODE" not in stage_env(config)


@pytest.mark.slow
@pytest.mark.parametrize("readme", sorted((ROOT / "recipes").glob("openbiollm-*/README.md")),
                         ids=lambda p: p.parent.name)
def test_recipe_readme_check_and_plan_commands_run_as_shown(readme):
    commands = [line.strip() for line in readme.read_text().splitlines()
                if line.strip().startswith((".venv/bin/python -m launch check", ".venv/bin/python -m launch plan"))]
    assert len(commands) >= 2
    for command in commands:
        done = subprocess.run([sys.executable, *shlex.split(command)[1:]], cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"


def test_openbiollm_mixture_names_known_sources_at_a_revision():
    from data_prep.build import load_mixture
    from data_prep.readers import parse_hub_spec
    from data_prep.sources import load_sources

    mixture = load_mixture(ROOT / "data_prep/mixtures/openbiollm-v1.yaml")
    sources = load_sources()
    assert (mixture["name"], mixture["version"], mixture["sequence_len"]) == ("openbiollm", 1, 1024)
    for kind in ("sft", "dpo"):
        for entry in mixture[kind]:
            assert kind == sources[entry["source"]].KIND, entry
            for spec in entry["inputs"]:
                _, revision, split = parse_hub_spec(spec)  # refuses a spec without a revision
                assert revision and split == "train", spec
    assert any(spec.startswith("hub:berkeley-nest/Nectar@") for e in mixture["dpo"] for spec in e["inputs"])
