"""HH-RLHF's "\\n\\nHuman: ... \\n\\nAssistant: ..." strings become a shared prompt and two answers; pairs whose
turns cannot be read that way are rejected with the reason."""

from __future__ import annotations

import gzip
import json
from itertools import islice

import pytest
from helpers import ROOT, read_jsonl

from data_prep.convert import convert
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT
from data_prep.sources import hh_rlhf, load_sources

PUBLISHED = ROOT / "data/published/dpo/hh_rlhf"
HELPFUL = PUBLISHED / "helpful-base_test.jsonl.gz"
SYSTEM = {"role": "system", "content": OPENBIOLLM_SYSTEM_PROMPT}
ORDER = "turns out of order (Human and Assistant must alternate, Human first)"


def pair(chosen, rejected) -> dict:
    return {"chosen": chosen, "rejected": rejected}


BAD = [  # (row, reason)
    (pair("\n\nHuman: Hi\n\nAssistant: Hello!", "\n\nHuman: Hi\n\nAssistant: Hello!"),
     "chosen and rejected are the same text"),
    (pair("\n\nHuman: Hi\n\nAssistant: Hello!", "\n\nHuman: Hey\n\nAssistant: Go away."),
     "chosen and rejected have different prompts"),
    (pair("\n\nHuman: Hi\n\nHuman: Anyone?\n\nAssistant: Yes.", "\n\nHuman: Hi\n\nHuman: Anyone?\n\nAssistant: No."),
     f"chosen: {ORDER}"),
    (pair("\n\nAssistant: Hello.\n\nHuman: Hi\n\nAssistant: Yes.", "\n\nHuman: Hi\n\nAssistant: No."),
     f"chosen: {ORDER}"),
    (pair("\n\nHuman: Hi\n\nAssistant: Yes.", "\n\nHuman: Hi\n\nAssistant: No.\n\nHuman: Why?"),
     "rejected: does not end with an Assistant turn"),
    (pair("\n\nHuman: Hi\n\nAssistant: \n\nHuman: Well?\n\nAssistant: Yes.",
          "\n\nHuman: Hi\n\nAssistant: \n\nHuman: Well?\n\nAssistant: No."), "chosen: empty Assistant turn"),
    (pair("\n\nHuman:   \n\nAssistant: Yes.", "\n\nHuman:   \n\nAssistant: No."), "chosen: empty Human turn"),
    (pair("\n\nHuman: Hi\n\nAssistant: Yes.", "\n\nHuman: Hi\n\nAssistant:"), "rejected: empty Assistant turn"),
    (pair("Just some text", "\n\nHuman: Hi\n\nAssistant: No."),
     "chosen: text before the first Human or Assistant turn"),
    (pair("", "\n\nHuman: Hi\n\nAssistant: No."), "chosen: no Human turn"),
    ({"chosen": "\n\nHuman: Hi\n\nAssistant: Yes."}, "missing field 'rejected'"),
    (pair(["Human", "Hi"], "\n\nHuman: Hi\n\nAssistant: No."), "chosen is list, not text"),
    (pair("\n\nHuman: Hi\n\nAssistant: Yes.", None), "rejected is null, not text"),
]


def test_hh_rlhf_is_registered_as_dpo():
    assert load_sources()["hh-rlhf"] is hh_rlhf and hh_rlhf.KIND == "dpo"


def test_the_first_published_pairs_become_prompt_chosen_rejected(tmp_path):
    with gzip.open(HELPFUL, "rt", encoding="utf-8") as handle:
        head = list(islice(handle, 130))
    first = json.loads(head[0])
    sliced = tmp_path / "helpful-head.jsonl.gz"
    with gzip.open(sliced, "wt", encoding="utf-8") as handle:
        handle.writelines(head)
    manifest = convert(hh_rlhf, [str(sliced)], tmp_path / "out.jsonl", OPENBIOLLM_SYSTEM_PROMPT)
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[0] == {
        "messages": [SYSTEM, {"role": "user",
                              "content": "Do you know why turkeys became the official food of thanksgiving?"}],
        "chosen": {"role": "assistant", "content": first["chosen"].split("\n\nAssistant: ")[1]},
        "rejected": {"role": "assistant", "content": first["rejected"].split("\n\nAssistant: ")[1]},
    }
    assert all(row["messages"][-1]["role"] == "user" for row in rows)
    assert any(len(row["messages"]) > 3 for row in rows)  # multi-turn prompts keep their earlier turns
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(r["file"], r["where"], r["reason"]) for r in rejects] == [
        (str(sliced), "line 121", "chosen: empty Assistant turn")]
    assert (manifest["inputs"][0]["rows"], manifest["inputs"][0]["kept"]) == (130, 129)


def test_broken_pairs_are_rejected_with_their_line_and_reason(tmp_path):
    good = pair("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Well, thanks.",
                "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Leave me alone.")
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [good] + [row for row, _ in BAD]))
    convert(hh_rlhf, [str(path)], tmp_path / "out.jsonl", None, max_reject_rate=1)
    assert read_jsonl(tmp_path / "out.jsonl") == [{
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                     {"role": "user", "content": "How are you?"}],
        "chosen": {"role": "assistant", "content": "Well, thanks."},
        "rejected": {"role": "assistant", "content": "Leave me alone."}}]
    rejects = read_jsonl(tmp_path / "out.rejects.jsonl")
    assert [(r["where"], r["reason"]) for r in rejects] == [
        (f"line {number}", reason) for number, (_, reason) in enumerate(BAD, start=2)]


@pytest.mark.parametrize("name, rows, kept, reasons", [
    ("helpful-base_test.jsonl.gz", 2354, 2333, {
        "chosen and rejected are the same text": 2, "chosen: empty Assistant turn": 1, f"chosen: {ORDER}": 9,
        "rejected: empty Assistant turn": 3, f"rejected: {ORDER}": 6}),
    ("harmless-base_test.jsonl.gz", 2312, 2299, {
        "chosen: empty Assistant turn": 4, f"chosen: {ORDER}": 8, f"rejected: {ORDER}": 1}),
])
def test_the_published_test_files_keep_all_but_a_few_dozen_pairs(tmp_path, name, rows, kept, reasons):
    manifest = convert(hh_rlhf, [str(PUBLISHED / name)], tmp_path / "out.jsonl", None)
    [record] = manifest["inputs"]
    assert (record["rows"], record["kept"], record["rejected_by_reason"]) == (rows, kept, reasons)
