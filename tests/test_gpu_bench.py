"""The GPU benchmark's configs are ones Axolotl accepts, and its pipeline runs end to end (on CPU, tiny)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_throughput as bench


@pytest.mark.parametrize("mode", list(bench.MODES))
def test_benchmark_configs_keep_the_8b_recipe_and_pass_axolotl_validation(mode, tmp_path):
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    config = bench.bench_config(mode, tmp_path, steps=10, tiny=False, attention="sdpa")
    validated = validate_config(DictDefault(config))
    v3 = mode.startswith("v3")
    assert (validated.lora_r, validated.sequence_len, validated.optimizer) == (128, 1024, "adamw_bnb_8bit")
    assert validated.micro_batch_size == (4 if v3 else 12) and validated.attn_implementation == "sdpa"
    assert bool(validated.sample_packing) is (mode != "v2")
    assert validated.gradient_checkpointing is (mode in ("v2", "v2_packed", "v3_ckpt"))
    assert bool(validated.lora_mlp_kernel) is v3 and (bench.LIGER in (validated.plugins or [])) is v3
    assert bool(config.get("liger_fused_linear_cross_entropy")) is (mode == "v3_flce")  # a Liger key: not in the
    # schema validate_config sees here; Axolotl's CLI merges the plugin's keys first


def test_rows_have_the_lengths_they_claim(tmp_path):
    mean = bench.write_rows(tmp_path / "rows.jsonl", rows=200, median=100, limit=256, vocab=500)
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    lengths = [len(r["input_ids"]) for r in rows]
    assert len(rows) == 200 and max(lengths) <= 256 and abs(sum(lengths) / 200 - mean) < 1e-9
    assert all(r["labels"] == r["input_ids"] and min(r["input_ids"]) >= 2 and max(r["input_ids"]) < 500
               for r in rows)


@pytest.mark.slow
def test_tiny_benchmark_runs_axolotl_and_reports_tokens_per_second(tmp_path):
    done = subprocess.run([sys.executable, "bench/gpu_throughput.py", "--tiny", "--out", str(tmp_path), "--steps", "4",
                           "--warmup", "1", "--rows", "64", "--median-len", "40", "--modes", "v2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "v2.log").read_text()[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())["v2"]
    assert result["timed_steps"] == 3 and result["tokens"] > 0 and result["tokens_per_s_per_gpu"] > 0


def test_the_recipes_token_rows_become_the_same_tokens_of_the_benchmarks_tokenizer(tiny_llama3):
    import yaml
    from transformers import AutoTokenizer

    config = yaml.safe_load(bench.MODES["v3"][0].read_text(encoding="utf-8"))
    assert config["peft_trainable_token_indices"]["embed_tokens"] == [128006, 128007, 128009]  # Llama-3's ids
    rows = bench.token_rows(config, tiny_llama3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    assert [tokenizer.convert_ids_to_tokens(i) for i in rows["embed_tokens"]] == \
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    assert tokenizer.convert_ids_to_tokens(rows["lm_head"]) == ["<|eot_id|>"]
