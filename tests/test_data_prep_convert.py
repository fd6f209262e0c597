"""The convert step: kept rows, every reject traced to its line with a reason, counts that add up, loud failures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, read_jsonl, write_jsonl

from data_prep.convert import convert
from data_prep.readers import parse_hub_spec, read_rows
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT, Reject, dpo_row, message, sft_row
from data_prep.sources import load_sources

SAMPLE = ROOT / "data_prep/samples/alpaca.synthetic.jsonl"
ALPACA = load_sources()["alpaca"]


def test_every_source_named_in_the_contract_is_registered():
    contract = {"medmcqa", "medqa", "pubmedqa", "alpaca", "sharegpt", "messages",
                "pref-pairs", "pref-messages", "pref-ranked", "pref-outputs", "medquad", "hh-rlhf"}
    sources = load_sources()
    assert set(sources) >= {"alpaca"}
    assert set(sources) <= contract
    for name, module in sources.items():
        assert module.KIND in ("sft", "dpo") and module.SUMMARY, name


def test_alpaca_rows_become_system_user_assistant(tmp_path):
    convert(ALPACA, [str(SAMPLE)], tmp_path / "out.jsonl", OPENBIOLLM_SYSTEM_PROMPT)
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[0] == {"messages": [
        {"role": "system", "content": OPENBIOLLM_SYSTEM_PROMPT},
        {"role": "user", "content": "Answer this question truthfully\n\nWhich nerve is compressed in carpal tunnel "
                                    "syndrome?"},
        {"role": "assistant", "content": "The median nerve, as it passes through the carpal tunnel beneath the "
                                         "flexor retinaculum."},
    ]}
    assert rows[2]["messages"][1]["content"] == "Explain what an HbA1c test measures."  # empty input: no blank line


def test_every_rejected_row_is_kept_with_its_line_and_reason(tmp_path):
    manifest = convert(ALPACA, [str(SAMPLE)], tmp_path / "out.jsonl", OPENBIOLLM_SYSTEM_PROMPT)
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(r["where"], r["reason"]) for r in rejects] == [
        ("line 7", "empty assistant content"),
        ("line 8", "missing field 'output'"),
        ("line 9", "malformed JSON: Invalid control character at"),
        ("line 10", "malformed JSON: Expecting value"),
    ]
    assert rejects[3]["raw"] == "not json at all" and rejects[0]["file"] == str(SAMPLE)
    [source] = manifest["inputs"]
    assert source["rows"] == source["kept"] + source["rejected"] == 10
    assert manifest["output"]["rows"] == 6 == len(read_jsonl(tmp_path / "out.jsonl"))
    assert manifest["rejects"]["by_reason"]["malformed JSON: Expecting value"] == 1
    assert json.loads((tmp_path / "out.manifest.json").read_text()) == manifest


def test_rerunning_gives_byte_identical_files(tmp_path):
    for run in ("a", "b"):
        convert(ALPACA, [str(SAMPLE)], tmp_path / run / "out.jsonl", OPENBIOLLM_SYSTEM_PROMPT)
    for name in ("out.jsonl", "out.rejects.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_mostly_rejected_input_fails_loudly_and_writes_no_output(tmp_path):
    bad = write_jsonl(tmp_path / "wrong.jsonl", [{"question": "q", "opa": "x"}] * 3 + [
        {"instruction": "Define fever.", "output": "A raised body temperature."}])
    with pytest.raises(SystemExit, match=r"3 of 4 rows rejected, most for \"missing field 'instruction'\""):
        convert(ALPACA, [str(bad)], tmp_path / "out.jsonl", None)
    assert not (tmp_path / "out.jsonl").exists()
    assert len(read_jsonl(tmp_path / "out.rejects.jsonl")) == 3


def test_cli_converts_and_lists_sources(tmp_path):
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-m", "data_prep", "convert", "alpaca", str(SAMPLE), "--out", str(out),
                           "--no-system"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "6 rows" in done.stdout and "4 rejected" in done.stdout
    assert read_jsonl(out)[0]["messages"][0]["role"] == "user"
    listing = subprocess.run([sys.executable, "-m", "data_prep", "convert", "--help"], cwd=ROOT,
                             capture_output=True, text=True).stdout
    assert all(name in listing for name in load_sources())


def test_row_checks():
    with pytest.raises(Reject, match="empty user content"):
        message("user", "  ")
    with pytest.raises(Reject, match="not valid UTF-8"):
        message("user", "bad \udcff byte")
    with pytest.raises(Reject, match="ends with 'user'"):
        sft_row([message("user", "a")], None)
    with pytest.raises(Reject, match="turn 2 is 'user'"):
        sft_row([message("user", "a"), message("user", "b")], None)
    with pytest.raises(Reject, match="chosen and rejected are the same text"):
        dpo_row([message("user", "q")], "same", " same ", None)
    own = sft_row([message("system", "Be brief."), message("user", "a"), message("assistant", "b")], "ignored")
    assert own["messages"][0]["content"] == "Be brief."


def test_hub_inputs_need_a_pinned_revision():
    assert parse_hub_spec("hub:openlifescienceai/medmcqa@91c6572:validation") == (
        "openlifescienceai/medmcqa", "91c6572", "validation")
    with pytest.raises(SystemExit, match="pinned revision"):
        parse_hub_spec("hub:openlifescienceai/medmcqa")


def test_hub_reader_loads_through_datasets(tmp_path):
    # The hub itself is unreachable here; datasets.load_dataset takes a local folder by the same code path.
    folder = tmp_path / "org_dataset"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"instruction": "Define fever.", "output": "A raised body temperature."}])
    [row] = list(read_rows(f"hub:{folder}@main:train"))
    assert row.where == "index 0" and row.record["output"] == "A raised body temperature."


def test_a_json_file_holding_one_object_per_line_is_read_as_jsonl(tmp_path):
    # MedMCQA's original release ships JSON lines under .json names.
    path = tmp_path / "dev.json"
    path.write_text('{"instruction": "Define fever.", "output": "A raised body temperature."}\n{"broken": \n')
    rows = list(read_rows(str(path)))
    assert [(r.where, r.error) for r in rows] == [("line 1", None), ("line 2", "malformed JSON: Expecting value")]
