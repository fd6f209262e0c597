"""QLoRA SFT throughput of a Llama-3-8B-shaped model under the 8B recipe: packed + flash attention vs Axolotl defaults.

    .venv/bin/python bench/gpu_throughput.py --out bench-results/ [--steps 40] [--warmup 5]   # one GPU
    .venv/bin/python bench/gpu_throughput.py --tiny --out /tmp/bench   # CPU smoke run of the same pipeline

The model is Llama-3-8B's architecture, randomly initialised from its config (no download), saved once
in bf16 for Axolotl to load in 4 bits. The rows are pre-tokenized random token ids whose lengths follow a
log-normal around --median-len tokens (clipped to the recipe's 1024), so padding costs what it would on
real rows. Each mode runs ``python -m axolotl.cli.train`` on the newest recipes/openbiollm-8b/v<N>/sft.yaml with:

    packed  sample_packing + pad_to_sequence_len, attn_implementation flash_attention_2 (sdpa when flash-attn
            is not installed: results.json says which)
    plain   Axolotl's defaults for both: no packing, its default attention

``bench/throughput_plugin.py`` (an Axolotl plugin, listed in each run's config) counts trained tokens (labels not
-100) at every step, times the steps after --warmup, and writes tokens/s per GPU, MFU and peak memory to
the JSON named by BENCH_RESULT. MFU = tokens/s x model FLOPs per token (launch/estimates.py, at the rows'
mean length) / the GPU's dense bf16 peak. Beside each figure: ``launch plan``'s estimate for the same settings
(its assumed utilisation, at the rows' mean length), the measured / estimated ratio, and the utilisation the
measurement implies (executed FLOPs / peak), the value for launch/plan.py's UTILISATION. The figures go to
docs/benchmarks.md by hand, with the card name.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.llama3_tokenizer import LLAMA3_SPECIAL_TOKENS  # noqa: E402
from launch import plan  # noqa: E402
from launch.base_models import model_folder  # noqa: E402
from launch.estimates import GIB, MODELS, Shape, flops_per_token, lora_params  # noqa: E402


def latest_recipe(model: str, stage: str) -> Path:
    """recipes/<model>/v<N>/<stage>.yaml with the highest N."""
    versions = [p for p in (ROOT / "recipes" / model).glob("v*")
                if p.name[1:].isdigit() and (p / f"{stage}.yaml").is_file()]
    if not versions:
        raise SystemExit(f"recipes/{model}/: no v<N>/{stage}.yaml")
    return max(versions, key=lambda p: int(p.name[1:])) / f"{stage}.yaml"


RECIPE = latest_recipe("openbiollm-8b", "sft")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, from NVIDIA's data sheets
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160, vocab=512)
MODES = {
    "packed": {"sample_packing": True, "pad_to_sequence_len": True, "eval_sample_packing": False,
               "attn_implementation": "flash_attention_2"},
    "plain": {},  # Axolotl's defaults: the recipe's packing and attention keys are removed
}


def llama_config(shape: Shape) -> Any:
    """A transformers LlamaConfig with Llama-3's dimensions and RoPE base."""
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate,
                       vocab_size=shape.vocab, rope_theta=500000.0, max_position_embeddings=8192,
                       bos_token_id=0, eos_token_id=1, pad_token_id=1, tie_word_embeddings=False)


def save_random_model(shape: Shape, folder: Path) -> None:
    """A randomly initialised model (bf16) and a small byte-level tokenizer, saved where Axolotl can load them."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    if (folder / "config.json").is_file():
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape)).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the trainer runs in another process and needs this memory
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(["random weights, random tokens"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=LLAMA3_SPECIAL_TOKENS, show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                            pad_token="<|end_of_text|>").save_pretrained(folder)


def token_rows(config: dict[str, Any], tokenizer_dir: Path) -> dict[str, list[int]] | list[int] | None:
    """The recipe's ``peft_trainable_token_indices`` (ids in its base model's vocabulary, read from the vendored
    tokenizer_config.json) as the ids of the same tokens in the tokenizer at ``tokenizer_dir``; unchanged while
    that folder holds no tokenizer yet (a config written before its model)."""
    from transformers import AutoTokenizer

    indices = config.get("peft_trainable_token_indices")
    folder = model_folder(config)
    if not indices or folder is None or not (tokenizer_dir / "tokenizer_config.json").is_file():
        return indices
    decoder = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["added_tokens_decoder"]
    names = {int(number): token["content"] for number, token in decoder.items()}
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def ours(ids: list[int]) -> list[int]:
        return [tokenizer.convert_tokens_to_ids(names[number]) for number in ids]

    return {layer: ours(ids) for layer, ids in indices.items()} if isinstance(indices, dict) else ours(indices)


def write_rows(path: Path, rows: int, median: int, limit: int, vocab: int, seed: int = 0) -> float:
    """Pre-tokenized rows (input_ids, attention_mask, labels) of log-normal lengths; returns the mean length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), 0.6, rows).astype(int), 16, limit)
    with open(path, "w", encoding="utf-8") as handle:
        for n in lengths:
            ids = rng.integers(2, vocab, int(n)).tolist()
            handle.write(json.dumps({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids}) + "\n")
    return float(lengths.mean())


def bench_config(mode: str, work: Path, steps: int, tiny: bool, recipe: Path = RECIPE,
                 attention: str | None = None) -> dict[str, Any]:
    """The 8B recipe, pointed at the random model and rows, with the mode's packing and attention (``attention``
    replaces flash_attention_2 where flash-attn is not installed)."""
    config = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    if config.get("peft_trainable_token_indices"):  # the recipe's token rows, as our tokenizer numbers them
        config["peft_trainable_token_indices"] = token_rows(config, work / "model")
    for key in ("test_datasets", "revision_of_model", "wandb_project", "wandb_log_model", "sample_packing",
                "pad_to_sequence_len", "attn_implementation", "evals_per_epoch", "save_steps", "save_total_limit",
                "auto_resume_from_checkpoints"):
        config.pop(key, None)
    config |= {"base_model": str(work / "model"), "datasets": [{"path": str(work / "rows.jsonl"), "ds_type": "json"}],
               "val_set_size": 0, "max_steps": steps, "save_strategy": "no", "logging_steps": 1,
               "output_dir": str(work / mode), "dataset_prepared_path": str(work / f"{mode}-prepared"),
               "plugins": ["bench.throughput_plugin.ThroughputPlugin"], **MODES[mode]}
    if tiny:  # what a CPU cannot run: bf16, 8-bit Adam, flash attention, fused LoRA kernels
        config |= {"bf16": False, "tf32": False, "optimizer": "adamw_torch", "sample_packing": False,
                   "attn_implementation": "sdpa", "lora_r": 8, "lora_alpha": 16, "micro_batch_size": 2,
                   **{f"lora_{k}_kernel": False for k in ("mlp", "qkv", "o", "embedding")}}
    elif attention and config.get("attn_implementation") == "flash_attention_2":
        config["attn_implementation"] = attention  # sdpa packs too; results.json records the attention each mode ran
    return config


def compare_with_plan(result: dict[str, Any], config: dict[str, Any], shape: Shape, mean: float) -> dict[str, Any]:
    """``launch plan``'s estimates for the same settings beside the measurement, the ratios, and the utilisation
    the measurement implies. Nothing on CPU (no GPU peak to compare with)."""
    gpu = next((key for key in plan.GPUS if key.split("-")[0].upper() in result.get("gpu", "")), None)
    if gpu is None or not result.get("tokens_per_s_per_gpu"):
        return {}
    peak = plan.GPUS[gpu][1]
    n_lora = lora_params(shape, int(config["lora_r"]), config["lora_target_modules"])
    flops = flops_per_token(shape, n_lora, round(mean), bool(config.get("gradient_checkpointing")), False)
    estimated = plan.UTILISATION * peak / flops["hardware"]
    memory = plan.memory(config, shape, "one GPU", 1, bool(config.get("gradient_checkpointing")))["total"] / GIB
    measured = result["tokens_per_s_per_gpu"]
    return {"plan_gpu": gpu, "estimated_tokens_per_s_per_gpu": estimated, "tokens_ratio": measured / estimated,
            "estimated_mfu": estimated * flops["model"] / peak, "estimated_memory_gib": memory,
            "memory_ratio": result["peak_reserved_gib"] / memory, "utilisation": measured * flops["hardware"] / peak,
            "planner_utilisation": plan.UTILISATION}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the model, rows, logs and results.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--median-len", type=int, default=300, help="median row length in tokens")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU: checks the pipeline only")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--recipe", type=Path, default=RECIPE, help=f"default: the newest 8B SFT recipe "
                                                                    f"({RECIPE.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    shape = TINY if args.tiny else MODELS["llama-3-8b"]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model: {'tiny' if args.tiny else 'llama-3-8b'} shape, random weights -> {args.out / 'model'}")
    save_random_model(shape, args.out / "model")
    recipe = yaml.safe_load(args.recipe.read_text(encoding="utf-8"))
    mean = write_rows(args.out / "rows.jsonl", args.rows, args.median_len, int(recipe["sequence_len"]), shape.vocab)
    results: dict[str, Any] = {"shape": shape.__dict__, "mean_row_tokens": mean, "steps": args.steps,
                               "warmup": args.warmup, "recipe": str(args.recipe.resolve().relative_to(ROOT))}
    for mode in args.modes:
        config = bench_config(mode, args.out, args.steps, args.tiny, args.recipe,
                              None if importlib.util.find_spec("flash_attn") else "sdpa")
        (args.out / f"{mode}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        env = {**os.environ, "BENCH_RESULT": str(args.out / f"{mode}.json"), "BENCH_WARMUP": str(args.warmup),
               "WANDB_MODE": "disabled", "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        print(f"{mode}: training {args.steps} steps (log: {args.out / f'{mode}.log'})")
        with open(args.out / f"{mode}.log", "w", encoding="utf-8") as log:
            code = subprocess.run([sys.executable, "-m", "axolotl.cli.train", str(args.out / f"{mode}.yaml")],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise SystemExit(f"{mode}: axolotl exited with {code}; see {args.out / f'{mode}.log'}")
        result = json.loads((args.out / f"{mode}.json").read_text(encoding="utf-8"))
        n_lora = lora_params(shape, int(config["lora_r"]), config["lora_target_modules"])
        per_token = flops_per_token(shape, n_lora, round(mean), bool(config.get("gradient_checkpointing")), False)
        peak = next((v for k, v in PEAK_BF16.items() if k in result.get("gpu", "")), None)
        if peak and result["tokens_per_s_per_gpu"]:
            result["mfu"] = result["tokens_per_s_per_gpu"] * per_token["model"] / peak
        result |= {"attn_implementation": config.get("attn_implementation", "axolotl default"),
                   **compare_with_plan(result, config, shape, mean)}
        results[mode] = result
        (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")  # each mode as it ends
        print(f"{mode}: {json.dumps(result)}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
