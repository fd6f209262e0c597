"""Will a recipe fit, how fast does it train and how long will it take? Per GPU, before submitting.

    python -m launch plan recipes/openbiollm-70b/v2/sft.yaml --gpus 8 --gpu h100-80gb
    python -m launch plan RECIPE --gpus 1 --gpu h200-141gb --dataset data/build/openbiollm-v1 [--json]
    python -m launch plan RECIPE --gpus 1 --gpu h200-141gb --dataset rows.jsonl     (pre-tokenized rows)
    python -m launch plan recipes/smollm2-135m/v1/sft.yaml --gpus 1 --gpu h100-80gb --measured runs/<id>
    python -m launch plan --points          (the measured points the utilisation comes from)

Memory is launch/preflight/estimates.py's components. Throughput is in trained tokens (the rows' own, no padding): the
dataset's lengths make micro-batches as Axolotl would, padded or packed (preflight/batches.py), whose executed FLOPs
run at the utilisation measured for the GPU and mode (preflight/utilisation.py,
preflight/measured_points.yaml).
``--dataset`` takes a built mixture's folder (its manifest's length percentiles) or a JSONL file of
pre-tokenized rows; without one every row is taken as sequence_len tokens long. ``--measured`` puts a finished
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

from common.errors import InputError, cli_main, fraction, positive_int
from common.files import load_yaml
from launch.preflight import batches
from launch.preflight import estimates as est
from launch.preflight import utilisation as ut
from launch.preflight.estimates import GIB, GPUS

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
            "logits and loss": est.logits_bytes(shape, tokens, bool(config.get("liger_fused_linear_cross_entropy")))}
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


def load_rows(dataset: Path | None, config: dict[str, Any]) -> batches.Rows:
    """The rows to plan for: a pre-tokenized JSONL file, a built mixture's manifest, or full rows without one."""
    if dataset is None:
        return batches.full_rows(int(config["sequence_len"]))
    if dataset.is_file():
        return batches.tokenized_rows(dataset)
    kind = "dpo" if config.get("rl") else "sft"
    manifest_path = dataset / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(f"{dataset}: neither a JSONL file of pre-tokenized rows nor a built mixture's folder "
                         "(no manifest.json; python -m data_prep build ...)")
    entry = json.loads(manifest_path.read_text(encoding="utf-8")).get("kinds", {}).get(kind)
    if not entry or "tokens" not in entry:
        raise InputError(f"{manifest_path}: no {kind} rows with token lengths (build with a tokenizer)")
    rows = entry["outputs"][f"{kind}.jsonl"]["rows"]  # training rows, not all built
    return batches.from_percentiles(entry["tokens"], rows, str(manifest_path))


def throughput(config: dict[str, Any], shape: est.Shape, gpu: str, engine: str, gpus: int, rows: batches.Rows,
               utilisation: float | None) -> dict[str, Any]:
    """Trained and executed tokens/s per GPU, MFU and step time, at the utilisation of the measured points."""
    peak = GPUS[gpu][1]
    n_lora = est.lora_params(shape, int(config["lora_r"]), config.get("lora_target_modules") or est.LINEAR_NAMES)
    batch = batches.micro_batch(rows, config)
    cost = batches.flops(shape, n_lora, config, batch)
    mode = ut.mode_of(config, engine, gpus)
    if utilisation is None:
        choice = ut.nearest(ut.load(), gpu, mode)
        source = {"value": choice.value, "source": "measured points", "fallback": choice.fallback,
                  "points": [{"name": p.name, "gpu": p.gpu, "date": p.date, "source": p.source,
                              "utilisation": p.utilisation} for p in choice.points]}
    else:
        source = {"value": utilisation, "source": "--utilisation", "fallback": None, "points": []}
    seconds = cost["hardware"] / (source["value"] * peak)  # one micro-batch
    accumulation = int(config.get("gradient_accumulation_steps") or 1)
    return {"trained_tokens_per_s_per_gpu": batch.tokens * rows.labelled / seconds,
            "executed_tokens_per_s_per_gpu": batch.executed / seconds, "mfu": cost["model"] / seconds / peak,
            "utilisation": source, "mode": mode, "step_s": accumulation * seconds,
            "micro_batch": {"packed": batch.packed, "rows": batch.rows, "tokens": batch.tokens,
                            "executed_tokens": batch.executed, "padding": 1 - batch.tokens / batch.executed,
                            "bins": batch.bins, "bin_tokens": batch.capacity, "pad_to_multiple_of": batch.multiple},
            "rows": {"source": rows.source, "count": rows.count, "mean_tokens": float(rows.lengths.mean())}}


def whole_run(config: dict[str, Any], rows: batches.Rows, speed: dict[str, Any], gpus: int) -> dict[str, Any]:
    """Optimizer steps and wall-clock hours of the whole run over the dataset's rows."""
    seq, mbs = int(config["sequence_len"]), int(config["micro_batch_size"])
    kept = rows.count * float(((rows.lengths >= batches.MIN_ROW) & (rows.lengths <= seq)).mean())
    per_step = (speed["micro_batch"]["rows"] if speed["micro_batch"]["packed"] else mbs) * gpus * \
        int(config.get("gradient_accumulation_steps") or 1)
    epochs = float(config.get("num_epochs") or 1)
    packed = speed["micro_batch"]["packed"]
    per_epoch = math.floor(kept / per_step) if packed else math.ceil(kept / per_step)  # packed: drop_last
    steps = int(config.get("max_steps") or 0) or math.ceil(epochs * per_epoch)
    return {"rows": rows.count, "rows_over_sequence_len": round(rows.count - kept), "epochs": epochs,
            "steps": steps, "hours": steps * speed["step_s"] / 3600}


def fits_by_gpu(config: dict[str, Any], shape: est.Shape, engine: str, gpus: int) -> dict[str, Any]:
    """Per GPU kind: the memory total with checkpointing on and off, and whether each fits."""
    found = {}
    for kind, (capacity, _) in GPUS.items():
        on, off = (memory(config, shape, engine, gpus, c)["total"] / GIB for c in (True, False))
        found[kind] = {"checkpointing_on_gib": on, "fits_checkpointing_on": on <= capacity,
                       "checkpointing_off_gib": off, "fits_checkpointing_off": off <= capacity}
    return found


def measured_memory(config: dict[str, Any], shape: est.Shape, mode: dict[str, Any]) -> list[dict[str, Any]]:
    """Measured peaks of points whose runs had this configuration's memory: model, batch, packing and mode."""
    def key(shape: est.Shape, config: dict[str, Any]) -> tuple:
        return (shape.linears(), shape.layers, shape.vocab, int(config["micro_batch_size"]),
                int(config["sequence_len"]), bool(config.get("sample_packing")))

    return [{"point": p.name, "gpu": p.gpu, "date": p.date, "peak_reserved_gib": p.peak_reserved_gib,
             "peak_allocated_gib": p.peak_allocated_gib, "alloc_conf": p.alloc_conf} for p in ut.load()
            if p.mode == mode and p.peak_reserved_gib is not None and key(est.MODELS[p.model], p.config) == key(
                shape, config)]


def estimate(config: dict[str, Any], gpus: int, gpu: str, dataset: Path | None = None, utilisation: float | None = None,
          model_config: Path | None = None) -> dict[str, Any]:
    """The plan as data: memory, fit per GPU kind, throughput, and with a dataset the whole run."""
    if gpu not in GPUS:
        raise InputError(f"unknown GPU kind {gpu!r}: one of {', '.join(GPUS)}")
    name, shape = model_shape(config, model_config)
    engine, checkpointing = engine_of(config, gpus), bool(config.get("gradient_checkpointing"))
    parts = memory(config, shape, engine, gpus, checkpointing)
    rows = load_rows(dataset, config)
    speed = throughput(config, shape, gpu, engine, gpus, rows, utilisation)
    return {"gpus": gpus, "gpu": gpu, "model": name, "parameters": shape.params(), "engine": engine,
            "checkpointing": checkpointing, "trained_tokens_per_s_per_gpu": speed.pop("trained_tokens_per_s_per_gpu"),
            **speed, "memory_gib": parts["total"] / GIB, "fits": parts["total"] / GIB <= GPUS[gpu][0],
            "memory": {"total_gib": parts["total"] / GIB, "parts_gib": {k: v / GIB for k, v in parts.items()},
                       "measured": measured_memory(config, shape, speed["mode"]),
                       "other_engines_gib": {e: memory(config, shape, e, gpus, checkpointing)["total"] / GIB
                                             for e in ("ddp", "zero2", "zero3", "fsdp") if e != engine and gpus > 1}},
            "fits_by_gpu": fits_by_gpu(config, shape, engine, gpus),
            "whole_run": whole_run(config, rows, speed, gpus) if dataset is not None else None}


def memory_lines(found: dict[str, Any]) -> list[str]:
    """The memory components, the verdict, measured peaks of the same configuration, and the fit per GPU kind."""
    capacity, total = GPUS[found["gpu"]][0], found["memory_gib"]
    checkpointing = found["checkpointing"]
    other = found["fits_by_gpu"][found["gpu"]]["checkpointing_on_gib" if not checkpointing else "checkpointing_off_gib"]
    lines = ["memory per GPU, GiB (estimated)"]
    for key, value in found["memory"]["parts_gib"].items():
        note = f"   (checkpointing {'off' if checkpointing else 'on'}: total {other:.1f})" \
            if key == "activations" else ""
        lines.append(f"  {key:<22}{value:8.2f}{note}")
    lines.append(f"  {'verdict':<22}{'fits' if found['fits'] else 'DOES NOT FIT'}: {total:.1f} of {capacity} GiB "
                 f"({'spare' if found['fits'] else 'over by'} {abs(capacity - total):.1f} GiB)")
    for point in found["memory"]["measured"]:
        lines.append(f"  measured ({point['point']}, {point['gpu']}, {point['date']}): peak reserved "
                     f"{point['peak_reserved_gib']:.1f} GiB (allocator {point['alloc_conf']}); peak allocated "
                     + (f"{point['peak_allocated_gib']:.1f} GiB" if point["peak_allocated_gib"] is not None else
                        "not recorded (that run's reading was not the training peak)"))
    lines.append(f"  fits per GPU kind ({found['gpus']} x, {found['engine']}), GiB:")
    for kind, fit in found["fits_by_gpu"].items():
        on, off = ("fits" if fit[f"fits_checkpointing_{c}"] else "does not fit" for c in ("on", "off"))
        lines.append(f"    {kind:<12} checkpointing on {fit['checkpointing_on_gib']:6.1f} ({on}), "
                     f"off {fit['checkpointing_off_gib']:6.1f} ({off})")
    others = found["memory"]["other_engines_gib"]
    if others:
        lines.append("  other engines: " + ", ".join(f"{e} {v:.1f} ({'fits' if v <= capacity else 'does not fit'})"
                                                     for e, v in others.items()))
    return lines


def time_lines(config: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Rows, the micro-batch, utilisation, throughput, step time, checkpoint interval and the whole run."""
    batch, used, rows = found["micro_batch"], found["utilisation"], found["rows"]
    gpus, peak = found["gpus"], GPUS[found["gpu"]][1]
    multiple = f" (to a multiple of {batch['pad_to_multiple_of']})" if batch["pad_to_multiple_of"] > 1 else ""
    shape = (f"{batch['rows']:.1f} rows packed into {batch['bins']} bin{'s' if batch['bins'] > 1 else ''} of "
             f"{batch['bin_tokens']:,} tokens, padded{multiple}" if batch["packed"] else
             f"{batch['rows']:.0f} rows, each padded to the longest of the batch{multiple}")
    source = (f"measured: {', '.join(p['name'] for p in used['points'])} on {used['points'][0]['gpu']} "
              f"({used['points'][0]['date']})" if used["points"] else "--utilisation")
    lines = ["time",
             f"  rows        {rows['source']}" + (f": {rows['count']:,} rows, mean {rows['mean_tokens']:.0f} tokens"
                                                  if found["whole_run"] else ""),
             f"  micro-batch {shape}: {batch['tokens']:,.0f} tokens + {batch['executed_tokens'] - batch['tokens']:,.0f}"
             f" padding ({batch['padding']:.0%} of what the GPU computes)",
             f"  utilisation {used['value']:.1%} of {peak / 1e12:.0f} TFLOP/s bf16 executed ({source})"]
    if used["fallback"]:
        lines.append(f"  FALLBACK    {used['fallback']}")
    lines += [f"  throughput  {found['trained_tokens_per_s_per_gpu']:,.0f} trained tokens/s per GPU "
              f"({found['executed_tokens_per_s_per_gpu']:,.0f} computed, padding included), "
              f"{found['trained_tokens_per_s_per_gpu'] * gpus:,.0f} over {gpus}; model FLOPs utilisation "
              f"{found['mfu']:.0%}",
              f"  step        {found['step_s']:.1f} s per optimizer step"]
    save_steps = config.get("save_steps")
    if save_steps:
        lost = save_steps * found["step_s"] / 60
        verdict = "within" if lost <= MAX_LOST_MINUTES else "over"
        lines.append(f"  checkpoint every {save_steps} steps: a preemption loses at most {lost:.0f} min "
                     f"({verdict} the {MAX_LOST_MINUTES} min target)")
    run = found["whole_run"]
    if run is None:
        lines.append("  whole run: pass --dataset data/build/<mixture> or a JSONL of pre-tokenized rows")
    else:
        dropped = run["rows_over_sequence_len"]
        over = f" ({dropped:,} over sequence_len left out)" if dropped else ""
        took = f"{run['hours']:.1f} h" if run["hours"] >= 1 else f"{run['hours'] * 60:.0f} min"
        lines.append(f"  whole run: {run['rows']:,} rows{over} x {run['epochs']:g} epochs, {run['steps']:,} steps: "
                     f"{took} on {gpus} GPU{'s' if gpus > 1 else ''}")
    return lines


def plan(recipe: Path, gpus: int, gpu: str, dataset: Path | None = None, utilisation: float | None = None,
         model_config: Path | None = None, run: Path | None = None) -> tuple[bool, list[str]]:
    """Whether the recipe fits on ``gpus`` x ``gpu``, and the printed plan."""
    config = load_yaml(recipe)
    found = estimate(config, gpus, gpu, dataset, utilisation, model_config)
    n_lora = est.lora_params(model_shape(config, model_config)[1], int(config["lora_r"]),
                             config.get("lora_target_modules") or est.LINEAR_NAMES)
    tokens = int(config["micro_batch_size"]) * int(config["sequence_len"]) * (2 if config.get("rl") else 1)
    lines = [f"plan: {recipe} on {gpus} x {gpu} ({GPUS[gpu][0]} GiB each)",
             f"model    {found['model']}: {found['parameters'] / 1e9:.1f}B parameters, NF4 base",
             f"adapter  LoRA r={config['lora_r']}: {n_lora:,} trainable parameters; {ut.mode_words(found['mode'])}",
             f"batch    {tokens:,} tokens per GPU per micro-batch at most ({config['micro_batch_size']} x "
             f"{config['sequence_len']}{' x 2 (chosen, rejected)' if config.get('rl') else ''}), "
             f"{'packed' if found['micro_batch']['packed'] else 'unpacked'}, "
             f"gradient checkpointing {'on' if found['checkpointing'] else 'off'}",
             f"engine   {found['engine']}" + (f" ({config['deepspeed']})" if config.get("deepspeed") else "")]
    lines += memory_lines(found)
    if run is not None:
        lines += measured(run)
    return found["fits"], lines + time_lines(config, found)


def suggestion(config: dict[str, Any], gpu: str, gpus: int = 1) -> str:
    """One line for an out-of-memory message: what fits ``gpu`` (launch plan's memory estimate): the largest
    micro_batch_size that divides the examples per step, gradient_accumulation_steps raised to keep them, and
    gradient checkpointing on where that is needed or cheaper."""
    if gpu not in GPUS:
        return f"launch plan knows no GPU kind {gpu!r} (one of {', '.join(GPUS)})"
    capacity, (_, shape) = GPUS[gpu][0], model_shape(config, None)
    engine, mbs = engine_of(config, gpus), int(config["micro_batch_size"])
    accumulation, checkpointing = int(config.get("gradient_accumulation_steps") or 1), bool(
        config.get("gradient_checkpointing"))
    examples = mbs * accumulation

    def total(size: int, on: bool) -> float:
        return memory({**config, "micro_batch_size": size}, shape, engine, gpus, on)["total"] / GIB

    options = [(size, on) for on in dict.fromkeys((checkpointing, True)) for size in range(mbs, 0, -1)
               if examples % size == 0 and (size, on) != (mbs, checkpointing) and total(size, on) <= capacity]
    if not options:
        return (f"{gpu}: nothing fits one {gpu} ({capacity} GiB), even micro_batch_size 1 with gradient "
                f"checkpointing ({total(1, True):.1f} GiB, launch plan): more GPUs with zero3 or fsdp, or a larger GPU")
    size, on = options[0]
    change = [f"micro_batch_size {size} with gradient_accumulation_steps {examples // size} ({examples} examples "
              f"per step, as now)"] if size != mbs else []
    change += ["gradient_checkpointing on"] if on != checkpointing else []
    also = next((f"; or gradient_checkpointing on at micro_batch_size {s}: {total(s, True):.1f} GiB"
                 for s, o in options if o and not on), "")
    return f"{gpu}: {' and '.join(change)} fits: {total(size, on):.1f} of {capacity} GiB{also} (launch plan)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch plan", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, nargs="?")
    parser.add_argument("--gpus", type=positive_int, default=1, help="GPUs the job gets (default 1)")
    parser.add_argument("--gpu", help=f"GPU kind: {', '.join(GPUS)}")
    parser.add_argument("--dataset", type=Path, help="a built mixture's folder, or a JSONL file of pre-tokenized rows")
    parser.add_argument("--utilisation", type=fraction, help="fraction of peak bf16 FLOP/s executed (default: the "
                                                          "measured points' value for the GPU and mode)")
    parser.add_argument("--model-config", type=Path, help="a config.json, for a model not in the built-in table")
    parser.add_argument("--measured", type=Path, metavar="RUN", help="a finished run folder to compare with")
    parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    parser.add_argument("--points", action="store_true", help="print the measured points and their utilisation")
    args = parser.parse_args(argv)
    if args.points:
        print("\n".join(ut.table(ut.load())))
        return
    if args.recipe is None or args.gpu is None:
        raise InputError("launch plan needs a RECIPE and --gpu KIND (or --points)")
    if not args.recipe.is_file():
        raise InputError(f"recipe not found: {args.recipe}")
    if args.utilisation == 0:
        raise InputError("--utilisation 0: a GPU that executes nothing never finishes")
    if args.json:
        found = estimate(load_yaml(args.recipe), args.gpus, args.gpu, args.dataset, args.utilisation,
                         args.model_config)
        print(json.dumps({"recipe": str(args.recipe), **found}, indent=1))
        fits = found["fits"]
    else:
        fits, lines = plan(args.recipe, args.gpus, args.gpu, args.dataset, args.utilisation, args.model_config,
                           args.measured)
        print("\n".join(lines))
    raise SystemExit(0 if fits else 1)


if __name__ == "__main__":
    cli_main(main)
