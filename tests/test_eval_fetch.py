"""``python -m eval prepare --all``: the nine benchmarks in one command, from the hub or from a folder of raw files."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from helpers import read_jsonl, write_jsonl

from common.files import sha256_file
from eval import fetch
from eval.benchmarks import MMLU_SUBJECTS, TASKS
from eval.lm_eval_tasks import FIXTURES
from eval.prepare import main


def raw_folder(root):
    """The fixtures under their published file names and folders, as a user unpacks the original releases."""
    root.mkdir()
    shutil.copy(FIXTURES / "medmcqa/dev.json", root / "dev.json")
    (root / "MedQA/US/4_options").mkdir(parents=True)
    shutil.copy(FIXTURES / "medqa_4options/test.jsonl", root / "MedQA/US/4_options/phrases_no_exclude_test.jsonl")
    (root / "pubmedqa/data").mkdir(parents=True)
    for name in ("ori_pqal.json", "test_ground_truth.json"):
        shutil.copy(FIXTURES / "pubmedqa" / name, root / "pubmedqa/data" / name)
    (root / "mmlu/data/test").mkdir(parents=True)
    for subject in MMLU_SUBJECTS:
        shutil.copy(FIXTURES / f"mmlu_{subject}/{subject}_test.csv", root / f"mmlu/data/test/{subject}_test.csv")
    return root


def test_all_from_a_raw_folder_finds_every_file_by_name(tmp_path, capsys):
    raw = raw_folder(tmp_path / "raw")
    manifests = main(["--all", "--from", str(raw), "--out", str(tmp_path / "out"), "--allow-partial"])
    assert list(manifests) == list(TASKS)
    for task, manifest in manifests.items():
        assert manifest["source"] == {"raw_folder": str(raw)}
        assert manifest["output"]["sha256"] == sha256_file(tmp_path / f"out/{task}.jsonl")
        assert json.loads((tmp_path / f"out/{task}.manifest.json").read_text()) == manifest
    assert manifests["medqa_4options"]["inputs"][0]["path"].endswith("US/4_options/phrases_no_exclude_test.jsonl")
    assert manifests["pubmedqa"]["facts"]["ground_truth"] == str(raw / "pubmedqa/data/test_ground_truth.json")
    assert "mmlu_anatomy 5" in capsys.readouterr().out  # one line: each task and its item count


def test_all_from_a_folder_missing_a_file_names_it_and_writes_nothing(tmp_path):
    raw = raw_folder(tmp_path / "raw")
    (raw / "dev.json").unlink()
    with pytest.raises(SystemExit, match=r"no raw files for medmcqa \(dev.json\); nothing written \(--allow-partial"):
        main(["--all", "--from", str(raw), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def local_dataset(folder, configs: dict[str | None, dict[str, list[dict]]]):
    """A dataset folder ``datasets.load_dataset`` reads as it reads a hub repository: configs, splits, rows."""
    folder.mkdir(parents=True)
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config or 'default'}", "  data_files:"]
        for split, rows in splits.items():
            path = f"{config or 'data'}/{split}.jsonl"
            (folder / path).parent.mkdir(exist_ok=True)
            write_jsonl(folder / path, rows)
            lines += [f"  - split: {split}", f"    path: {path}"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]))
    return str(folder)


def test_all_from_the_hub_reads_lm_evals_datasets_and_the_official_pubmedqa_500(tmp_path, monkeypatch):
    # The hub is unreachable here: each dataset is a local folder in the hub dataset's layout (its configs,
    # splits and fields), read by the same datasets.load_dataset call with the same config, revision and split.
    hub = tmp_path / "hub"
    medmcqa = [{**r, "cop": r["cop"] - 1} for r in read_jsonl(FIXTURES / "medmcqa/dev.json")]  # cop from 0
    medqa = [{"sent1": r["question"], **{f"ending{i}": r["options"][k] for i, k in enumerate("ABCD")},
              "label": "ABCD".index(r["answer_idx"])} for r in read_jsonl(FIXTURES / "medqa_4options/test.jsonl")]
    truth = json.loads(fetch.PUBMEDQA_GROUND_TRUTH.read_text())
    pubmedqa = [{"pubid": int(pmid), "question": f"Synthetic question {n} about a study?",
                 "context": {"contexts": [f"Synthetic abstract {n}."], "labels": ["RESULTS"], "meshes": ["Humans"]},
                 "long_answer": "Synthetic.", "final_decision": truth.get(pmid, "maybe")}
                for n, pmid in enumerate([*truth, "1", "2", "3"])]  # the 500 test PMIDs and 3 others, shuffled below
    pubmedqa = pubmedqa[-2:] + pubmedqa[:-2]
    mmlu = {}
    for subject in MMLU_SUBJECTS:
        with open(FIXTURES / f"mmlu_{subject}/{subject}_test.csv", newline="") as handle:
            mmlu[subject] = {"test": [{"question": q, "subject": subject, "choices": [a, b, c, d],
                                       "answer": "ABCD".index(ans)} for q, a, b, c, d, ans in csv.reader(handle)]}
    sources = {
        "medmcqa": fetch.HubSource(local_dataset(hub / "medmcqa", {None: {"validation": medmcqa}}), "validation"),
        "medqa_4options": fetch.HubSource(local_dataset(hub / "medqa", {None: {"test": medqa}}), "test"),
        "pubmedqa": fetch.HubSource(local_dataset(hub / "pubmedqa", {"pqa_labeled": {"train": pubmedqa}}), "train",
                                    "pqa_labeled"),
        **{f"mmlu_{s}": fetch.HubSource(local_dataset(hub / "mmlu", mmlu) if s == "anatomy" else str(hub / "mmlu"),
                                        "test", s) for s in MMLU_SUBJECTS},
    }
    assert [(s.split, s.config) for s in sources.values()] == [(s.split, s.config) for s in fetch.HUB.values()]
    monkeypatch.setattr(fetch, "HUB", sources)

    manifests = main(["--all", "--out", str(tmp_path / "out"), "--allow-partial"])
    assert list(manifests) == list(TASKS)
    official = manifests["pubmedqa"]
    assert official["output"]["rows"] == 500 and official["partial"] is False
    assert [r["id"] for r in read_jsonl(tmp_path / "out/pubmedqa.jsonl")] == list(truth)
    assert official["inputs"][1] == {"path": str(fetch.PUBMEDQA_GROUND_TRUTH),
                                     "sha256": sha256_file(fetch.PUBMEDQA_GROUND_TRUTH)}
    anatomy = manifests["mmlu_anatomy"]
    assert anatomy["inputs"][0]["path"] == f"hub:{hub / 'mmlu'}@main:anatomy/test"
    assert anatomy["source"]["config"] == "anatomy" and anatomy["source"]["commit"] == "main"
    assert manifests["medmcqa"]["facts"]["cop_base"] == {f"hub:{hub / 'medmcqa'}@main:validation": 0}
    assert manifests["medmcqa"]["output"]["rows"] == len(medmcqa)


def test_the_hub_table_names_lm_evals_datasets_and_the_shipped_ground_truth_is_the_official_500():
    assert fetch.HUB["medqa_4options"].dataset == "GBaker/MedQA-USMLE-4-options-hf"
    assert fetch.HUB["medmcqa"].lm_eval == "medmcqa" and fetch.HUB["medmcqa"].split == "validation"
    assert {fetch.HUB[f"mmlu_{s}"].config for s in MMLU_SUBJECTS} == set(MMLU_SUBJECTS)
    truth = json.loads(fetch.PUBMEDQA_GROUND_TRUTH.read_text())
    assert len(truth) == TASKS["pubmedqa"].rows == 500 and set(truth.values()) == {"yes", "no", "maybe"}
    assert (fetch.PUBMEDQA_GROUND_TRUTH.parent / "NOTICE").read_text().count("MIT License") == 1


def test_all_with_the_hub_off_says_how_to_go_on(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match=r"HF_HUB_OFFLINE=1.*HF_HUB_OFFLINE=0.*--from RAW_DIR"):
        main(["--all", "--out", str(tmp_path)])
