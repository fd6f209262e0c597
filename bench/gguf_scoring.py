"""Wall time of scoring the same items: lm-eval's hf backend on a merged model, llama.cpp on its GGUF files.

    python -m bench.gguf_scoring models/smollm2-135m-instruct F16.gguf Q8_0.gguf --benchmarks DIR \\
        --tasks pubmedqa medqa_4options --limit 40

One after the other in this process, each model is loaded (timed) and scored by lm-eval's ``simple_evaluate`` on
the same items (timed), as ``python -m eval run`` does (hf: fp32, batch size 8 on CPU; llama-cpp: every core).
Prints a line per model: items, requests, load and scoring seconds, context tokens per second (the distinct
contexts' tokens, counted once by the GGUF's tokenizer: the same work for every model) and accuracy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from eval.benchmarks import TASKS
from eval.lm_eval_tasks import render_tasks


def score(backend: str, model_args: dict[str, Any], names: list[str], tasks_dir: Path, limit: int) -> dict[str, Any]:
    """Load and score one model; its timings, request count and accuracy per task."""
    import lm_eval
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager

    import eval.llama_cpp_lm  # noqa: F401  (registers llama-cpp)

    start = time.monotonic()
    extra = {"batch_size": 8, "device": "cpu"} if backend == "hf" else {}
    lm = get_model(backend).create_from_arg_obj(model_args, extra)
    loaded = time.monotonic()
    results = lm_eval.simple_evaluate(model=lm, tasks=[TASKS[n].lm_eval_task for n in names], num_fewshot=0,
                                      limit=limit, log_samples=True,
                                      task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False))
    scored = time.monotonic()
    samples = [s for n in names for s in results["samples"][TASKS[n].lm_eval_task]]
    return {"load": loaded - start, "score": scored - loaded, "samples": samples,
            "acc": {n: results["results"][TASKS[n].lm_eval_task]["acc,none"] for n in names}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gguf_scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("merged", type=Path, help="the merged model folder (scored by hf in float32)")
    parser.add_argument("ggufs", nargs="+", type=Path, help="its GGUF files (scored by llama.cpp)")
    parser.add_argument("--benchmarks", type=Path, required=True, help="prepared <task>.jsonl folder")
    parser.add_argument("--tasks", nargs="+", default=["pubmedqa", "medqa_4options"], choices=list(TASKS))
    parser.add_argument("--limit", type=int, default=40, help="items per task")
    args = parser.parse_args(argv)
    tasks_dir = render_tasks(args.benchmarks, Path(tempfile.mkdtemp(prefix="gguf-scoring-")), args.tasks)
    runs = {f"hf fp32 {args.merged.name}": ("hf", {"pretrained": str(args.merged), "dtype": "float32"})}
    runs |= {f"llama-cpp {p.name}": ("llama-cpp", {"pretrained": str(p)}) for p in args.ggufs}
    figures = {name: score(backend, margs, args.tasks, tasks_dir, args.limit) for name, (backend, margs) in
               runs.items()}
    from eval.llama_cpp_lm import LlamaCppLM

    counter = LlamaCppLM(pretrained=str(args.ggufs[0]))
    first = next(iter(figures.values()))["samples"]
    contexts = {s["arguments"][0][0] if isinstance(s["arguments"], list) else s["arguments"]["gen_args_0"]["arg_0"]
                for s in first}
    tokens = sum(len(counter.tok_encode(c)) for c in contexts)
    requests = sum(len(s["filtered_resps"]) for s in first)
    print(f"{len(first)} items ({', '.join(args.tasks)}, {args.limit} each), {requests} requests, "
          f"{len(contexts)} contexts of {tokens} tokens in all")
    for name, f in figures.items():
        accs = ", ".join(f"{n} {a:.3f}" for n, a in f["acc"].items())
        print(f"  {name:<44} load {f['load']:6.1f} s  score {f['score']:6.1f} s  {tokens / f['score']:7.0f} context "
              f"tokens/s  acc {accs}")


if __name__ == "__main__":
    main()
