"""The steps of bench/gpu_check.py: each takes the check and its result entry, fills ``checks`` and ``figures``.

A step returns None (its status then follows its checks) or a status of its own ("skipped"). The training
steps go through the launcher exactly as a user would; what they check is what tests/test_train_e2e.py
checks on CPU: the run succeeded with a complete manifest, the adapter moved off its initialisation, the
DPO run's parent is the SFT run, and the DPO reward margin was logged.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import gpu_throughput
from bench.llama3_tokenizer import build_llama3_tokenizer, corpus_from
from common.rundir import MANIFEST, read_manifest
from launch.preflight.estimates import Shape

ROOT = Path(__file__).resolve().parents[1]
SFT_DATA, DPO_DATA = ROOT / "data/default/sft.jsonl", ROOT / "data/default/dpo.jsonl"
# Llama-3.2-1B's shape: big enough that the GPU, not Python, bounds a step; small enough to build in seconds.
GPU_MODEL = Shape(hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192, vocab=128256)
CPU_MODEL = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=0)  # vocab: the tokenizer's
MANIFEST_KEYS = {"run_id", "stage", "status", "exit_code", "error", "started_at", "ended_at", "duration_s", "parent",
                 "command", "recipe", "config", "code", "datasets", "base_model", "python", "packages", "host",
                 "environment", "outputs"}
KEY_PACKAGES = ("torch", "transformers", "axolotl", "peft", "trl", "accelerate", "bitsandbytes", "datasets",
                "lm_eval", "tokenizers", "deepspeed", "flash_attn")
SFT_STEPS, DPO_STEPS = {"gpu": 20, "cpu": 4}, {"gpu": 6, "cpu": 3}


def recipe(model: str, stage: str) -> Path:
    """The stage's recipe in the model's newest version folder (recipes/<model>/v<N>/, highest N)."""
    return gpu_throughput.latest_recipe(model, stage)


def flash_attention() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def overrides(check, config: dict[str, Any], stage: str) -> dict[str, Any]:
    """The ``--set`` values that put a recipe on the check's model and data, recording each substitution."""
    mode = "cpu" if check.cpu else "gpu"
    found: dict[str, Any] = {
        "revision_of_model": None, "wandb_project": None, "wandb_log_model": None, "test_datasets": None,
        "evals_per_epoch": None, "save_steps": None, "save_strategy": "no", "logging_steps": 1,
        "max_steps": (SFT_STEPS if stage == "sft" else DPO_STEPS)[mode],
        "sequence_len": 2048,  # the in-process tokenizer splits text finer than Llama-3's
    }
    check.substitute("sequence_len", 2048, "the in-process 600-token tokenizer splits text finer than Llama-3's")
    check.substitute("max_steps", f"sft {SFT_STEPS[mode]}, dpo {DPO_STEPS[mode]}", "a check, not a training run")
    if stage == "sft":
        found["warmup_steps"] = 2
        check.substitute("warmup_steps", 2, "the recipe's 100 would keep a short run's learning rate near zero")
    if config.get("peft_trainable_token_indices"):
        found["peft_trainable_token_indices"] = gpu_throughput.token_rows(config, check.work / "model")
        check.substitute("peft_trainable_token_indices", found["peft_trainable_token_indices"],
                         "the same tokens' rows, as the check's in-process tokenizer numbers them")
    if config.get("attn_implementation") == "flash_attention_2" and (check.cpu or not flash_attention()):
        found["attn_implementation"] = "sdpa"
        check.substitute("attn_implementation", "sdpa", "flash-attn is not installed" if not check.cpu else "CPU")
    if check.cpu:
        cpu = {"bf16": False, "tf32": False, "optimizer": "adamw_torch", "lora_r": 8, "lora_alpha": 16,
               "micro_batch_size": 2, "gradient_accumulation_steps": 1}
        found |= cpu | {f"lora_{k}_kernel": False for k in ("mlp", "qkv", "o", "embedding")}
        for key, value in cpu.items():
            check.substitute(key, value, "CPU: no bf16/tf32, no CUDA 8-bit AdamW, tiny shapes")
        if config.get("plugins"):  # Liger's and the fused LoRA kernels are Triton: GPU only
            found["plugins"] = [p for p in config["plugins"] if p != gpu_throughput.LIGER]
            found |= {key: None for key in config if key.startswith("liger_")}
            check.substitute("plugins", found["plugins"], "CPU: Liger's and the LoRA kernels are Triton (GPU only)")
    return found


def set_args(values: dict[str, Any]) -> list[str]:
    """``--set KEY=VALUE`` arguments, each value as JSON, which YAML reads back unchanged ("no" stays a string)."""
    args = []
    for key, value in values.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def environment(check, entry: dict[str, Any]) -> None:
    """What the machine is: GPU, driver, torch/CUDA, bitsandbytes' native library, version drift."""
    import torch

    figures: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                               "cuda": torch.version.cuda, "gpu": None}
    checks: dict[str, bool] = {"cuda_available": torch.cuda.is_available() or check.cpu}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        figures |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                    "capability": f"{props.major}.{props.minor}"}
        import subprocess

        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)
        figures["driver"] = smi.stdout.strip() or None
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    from bitsandbytes.cextension import lib

    figures["bitsandbytes_library"] = Path(getattr(getattr(lib, "_lib", None), "_name", "") or "none").name
    device = "cpu" if check.cpu else "cuda"
    weights = torch.randn(256, 256, device=device, dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(weights, quant_type="nf4")
    error = (bnbf.dequantize_4bit(packed, state) - weights).abs().mean().item() / weights.abs().mean().item()
    checks["nf4_round_trip"] = error < 0.2  # NF4 keeps about 10% mean relative error on normal weights
    figures["nf4_round_trip_error"] = error
    checks["bitsandbytes_cuda_library"] = check.cpu or "cuda" in figures["bitsandbytes_library"]
    figures["bitsandbytes"] = bnb.__version__
    figures["flash_attn"] = flash_attention()
    entry["figures"], entry["checks"] = figures, checks
    entry["versions"] = {name: version(name) for name in KEY_PACKAGES}
    entry["differs_from_constraints"] = drift()


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def drift() -> dict[str, dict[str, str | None]]:
    """Every package pinned in constraints.txt that is installed here in another version (or, if key, missing)."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if "==" not in line or line.startswith("#"):
            continue
        name, pinned = line.split("==", 1)
        have = version(name)
        if (have is None and name.replace("-", "_") in KEY_PACKAGES) or (have and have.split("+")[0] != pinned):
            found[name] = {"pinned": pinned, "installed": have}
    return found


def build_model(check) -> Path:
    """A random Llama-3-architecture model (bf16 on a GPU) and the in-process Llama-3 tokenizer, saved once."""
    import torch
    from transformers import LlamaForCausalLM

    folder = check.work / "model"
    if (folder / "config.json").is_file():
        return folder
    tokenizer = build_llama3_tokenizer(corpus_from([SFT_DATA, DPO_DATA]))
    shape = CPU_MODEL if check.cpu else GPU_MODEL
    config = gpu_throughput.llama_config(Shape(**{**shape.__dict__, "vocab": shape.vocab or len(tokenizer)}))
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    with torch.device("cpu" if check.cpu else "cuda"):
        model = LlamaForCausalLM(config)
    (model if check.cpu else model.to(torch.bfloat16)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the training subprocesses need the GPU's memory, not this process
    names = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
             "vocab_size")
    check.results["model"] = {"config": {k: getattr(config, k) for k in names},
                              "parameters": parameters}
    return folder


def lora_b_moved(run_dir: Path) -> tuple[int, int]:
    """(lora_B tensors, how many are still all zeros: PEFT's initialisation)."""
    from safetensors.torch import load_file

    weights = load_file(run_dir / "adapter/adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    return len(lora_b), sum(int(w.count_nonzero() == 0) for w in lora_b)


def token_rows_moved(run_dir: Path, model: Path) -> dict[str, bool]:
    """For each matrix with PEFT trainable token rows in the adapter: do its trained rows differ from the base
    model's same rows (PEFT starts them as copies)? The indices are read from the run's config."""
    from safetensors import safe_open

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    indices = config.get("peft_trainable_token_indices") or {}
    found = {}
    with safe_open(str(run_dir / "adapter/adapter_model.safetensors"), "pt") as adapter:
        deltas = {key: adapter.get_tensor(key) for key in adapter.keys()  # noqa: SIM118
                  if "trainable_tokens_delta" in key}
    base = {}
    for shard in model.glob("*.safetensors"):
        with safe_open(str(shard), "pt") as handle:
            base |= {key: handle.get_tensor(key) for key in handle.keys()  # noqa: SIM118
                     if key in ("model.embed_tokens.weight", "lm_head.weight")}
    for layer, rows in (indices.items() if isinstance(indices, dict) else []):
        delta = next((v for k, v in deltas.items() if f"{layer}.token_adapter" in k), None)
        weight = base.get("lm_head.weight" if layer == "lm_head" else "model.embed_tokens.weight")
        found[f"sft_{layer}_token_rows_moved"] = delta is not None and weight is not None and bool(
            (delta.float() - weight[rows].float()).abs().amax(dim=1).gt(0).all())
    return found


def run_checks(run_dir: Path, stage: str, layers: int) -> dict[str, bool]:
    """The run folder as tests/test_train_e2e.py wants it."""
    record = read_manifest(run_dir)
    tensors, unmoved = lora_b_moved(run_dir) if (run_dir / "adapter/adapter_model.safetensors").is_file() else (0, 1)
    return {f"{stage}_succeeded": record.get("status") == "succeeded" and record.get("exit_code") == 0,
            f"{stage}_manifest_complete": set(record) >= MANIFEST_KEYS,
            f"{stage}_losses_recorded": bool(record.get("losses")),
            f"{stage}_adapter_all_linears": tensors == 7 * layers,
            f"{stage}_adapter_moved": tensors > 0 and unmoved == 0,
            f"{stage}_merged": (run_dir / "merged/config.json").is_file() and any((run_dir / "merged").glob(
                "*.safetensors"))}


def log_dicts(log: Path) -> list[dict[str, Any]]:
    """The Trainer's logged dicts (``{'loss': ..., ...}`` lines) of a train log."""
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        text = line.strip()
        if text.startswith("{'loss'"):
            try:
                found.append(ast.literal_eval(text))
            except (ValueError, SyntaxError):
                continue
    return found


def train(check, entry: dict[str, Any], stage: str, model: str, extra: list[str]) -> Path:
    """``python -m launch STAGE`` on the model's newest recipe, with the check's overrides; returns the run."""
    path = recipe(model, stage)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    values = {"datasets.0.path": str(SFT_DATA if stage == "sft" else DPO_DATA), **overrides(check, config, stage)}
    return launch_stage(check, entry, stage, path, f"check-{stage}", extra + set_args(values),
                        (CPU_MODEL if check.cpu else GPU_MODEL).layers)


def launch_stage(check, entry: dict[str, Any], stage: str, path: Path, run_id: str, args: list[str],
                 layers: int) -> Path:
    """``python -m launch STAGE RECIPE ARGS`` into ``check.work/runs/RUN_ID``: the run's checks (as
    tests/test_train_e2e.py wants a run folder), its first and last loss; returns the run folder."""
    command = [sys.executable, "-m", "launch", stage, str(path.relative_to(ROOT)), "--runs-dir",
               str(check.work / "runs"), "--run-id", run_id, *args]
    entry["recipe"] = str(path.relative_to(ROOT))
    entry["command"] = command[1:]
    code = check.run(command, check.work / f"{stage}.log")
    entry["exit_code"] = code
    run_dir = check.work / "runs" / run_id
    entry["checks"] = run_checks(run_dir, stage, layers) if (run_dir / MANIFEST).is_file() else \
        {f"{stage}_run_folder": False}
    record = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
    losses = [x["loss"] for x in record.get("losses") or []]
    entry["figures"] = {"train_s": record.get("duration_s"), "first_loss": losses[0] if losses else None,
                        "last_loss": losses[-1] if losses else None}
    return run_dir


def sft(check, entry: dict[str, Any]) -> None:
    """QLoRA SFT and merge of the random model, through the launcher; every trained token row moved (on a GPU
    under the recipe's fused LoRA kernels and Liger)."""
    model = build_model(check)
    run_dir = train(check, entry, "sft", "openbiollm-8b", set_args({"base_model": str(model)}))
    if (run_dir / "adapter/adapter_model.safetensors").is_file():
        entry["checks"] |= token_rows_moved(run_dir, model)


def dpo(check, entry: dict[str, Any]) -> None:
    """DPO from the SFT run's merged model, then merge; the reward margin must be logged."""
    parent = check.work / "runs/check-sft"
    if not (parent / "merged").is_dir():
        entry["checks"] = {"sft_merged_model": False}
        return
    dpo_checks(entry, train(check, entry, "dpo", "openbiollm-8b", ["--parent", str(parent)]), parent)


def dpo_checks(entry: dict[str, Any], run_dir: Path, parent: Path) -> None:
    """A DPO run's parent is the SFT run and its base that run's merged model; TRL's reward margin was logged."""
    record = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
    entry["checks"]["dpo_parent_is_sft_run"] = (record.get("parent") or {}).get("run_id") == parent.name and \
        record.get("config", {}).get("base_model") == str(parent / "merged")
    margins = [d["rewards/margins"] for d in log_dicts(run_dir / "logs/train.log") if "rewards/margins" in d] \
        if (run_dir / "logs/train.log").is_file() else []
    entry["checks"]["reward_margin_logged"] = bool(margins) and all(math.isfinite(float(m)) for m in margins)
    entry["figures"] |= {"first_margin": float(margins[0]) if margins else None,
                         "last_margin": float(margins[-1]) if margins else None}


def eval(check, entry: dict[str, Any]) -> None:
    """Zero-shot lm-eval of the DPO run's merged model (the SFT run's if DPO failed) on the bundled fixtures."""
    run_dir = next((check.work / "runs" / name for name in ("check-dpo", "check-sft")
                    if (check.work / "runs" / name / "merged").is_dir()), None)
    if run_dir is None:
        entry["checks"] = {"merged_model": False}
        return
    entry["model"] = run_dir.name  # the DPO run's merged model; the SFT run's when DPO failed
    command = [sys.executable, "-m", "eval", "run", "--model", str(run_dir)]
    entry["command"] = command[1:]
    entry["exit_code"] = check.run(command, check.work / "eval.log")
    results_path = run_dir / "eval/results.json"
    summary = json.loads(results_path.read_text(encoding="utf-8"))["summary"] if results_path.is_file() else {}
    tasks = summary.get("tasks", {})
    entry["checks"] = {"eval_results_written": bool(tasks),
                       "eval_every_task_scored": len(tasks) == 9 and all(
                           t["n"] > 0 and 0 <= t["acc"] <= 1 for t in tasks.values())}
    entry["figures"] = {"items": sum(t["n"] for t in tasks.values()),
                        "mean_acc": sum(t["acc"] for t in tasks.values()) / len(tasks) if tasks else None}


FIGURES = ("tokens_per_s_per_gpu", "mfu", "peak_allocated_gib", "peak_reserved_gib", "estimated_tokens_per_s_per_gpu",
           "tokens_ratio", "estimated_memory_gib", "memory_ratio", "attn_implementation")


def throughput(check, entry: dict[str, Any]) -> None:
    """bench/gpu_throughput.py (8B shape on a GPU, tiny on CPU): v2 and v3 in one run, each beside the planner's
    prediction, their ratio, and the packing probe on v3's first batch; on a GPU then v3 with checkpointing and v3
    with Liger's fused loss, each if the limit leaves time. v2 runs first; a mode that finished before the limit
    is kept."""
    out = check.work / "throughput"
    command = [sys.executable, "bench/gpu_throughput.py", "--out", str(out), "--probe", "--modes", "v2", "v3"]
    command += ["--tiny", "--steps", "4", "--warmup", "1", "--rows", "64", "--median-len", "40"] \
        if check.cpu else ["v3_ckpt", "v3_flce", "--steps", "16", "--warmup", "4", "--rows", "600"]
    command += ["--budget", str(round(check.step_limit - 15))]  # the optional modes end inside the step's limit
    entry["command"] = command[1:]
    try:
        entry["exit_code"] = check.run(command, check.work / "throughput.log")
    finally:  # also when the step's limit stops it: the modes that finished are in results.json
        results = json.loads((out / "results.json").read_text(encoding="utf-8")) \
            if (out / "results.json").is_file() else {}
        modes = {m: results[m] for m in gpu_throughput.MODES if m in results}
        probe = (modes.get("v3") or {}).get("packing_probe") or {}
        entry["checks"] = {"throughput_measured": bool(modes) and all(
            (r.get("tokens_per_s_per_gpu") or 0) > 0 for r in modes.values()), **probe_checks(probe, check.cpu)}
        entry["figures"] = {f"{m}_{k}": v for m, r in modes.items() for k, v in r.items() if k in FIGURES}
        if "v3_over_v2" in results:
            entry["figures"]["v3_over_v2"] = results["v3_over_v2"]
        kept = ("max_loss_difference", "max_loss_difference_not_kept_apart", "max_attention_difference",
                "min_attention_difference_not_kept_apart")
        entry["figures"] |= {f"probe_{k}": probe[k] for k in kept if k in probe}
        entry["modes"] = modes


def probe_checks(probe: dict[str, Any], cpu: bool) -> dict[str, bool]:
    """v3's packed rows were kept apart: each row's loss packed equals its loss alone (to fp32 rounding on CPU,
    bf16's on a GPU) and the first layer's attention differs far less than when rows are not kept apart."""
    if not probe:
        return {"packing_probe_ran": False}
    tolerance = 1e-4 if cpu else 2e-2
    leak = probe.get("min_attention_difference_not_kept_apart")
    return {"packed_row_loss_equals_alone": probe["max_loss_difference"] <= tolerance,
            "packed_rows_kept_apart": leak is not None and probe["max_attention_difference"] < 0.1 * leak}


def zero3(check, entry: dict[str, Any]) -> str | None:
    """A few QLoRA steps under the 70B recipe's ZeRO-3 config, one process: its 4-bit loading under ZeRO-3."""
    if check.cpu or importlib.util.find_spec("deepspeed") is None:
        entry["reason"] = "deepspeed is not installed" if not check.cpu else "ZeRO-3 with 4-bit needs CUDA"
        return "skipped"
    model = build_model(check)
    path = recipe("openbiollm-70b", "sft")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    values = overrides(check, config, "sft") | {"max_steps": 3, "base_model": str(model)}
    command = [sys.executable, "-m", "launch", "sft", str(path.relative_to(ROOT)), "--runs-dir",
               str(check.work / "runs"), "--run-id", "check-zero3", "--skip-merge",
               *set_args({"datasets.0.path": str(SFT_DATA), **values})]
    entry["recipe"], entry["command"] = str(path.relative_to(ROOT)), command[1:]
    entry["figures"] = {"deepspeed": version("deepspeed")}
    single = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517",
              "DS_ACCELERATOR": "cuda"}
    entry["exit_code"] = check.run(command, check.work / "zero3.log", single)
    run_dir = check.work / "runs/check-zero3"
    found = run_checks(run_dir, "zero3", GPU_MODEL.layers) if (run_dir / MANIFEST).is_file() else {}
    entry["checks"] = {k: v for k, v in found.items() if not k.endswith("_merged")} or {"zero3_run_folder": False}
    record = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
    losses = [x["loss"] for x in record.get("losses") or []]
    entry["figures"] |= {"train_s": record.get("duration_s"), "first_loss": losses[0] if losses else None,
                         "last_loss": losses[-1] if losses else None}
    return None
