"""Evaluate a model zero-shot on the prepared benchmarks with lm-evaluation-harness.

    python -m eval run [--model PATH_OR_RUN] [--adapter PATH] [--tasks TASK...] [--backend hf|vllm]
                       [--limit N] [--chat-template] [--benchmarks DIR] [--out DIR] [--batch-size N] [--dtype D]

``--model runs/<id>`` evaluates that run's ``merged/`` model and writes to ``runs/<id>/eval/``;
without ``--model``, the latest successful run (DPO over SFT). Another model path needs ``--out``.
Benchmarks are the ``<task>.jsonl`` files under ``--benchmarks`` (default ``data/benchmarks/``).
When none are prepared there, the bundled fixtures (``eval/fixtures/``) are prepared into the
output folder and the result is marked a PIPELINE CHECK: a few items per task, not a benchmark.

Writes OUT/tasks/ (the task YAMLs as run, with absolute data paths), OUT/samples/<task>.jsonl
(lm-eval's per-sample log) and, last, OUT/results.json (lm-eval's results plus ``summary``).
Defaults match the Open Medical-LLM Leaderboard: zero-shot, acc, no chat template (docs/eval.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from common.files import atomic_writer, sha256_file, write_json_atomic
from common.rundir import MANIFEST, latest_run, now, read_manifest
from common.secrets import redact, secret_values
from eval.benchmarks import TASKS
from eval.lm_eval_tasks import (
    FIXTURES,
    prepared_tasks,
    render_tasks,
    samples_by_task,
    summarize,
)
from eval.prepare import prepare

DEFAULT_BENCHMARKS = Path("data/benchmarks")
CPU_BATCH_SIZE = 8
PIPELINE_CHECK_BANNER = (
    "=" * 78 + "\n"
    "PIPELINE CHECK, NOT A BENCHMARK: no benchmark is prepared under {benchmarks}/, so this run uses the\n"
    "few bundled fixture items per task (eval/fixtures/). Its numbers only show that the pipeline works.\n"
    "Prepare all nine with `make benchmarks` (python -m eval prepare --all --out data/benchmarks).\n" + "=" * 78
)


def latest_model_run(runs_dir: Path) -> Path:
    """The latest successful DPO run, else the latest successful SFT run."""
    for stage in ("dpo", "sft"):
        try:
            return latest_run(runs_dir, stage)
        except SystemExit:
            continue
    raise SystemExit(f"no --model given and no successful dpo or sft run in {runs_dir}/: run `make sft` "
                     "(or `make all`) first, or pass --model PATH --out DIR")


def resolve_model(spec: str | None, runs_dir: Path) -> tuple[str, Path | None]:
    """(model path or hub id, run folder when the model is a run's merged model)."""
    run = latest_model_run(runs_dir) if spec is None else Path(spec)
    if not (run / MANIFEST).is_file():
        if not run.exists():
            check_hub_id(str(spec))
        return str(run.resolve()) if run.exists() else str(spec), None  # a local folder, or a hub id
    run = run.resolve()
    status = read_manifest(run).get("status")
    if status != "succeeded" or not (run / "merged").is_dir():
        raise SystemExit(f"{run}: run status is {status!r} and merged/ is "
                         f"{'there' if (run / 'merged').is_dir() else 'missing'}; only a finished run can be evaluated")
    return str(run / "merged"), run


def check_hub_id(spec: str) -> None:
    """Refuse a ``--model`` that is neither a folder here nor a hub id (``ORG/NAME``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        raise SystemExit(f"--model {spec}: no such folder, and not a hub id (ORG/NAME)") from None


def model_args(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """lm-eval's model_args for the backend; vLLM is the cluster fast path and must be installed there."""
    extra = dict(kv.split("=", 1) for kv in args.model_args)
    if args.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise SystemExit("--backend vllm: vLLM is not installed in this environment (it needs a CUDA GPU); "
                             "install it on the cluster (pip install vllm) or use --backend hf")
        found = {"pretrained": model, "dtype": args.dtype, "gpu_memory_utilization": 0.85}
        if args.adapter:
            found["lora_local_path"] = str(args.adapter)
        return {**found, **extra}
    found = {"pretrained": model, "dtype": args.dtype}
    if args.adapter:
        found["peft"] = str(args.adapter)
    return {**found, **extra}


def select_benchmarks(args: argparse.Namespace, out: Path) -> tuple[Path, list[str], bool]:
    """(benchmark folder, canonical task names, pipeline check?); prepares the fixtures when nothing is prepared."""
    folder = args.benchmarks or DEFAULT_BENCHMARKS
    found = prepared_tasks(folder)
    if args.tasks:
        missing = [t for t in args.tasks if t not in found]
        if missing and (found or args.benchmarks):
            raise SystemExit(f"{folder}/: no prepared {', '.join(missing)} (.jsonl); run `python -m eval prepare`")
    if found or args.benchmarks:
        if not found:
            raise SystemExit(f"{folder}/: no prepared benchmark (<task>.jsonl for any of {', '.join(TASKS)})")
        return folder, args.tasks or found, False
    print(PIPELINE_CHECK_BANNER.format(benchmarks=folder), flush=True)
    folder = out / "benchmarks"
    names = args.tasks or list(TASKS)
    for name in names:
        inputs = sorted(str(p) for p in (FIXTURES / name).iterdir() if p.is_file())
        prepare(TASKS[name], inputs, folder, allow_partial=True)
    return folder, names, True


def json_safe(obj: Any, secrets: list[str]) -> Any:
    """``obj`` through JSON (lm-eval's own fallback for numpy and other values), then secrets redacted in the data."""
    from lm_eval.utils import handle_non_serializable

    return redact(json.loads(json.dumps(obj, default=handle_non_serializable)), secrets)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve model and benchmarks, run lm-eval, write samples then results.json; return the results."""
    model, run = resolve_model(args.model, args.runs_dir)
    if args.out is None and run is None:
        raise SystemExit(f"--model {model} is not a run folder: pass --out DIR for its results")
    out = (args.out or run / "eval").resolve()
    benchmarks, names, pipeline_check = select_benchmarks(args, out)
    tasks_dir = render_tasks(benchmarks, out / "tasks", names)
    limit = None if args.limit is None else int(args.limit) if args.limit >= 1 else args.limit
    print(f"evaluating {model} on {', '.join(names)} ({args.backend}, zero-shot"
          f"{', chat template' if args.chat_template else ''}) -> {out}", flush=True)
    import lm_eval
    from lm_eval.tasks import TaskManager

    started = now()
    results = lm_eval.simple_evaluate(
        model=args.backend, model_args=model_args(args, model), tasks=[TASKS[n].lm_eval_task for n in names],
        num_fewshot=0, batch_size=args.batch_size, device=args.device, limit=limit, log_samples=True,
        apply_chat_template=args.chat_template, fewshot_as_multiturn=False,
        task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
    )
    secrets = secret_values()
    for name, samples in samples_by_task(results.pop("samples"), names).items():
        with atomic_writer(out / "samples" / f"{name}.jsonl") as handle:
            handle.writelines(json.dumps(json_safe(s, secrets), ensure_ascii=False) + "\n" for s in samples)
    settings = {"backend": args.backend, "chat_template": args.chat_template, "dtype": args.dtype,
                "batch_size": args.batch_size, "limit": limit, "num_fewshot": 0}
    results = json_safe(results, secrets)
    results["summary"] = summarize(results, names, model=model, run_id=run.name if run else None,
                                   adapter=str(args.adapter.resolve()) if args.adapter else None,
                                   pipeline_check=pipeline_check, benchmarks=str(benchmarks.resolve()),
                                   settings=settings)
    results["benchmark_files"] = {n: {"path": str((benchmarks / f"{n}.jsonl").resolve()),
                                      "sha256": sha256_file(benchmarks / f"{n}.jsonl")} for n in names}
    results["timing"] = {"started_at": started, "ended_at": now()}
    write_json_atomic(out / "results.json", results)
    print_summary(results["summary"], out)
    if pipeline_check:
        print(PIPELINE_CHECK_BANNER.format(benchmarks=args.benchmarks or DEFAULT_BENCHMARKS), flush=True)
    return results


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """One line per task: accuracy, standard error, items."""
    for name, row in summary["tasks"].items():
        print(f"  {name:<28} acc {row['acc']:.4f} ± {row['stderr']:.4f}  (n={row['n']})")
    print(f"results: {out / 'results.json'}; per-sample logs: {out / 'samples'}/")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="runs/<id> (its merged model), a model folder or a hub id; "
                                        "default: the latest successful dpo, else sft, run")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter folder applied on top of --model")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                        help="a subset of the nine (default: every prepared one)")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                        help="hf (default; CPU or GPU) or vllm (the GPU cluster fast path)")
    parser.add_argument("--limit", type=float, help="at most N items per task (a fraction if < 1): a smoke test")
    parser.add_argument("--chat-template", action="store_true",
                        help="wrap prompts in the model's chat template (the leaderboard does not)")
    parser.add_argument("--benchmarks", type=Path, help=f"prepared <task>.jsonl folder (default {DEFAULT_BENCHMARKS})")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<id>/eval/ for a run)")
    parser.add_argument("--batch-size", help="lm-eval batch size, a number or auto (default: auto on a GPU, "
                                             f"{CPU_BATCH_SIZE} on CPU); it changes speed, not scores")
    parser.add_argument("--dtype", default="auto", help="model dtype (default auto: the checkpoint's own, "
                                                        "bfloat16 for Llama-3)")
    parser.add_argument("--device", default=None, help="hf backend device (default: cuda when present, else cpu)")
    parser.add_argument("--model-args", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more lm-eval model_args, e.g. tensor_parallel_size=8 for vllm on 70B")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders live")
    args = parser.parse_args(argv)
    if args.device is None and args.backend == "hf":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.batch_size is None:
        args.batch_size = str(CPU_BATCH_SIZE) if args.device == "cpu" else "auto"
    if any("=" not in kv for kv in args.model_args):
        parser.error("--model-args takes KEY=VALUE pairs")
    if args.limit is not None and not (math.isfinite(args.limit) and args.limit > 0):
        parser.error(f"--limit {args.limit}: expected a number of items (1 or more) or a fraction above 0")
    if not re.fullmatch(r"auto(:[1-9]\d*)?|[1-9]\d*", args.batch_size):
        parser.error(f"--batch-size {args.batch_size}: expected a whole number of at least 1, auto or auto:N")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m eval run ...``; returns the results written to results.json."""
    return evaluate(parse_args(sys.argv[1:] if argv is None else argv))
