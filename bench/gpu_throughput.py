"""QLoRA SFT throughput of a Llama-3-8B-shaped model under the 8B recipes, version against version, in one run.

    .venv/bin/python bench/gpu_throughput.py --out bench-results/ [--steps 40] [--warmup 5]   # one GPU: v2 and v3
    .venv/bin/python bench/gpu_throughput.py --tiny --out /tmp/bench   # CPU smoke run of the same pipeline

The model is Llama-3-8B's architecture, randomly initialised from its config (no download), saved once
in bf16 for Axolotl to load in 4 bits. The rows are pre-tokenized random token ids whose lengths follow a
log-normal around --median-len tokens (clipped to the recipe's 1024), so padding costs what it would on
real rows. Each mode runs ``python -m axolotl.cli.train`` on one recipe as it is written, pointed at the random
model and rows (MODES):

    v2         recipes/openbiollm-8b/v2/sft.yaml: batches of 12 rows padded to their longest, PEFT's LoRA path,
               gradient checkpointing
    v3         recipes/openbiollm-8b/v3/sft.yaml: packed bins, fused LoRA kernels, Liger, no checkpointing
    v2_packed  v2 with sample_packing and pad_to_sequence_len (the planner's packed reference)
    v3_flce    v3 with Liger's fused linear cross-entropy;  v3_ckpt  v3 with gradient checkpointing

flash_attention_2 becomes sdpa where flash-attn is not installed (results.json records the attention each mode
really ran). Every mode runs with PYTORCH_ALLOC_CONF=expandable_segments:True, as the launcher sets it.
``bench/throughput_plugin.py`` (an Axolotl plugin, listed in each run's config) counts trained tokens (labels not
-100) at every step, times the steps after --warmup, and writes tokens/s per GPU, peak memory and the attention
run to the JSON named by BENCH_RESULT. MFU = tokens/s x model FLOPs per token (preflight/estimates.py, at the rows'
mean length) / the GPU's dense bf16 peak. Beside each figure: ``launch plan --json``'s prediction for the same
config and rows, and the measured / predicted ratio. ``--probe`` adds bench/packing_probe.py to the packed modes:
each row's loss packed against alone, on the first batch. The figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.llama3_tokenizer import LLAMA3_SPECIAL_TOKENS  # noqa: E402
from launch.preflight import plan  # noqa: E402
from launch.preflight.base_models import model_folder  # noqa: E402
from launch.preflight.estimates import MODELS, Shape, flops_per_token, lora_params  # noqa: E402


def latest_recipe(model: str, stage: str) -> Path:
    """recipes/<model>/v<N>/<stage>.yaml with the highest N."""
    versions = [p for p in (ROOT / "recipes" / model).glob("v*")
                if p.name[1:].isdigit() and (p / f"{stage}.yaml").is_file()]
    if not versions:
        raise SystemExit(f"recipes/{model}/: no v<N>/{stage}.yaml")
    return max(versions, key=lambda p: int(p.name[1:])) / f"{stage}.yaml"


PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, from NVIDIA's data sheets
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=160, vocab=512)
MODES = {  # mode: (recipe, keys set on top of it)
    "v2": (ROOT / "recipes/openbiollm-8b/v2/sft.yaml", {}),
    "v3": (ROOT / "recipes/openbiollm-8b/v3/sft.yaml", {}),
    "v2_packed": (ROOT / "recipes/openbiollm-8b/v2/sft.yaml", {"sample_packing": True, "pad_to_sequence_len": True,
                                                              "eval_sample_packing": False}),
    "v3_flce": (ROOT / "recipes/openbiollm-8b/v3/sft.yaml", {"liger_fused_linear_cross_entropy": True}),
    "v3_ckpt": (ROOT / "recipes/openbiollm-8b/v3/sft.yaml", {"gradient_checkpointing": True}),
}
ALLOC_CONF = "expandable_segments:True"  # what the launcher sets for every training process
LIGER = "axolotl.integrations.liger.LigerPlugin"
# A recipe's keys for a real run on a cluster (held-out eval, hub revision, wandb, checkpoints): a timed run drops them
CLUSTER_ONLY = ("test_datasets", "revision_of_model", "wandb_project", "wandb_log_model", "evals_per_epoch",
                "save_steps", "save_total_limit", "auto_resume_from_checkpoints")


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


def cpu_config(config: dict[str, Any]) -> dict[str, Any]:
    """What a CPU cannot run, swapped for what it can: bf16/tf32 off, torch's AdamW, no Triton kernels (LoRA
    kernels, Liger), SDPA; LoRA r 8 and micro-batches of 2 for a tiny model. Packing stays as the recipe says."""
    config = {k: v for k, v in config.items() if not k.startswith("liger_")}
    plugins = [p for p in config.get("plugins") or [] if p != LIGER]
    config |= {"bf16": False, "tf32": False, "optimizer": "adamw_torch", "attn_implementation": "sdpa",
               "lora_r": 8, "lora_alpha": 16, "micro_batch_size": 2, "plugins": plugins,
               **{f"lora_{k}_kernel": False for k in ("mlp", "qkv", "o", "embedding")}}
    return config


def bench_config(mode: str, work: Path, steps: int, tiny: bool, attention: str | None = None,
                 probe: bool = False) -> dict[str, Any]:
    """The mode's recipe as written, pointed at the random model and rows; ``attention`` replaces
    flash_attention_2 where flash-attn is not installed; ``probe`` adds the packing probe to a packed mode."""
    recipe, keys = MODES[mode]
    config = yaml.safe_load(recipe.read_text(encoding="utf-8")) | keys
    if config.get("peft_trainable_token_indices"):  # the recipe's token rows, as our tokenizer numbers them
        config["peft_trainable_token_indices"] = token_rows(config, work / "model")
    for key in CLUSTER_ONLY:
        config.pop(key, None)
    plugins = [*(config.get("plugins") or []), "bench.throughput_plugin.ThroughputPlugin"]
    if probe and config.get("sample_packing"):
        plugins.append("bench.packing_probe.PackingProbePlugin")
    config |= {"base_model": str(work / "model"), "datasets": [{"path": str(work / "rows.jsonl"), "ds_type": "json"}],
               "val_set_size": 0, "max_steps": steps, "save_strategy": "no", "logging_steps": 1,
               "output_dir": str(work / mode), "dataset_prepared_path": str(work / f"{mode}-prepared"),
               "plugins": plugins}
    if tiny:
        config = cpu_config(config)
    elif attention and config.get("attn_implementation") == "flash_attention_2":
        config["attn_implementation"] = attention  # results.json records the attention each mode really ran
    return config


def planned(config_path: Path, rows: Path, gpu: str) -> dict[str, Any]:
    """``launch plan --json`` for a bench config on one ``gpu`` with the bench's rows; {"error": ...} if it fails."""
    command = [sys.executable, "-m", "launch", "plan", str(config_path), "--gpus", "1", "--gpu", gpu,
               "--dataset", str(rows), "--json"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit {done.returncode}"]}


def compare_with_plan(result: dict[str, Any], config_path: Path, rows: Path) -> dict[str, Any]:
    """The planner's prediction for the same config and rows beside the measurement. Nothing on CPU."""
    gpu = next((key for key in plan.GPUS if key.split("-")[0].upper() in result.get("gpu", "")), None)
    if gpu is None or not result.get("tokens_per_s_per_gpu"):
        return {}
    predicted = planned(config_path, rows, gpu)
    tokens = predicted.get("trained_tokens_per_s_per_gpu")
    memory = predicted.get("memory_gib") or (predicted.get("memory") or {}).get("total_gib")
    found: dict[str, Any] = {"plan_gpu": gpu, "plan": predicted}
    if tokens:
        found |= {"estimated_tokens_per_s_per_gpu": tokens, "tokens_ratio": result["tokens_per_s_per_gpu"] / tokens}
    if memory and result.get("peak_allocated_gib"):
        found |= {"estimated_memory_gib": memory, "memory_ratio": result["peak_allocated_gib"] / memory}
    return found


def run_mode(mode: str, args: argparse.Namespace, shape: Shape, mean: float) -> dict[str, Any]:
    """Train one mode for --steps steps; its throughput, memory, MFU and the planner's figures."""
    config = bench_config(mode, args.out, args.steps, args.tiny,
                          None if importlib.util.find_spec("flash_attn") else "sdpa", args.probe)
    config_path = args.out / f"{mode}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "BENCH_RESULT": str(args.out / f"{mode}.json"), "BENCH_WARMUP": str(args.warmup),
           "PACKING_PROBE_RESULT": str(args.out / f"{mode}.probe.json"), "PYTORCH_ALLOC_CONF": ALLOC_CONF,
           "WANDB_MODE": "disabled", "AXOLOTL_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    print(f"{mode}: training {args.steps} steps (log: {args.out / f'{mode}.log'})", flush=True)
    with open(args.out / f"{mode}.log", "w", encoding="utf-8") as log:
        code = subprocess.run([sys.executable, "-m", "axolotl.cli.train", str(config_path)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{mode}: axolotl exited with {code}; see {args.out / f'{mode}.log'}")
    result = json.loads((args.out / f"{mode}.json").read_text(encoding="utf-8"))
    n_lora = lora_params(shape, int(config["lora_r"]), config["lora_target_modules"])
    per_token = flops_per_token(shape, n_lora, round(mean), bool(config.get("gradient_checkpointing")), False)
    peak = next((v for k, v in PEAK_BF16.items() if k in result.get("gpu", "")), None)
    if peak and result["tokens_per_s_per_gpu"]:
        result["mfu"] = result["tokens_per_s_per_gpu"] * per_token["model"] / peak
    result |= {"recipe": str(MODES[mode][0].relative_to(ROOT)), "attn_implementation": result.get("attention"),
               "sample_packing": bool(config.get("sample_packing")),
               "gradient_checkpointing": bool(config.get("gradient_checkpointing")),
               **compare_with_plan(result, config_path, args.out / "rows.jsonl")}
    probe = args.out / f"{mode}.probe.json"
    if probe.is_file():
        result["packing_probe"] = json.loads(probe.read_text(encoding="utf-8"))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the model, rows, logs and results.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--median-len", type=int, default=300, help="median row length in tokens")
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model on CPU: checks the pipeline only")
    parser.add_argument("--modes", nargs="+", default=["v2", "v3"], choices=list(MODES))
    parser.add_argument("--probe", action="store_true", help="the packing probe in the packed modes")
    parser.add_argument("--budget", type=float, help="seconds: a mode after the first two starts only while the "
                                                     "time left is 1.2x the longest mode so far")
    args = parser.parse_args(argv)
    started = time.monotonic()
    shape = TINY if args.tiny else MODELS["llama-3-8b"]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model: {'tiny' if args.tiny else 'llama-3-8b'} shape, random weights -> {args.out / 'model'}", flush=True)
    save_random_model(shape, args.out / "model")
    limit = int(yaml.safe_load(MODES["v2"][0].read_text(encoding="utf-8"))["sequence_len"])
    mean = write_rows(args.out / "rows.jsonl", args.rows, args.median_len, limit, shape.vocab)
    results: dict[str, Any] = {"shape": shape.__dict__, "mean_row_tokens": mean, "steps": args.steps,
                               "warmup": args.warmup, "rows": args.rows, "median_len": args.median_len}
    longest = 0.0
    for number, mode in enumerate(args.modes):
        left = args.budget - (time.monotonic() - started) if args.budget else None
        if number >= 2 and left is not None and left < 1.2 * longest:
            print(f"{mode}: skipped, {left:.0f} s of the budget left", flush=True)
            results.setdefault("skipped", []).append(mode)
            continue
        begun = time.monotonic()
        results[mode] = run_mode(mode, args, shape, mean)
        longest = max(longest, time.monotonic() - begun)
        if "v2" in results and "v3" in results:
            results["v3_over_v2"] = results["v3"]["tokens_per_s_per_gpu"] / results["v2"]["tokens_per_s_per_gpu"]
        (args.out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")  # each mode as it ends
        print(f"{mode}: {json.dumps({k: v for k, v in results[mode].items() if k != 'plan'})}", flush=True)
    print(f"results: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
