"""Every recipe is plain Axolotl YAML that Axolotl's own validation accepts, with the card's shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*/v*/*.yaml"))
CARD_TARGET_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
CPU_RECIPES = [p for p in RECIPES if "smollm2" in p.parts[-3]]
GPU_RECIPES = [p for p in RECIPES if p not in CPU_RECIPES]


def load(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_recipes_exist():
    assert {p.relative_to(ROOT).as_posix() for p in RECIPES} >= {
        "recipes/smollm2-135m/v1/sft.yaml", "recipes/smollm2-135m/v1/dpo.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_axolotl_validates_the_recipe(path):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    config = load(path)
    validated = validate_config(DictDefault(config))
    for key in ("base_model", "adapter", "lora_r", "lora_alpha", "learning_rate", "sequence_len"):
        assert validated[key] == config[key], key


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_recipe_keeps_the_cards_adapter_shape(path):
    config = load(path)
    assert config["adapter"] == "qlora" and config["load_in_4bit"] is True
    assert set(config["lora_target_modules"]) == CARD_TARGET_MODULES
    assert config["lora_alpha"] / config["lora_r"] == 256 / 128
    assert config["lora_dropout"] == 0.05
    assert config.get("trust_remote_code") is False
    if path.stem == "sft":
        assert config["learning_rate"] == 2e-4 and config["lr_scheduler"] == "cosine"
    else:
        assert config["rl"] == "dpo"


@pytest.mark.parametrize("path", CPU_RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_cpu_recipe_switches_off_what_a_cpu_cannot_run(path):
    config = load(path)
    assert config["bf16"] is False and config["fp16"] is False
    for kernel in ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_embedding_kernel"):
        assert config[kernel] is False, kernel
    assert config["attn_implementation"] in ("sdpa", "eager")
    assert not config.get("flash_attention")


@pytest.mark.parametrize("path", GPU_RECIPES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_gpu_recipe_uses_what_an_h100_offers_and_logs_to_wandb(path):
    from launch.preflight.plan import estimate

    config = load(path)
    # exact attention without the s^2 score matrix: flash attention (v1, v2), or from v3 SDPA, whose packed rows
    # Axolotl keeps apart through torch's varlen_attn on CUDA (tests/test_packing.py)
    assert config["attn_implementation"] == ("sdpa" if version(path) >= 3 else "flash_attention_2")
    assert config["bf16"] is True and config["optimizer"] == "adamw_bnb_8bit"
    if not config["gradient_checkpointing"]:  # only where the card's GPU holds the activations without it
        card = "h100-80gb"
        gpus = 8 if "70b" in path.parts[-3] else 1
        assert estimate(config, gpus, card)["fits_by_gpu"][card]["fits_checkpointing_off"]
    assert config["wandb_project"] == path.parts[-3] and config["auto_resume_from_checkpoints"] is True
    assert config["chat_template"] == "llama3"


def version(path: Path) -> int:
    return int(path.parent.name[1:])


LATEST_GPU = [max((p for p in GPU_RECIPES if p.parts[-3] == model and p.name == name), key=version)
              for model, name in sorted({(p.parts[-3], p.name) for p in GPU_RECIPES})]


@pytest.mark.parametrize("path", [p for p in LATEST_GPU if p.stem == "sft"], ids=lambda p: p.parts[-3])
def test_latest_openbiollm_sft_names_eot_id_as_the_end_of_turn_and_trains_it(path):
    config = load(path)
    assert config["eot_tokens"] == ["<|eot_id|>"]
    assert all(d["train_on_eos"] == "turn" and d["roles_to_train"] == ["assistant"]
               for d in config["datasets"] + config["test_datasets"])
    assert config["special_tokens"]["pad_token"] == "<|end_of_text|>"  # a pad token, never the end of turn


@pytest.mark.parametrize("path", LATEST_GPU, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_latest_openbiollm_recipes_name_no_key_their_stage_leaves_unread(path):
    config = load(path)
    assert "max_prompt_len" not in config
    assert ("rl_beta" in config) == (path.stem == "dpo") and ("eot_tokens" in config) == (path.stem == "sft")


def test_latest_8b_sft_trains_the_untrained_chat_rows_and_merges_them():
    config = load(max(ROOT.glob("recipes/openbiollm-8b/v*/sft.yaml"), key=version))
    header, end_header, eot = 128006, 128007, 128009  # Llama-3's <|start_header_id|>, <|end_header_id|>, <|eot_id|>
    assert config["peft_trainable_token_indices"] == {"embed_tokens": [header, end_header, eot], "lm_head": [eot]}
    assert config["merge_method"] == "legacy"  # the default merge drops the rows (tests/test_token_rows.py)
    assert "fix_untrained_tokens" not in config
