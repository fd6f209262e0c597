"""`python -m launch plan` says whether a recipe fits and how long it takes, with its LoRA sizes checked
against real peft models."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from helpers import ROOT

from launch import estimates, plan

ALL_LINEAR = list(estimates.LINEAR_NAMES)


def run_plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch", "plan", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def tiny_llama():
    """A random Llama built from a config only: 2 layers, grouped-query attention, untied head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=160, vocab_size=300, tie_word_embeddings=False)
    return config, LlamaForCausalLM(config)


def test_70b_sft_on_eight_h100s_fits_and_shows_each_component():
    done = run_plan("recipes/openbiollm-70b/v1/sft.yaml", "--gpus", "8", "--gpu", "h100-80gb")
    assert done.returncode == 0, done.stdout + done.stderr
    for part in ("base weights (NF4)", "LoRA weights", "LoRA gradients", "optimizer states", "activations",
                 "(checkpointing off:", "logits and loss", "overhead", "verdict               fits",
                 "engine   zero3", "zero2", "tokens/s per GPU", "preemption loses at most"):
        assert part in done.stdout, part
    print(done.stdout)


def test_8b_sft_on_one_h100_fits():
    done = run_plan("recipes/openbiollm-8b/v1/sft.yaml", "--gpus", "1", "--gpu", "h100-80gb")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict               fits" in done.stdout and "engine   one GPU" in done.stdout
    print(done.stdout)


def test_70b_on_one_gpu_says_plainly_it_does_not_fit():
    done = run_plan("recipes/openbiollm-70b/v1/sft.yaml", "--gpus", "1", "--gpu", "a100-80gb")
    assert done.returncode == 1
    assert "DOES NOT FIT" in done.stdout and "over by" in done.stdout


def test_70b_recipe_names_an_engine_that_fits_where_zero2_and_ddp_do_not():
    config = yaml.safe_load((ROOT / "recipes/openbiollm-70b/v1/sft.yaml").read_text())
    _, shape = plan.model_shape(config, None)
    capacity = plan.GPUS["h100-80gb"][0] * estimates.GIB
    total = {engine: plan.memory(config, shape, engine, 8, True)["total"] for engine in ("ddp", "zero2", "zero3")}
    assert plan.engine_of(config, 8) == "zero3"
    assert total["zero3"] <= capacity < total["zero2"] < total["ddp"]


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_70b_checkpoints_often_enough_to_lose_at_most_30_minutes(stage):
    _, lines = plan.plan(ROOT / f"recipes/openbiollm-70b/v1/{stage}.yaml", 8, "h100-80gb")
    (line,) = [line for line in lines if "preemption loses at most" in line]
    assert "within the 30 min target" in line


def test_lora_count_matches_peft_on_a_tiny_llama():
    from peft import LoraConfig, get_peft_model

    config, model = tiny_llama()
    shape = estimates.shape_from_config(config.to_dict())
    assert shape.params() == model.num_parameters()
    for targets in (ALL_LINEAR, ["q_proj", "v_proj"]):
        _, fresh = tiny_llama()
        peft_model = get_peft_model(fresh, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
        trainable, _ = peft_model.get_nb_trainable_parameters()
        assert estimates.lora_params(shape, 8, targets) == trainable, targets


def test_measured_adapter_is_shown_beside_the_estimate(tmp_path):
    from peft import LoraConfig, get_peft_model

    config, model = tiny_llama()
    (tmp_path / "base").mkdir()
    config.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR))
    run = tmp_path / "run"
    peft_model.save_pretrained(run / "adapter")
    recipe = {"base_model": str(tmp_path / "base"), "lora_r": 4, "lora_target_modules": ALL_LINEAR,
              "optimizer": "adamw_torch"}
    (run / "config.yaml").write_text(yaml.safe_dump(recipe))
    trainable, _ = peft_model.get_nb_trainable_parameters()
    lines = plan.measured(run)
    assert f"adapter {trainable:,} parameters" in lines[0] and f"estimated {trainable:,} parameters" in lines[0]
    assert "the run kept no checkpoint" in lines[1]


def test_whole_run_time_comes_from_the_dataset_manifest(tmp_path):
    manifest = {"kinds": {"sft": {"outputs": {"sft.jsonl": {"rows": 1000}},
                                  "tokens": {"rows": 1100, "p50": 200, "p90": 400, "p99": 900, "p100": 1000}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    recipe = ROOT / "recipes/openbiollm-8b/v1/sft.yaml"
    _, lines = plan.plan(recipe, 1, "h100-80gb", dataset=tmp_path)
    (line,) = [line for line in lines if line.strip().startswith("whole run")]
    steps = 4 * math.ceil(1000 / 12)  # the card's 4 epochs of batches of 12
    assert f"1,000 rows, {steps:,} steps of 12 x ~400 tokens" in line
