"""Convert source files with one converter: kept rows, every rejected row with its reason, a manifest.

    python -m data_prep convert medmcqa dev.json --out data/build/medmcqa.jsonl

Writes OUT.jsonl, OUT.rejects.jsonl and, last, OUT.manifest.json: into a staging folder beside OUT, then
moved in together, so a failed or stopped run leaves the previous set as it was. For each input,
rows in = kept + rejected. Re-running on the same inputs gives byte-identical files.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

from common.files import sha256_file, sha256_tree, staged_outputs, write_json_atomic, write_jsonl_atomic
from common.progress import track
from data_prep.readers import HUB_PREFIX, RawRow, read_rows
from data_prep.rows import Reject

DEFAULT_MAX_REJECT_RATE = 0.5


def sidecar(out: Path, name: str) -> Path:
    """``data/x.jsonl`` -> ``data/x.<name>`` (``rejects.jsonl``, ``manifest.json``)."""
    return out.with_name(f"{out.name.removesuffix('.jsonl')}.{name}")


def reject_record(source: str, raw: RawRow, reason: str) -> dict[str, Any]:
    """A rejects-file entry: where the row came from, why it was dropped, and the row itself."""
    return {"source": source, "file": raw.file, "where": raw.where, "reason": reason, "raw": raw.record}


def convert_input(module: ModuleType, spec: str, system: str | None) -> tuple[list[dict], list[dict], dict]:
    """Kept entries ({"row", "origin"}), rejects and the input's record (hash, counts, facts) for one input."""
    raws, facts = read_input(module, spec)
    kept, rejects = [], []
    for raw in track(raws, f"{module.NAME}: convert {Path(spec).name}"):
        outcome = convert_one(module, raw, system, facts)
        if isinstance(outcome, str):
            rejects.append(reject_record(module.NAME, raw, outcome))
        else:
            kept.append({"row": outcome, "origin": {"source": module.NAME, "file": raw.file, "where": raw.where}})
    return kept, rejects, describe_input(spec, len(raws), len(kept), rejects, facts)


def read_input(module: ModuleType, spec: str, parse: bool = True) -> tuple[list[RawRow], dict[str, Any]]:
    """The rows of one input and the converter's file-level facts (``inspect``).

    A converter with its own reader (``read``, for a format ``read_rows`` does not know) reads the input itself.
    ``parse=False`` leaves JSONL lines unparsed (``readers.parsed``) unless the converter inspects the file.
    """
    if hasattr(module, "read"):
        raws = list(module.read(spec))
    else:
        raws = list(read_rows(spec, parse or hasattr(module, "inspect")))
    try:
        facts = module.inspect([r.record for r in raws if r.error is None]) if hasattr(module, "inspect") else {}
    except SystemExit as err:
        raise SystemExit(f"{spec}: {err}") from err
    return raws, facts


def convert_one(module: ModuleType, raw: RawRow, system: str | None, facts: dict[str, Any]) -> dict[str, Any] | str:
    """The row a parsed source row becomes, or the reason it is rejected."""
    if raw.error is not None:
        return raw.error
    try:
        if not isinstance(raw.record, dict):
            raise Reject(f"row is a JSON {type(raw.record).__name__}, not an object")
        return module.convert(raw.record, system, **facts)
    except Reject as err:
        return str(err)


def input_hash(spec: str) -> str | None:
    """sha256 of a file, or over a folder's files (``common.files.sha256_tree``); None for a hub id."""
    if spec.startswith(HUB_PREFIX):
        return None
    return sha256_tree(Path(spec)) if Path(spec).is_dir() else sha256_file(Path(spec))


def describe_input(spec: str, rows: int, kept: int, rejects: list[dict[str, Any]], facts: dict[str, Any],
                   excluded: int = 0) -> dict[str, Any]:
    """What the manifest says of one input: where, its hash, rows in = kept + rejected + excluded, reasons, facts.

    ``excluded``: rows a build left out by key before converting them (a mixture entry's ``exclude``).
    """
    record = {
        "path": spec,
        "sha256": input_hash(spec),
        "rows": rows,
        "kept": kept,
        "rejected": len(rejects),
        "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items())),
        "excluded": excluded,
        "facts": facts,
    }
    assert record["rows"] == record["kept"] + record["rejected"] + record["excluded"], record
    return record


def check_reject_rate(source: str, records: list[dict[str, Any]], max_reject_rate: float, outcome: str) -> None:
    """Stop, naming each input and its commonest reason, when an input lost more than ``max_reject_rate``.

    Rows excluded by key were never converted: the rate is of the rows converted.
    """
    too_many = [r for r in records if r["rows"] - r["excluded"]
                and r["rejected"] / (r["rows"] - r["excluded"]) > max_reject_rate]
    if too_many:
        lines = [f"{r['path']}: {r['rejected']} of {r['rows'] - r['excluded']} rows rejected, most for "
                 f"{max(r['rejected_by_reason'], key=r['rejected_by_reason'].get)!r}" for r in too_many]
        raise SystemExit(f"{source}: more than {max_reject_rate:.0%} of rows rejected (is it the right "
                         f"converter?); {outcome}\n" + "\n".join(lines))


def convert(module: ModuleType, inputs: list[str], out: Path, system: str | None,
            max_reject_rate: float = DEFAULT_MAX_REJECT_RATE) -> dict[str, Any]:
    """Convert every input with ``module``; write the output, the rejects and the manifest (last)."""
    kept, rejects, records = [], [], []
    for spec in inputs:
        entries, dropped, record = convert_input(module, spec, system)
        kept += [entry["row"] for entry in entries]
        rejects += dropped
        records.append(record)

    rejects_path, manifest_path = sidecar(out, "rejects.jsonl"), sidecar(out, "manifest.json")
    # With no complete set before (no manifest), rejects of a stopped run go straight beside OUT, for inspection.
    first = not manifest_path.exists()
    owned = [out.name] if first else [out.name, rejects_path.name]
    with staged_outputs(out.parent, out.name, owned, manifest_path.name) as stage:
        rejects_file = rejects_path if first else stage / rejects_path.name
        write_jsonl_atomic(rejects_file, rejects)
        check_reject_rate(module.NAME, records, max_reject_rate, f"nothing written to {out}, rejects in {rejects_file}")
        write_jsonl_atomic(stage / out.name, kept)
        manifest = {
            "source": module.NAME,
            "kind": module.KIND,
            "system_prompt": system,
            "inputs": records,
            "output": {"path": str(out), "sha256": sha256_file(stage / out.name), "rows": len(kept)},
            "rejects": {"path": str(rejects_path), "sha256": sha256_file(rejects_file), "rows": len(rejects),
                        "by_reason": dict(sorted(Counter(r["reason"] for r in rejects).items()))},
        }
        write_json_atomic(stage / manifest_path.name, manifest)
    return manifest
