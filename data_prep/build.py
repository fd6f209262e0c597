"""Build a training mixture: convert every source, deduplicate, cap, decontaminate, split, and record it all.

    python -m data_prep build data_prep/mixtures/default-v1.yaml --out data/build/default-v1 [--workers N]

Writes DIR/sft.jsonl, DIR/sft.validation.jsonl, DIR/dpo.jsonl, DIR/dpo.validation.jsonl,
DIR/rejects.jsonl (every row left out, with its stage and reason) and, last, DIR/manifest.json, all into
a staging folder first: a build that fails or is stopped leaves the previous build in DIR as it was.
For every source: rows = kept + rejected + excluded + duplicate + over cap + contaminated + too long.
``max_rows`` counts distinct rows: a source is capped after deduplication. An entry's ``exclude: FILE`` leaves
out the rows whose key FILE lists (data_prep/exclude.py); its ``max_reject_rate`` replaces the mixture's.
The manifest gives, per kind, the rows each of the nine benchmarks removed (``decontaminated``).
Each source row is converted and measured once, in ``workers`` processes (default: this machine's cores;
data_prep/rowpass.py); this process then decides, in input order, what stays. The outputs are the same bytes
for any count.
"""

from __future__ import annotations

import difflib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from common.benchmarks import BENCHMARKS
from common.files import (
    load_yaml,
    sha256_file,
    staged_outputs,
    write_json_atomic,
    write_jsonl_atomic,
    write_lines_atomic,
)
from data_prep.convert import DEFAULT_MAX_REJECT_RATE, check_reject_rate
from data_prep.coverage import coverage
from data_prep.decontaminate import BenchmarkIndex, load_index
from data_prep.dedup import NEAR_THRESHOLD, decide
from data_prep.exclude import STAGE as EXCLUDED
from data_prep.exclude import left_out_reason, load_keys, manifest_record
from data_prep.mixture import check_mixture
from data_prep.parallel import collector_paused, default_workers
from data_prep.rowpass import Converted, convert_and_measure
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT
from data_prep.sources import load_sources
from data_prep.tokens import choose, encode_missing, load_tokenizer, token_stats

MIXTURE_KEYS = {"name", "version", "seed", "system_prompt", "validation_fraction", "max_reject_rate",
                "near_duplicate_threshold", "decontaminate", "tokenizer", "sequence_len", "sft", "dpo"}
ENTRY_KEYS = {"source", "inputs", "max_rows", "max_reject_rate", "exclude"}
DECONTAMINATE_KEYS = {"benchmarks", "ngram", "min_question_words", "max_item_frequency", "allow_partial"}
KINDS = ("sft", "dpo")
OUTPUTS = [f"{kind}{part}.jsonl" for kind in KINDS for part in ("", ".validation")] + ["rejects.jsonl"]


def check_keys(found: dict[str, Any], allowed: set[str], where: str) -> None:
    """Refuse unknown keys, suggesting the nearest allowed one."""
    for key in found:
        if key not in allowed:
            near = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SystemExit(f"{where}: unknown key {key!r}{hint}")


def load_mixture(path: Path) -> dict[str, Any]:
    """A mixture YAML, its keys checked."""
    mixture = load_yaml(path)
    check_mixture(mixture, path, load_sources())
    check_keys(mixture, MIXTURE_KEYS, str(path))
    check_keys(mixture.get("decontaminate") or {}, DECONTAMINATE_KEYS, f"{path}: decontaminate")
    for kind in KINDS:
        for number, entry in enumerate(mixture.get(kind) or [], start=1):
            check_keys(entry, ENTRY_KEYS, f"{path}: {kind} entry {number}")
    return mixture


def system_prompt(mixture: dict[str, Any]) -> str | None:
    """``openbiollm`` (the default) means the model card's prompt; null means none; anything else is the text."""
    value = mixture.get("system_prompt", "openbiollm")
    return OPENBIOLLM_SYSTEM_PROMPT if value == "openbiollm" else value


def removed(entry: dict[str, Any], kind: str, stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    """A rejects-file entry for a converted row left out after conversion (its JSON line parsed again)."""
    return {"kind": kind, "stage": stage, "reason": reason, **entry["origin"], **extra,
            "row": json.loads(entry["line"])}


def gather(kind: str, entries: list[dict[str, Any]], mixture: dict[str, Any], index: BenchmarkIndex | None,
           tokenizer: Path | None, workers: int, mixture_path: Path | str = "mixture"
           ) -> tuple[Converted, list[dict]]:
    """Convert every source of one kind (rowpass.convert_and_measure): the pass's result and per-source records.

    An entry's ``exclude`` file must leave out at least one row: one that matches none names the wrong file.
    """
    sources = load_sources()
    inputs, exclude = [], {}
    for number, spec in enumerate(entries):
        module = sources[spec["source"]]
        if kind != module.KIND:
            raise SystemExit(f"{spec['source']} gives {module.KIND} rows; it cannot go under {kind}")
        inputs += [(spec["source"], str(path), number) for path in spec["inputs"]]
        if spec.get("exclude") is not None:
            exclude[number] = load_keys(Path(spec["exclude"]), f"{mixture_path}: {kind} entry {number + 1}")
    label = f"{kind}: convert, dedup, decontaminate" + (", token lengths" if tokenizer else "")
    converted = convert_and_measure(inputs, system_prompt(mixture), index, tokenizer, mixture.get("sequence_len"),
                                    workers, label=label, exclude=exclude)
    records, at = [], 0
    for number, spec in enumerate(entries):
        mine = converted.inputs[at:at + len(spec["inputs"])]
        at += len(spec["inputs"])
        rate = spec.get("max_reject_rate", mixture.get("max_reject_rate", DEFAULT_MAX_REJECT_RATE))
        check_reject_rate(spec["source"], mine, rate, "the build stops")
        record = {"source": spec["source"], "entry": number, "inputs": mine}
        if number in exclude:
            left = sum(i["excluded"] for i in mine)
            if not left:
                raise SystemExit(f"{mixture_path}: {kind} entry {number + 1}: exclude {spec['exclude']} matches no "
                                 f"row of {', '.join(map(str, spec['inputs']))} (none of its {len(exclude[number])} "
                                 "keys is a row key; only a JSON object keyed by id has keys)")
            record["exclude"] = manifest_record(Path(spec["exclude"]), exclude[number], left)
        records.append(record)
    return converted, records


def cap_after_dedup(kind: str, entries: list[dict[str, Any]], records: list[dict[str, Any]],
                    duplicates: list[dict[str, Any]], seed: int) -> tuple[list[dict], list[dict]]:
    """Keep at most ``max_rows`` distinct rows of each capped source (a seeded sample): kept entries, left-out.

    The source's record says how many distinct rows it had and how many duplicates went before the cap.
    """
    rng = random.Random(seed)
    dropped: set[int] = set()
    left_out = []
    for record, spec in records:
        cap = spec.get("max_rows")
        if cap is None:
            continue
        mine = [at for at, e in enumerate(entries) if e["origin"]["entry"] == record["entry"]]
        chosen = set(rng.sample(range(len(mine)), cap)) if len(mine) > cap else set(range(len(mine)))
        over = [at for i, at in enumerate(mine) if i not in chosen]
        dropped.update(over)
        left_out += [removed(entries[at], kind, "cap", f"over max_rows {cap}") for at in over]
        record["max_rows"] = {"cap": cap, "distinct_rows": len(mine), "over_cap": len(over),
                              "duplicates_before_cap": sum(d["origin"]["entry"] == record["entry"]
                                                           for d in duplicates)}
    return [e for at, e in enumerate(entries) if at not in dropped], left_out


def split(entries: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded shuffle, then the first ``fraction`` as validation."""
    order = list(entries)
    random.Random(seed).shuffle(order)
    cut = round(len(order) * fraction)
    return order[cut:], order[:cut]


def build(mixture_path: Path, out: Path, tokenizer: Path | None = None, workers: int | None = None
          ) -> dict[str, Any]:
    """Build the mixture into a staging folder, then move the whole set into ``out``; return the manifest.

    A build that fails or is interrupted leaves the previous build in ``out`` as it was (``staged_outputs``).
    """
    with staged_outputs(out, "build", OUTPUTS, "manifest.json") as stage, collector_paused():
        return build_files(mixture_path, stage, tokenizer, workers)


def build_files(mixture_path: Path, out: Path, tokenizer: Path | None = None, workers: int | None = None
                ) -> dict[str, Any]:
    """Build every kind of the mixture into ``out`` and return the manifest.

    With a tokenizer (the mixture's ``tokenizer``, or this argument), the manifest gives token-length
    percentiles and how many rows exceed the mixture's ``sequence_len``. ``workers`` (default: the
    machine's cores) changes how fast, never what is written.
    """
    mixture = load_mixture(mixture_path)
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise SystemExit(f"workers must be at least 1, not {workers}")
    tokenizer = tokenizer or (Path(mixture["tokenizer"]) if mixture.get("tokenizer") else None)
    if tokenizer is not None:
        try:
            load_tokenizer(tokenizer)  # before the long pass, and so that its workers inherit it loaded
        except OSError as err:
            raise SystemExit(f"{mixture_path}: tokenizer {tokenizer} cannot be loaded: {str(err).splitlines()[0]} "
                             "(the default mixture's is made by `make model`)") from None
    settings = mixture.get("decontaminate") or {}
    index = None
    if settings:
        index = load_index(Path(settings["benchmarks"]), settings.get("allow_partial", False),
                           f"allow_partial: true under decontaminate in {mixture_path}", n=settings.get("ngram", 13),
                           min_question_words=settings.get("min_question_words", 8),
                           max_item_frequency=settings.get("max_item_frequency", 5))
    manifest: dict[str, Any] = {"mixture": {"path": str(mixture_path), "sha256": sha256_file(mixture_path),
                                            "name": mixture.get("name"), "version": mixture.get("version")},
                                "system_prompt": system_prompt(mixture), "kinds": {}}
    all_left_out = []
    for kind in KINDS:
        if not mixture.get(kind):
            continue
        limit = mixture.get("sequence_len")
        converted, sources = gather(kind, mixture[kind], mixture, index, tokenizer, workers, mixture_path)
        left_out = [{"kind": kind, "stage": "convert", **r} for r in converted.rejects]
        left_out += [{"kind": kind, "stage": EXCLUDED, "reason": left_out_reason(mixture[kind][r["entry"]]["exclude"]),
                      **r} for r in converted.excluded]
        entries, duplicates = decide(converted.entries, converted.digests, converted.matrix,
                                     mixture.get("near_duplicate_threshold", NEAR_THRESHOLD))
        del converted
        left_out += [removed(d, kind, "dedup", d["reason"], duplicate_of=d["duplicate_of"]) for d in duplicates]
        entries, over_cap = cap_after_dedup(kind, entries, list(zip(sources, mixture[kind], strict=True)),
                                            duplicates, mixture.get("seed", 0))
        left_out += over_cap
        decontaminated = None
        if index is not None:
            left_out += [removed(e, kind, "decontaminate", f"overlaps {e['match'].task} item {e['match'].item_id}",
                                 overlap=e["match"].overlap) for e in entries if e["match"] is not None]
            decontaminated = per_benchmark(index, [e["match"].task for e in entries if e["match"] is not None])
            entries = [e for e in entries if e["match"] is None]
        tokens = None
        if tokenizer is not None:
            facts = encode_missing([e["line"] for e in entries], [e["measured"] for e in entries], tokenizer, limit,
                                   workers, label=f"{kind}: token lengths, the rest of the sample")
            lengths, sampled = choose(facts, tokenizer, limit)  # None: a row known to fit
            tokens = token_stats(lengths, tokenizer, limit, sampled)
            if limit:  # Axolotl would drop these silently; leave them out here, with the reason
                left_out += [removed(e, kind, "length", f"{n} tokens is over sequence_len {limit}")
                             for e, n in zip(entries, lengths, strict=True) if n is not None and n > limit]
                entries = [e for e, n in zip(entries, lengths, strict=True) if n is None or n <= limit]
        train, validation = split(entries, mixture.get("validation_fraction", 0.0), mixture.get("seed", 0))
        outputs = {}
        for name, part in ((f"{kind}.jsonl", train), (f"{kind}.validation.jsonl", validation)):
            write_lines_atomic(out / name, [e["line"] for e in part])
            outputs[name] = {"sha256": sha256_file(out / name), "rows": len(part)}
        manifest["kinds"][kind] = {"sources": count_sources(sources, entries, left_out), "outputs": outputs}
        if decontaminated is not None:
            manifest["kinds"][kind]["decontaminated"] = decontaminated
        if tokens is not None:
            manifest["kinds"][kind]["tokens"] = tokens
        all_left_out += left_out

    write_jsonl_atomic(out / "rejects.jsonl", all_left_out)
    manifest["rejects"] = {"sha256": sha256_file(out / "rejects.jsonl"), "rows": len(all_left_out),
                           "by_stage": dict(sorted(Counter(r["stage"] for r in all_left_out).items()))}
    if index is not None:
        manifest["benchmarks"] = {"path": str(settings["benchmarks"]), "keys": len(index.keys),
                                  "files": [{"task": task, "sha256": sha256_file(path)}
                                            for task, path in index.files.items()], **coverage(index)}
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def per_benchmark(index: BenchmarkIndex, tasks: list[str]) -> dict[str, int | None]:
    """Rows removed by each of the nine benchmarks, in the registry's order; None for one not checked."""
    found = Counter(tasks)
    return {task: found[task] if task in index.files else None for task in BENCHMARKS}


def count_sources(sources: list[dict], kept: list[dict], left_out: list[dict]) -> list[dict]:
    """Per source entry: rows in, and where each went; the counts must add up."""
    kept_by_entry = Counter(e["origin"]["entry"] for e in kept)
    for record in sources:
        entry = record["entry"]
        mine = [r for r in left_out if r.get("entry") == entry]  # excluded, and after conversion: dedup, cap, ...
        record["rows"] = sum(i["rows"] for i in record["inputs"])
        record["kept"] = kept_by_entry[entry]
        record["left_out"] = dict(sorted(Counter(r["stage"] for r in mine).items()))
        record["rejected"] = sum(i["rejected"] for i in record["inputs"])
        accounted = record["kept"] + record["rejected"] + sum(record["left_out"].values())
        if accounted != record["rows"]:
            raise AssertionError(f"source {record['source']} (entry {entry}): {record['rows']} rows in, "
                                 f"{accounted} accounted for")
    return sources
