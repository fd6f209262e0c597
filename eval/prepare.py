"""Turn raw benchmark files into the prepared rows the local lm-eval tasks read.

    python -m eval prepare TASK INPUT... --out DIR [--allow-partial]
    python -m eval prepare pubmedqa ori_pqal.json test_ground_truth.json --out data/benchmarks
    python -m eval prepare --all --out data/benchmarks [--from RAW_DIR]    all nine (eval/fetch.py)

Writes DIR/<task>.jsonl (one item a line: id, question, text, and the fields the task YAML
renders) and, last, DIR/<task>.manifest.json (inputs with sha256, rows read, kept and left
out, the expected and written row counts). A row count other than the official one stops the
run, naming both, unless --allow-partial. INPUT may be ``hub:ORG/NAME@REVISION[:[CONFIG/]SPLIT]``.
``python -m eval prepare --help`` lists the nine tasks and the raw files each reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common.files import sha256_file, staged_outputs, write_json_atomic, write_jsonl_atomic
from common.progress import track
from common.rundir import now
from data_prep.readers import HUB_PREFIX
from eval import fetch
from eval.benchmarks import TASKS, BenchmarkError, Task


def task_table() -> str:
    """The nine tasks, their official split and row count, and the raw files each reads."""
    lines = ["tasks (official split, rows: raw files):"]
    for task in TASKS.values():
        lines.append(f"  {task.name:<28} {task.split}, {task.rows} rows: {task.schema.SUMMARY}")
    return "\n".join(lines)


def input_record(spec: str) -> dict[str, Any]:
    """An input as the manifest records it: path and sha256 (hub ids carry their pinned revision)."""
    return {"path": spec, "sha256": None if spec.startswith(HUB_PREFIX) else sha256_file(Path(spec))}


def prepare(task: Task, inputs: list[str], out_dir: Path, allow_partial: bool = False,
            source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Prepare one task from its raw inputs; write the rows, then the manifest; return the manifest.

    Both are written into a staging folder and moved in together: a run that fails leaves the previous pair.
    ``source`` (``prepare --all``) records where the inputs came from: the hub dataset and its commit, or the folder.
    """
    for spec in inputs:
        if not spec.startswith(HUB_PREFIX) and not Path(spec).is_file():
            raise BenchmarkError(f"{spec}: no such file")
    started = now()
    loaded = task.schema.load(inputs, task)
    found = len(loaded.rows)
    if found == 0:
        raise BenchmarkError(f"{task.name}: no rows found in {', '.join(inputs)}; nothing written")
    partial = found != task.rows
    if partial and not allow_partial:
        raise BenchmarkError(f"{task.name}: expected {task.rows} rows ({task.split}), found {found} in "
                             f"{', '.join(inputs)}; nothing written (--allow-partial writes them anyway)")
    out, manifest_name = out_dir / f"{task.name}.jsonl", f"{task.name}.manifest.json"
    with staged_outputs(out_dir, task.name, [out.name], manifest_name) as stage:
        write_jsonl_atomic(stage / out.name, loaded.rows)
        manifest = {
            "task": task.name,
            "lm_eval_task": task.lm_eval_task,
            "schema": task.schema.NAME,
            "split": task.split,
            "expected_rows": task.rows,
            "partial": partial,
            "inputs": [input_record(spec) for spec in inputs],
            **({"source": source} if source else {}),
            "facts": loaded.facts,
            "left_out": loaded.left_out,
            "output": {"path": str(out), "sha256": sha256_file(stage / out.name), "rows": found},
            "started_at": started,
            "ended_at": now(),
            "command": ["python", "-m", "eval", "prepare", task.name, *inputs, "--out", str(out_dir)]
            + (["--allow-partial"] if allow_partial else []),
        }
        write_json_atomic(stage / manifest_name, manifest)
    return manifest


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval prepare", description=__doc__.split("\n\n")[0],
        epilog=task_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", nargs="?", choices=list(TASKS), metavar="TASK",
                        help="one of the nine tasks listed below")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="raw files (or hub:ORG/NAME@REV[:[CONFIG/]SPLIT])")
    parser.add_argument("--all", action="store_true", help="all nine: from the hub datasets lm-eval's tasks read, "
                        "or with --from from raw files found by name (eval/fetch.py)")
    parser.add_argument("--from", dest="raw", type=Path, metavar="RAW_DIR", help="with --all: a folder of raw files")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for <task>.jsonl")
    parser.add_argument("--allow-partial", action="store_true",
                        help="write a row count other than the official one (a subset, or fixtures)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m eval prepare TASK INPUT... --out DIR``; returns the manifest."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.all or args.raw:
        if args.task or not args.all:
            raise SystemExit("--all prepares every task (with --from RAW_DIR: from raw files); name no TASK or INPUT")
        return prepare_all(args.out, args.raw, args.allow_partial)
    if not args.task or not args.inputs:
        raise SystemExit("name a TASK and its INPUT files, or --all (python -m eval prepare --help)")
    manifest = prepare(TASKS[args.task], args.inputs, args.out, args.allow_partial)
    out = manifest["output"]
    note = f" (PARTIAL: the official split has {manifest['expected_rows']})" if manifest["partial"] else ""
    left = "".join(f"; left out {n} ({reason})" for reason, n in manifest["left_out"].items())
    print(f"{args.task}: {out['rows']} rows -> {out['path']}{note}{left}")
    return manifest


def prepare_all(out: Path, raw: Path | None = None, allow_partial: bool = False) -> dict[str, dict[str, Any]]:
    """Prepare every task into ``out``: from the hub, or from the raw files in ``raw``. Returns the manifests."""
    if raw is not None and not raw.is_dir():
        raise BenchmarkError(f"{raw}: no such folder")
    plan: dict[str, tuple[list[str], dict[str, Any]]] = {}
    missing = []
    for task in TASKS:
        if raw is None:
            continue
        inputs = fetch.find_raw(raw, task)
        if inputs is None:
            missing.append(f"{task} ({' + '.join(fetch.RAW_FILES[task])})")
        else:
            plan[task] = (inputs, {"raw_folder": str(raw)})
    if missing and (not allow_partial or not plan):
        raise BenchmarkError(f"{raw}: no raw files for {', '.join(missing)}; nothing written"
                             + (" (--allow-partial prepares the others)" if plan else ""))
    manifests = {}
    for task in track(list(TASKS) if raw is None else list(plan), "benchmarks", unit="tasks"):
        if raw is not None:
            manifests[task] = prepare(TASKS[task], *plan[task][:1], out, allow_partial, source=plan[task][1])
        else:
            try:
                inputs, source = fetch.hub_inputs(task)
                manifests[task] = prepare(TASKS[task], inputs, out, allow_partial, source=source)
            except BenchmarkError:
                raise
            except Exception as err:  # the network, the hub, a moved dataset: one line, not a traceback
                raise BenchmarkError(f"{task}: could not read {fetch.HUB[task].dataset} from the hub "
                                     f"({type(err).__name__}: {err}); check the network and HF_TOKEN, "
                                     "or pass --from RAW_DIR") from err
    counts = ", ".join(f"{task} {m['output']['rows']}" for task, m in manifests.items())
    print(f"prepared {len(manifests)} test sets, {sum(m['output']['rows'] for m in manifests.values()):,} items "
          f"-> {out}/: {counts}", flush=True)
    if missing:
        print(f"not prepared (no raw files): {', '.join(missing)}")
    return manifests
