"""Re-run a finished run from its manifest, and show that it comes out the same.

    python -m launch reproduce runs/<run-id> [--allow-recipe-change] [--run-id ID] [--steps N] [--tolerance REL]
    make reproduce RUN=runs/<run-id>

Before anything trains, it refuses when a recorded input differs:
- the recipe: the file's sha256 must be the recorded one (``--allow-recipe-change`` runs the new content);
- the config: the recipe plus the recorded ``--set`` overrides must resolve to the recorded config;
- the datasets: a file from ``data_prep build`` is rebuilt from its mixture and must hash the same;
  any other local file must hash the same as it did;
- the base model: a local folder (for DPO, the parent run's merged model) by its tree hash, a hub model by revision.
It warns, listing them, when package versions or the code commit differ.

Then it runs the same stage into a new run folder, whose manifest says which run it reproduces, and compares
the tokenized dataset hash and the losses of the first steps (launch/lifecycle/train_record.py), within a
relative tolerance.
It exits 1 when they differ.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from common.errors import WorldError, cli_main
from common.files import sha256_file, sha256_tree
from common.rundir import MANIFEST, new_run_id, read_manifest
from common.secrets import REDACTED
from launch.lifecycle import manifest, train_record
from launch.lifecycle.config import parse_override
from launch.lifecycle.run import Run, StageRun, resolve_config
from launch.lifecycle.topology import Topology
from launch.runner.stage import run_stage

RUN_FOLDER_KEYS = ("output_dir", "dataset_prepared_path")  # differ by design: each run writes into its own folder


def refuse(reason: str) -> SystemExit:
    """The error that stops a reproduction before anything trains."""
    return SystemExit(f"reproduce: refused: {reason}")


def recorded_overrides(record: dict[str, Any]) -> dict[str, Any]:
    """The ``--set`` overrides of the original run: recorded as such, or (older manifests) parsed from its command."""
    if record.get("overrides") is not None:
        return dict(record["overrides"])
    if record.get("reproduces"):
        return dict(record["reproduces"]["overrides"])
    command, overrides = record["command"], {}
    for i, arg in enumerate(command):
        if arg == "--set" and i + 1 < len(command):
            key, value = parse_override(command[i + 1])
        elif arg.startswith("--set="):
            key, value = parse_override(arg.removeprefix("--set="))
        else:
            continue
        overrides[key] = value
    return overrides


def config_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Top-level keys whose value differs, run-folder paths and redacted values aside."""
    lines = []
    for key in sorted(set(recorded) | set(now)):
        if key in RUN_FOLDER_KEYS or recorded.get(key) == REDACTED or recorded.get(key) == now.get(key):
            continue
        lines.append(f"{key}: recorded {recorded.get(key)!r}, now {now.get(key)!r}")
    return lines


def check_recipe_unchanged(record: dict[str, Any], root: Path, allow_change: bool) -> Path:
    """The recipe file as recorded, refused when missing or (unless allowed) changed since the run."""
    recipe = Path(record["recipe"]["path"])
    if not (root / recipe).is_file():
        raise refuse(f"recipe {recipe} is gone")
    found, expected = sha256_file(root / recipe), record["recipe"]["sha256"]
    if found != expected:
        message = f"recipe {record['recipe']['path']} changed since the run: expected sha256 {expected}, found {found}"
        if not allow_change:
            raise refuse(f"{message} (--allow-recipe-change runs it anyway)")
        print(f"warning: {message}; running the new content (--allow-recipe-change)")
    return recipe


def rebuild_mixture(group: list[dict[str, Any]], root: Path) -> None:
    """Rebuild the mixture that made ``group``'s files; refuse on a hash mismatch, restore a missing or edited file."""
    from data_prep.build import build

    link = group[0]["data_manifest"]
    mixture = link.get("mixture")
    if mixture is None and (root / link["path"]).is_file():  # runs from before the manifest named the mixture
        mixture = json.loads((root / link["path"]).read_text()).get("mixture")
    if mixture is None:
        raise refuse(f"{link['path']} is gone and the run does not name its mixture: rebuild it (make data) first")
    mixture_path = root / mixture["path"]
    if not mixture_path.is_file():
        raise refuse(f"mixture {mixture['path']} is gone")
    if sha256_file(mixture_path) != mixture["sha256"]:
        print(f"note: mixture {mixture['path']} changed since the run; checking what it builds now")
    print(f"rebuilding {mixture['path']} to check {', '.join(d['path'] for d in group)}")
    with tempfile.TemporaryDirectory(prefix="reproduce-data-") as tmp:
        build(mixture_path, Path(tmp))
        for dataset in group:
            rebuilt = Path(tmp) / Path(dataset["path"]).name
            found = sha256_file(rebuilt) if rebuilt.is_file() else "no such file in the rebuild"
            if found != dataset["sha256"]:
                raise refuse(f"dataset {dataset['path']}, rebuilt from {mixture['path']}: "
                             f"expected sha256 {dataset['sha256']}, found {found}")
        for dataset in group:  # every rebuilt file matches: put back any that is missing or was edited since
            target = root / dataset["path"]
            if not target.is_file() or sha256_file(target) != dataset["sha256"]:
                print(f"restoring {dataset['path']} from the rebuilt mixture")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / target.name, target)
        if not (root / link["path"]).is_file():
            shutil.copyfile(Path(tmp) / manifest.DATA_MANIFEST, root / link["path"])


def check_datasets(record: dict[str, Any], root: Path) -> None:
    """Every recorded dataset has its recorded content again, or the run is refused."""
    mixtures: dict[str, list[dict[str, Any]]] = {}
    for dataset in record["datasets"]:
        path = root / dataset["path"]
        if dataset.get("data_manifest"):
            mixtures.setdefault(dataset["data_manifest"]["path"], []).append(dataset)
        elif "sha256" in dataset or "sha256_tree" in dataset:
            key, hasher = ("sha256", sha256_file) if "sha256" in dataset else ("sha256_tree", sha256_tree)
            exists = path.is_file() if key == "sha256" else path.is_dir()
            found = hasher(path) if exists else "no such file"
            if found != dataset[key]:
                raise refuse(f"dataset {dataset['path']} changed: expected {key} {dataset[key]}, found {found}")
        elif not dataset.get("revision"):
            print(f"warning: hub dataset {dataset['path']} names no revision: its content may have changed")
    for group in mixtures.values():
        rebuild_mixture(group, root)


def check_model(record: dict[str, Any], config: dict[str, Any], root: Path) -> None:
    """The base model is the recorded one: same tree hash for a local folder, same revision for a hub id."""
    recorded = record["base_model"]
    now = manifest.model_record(str(config["base_model"]), root, record.get("parent"))
    if recorded.get("local") and not now["local"]:
        raise refuse(f"base model {recorded['id']} is gone")
    if recorded.get("sha256_tree") != now.get("sha256_tree"):
        raise refuse(f"base model {recorded['id']} changed: expected sha256_tree {recorded.get('sha256_tree')}, "
                     f"found {now.get('sha256_tree')}")
    if not now["local"] and not (config.get("revision_of_model") or recorded.get("revision")):
        print(f"warning: hub model {recorded['id']} is not pinned to a revision: it may have changed")


def environment_differences(record: dict[str, Any], root: Path) -> list[str]:
    """Package versions, Python and code commit that differ from the run's."""
    lines = [f"{name}: {was} at the run, {now} now" for name, was in record.get("packages", {}).items()
             if (now := manifest.package_versions().get(name, was)) != was]
    if record.get("python") != (now_python := sys.version.split()[0]):
        lines.append(f"python: {record.get('python')} at the run, {now_python} now")
    code = manifest.git_state(root)
    if record.get("code", {}).get("commit") not in (None, code.get("commit")):
        lines.append(f"code: commit {record['code']['commit']} at the run, {code.get('commit')} now")
    return lines


def train_records(run_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """A run's tokenized-dataset hash and losses: from its manifest, or from its folder for older or resumed runs.

    A requeued run's manifest holds every attempt's losses by global step (each entry names its attempt); older
    requeued runs held only the last attempt's, so they are read again from the folder.
    """
    losses = record.get("losses")
    if losses is not None and (len(record.get("attempts") or []) <= 1 or all("attempt" in x for x in losses)):
        return record
    return train_record.summarize_training(run_dir, record["config"], run_dir / "logs/train.log")


def rerun_request(record: dict[str, Any], run_dir: Path, root: Path, allow_recipe_change: bool = False,
            runs_dir: Path | None = None, run_id: str | None = None) -> StageRun:
    """Every check that comes before training; the stage request that re-runs the run. Raises SystemExit."""
    recipe = check_recipe_unchanged(record, root, allow_recipe_change)
    parent = Path(record["parent"]["path"]) if record.get("parent") else None
    if parent is not None and not (root / parent / MANIFEST).is_file():
        raise refuse(f"parent run {parent} is gone")
    attempts = record.get("attempts") or [{}]
    topology = Topology(**{k: v for k, v in (attempts[0].get("topology") or {}).items() if k != "world_size"})
    if topology.nodes > 1:
        raise refuse(f"run {record['run_id']} trained on {topology.nodes} SLURM nodes: this command re-runs on one "
                     "machine only")
    runs_dir = runs_dir or run_dir.parent
    run_id = run_id or new_run_id(record["stage"], recipe, suffix="repro")
    if (runs_dir / run_id).exists():
        raise refuse(f"{runs_dir / run_id} already exists: choose another --run-id")
    request = StageRun(stage=record["stage"], recipe=recipe, runs_dir=runs_dir, run_id=run_id, parent=parent,
                       overrides=recorded_overrides(record), root=root, topology=topology)
    config = resolve_config(request, runs_dir / run_id, record.get("parent"))
    differences = config_differences(record["config"], config)
    if differences and not allow_recipe_change:
        raise refuse("the recipe and recorded overrides no longer give the recorded config (changed launcher code "
                     "adds keys too; --allow-recipe-change runs it anyway):\n  " + "\n  ".join(differences))
    for line in differences:
        print(f"warning: config differs: {line}")
    check_datasets(record, root)
    check_model(record, config, root)
    if changed := environment_differences(record, root):
        print("warning: the environment differs from the run's:\n  " + "\n  ".join(changed))
    return request


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder, e.g. runs/<run-id>")
    parser.add_argument("--allow-recipe-change", action="store_true", help="run even if the recipe file changed")
    parser.add_argument("--run-id", help="name of the new run folder (default: <time>-<stage>-<recipe>-repro)")
    parser.add_argument("--runs-dir", type=Path, help="where the new run goes (default: beside the original)")
    parser.add_argument("--steps", type=int, default=train_record.DEFAULT_STEPS,
                        help="how many first steps' losses to compare (default: %(default)s)")
    parser.add_argument("--tolerance", type=float, default=train_record.DEFAULT_TOLERANCE,
                        help="relative tolerance on each loss (default: %(default)s)")
    args = parser.parse_args(argv)
    root = Path.cwd()

    if not (args.run / MANIFEST).is_file():
        raise SystemExit(f"reproduce: {args.run / MANIFEST} not found: is {args.run} a run folder?")
    record = read_manifest(args.run)
    if record.get("status") != "succeeded":
        raise refuse(f"run {args.run} did not finish (status {record.get('status')!r})")
    request = rerun_request(record, args.run, root, args.allow_recipe_change, args.runs_dir, args.run_id)
    new_dir = request.runs_dir / str(request.run_id)
    reproduces = {"run_id": record["run_id"], "path": str(args.run), "overrides": request.overrides}
    try:
        run_stage(request)
    except BaseException:
        if (new_dir / MANIFEST).is_file():
            Run.amend(new_dir, reproduces=reproduces)
        raise
    result = train_record.compare_losses(train_records(args.run, record), read_manifest(new_dir), args.steps,
                                         args.tolerance)
    Run.amend(new_dir, reproduces=reproduces, reproduction=result)
    print(f"\nrun {new_dir.name} reproduces {record['run_id']}:")
    train_record.print_comparison(result)
    if not result["reproduced"]:
        raise WorldError("reproduce: the new run differs from the original (see above)")
    print(f"reproduced: same tokenized dataset, same losses for the first {result['steps_compared']} steps")


if __name__ == "__main__":
    cli_main(main)
