"""What a run's manifest holds: the code, recipe, data, model, packages and hardware that produced it.

``opening`` is the manifest as a run starts (status "running"); ``closing`` completes it as the run ends
("succeeded", "failed", "preempted" or "out of memory", with the exit code and the failing step). ``Run``
(launch/lifecycle/run.py) writes it, atomically, each time. It never holds secrets.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.files import count_rows, sha256_file, sha256_tree
from common.host import hardware
from common.rundir import now
from common.secrets import redact, secret_values

DATA_MANIFEST = "manifest.json"  # a data_prep build folder's manifest (data_prep/build.py), not a run's
PACKAGES = ("axolotl", "torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate", "lm_eval")
# Environment variables worth recording: they change how a stage runs. Values of secret-named ones never are.
RECORDED_ENV = ("AXOLOTL_DO_NOT_TRACK", "HF_HUB_OFFLINE", "WANDB_MODE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                "PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")


def git_state(repo: Path) -> dict[str, Any]:
    """Commit and dirty flag of the repository the code runs from."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        return {"commit": None, "dirty": None, "error": str(err).strip()}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a run."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_inputs(built: dict[str, Any], file_name: str) -> list[dict[str, Any]]:
    """The published files a data build made ``file_name`` (``sft.jsonl``, ``dpo.validation.jsonl``) from:
    source, path, sha256, rows read and kept after conversion (data_prep/build.py's manifest)."""
    kind = (built.get("kinds") or {}).get(file_name.split(".")[0]) or {}
    return [{"source": source.get("source"), "path": item.get("path"), "sha256": item.get("sha256"),
             "rows": item.get("rows"), "kept": item.get("kept")}
            for source in kind.get("sources") or [] for item in source.get("inputs") or []]


def dataset_records(config: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    """Each dataset the config names: local files with sha256 and row count, hub ids with their revision."""
    records = []
    for key in ("datasets", "test_datasets"):
        for ds in config.get(key) or []:
            path = root / str(ds["path"])
            record = {"role": key, "path": str(ds["path"]), "type": ds.get("type")}
            if path.is_file():
                record.update(sha256=sha256_file(path), rows=count_rows(path))
                built_by = path.parent / DATA_MANIFEST  # a data_prep build folder records how the file was made
                if built_by.is_file():
                    built = json.loads(built_by.read_text())
                    record["data_manifest"] = {"path": str(Path(ds["path"]).parent / DATA_MANIFEST),
                                               "sha256": sha256_file(built_by), "mixture": built.get("mixture"),
                                               "inputs": source_inputs(built, path.name)}
            elif path.is_dir():
                record.update(sha256_tree=sha256_tree(path))
            else:
                record.update(hub_id=ds["path"], revision=ds.get("revision"))
            records.append(record)
    return records


def model_record(base_model: str, root: Path, parent: dict[str, Any] | None) -> dict[str, Any]:
    """The base model: a local folder with its content hash and provenance, or a hub id with its revision."""
    path = root / base_model
    if not path.is_dir():
        return {"id": base_model, "local": False}
    record: dict[str, Any] = {"id": base_model, "local": True, "sha256_tree": sha256_tree(path)}
    source = path / "source.json"
    if source.is_file():
        record["source"] = json.loads(source.read_text())
    if parent is not None:
        record["from_run"] = parent["run_id"]
    return record


def opening(run_dir: Path, *, stage: str, recipe: Path, config: dict[str, Any], root: Path,
          parent: dict[str, Any] | None, argv: list[str], env: dict[str, str],
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The opening manifest of a run; ``overrides`` are the ``--set`` values, kept as given."""
    secrets = secret_values()
    manifest = {
        "run_id": run_dir.name,
        "stage": stage,
        "status": "running",
        "exit_code": None,
        "error": None,
        "started_at": now(),
        "ended_at": None,
        "duration_s": None,
        "parent": parent,
        "command": redact(argv, secrets),
        "overrides": None if overrides is None else redact(overrides, secrets),
        "recipe": {"path": str(recipe), "sha256": sha256_file(recipe)},
        "config": redact(config, secrets),
        "code": git_state(root),
        "datasets": dataset_records(config, root),
        "base_model": model_record(str(config["base_model"]), root, parent),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "host": hardware(),
        "environment": {k: env[k] for k in RECORDED_ENV if k in env},
        "outputs": {},
    }
    return manifest


def closing(manifest: dict[str, Any], *, exit_code: int, error: dict[str, Any] | None, outputs: dict[str, str],
            status: str | None = None) -> dict[str, Any]:
    """Complete the manifest with the end time, exit status and outputs; ``status`` names an end more precisely
    than "failed" ("out of memory", "preempted")."""
    ended_at = now()
    elapsed = dt.datetime.fromisoformat(ended_at) - dt.datetime.fromisoformat(manifest["started_at"])
    manifest.update(
        status=status or ("succeeded" if exit_code == 0 else "failed"),
        exit_code=exit_code,
        error=redact(error, secret_values()),
        ended_at=ended_at,
        duration_s=round(elapsed.total_seconds()),
        outputs=outputs,
    )
    return manifest

