"""`python -m launch plan` says whether a recipe fits and how long it takes, with its LoRA sizes checked
against real peft models."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import ROOT

from launch.preflight import batches, estimates, plan, utilisation

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
    tokens = {"rows": 1100, "p50": 200, "p90": 400, "p99": 900, "p100": 1000}
    manifest = {"kinds": {"sft": {"outputs": {"sft.jsonl": {"rows": 1000}}, "tokens": tokens}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    recipe = ROOT / "recipes/openbiollm-8b/v1/sft.yaml"
    _, lines = plan.plan(recipe, 1, "h100-80gb", dataset=tmp_path)
    (line,) = [line for line in lines if line.strip().startswith("whole run")]
    steps = 4 * math.ceil(1000 / 12)  # the card's 4 epochs of batches of 12
    assert f"1,000 rows x 4 epochs, {steps:,} steps" in line
    found = plan.estimate(yaml.safe_load(recipe.read_text()), 1, "h100-80gb", dataset=tmp_path)
    assert found["whole_run"]["hours"] == pytest.approx(steps * found["step_s"] / 3600)
    lengths = np.sort(plan.load_rows(tmp_path, {"sequence_len": 1024}).lengths)  # the rows stand for the manifest's
    for p in (50, 90, 99):
        assert lengths[len(lengths) * p // 100] == pytest.approx(tokens[f"p{p}"], rel=0.02), p
    assert lengths.max() <= tokens["p100"] and 0.9 < found["micro_batch"]["padding"] / 0.5 < 2  # padded, not full


def bench_rows(folder):
    """The rows bench/gpu_throughput.py trained on for the 2026-12-04 H200 figures."""
    from bench.gpu_throughput import write_rows

    write_rows(folder / "rows.jsonl", rows=600, median=300, limit=1024, vocab=128256, seed=0)
    return folder / "rows.jsonl"


def planned(recipe, rows, *args):
    done = run_plan(str(recipe), "--gpus", "1", "--gpu", "h200-141gb", "--dataset", str(rows), "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def packed_copy(folder, recipe=ROOT / "recipes/openbiollm-8b/v2/sft.yaml"):
    config = yaml.safe_load(recipe.read_text()) | {"sample_packing": True, "pad_to_sequence_len": True}
    (folder / "packed.yaml").write_text(yaml.safe_dump(config))
    return folder / "packed.yaml"


def test_v2_unpacked_on_one_h200_predicts_the_measured_trained_tokens_within_15_percent(tmp_path):
    found = planned(ROOT / "recipes/openbiollm-8b/v2/sft.yaml", bench_rows(tmp_path))
    print(f"v2 predicted {found['trained_tokens_per_s_per_gpu']:,.0f}, measured 3,215 trained tokens/s")
    assert found["trained_tokens_per_s_per_gpu"] == pytest.approx(3215, rel=0.15)
    assert found["micro_batch"]["padding"] > 0.4  # most of what the GPU computes is padding
    assert found["executed_tokens_per_s_per_gpu"] > 2 * found["trained_tokens_per_s_per_gpu"]


def test_v2_packed_on_one_h200_predicts_the_measured_trained_tokens_within_15_percent(tmp_path):
    found = planned(packed_copy(tmp_path), bench_rows(tmp_path))
    print(f"v2 packed predicted {found['trained_tokens_per_s_per_gpu']:,.0f}, measured 7,166 trained tokens/s")
    assert found["trained_tokens_per_s_per_gpu"] == pytest.approx(7166, rel=0.15)
    assert found["micro_batch"]["packed"] and found["micro_batch"]["padding"] < 0.1


def test_one_utilisation_per_mode_fits_its_unpacked_and_packed_points():
    """The padding model's test: plain and packed ran the same kernels, so their executed FLOPs/s must agree."""
    points = {p.name: p for p in utilisation.load()}
    for unpacked, packed in (("plain", "packed"), ("fast_plain", "fast_packed")):
        assert points[unpacked].mode == points[packed].mode
        assert points[packed].tokens_per_s / points[unpacked].tokens_per_s > 2  # the measured gap is padding ...
        assert points[unpacked].utilisation == pytest.approx(points[packed].utilisation, rel=0.1)  # ... no more
    assert "| plain |" in "\n".join(utilisation.table(tuple(points.values())))


def test_measured_points_trained_on_the_bench_rows(tmp_path):
    rows = [len(json.loads(line)["input_ids"]) for line in bench_rows(tmp_path).read_text().splitlines()]
    stored = yaml.safe_load(utilisation.POINTS.read_text())["rows"]["bench-600"]["lengths"]
    assert stored == rows


def test_packing_fills_bins_as_axolotls_multipack_sampler():
    from axolotl.utils.samplers.multipack import pack_group

    lengths = np.random.default_rng(1).integers(16, 1024, 500).astype(np.int64)
    tokens, rows, _ = batches.first_fit(lengths, 1024, 200)
    theirs = pack_group(lengths, 0, 1024, len(lengths), 200, True)
    assert [int(lengths[b].sum()) for b in theirs] == tokens.tolist()
    assert [len(b) for b in theirs] == rows.tolist()


def test_plan_json_holds_throughput_utilisation_memory_fit_and_wall_clock(tmp_path):
    found = planned(ROOT / "recipes/openbiollm-8b/v3/sft.yaml", bench_rows(tmp_path))
    print(f"v3 predicted {found['trained_tokens_per_s_per_gpu']:,.0f} trained tokens/s "
          f"(utilisation {found['utilisation']['value']:.1%}; {found['utilisation']['fallback']})")
    assert found["trained_tokens_per_s_per_gpu"] > 0 and found["executed_tokens_per_s_per_gpu"] > 0
    assert found["utilisation"]["points"] and "checkpointing on there, off here" in found["utilisation"]["fallback"]
    assert found["memory"]["total_gib"] == pytest.approx(sum(v for k, v in found["memory"]["parts_gib"].items()
                                                             if k != "total"))
    fit = found["fits_by_gpu"]["h100-80gb"]
    assert fit["fits_checkpointing_off"] and fit["checkpointing_on_gib"] < fit["checkpointing_off_gib"]
    assert found["whole_run"]["hours"] == pytest.approx(found["whole_run"]["steps"] * found["step_s"] / 3600)


def test_h100_takes_the_h200_points_and_says_it_is_a_fallback():
    done = run_plan("recipes/openbiollm-8b/v2/sft.yaml", "--gpus", "1", "--gpu", "h100-80gb")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FALLBACK    no point on h100-80gb: h200-141gb's (h100-80gb has its dense bf16 peak" in done.stdout
    same = run_plan("recipes/openbiollm-8b/v2/sft.yaml", "--gpus", "1", "--gpu", "h200-141gb")
    assert "FALLBACK" not in same.stdout and "measured: plain, packed on h200-141gb" in same.stdout


def test_measured_peak_is_printed_beside_the_memory_estimate():
    done = run_plan("recipes/openbiollm-8b/v2/sft.yaml", "--gpus", "1", "--gpu", "h200-141gb")
    assert "measured (plain, h200-141gb, 2026-12-04): peak reserved 59.1 GiB" in done.stdout
    assert "peak allocated not recorded" in done.stdout  # the run's 7.28 GiB was not the training peak
    for kind in plan.GPUS:
        assert any(line.strip().startswith(f"{kind} ") and "checkpointing on" in line and ", off" in line
                   for line in done.stdout.splitlines()), kind


def test_utilisation_override_replaces_the_measured_points(tmp_path):
    rows = bench_rows(tmp_path)
    at = {u: planned(ROOT / "recipes/openbiollm-8b/v2/sft.yaml", rows, "--utilisation", str(u)) for u in (0.2, 0.4)}
    assert at[0.4]["trained_tokens_per_s_per_gpu"] == pytest.approx(2 * at[0.2]["trained_tokens_per_s_per_gpu"])
    assert at[0.2]["utilisation"]["source"] == "--utilisation"


@pytest.mark.parametrize("args, says", [
    (["--gpu", "b200-180gb"], "unknown GPU kind 'b200-180gb'"),
    (["--gpu", "h100-80gb", "--dataset", "{bad}"], "line 1: not a pre-tokenized row"),
    (["--gpu", "h100-80gb", "--dataset", "{missing}"], "neither a JSONL file"),
])
def test_bad_gpu_or_dataset_is_one_line(tmp_path, args, says):
    (tmp_path / "bad.jsonl").write_text('{"messages": []}\n')
    args = [a.format(bad=tmp_path / "bad.jsonl", missing=tmp_path / "nowhere") for a in args]
    done = run_plan("recipes/openbiollm-8b/v2/sft.yaml", "--gpus", "1", *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_out_of_memory_suggestion_names_a_setting_that_fits():
    recipe = ROOT / "recipes/openbiollm-8b/v2/sft.yaml"
    config = yaml.safe_load(recipe.read_text()) | {"gradient_checkpointing": False}
    line = plan.suggestion(config, "h100-80gb")
    assert "\n" not in line and "gradient_checkpointing on" in line, line
    size, steps = (int(line.split(f"{key} ")[1].split()[0])
                   for key in ("micro_batch_size", "gradient_accumulation_steps"))
    assert size * steps == 12 and size < 12  # the examples per step kept
    _, shape = plan.model_shape(config, None)
    suggested = config | {"micro_batch_size": size}
    assert plan.memory(suggested, shape, "one GPU", 1, False)["total"] / estimates.GIB <= plan.GPUS["h100-80gb"][0]
    huge = yaml.safe_load((ROOT / "recipes/openbiollm-70b/v2/sft.yaml").read_text()) | {"lora_r": 8192}
    assert "nothing fits one a100-80gb" in plan.suggestion(huge, "a100-80gb")


def test_every_measured_point_is_the_figure_its_committed_results_file_holds():
    """preflight/measured_points.yaml copies GPU runs' figures from docs/gpu-results/; none drifts."""
    points = yaml.safe_load((ROOT / "launch/preflight/measured_points.yaml").read_text(encoding="utf-8"))["points"]
    assert points
    for point in points:
        path, where = point["source"].split(" ", 1)
        assert path.startswith("docs/gpu-results/"), point["name"]
        found = json.loads((ROOT / path).read_text(encoding="utf-8"))
        for key in where.split("."):
            found = found[key]
        assert found["tokens_per_s_per_gpu"] == pytest.approx(point["trained_tokens_per_s_per_gpu"], abs=0.01)
        assert found["peak_reserved_gib"] == pytest.approx(point["peak_reserved_gib"], abs=0.01)
