"""A run's base model and its outcomes on the items the run was scored on: committed, cached, or scored now.

The base of a run is the model its first stage trained from: a DPO run's parent SFT run's ``base_model`` (the
manifests' ``parent`` chain, followed to its start). Its outcomes are looked up by the model's content hash (the
manifest's ``sha256_tree``; a hub model by its id) and the sha256 of each prepared test set, in order:

1. ``docs/baseline/<name>/``: full test-set scores committed with the repository (the embedded default's nine);
2. the cache, ``~/.cache/openbiollm-recipes/base-scores/`` (``OPENBIOLLM_CACHE`` moves it): outcomes of
   earlier evals, added to at every eval that scores the base;
3. otherwise the base is scored now on the missing items, with the run's settings, and cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import cache_root, write_json_atomic
from common.rundir import MANIFEST, read_manifest
from eval.paired import Outcome, read_outcomes, write_outcomes

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "baseline"


@dataclass(frozen=True)
class BaseModel:
    """The model a run started from: what to load, and the key its scores are kept under."""

    load: str  # a folder or a hub id, as lm-eval's hf backend takes it
    key: str  # sha256_tree of a local folder, or hub:<id>
    name: str


def scores_cache() -> Path:
    return cache_root() / "base-scores"


def base_of(run: Path) -> BaseModel | None:
    """The base model of ``run``: the ``base_model`` of the first run of its parent chain; None if unknown."""
    record, seen = read_manifest(run), {run.resolve()}
    while record.get("parent"):
        parent = Path(record["parent"]["path"])
        if not (parent / MANIFEST).is_file() or parent.resolve() in seen:
            return None  # the chain is broken (a moved or deleted parent): no base to compare with
        seen.add(parent.resolve())
        record = read_manifest(parent)
    model = record.get("base_model") or {}
    if model.get("local") and model.get("sha256_tree"):
        return BaseModel(model["id"], model["sha256_tree"], Path(model["id"]).name)  # relative: to the repo root
    if model.get("id") and not model.get("local"):
        return BaseModel(model["id"], f"hub:{model['id']}", model["id"])
    return None


def committed_outcomes(key: str, task: str, items_sha256: str) -> dict[str, Outcome] | None:
    """The committed full-set outcomes of the model ``key`` on the test set with that hash, if any."""
    for manifest in sorted(COMMITTED.glob("*/baseline.json")):
        record = json.loads(manifest.read_text(encoding="utf-8"))
        entry = record.get("tasks", {}).get(task) or {}
        if record.get("model", {}).get("key") == key and entry.get("benchmark_sha256") == items_sha256:
            return read_outcomes(manifest.parent / entry["items"])
    return None


def cache_file(key: str, task: str, items_sha256: str) -> Path:
    return scores_cache() / key.replace("/", "_").replace(":", "_")[:80] / f"{task}-{items_sha256[:16]}.jsonl"


def lookup(base: BaseModel, task: str, items_sha256: str, ids: list[str]) -> tuple[dict[str, Outcome], str]:
    """The base's outcomes on ``ids`` that are known, and where they came from (committed, cache or none)."""
    found: dict[str, Outcome] = {}
    where = "none"
    committed = committed_outcomes(base.key, task, items_sha256)
    if committed is not None:
        found.update({i: committed[i] for i in ids if i in committed})
        where = "committed"
    cached = cache_file(base.key, task, items_sha256)
    if len(found) < len(ids) and cached.is_file():
        known = read_outcomes(cached)
        found.update({i: known[i] for i in ids if i in known and i not in found})
        where = "cache" if where == "none" else f"{where} + cache"
    return found, where


def remember(base: BaseModel, task: str, items_sha256: str, outcomes: dict[str, Outcome]) -> None:
    """Add newly scored outcomes to the cache file of (base, test set)."""
    path = cache_file(base.key, task, items_sha256)
    known = read_outcomes(path) if path.is_file() else {}
    write_outcomes(path, {**known, **outcomes})
    write_json_atomic(path.parent / "model.json", {"key": base.key, "name": base.name, "load": base.load})


def base_record(base: BaseModel, sources: dict[str, str]) -> dict[str, Any]:
    """What results.json records of the base it was compared with."""
    return {"name": base.name, "key": base.key, "model": base.load, "outcomes_from": sources}

