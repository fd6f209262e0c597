"""Files written whole or not at all, content hashes, row counts, compressed inputs and safe YAML loading."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


def cache_root() -> Path:
    """The project's cache outside the repository: ``$OPENBIOLLM_CACHE``, default ``~/.cache/openbiollm-recipes``."""
    return Path(os.environ.get("OPENBIOLLM_CACHE") or Path.home() / ".cache" / "openbiollm-recipes")


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """sha256 over every file under ``root``: relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


COMPRESSED = {".xz": lzma.open, ".gz": gzip.open}  # compression suffix -> its opener (the stdlib's)
# What reading a damaged or truncated compressed file raises (gzip.BadGzipFile is an OSError).
DECOMPRESS_ERRORS = (lzma.LZMAError, gzip.BadGzipFile, EOFError, zlib.error)


def plain_name(path: str | os.PathLike[str]) -> str:
    """A file's name without its compression suffix: ``dev.json.xz`` -> ``dev.json``."""
    name = Path(path).name
    suffix = Path(name).suffix
    return name.removesuffix(suffix) if suffix in COMPRESSED else name


def format_suffix(path: str | os.PathLike[str]) -> str:
    """A file's format suffix, its compression suffix set aside: ``dev.json.xz`` -> ``.json``."""
    return Path(plain_name(path)).suffix


def open_text(path: str | os.PathLike[str], encoding: str = "utf-8", errors: str = "strict",
              newline: str | None = None) -> TextIO:
    """A text file for reading, decompressed as it is read when it ends in ``.xz`` or ``.gz``.

    A damaged compressed file raises one of ``DECOMPRESS_ERRORS`` as it is read.
    """
    opener = COMPRESSED.get(Path(path).suffix)
    if opener is None:
        return open(path, encoding=encoding, errors=errors, newline=newline)
    return opener(path, "rt", encoding=encoding, errors=errors, newline=newline)


def read_text(path: str | os.PathLike[str], encoding: str = "utf-8") -> str:
    """A whole text file (``open_text``): compressed or plain."""
    with open_text(path, encoding=encoding) as handle:
        return handle.read()


def count_rows(path: Path) -> int:
    """Rows in a JSONL (non-blank lines), JSON (list length or object keys) or Parquet file; JSON and JSONL may be
    compressed (``open_text``)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if format_suffix(path) == ".json":
        return len(json.loads(read_text(path)))
    with open_text(path) as handle:
        return sum(1 for line in handle if line.strip())


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text file beside ``path`` that is renamed into place only when the block completes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as tmp:
        try:
            yield tmp
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would have
    os.replace(tmp.name, path)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    with atomic_writer(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSONL (UTF-8, one object a line) atomically; return how many."""
    return write_lines_atomic(path, (json.dumps(row, ensure_ascii=False) for row in rows))


def write_lines_atomic(path: Path, lines: Iterable[str]) -> int:
    """Write text lines (no newline in them) atomically as UTF-8, one a line; return how many."""
    count = 0
    with atomic_writer(path) as handle:
        for line in lines:
            handle.write(line + "\n")
            count += 1
    return count


YAML_MAX_BYTES = 1 << 20  # recipes, mixtures and cluster profiles are a few KiB
YAML_MAX_NODES = 100_000  # values after aliases are expanded: a "billion laughs" bomb expands past this


def load_yaml(path: Path, max_bytes: int = YAML_MAX_BYTES, max_nodes: int = YAML_MAX_NODES) -> Any:
    """A YAML file through safe_load's constructors, or a one-line ``SystemExit`` naming the file and the reason.

    Refused: a file over ``max_bytes``, one whose aliases expand past ``max_nodes`` values (a YAML bomb),
    tags safe_load does not construct (``!!python/object``), text that is not UTF-8. A BOM is accepted.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SystemExit(f"{path}: {size} bytes, over the {max_bytes} a YAML file here may have")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise SystemExit(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SystemExit(f"{path}: not UTF-8 text (byte {err.start})") from None
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and expanded_size(node, {}) > max_nodes:
            raise SystemExit(f"{path}: its aliases expand to more than {max_nodes} values (a YAML bomb?)")
        return None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        raise SystemExit(f"{where}: not plain YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise SystemExit(f"{path}: not plain YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise SystemExit(f"{path}: nested too deeply to read") from None
    finally:
        loader.dispose()


def expanded_size(node: Any, seen: dict[int, int]) -> int:
    """How many values a composed YAML ``node`` holds with every alias expanded; shared nodes are measured once."""
    import yaml

    if id(node) not in seen:
        seen[id(node)] = YAML_MAX_NODES ** 2  # a node inside itself (a recursive alias) expands without end
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        seen[id(node)] = 1 + sum(expanded_size(child, seen) for child in children)
    return seen[id(node)]


@contextmanager
def staged_outputs(folder: Path, label: str, owned: Iterable[str], manifest: str) -> Iterator[Path]:
    """A fresh folder inside ``folder`` to write a set of outputs into; they replace the old set only on success.

    On success the staged files move into ``folder``: the old ``manifest`` is removed first, files of
    ``owned`` the new set lacks are removed, and the new manifest moves in last, so a reader (or make)
    sees the previous complete set, or the new one, and never a manifest beside outputs it does not
    describe. On an error or Ctrl-C nothing in ``folder`` changes; the error says where the partial output
    is kept (an empty staging folder is removed).
    """
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{label}.partial-", dir=folder))
    try:
        yield stage
    except BaseException as err:
        kept = any(stage.iterdir())
        if not kept:
            stage.rmdir()
        if isinstance(err, SystemExit) and isinstance(err.code, str):
            if kept:
                sep = "\n" if "\n" in err.code else "; "
                raise SystemExit(f"{err.code}{sep}{folder}: previous output untouched, partial output kept in "
                                 f"{stage}") from None
            raise
        err.add_note(f"{folder}: previous output untouched; "
                     + (f"partial output kept in {stage}" if kept else "nothing was written"))
        raise
    (folder / manifest).unlink(missing_ok=True)
    staged = {p.name for p in stage.iterdir()}
    for name in sorted(staged - {manifest}):
        os.replace(stage / name, folder / name)
    for name in set(owned) - staged - {manifest}:
        (folder / name).unlink(missing_ok=True)
    if manifest in staged:
        os.replace(stage / manifest, folder / manifest)
    stage.rmdir()
