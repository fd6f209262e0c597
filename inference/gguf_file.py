"""A GGUF file: what it says of itself (metadata, quantization, vocabulary size) and its sha256, each read once;
the release it lies in, and where that release's run answers and scores it.

    releases/<name>/gguf/<name>-<QUANT>.gguf    a release's GGUF; its release.json (``read_release``) names the run
    runs/<id>/eval/gguf/<QUANT>/                where the run's GGUF of that type is answered and scored
                                                (``gguf_eval_dir``: release build, eval run, eval generate-check)

``GGUFFile.of(path)`` gives one object a file while the file is unchanged, so a command that takes a file through
several steps (``release build``: export, eval run, generation check, release.json) reads and hashes it once.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from common.errors import InputError
from common.files import sha256_file
from common.gguf_metadata import read_gguf_metadata

MAGIC = b"GGUF"
SUFFIX = ".gguf"
RELEASE_JSON = "release.json"
OPENED: dict[Path, tuple[tuple[int, int, int], GGUFFile]] = {}  # GGUFFile.of: resolved path -> (stamp, object)


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` names a GGUF file (by its suffix, in any case)."""
    return str(path).lower().endswith(SUFFIX)


def gguf_eval_dir(eval_dir: Path, quant: str) -> Path:
    """``<run>/eval/gguf/<QUANT>/``: where a run's GGUF of type ``quant`` is answered and scored (``eval_dir``: the
    run's ``eval/``; ``quant`` ``*``: a glob of them all)."""
    return eval_dir / "gguf" / quant


def read_release(folder: Path) -> dict[str, Any] | None:
    """A release folder's ``release.json`` (release/build.py writes it), or None where it has none."""
    path = folder / RELEASE_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start + 1}); rebuild with `python -m release build`") \
            from None
    except (json.JSONDecodeError, RecursionError) as err:
        why = f"{err.msg} at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError) \
            else "nested too deeply"
        raise InputError(f"{path}: not JSON ({why}); rebuild with `python -m release build`") from None
    if not isinstance(record, dict) or not isinstance(record.get("files", {}), dict) \
            or not isinstance(record.get("runs", []), list):
        raise InputError(f"{path}: not a release record (a JSON object with files and runs); rebuild with "
                         "`python -m release build`")
    return record


class GGUFFile:
    """One GGUF file; ``GGUFFile.of(path)`` checks it starts like one and gives the same object while it is unchanged.

    Each figure is read or computed the first time it is asked for, then kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, path: str | Path) -> GGUFFile:
        """InputError unless ``path`` is a file that starts like a GGUF; else its object, kept while the file is
        unchanged (the same inode, size and modification time)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        with open(path, "rb") as handle:
            if handle.read(4) != MAGIC:
                raise InputError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
        stat = path.stat()
        stamp, key = (stat.st_ino, stat.st_size, stat.st_mtime_ns), path.resolve()
        if key not in OPENED or OPENED[key][0] != stamp:
            OPENED[key] = (stamp, cls(path))
        return OPENED[key][1]

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """Its metadata as Python values (token lists left out), ``tensor_types`` and ``n_tokens``."""
        return read_gguf_metadata(self.path)

    @property
    def quant(self) -> str:
        """llama.cpp's file type: F16, Q8_0, Q4_K_M... (``unknown`` where the file does not say)."""
        from gguf import LlamaFileType

        kind = self.metadata.get("general.file_type")
        name = LlamaFileType(int(kind)).name if kind is not None else "unknown"
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")

    @property
    def n_tokens(self) -> int:
        """How many tokens its vocabulary holds."""
        return self.metadata["n_tokens"]

    @cached_property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def record(self) -> dict[str, Any]:
        """What results name a GGUF by: file, quantization, size, sha256."""
        return {"file": self.path.name, "quant": self.quant, "size": self.path.stat().st_size, "sha256": self.sha256}

    @property
    def release(self) -> Path | None:
        """The release folder it lies in (``releases/<name>/`` of ``releases/<name>/gguf/X.gguf``), or None."""
        folder = self.path.resolve().parent
        return folder.parent if folder.name == "gguf" else None

    def release_eval_dir(self) -> Path | None:
        """``runs/<id>/eval/gguf/<QUANT>/`` for a GGUF of a release whose release.json names its run, else None."""
        run = self.release_run()
        return gguf_eval_dir(run / "eval", self.quant) if run else None

    def release_run(self) -> Path | None:
        """The run its release was built from (the last of release.json's runs), or None."""
        record = read_release(self.release) if self.release else None
        runs = (record or {}).get("runs") or []
        if not runs or not isinstance(runs[-1], dict) or not runs[-1].get("path"):
            return None
        path = Path(runs[-1]["path"])  # absolute; a release built before that: relative to its project
        return path if path.is_absolute() or path.exists() else self.release.parent.parent / path
