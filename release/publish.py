"""python -m release publish releases/<name> --repo ORG/NAME [--private] [--dry-run]: a release on the hub.

Checks the folder first: every file as release.json records it (sha256 and size, none missing, none extra) and a
card with results (``model-index``; a pipeline check has none), and the run it was built from, where it is here, with
its adapter/ and merged/ as its manifest's sha256s record them (common/rundir.py's ``verify_outputs``; a run made
before they were recorded passes with a note). Then creates the repository (if new) and uploads
every file in ONE commit, and records the hub revision (the commit id) in release.json. The token is HF_TOKEN
from the environment, never written anywhere. ``--dry-run`` lists the files a publish sends (release.json too),
with sizes, and touches no network. A hub that cannot be reached, or refuses, ends in one line (exit 1).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from common.errors import InputError, WorldError
from common.files import write_json_atomic
from common.rundir import MANIFEST, now, verify_outputs
from inference.gguf_file import RELEASE_JSON, read_release
from release.build import file_records


def checked(folder: Path) -> dict[str, Any]:
    """release.json of ``folder``, after its files and card are checked; InputError naming the first problem."""
    from huggingface_hub import ModelCard

    record = read_release(folder)
    if record is None:
        raise InputError(f"{folder}: no {RELEASE_JSON} (build one with `python -m release build RUN`)")
    found, recorded = file_records(folder), record.get("files") or {}
    for name in sorted(set(found) | set(recorded)):
        if found.get(name) != recorded.get(name):
            what = "missing" if name not in found else "not in release.json" if name not in recorded else \
                "changed since the build (sha256 or size differs)"
            raise InputError(f"{folder / name}: {what}; rebuild with `python -m release build`")
    for run in record.get("runs") or []:
        path = Path(run.get("path") or "")
        if run.get("path") and (path / MANIFEST).is_file():
            verify_outputs(path)
    card = ModelCard.load(folder / "README.md")
    if not card.data.eval_results:
        raise InputError(f"{folder}/README.md: the card has no results (no eval on the real test sets; a "
                         "pipeline check does not count): `make eval RUN=...` on prepared benchmarks, then rebuild")
    return record


def upload_list(folder: Path, record: dict[str, Any]) -> list[tuple[str, int]]:
    """(path in the repository, size) of every file a publish sends: the recorded files, then release.json."""
    return [*((name, entry["size"]) for name, entry in record["files"].items()),
            (RELEASE_JSON, (folder / RELEASE_JSON).stat().st_size)]


def hub_failure(err: Exception, repo: str) -> WorldError:
    """The hub's failure in one line: what was asked, the error's kind and its first line (no traceback)."""
    first = (str(err).strip().splitlines() or [""])[0]
    return WorldError(f"publish to {repo}: the hub could not be reached or refused ({type(err).__name__}: {first}); "
                      "nothing was published")


def publish(folder: Path, repo: str, private: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Upload ``folder`` to ``repo`` in one commit; return release.json as updated (unchanged for a dry run)."""
    record = checked(folder)
    files = upload_list(folder, record)
    if dry_run:
        for name, size in files:
            print(f"{size:>14,}  {name}")
        print(f"{sum(size for _, size in files):>14,}  {len(files)} files -> {repo} "
              f"({'private' if private else 'public'}); dry run, nothing sent")
        return record
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        raise InputError("HF_HUB_OFFLINE is set: publishing needs the network (HF_HUB_OFFLINE=0 python -m release "
                         "publish ...)")
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise InputError("HF_TOKEN is not set: export a hub token with write access")
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name, _ in files]
    try:  # the hub's network API: any failure there is the world's, told in one line
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(repo, operations, commit_message=f"Release {record.get('name')}",
                                 repo_type="model")
    except Exception as err:  # httpx, requests and the hub's own errors alike
        raise hub_failure(err, repo) from err
    record["hub"] = {"repo": repo, "revision": info.oid, "url": getattr(info, "commit_url", None),
                     "private": private, "published_at": now()}
    write_json_atomic(folder / RELEASE_JSON, record)
    print(f"published {folder}/ to {repo} at revision {info.oid} ({len(operations)} files, one commit)")
    return record


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m release publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="releases/<name> (from `python -m release build`)")
    parser.add_argument("--repo", required=True, help="the hub repository, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    args = parser.parse_args(argv)
    if args.repo.count("/") != 1 or not all(args.repo.split("/")):
        raise InputError(f"--repo {args.repo!r}: expected ORG/NAME")
    publish(args.folder, args.repo, args.private, args.dry_run)
