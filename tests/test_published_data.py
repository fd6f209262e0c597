"""data/published/: every file data/README.md lists is there with its checksums and row counts, and the nine
benchmarks prepared from it are the same bytes as those prepared from the uncompressed published files."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import re
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT

from common.files import format_suffix, read_text, sha256_file
from data_prep.readers import read_rows
from data_prep.sources import medquad
from eval.benchmarks import TASKS
from eval.benchmarks.mmlu import read_csv
from eval.prepare import main as prepare_main

DATA = ROOT / "data"
PUBLISHED = DATA / "published"
REFERENCE = Path("/work/shared/reference/real-data")  # the published files uncompressed, where this machine has them
OPENERS = {".xz": lzma.open, ".gz": gzip.open}


def listed() -> list[dict[str, str]]:
    """The rows of data/README.md's table of published files (paths from published/): file, rows, both sha256."""
    rows = []
    for line in (DATA / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and re.fullmatch(r"`[0-9a-f]{64}`", cells[4]):
            rows.append({"file": cells[0].strip("`"), "rows": cells[3], "sha256": cells[4].strip("`"),
                         "content": cells[5]})
    return rows


def content_sha256(path: Path) -> str:
    """sha256 of what ``xz -dc``/``gzip -dc`` gives back for a compressed file, else of the file."""
    opener = OPENERS.get(path.suffix, open)
    digest = hashlib.sha256()
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def number(text: str) -> int:
    return int(text.replace(",", ""))


def records(path: Path) -> list:
    """The source rows of a published file, by the readers the project uses on it."""
    if format_suffix(path) == ".csv":
        return [raw.record for raw in read_csv(path)]
    if format_suffix(path) == ".tar":
        return [raw for raw in medquad.read(str(path)) if raw.where != medquad.WHOLE_FILE]
    if path.name.endswith("ground_truth.json"):
        return list(json.loads(read_text(path)).values())  # PubMedQA's ground truth: PMID -> label
    return [raw.record for raw in read_rows(str(path))]


def test_the_table_lists_every_published_data_file():
    files = {(PUBLISHED / row["file"]).resolve() for row in listed()}
    shipped = {p.resolve() for p in PUBLISHED.rglob("*") if p.is_file()
               and not p.name.startswith(("LICENSE", "readme"))}
    assert shipped == {path for path in files if PUBLISHED.resolve() in path.parents} and len(shipped) == 12
    assert all(path.is_file() for path in files)


@pytest.mark.parametrize("row", listed(), ids=lambda row: Path(row["file"]).name)
def test_each_listed_file_has_its_checksums(row):
    path = PUBLISHED / row["file"]
    assert sha256_file(path) == row["sha256"]
    if row["content"] != "byte-identical":  # recompressed: the published bytes are what decompressing gives back
        assert content_sha256(path) == re.search(r"`([0-9a-f]{64})`", row["content"])[1]


@pytest.mark.parametrize("row", listed(), ids=lambda row: Path(row["file"]).name)
def test_each_listed_file_has_its_row_count(row):
    path = PUBLISHED / row["file"]
    found = records(path)
    assert len(found) == number(re.match(r"[\d,]+", row["rows"])[0])
    labels = re.search(r"\(yes ([\d,]+), no ([\d,]+), maybe ([\d,]+)\)", row["rows"])
    if labels:  # PubMedQA: final_decision of ori_pqal.json, or the ground truth's labels
        decisions = Counter(r["final_decision"] if isinstance(r, dict) else r for r in found)
        assert [decisions[label] for label in ("yes", "no", "maybe")] == [number(n) for n in labels.groups()]
    answered = re.search(r"([\d,]+) with an answer", row["rows"])
    if answered:  # MedQuAD
        assert sum(1 for raw in found if (raw.record["answer"] or "").strip()) == number(answered[1])
    same = re.search(r"(\d+) with chosen = rejected", row["rows"])
    if same:  # HH-RLHF
        assert sum(r["chosen"] == r["rejected"] for r in found) == number(same[1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("benchmarks")
    prepare_main(["--all", "--from", str(PUBLISHED / "eval"), "--out", str(out)])
    return out


def test_the_nine_benchmarks_prepare_from_the_shipped_files_at_their_official_counts(prepared):
    rows = {task: sum(1 for line in (prepared / f"{task}.jsonl").open() if line.strip()) for task in TASKS}
    assert (rows["pubmedqa"], rows["medqa_4options"], rows["medmcqa"]) == (500, 1273, 4183)
    assert sum(n for task, n in rows.items() if task.startswith("mmlu_")) == 1089 and len(rows) == 9
    manifest = json.loads((prepared / "medmcqa.manifest.json").read_text())
    assert manifest["inputs"][0]["path"].endswith("medmcqa/dev.json.xz")


@pytest.mark.skipif(not (REFERENCE / "eval").is_dir(),
                    reason=f"{REFERENCE}/eval (the uncompressed published files) is not on this machine")
def test_the_prepared_benchmarks_are_the_bytes_prepared_from_the_uncompressed_originals(prepared, tmp_path):
    prepare_main(["--all", "--from", str(REFERENCE / "eval"), "--out", str(tmp_path)])
    for task in TASKS:
        assert sha256_file(prepared / f"{task}.jsonl") == sha256_file(tmp_path / f"{task}.jsonl"), task


DEFAULT_V2 = ROOT / "data_prep/mixtures/default-v2.yaml"


def test_the_default_v2_mixture_names_only_shipped_files():
    from data_prep.build import load_mixture

    mixture = load_mixture(DEFAULT_V2)
    assert (mixture["name"], mixture["version"], mixture["sequence_len"]) == ("default", 2, 1024)
    entries = mixture["sft"] + mixture["dpo"]
    assert [e["source"] for e in entries] == ["medquad", "pubmedqa", "hh-rlhf"]
    assert all((ROOT / spec).is_file() for e in entries for spec in e["inputs"] + [e.get("exclude", e["inputs"][0])])
    assert mixture["decontaminate"]["benchmarks"] == "data/benchmarks"


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "models/smollm2-135m-instruct").is_dir(), reason="make model builds the tokenizer")
def test_the_default_v2_mixture_builds_from_the_shipped_files(prepared, tmp_path):
    import yaml

    from data_prep.build import build

    mixture = yaml.safe_load(DEFAULT_V2.read_text())
    mixture["decontaminate"]["benchmarks"] = str(prepared)
    path = tmp_path / "default-v2.yaml"
    path.write_text(yaml.safe_dump(mixture))
    manifest = build(path, tmp_path / "out", tokenizer=ROOT / "models/smollm2-135m-instruct")
    sft, dpo = manifest["kinds"]["sft"], manifest["kinds"]["dpo"]
    medquad_record, pubmedqa_record = sft["sources"]
    assert (medquad_record["rows"], medquad_record["rejected"]) == (47463, 31040)
    assert (pubmedqa_record["rows"], pubmedqa_record["kept"], pubmedqa_record["left_out"]) == (
        1000, 499, {"excluded": 500, "length": 1})  # one abstract is over 1024 tokens
    assert dpo["sources"][0]["rejected"] == 34
    assert set(sft["decontaminated"]) == set(TASKS) and set(dpo["decontaminated"]) == set(TASKS)
    assert 0 < sft["outputs"]["sft.validation.jsonl"]["rows"] < 400
