"""Deduplication keeps the first of each repeated row and says which row every removed one repeats."""

from __future__ import annotations

import random

import numpy as np
from helpers import DPO_DATA, SFT_DATA, read_jsonl

from data_prep.decontaminate import normalize, row_text, words
from data_prep.dedup import dedup, minhash, prompt_text, row_words, signatures


def entry(user: str, answer: str = "An answer.", where: int = 0) -> dict:
    row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}
    return {"row": row, "origin": {"source": "test", "file": "t.jsonl", "where": f"line {where}"}}


def test_normalisation_ignores_case_punctuation_and_spacing():
    assert normalize("  What IS the  Function, of the\tKIDNEY?! ") == "what is the function of the kidney"
    assert normalize("ﬁbrosis") == "fibrosis"  # NFKC folds the ligature


def test_exact_and_near_duplicates_are_removed_with_the_row_they_repeat():
    entries = [
        entry("What are the early symptoms of aortic stenosis in elderly patients with heart failure?", where=1),
        entry("what are the early symptoms of aortic stenosis in elderly patients with heart failure", where=2),
        entry("What are the early symptoms of aortic stenosis in elderly patients with heart failure? Thanks!",
              answer="Different answer.", where=3),
        entry("What causes iron deficiency anaemia in adult men?", where=4),
        entry("Which vitamin deficiency causes scurvy and how does it present clinically?", where=5),
    ]
    kept, removed = dedup(entries)
    assert [e["origin"]["where"] for e in kept] == ["line 1", "line 4", "line 5"]
    assert [(r["origin"]["where"], r["reason"], r["duplicate_of"]["where"]) for r in removed] == [
        ("line 2", "exact duplicate", "line 1"),
        ("line 3", "near-duplicate prompt", "line 1"),
    ]
    assert len(kept) + len(removed) == len(entries)


def test_related_but_different_questions_are_kept():
    entries = [entry(f"What is the first-line treatment for {disease} in adults?", where=i)
               for i, disease in enumerate(["hypertension", "asthma", "migraine", "gout", "psoriasis"])]
    kept, removed = dedup(entries)
    assert len(kept) == 5 and not removed


def test_signatures_are_datasketchs_minhash_of_each_rows_shingles():
    rng = random.Random(0)
    vocabulary = "the of aortic stenosis kidney fever ﬁbrosis Acute chronic, dose; 45-year-old mg/dL".split()
    texts = ["", "one", "Two words!"] + [" ".join(rng.choices(vocabulary, k=rng.randint(1, 60))) for _ in range(200)]
    assert np.array_equal(signatures(texts), np.array([minhash(text).hashvalues for text in texts]))


def test_many_near_duplicates_are_removed_the_same_way_by_any_worker_count():
    rng = random.Random(1)
    vocabulary = "fever cough chest pain kidney liver acute chronic patient severe mild dose the of and with".split()
    originals = [" ".join(rng.choices(vocabulary, k=rng.randint(8, 30))) for _ in range(300)]
    entries = []
    for where in range(900):
        words = rng.choice(originals).split()
        if rng.random() < 0.5:  # one word changed: often a near-duplicate, sometimes not
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        entries.append(entry(" ".join(words), where=where))
    one = dedup(entries, workers=1)
    assert [e["origin"]["where"] for e in dedup(entries, workers=2)[0]] == [e["origin"]["where"] for e in one[0]]
    reasons = {r["reason"] for r in one[1]}
    assert reasons == {"exact duplicate", "near-duplicate prompt"} and 100 < len(one[0]) < 900


def test_a_rows_words_are_the_words_of_its_text_and_of_its_prompt_turn_by_turn():
    """dedup and decontamination normalise each turn once; the words must be those of the joined texts."""
    odd = ["e", "\u0301x", "ﬁne", "word-", "-word", "Ⅻ", "x\u200by", "A\u00a0B", "ẞ", "İstanbul", "ǅ", "", " ",
           "㎏ 5", "\u2028line", "a combining mark\u0301", "中文医学", "x" * 40, "Dose: 2.5mg/kg (max 40 mg)."]
    rows = [*read_jsonl(SFT_DATA), *read_jsonl(DPO_DATA)]
    for first, second in zip(odd, odd[1:] + odd[:1], strict=True):
        turns = [{"role": role, "content": text} for role, text in
                 (("system", second), ("user", first), ("assistant", second), ("user", second), ("assistant", first))]
        rows.append({"messages": turns})
        rows.append({"messages": turns[:4], "chosen": {"role": "assistant", "content": first},
                     "rejected": {"role": "assistant", "content": second}})
    for row in rows:
        assert row_words(row) == (words(row_text(row)), words(prompt_text(row))), row
