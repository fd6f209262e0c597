"""Time benchmark decontamination against a plain per-row 13-gram set check, on synthetic data.

    .venv/bin/python bench/decontaminate.py --rows 100000

Writes the nine benchmarks at their real item counts (synthetic text, realistic lengths and
boilerplate) and N chat rows, 1% of them copies of an item or its question, then times (a)
BenchmarkIndex.from_folder + decontaminate_rows and (b) the baseline: one set of all benchmark
13-grams, per row the set of its 13-grams intersected with it (same normalisation). Each runs
--repeat times with the other's data freed; the fastest run counts; index and check timed apart.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data_prep.decontaminate import TASKS, BenchmarkIndex, decontaminate_rows, row_text, words

ITEMS = {"medmcqa": 4183, "medqa_4options": 1273, "pubmedqa": 500, "mmlu_anatomy": 135,
         "mmlu_clinical_knowledge": 265, "mmlu_college_biology": 144, "mmlu_college_medicine": 173,
         "mmlu_medical_genetics": 100, "mmlu_professional_medicine": 272}
FUNCTION_WORDS = "the of and in a to with is was for or on by at as an from that which be are patient most following"
MEDICAL_WORDS = ("fever cough dyspnea chest pain abdominal nausea headache fatigue rash edema hypertension diabetes "
                 "asthma pneumonia sepsis anemia cirrhosis hepatitis stroke infarction thyroid insulin aspirin heparin "
                 "biopsy serum creatinine sodium platelet antibody enzyme gene mutation artery nerve muscle cortex "
                 "x-ray beta-blocker patient's mg/dL non-small-cell T-cell follow-up well-defined")
GENERIC_STEMS = ("Which of the following is the most likely diagnosis?",
                 "Which of the following is the most appropriate next step in management?",
                 "Which of the following is the most likely cause of this patient's condition?")
VITALS = "Temperature is 37°C (98.6°F), pulse is 80/min, and blood pressure is 120/80 mm Hg."


def writer(rng: random.Random):
    """``text(low, high)``: a sentence of low..high Zipf-drawn words; ``terms=True``: content words only."""
    syllables = ["ba", "ce", "di", "fo", "gu", "ha", "ki", "lo", "me", "nu", "pa", "ri", "so", "ta", "vi", "xo"]
    made_up = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 5))) for _ in range(30000)})
    vocab = FUNCTION_WORDS.split() + MEDICAL_WORDS.split() + made_up
    content = vocab[len(FUNCTION_WORDS.split()):]
    cumulative, total = [], 0.0
    for rank in range(len(vocab)):
        total += 1 / (rank + 1) ** 0.9
        cumulative.append(total)

    def text(low: int, high: int, terms: bool = False) -> str:
        count = rng.randint(low, high)
        out = rng.choices(content, k=count) if terms else rng.choices(vocab, cum_weights=cumulative, k=count)
        return " ".join(out).capitalize() + "."
    return text


def vignette(rng: random.Random, text, low: int, high: int) -> str:
    """A case: MedQA's opening and vital-sign boilerplate around made-up findings, then a generic stem."""
    return (f"A {rng.randint(18, 85)}-year-old {rng.choice(['man', 'woman'])} comes to the physician because of "
            f"{text(low, high)} {VITALS if rng.random() < 0.5 else ''} {text(low, high)} {rng.choice(GENERIC_STEMS)}")


def benchmark_item(task: str, number: int, rng: random.Random, text) -> dict:
    """One item: id, text (context, question, options) and question, with the task's typical lengths."""
    options = "\n".join(f"{letter}. {text(1, 4, terms=True)}" for letter in "ABCD")
    if task == "pubmedqa":
        question = text(6, 16)[:-1] + "?"
        return {"id": str(number), "question": question,
                "text": f"Abstract: {text(150, 300)} {text(20, 60)}\nQuestion: {question}\nAnswer:"}
    if task in ("medqa_4options", "mmlu_professional_medicine"):
        question = vignette(rng, text, 40, 100)
    else:
        question = text(6, 30)[:-1] + "?"
    return {"id": f"{task}-{number}", "question": question, "text": f"{question}\n{options}"}


def training_row(rng: random.Random, text, items: list[dict]) -> tuple[dict, bool]:
    """A chat row: a case MCQ or a free question, and an explanation; 1% copy a benchmark item or its question."""
    planted = rng.random() < 0.01
    if planted:
        item = rng.choice(items)
        user = item["text"] if rng.random() < 0.5 else f"Please explain: {item['question']}"
    elif rng.random() < 0.5:
        options = "\n".join(f"{letter}. {text(1, 4, terms=True)}" for letter in "ABCD")
        user = f"{vignette(rng, text, 20, 70)}\n{options}"
    else:
        user = text(8, 40)
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": text(40, 200)}]}, planted


def ours(folder: Path, rows: list[dict]) -> tuple[float, float, set[int]]:
    """(index seconds, check seconds, flagged rows) for BenchmarkIndex + decontaminate_rows."""
    start = time.perf_counter()
    index = BenchmarkIndex.from_folder(folder)
    built = time.perf_counter()
    _, contaminated = decontaminate_rows(rows, index)
    return built - start, time.perf_counter() - built, {record["position"] for record in contaminated}


def grams(tokens: list[bytes], n: int = 13) -> set[tuple[bytes, ...]]:
    """The baseline's n-grams: a set of word tuples."""
    return set(zip(*(tokens[i:] for i in range(n)), strict=False))


def baseline(folder: Path, rows: list[dict]) -> tuple[float, float, set[int]]:
    """The same for the baseline: one set of every benchmark 13-gram; per row, its 13-gram set intersected."""
    start = time.perf_counter()
    bench: set[tuple[bytes, ...]] = set()
    for task in TASKS:
        for line in (folder / f"{task}.jsonl").read_text(encoding="utf-8").splitlines():
            bench |= grams(words(json.loads(line)["text"]))
    built = time.perf_counter()
    flagged = {at for at, row in enumerate(rows) if grams(words(row_text(row))) & bench}
    return built - start, time.perf_counter() - built, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts (a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    text = writer(rng)
    best: dict[str, tuple[float, float, set[int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder, items = Path(tmp), []
        for task in TASKS:
            task_items = [benchmark_item(task, number, rng, text) for number in range(ITEMS[task])]
            (folder / f"{task}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in task_items), encoding="utf-8")
            items += task_items
        rows, planted = map(list, zip(*(training_row(rng, text, items) for _ in range(args.rows)), strict=True))
        words_a_row = sum(len(row_text(row).split()) for row in rows) / args.rows
        print(f"{len(items)} benchmark items; {args.rows} rows, {words_a_row:.0f} words a row; {sum(planted)} planted")
        for _ in range(args.repeat):
            for name, run in (("ours", ours), ("baseline", baseline)):
                gc.collect()
                result = run(folder, rows)
                if name not in best or sum(result[:2]) < sum(best[name][:2]):
                    best[name] = result

    hits = {position for position, hit in enumerate(planted) if hit}
    for name, (index_s, check_s, found) in best.items():
        print(f"{name:<9} index {index_s:5.2f} s, check {check_s:6.2f} s = {args.rows / check_s:6.0f} rows/s; "
              f"end to end {index_s + check_s:6.2f} s = {args.rows / (index_s + check_s):6.0f} rows/s; planted "
              f"found {len(found & hits)}/{len(hits)}, other rows flagged {len(found - hits)}")
    (ours_index, ours_check, _), (base_index, base_check, _) = best["ours"], best["baseline"]
    print(f"ours / baseline, rows per second: check {base_check / ours_check:.2f}, "
          f"end to end {(base_index + base_check) / (ours_index + ours_check):.2f}")


if __name__ == "__main__":
    main()
