"""The default eval's sample and the paired statistics that put a run beside its base model.

The sample is checked on the real PubMedQA test split (prepared from data/published); the statistics against
scipy's binomial test and a direct per-item computation, not against numbers written here.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT

from eval.benchmarks import TASKS
from eval.paired import Outcome, always_same, floor, mcnemar_exact, pair, wilson
from eval.prepare import prepare
from eval.sample import SIZES, read_prepared, shares, stratified, write_sample

PUBMEDQA = [str(ROOT / "data/published/eval/pubmedqa/ori_pqal.json.xz"),
            str(ROOT / "eval/benchmarks/data/pubmedqa_test_ground_truth.json")]


@pytest.fixture(scope="module")
def pubmedqa(tmp_path_factory) -> Path:
    """The official 500-item PubMedQA test split, prepared from the shipped files."""
    out = tmp_path_factory.mktemp("benchmarks")
    prepare(TASKS["pubmedqa"], PUBMEDQA, out)
    return out


def test_the_sample_keeps_each_answers_share_and_the_files_order(pubmedqa):
    rows = read_prepared(pubmedqa / "pubmedqa.jsonl")
    assert Counter(r["final_decision"] for r in rows) == {"yes": 276, "no": 169, "maybe": 55}
    chosen = stratified(rows, 100)
    assert len(chosen) == 100
    # 55.2, 33.8, 11.0 of 100: largest remainder gives 55 / 34 / 11
    assert Counter(r["final_decision"] for r in chosen) == {"yes": 55, "no": 34, "maybe": 11}
    order = {r["id"]: at for at, r in enumerate(rows)}
    assert [order[r["id"]] for r in chosen] == sorted(order[r["id"]] for r in chosen)


def test_the_sample_is_fixed_by_its_seed_and_a_larger_one_contains_a_smaller(pubmedqa):
    rows = read_prepared(pubmedqa / "pubmedqa.jsonl")
    shuffled = random.Random(3).sample(rows, len(rows))
    ids = {r["id"] for r in stratified(rows, 100)}
    assert {r["id"] for r in stratified(shuffled, 100)} == ids  # the file's order does not pick the items
    assert ids <= {r["id"] for r in stratified(rows, 200)}
    assert ids != {r["id"] for r in stratified(rows, 100, seed=1)}
    assert stratified(rows, 600) == rows  # no more items than asked: all of them


def test_shares_always_add_up_to_the_size():
    rng = random.Random(0)
    for _ in range(200):
        counts = {k: rng.randint(1, 50) for k in range(rng.randint(1, 5))}
        size = rng.randint(0, sum(counts.values()))
        given = shares(counts, size)
        assert sum(given.values()) == size
        assert all(0 <= given[k] <= counts[k] for k in counts)
        total = sum(counts.values())
        assert all(abs(given[k] - size * counts[k] / total) < 1 for k in counts)


def test_write_sample_records_what_it_took_from_which_file(pubmedqa, tmp_path):
    record = write_sample(pubmedqa, ["pubmedqa"], tmp_path / "items")
    entry = record["tasks"]["pubmedqa"]
    assert (entry["n"], entry["of"]) == (SIZES["pubmedqa"], 500)
    assert len(read_prepared(tmp_path / "items/pubmedqa.jsonl")) == SIZES["pubmedqa"]
    assert (tmp_path / "items/sample.json").is_file()


@pytest.mark.parametrize(("b", "c"), [(0, 0), (0, 1), (1, 0), (3, 7), (10, 10), (0, 25), (40, 61), (200, 170)])
def test_mcnemar_exact_is_the_two_sided_binomial_test_on_the_discordant_items(b, c):
    from scipy.stats import binomtest

    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_wilson_interval_inverts_the_score_test():
    from scipy.stats import norm

    z = norm.ppf(0.975)
    for k, n in [(0, 5), (1, 5), (5, 10), (55, 100), (99, 100), (412, 1273)]:
        low, high = wilson(k, n)
        assert low <= k / n <= high
        for bound in (low, high):  # at each bound the score statistic is exactly z (unless clipped at 0 or 1)
            if 0 < bound < 1:
                assert abs(k / n - bound) / math.sqrt(bound * (1 - bound) / n) == pytest.approx(z, rel=1e-6)


def test_paired_counts_and_interval_are_those_of_the_per_item_differences():
    rng = random.Random(7)
    golds = [rng.randrange(4) for _ in range(300)]
    base = {str(i): Outcome(g, g if rng.random() < 0.4 else (g + 1) % 4) for i, g in enumerate(golds)}
    run = {str(i): Outcome(g, g if rng.random() < 0.5 else (g + 2) % 4) for i, g in enumerate(golds)}
    paired = pair(base, run)
    d = np.array([run[i].correct - base[i].correct for i in base], dtype=float)
    assert paired.n == 300
    assert paired.difference == pytest.approx(d.mean())
    half = 1.959963984540054 * d.std(ddof=0) / math.sqrt(len(d))
    assert paired.difference_interval == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired.b_only == int((d == 1).sum()) and paired.a_only == int((d == -1).sum())
    assert paired.b_acc == pytest.approx(np.mean([o.correct for o in run.values()]))


def test_pairing_refuses_items_whose_gold_answers_differ():
    with pytest.raises(ValueError, match="gold answer"):
        pair({"1": Outcome(0, 0)}, {"1": Outcome(1, 1)})
    with pytest.raises(ValueError, match="no item"):
        pair({"1": Outcome(0, 0)}, {"2": Outcome(0, 0)})


def test_floors_are_pubmedqas_majority_and_one_in_four(pubmedqa):
    golds = [r["answer"] for r in read_prepared(pubmedqa / "pubmedqa.jsonl")]
    assert floor("pubmedqa", golds) == pytest.approx(0.552)
    assert floor("medqa_4options", [0, 1, 2, 3]) == 0.25
    assert always_same({"a": Outcome(2, 0), "b": Outcome(2, 2), "c": Outcome(1, 0)}) == (2, pytest.approx(2 / 3))
