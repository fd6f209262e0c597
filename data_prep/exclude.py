"""Rows a mixture entry leaves out by key: ``exclude: FILE``, e.g. a benchmark's test split.

    sft:
      - source: pubmedqa
        inputs: [data/published/eval/pubmedqa/ori_pqal.json.xz]
        exclude: eval/benchmarks/data/pubmedqa_test_ground_truth.json   # PMID -> label: its keys are left out

FILE is a JSON object (its keys are the row keys) or a JSON list of keys. A row's key is the id of a JSON
file keyed by id (``readers.read_json``: the row's ``__key__``, its place ``key <id>``); rows of other files
have none. A left-out row is never converted: the build keeps it in rejects.jsonl with stage ``excluded``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import DECOMPRESS_ERRORS, read_text, sha256_file
from data_prep.readers import RawRow

STAGE = "excluded"


def load_keys(path: Path, where: str) -> set[str]:
    """The keys ``path`` lists, or one line naming ``where`` (the mixture entry) and why the file is refused."""
    if not path.is_file():
        raise SystemExit(f"{where}: exclude file {path} does not exist")
    try:
        data = json.loads(read_text(path, encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, *DECOMPRESS_ERRORS) as err:
        raise SystemExit(f"{where}: exclude file {path} is not JSON ({type(err).__name__}: {err})") from None
    if isinstance(data, dict):
        return set(data)
    if isinstance(data, list) and all(isinstance(key, str | int) and not isinstance(key, bool) for key in data):
        return {str(key) for key in data}
    raise SystemExit(f"{where}: exclude file {path} is a JSON {type(data).__name__}; expected an object whose keys "
                     "are row keys, or a list of keys")


def row_key(raw: RawRow) -> str | None:
    """The key of a source row read from a JSON object keyed by id; None for rows of other files."""
    key = raw.record.get("__key__") if raw.error is None and isinstance(raw.record, dict) else None
    return None if key is None else str(key)


def manifest_record(path: Path, keys: set[str], excluded: int) -> dict[str, Any]:
    """What the manifest says of an entry's exclude file: where, its hash, how many keys, how many rows it left out."""
    return {"path": str(path), "sha256": sha256_file(path), "keys": len(keys), "excluded": excluded}


def left_out_reason(path: str | Path) -> str:
    """The rejects-file reason of a row left out by ``path``."""
    return f"key listed in {path} (exclude)"
