"""Time a whole mixture build, stage by stage, beside a naive 13-gram loop over the same rows.

    .venv/bin/python bench/build_mixture.py --rows 100000 [--workers 2] [--no-tokenizer]

Writes N source rows in four published schemas (alpaca, messages, medmcqa, pref-pairs) whose
text is real medical text recombined: sentences of the bundled samples (data_prep/samples,
data/default) and of /work/shared/reference/*.json when present, two to four to a prompt and
three to eight to an answer. 2% of rows repeat an earlier prompt exactly, 1% nearly (" please"
added), 1% copy a benchmark item; the nine benchmark files have their real item counts
(synthetic text). A Llama-3-style tokenizer is trained on the sentences (Meta's chat template).

Then, in this process, the yardstick: a plain Python loop that builds one set of every benchmark
13-gram and intersects each row's 13-gram set with it (bench/decontaminate.py's baseline). And,
in a child process (so that its peak memory is its own), ``data_prep.build.build`` with each of
its stage functions timed. The yardstick ratio (yardstick seconds / build seconds) is the figure
to compare across machines: these machines are shared and their absolute timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from data_prep.decontaminate import TASKS, words  # noqa: E402

ITEMS = {"medmcqa": 4183, "medqa_4options": 1273, "pubmedqa": 500, "mmlu_anatomy": 135,
         "mmlu_clinical_knowledge": 265, "mmlu_college_biology": 144, "mmlu_college_medicine": 173,
         "mmlu_medical_genetics": 100, "mmlu_professional_medicine": 272}
WORDS = ("fever cough dyspnoea chest pain abdominal nausea headache fatigue rash oedema hypertension diabetes "
         "asthma pneumonia sepsis anaemia cirrhosis hepatitis stroke infarction arrhythmia thyroid insulin "
         "aspirin heparin warfarin biopsy serum creatinine sodium potassium platelet antibody receptor enzyme "
         "gene mutation artery vein nerve muscle cortex patient presents with history of acute chronic left "
         "right severe mild treatment diagnosis management daily dose risk").split()
SCHEMAS = ("alpaca", "messages", "medmcqa", "pref-pairs")
TEXT_SOURCES = [*sorted((ROOT / "data_prep/samples").glob("*.json*")), *sorted((ROOT / "data/default").glob("*.jsonl")),
                *sorted(Path("/work/shared/reference").glob("*.json"))]
STAGES = ("convert_and_measure", "decide", "cap_after_dedup", "encode_missing", "choose", "split",
          "write_lines_atomic")


def strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from strings(inner)


def real_sentences() -> list[str]:
    """The distinct sentences of four words or more in the bundled samples and the reference rows."""
    found: set[str] = set()
    for path in TEXT_SOURCES:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines() if path.suffix == ".jsonl" else [text]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # some samples hold broken lines on purpose
                continue
            for value in strings(record):
                found.update(s for s in re.split(r"(?<=[.!?])\s+", value.strip()) if len(s.split()) >= 4)
    return sorted(found)


def sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high))).capitalize() + f" {rng.randrange(10**6)}."


def write_benchmarks(folder: Path, rng: random.Random) -> list[str]:
    """The nine task files; returns the item texts, for planting leaks."""
    folder.mkdir(parents=True)
    texts = []
    for task in TASKS:
        with open(folder / f"{task}.jsonl", "w") as handle:
            for i in range(ITEMS[task]):
                question = sentence(rng, 12, 40)
                text = question + "\n" + "\n".join(f"{'ABCD'[j]}. {sentence(rng, 1, 4)}" for j in range(4))
                handle.write(json.dumps({"id": f"{task}-{i}", "text": text, "question": question}) + "\n")
                texts.append(text)
    return texts


def write_sources(folder: Path, rows: int, leaks: list[str], pool: list[str], rng: random.Random
                  ) -> tuple[dict[str, Path], list[str], list[tuple[str, str]]]:
    """Four source files, rows split evenly, repeats and leaks planted; each row's text; (prompt, answer) pairs."""
    paths = {name: folder / f"{name}.jsonl" for name in SCHEMAS}
    handles = {name: open(path, "w", encoding="utf-8") for name, path in paths.items()}  # noqa: SIM115
    texts: list[str] = []
    pairs: list[tuple[str, str]] = []
    previous: list[str] = []
    for i in range(rows):
        kind = SCHEMAS[i % 4]
        roll = rng.random()
        if roll < 0.01:
            question = rng.choice(leaks)
        elif roll < 0.03 and previous:
            question = rng.choice(previous)
        elif roll < 0.04 and previous:
            question = rng.choice(previous) + " please"
        else:
            question = " ".join(rng.sample(pool, rng.randint(2, 4)))
            if len(previous) < 50_000:
                previous.append(question)
            else:
                previous[rng.randrange(50_000)] = question
        answer = " ".join(rng.sample(pool, rng.randint(3, 8)))
        record = {
            "alpaca": {"instruction": question, "input": "", "output": answer},
            "messages": {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]},
            "medmcqa": {"id": str(i), "question": question, "opa": "one", "opb": "two", "opc": "three", "opd": "four",
                        "cop": rng.randint(1, 4), "choice_type": "single", "exp": answer, "subject_name": "Medicine",
                        "topic_name": None},
            "pref-pairs": {"prompt": question, "chosen": answer, "rejected": " ".join(rng.sample(pool, 2))},
        }[kind]
        handles[kind].write(json.dumps(record) + "\n")
        texts.append("\n".join(strings(record)))
        pairs.append((question, answer))
    for handle in handles.values():
        handle.close()
    return paths, texts, pairs


def datasketch_dedup(entries: list[dict[str, Any]]) -> list[tuple[int, str, int]]:
    """The dedup before the change: a datasketch MinHash per row, MinHashLSH; (position, reason, original)."""
    import hashlib

    from datasketch import MinHashLSH

    from data_prep.decontaminate import normalize, row_text
    from data_prep.dedup import LSH_WEIGHTS, NEAR_THRESHOLD, NUM_PERM, minhash, prompt_text

    lsh = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    seen, indexed, removed = {}, {}, []
    for position, entry in enumerate(entries):
        exact = hashlib.sha256(normalize(row_text(entry["row"])).encode()).hexdigest()
        if exact in seen:
            removed.append((position, "exact duplicate", seen[exact]))
            continue
        signature = minhash(prompt_text(entry["row"]))
        similar = sorted(k for k in lsh.query(signature) if signature.jaccard(indexed[k]) >= NEAR_THRESHOLD)
        if similar:
            removed.append((position, "near-duplicate prompt", int(similar[0])))
            continue
        seen[exact] = position
        indexed[f"{position:012d}"] = signature
        lsh.insert(f"{position:012d}", signature)
    return removed


def compare_dedup(pairs: list[tuple[str, str]]) -> str:
    """Whether data_prep.dedup removes the same rows, for the same reasons, as the datasketch loop; and timings."""
    from data_prep.dedup import dedup

    entries = [{"row": {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                "origin": {"where": at}} for at, (q, a) in enumerate(pairs)]
    start = time.perf_counter()
    before = datasketch_dedup(entries)
    middle = time.perf_counter()
    after = [(r["origin"]["where"], r["reason"], r["duplicate_of"]["where"]) for r in dedup(entries, workers=1)[1]]
    end = time.perf_counter()
    verdict = "the same removals" if before == after else "DIFFERENT removals"
    return (f"dedup on {len(pairs)} rows, one process: datasketch loop {middle - start:.1f} s, "
            f"ours {end - middle:.1f} s; "
            f"{verdict} ({len(before)} before, {len(after)} after)")


def write_tokenizer(folder: Path, corpus: list[str]) -> Path:
    """A byte-level BPE tokenizer (8k vocabulary) with Llama-3's special tokens and chat template."""
    from bench.llama3_tokenizer import build_llama3_tokenizer

    build_llama3_tokenizer(corpus, vocab_size=8000).save_pretrained(folder)
    return folder


def yardstick(folder: Path, texts: list[str]) -> tuple[float, int]:
    """Seconds for the naive loop: one set of every benchmark 13-gram, then each row's 13-gram set intersected."""
    def grams(tokens: list[bytes]) -> set[tuple[bytes, ...]]:
        return set(zip(*(tokens[i:] for i in range(13)), strict=False))

    start = time.perf_counter()
    bench: set[tuple[bytes, ...]] = set()
    for task in TASKS:
        for line in (folder / f"{task}.jsonl").read_text(encoding="utf-8").splitlines():
            bench |= grams(words(json.loads(line)["text"]))
    flagged = sum(1 for text in texts if grams(words(text)) & bench)
    return time.perf_counter() - start, flagged


def timed(module: Any, name: str, seconds: dict[str, float]) -> None:
    """Wrap ``module.name`` so that the seconds spent in it add up in ``seconds[name]``."""
    inner: Callable = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    setattr(module, name, wrapper)


def run_build(root: Path, workers: int | None) -> None:
    """The child process: build the mixture with each stage timed; print the figures as one JSON line."""
    from data_prep import build as build_module

    seconds: dict[str, float] = {}
    for name in STAGES:
        if hasattr(build_module, name):
            timed(build_module, name, seconds)
    timed(build_module, "load_tokenizer", seconds)  # the build's first load (cached after): part of "other"
    tokenizer = root / "tokenizer" if (root / "tokenizer").is_dir() else None
    kwargs = {} if workers is None else {"workers": workers}
    start = time.perf_counter()
    manifest = build_module.build(root / "mixture.yaml", root / "out", tokenizer=tokenizer, **kwargs)
    total = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": total, "stages": seconds, "peak_rss_mib": own, "worker_peak_rss_mib": child,
                      "by_stage": manifest["rejects"]["by_stage"],
                      "kept": sum(o["rows"] for k in manifest["kinds"].values() for o in k["outputs"].values())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, help="data_prep build --workers (default: the build's default)")
    parser.add_argument("--no-tokenizer", action="store_true", help="leave token lengths out of the build")
    parser.add_argument("--compare-dedup", type=int, default=0, metavar="N",
                        help="also dedup the first N rows the way the build did before (datasketch per row) and "
                             "check that the same rows are removed")
    parser.add_argument("--keep", type=Path, help="build here and keep the files (default: a temporary folder)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_build(args.child, args.workers)
        return
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        pool = real_sentences()
        leaks = write_benchmarks(root / "benchmarks", rng)
        paths, texts, pairs = write_sources(root, args.rows, leaks, pool, rng)
        compared = compare_dedup(pairs[:args.compare_dedup]) if args.compare_dedup else None
        del pairs
        words_a_row = sum(len(t.split()) for t in texts) / len(texts)
        if not args.no_tokenizer:
            write_tokenizer(root / "tokenizer", pool)
        mixture = {"name": "bench", "version": 1, "seed": 0, "validation_fraction": 0.01, "sequence_len": 4096,
                   "decontaminate": {"benchmarks": str(root / "benchmarks")},
                   "sft": [{"source": s, "inputs": [str(paths[s])]} for s in SCHEMAS[:3]],
                   "dpo": [{"source": "pref-pairs", "inputs": [str(paths["pref-pairs"])]}]}
        (root / "mixture.yaml").write_text(yaml.safe_dump(mixture))
        naive, flagged = yardstick(root / "benchmarks", texts)
        del texts
        command = [sys.executable, __file__, "--child", str(root)]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            raise SystemExit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = result["seconds"]
    print(f"rows {args.rows} ({words_a_row:.0f} words a row, {len(pool)} distinct sentences), "
          f"workers {args.workers or 'default'}, load average {os.getloadavg()[0]:.2f}")
    print(f"build     {seconds:6.1f} s = {args.rows / seconds:7,.0f} rows/s; kept {result['kept']}, "
          f"left out {result['by_stage']}")
    stages = result["stages"]
    for name in (name for name in STAGES if name in stages):
        print(f"  {name:<20} {stages[name]:6.1f} s = {args.rows / stages[name]:9,.0f} rows/s")
    other = seconds - sum(spent for name, spent in stages.items() if name != "load_tokenizer")
    print(f"  {'other':<20} {other:6.1f} s (reading the mixture, indexing the benchmarks, the manifest)")
    if "load_tokenizer" in stages:
        print(f"    of which loading the tokenizer {stages['load_tokenizer']:.1f} s")
    print(f"yardstick {naive:6.1f} s = {args.rows / naive:7,.0f} rows/s (naive 13-gram loop; flags {flagged} rows)")
    print(f"build / yardstick, rows per second: {naive / seconds:.2f}")
    if compared:
        print(compared)
    print(f"peak RSS: build process {result['peak_rss_mib']:,.0f} MiB, largest worker "
          f"{result['worker_peak_rss_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
