"""v3's packed rows are kept apart, and its trainable token rows still train: real Axolotl on the tiny Llama-3.

recipes/openbiollm-8b/v3/sft.yaml packs rows into bins (sample_packing, pad_to_sequence_len) and runs SDPA.
Axolotl 0.19 keeps packed rows apart under SDPA from the position ids (torch's varlen_attn on CUDA in bf16, a
block-diagonal mask elsewhere, as here); its own equivalence test covers flash attention only. These tests run
the v3 recipe as written, with only what a CPU cannot run swapped (bench/gpu_throughput.py ``cpu_config``: no
bf16, no Triton kernels, torch's AdamW), through ``python -m axolotl.cli.train``:

- bench/packing_probe.py takes the trainer's own first packed batch and compares each row's loss packed with the
  same row alone, and with a control whose rows are not kept apart (so the comparison can fail);
- three training steps move every trainable token row (the <|eot_id|> LM-head row among them) off the base's.
The GPU check (bench/gpu_check.py) repeats both on CUDA with the fused LoRA kernels and Liger.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT

from bench.gpu_throughput import CLUSTER_ONLY, cpu_config, token_rows

pytestmark = pytest.mark.slow
RECIPE = ROOT / "recipes/openbiollm-8b/v3/sft.yaml"


def v3_on_cpu(model: Path, data: Path, out: Path, steps: int, plugins: list[str]) -> Path:
    """The v3 SFT recipe on the tiny model and data, CPU substitutions only; returns the config's path."""
    config = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    config["peft_trainable_token_indices"] = token_rows(config, model)
    for key in CLUSTER_ONLY:
        config.pop(key, None)
    config["datasets"][0]["path"] = str(data)
    config |= {"base_model": str(model), "sequence_len": 2048, "val_set_size": 0, "max_steps": steps,
               "warmup_steps": 0, "save_strategy": "no", "logging_steps": 1, "output_dir": str(out / "output"),
               "dataset_prepared_path": str(out / "prepared"), "plugins": plugins}
    config = cpu_config(config) | {"micro_batch_size": 1, "learning_rate": 0.01}
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def train(config: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "axolotl.cli.train", str(config)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_packed_rows_give_each_row_its_loss_alone_under_sdpa(tiny_llama3, small_data, tmp_path):
    result = tmp_path / "probe.json"
    train(v3_on_cpu(tiny_llama3, small_data["sft"], tmp_path, 1, ["bench.packing_probe.PackingProbePlugin"]),
          {"PACKING_PROBE_RESULT": str(result)})
    probe = json.loads(result.read_text(encoding="utf-8"))
    assert probe["attn_implementation"] == "sdpa" and "attention_mask" not in probe["batch_keys"]
    assert len(probe["rows"]) >= 4 and probe["bin_tokens"] == 2048  # several rows share the bin
    # 1e-5: fp32 rounding of two SDPA kernels (masked, block-diagonal) on ~2k tokens, ~100 times below the
    # control's change (> 1e-3, below)
    for row in probe["rows"]:
        assert row["loss_packed"] == pytest.approx(row["loss_alone"], abs=1e-5)
        assert row["attention_difference"] < 1e-5
    # the control (position ids running on, rows not kept apart) changes every row after the first
    assert probe["max_loss_difference_not_kept_apart"] > 1e-3
    assert probe["min_attention_difference_not_kept_apart"] > 1e-2


def base_rows(model: Path, layer: str, rows: list[int]) -> torch.Tensor:
    from safetensors import safe_open

    name = "lm_head.weight" if layer == "lm_head" else "model.embed_tokens.weight"
    with safe_open(str(model / "model.safetensors"), "pt") as handle:
        return handle.get_tensor(name)[rows]


def test_trainable_token_rows_move_under_v3_settings(tiny_llama3, small_data, tmp_path):
    from safetensors import safe_open

    config = v3_on_cpu(tiny_llama3, small_data["sft"], tmp_path, 3, [])
    train(config)
    indices = yaml.safe_load(config.read_text(encoding="utf-8"))["peft_trainable_token_indices"]
    with safe_open(str(tmp_path / "output/adapter_model.safetensors"), "pt") as handle:
        deltas = {key: handle.get_tensor(key) for key in handle.keys()  # noqa: SIM118
                  if "trainable_tokens_delta" in key}
    assert set(indices) == {"embed_tokens", "lm_head"}
    for layer, rows in indices.items():
        trained = next(value for key, value in deltas.items() if f"{layer}.token_adapter" in key)
        moved = (trained.float() - base_rows(tiny_llama3, layer, rows).float()).abs().amax(dim=1)
        assert bool((moved > 1e-6).all()), f"{layer}: rows {rows} moved by {moved.tolist()}"
