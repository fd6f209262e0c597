"""The two converters that make one DPO pair from several answers: pref-ranked (Nectar) and pref-outputs (MedQA)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.convert import convert
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT, Reject
from data_prep.sources import load_sources, pref_outputs, pref_ranked
from data_prep.sources.pref_outputs import final_letter

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_prep" / "samples"
RANKED_SAMPLE = SAMPLES / "pref_ranked.synthetic.jsonl"
OUTPUTS_SAMPLE = SAMPLES / "pref_outputs.synthetic.json"
SYSTEM = {"role": "system", "content": OPENBIOLLM_SYSTEM_PROMPT}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(module, sample: Path, tmp_path: Path) -> tuple[list[dict], dict[str, str], dict]:
    """Kept rows, reject reasons by location, and the manifest of converting one sample."""
    out = tmp_path / "out.jsonl"
    manifest = convert(module, [str(sample)], out, OPENBIOLLM_SYSTEM_PROMPT)
    rejects = {r["where"]: r["reason"] for r in read_jsonl(tmp_path / "out.rejects.jsonl")}
    return read_jsonl(out), rejects, manifest


def reason(module, record: dict) -> str:
    with pytest.raises(Reject) as err:
        module.convert(record, None)
    return str(err.value)


# --- pref-ranked ---------------------------------------------------------------------------------------------


def test_both_sources_are_registered_as_dpo():
    sources = load_sources()
    assert sources["pref-ranked"] is pref_ranked
    assert sources["pref-outputs"] is pref_outputs
    assert pref_ranked.KIND == pref_outputs.KIND == "dpo"


def test_ranked_sample_pairs_best_with_worst_and_rejects_the_broken_rows(tmp_path):
    rows, rejects, manifest = run(pref_ranked, RANKED_SAMPLE, tmp_path)

    assert rows[0] == {
        "messages": [SYSTEM, {"role": "user",
                              "content": "What is the first-line drug treatment for type 2 diabetes in most adults?"}],
        "chosen": {"role": "assistant", "content": "Metformin, together with diet and exercise, unless it is "
                                                   "contraindicated or not tolerated."},
        "rejected": {"role": "assistant", "content": "There is no drug treatment for type 2 diabetes."},
    }
    assert rejects == {
        "line 8": "1 answer; a pair needs at least 2",
        "line 9": "all answers ranked equal",
        "line 10": "answer 2 has no rank or score",
    }
    [record] = manifest["inputs"]
    assert (record["rows"], record["kept"], record["rejected"]) == (10, 7, 3)
    assert record["rows"] == record["kept"] + record["rejected"]
    assert manifest["output"]["rows"] == len(rows) == 7


def test_ranked_multi_turn_transcript_becomes_alternating_turns_without_the_empty_assistant(tmp_path):
    rows, _, _ = run(pref_ranked, RANKED_SAMPLE, tmp_path)
    assert rows[1]["messages"] == [
        SYSTEM,
        {"role": "user", "content": "What does a high TSH level usually mean?"},
        {"role": "assistant", "content": "It usually means the thyroid gland is underactive (hypothyroidism)."},
        {"role": "user", "content": "How is that usually treated?"},
    ]


def test_ranked_scores_count_higher_as_better(tmp_path):
    rows, _, _ = run(pref_ranked, RANKED_SAMPLE, tmp_path)
    assert rows[2]["messages"][1:] == [{"role": "user", "content": "Which vitamin deficiency causes scurvy?"}]
    assert rows[2]["chosen"]["content"] == "Vitamin C (ascorbic acid) deficiency, which impairs collagen synthesis."
    assert rows[2]["rejected"]["content"] == "Vitamin D deficiency."
    assert rows[6]["chosen"]["content"] == "N-acetylcysteine, best given within 8 hours of ingestion."
    assert rows[6]["rejected"]["content"] == "Naloxone."


def test_ranked_ties_go_to_the_earlier_answer(tmp_path):
    rows, _, _ = run(pref_ranked, RANKED_SAMPLE, tmp_path)
    # Tied for best (rank 1, answers 2 and 3): answer 2.
    assert rows[3]["chosen"]["content"] == "The radial nerve, which runs in the spiral groove of the humerus."
    # Tied for worst (rank 3, answers 1 and 3): answer 1.
    assert rows[4]["rejected"]["content"] == "Anything under 15 mmol/L."


def test_ranked_converts_a_nectar_shaped_row():
    # Nectar's shape: a transcript prompt, seven answers with float ranks 1.0-7.0 in any order, and its extra fields.
    models = ["gpt-3.5-turbo", "gpt-4", "llama-2-13b-chat", "vicuna-33b", "mpt-7b-chat", "alpaca-13b", "dolly-v2-12b"]
    ranks = [3.0, 1.0, 2.0, 5.0, 4.0, 7.0, 6.0]
    record = {
        "prompt": "\n\nHuman: Is ibuprofen safe in the third trimester of pregnancy?\n\nAssistant:",
        "answers": [{"answer": f"Answer ranked {rank:g}.", "model": model, "rank": rank}
                    for model, rank in zip(models, ranks, strict=True)],
        "turns": 1,
        "num_responses": 7,
        "source": ["sharegpt"],
        "good_natured": True,
    }
    assert pref_ranked.convert(record, None) == {
        "messages": [{"role": "user", "content": "Is ibuprofen safe in the third trimester of pregnancy?"}],
        "chosen": {"role": "assistant", "content": "Answer ranked 1."},
        "rejected": {"role": "assistant", "content": "Answer ranked 7."},
    }


def test_ranked_prompt_forms():
    assert pref_ranked.prompt_turns("What causes gout?") == [{"role": "user", "content": "What causes gout?"}]
    assert pref_ranked.prompt_turns("Human: What causes gout?\n\nAssistant:") == [
        {"role": "user", "content": "What causes gout?"}]
    with pytest.raises(Reject, match="text before its first Human:/Assistant: marker"):
        pref_ranked.prompt_turns("Preamble\n\nHuman: What causes gout?\n\nAssistant:")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"answers": []}, "0 answers; a pair needs at least 2"),
    ({"answers": "best: A"}, "answers is str, not a list"),
    ({"prompt": None}, "prompt is NoneType, not text"),
    ({"prompt": "\n\nHuman: Hi\n\nAssistant: Hello."}, "conversation ends with 'assistant', expected 'user'"),
    ({"prompt": "\n\nHuman: Hi\n\nHuman: Again\n\nAssistant:"}, "turn 2 is 'user', expected 'assistant'"),
    ({"answers": [{"answer": "Uric acid crystals.", "rank": 1}, {"answer": "Sugar.", "score": 1}]},
     "answers mix rank and score"),
    ({"answers": [{"answer": "Uric acid crystals.", "rank": "1"}, {"answer": "Sugar.", "rank": 2}]},
     "answer 1 rank '1' is not a number"),
    ({"answers": [{"answer": "Uric acid crystals.", "score": 2}, {"answer": "Sugar.", "score": 2}]},
     "all answers ranked equal"),
    ({"answers": [{"answer": "Uric acid crystals.", "rank": 1}, {"model": "x", "rank": 2}]},
     "answer 2 has no 'answer' text"),
    ({"answers": [{"answer": "Uric acid crystals.", "rank": 1}, {"answer": " ", "rank": 2}]},
     "empty answer 2 content"),
    ({"answers": [{"answer": "Sugar.", "rank": 1}, {"answer": "Sugar. ", "rank": 2}]},
     "chosen and rejected are the same text"),
])
def test_ranked_rejects_with_a_reason(changes, expected):
    record = {"prompt": "What causes gout?",
              "answers": [{"answer": "Uric acid crystals.", "rank": 1}, {"answer": "Sugar.", "rank": 2}], **changes}
    assert reason(pref_ranked, record) == expected


def test_ranked_cli_writes_the_same_rows_as_the_library(tmp_path):
    out = tmp_path / "cli.jsonl"
    result = subprocess.run([sys.executable, "-m", "data_prep", "convert", "pref-ranked", str(RANKED_SAMPLE),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pref-ranked: 7 rows" in result.stdout
    rows, _, _ = run(pref_ranked, RANKED_SAMPLE, tmp_path)
    assert read_jsonl(out) == rows


# --- pref-outputs: final_letter ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("Graves' disease explains every finding. So, the answer is C.", "C"),
    ("The answer is (B).", "B"),
    ("Thyroid eye disease.\n\nAnswer: D", "D"),
    ("**Answer:** A", "A"),
    ("Lid retraction is sympathetic, but proptosis is not.\n\n**C.**", "C"),
    ("...so the orbit is the problem.\n\n**C. Glycosaminoglycan accumulation in the orbit**", "C"),
    (" Weight loss suggests hyperthyroidism. [So, the answer is C.]", "C"),
    ("The correct option is B: the right coronary artery.", "B"),
    ("Option A is correct because a cherry-red spot means arterial occlusion.", "A"),
    ("The final answer is \\boxed{D}.", "D"),
    ("The answer is most likely C.", "C"),
    ("The correct answer choice is (A) Acute kidney injury.", "A"),
    # Other letters earlier in the reasoning, and option-by-option analysis, are not statements.
    ("A. Granulomatous inflammation is not typical.\nB. A fistula would cause a bruit.\n"
     "D. Sympathetic tone explains only the lid.\n\nSo, the answer is C.", "C"),
    ("Option D is possible, and B is often considered, but the answer is A.", "A"),
    ("Answer B is wrong because the ferritin is low. The answer is D.", "D"),
    # The last statement wins when an output changes its mind.
    ("Answer: A. On reflection the latency fits better, so the answer is D.", "D"),
    ("At first the answer seems to be B.\n\nFinal answer: C", "C"),
    # No explicit statement: no letter, never a guess.
    ("The most likely cause is glycosaminoglycan accumulation in the orbit.", None),
    ("The answer is not A; the other answer choices are unrelated.", None),
    ("The answer is Acute kidney injury.", None),
    ("Vitamin D deficiency is unlikely here.", None),
    ("", None),
])
def test_final_letter_takes_the_last_explicit_statement(text, expected):
    assert final_letter(text) == expected


def test_final_letter_stated_outside_the_options_is_no_letter():
    assert final_letter("The answer is E.") is None
    assert final_letter("The answer is E.", letters="ABCDE") == "E"
    assert final_letter("Answer: I think it is B") is None  # the pronoun "I" is not an option


# --- pref-outputs: conversion --------------------------------------------------------------------------------


def test_outputs_sample_pairs_first_right_with_first_wrong_and_rejects_the_broken_rows(tmp_path):
    rows, rejects, manifest = run(pref_outputs, OUTPUTS_SAMPLE, tmp_path)

    assert rows[0] == {
        "messages": [SYSTEM, {"role": "user", "content": (
            "A 24-year-old woman has palpitations, heat intolerance, weight loss and a diffuse, non-tender goitre. "
            "Her TSH is suppressed. Which of the following is the most likely cause?\n\n"
            "A. Subacute granulomatous thyroiditis\nB. Toxic multinodular goitre\nC. Graves' disease\n"
            "D. Factitious thyrotoxicosis")}],
        "chosen": {"role": "assistant", "content": (
            "A young woman with a diffuse goitre and thyrotoxicosis most likely has Graves' disease, an autoimmune "
            "condition driven by TSH-receptor antibodies. Subacute thyroiditis would be tender. So, the answer is C.")},
        "rejected": {"role": "assistant",
                     "content": "Multinodular goitre is a common cause of hyperthyroidism, so the answer is B."},
    }
    assert rejects == {
        "index 7": "no output states a wrong final letter; 1 output states no final letter",
        "index 8": "model_outputs is text that does not parse as a list",
        "index 9": "none of the 2 outputs states a final letter",
    }
    [record] = manifest["inputs"]
    assert (record["rows"], record["kept"], record["rejected"]) == (10, 7, 3)
    assert record["rows"] == record["kept"] + record["rejected"]


def test_outputs_parses_python_repr_strings(tmp_path):
    rows, _, _ = run(pref_outputs, OUTPUTS_SAMPLE, tmp_path)
    assert rows[1]["messages"][1]["content"].endswith("\n\nA. Left anterior descending artery\n"
                                                      "B. Right coronary artery\nC. Left circumflex artery\n"
                                                      "D. Left main coronary artery")
    assert rows[1]["chosen"]["content"].endswith("supplied by the right coronary artery.\n\nAnswer: B")
    assert rows[1]["rejected"]["content"].endswith("The answer is (C).")


def test_outputs_skip_unstated_outputs_and_take_the_first_of_each_side(tmp_path):
    rows, _, _ = run(pref_outputs, OUTPUTS_SAMPLE, tmp_path)
    # Outputs: no letter, A (wrong), B (right), B (right): chosen is the third, rejected the second.
    assert rows[2]["chosen"]["content"].endswith("normal iron studies.\n\n**B.**")
    assert rows[2]["rejected"]["content"] == "Anaemia of chronic disease also gives a microcytic picture.\n\nAnswer: A"
    # A wrong output that names the right letter early on is still wrong.
    assert rows[3]["rejected"]["content"].startswith("Option D, post-streptococcal")
    assert rows[3]["chosen"]["content"].endswith("So, the answer is D.")
    # Five options: E is a letter there.
    assert rows[4]["chosen"]["content"].endswith("The correct option is E.")


def medqa_shaped_record() -> dict:
    """A row shaped like UltraMedical's medqa_outputs.json: the gold reply after the question, a stray quote
    after the options, outputs with leading spaces, one output without a final letter."""
    question = ("A 50-year-old woman has diplopia, lid retraction, proptosis and a diffuse goitre. Which of the "
                "following is the most likely cause of her eye findings?\n\nA. Cavernous sinus thrombosis\n"
                "B. Carotid-cavernous fistula\nC. Glycosaminoglycan accumulation in the orbit\n"
                "D. Sympathetic overactivity of the levator muscle\n\"")
    return {
        "id": "medqa,99",
        "type": "mc",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "The answer is C."}],
        "answer": "C",
        "model_outputs": [
            {"BioModel-7B_base": " Graves' ophthalmopathy deposits glycosaminoglycans. [So, the answer is C.]"},
            {"Big-70b_base": " The eye findings are due to glycosaminoglycan deposition in the orbit."},
            {"Chat-72B_base": "A. Not typical.\nB. No bruit.\nC. A consequence only.\n\nSo, the answer is D."},
            {"gpt-4": "So, the answer is C."},
        ],
    }


def test_outputs_convert_a_medqa_outputs_shaped_row():
    record = medqa_shaped_record()
    row = pref_outputs.convert(record, None)
    assert row["messages"] == [{"role": "user", "content": record["conversations"][0]["value"].strip()}]
    assert row["chosen"]["content"] == "Graves' ophthalmopathy deposits glycosaminoglycans. [So, the answer is C.]"
    assert row["rejected"]["content"].endswith("So, the answer is D.")
    # The same row with both lists stored as Python reprs gives the same pair.
    as_text = {**record, "conversations": repr(record["conversations"]),
               "model_outputs": repr(record["model_outputs"])}
    assert pref_outputs.convert(as_text, None) == row


def test_outputs_prompt_is_the_conversation_up_to_its_last_human_turn():
    record = medqa_shaped_record()
    record["conversations"] = [{"from": "human", "value": "I have an eye question."},
                               {"from": "gpt", "value": "Go ahead."}, *record["conversations"]]
    row = pref_outputs.convert(record, None)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"answer": "E"}, "answer 'E' is not one of the option letters ABCD"),
    ({"answer": None}, "answer None is not one of the option letters ABCD"),
    ({"conversations": [{"from": "human", "value": "Which drug treats gout flares?"}]},
     "question lists no options as 'A. ...' lines"),
    ({"conversations": [{"from": "doctor", "value": "Hi"}]}, "unknown speaker 'doctor' in conversations turn 1"),
    ({"conversations": [{"from": "gpt", "value": "The answer is C."}]}, "conversations has no human turn"),
    ({"conversations": "[{'from': 'human', 'value': __import__('os')}]"},
     "conversations is text that does not parse as a list"),
    ({"model_outputs": []}, "model_outputs is empty"),
    ({"model_outputs": ["So, the answer is C."]}, "model output 1 is not a {model_name: text} object"),
    ({"model_outputs": [{"m": None}]}, "output of 'm' is NoneType, not text"),
    ({"model_outputs": [{"m": "The answer is D."}, {"n": "Answer: B"}]},
     "no output states the gold letter C"),
    ({"model_outputs": [{"m": "The answer is C."}, {"n": "Hard to say."}, {"o": "Unclear."}]},
     "no output states a wrong final letter; 2 outputs state no final letter"),
    ({"model_outputs": [{"m": "Hard to say."}]}, "the only output states no final letter"),
])
def test_outputs_rejects_with_a_reason(changes, expected):
    assert reason(pref_outputs, {**medqa_shaped_record(), **changes}) == expected


def test_outputs_missing_fields_are_named():
    for field in ("conversations", "answer", "model_outputs"):
        record = medqa_shaped_record()
        del record[field]
        assert reason(pref_outputs, record) == f"missing field {field!r}"


def test_outputs_cli_writes_rows_and_reports_rejects(tmp_path):
    out = tmp_path / "cli.jsonl"
    result = subprocess.run([sys.executable, "-m", "data_prep", "convert", "pref-outputs", str(OUTPUTS_SAMPLE),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pref-outputs: 7 rows" in result.stdout
    manifest = json.loads((tmp_path / "cli.manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"][0]["rows"] == manifest["inputs"][0]["kept"] + manifest["inputs"][0]["rejected"] == 10
    assert len(read_jsonl(out)) == 7
