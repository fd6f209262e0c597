"""A run's manifest names the published files its training data was built from, with their sha256."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import ROOT

from common.files import sha256_file
from data_prep.build import build
from launch.lifecycle.manifest import dataset_records


def test_a_default_v2_build_is_traced_to_medquad_and_pubmedqa_files(tmp_path):
    mixture = yaml.safe_load((ROOT / "data_prep/mixtures/default-v2.yaml").read_text())
    for key in ("decontaminate", "tokenizer"):  # the test sets and the model are other tests' business
        mixture.pop(key)
    mixture["dpo"] = []
    for entry in mixture["sft"]:
        entry["inputs"] = [str(ROOT / p) for p in entry["inputs"]]
        if "exclude" in entry:
            entry["exclude"] = str(ROOT / entry["exclude"])
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(mixture))
    build(path, tmp_path / "build")
    (record,) = dataset_records({"datasets": [{"path": "build/sft.jsonl", "type": "chat_template"}]}, tmp_path)
    inputs = record["data_manifest"]["inputs"]
    assert [i["source"] for i in inputs] == ["medquad", "pubmedqa"]
    for item in inputs:
        assert item["sha256"] == sha256_file(Path(item["path"]))
    assert inputs[0]["rows"] > inputs[0]["kept"] > 16_000  # MedQuAD: unanswered pairs are rejected
    assert inputs[1]["rows"] == 1000 and inputs[1]["kept"] == 500  # the 500 test PMIDs left out
