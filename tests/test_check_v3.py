"""`launch check` on the v3 recipes: a plugin's keys are known to the recipes that list it, and a packed recipe's
batch is the card's 12 examples per device, counted in examples per step, not in packed bins.

That the four v3 recipes pass outright is tests/test_recipe_rules.py's test_every_latest_recipe_passes_launch_check.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from launch.preflight.check import check, check_recipe, unknown_keys
from launch.preflight.packed_batch import bench_rows, packed_batch

SFT_8B = ROOT / "recipes/openbiollm-8b/v3/sft.yaml"
SFT_70B = ROOT / "recipes/openbiollm-70b/v3/sft.yaml"
V2_SFT_8B = ROOT / "recipes/openbiollm-8b/v2/sft.yaml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def variant(tmp_path: Path, source: Path, old: str, new: str) -> Path:
    """A copy of a recipe with one edit, under a folder named like its model's (so the card rules apply)."""
    text = source.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / source.parts[-3] / "v99" / source.name
    path.parent.mkdir(parents=True)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_plugin_keys_are_known_only_to_recipes_that_list_the_plugin():
    v3, v2_with_liger = load(SFT_8B), load(V2_SFT_8B) | {"liger_rope": True}
    assert unknown_keys(v3) == []
    assert [key for key, _ in unknown_keys(v2_with_liger)] == ["liger_rope"]
    assert unknown_keys(v3) == []  # whichever recipe came first


def test_misspelt_liger_key_is_reported_with_a_suggestion(tmp_path):
    recipe = variant(tmp_path, SFT_8B, "\nliger_rms_norm:", "\nliger_rms_nrom:")
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), start=1) if "liger_rms_nrom" in text)
    assert check(recipe) == [f"{recipe}:{line}: unknown key 'liger_rms_nrom', Axolotl would ignore it; "
                             "did you mean 'liger_rms_norm'?"]


def test_the_plugins_own_validation_runs(tmp_path):
    recipe = variant(tmp_path, SFT_8B, "\nliger_rope: true", "\nliger_rope: true\nliger_use_token_scaling: true")
    assert any("requires `liger_fused_linear_cross_entropy` enabled" in p for p in check(recipe))


@pytest.mark.parametrize(("recipe", "gpus", "card"), [(SFT_8B, "1 GPU", 12), (SFT_70B, "8 GPUs", 96)],
                         ids=["8b", "70b"])
def test_launch_check_prints_a_packed_recipes_tokens_and_examples_per_step(recipe, gpus, card):
    printed = check_recipe(recipe)[1]
    (line,) = [text for text in printed if text.startswith("  batch: ")]
    assert f"4 packed bins x 1024 tokens x {gpus} = {4096 * card // 12:,} tokens per step" in line
    assert f"(the card and v2: {card} rows); lr 0.0002 and warmup 100 steps as the card" in line
    examples = float(re.search(r"~([\d.]+) examples per step", line).group(1))
    assert abs(examples - card) <= 0.25 * card
    assert any(text.startswith("  rows: ") and "packed bins" in text for text in printed)


def test_at_the_bench_rows_four_bins_hold_about_the_cards_twelve_examples(tmp_path):
    batch = packed_batch(load(SFT_8B), 1, tmp_path)  # no mixture built under tmp_path
    assert batch.tokens == 4096 and batch.mean == pytest.approx(348.3, abs=0.1)
    assert 0.9 < batch.efficiency < 1 and batch.examples == pytest.approx(11.3, abs=0.2)
    assert "data/build/openbiollm-v1 is not built" in batch.source
    assert packed_batch(load(SFT_70B), 8, tmp_path).examples == pytest.approx(8 * batch.examples)


def test_the_bench_rows_are_the_ones_bench_writes(tmp_path):
    from bench.gpu_throughput import write_rows

    assert bench_rows(1024).lengths.mean() == write_rows(tmp_path / "rows.jsonl", 600, 300, 1024, vocab=1000)


def write_manifest(root: Path, tokens: dict) -> None:
    folder = root / "data/build/openbiollm-v1"
    folder.mkdir(parents=True)
    manifest = {"kinds": {"sft": {"tokens": tokens, "outputs": {"sft.jsonl": {"rows": 50_000}}}}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_a_built_mixtures_mean_row_length_is_used(tmp_path):
    write_manifest(tmp_path, {"p50": 380, "p90": 700, "p99": 990, "p100": 1024, "mean": 420.0})
    batch = packed_batch(load(SFT_8B), 1, tmp_path)
    assert batch.mean == 420.0 and batch.source == "mean from data/build/openbiollm-v1/manifest.json"
    assert batch.examples == pytest.approx(4096 * batch.efficiency / 420)


def test_without_a_mean_it_is_estimated_from_the_percentiles_and_says_so(tmp_path):
    write_manifest(tmp_path, {"p50": 380, "p90": 700, "p99": 990, "p100": 1024})
    batch = packed_batch(load(SFT_8B), 1, tmp_path)
    assert 380 < batch.mean < 700 and "estimated from the length percentiles" in batch.source


def test_packed_recipe_with_the_unpacked_micro_batch_of_12_is_refused(tmp_path):
    recipe = variant(tmp_path, SFT_8B, "\nmicro_batch_size: 4 ", "\nmicro_batch_size: 12 ")
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), start=1)
                if text.startswith("micro_batch_size"))
    (problem,) = check(recipe)
    assert problem.startswith(f"{recipe}:{line}: micro_batch_size 12: packed bins of 1024 tokens on 1 GPU make "
                              "12,288 tokens, ~3")  # ~34 examples
    assert re.search(r"~3\d\.\d examples per step at 348 tokens per row; the card trained 12 examples per step "
                     r"\(train_batch_size 12 x num_devices 1\): a packed step must hold that within 25%$", problem)


def test_axolotls_plugin_manager_holds_only_the_checked_recipes_plugins_and_is_restored():
    from axolotl.integrations.base import PluginManager

    from launch.preflight.plugin_schema import recipe_plugins

    manager = PluginManager.get_instance()
    before = manager.plugins
    with recipe_plugins(load(SFT_8B)):
        assert list(manager.plugins) == ["axolotl.integrations.liger.LigerPlugin"]
        with recipe_plugins(load(V2_SFT_8B)):
            assert list(manager.plugins) == []
        assert list(manager.plugins) == ["axolotl.integrations.liger.LigerPlugin"]
    assert manager.plugins is before


def test_a_plugin_that_does_not_load_is_reported(tmp_path):
    recipe = variant(tmp_path, SFT_8B, "liger.LigerPlugin", "liger.LigerPlugn")
    problems = check(recipe)
    assert any("plugin 'axolotl.integrations.liger.LigerPlugn' does not load, so Axolotl would train without it: "
               "AttributeError" in p for p in problems), problems
    assert any("unknown key 'liger_rope'" in p for p in problems)
