"""Pin a recipe's base model to a commit before a job is submitted.

    from launch.preflight.pinning import resolve_base_model
    pin = resolve_base_model(config)                          # SystemExit if it cannot be pinned
    pin = resolve_base_model(config, allow_unpinned=True)     # --allow-unpinned: record it as unpinned

A recipe names its base model's revision in ``revision_of_model`` (Axolotl's key; ``model_revision`` is
its alias). A 40-hex commit id is pinned as it stands. A branch or tag (``main``, the default when the key
is missing) is resolved to the commit it points at now, through the model hub's API, and the submission
records that commit in the run manifest, so the run can be repeated on the same weights. A local folder
(the default model, a parent run's merged model) is pinned by its content hash in the manifest instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

COMMIT = re.compile(r"[0-9a-f]{40}")
REVISION_KEYS = ("revision_of_model", "model_revision")
DEFAULT_REVISION = "main"  # what transformers loads when no revision is given
LOCAL_PREFIXES = ("/", "./", "../", "~")  # a base_model written as a path, never a hub id


def recipe_revision(config: dict[str, Any]) -> str | None:
    """The revision a recipe names for its base model, or None."""
    for key in REVISION_KEYS:
        if config.get(key):
            return str(config[key])
    return None


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex commit id: the only revision that cannot move."""
    return bool(revision) and COMMIT.fullmatch(str(revision)) is not None


def hub_commit(repo_id: str, revision: str, repo_type: str = "model") -> str:
    """The commit ``revision`` of a hub repository points at now (one API call; needs the hub).

    Raises OSError (no network, offline mode, unknown or gated repository) or an httpx.HTTPError.
    ``HF_TOKEN`` from the environment is used for gated repositories, as huggingface_hub always does.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    info = api.dataset_info(repo_id, revision=revision) if repo_type == "dataset" else \
        api.model_info(repo_id, revision=revision)
    if not is_commit(info.sha):
        raise OSError(f"the hub returned no commit id for {repo_id}@{revision}")
    return str(info.sha)


def resolve_base_model(config: dict[str, Any], *, allow_unpinned: bool = False) -> dict[str, Any]:
    """Where the base model's weights come from, pinned to a commit where possible.

    Returns ``{"base_model", "revision", "commit", "pinned", "how"}`` where ``how`` is one of
    ``local`` (a folder, or a path: pinned by its content hash elsewhere), ``commit`` (the recipe names
    a commit), ``resolved`` (a branch or tag, resolved through the hub now) or ``unpinned`` (the hub
    could not be reached and ``allow_unpinned`` was given; ``reason`` says why).

    Raises SystemExit naming the fixes when a hub model cannot be pinned and ``allow_unpinned`` is false.
    """
    model = str(config.get("base_model") or "")
    if not model:
        raise SystemExit("the recipe has no base_model")
    revision = recipe_revision(config)
    record: dict[str, Any] = {"base_model": model, "revision": revision}
    if Path(model).is_dir() or model.startswith(LOCAL_PREFIXES):  # a path, maybe only on the cluster's disks
        return {**record, "commit": None, "pinned": True, "how": "local"}
    if is_commit(revision):
        return {**record, "commit": revision, "pinned": True, "how": "commit"}
    branch = revision or DEFAULT_REVISION
    try:
        return {**record, "commit": hub_commit(model, branch), "pinned": True, "how": "resolved"}
    except (OSError, httpx.HTTPError) as err:  # no network, offline mode, unknown or gated repository
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
    if allow_unpinned:
        return {**record, "commit": None, "pinned": False, "how": "unpinned", "reason": reason}
    raise SystemExit(
        f"base model {model}@{branch} is not pinned and its commit could not be looked up ({reason}).\n"
        f"Fix one of: set revision_of_model to a 40-character commit id in a new recipe version; make the hub "
        f"reachable (HF_HUB_OFFLINE=0, and HF_TOKEN for a gated model); or pass --allow-unpinned to run on "
        f"whatever {branch} holds when the job starts, recorded as unpinned."
    )

