"""Will a recipe fit, and how long will it take? Per-GPU memory, throughput and wall-clock, before submitting.

    python -m launch plan recipes/openbiollm-70b/v1/sft.yaml --gpus 8 --gpu h100-80gb
    python -m launch plan RECIPE --gpus 1 --gpu h100-80gb --dataset data/build/openbiollm-v1
    python -m launch plan recipes/smollm2-135m/v1/sft.yaml --gpus 1 --gpu h100-80gb --measured runs/<id>

The formulas, with their sources, are in launch/estimates.py. ``--dataset`` reads a built mixture's
manifest (rows and token-length percentiles) for the whole run's time; ``--measured`` puts a finished
run's adapter size (and optimizer size, when it saved a checkpoint) beside the estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
from pathlib import Path
from typing import Any

import yaml

from common.errors import positive_int
from launch import estimates as est
from launch.estimates import GIB

# Usable memory (nvidia-smi's total) and dense bf16 peak without sparsity, from NVIDIA's data sheets.
GPUS = {"h100-80gb": (79.6, 989e12), "a100-80gb": (79.2, 312e12), "h200-141gb": (139.8, 989e12)}
UTILISATION = 0.25  # our assumption for QLoRA with checkpointing, until bench/gpu_throughput.py measures it
MAX_LOST_MINUTES = 30


def model_shape(config: dict[str, Any], model_config: Path | None) -> tuple[str, est.Shape]:
    """The base model's shape: --model-config, else a local folder's config.json, else the Llama-3 table."""
    base = str(config.get("base_model", ""))
    path = model_config or (Path(base) / "config.json")
    if path.is_file():
        return str(path), est.shape_from_config(json.loads(path.read_text(encoding="utf-8")))
    name = base.lower().replace("meta-llama-3", "llama-3")
    for key, shape in est.MODELS.items():
        if key.split("-")[-1] in name.split("-") and "llama-3" in name:
            return key, shape
    raise SystemExit(f"no shape for base model {base!r}: pass --model-config PATH/config.json "
                     f"(built in: {', '.join(est.MODELS)})")


def engine_of(config: dict[str, Any], gpus: int) -> str:
    """ddp (or one GPU), zero2, zero3 or fsdp, from the recipe's deepspeed file or fsdp_config."""
    if config.get("deepspeed"):
        ds = json.loads(Path(config["deepspeed"]).read_text(encoding="utf-8"))
        return f"zero{ds.get('zero_optimization', {}).get('stage', 0)}"
    if config.get("fsdp_config") or config.get("fsdp"):
        return "fsdp"
    return "ddp" if gpus > 1 else "one GPU"


def memory(config: dict[str, Any], shape: est.Shape, engine: str, gpus: int, checkpointing: bool) -> dict[str, float]:
    """Per-GPU bytes by component, and their total."""
    rank, dpo = int(config["lora_r"]), bool(config.get("rl"))
    tokens = int(config["micro_batch_size"]) * int(config["sequence_len"]) * (2 if dpo else 1)
    n_lora = est.lora_params(shape, rank, config.get("lora_target_modules") or est.LINEAR_NAMES)
    double_quant = (config.get("bnb_config_kwargs") or {}).get("bnb_4bit_use_double_quant", True)
    parts = est.adapter_state_bytes(n_lora, str(config.get("optimizer", "adamw_torch")), engine)
    base, parts = est.shard(parts, est.nf4_bytes(shape, double_quant), engine, gpus)
    dropout = float(config.get("lora_dropout") or 0) > 0
    rows = {"base weights (NF4)": base, "LoRA weights": parts["weights"], "LoRA gradients": parts["gradients"],
            "optimizer states": parts["optimizer"],
            "activations": est.activation_bytes(shape, tokens, rank, dropout, checkpointing),
            "logits and loss": est.logits_bytes(shape, tokens)}
    if config.get("peft_trainable_token_indices"):
        rows["trainable token rows"] = token_rows_bytes(config, shape)
    rows["overhead"] = est.overhead_bytes(sum(rows.values()))
    rows["total"] = sum(rows.values())
    return rows


def token_rows_bytes(config: dict[str, Any], shape: est.Shape) -> float:
    """PEFT trainable tokens (``peft_trainable_token_indices``): per wrapped matrix, each step builds the whole
    bf16 matrix with the trained rows in place (an out-of-place index_copy, kept for the backward pass) and
    its dense gradient, 2 x V x h x 2 bytes; the rows themselves and their optimizer states are negligible."""
    indices = config.get("peft_trainable_token_indices")
    layers = len(indices) if isinstance(indices, dict) else 1 if indices else 0
    return layers * 2 * 2.0 * shape.vocab * shape.hidden


def dataset_stats(folder: Path, kind: str) -> dict[str, Any]:
    """Training rows and token-length percentiles of a built mixture (its manifest.json)."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"{manifest_path}: no manifest; build the mixture first (python -m data_prep build ...)")
    entry = json.loads(manifest_path.read_text(encoding="utf-8"))["kinds"].get(kind)
    if not entry or "tokens" not in entry:
        raise SystemExit(f"{manifest_path}: no {kind} rows with token lengths (build with a tokenizer)")
    return {**entry["tokens"], "rows": entry["outputs"][f"{kind}.jsonl"]["rows"]}  # training rows, not all built


def safetensors_params(path: Path) -> tuple[int, int]:
    """(parameters, bytes) of the tensors in a .safetensors file, read from its header only."""
    with open(path, "rb") as handle:
        header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
    tensors = [v for k, v in header.items() if k != "__metadata__"]
    return (sum(math.prod(t["shape"]) for t in tensors),
            sum(t["data_offsets"][1] - t["data_offsets"][0] for t in tensors))


def measured(run: Path) -> list[str]:
    """A finished run's adapter (and optimizer, if a checkpoint was kept) beside the planner's estimate."""
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    _, shape = model_shape(config, None)
    n_est = est.lora_params(shape, int(config["lora_r"]), config.get("lora_target_modules") or est.LINEAR_NAMES)
    params, size = safetensors_params(run / "adapter" / "adapter_model.safetensors")
    lines = [f"  measured ({run.name}): adapter {params:,} parameters, {size / 2**20:.1f} MiB; "
             f"estimated {n_est:,} parameters, {4 * n_est / 2**20:.1f} MiB in fp32"]
    states = est.adapter_state_bytes(n_est, str(config.get("optimizer")), "ddp")["optimizer"]
    saved = sorted(run.glob("adapter/checkpoint-*/optimizer.pt"))
    lines.append(f"  measured optimizer state: {saved[-1].stat().st_size / 2**20:.1f} MiB" if saved else
                 "  measured optimizer state: none (the run kept no checkpoint)")
    lines[-1] += f"; estimated {states / 2**20:.1f} MiB ({config.get('optimizer')})"
    return lines


def timing(config: dict[str, Any], shape: est.Shape, gpus: int, peak: float, utilisation: float,
           dataset: Path | None) -> list[str]:
    """Throughput, step time, checkpoint interval and, with a dataset, the whole run's wall-clock."""
    seq, mbs, dpo = int(config["sequence_len"]), int(config["micro_batch_size"]), bool(config.get("rl"))
    accumulation = int(config.get("gradient_accumulation_steps") or 1)
    n_lora = est.lora_params(shape, int(config["lora_r"]), config.get("lora_target_modules") or est.LINEAR_NAMES)
    flops = est.flops_per_token(shape, n_lora, seq, bool(config.get("gradient_checkpointing")), dpo)
    per_gpu = utilisation * peak / flops["hardware"]
    sequences = mbs * accumulation * (2 if dpo else 1)
    step = sequences * seq / per_gpu
    lines = [f"  FLOPs per token: {flops['hardware']:.3g} executed ({flops['model']:.3g} model FLOPs), "
             f"at an assumed {utilisation:.0%} of {peak / 1e12:.0f} TFLOP/s bf16",
             f"  throughput: {per_gpu:,.0f} tokens/s per GPU, {per_gpu * gpus:,.0f} over {gpus} "
             f"(model FLOPs utilisation {per_gpu * flops['model'] / peak:.0%})",
             f"  step, worst case ({sequences} sequences x {seq} tokens per GPU): {step:.1f} s"]
    save_steps = config.get("save_steps")
    if save_steps:
        lost = save_steps * step / 60
        verdict = "within" if lost <= MAX_LOST_MINUTES else "over"
        lines.append(f"  checkpoint every {save_steps} steps: a preemption loses at most {lost:.0f} min "
                     f"({verdict} the {MAX_LOST_MINUTES} min target)")
    if dataset is None:
        lines.append("  whole run: pass --dataset data/build/<mixture> (its manifest gives rows and lengths)")
        return lines
    stats = dataset_stats(dataset, "dpo" if dpo else "sft")
    padded = min(seq, stats["p90"])  # ours: the longest of a dozen random rows is near the 90th percentile
    steps = int(config.get("max_steps") or 0) or \
        int(config.get("num_epochs", 1)) * math.ceil(stats["rows"] / (mbs * accumulation * gpus))
    hours = steps * sequences * padded / per_gpu / 3600
    lines.append(f"  whole run: {stats['rows']:,} rows, {steps:,} steps of {sequences} x ~{padded} tokens "
                 f"(p90 length) per GPU: {hours:.1f} h on {gpus} GPU{'s' if gpus > 1 else ''}")
    return lines


def plan(recipe: Path, gpus: int, gpu: str, dataset: Path | None = None, utilisation: float = UTILISATION,
         model_config: Path | None = None, run: Path | None = None) -> tuple[bool, list[str]]:
    """Whether the recipe fits on ``gpus`` x ``gpu``, and the printed plan."""
    config = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    capacity, peak = GPUS[gpu]
    name, shape = model_shape(config, model_config)
    engine, checkpointing = engine_of(config, gpus), bool(config.get("gradient_checkpointing"))
    rows = memory(config, shape, engine, gpus, checkpointing)
    other = memory(config, shape, engine, gpus, not checkpointing)["activations"]
    n_lora = est.lora_params(shape, int(config["lora_r"]), config.get("lora_target_modules") or est.LINEAR_NAMES)
    tokens = int(config["micro_batch_size"]) * int(config["sequence_len"]) * (2 if config.get("rl") else 1)
    fits = rows["total"] / GIB <= capacity
    lines = [f"plan: {recipe} on {gpus} x {gpu} ({capacity} GiB each)",
             f"model    {name}: {shape.params() / 1e9:.1f}B parameters, NF4 base",
             f"adapter  LoRA r={config['lora_r']}: {n_lora:,} trainable parameters",
             f"batch    {tokens:,} tokens per GPU per micro-batch ({config['micro_batch_size']} x "
             f"{config['sequence_len']}{' x 2 (chosen, rejected)' if config.get('rl') else ''}), "
             f"gradient checkpointing {'on' if checkpointing else 'off'}",
             f"engine   {engine}" + (f" ({config['deepspeed']})" if config.get("deepspeed") else ""),
             "memory per GPU, GiB"]
    for key, value in rows.items():
        note = f"   (checkpointing {'off' if checkpointing else 'on'}: {other / GIB:.1f})" \
            if key == "activations" else ""
        lines.append(f"  {key:<22}{value / GIB:8.2f}{note}")
    spare = capacity - rows["total"] / GIB
    lines.append(f"  {'verdict':<22}{'fits' if fits else 'DOES NOT FIT'}: {rows['total'] / GIB:.1f} of {capacity} "
                 f"GiB ({'spare' if fits else 'over by'} {abs(spare):.1f} GiB)")
    if gpus > 1:
        others = {e: memory(config, shape, e, gpus, checkpointing)["total"] / GIB
                  for e in ("ddp", "zero2", "zero3", "fsdp") if e != engine}
        lines.append("  other engines: " + ", ".join(f"{e} {v:.1f} ({'fits' if v <= capacity else 'does not fit'})"
                                                     for e, v in others.items()))
    if run is not None:
        lines += measured(run)
    lines.append("time")
    lines += timing(config, shape, gpus, peak, utilisation, dataset)
    return fits, lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch plan", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--gpus", type=positive_int, required=True, help="GPUs the job gets")
    parser.add_argument("--gpu", choices=sorted(GPUS), required=True)
    parser.add_argument("--dataset", type=Path, help="a built mixture folder, for the whole run's time")
    parser.add_argument("--utilisation", type=float, default=UTILISATION,
                        help=f"fraction of peak bf16 FLOP/s reached (default {UTILISATION}, our assumption)")
    parser.add_argument("--model-config", type=Path, help="a config.json, for a model not in the built-in table")
    parser.add_argument("--measured", type=Path, metavar="RUN", help="a finished run folder to compare with")
    args = parser.parse_args(argv)
    if not args.recipe.is_file():
        raise SystemExit(f"recipe not found: {args.recipe}")
    fits, lines = plan(args.recipe, args.gpus, args.gpu, args.dataset, args.utilisation, args.model_config,
                       args.measured)
    print("\n".join(lines))
    raise SystemExit(0 if fits else 1)


if __name__ == "__main__":
    main()
