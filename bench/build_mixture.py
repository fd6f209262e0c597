"""Time a whole mixture build: convert + validate + dedup + decontaminate, on synthetic rows.

    .venv/bin/python bench/build_mixture.py --rows 100000

Writes N source rows (alpaca, messages, medmcqa and pref-pairs schemas, 2% exact repeats,
1% near repeats, 1% copies of benchmark items), a benchmark folder with the nine tasks' real
item counts, and a mixture naming them; then times ``data_prep.build.build`` and prints rows
per second and where the rows went. Run it at two sizes to see that the build is linear.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_prep.build import build
from data_prep.decontaminate import TASKS

ITEMS = {"medmcqa": 4183, "medqa_4options": 1273, "pubmedqa": 500, "mmlu_anatomy": 135,
         "mmlu_clinical_knowledge": 265, "mmlu_college_biology": 144, "mmlu_college_medicine": 173,
         "mmlu_medical_genetics": 100, "mmlu_professional_medicine": 272}
WORDS = ("fever cough dyspnoea chest pain abdominal nausea headache fatigue rash oedema hypertension diabetes "
         "asthma pneumonia sepsis anaemia cirrhosis hepatitis stroke infarction arrhythmia thyroid insulin "
         "aspirin heparin warfarin biopsy serum creatinine sodium potassium platelet antibody receptor enzyme "
         "gene mutation artery vein nerve muscle cortex patient presents with history of acute chronic left "
         "right severe mild treatment diagnosis management daily dose risk").split()


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


def write_sources(folder: Path, rows: int, leaks: list[str], rng: random.Random) -> dict[str, Path]:
    """Four source files in their published schemas, rows split evenly, with repeats and leaks planted."""
    paths = {name: folder / f"{name}.jsonl" for name in ("alpaca", "messages", "medmcqa", "pref-pairs")}
    lines: dict[str, list[str]] = {name: [] for name in paths}
    previous: list[str] = []
    for i in range(rows):
        kind = ("alpaca", "messages", "medmcqa", "pref-pairs")[i % 4]
        roll = rng.random()
        if roll < 0.01:
            question = rng.choice(leaks)
        elif roll < 0.03 and previous:
            question = rng.choice(previous)
        elif roll < 0.04 and previous:
            question = rng.choice(previous) + " please"
        else:
            question = sentence(rng, 10, 40)
            previous.append(question)
        answer = sentence(rng, 20, 80)
        record = {
            "alpaca": {"instruction": question, "input": "", "output": answer},
            "messages": {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]},
            "medmcqa": {"id": str(i), "question": question, "opa": "one", "opb": "two", "opc": "three", "opd": "four",
                        "cop": rng.randint(1, 4), "choice_type": "single", "exp": answer, "subject_name": "Medicine",
                        "topic_name": None},
            "pref-pairs": {"prompt": question, "chosen": answer, "rejected": sentence(rng, 5, 20)},
        }[kind]
        lines[kind].append(json.dumps(record) + "\n")
    for name, path in paths.items():
        path.write_text("".join(lines[name]))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        leaks = write_benchmarks(root / "benchmarks", rng)
        paths = write_sources(root, args.rows, leaks, rng)
        mixture = {"name": "bench", "version": 1, "seed": 0, "validation_fraction": 0.01,
                   "decontaminate": {"benchmarks": str(root / "benchmarks")},
                   "sft": [{"source": s, "inputs": [str(paths[s])]} for s in ("alpaca", "messages", "medmcqa")],
                   "dpo": [{"source": "pref-pairs", "inputs": [str(paths["pref-pairs"])]}]}
        (root / "mixture.yaml").write_text(yaml.safe_dump(mixture))
        start = time.perf_counter()
        manifest = build(root / "mixture.yaml", root / "out")
        seconds = time.perf_counter() - start
    kept = sum(o["rows"] for k in manifest["kinds"].values() for o in k["outputs"].values())
    print(f"rows {args.rows}: built in {seconds:.1f} s = {args.rows / seconds:,.0f} rows/s; "
          f"kept {kept}, left out {manifest['rejects']['by_stage']}")


if __name__ == "__main__":
    main()
