"""The run folder: a safe name, created exclusively, locked while a process works in it, and its manifest.

    python -m launch sft RECIPE --run-id my-run   # runs/my-run/, refused if the id is unsafe or the run is in use

A run id is letters, digits, ``.``, ``_``, ``+`` and ``-`` (no path separator, no ``..``). A new folder is made
under a temporary name with its lock already held, then renamed into place: of two starts that pick the same
name, one wins and the other takes the next free suffix (``-2``, ``-3``, ...). While a process works in a run
folder it holds ``fcntl.flock`` on ``<run>/.lock``, which names its pid and host; the lock passes to the trainer
it starts, so it is held until every process of the run has exited (a killed launcher included).

``<run>/manifest.json`` is read with :func:`read_manifest` and written only by :func:`write_manifest`.

A finished run is written into by eval and release only through :class:`RunWriter`: it holds the run's lock while
they write (a second writer gets one line naming the holder's pid, host and command, exit 2), stages each result
aside and renames it in whole (a failure leaves the folder as it was), and updates the manifest. The manifest
records the sha256 of every file in ``adapter/`` and ``merged/`` (``output_sha256``, written by launch's ``Run``
when train or merge writes them); :func:`verify_outputs` refuses a run whose files no longer match, naming the file.
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
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.errors import InputError, WorldError
from common.files import sha256_file, write_json_atomic
from common.secrets import redact_text, secret_values

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
MAX_SUFFIX = 100
HASHED = ("adapter", "merged")  # the folders whose every file's sha256 the manifest records
OUTPUT_HASHES = "output_sha256"  # manifest key: {"merged": {"model.safetensors": "<sha256>", ...}, "adapter": ...}
HELD_LOCK_ENV = "LAUNCH_RUN_LOCK"  # a run's path: its lock is held by the launcher that started this process
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
        text = json.dumps({"pid": os.getpid(), "host": platform.node(), "since": now(), "command": command_line(),
                           **extra}) + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor of the open file releases the flock
            self.fd = None


def command_line(limit: int = 400) -> str:
    """This process's command as a user typed it (``python -m release build runs/x``), secrets redacted, cut at
    ``limit`` characters."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":
        argv[0:1] = ["python", "-m", Path(argv[0]).parent.name]
    text = redact_text(" ".join(argv), secret_values())  # the lock file and the busy line name no secret
    return text if len(text) <= limit else text[: limit - 3] + "..."


def holder(path: Path) -> str:
    """"pid 123 on host n1 since ... (python -m launch merge runs/x)", as the holder wrote it into the lock file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        trainer = f", trainer pid {info['trainer_pid']}" if info.get("trainer_pid") else ""
        command = f" ({info['command']})" if info.get("command") else ""
        return f"pid {info['pid']}{trainer} on host {info['host']} since {info['since']}{command}"
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


# -- what eval and release may do to a finished run ------------------------------------------------------------------


def hash_folder(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, by relative path (each file read once, streamed)."""
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def verify_outputs(run_dir: Path, record: dict[str, Any] | None = None,
                   names: Iterable[str] = HASHED) -> dict[str, str]:
    """Check ``adapter/`` and ``merged/`` against the sha256s the manifest records; InputError naming the first
    file that is changed, missing or added. Returns the sha256s found, by path in the run (``merged/x``), so that a
    caller need not read the files again. A run made before the manifest recorded them passes, with a note."""
    record = read_manifest(run_dir) if record is None else record
    recorded = record.get(OUTPUT_HASHES)
    present = [name for name in names if (run_dir / name).is_dir()]
    if recorded is None:
        if present:
            print(f"note: run {run_dir.name} predates recorded file hashes: {', '.join(present)}/ not checked "
                  "for changes", file=sys.stderr, flush=True)
        return {}
    found = {}
    for name in present:
        files = recorded.get(name)
        if files is None:
            continue
        folder = run_dir / name
        for rel, sha in sorted(files.items()):
            path = folder / rel
            if not path.is_file():
                raise InputError(f"{path}: missing, though run {run_dir.name}'s manifest records it: the run was "
                                 "changed after it was written")
            actual = sha256_file(path)
            if actual != sha:
                raise InputError(f"{path}: sha256 {actual[:12]}... differs from the {sha[:12]}... run "
                                 f"{run_dir.name}'s manifest records: the file changed after the run wrote it")
            found[f"{name}/{rel}"] = actual
        listed = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        added = [rel for rel in listed if rel not in files]
        if added:
            raise InputError(f"{folder / added[0]}: not in run {run_dir.name}'s manifest: the run was changed after "
                             "it was written")
    return found


def replace_whole(staged: Path, target: Path, keep: Iterable[str] = ()) -> None:
    """Move ``staged`` (a folder or a file) to ``target``; an old ``target`` is set aside first and removed only
    after, its entries named in ``keep`` carried into the new one (when it lacks them). On an error the old one is
    put back."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)) / target.name
        os.replace(target, old)
    carried = []
    try:
        for name in keep if old is not None and old.is_dir() else ():
            if (old / name).exists() and not (staged / name).exists():
                os.replace(old / name, staged / name)
                carried.append(name)
        os.replace(staged, target)
    except BaseException:
        for name in carried:
            os.replace(staged / name, old / name)
        if old is not None:
            os.replace(old, target)
            old.parent.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old.parent)


def relocate(stage: Path, final: Path) -> None:
    """Point the paths a stage's text files name (results, logs, task YAMLs) at where the stage is renamed to."""
    names = {str(stage): str(final), str(stage.resolve()): str(final.resolve())}
    for path in stage.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".yml", ".md", ".log", ".txt"):
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            new = text
            for old_name, new_name in names.items():
                new = new.replace(old_name, new_name)
            if new != text:
                path.write_text(new, encoding="utf-8", errors="surrogateescape")


STAGED: dict[Path, Path] = {}  # a stage being written -> the place it is renamed to (what terminals show)


def final_place(path: Path) -> Path:
    """``path``, inside a stage being written, as it will be once renamed in: for lines on the terminal."""
    resolved = path.resolve()
    for stage, target in STAGED.items():
        if resolved.is_relative_to(stage):
            return target / resolved.relative_to(stage)
    return path


class RunWriter:
    """A finished run folder, locked, for eval and release to write into: results staged aside and renamed in
    whole, the manifest updated; a failure leaves the folder as it was.

        with RunWriter.open(run_dir) as run:        # one line naming the holder (exit 2) if another has it
            run.verify()                            # adapter/ and merged/ as the manifest records them
            with run.staged("eval", keep=["gguf"]) as stage:
                ...                                 # write into stage; on success it replaces <run>/eval whole
            run.update_manifest(evaluated_at=now())
    """

    def __init__(self, path: Path, lock: RunLock | None) -> None:
        self.path, self.lock = path, lock

    @classmethod
    def open(cls, run_dir: Path) -> RunWriter:
        """Lock ``run_dir``: WorldError (exit 1, as for a launcher's stage) naming the holder when another process
        has it. A command a launcher started on the run (``launch eval``) uses the lock it was handed
        (``LAUNCH_RUN_LOCK``)."""
        if not (run_dir / MANIFEST).is_file():
            raise InputError(f"{run_dir}: not a run folder (no {MANIFEST})")
        held = os.environ.get(HELD_LOCK_ENV)
        if held and Path(held).resolve() == run_dir.resolve():
            return cls(run_dir, None)  # the launcher holds it, and waits for us
        return cls(run_dir, RunLock.acquire(run_dir))

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *_: object) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def verify(self, names: Iterable[str] = HASHED) -> dict[str, str]:
        """:func:`verify_outputs` of this run."""
        return verify_outputs(self.path, names=names)

    @contextmanager
    def staged(self, name: str, keep: Iterable[str] = ()) -> Iterator[Path]:
        """A fresh folder in the run to write ``<run>/<name>`` into; on success it replaces ``<run>/<name>``
        whole (``keep``: entries of the old one carried over), the stage's path in its text files changed to the
        final one; on any failure the stage is removed and the run is as it was."""
        stage = Path(tempfile.mkdtemp(prefix=f".{name.replace('/', '-')}.partial-", dir=self.path)).resolve()
        umask = os.umask(0)
        os.umask(umask)
        stage.chmod(0o777 & ~umask)  # mkdtemp makes 0700; give it the mode mkdir would have
        target = self.path.resolve() / name
        STAGED[stage] = target
        try:
            yield stage
            relocate(stage, target)
            target.parent.mkdir(parents=True, exist_ok=True)
            replace_whole(stage, target, keep)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        finally:
            STAGED.pop(stage, None)

    def put(self, staged: Path, name: str) -> None:
        """Rename a file or folder written aside into ``<run>/<name>``, replacing the old one whole."""
        (self.path / name).parent.mkdir(parents=True, exist_ok=True)
        replace_whole(staged, self.path / name)

    def update_manifest(self, **fields: Any) -> None:
        """Set top-level manifest entries, under the lock."""
        record = read_manifest(self.path)
        record.update(fields)
        write_manifest(self.path, record)
