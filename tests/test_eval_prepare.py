"""``python -m eval prepare``: raw benchmark files in each published schema -> the prepared rows and manifest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, read_jsonl, write_jsonl

from common.files import sha256_file
from data_prep.decontaminate import BenchmarkIndex
from eval.benchmarks import TASKS
from eval.lm_eval_tasks import FIXTURES
from eval.prepare import main, prepare

REFERENCE = Path("/work/shared/reference")  # published PubMedQA rows, read in place (never copied)


def fixture_inputs(name: str) -> list[str]:
    return sorted(str(p) for p in (FIXTURES / name).iterdir())


def prepared(task: str, inputs: list[str], out: Path) -> list[dict]:
    prepare(TASKS[task], inputs, out, allow_partial=True)
    return read_jsonl(out / f"{task}.jsonl")


def test_help_lists_the_nine_tasks():
    result = subprocess.run([sys.executable, "-m", "eval", "prepare", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for name, task in TASKS.items():
        assert f"{name} " in result.stdout and f"{task.rows} rows" in result.stdout


def test_pubmedqa_takes_exactly_the_ground_truth_pmids_with_their_labels(tmp_path):
    truth = json.loads((FIXTURES / "pubmedqa" / "test_ground_truth.json").read_text())
    pqal = json.loads((FIXTURES / "pubmedqa" / "ori_pqal.json").read_text())
    assert set(truth) < set(pqal) and list(truth) != list(pqal)[: len(truth)]  # a pick, not a slice
    manifest = prepare(TASKS["pubmedqa"], fixture_inputs("pubmedqa"), tmp_path, allow_partial=True)
    rows = read_jsonl(tmp_path / "pubmedqa.jsonl")
    assert [r["id"] for r in rows] == list(truth)
    assert [r["final_decision"] for r in rows] == list(truth.values())
    assert [["yes", "no", "maybe"][r["answer"]] for r in rows] == list(truth.values())
    assert [r["question"] for r in rows] == [pqal[pmid]["QUESTION"] for pmid in truth]
    assert manifest["left_out"] == {"not in the official test split (test_ground_truth.json)": len(pqal) - len(truth)}


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="the shared reference rows are not on this machine")
def test_pubmedqa_reads_the_published_files(tmp_path):
    truth = json.loads((REFERENCE / "pubmedqa_test_ground_truth.sample.json").read_text())
    pqal = json.loads((REFERENCE / "pubmedqa_ori_pqal.sample.json").read_text())
    rows = prepared("pubmedqa", [str(REFERENCE / "pubmedqa_ori_pqal.sample.json"),
                                 str(REFERENCE / "pubmedqa_test_ground_truth.sample.json")], tmp_path)
    assert [r["id"] for r in rows] == list(truth)
    first = pqal[rows[0]["id"]]
    assert rows[0]["context"] == "\n".join(first["CONTEXTS"])
    assert rows[0]["text"].startswith("Abstract: " + first["CONTEXTS"][0])


def test_pubmedqa_label_that_disagrees_with_the_ground_truth_stops_with_the_pmid(tmp_path):
    pqal = json.loads((FIXTURES / "pubmedqa" / "ori_pqal.json").read_text())
    truth = json.loads((FIXTURES / "pubmedqa" / "test_ground_truth.json").read_text())
    pmid = next(iter(truth))
    truth[pmid] = next(label for label in ("yes", "no", "maybe") if label != pqal[pmid]["final_decision"])
    (tmp_path / "gt.json").write_text(json.dumps(truth))
    with pytest.raises(SystemExit, match=f"key {pmid}: final_decision .* disagrees with the ground truth"):
        prepare(TASKS["pubmedqa"], [str(FIXTURES / "pubmedqa" / "ori_pqal.json"), str(tmp_path / "gt.json")],
                tmp_path / "out", allow_partial=True)


def test_row_count_other_than_the_official_one_is_refused_naming_both(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"medmcqa: expected 4183 rows \(validation\), found 6") as err:
        main(["medmcqa", *fixture_inputs("medmcqa"), "--out", str(tmp_path)])
    assert "--allow-partial" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written
    manifest = main(["medmcqa", *fixture_inputs("medmcqa"), "--out", str(tmp_path), "--allow-partial"])
    assert manifest["partial"] is True and manifest["expected_rows"] == 4183 and manifest["output"]["rows"] == 6
    assert "PARTIAL" in capsys.readouterr().out


def test_manifest_records_inputs_and_output_by_sha256(tmp_path):
    manifest = prepare(TASKS["medqa_4options"], fixture_inputs("medqa_4options"), tmp_path, allow_partial=True)
    on_disk = json.loads((tmp_path / "medqa_4options.manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["inputs"] == [{"path": p, "sha256": sha256_file(Path(p))} for p in fixture_inputs("medqa_4options")]
    assert manifest["output"]["sha256"] == sha256_file(tmp_path / "medqa_4options.jsonl")
    assert manifest["output"]["rows"] == len(read_jsonl(tmp_path / "medqa_4options.jsonl"))


def test_medmcqa_original_and_hub_answer_bases_give_the_same_rows(tmp_path):
    original = [json.loads(line) for line in (FIXTURES / "medmcqa" / "dev.json").read_text().splitlines()]
    hub = [{**row, "cop": row["cop"] - 1} for row in original]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(hub), tmp_path / "validation.parquet")
    from_original = prepared("medmcqa", fixture_inputs("medmcqa"), tmp_path / "a")
    from_hub = prepared("medmcqa", [str(tmp_path / "validation.parquet")], tmp_path / "b")
    assert from_original == from_hub
    assert [r["choices"][r["answer"]] for r in from_original] == [
        r["op" + "abcd"[r["cop"] - 1]] for r in original]
    assert json.loads((tmp_path / "b" / "medmcqa.manifest.json").read_text())["facts"]["cop_base"] == {
        str(tmp_path / "validation.parquet"): 0}


def test_medqa_layouts_give_the_same_prompt_fields(tmp_path):
    original = read_jsonl(FIXTURES / "medqa_4options" / "test.jsonl")
    hf = [{"sent1": r["question"], "sent2": "", **{f"ending{i}": r["options"][k] for i, k in enumerate("ABCD")},
           "label": "ABCD".index(r["answer_idx"])} for r in original]
    listed = [{"question": r["question"], "options": [{"key": k, "value": v} for k, v in r["options"].items()],
               "answer_idx": r["answer_idx"], "answer": r["answer"]} for r in original]
    fields = ("question", "text", "choices", "answer")
    results = [[{f: row[f] for f in fields} for row in prepared("medqa_4options", [str(write_jsonl(
        tmp_path / f"{n}.jsonl", rows))], tmp_path / n)] for n, rows in (("orig", original), ("hf", hf),
                                                                         ("list", listed))]
    assert results[0] == results[1] == results[2]
    assert results[0][0]["text"] == original[0]["question"] + "\n" + "\n".join(
        f"{k}. {v}" for k, v in original[0]["options"].items())


def test_medqa_five_option_row_is_refused_with_its_line(tmp_path):
    rows = read_jsonl(FIXTURES / "medqa_4options" / "test.jsonl")
    rows[2]["options"]["E"] = "Another option"
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(SystemExit, match=rf"{path}, line 3: 5 options; the task has exactly 4"):
        prepare(TASKS["medqa_4options"], [str(path)], tmp_path / "out", allow_partial=True)
    assert not (tmp_path / "out").exists()


def test_mmlu_csv_and_hub_parquet_give_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open(FIXTURES / "mmlu_anatomy" / "anatomy_test.csv", newline="") as handle:
        items = list(csv.reader(handle))
    hub = [{"question": q, "subject": "anatomy", "choices": [a, b, c, d], "answer": "ABCD".index(ans)}
           for q, a, b, c, d, ans in items]
    other = [{**row, "subject": "virology"} for row in hub[:2]]  # the `all` config holds every subject
    pq.write_table(pa.Table.from_pylist(other + hub), tmp_path / "all-test.parquet")
    from_csv = prepared("mmlu_anatomy", fixture_inputs("mmlu_anatomy"), tmp_path / "a")
    from_hub = prepared("mmlu_anatomy", [str(tmp_path / "all-test.parquet")], tmp_path / "b")
    assert from_csv == from_hub and len(from_csv) == len(items)
    assert json.loads((tmp_path / "b" / "mmlu_anatomy.manifest.json").read_text())["left_out"] == {
        "another MMLU subject": 2}


def test_mmlu_csv_of_another_subject_or_split_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="this is MMLU anatomy test, but the task is mmlu_college_biology"):
        prepare(TASKS["mmlu_college_biology"], fixture_inputs("mmlu_anatomy"), tmp_path, allow_partial=True)
    dev = tmp_path / "anatomy_dev.csv"
    dev.write_text((FIXTURES / "mmlu_anatomy" / "anatomy_test.csv").read_text())
    with pytest.raises(SystemExit, match="this is MMLU anatomy dev"):
        prepare(TASKS["mmlu_anatomy"], [str(dev)], tmp_path, allow_partial=True)


def test_mmlu_csv_row_with_missing_fields_names_its_line(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_text('"A question, with a comma",w,x,y,z,A\nshort,row,B\n')
    with pytest.raises(SystemExit, match=rf"{path}, line 2: 3 fields; expected 6"):
        prepare(TASKS["mmlu_anatomy"], [str(path)], tmp_path / "out", allow_partial=True)


def test_decontaminate_reads_the_prepared_folder(tmp_path):
    for name in TASKS:
        prepare(TASKS[name], fixture_inputs(name), tmp_path, allow_partial=True)
    index = BenchmarkIndex.from_folder(tmp_path)
    assert index.items_by_task() == {name: len(read_jsonl(tmp_path / f"{name}.jsonl")) for name in TASKS}
    item = read_jsonl(tmp_path / "medqa_4options.jsonl")[1]
    found = index.match(f"Please help me with this exam question.\n{item['text']}\nThanks!")
    assert found is not None and found.task == "medqa_4options" and found.item_id == item["id"]
