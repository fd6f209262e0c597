"""The local lm-eval tasks (``eval/tasks/openbio_<task>.yaml``): which are prepared, rendering them for a run,
and reading lm-eval's output back by canonical task name.

    render_tasks(benchmarks, out / "tasks", names)   # YAMLs with absolute data paths, for include_path
    summarize(results, names, ...)                   # the ``summary`` block of results.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from common.files import atomic_writer
from eval.benchmarks import TASKS

HERE = Path(__file__).resolve().parent
TASKS_DIR = HERE / "tasks"
FIXTURES = HERE / "fixtures"


class TaskDumper(yaml.SafeDumper):
    """Writes multi-line strings (prompt templates) double-quoted with ``\\n``, as the source YAMLs have them."""


TaskDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style='"' if "\n" in value else None))


def prepared_tasks(folder: Path) -> list[str]:
    """Canonical names of the tasks with a ``<task>.jsonl`` in ``folder``, in table order."""
    return [name for name in TASKS if (folder / f"{name}.jsonl").is_file()]


def task_config(name: str, data_file: Path) -> dict[str, Any]:
    """Our YAML for ``name``, includes resolved (lm-eval's own loader), reading ``data_file``."""
    from lm_eval.utils import load_yaml_config

    config = load_yaml_config(str(TASKS_DIR / f"{TASKS[name].lm_eval_task}.yaml"), mode="full")
    config["dataset_kwargs"] = {"data_files": {"test": str(data_file.resolve())}}
    return config


def render_tasks(benchmarks: Path, out: Path, names: list[str]) -> Path:
    """Write one self-contained task YAML per task into ``out``, each reading its prepared file; return ``out``."""
    for name in names:
        data_file = benchmarks / f"{name}.jsonl"
        if not data_file.is_file():
            raise SystemExit(f"{data_file}: not prepared; run `python -m eval prepare {name} ...`")
        with atomic_writer(out / f"{TASKS[name].lm_eval_task}.yaml") as handle:
            handle.write(f"# rendered from eval/tasks/{TASKS[name].lm_eval_task}.yaml for this run\n")
            yaml.dump(task_config(name, data_file), handle, Dumper=TaskDumper, sort_keys=False, allow_unicode=True,
                      width=1000)
    return out


def samples_by_task(samples: dict[str, list[dict[str, Any]]], names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """lm-eval's per-sample logs keyed by canonical task name."""
    return {name: samples[TASKS[name].lm_eval_task] for name in names}


def summarize(results: dict[str, Any], names: list[str], **fields: Any) -> dict[str, Any]:
    """The report's input: ``{model, run_id, pipeline_check, benchmarks, settings, tasks: {name: {acc, stderr, n}}}``"""
    tasks = {}
    for name in names:
        task = TASKS[name].lm_eval_task
        scores = results["results"][task]
        stderr = scores["acc_stderr,none"]  # lm-eval writes "N/A" when it cannot compute one (a single item)
        tasks[name] = {"acc": float(scores["acc,none"]),
                       "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                       "n": int(results["n-samples"][task]["effective"])}
    return {**fields, "tasks": tasks}
