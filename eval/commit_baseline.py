"""``python -m eval baseline RESULTS_DIR --out docs/baseline/<model>``: a base model's full test-set eval, committed.

The eval (``python -m eval run --model FOLDER --full --out RESULTS_DIR``) becomes ``out/items/<task>.jsonl`` (each
item's gold and predicted answer), ``out/results.json`` (its summary), the report beside the model card and, last,
``out/baseline.json`` (the model's content hash, each test set's sha256): what eval/baseline.py looks up, so that
``make eval`` scores only the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import write_json_atomic
from eval.paired import write_outcomes


def commit(results_dir: Path, out: Path) -> dict[str, Any]:
    """Write a base model's full test-set eval (``eval run --model FOLDER --full --out RESULTS_DIR``) as
    ``out/items/<task>.jsonl`` and, last, ``out/baseline.json``: what :func:`committed_outcomes` reads."""
    from common.files import sha256_file, sha256_tree
    from common.host import hardware
    from eval.benchmarks import TASKS
    from eval.paired import outcomes_from_samples

    results = json.loads((results_dir / "results.json").read_text(encoding="utf-8"))
    summary = results["summary"]
    folder = Path(summary["model"])
    if summary.get("pipeline_check") or summary.get("run_id") or not folder.is_dir():
        raise SystemExit(f"{results_dir}: not an eval of a model folder on the prepared test sets")
    tasks = {}
    for name, score in summary["tasks"].items():
        if score["n"] != TASKS[name].rows:
            raise SystemExit(f"{results_dir}: {name} scored {score['n']} items, not the whole test set's "
                             f"{TASKS[name].rows} (eval run --full)")
        items = out / "items" / f"{name}.jsonl"
        outcomes = outcomes_from_samples(results_dir / "samples" / f"{name}.jsonl")
        write_outcomes(items, outcomes)
        tasks[name] = {"benchmark_sha256": results["benchmark_files"][name]["sha256"], "rows": len(outcomes),
                       "correct": sum(o.correct for o in outcomes.values()), "acc": score["acc"],
                       "items": f"items/{name}.jsonl", "items_sha256": sha256_file(items)}
    source = folder / "source.json"
    shown = folder.resolve().relative_to(Path.cwd()) if folder.resolve().is_relative_to(Path.cwd()) else folder
    record = {"model": {"name": folder.name, "key": sha256_tree(folder), "folder": str(shown),
                        "source": json.loads(source.read_text()) if source.is_file() else None},
              "settings": summary.get("settings"), "timing": results.get("timing"),
              "host": results.get("host") or hardware(), "tasks": tasks}
    out.mkdir(parents=True, exist_ok=True)
    kept = {k: v for k, v in summary.items() if k != "versus_base"}
    write_json_atomic(out / "results.json", {"summary": {**kept, "model": str(shown), "benchmarks": "data/benchmarks"},
                                             "benchmark_files": results["benchmark_files"],
                                             "timing": results.get("timing")})
    write_json_atomic(out / "baseline.json", record)
    return record


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m eval baseline RESULTS_DIR --out docs/baseline/<model>``; then the report beside the card."""
    import argparse

    from eval import report

    parser = argparse.ArgumentParser(prog="python -m eval baseline", description=commit.__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the output folder of `eval run --model FOLDER --full --out DIR`")
    parser.add_argument("--out", type=Path, required=True, help="e.g. docs/baseline/smollm2-135m-instruct")
    args = parser.parse_args(argv)
    if not (args.results / "results.json").is_file():
        raise SystemExit(f"{args.results}: no results.json (run `python -m eval run --model FOLDER --full --out DIR`)")
    record = commit(args.results, args.out)
    report.main([str(args.out / "results.json"), "--out", str(args.out / "report.md"), "--brief"])
    print(f"{len(record['tasks'])} tasks, {sum(t['rows'] for t in record['tasks'].values())} items -> {args.out}/")
    return record
