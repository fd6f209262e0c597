"""A mixture entry's ``exclude`` leaves a test split out by key, and the manifest counts what each benchmark removed.

The data is a slice of PubMedQA's real ``ori_pqal.json``: three PMIDs of the official test split, three outside it.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, read_jsonl

from common.benchmarks import BENCHMARKS
from common.files import read_text, sha256_file
from data_prep.__main__ import main as data_prep_main
from data_prep.build import build
from eval.benchmarks import TASKS
from eval.prepare import prepare

ORI_PQAL = ROOT / "data/published/eval/pubmedqa/ori_pqal.json.xz"
GROUND_TRUTH = ROOT / "eval/benchmarks/data/pubmedqa_test_ground_truth.json"


@pytest.fixture(scope="module")
def pubmedqa(tmp_path_factory) -> dict[str, Path | list[str]]:
    """A six-PMID slice of ori_pqal.json (compressed, as shipped) and the real pubmedqa benchmark prepared."""
    out = tmp_path_factory.mktemp("pubmedqa")
    rows, truth = json.loads(read_text(ORI_PQAL)), json.loads(GROUND_TRUTH.read_text())
    test = [pmid for pmid in rows if pmid in truth][:3]
    other = [pmid for pmid in rows if pmid not in truth][:3]
    sliced = out / "ori_pqal.slice.json.xz"
    with lzma.open(sliced, "wt", encoding="utf-8") as handle:
        json.dump({pmid: rows[pmid] for pmid in test + other}, handle)
    prepare(TASKS["pubmedqa"], [str(ORI_PQAL), str(GROUND_TRUTH)], out / "benchmarks")
    return {"slice": sliced, "benchmarks": out / "benchmarks", "test": test, "other": other}


def mixture(tmp_path: Path, data: dict, **entry) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "version": 1, "validation_fraction": 0.0,
        "decontaminate": {"benchmarks": str(data["benchmarks"]), "allow_partial": True},
        "sft": [{"source": "pubmedqa", "inputs": [str(data["slice"])], **entry}]}))
    return path


def test_without_exclude_decontamination_removes_the_test_pmids_and_the_manifest_counts_them(pubmedqa, tmp_path):
    manifest = build(mixture(tmp_path, pubmedqa), tmp_path / "out")
    assert manifest["kinds"]["sft"]["decontaminated"] == {task: (3 if task == "pubmedqa" else None)
                                                          for task in BENCHMARKS}
    assert list(manifest["kinds"]["sft"]["decontaminated"]) == list(BENCHMARKS)  # all nine, in order
    removed = read_jsonl(tmp_path / "out/rejects.jsonl")
    assert [(r["where"], r["stage"], r["reason"]) for r in removed] == [
        (f"key {pmid}", "decontaminate", f"overlaps pubmedqa item {pmid}") for pmid in pubmedqa["test"]]


@pytest.mark.parametrize("form", ["object", "list"])
def test_rows_whose_key_the_exclude_file_lists_are_left_out_with_the_file_named(pubmedqa, tmp_path, form):
    exclude = GROUND_TRUTH
    if form == "list":
        exclude = tmp_path / "test_pmids.json"
        exclude.write_text(json.dumps(list(json.loads(GROUND_TRUTH.read_text()))))
    manifest = build(mixture(tmp_path, pubmedqa, exclude=str(exclude)), tmp_path / "out")
    [source] = manifest["kinds"]["sft"]["sources"]
    assert (source["rows"], source["kept"], source["rejected"], source["left_out"]) == (6, 3, 0, {"excluded": 3})
    assert source["exclude"] == {"path": str(exclude), "sha256": sha256_file(exclude), "keys": 500, "excluded": 3}
    assert source["inputs"][0]["excluded"] == 3
    assert manifest["kinds"]["sft"]["decontaminated"]["pubmedqa"] == 0
    left_out = read_jsonl(tmp_path / "out/rejects.jsonl")
    assert [(r["file"], r["where"], r["stage"], r["reason"]) for r in left_out] == [
        (str(pubmedqa["slice"]), f"key {pmid}", "excluded", f"key listed in {exclude} (exclude)")
        for pmid in pubmedqa["test"]]
    assert [r["raw"]["__key__"] for r in left_out] == pubmedqa["test"]  # the source row itself, for inspection
    assert manifest["rejects"]["by_stage"] == {"excluded": 3}
    kept = read_jsonl(tmp_path / "out/sft.jsonl")
    assert len(kept) == 3


@pytest.mark.parametrize("content, message", [
    (None, r"sft entry 1: exclude file .*missing.json does not exist"),
    ("{not json", r"sft entry 1: exclude file .*exclude.json is not JSON \(JSONDecodeError"),
    ("42", r"sft entry 1: exclude file .*exclude.json is a JSON int; expected an object whose keys"),
    ('["1", "2"]', r"sft entry 1: exclude .*exclude.json matches no row of .*ori_pqal.slice.json.xz \(none of its "
                   r"2 keys is a row key"),
])
def test_an_exclude_file_that_is_missing_not_json_or_matches_nothing_is_refused_in_one_line(
        pubmedqa, tmp_path, content, message):
    exclude = tmp_path / ("missing.json" if content is None else "exclude.json")
    if content is not None:
        exclude.write_text(content)
    with pytest.raises(SystemExit, match=message) as refused:
        build(mixture(tmp_path, pubmedqa, exclude=str(exclude)), tmp_path / "out")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "out/manifest.json").exists()


def test_the_build_prints_one_line_of_rows_removed_per_benchmark(pubmedqa, tmp_path, capsys):
    data_prep_main(["build", str(mixture(tmp_path, pubmedqa)), "--out", str(tmp_path / "out"), "--quiet"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("decontaminated")]
    assert lines == ["decontaminated, rows removed per benchmark: medmcqa -, medqa_4options -, pubmedqa 3, "
                     "mmlu_anatomy -, mmlu_clinical_knowledge -, mmlu_college_biology -, mmlu_college_medicine -, "
                     "mmlu_medical_genetics -, mmlu_professional_medicine -"]
