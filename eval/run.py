"""Evaluate a model zero-shot on the prepared benchmarks with lm-evaluation-harness.

    python -m eval run [--model PATH_OR_RUN] [--adapter PATH] [--tasks TASK...] [--backend llama-cpp|hf|vllm]
                       [--limit N] [--chat-template] [--benchmarks DIR] [--out DIR] [--batch-size N] [--dtype D]

``--model runs/<id>`` evaluates that run's ``merged/`` model (else its ``adapter/`` on its base: the rules of
inference/model_source.py, as for chat and release) and writes to ``runs/<id>/eval/``; without ``--model``, the
latest successful run (DPO over SFT). Another model path needs ``--out``.
``--model X.gguf`` is scored by llama.cpp itself, in-process (``--backend llama-cpp``, the default for a GGUF:
eval/llama_cpp_lm.py), so the figures are those of the numerics users run; ``--backend hf`` instead has
transformers read it dequantized (``gguf_file=``; the quantization error stays in the weights, the arithmetic is
torch's). A release's ``gguf/<name>-<QUANT>.gguf`` writes to its run's ``eval/gguf/<QUANT>/``, its vocabulary
checked against the release's tokenizer.
Benchmarks are the ``<task>.jsonl`` files under ``--benchmarks`` (default ``data/benchmarks/``, which ``make
benchmarks`` prepares from the shipped test sets). By default a fixed, seeded sample of each, stratified by gold answer
(eval/sample.py: 700 of the 7,045 items), is scored; ``--full`` scores every item (``--full pubmedqa``: that task
whole, the sample of the others). When none are prepared, the bundled fixtures (``eval/fixtures/``) are prepared into
the output folder and the result is marked a PIPELINE CHECK: a few items per task, not a benchmark.

A run is put beside its base model on the same items (eval/versus_base.py): the base's outcomes come from the
committed full-set scores (``docs/baseline/``), the cache, or are scored now; ``summary.versus_base`` holds the
paired counts, ``eval/base/<task>.jsonl`` the base's outcomes. ``--no-base`` skips it.

Writes OUT/items/ (the items scored and sample.json), OUT/tasks/ (the task YAMLs as run, with absolute data paths),
OUT/samples/<task>.jsonl (lm-eval's per-sample log) and, last, OUT/results.json (lm-eval's results plus ``summary``).
Defaults match the Open Medical-LLM Leaderboard: zero-shot, acc, no chat template (docs/eval.md).

The terminal gets a header, one progress line per step (load model and data, evaluate), the accuracy
table and what to run next; what lm-eval, transformers, datasets and torch print goes to ``<run>/logs/eval.log``
(``OUT/logs/eval.log`` for a model that is not a run; ``--verbose`` shows it here too). A failure there
ends with its cause in one line, the log's last lines and its path (exit 1).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, TextIO

from common import quiet
from common.capture import output_to_log
from common.errors import InputError
from common.files import atomic_writer, sha256_file, write_json_atomic
from common.host import hardware
from common.progress import StepLine, clock
from common.rundir import RunWriter, final_place, now
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
from eval.sample import SIZES, write_sample
from eval.versus_base import overall_words, task_words, versus_base
from inference.gguf_file import GGUFFile, is_gguf
from inference.model_source import Source, find_source

DEFAULT_BENCHMARKS = Path("data/benchmarks")
BACKENDS = ("hf", "vllm", "llama-cpp")
GGUF_READERS = {"llama-cpp": "scored by llama.cpp", "hf": "dequantized by transformers", "vllm": "vllm"}
CPU_BATCH_SIZE = 8
LOG = Path("logs/eval.log")  # under the run folder, else under the output folder
PIPELINE_CHECK_BANNER = (
    "=" * 78 + "\n"
    "PIPELINE CHECK, NOT A BENCHMARK: no benchmark is prepared under {benchmarks}/, so this run uses the\n"
    "few bundled fixture items per task (eval/fixtures/). Its numbers only show that the pipeline works.\n"
    "Prepare all nine with `make benchmarks` (python -m eval prepare --all --out data/benchmarks).\n" + "=" * 78
)


def resolve_model(spec: str | None, runs_dir: Path) -> Source | None:
    """``--model`` by the one resolver's rules (inference/model_source.py: the latest usable run; a run's merged/,
    else its adapter/ on its base, which lm-eval loads as ``peft``; a model folder); None for a hub id, which lm-eval
    fetches itself."""
    if spec is not None and not Path(spec).exists():
        check_hub_id(spec)
        return None
    return find_source(spec, runs_dir)


def check_hub_id(spec: str) -> None:
    """Refuse a ``--model`` that is neither a folder here nor a hub id (``ORG/NAME``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        raise SystemExit(f"--model {spec}: no such folder, and not a hub id (ORG/NAME)") from None


def gguf_of(args: argparse.Namespace) -> Path | None:
    """``--model`` when it names a .gguf file."""
    return Path(args.model) if args.model and is_gguf(args.model) else None


def gguf_model_args(args: argparse.Namespace, gguf: Path) -> dict[str, Any]:
    """lm-eval's model_args for a GGUF: llama-cpp's file; hf's folder and file, and the release's tokenizer."""
    if args.backend == "vllm" or args.adapter:
        raise SystemExit(f"--model {gguf}: a GGUF is evaluated with --backend llama-cpp (or hf) and no --adapter")
    found = ({"pretrained": str(gguf.resolve())} if args.backend == "llama-cpp" else
             {"pretrained": str(gguf.resolve().parent), "gguf_file": gguf.name, "dtype": args.dtype})
    release = GGUFFile.of(gguf).release
    if release and (release / "tokenizer.json").is_file():
        tokenizer = same_vocabulary(gguf, release)
        if args.backend == "hf":
            found["tokenizer"] = str(release)
        else:  # BOS as the release's tokenizer adds it, whatever the converter read (HFLM's rule)
            found["add_bos_token"] = tokenizer.bos_token_id is not None and \
                tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    return {**found, **dict(kv.split("=", 1) for kv in args.model_args)}


def same_vocabulary(gguf: Path, release: Path) -> Any:
    """The release's tokenizer; refused unless the GGUF's vocabulary is as long (else a file from another model)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(release)
    count, expected = GGUFFile.of(gguf).n_tokens, len(tokenizer)
    if count != expected:
        raise SystemExit(f"--model {gguf}: {count} tokens, the release's tokenizer ({release}) has {expected}: "
                         "a GGUF from another model")
    return tokenizer


def model_args(args: argparse.Namespace, model: str, source: Source | None = None) -> dict[str, Any]:
    """lm-eval's model_args for the backend (``source``: a run's adapter on its base, with the adapter's tokenizer);
    vLLM is the cluster fast path and must be installed there."""
    adapter = args.adapter or (source.adapter if source else None)
    extra = dict(kv.split("=", 1) for kv in args.model_args)
    if source and source.tokenizer != source.model:
        extra = {"tokenizer": str(source.tokenizer.resolve()), **extra}
    if args.backend == "vllm":
        if importlib.util.find_spec("vllm") is None:
            raise SystemExit("--backend vllm: vLLM is not installed in this environment (it needs a CUDA GPU); "
                             "install it on the cluster (pip install vllm) or use --backend hf")
        found = {"pretrained": model, "dtype": args.dtype, "gpu_memory_utilization": 0.85}
        if adapter:
            found["lora_local_path"] = str(adapter)
        return {**found, **extra}
    found = {"pretrained": model, "dtype": args.dtype}
    if adapter:
        found["peft"] = str(adapter)
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
        names = args.tasks or found
        return folder, names, all(from_fixtures(folder, name) for name in names)
    print(PIPELINE_CHECK_BANNER.format(benchmarks=folder), flush=True)
    folder = out / "benchmarks"
    names = args.tasks or list(TASKS)
    for name in names:
        inputs = sorted(str(p) for p in (FIXTURES / name).iterdir() if p.is_file())
        prepare(TASKS[name], inputs, folder, allow_partial=True)
    return folder, names, True


def from_fixtures(folder: Path, name: str) -> bool:
    """Whether ``folder``'s prepared task was made from the bundled fixtures (its manifest's inputs): a pipeline
    check scored again on the same items, as a release's GGUFs are beside a merged model's pipeline check."""
    manifest = folder / f"{name}.manifest.json"
    if not manifest.is_file():
        return False
    inputs = json.loads(manifest.read_text(encoding="utf-8")).get("inputs") or []
    return bool(inputs) and all(Path(i.get("path", "")).resolve().is_relative_to(FIXTURES) for i in inputs)


def json_safe(obj: Any, secrets: list[str]) -> Any:
    """``obj`` through JSON (lm-eval's own fallback for numpy and other values), then secrets redacted in the data."""
    from lm_eval.utils import handle_non_serializable

    return redact(json.loads(json.dumps(obj, default=handle_non_serializable)), secrets)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve model and benchmarks, run lm-eval (its output to the log), write samples then results.json."""
    start = time.monotonic()
    gguf = gguf_of(args)
    if gguf:
        record = GGUFFile.of(gguf).record()
        model, run, adapter, margs = str(gguf.resolve()), None, None, gguf_model_args(args, gguf)
        args.out = args.out or GGUFFile.of(gguf).release_eval_dir()
    else:
        source = resolve_model(args.model, args.runs_dir)
        if source and source.adapter and args.adapter:
            raise InputError(f"--adapter {args.adapter}: --model is an adapter on its base already "
                             f"({source.describe()})")
        model = str(source.model.resolve()) if source else args.model  # a folder here, or a hub id
        run = source.run.resolve() if source and source.run else None
        adapter = args.adapter or (source.adapter if source else None)
        margs = model_args(args, model, source)
    if args.out is None and run is None:
        raise SystemExit(f"--model {model} is neither a run folder nor a release's GGUF: pass --out DIR for its "
                         "results")
    out = (args.out or run / "eval").resolve()
    benchmarks, names, pipeline_check = select_benchmarks(args, out)
    items, sample = benchmarks, None
    if not pipeline_check and args.full != []:
        items = out / "items"
        sample = write_sample(benchmarks, names, items, {t: n for t, n in SIZES.items() if t not in (args.full or [])})
        if all(t["n"] == t["of"] for t in sample["tasks"].values()):  # nothing left out: score the prepared files
            items = benchmarks
    tasks_dir = render_tasks(items, out / "tasks", names)
    limit = None if args.limit is None else int(args.limit) if args.limit >= 1 else args.limit
    log = (run or out) / LOG
    print("\n".join(eval_header(args, model, run, benchmarks, names, pipeline_check, out, log, sample, adapter)),
          flush=True)
    started = now()
    with output_to_log(log, "eval run", tee=quiet.VERBOSE, title=f"eval run of {model}") as terminal:
        results = run_lm_eval(args, margs, names, tasks_dir, limit, terminal)
    secrets = secret_values()
    write_samples(out / "samples", samples_by_task(results.pop("samples"), names), secrets)
    llama = args.backend == "llama-cpp"  # the file's own tensor types; llama.cpp decodes a context at a time
    settings = {"backend": args.backend, "chat_template": args.chat_template, "dtype": None if llama else args.dtype,
                "batch_size": None if llama else args.batch_size, "limit": limit, "num_fewshot": 0,
                "full": args.full if args.full is None else args.full or list(names)}
    results = json_safe(results, secrets)
    results["summary"] = summarize(results, names, model=model, run_id=run.name if run else None,
                                   adapter=str(adapter.resolve()) if adapter else None,
                                   pipeline_check=pipeline_check, benchmarks=str(benchmarks.resolve()),
                                   settings=settings, sample=sample)
    if run is not None and not args.no_base and not args.adapter:
        def score(base: str, tasks: list[str], folder: Path) -> dict[str, list[dict[str, Any]]]:
            base_args = argparse.Namespace(**{**vars(args), "adapter": None, "model_args": []})
            base_tasks = render_tasks(folder, out / "base" / "tasks", tasks)
            with output_to_log(log, "eval run (base)", tee=quiet.VERBOSE, title=f"eval run of {base}") as terminal:
                found = run_lm_eval(base_args, model_args(base_args, base), tasks, base_tasks, None, terminal,
                                    label="base: ")
            return samples_by_task(found["samples"], tasks)

        results["summary"]["versus_base"] = versus_base(run, out, names, items,
                                                        {n: benchmarks / f"{n}.jsonl" for n in names}, score)
    if gguf:
        results["summary"]["gguf"] = record
    results["benchmark_files"] = {n: {"path": str((benchmarks / f"{n}.jsonl").resolve()),
                                      "sha256": sha256_file(benchmarks / f"{n}.jsonl")} for n in names}
    results["timing"] = {"started_at": started, "ended_at": now(), "seconds": round(time.monotonic() - start, 1)}
    results["host"] = hardware()
    write_json_atomic(out / "results.json", results)
    print("\n".join(eval_footer(results["summary"], out, run, log, time.monotonic() - start)), flush=True)
    return results


def write_samples(folder: Path, samples: dict[str, list[dict[str, Any]]], secrets: list[str]) -> None:
    """lm-eval's per-sample logs, one ``<task>.jsonl`` each, secrets redacted."""
    for name, rows in samples.items():
        with atomic_writer(folder / f"{name}.jsonl") as handle:
            handle.writelines(json.dumps(json_safe(s, secrets), ensure_ascii=False) + "\n" for s in rows)


def run_lm_eval(args: argparse.Namespace, margs: dict[str, Any], names: list[str], tasks_dir: Path,
                limit: int | float | None, terminal: TextIO, label: str = "") -> dict[str, Any]:
    """Load the model, then lm-eval's ``simple_evaluate`` on it, with two progress lines on ``terminal``."""
    with EvalProgress(terminal, label) as progress:
        import lm_eval
        from lm_eval.api.registry import get_model
        from lm_eval.tasks import TaskManager

        if args.backend == "llama-cpp":
            import eval.llama_cpp_lm  # noqa: F401  (registers the llama-cpp model with lm-eval)

        lm = get_model(args.backend).create_from_arg_obj(margs, {"batch_size": args.batch_size,
                                                                 "device": args.device})
        progress.watch(lm)
        results = lm_eval.simple_evaluate(
            model=lm, model_args=margs, tasks=[TASKS[n].lm_eval_task for n in names], num_fewshot=0,
            batch_size=args.batch_size, device=args.device, limit=limit, log_samples=True,
            apply_chat_template=args.chat_template, fewshot_as_multiturn=False,
            task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
        )
    results["config"]["model"] = args.backend  # what lm-eval records when it loads the model itself
    return results


class EvalProgress:
    """``load model and data`` until lm-eval hands the model its requests, then ``evaluate``: requests answered.

    It counts through the cache hook lm-eval's models call once per answered request (``add_partial``).
    """

    def __init__(self, terminal: TextIO, label: str = "") -> None:
        self.terminal, self.done, self.shown, self.hook, self.label = terminal, 0, 0.0, None, label
        self.line = StepLine(f"{label}load model and data", unit="", stream=terminal)

    def __enter__(self) -> EvalProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.line.close("stopped" if kind else "done")

    def watch(self, lm: Any) -> None:
        """Count ``lm``'s answered requests, out of those handed to it so far."""
        self.hook = lm.cache_hook
        lm.set_cache_hook(self)
        for kind in ("loglikelihood", "generate_until"):
            method = getattr(lm, kind, None)
            if method is not None:
                setattr(lm, kind, self.counted(method))

    def counted(self, method: Any) -> Any:
        """``method`` (``lm.loglikelihood``), first announcing how many requests it gets."""
        def handed(requests: list, *rest: Any, **named: Any) -> Any:
            if self.line.name != f"{self.label}evaluate":
                self.line.close("done")
                self.line = StepLine(f"{self.label}evaluate", total=len(requests), unit="requests",
                                     stream=self.terminal)
            else:
                self.line.update(total=self.done + len(requests))
            return method(requests, *rest, **named)

        return handed

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        """lm-eval's cache hook: one request answered."""
        if self.hook is not None:
            self.hook.add_partial(attr, req, res)
        self.done += 1
        if time.monotonic() - self.shown >= 0.5 or self.done == self.line.total:
            self.shown = time.monotonic()
            self.line.update(self.done)


def shown_path(path: Path) -> str:
    """``path`` relative to the current folder when inside it (shorter lines), else absolute; a path in a stage
    being written (``eval all``), as it will be once renamed in."""
    path = final_place(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def row_count(path: Path) -> int:
    """Non-blank lines of a prepared ``<task>.jsonl``."""
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def eval_header(args: argparse.Namespace, model: str, run: Path | None, benchmarks: Path, names: list[str],
                pipeline_check: bool, out: Path, log: Path, sample: dict[str, Any] | None = None,
                adapter: Path | None = None) -> list[str]:
    """What is evaluated, on which benchmarks (rows each), how, and where results and the log go."""
    rows = {name: row_count(benchmarks / f"{name}.jsonl") for name in names}
    if sample:  # the items scored: n of the set's rows
        rows = {name: (f"{t['n']}/{t['of']}" if t["n"] != t["of"] else t["n"])
                for name, t in sample["tasks"].items()}
    gguf = is_gguf(model)
    what = (f"{shown_path(run)}/ ({'its adapter on its base' if adapter else 'its merged model'})" if run else
            f"{shown_path(Path(model))} ({GGUF_READERS[args.backend]})" if gguf else model)
    where = (f"llama.cpp in-process, {threads_of(args)} threads" if args.backend == "llama-cpp" else
             f"{args.backend} on {args.device or 'its default device'}")
    batch = "" if args.backend == "llama-cpp" else f", batch size {args.batch_size}"
    kind = ("bundled fixtures, a PIPELINE CHECK" if pipeline_check else
            "prepared" if not sample or all(t["n"] == t["of"] for t in sample["tasks"].values()) else
            f"a seeded sample stratified by answer, of {sum(t['of'] for t in sample['tasks'].values())}; --full: all")
    total = sum(int(str(v).split("/")[0]) for v in rows.values())
    sampled = total != sum(int(str(v).split("/")[-1]) for v in rows.values())  # the footer gives each task's n
    limit = f", at most {args.limit:g} per task" if args.limit is not None else ""
    listing = [part.replace("\xa0", " ")  # a task and its count stay on one line
               for part in textwrap.wrap(", ".join(f"{n}\xa0{k}" for n, k in rows.items()), width=104)]
    return [f"eval of {what}",
            f"  benchmarks  {how_many(len(rows), 'task')}, {how_many(total, 'item')} ({kind}) in "
            f"{shown_path(benchmarks)}/", *(f"              {part}" for part in listing if not sampled),
            f"  settings    {where}, zero-shot{batch}{', chat template' if args.chat_template else ''}{limit}",
            f"  results     {shown_path(out)}/ (lm-eval's own output: {shown_path(log)})"]


def threads_of(args: argparse.Namespace) -> str:
    """llama.cpp's threads: ``--model-args n_threads=N``, else this machine's cores."""
    from inference.gguf_model import cores

    return dict(kv.split("=", 1) for kv in args.model_args).get("n_threads") or str(cores())


def how_many(count: int, noun: str) -> str:
    """``1 task``, ``9 tasks``."""
    return f"{count} {noun}{'s' * (count != 1)}"


def stderr_words(stderr: float | None) -> str:
    """``0.2108``, or ``?`` where lm-eval gave none (a single item)."""
    return "?" if stderr is None else f"{stderr:.4f}"


def eval_footer(summary: dict[str, Any], out: Path, run: Path | None, log: Path, seconds: float) -> list[str]:
    """The accuracy table, the pipeline-check reminder, wall time, outputs and the next command."""
    versus = summary.get("versus_base")
    lines = [f"  {name:<28} acc {row['acc']:.4f} ± {stderr_words(row['stderr'])}  (n={row['n']})"
             + (f"   {task_words(versus['tasks'][name])}" if versus else "")
             for name, row in summary["tasks"].items()]
    if versus:
        lines.append(f"  {overall_words(versus)}")
    if summary["pipeline_check"]:
        lines.append("PIPELINE CHECK, NOT A BENCHMARK: bundled fixture items only; `make benchmarks` prepares the "
                     "nine test sets")
    report = shown_path(run) if run else shown_path(out / "results.json")
    return [*lines, f"eval done in {clock(seconds)}",
            f"  results     {shown_path(out / 'results.json')}, per-sample logs {shown_path(out / 'samples')}/",
            f"  log         {shown_path(log)} (lm-eval's own output; --verbose shows it here too)",
            f"  next        python -m eval report {report}   (the table beside the model card)"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="runs/<id> (its merged/, else its adapter/ on its base), an adapter or model "
                                        "folder, a .gguf file or a hub id; default: the latest successful dpo, else "
                                        "sft, run")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter folder applied on top of --model")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), metavar="TASK",
                        help="a subset of the nine (default: every prepared one)")
    parser.add_argument("--backend", choices=BACKENDS,
                        help="hf (the default for a model folder or run; CPU or GPU), vllm (the GPU cluster fast "
                             "path) or llama-cpp (the default for a .gguf: llama.cpp itself; hf reads it "
                             "dequantized by transformers instead)")
    parser.add_argument("--full", nargs="*", metavar="TASK", choices=list(TASKS),
                        help="score every item (of the TASKs named; default: of all), not the seeded sample")
    parser.add_argument("--no-base", action="store_true", help="do not put a run beside its base model")
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
    gguf = bool(args.model and is_gguf(args.model))
    args.backend = args.backend or ("llama-cpp" if gguf else "hf")
    if args.backend == "llama-cpp" and not gguf:
        raise InputError(f"--backend llama-cpp scores a .gguf file; --model {args.model or '(the latest run)'} is "
                         "not one")
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


def output_run(args: argparse.Namespace) -> tuple[Path, str] | None:
    """(run folder, folder in it) where results land when ``--out`` is not given: ``eval/`` of a run, a release
    GGUF's ``eval/gguf/<QUANT>/`` of its run; None when they go elsewhere."""
    if args.out is not None:
        return None
    if gguf := gguf_of(args):
        run, quant = GGUFFile.of(gguf).release_run(), GGUFFile.of(gguf).quant
        return (run, f"eval/gguf/{quant}") if run else None
    source = resolve_model(args.model, args.runs_dir)
    if source and source.run:
        args.model = str(source.run)  # the run locked is the run scored
        return source.run, "eval"
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m eval run ...``; returns the results written to results.json.

    Results that land in a run folder are written under its lock (common/rundir.py's ``RunWriter``), after its
    adapter/ and merged/ are checked against the manifest's hashes, staged aside and renamed in whole (a run's
    ``eval/`` keeps the GGUF scores of its releases, ``eval/gguf/``)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    target = output_run(args)
    if target is None:
        return evaluate(args)
    run, name = target
    with RunWriter.open(run) as writer:
        if name == "eval":
            writer.verify()
        with writer.staged(name, keep=("gguf",) if name == "eval" else ()) as stage:
            args.out = stage
            return evaluate(args)
