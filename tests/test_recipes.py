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
    config = load(path)
    assert config["bf16"] is True and config["attn_implementation"] == "flash_attention_2"
    assert config["gradient_checkpointing"] is True and config["optimizer"] == "adamw_bnb_8bit"
    assert config["wandb_project"] == path.parts[-3] and config["auto_resume_from_checkpoints"] is True
    assert config["chat_template"] == "llama3"
