"""The run folder: a safe name, created exclusively, locked while a process works in it, and its manifest.

    python -m launch sft RECIPE --run-id my-run   # runs/my-run/, refused if the id is unsafe or the run is in use

A run id is letters, digits, ``.``, ``_``, ``+`` and ``-`` (no path separator, no ``..``). A new folder is made
under a temporary name with its lock already held, then renamed into place: of two starts that pick the same
name, one wins and the other takes the next free suffix (``-2``, ``-3``, ...). While a process works in a run
folder it holds ``fcntl.flock`` on ``<run>/.lock``, which names its pid and host; the lock passes to the trainer
it starts, so it is held until every process of the run has exited (a killed launcher included).

``<run>/manifest.json`` is read with :func:`read_manifest` and written only by :func:`write_manifest`.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common.errors import InputError, WorldError
from common.files import write_json_atomic

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
MAX_SUFFIX = 100
UNSUPPORTED = (errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)  # a file system without flock


def now() -> str:
    """The current time, ISO 8601 with timezone."""
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run's manifest."""
    return json.loads((run_dir / MANIFEST).read_text())


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Replace a run's manifest whole: the one place ``manifest.json`` is written."""
    write_json_atomic(run_dir / MANIFEST, manifest)


def latest_succeeded(runs_dir: Path, stage: str) -> Path | None:
    """The most recently finished successful run of ``stage``, or None."""
    done = []
    for path in runs_dir.glob(f"*/{MANIFEST}"):
        record = read_manifest(path.parent)
        if record.get("stage") == stage and record.get("status") == "succeeded":
            done.append((record["ended_at"], path.parent))
    return max(done)[1] if done else None


def latest_run(runs_dir: Path, stage: str) -> Path:
    """The most recently finished successful run of ``stage``; SystemExit when there is none."""
    found = latest_succeeded(runs_dir, stage)
    if found is None:
        raise SystemExit(f"no successful {stage} run in {runs_dir}/: run `make {stage}` first")
    return found


def recipe_slug(recipe: Path) -> str:
    """``recipes/smollm2-135m/v1/sft.yaml`` -> ``smollm2-135m-v1``."""
    parts = recipe.resolve().parts
    if "recipes" in parts:
        inner = parts[parts.index("recipes") + 1 : -1]
        if inner:
            return "-".join(inner)
    return recipe.stem


def new_run_id(stage: str, recipe: Path, stamp: str | None = None, suffix: str = "") -> str:
    """The default run id, ``<time>-<stage>-<recipe>[-<suffix>]``: the one place it is made (a chain shares a stamp)."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{stage}-{recipe_slug(recipe)}" + (f"-{suffix}" if suffix else "")


def check_run_id(run_id: str, flag: str = "--run-id") -> str:
    """``run_id`` if it is a safe folder name; InputError with one line naming ``flag`` otherwise."""
    if not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise InputError(f"{flag} {run_id!r}: a folder name is 1 to 128 letters, digits, '.', '_', '+' or '-', "
                         "starting with a letter or digit, without '/' or '..'")
    return run_id


class RunLock:
    """An exclusive ``flock`` on a run folder's lock file, with the holder's pid and host written in it."""

    def __init__(self, fd: int | None, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def acquire(cls, run_dir: Path, wait_s: float = 0) -> RunLock:
        """Lock ``run_dir``; SystemExit naming the holder when another process keeps it past ``wait_s`` seconds."""
        path = run_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise WorldError(f"run {run_dir.name} is in use by {holder(path)} (lock {path}): "
                                    "wait for it to end, or stop it first") from None
                time.sleep(0.5)
            except OSError as err:
                if err.errno not in UNSUPPORTED:
                    os.close(fd)
                    raise
                print(f"warning: {path}: this file system does not lock ({err.strerror}); two processes could "
                      "share the run folder")
                break
        lock = cls(fd, path)
        lock.note()
        return lock

    def note(self, **extra: object) -> None:
        """Write who holds the lock (pid, host, since, and e.g. the trainer's pid) into the lock file."""
        if self.fd is None:
            return
        text = json.dumps({"pid": os.getpid(), "host": platform.node(), "since": now(), **extra}) + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor of the open file releases the flock
            self.fd = None


def holder(path: Path) -> str:
    """"pid 123 on host n1 since ...", as the holder wrote it into the lock file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        trainer = f", trainer pid {info['trainer_pid']}" if info.get("trainer_pid") else ""
        return f"pid {info['pid']}{trainer} on host {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def create(runs_dir: Path, run_id: str, exact: bool) -> tuple[Path, RunLock] | None:
    """Make ``runs_dir/run_id``, locked; without ``exact``, the first free ``run_id-N``. None: ``exact`` and taken.

    The folder is made under a temporary name with its lock held, then renamed into place, so no other
    process ever sees it unlocked.
    """
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for n in range(1, MAX_SUFFIX + 1):
            name = run_id if n == 1 else f"{run_id}-{n}"
            run_dir = runs_dir / name
            if run_dir.exists():
                if exact:
                    return None
                continue
            staging = Path(tempfile.mkdtemp(dir=runs_dir, prefix=f".{name}.new-"))
            lock = RunLock.acquire(staging)
            try:
                os.rename(staging, run_dir)
            except OSError as err:
                lock.release()
                shutil.rmtree(staging, ignore_errors=True)
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if exact:
                    return None
                continue
            lock.path = run_dir / LOCK_FILE
            return run_dir, lock
    except OSError as err:
        raise InputError(f"{runs_dir}: cannot create a run folder there ({err.strerror or err})") from None
    raise SystemExit(f"{runs_dir}: {run_id} and its {MAX_SUFFIX - 1} suffixed names are all taken")
