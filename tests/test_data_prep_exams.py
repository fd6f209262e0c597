"""Exam-style SFT converters (MedMCQA, MedQA-USMLE, PubMedQA) and the shared multiple-choice rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from data_prep.convert import convert, sidecar
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT, Reject
from data_prep.sources import _mcq, load_sources, medmcqa, medqa, pubmedqa

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_prep" / "samples"
SYSTEM = {"role": "system", "content": OPENBIOLLM_SYSTEM_PROMPT}


def run(module: ModuleType, inputs: list[Path], tmp_path: Path) -> tuple[list[dict], dict[str, str], dict]:
    """Kept rows, {where: reason} of the rejects, and the manifest, after converting ``inputs``."""
    out = tmp_path / "out.jsonl"
    manifest = convert(module, [str(p) for p in inputs], out, OPENBIOLLM_SYSTEM_PROMPT)
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    rejects = [json.loads(line) for line in sidecar(out, "rejects.jsonl").read_text().splitlines()]
    return kept, {r["where"]: r["reason"] for r in rejects}, manifest


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def turns(row: dict) -> tuple[str, str]:
    """(user content, assistant content) of a single-turn SFT row."""
    system, user, assistant = row["messages"]
    assert system == SYSTEM
    assert (user["role"], assistant["role"]) == ("user", "assistant")
    return user["content"], assistant["content"]


def reason(function, *args, **kwargs) -> str:
    """The reason ``function(*args, **kwargs)`` rejects its row with."""
    with pytest.raises(Reject) as err:
        function(*args, **kwargs)
    return str(err.value)


def assert_counts_add_up(manifest: dict) -> None:
    for record in manifest["inputs"]:
        assert record["rows"] == record["kept"] + record["rejected"]
    assert manifest["output"]["rows"] == sum(r["kept"] for r in manifest["inputs"])


# --- the shared multiple-choice rendering ---------------------------------------------------------


def test_mcq_question_is_followed_by_a_blank_line_and_lettered_options():
    assert _mcq.render_question(" Which nerve? ", ["Ulnar", " Median "]) == "Which nerve?\n\nA. Ulnar\nB. Median"


def test_mcq_answer_closes_the_option_with_one_period_and_appends_the_explanation():
    assert _mcq.render_answer("B", "Median nerve") == "The answer is B. Median nerve."
    assert _mcq.render_answer("A", "Measles.") == "The answer is A. Measles."
    assert _mcq.render_answer("C", "Why?", " Because. ") == "The answer is C. Why?\n\nBecause."
    assert _mcq.render_answer("D", "Atropine", None) == _mcq.render_answer("D", "Atropine", "  ")


def test_mcq_rejects_unusable_text_naming_the_part():
    assert reason(_mcq.render_question, "Q?", ["a", "b", " ", "d"]) == "option C is empty"
    assert reason(_mcq.render_question, "Q?", ["a", None]) == "option B is null"
    assert reason(_mcq.render_question, 7, ["a", "b"]) == "question is int, not text"
    assert reason(_mcq.render_question, "Q?", ["a"]) == "1 options; expected 2 to 26"
    assert reason(_mcq.render_answer, "A", "a", ["why"]) == "explanation is list, not text"
    assert reason(_mcq.render_answer, "AB", "a") == "'AB' is not an option letter"


def test_the_helper_module_is_not_a_source():
    sources = load_sources()
    assert {"medmcqa", "medqa", "pubmedqa"} <= set(sources)
    assert _mcq not in sources.values()


# --- MedMCQA ---------------------------------------------------------------------------------------


def test_medmcqa_sample_converts_one_based_rows_and_rejects_the_broken_ones(tmp_path):
    kept, rejects, manifest = run(medmcqa, [SAMPLES / "medmcqa.synthetic.jsonl"], tmp_path)
    assert kept[0] == {"messages": [
        SYSTEM,
        {"role": "user", "content": "Carpal tunnel syndrome is due to compression of which nerve?\n\n"
                                    "A. Ulnar nerve\nB. Median nerve\nC. Radial nerve\nD. Musculocutaneous nerve"},
        {"role": "assistant", "content": "The answer is B. Median nerve.\n\nAns. b (Median nerve) The median nerve "
                                         "passes deep to the flexor retinaculum in the carpal tunnel."},
    ]}
    assert [turns(row)[1].split("\n")[0] for row in kept] == [
        "The answer is B. Median nerve.",
        "The answer is C. Vitamin C.",
        "The answer is A. Adrenaline.",
        "The answer is D. Red cell casts.",
        "The answer is B. Ampulla.",
        "The answer is C. N-acetylcysteine.",
        "The answer is A. Measles.",
    ]
    assert rejects == {
        "line 8": "cop 5 is not an option index (1-4)",
        "line 9": "option D is empty",
        "line 10": "missing field 'cop'",
    }
    assert manifest["inputs"][0]["facts"] == {"cop_base": 1}
    assert (manifest["inputs"][0]["rows"], manifest["inputs"][0]["kept"]) == (10, 7)
    assert_counts_add_up(manifest)


def test_medmcqa_null_or_empty_exp_gives_the_answer_alone(tmp_path):
    kept, _, _ = run(medmcqa, [SAMPLES / "medmcqa.synthetic.jsonl"], tmp_path)
    assert turns(kept[1])[1] == "The answer is C. Vitamin C."  # exp null
    assert turns(kept[2])[1] == "The answer is A. Adrenaline."  # exp ""


def hub_row(cop, **changes) -> dict:
    """A MedMCQA row shaped like the hub copy (0-based cop, fields in its order)."""
    row = {"id": "0a1b2c3d-0000-4000-8000-000000000001", "question": "Deficiency of which vitamin causes rickets?",
           "opa": "Vitamin A", "opb": "Vitamin B12", "opc": "Vitamin C", "opd": "Vitamin D", "cop": cop,
           "choice_type": "single", "exp": None, "subject_name": "Pediatrics", "topic_name": None}
    return {**row, **changes}


def test_medmcqa_hub_copy_is_read_as_zero_based(tmp_path):
    path = write_jsonl(tmp_path / "hub.jsonl", [hub_row(3), hub_row(0, exp="Vitamin A deficiency causes night "
                                                                                 "blindness, not rickets.")])
    kept, rejects, manifest = run(medmcqa, [path], tmp_path)
    assert manifest["inputs"][0]["facts"] == {"cop_base": 0}
    assert rejects == {}
    assert turns(kept[0]) == ("Deficiency of which vitamin causes rickets?\n\n"
                              "A. Vitamin A\nB. Vitamin B12\nC. Vitamin C\nD. Vitamin D",
                              "The answer is D. Vitamin D.")
    assert turns(kept[1])[1] == ("The answer is A. Vitamin A.\n\n"
                                 "Vitamin A deficiency causes night blindness, not rickets.")


def test_medmcqa_cop_base_comes_from_a_zero_or_a_four():
    assert medmcqa.inspect([hub_row(1), hub_row(0), hub_row(2)]) == {"cop_base": 0}
    assert medmcqa.inspect([hub_row(1), hub_row(4), hub_row(3)]) == {"cop_base": 1}
    # values that are rejected row by row do not count
    assert medmcqa.inspect([hub_row(4), hub_row(-1), hub_row("0"), hub_row(True), hub_row(7)]) == {"cop_base": 1}


def test_medmcqa_file_with_both_zero_and_four_stops_naming_the_conflict():
    with pytest.raises(SystemExit, match="both 0 and 4"):
        medmcqa.inspect([hub_row(0), hub_row(4)])


def test_medmcqa_file_with_only_one_to_three_stops_as_ambiguous(tmp_path):
    with pytest.raises(SystemExit, match=r"cop values are only \[1, 2, 3\].*given explicitly"):
        medmcqa.inspect([hub_row(1), hub_row(2), hub_row(3)])
    path = write_jsonl(tmp_path / "small.jsonl", [hub_row(2)])
    with pytest.raises(SystemExit, match="does not show whether cop counts from 0"):
        run(medmcqa, [path], tmp_path)
    assert not (tmp_path / "out.jsonl").exists()


def test_medmcqa_file_without_answers_stops():
    with pytest.raises(SystemExit, match="no row has an integer cop"):
        medmcqa.inspect([hub_row(-1), hub_row(-1)])


@pytest.mark.parametrize(("cop", "expected"), [
    ("2", "cop '2' is not an integer"),
    (True, "cop True is not an integer"),
    (None, "cop None is not an integer"),
    (4, "cop 4 is not an option index (0-3)"),
    (-1, "cop -1 is not an option index (0-3)"),
])
def test_medmcqa_cop_that_is_not_an_int_in_range_is_rejected(cop, expected):
    assert reason(medmcqa.convert, hub_row(cop), None, cop_base=0) == expected


def test_medmcqa_non_text_exp_is_rejected():
    assert reason(medmcqa.convert, hub_row(1, exp=5), None, cop_base=0) == "explanation is int, not text"


# --- MedQA-USMLE -------------------------------------------------------------------------------------


def test_medqa_sample_converts_and_rejects_mismatched_answers(tmp_path):
    kept, rejects, manifest = run(medqa, [SAMPLES / "medqa.synthetic.jsonl"], tmp_path)
    assert kept[0] == {"messages": [
        SYSTEM,
        {"role": "user", "content": "A 24-year-old woman at 22 weeks' gestation comes to the physician because of "
                                    "burning on urination and urinary frequency for 2 days. She has no fever or flank "
                                    "pain. Urinalysis shows leukocyte esterase and nitrites. Which of the following is "
                                    "the most appropriate pharmacotherapy?\n\n"
                                    "A. Doxycycline\nB. Ciprofloxacin\nC. Tetracycline\nD. Nitrofurantoin"},
        {"role": "assistant", "content": "The answer is D. Nitrofurantoin."},
    ]}
    assert [turns(row)[1] for row in kept[1:]] == [
        "The answer is C. Right coronary artery.",
        "The answer is B. Decreased serum C3 concentration.",
        "The answer is A. Antibodies that stimulate the TSH receptor.",
        "The answer is D. Substantia nigra pars compacta.",
        "The answer is B. Intramuscular epinephrine.",
        "The answer is C. Syndrome of inappropriate antidiuretic hormone secretion.",
    ]
    assert rejects == {
        "line 8": "answer_idx 'E' is not one of the options A, B, C, D",
        "line 9": "answer does not match the text of option C",
        "line 10": "question is empty",
    }
    assert manifest["inputs"][0]["facts"] == {}
    assert_counts_add_up(manifest)


def test_medqa_hf_sample_converts_with_label_as_zero_based_ending(tmp_path):
    kept, rejects, manifest = run(medqa, [SAMPLES / "medqa_hf.synthetic.jsonl"], tmp_path)
    assert turns(kept[0]) == (
        "A 34-year-old woman has fever, right upper quadrant pain, and jaundice. Ultrasonography shows a dilated "
        "common bile duct with a stone. Which of the following is the most likely diagnosis?\n\n"
        "A. Acute hepatitis A\nB. Ascending cholangitis\nC. Acute pancreatitis\nD. Hepatocellular carcinoma",
        "The answer is B. Ascending cholangitis.",
    )
    assert [turns(row)[1] for row in kept[1:]] == [
        "The answer is A. Parainfluenza virus.",
        "The answer is C. Primary spontaneous pneumothorax.",
        "The answer is D. Nephrogenic diabetes insipidus.",
        "The answer is B. Carcinoma of the head of the pancreas.",
        "The answer is B. Anti-double-stranded DNA antibodies.",
    ]
    assert rejects == {"line 7": "label 4 is not an option index (0-3)", "line 8": "option B is empty"}
    assert_counts_add_up(manifest)


def test_medqa_both_layouts_in_one_run_keep_separate_counts(tmp_path):
    inputs = [SAMPLES / "medqa.synthetic.jsonl", SAMPLES / "medqa_hf.synthetic.jsonl"]
    kept, _, manifest = run(medqa, inputs, tmp_path)
    assert [(r["rows"], r["kept"], r["rejected"]) for r in manifest["inputs"]] == [(10, 7, 3), (8, 6, 2)]
    assert len(kept) == 13
    assert_counts_add_up(manifest)


OPTIONS_ROW = {"question": "Which drug reverses opioid overdose?", "answer": "Naloxone",
               "options": {"A": "Flumazenil", "B": "Naloxone", "C": "Atropine", "D": "Glucagon"},
               "meta_info": "step1", "answer_idx": "B", "metamap_phrases": ["drug", "opioid overdose"]}
HF_ROW = {"id": "train-00042", "sent1": "Which drug reverses opioid overdose?", "sent2": "",
          "ending0": "Flumazenil", "ending1": "Naloxone", "ending2": "Atropine", "ending3": "Glucagon", "label": 1}


def test_medqa_decides_the_layout_per_row_and_both_render_alike():
    assert medqa.convert(OPTIONS_ROW, None) == medqa.convert(HF_ROW, None) == {"messages": [
        {"role": "user", "content": "Which drug reverses opioid overdose?\n\n"
                                    "A. Flumazenil\nB. Naloxone\nC. Atropine\nD. Glucagon"},
        {"role": "assistant", "content": "The answer is B. Naloxone."},
    ]}


def test_medqa_options_are_lettered_in_key_order_and_five_options_work():
    shuffled = {**OPTIONS_ROW, "options": {"D": "Glucagon", "B": "Naloxone", "A": "Flumazenil", "C": "Atropine"}}
    assert medqa.convert(shuffled, None) == medqa.convert(OPTIONS_ROW, None)
    five = {**OPTIONS_ROW, "options": {**OPTIONS_ROW["options"], "E": "Protamine"}}
    assert medqa.convert(five, None)["messages"][0]["content"].endswith("\nD. Glucagon\nE. Protamine")


@pytest.mark.parametrize(("changes", "expected"), [
    ({"answer": "Flumazenil"}, "answer does not match the text of option B"),
    ({"answer": None}, "answer does not match the text of option B"),
    ({"answer_idx": "b"}, "answer_idx 'b' is not one of the options A, B, C, D"),
    ({"answer_idx": ["B"]}, "answer_idx ['B'] is not one of the options A, B, C, D"),
    ({"options": ["Flumazenil", "Naloxone"]}, "options is list, not an object"),
    ({"options": {"A": "x", "B": "Naloxone", "D": "y"}},
     "option keys A, B, D are not the letters A, B, C, ... in sequence"),
    ({"options": {"A": "x", "B": 3}}, "answer does not match the text of option B"),
    ({"sent1": "Which drug?"}, "row has both 'question' and 'sent1'; cannot tell which layout it is"),
])
def test_medqa_options_layout_problems_are_rejected_with_the_reason(changes, expected):
    assert reason(medqa.convert, {**OPTIONS_ROW, **changes}, None) == expected


def test_medqa_answer_is_compared_without_surrounding_whitespace():
    assert medqa.convert({**OPTIONS_ROW, "answer": "Naloxone "}, None) == medqa.convert(OPTIONS_ROW, None)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"label": 4}, "label 4 is not an option index (0-3)"),
    ({"label": "1"}, "label '1' is not an integer"),
    ({"label": False}, "label False is not an integer"),
    ({"sent2": "The drug is"}, "sent2 is not empty; the -hf rows carry the whole question in sent1"),
    ({"ending2": None}, "option C is null"),
])
def test_medqa_hf_layout_problems_are_rejected_with_the_reason(changes, expected):
    assert reason(medqa.convert, {**HF_ROW, **changes}, None) == expected


def test_medqa_row_of_neither_layout_is_rejected():
    assert reason(medqa.convert, {"instruction": "x", "output": "y"}, None) == (
        "missing field 'question' (or 'sent1' in the -hf layout)")
    without_index = {k: v for k, v in OPTIONS_ROW.items() if k != "answer_idx"}
    assert reason(medqa.convert, without_index, None) == "missing field 'answer_idx'"


# --- PubMedQA ----------------------------------------------------------------------------------------


def test_pubmedqa_sample_renders_labelled_contexts_question_and_decision(tmp_path):
    kept, rejects, manifest = run(pubmedqa, [SAMPLES / "pubmedqa.synthetic.json"], tmp_path)
    assert kept[0] == {"messages": [
        SYSTEM,
        {"role": "user", "content":
            "BACKGROUND: Prolonged bed rest after hip fracture surgery is associated with complications in older "
            "adults.\n\n"
            "METHODS: We reviewed 412 patients aged 65 years or older; 205 were mobilised within 24 hours of surgery "
            "and 207 later.\n\n"
            "RESULTS: Median length of stay was 9 days with early mobilisation and 12 days without (p<0.01); "
            "pneumonia was less frequent.\n\n"
            "Question: Does early mobilisation after hip fracture surgery shorten hospital stay?"},
        {"role": "assistant", "content":
            "Mobilising patients within 24 hours of hip fracture surgery was associated with a shorter hospital stay "
            "and fewer pneumonias.\n\nAnswer: yes"},
    ]}
    assert [turns(row)[1].rsplit("\n", 1)[1] for row in kept] == [
        "Answer: yes", "Answer: no", "Answer: maybe", "Answer: yes", "Answer: yes", "Answer: yes"]
    assert rejects == {
        "key 90000007": "final_decision 'probably' is not yes, no or maybe",
        "key 90000008": "LONG_ANSWER is empty",
        "key 90000009": "CONTEXTS is empty",
    }
    assert (manifest["inputs"][0]["rows"], manifest["inputs"][0]["kept"]) == (9, 6)
    assert_counts_add_up(manifest)


def test_pubmedqa_contexts_without_one_label_each_are_written_bare(tmp_path):
    kept, _, _ = run(pubmedqa, [SAMPLES / "pubmedqa.synthetic.json"], tmp_path)
    user = turns(kept[4])[0]  # PMID 90000005: three contexts, one label
    assert user == ("D-dimer testing is used to rule out venous thromboembolism.\n\n"
                    "Outpatients with low pretest probability and a normal D-dimer were followed for three months "
                    "without anticoagulation.\n\n"
                    "Deep vein thrombosis occurred in 2 of 634 patients (0.3%).\n\n"
                    "Question: Does a normal D-dimer exclude deep vein thrombosis in outpatients with low clinical "
                    "probability?")


# Shaped like a PQA-L row of ori_pqal.json as the reader yields it (with "__key__"), text made up.
PQAL_ROW = {"__key__": "12345678", "QUESTION": "Does aspirin lower the risk of a second stroke?",
            "CONTEXTS": ["Aspirin inhibits platelet aggregation.", "We followed 900 patients for two years."],
            "LABELS": ["BACKGROUND", "METHODS"], "MESHES": ["Aspirin", "Stroke"], "YEAR": "2004",
            "reasoning_required_pred": "yes", "reasoning_free_pred": "no", "final_decision": "yes",
            "LONG_ANSWER": "Aspirin reduced recurrent stroke."}
PQAL_EXPECTED = {"messages": [
    {"role": "user", "content": "BACKGROUND: Aspirin inhibits platelet aggregation.\n\n"
                                "METHODS: We followed 900 patients for two years.\n\n"
                                "Question: Does aspirin lower the risk of a second stroke?"},
    {"role": "assistant", "content": "Aspirin reduced recurrent stroke.\n\nAnswer: yes"},
]}


def test_pubmedqa_pqa_l_and_pqa_a_shapes_convert_alike():
    assert pubmedqa.convert(PQAL_ROW, None) == PQAL_EXPECTED
    pqa_a = {k: v for k, v in PQAL_ROW.items() if k not in ("YEAR", "reasoning_required_pred", "reasoning_free_pred")}
    assert pubmedqa.convert(pqa_a, None) == PQAL_EXPECTED


@pytest.mark.parametrize(("changes", "expected"), [
    ({"final_decision": "Yes"}, "final_decision 'Yes' is not yes, no or maybe"),
    ({"final_decision": None}, "final_decision None is not yes, no or maybe"),
    ({"CONTEXTS": "Aspirin inhibits platelets."}, "CONTEXTS is str, not a list"),
    ({"CONTEXTS": ["Aspirin inhibits platelets.", 3]}, "context 2 is int, not text"),
    ({"QUESTION": ""}, "QUESTION is empty"),
    ({"LONG_ANSWER": None}, "LONG_ANSWER is null"),
])
def test_pubmedqa_problems_are_rejected_with_the_reason(changes, expected):
    assert reason(pubmedqa.convert, {**PQAL_ROW, **changes}, None) == expected


def test_pubmedqa_unlabelled_pqa_u_rows_are_rejected():
    unlabelled = {k: v for k, v in PQAL_ROW.items() if k != "final_decision"}
    assert reason(pubmedqa.convert, unlabelled, None) == "missing field 'final_decision'"


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "sample"), [
    ("medmcqa", "medmcqa.synthetic.jsonl"),
    ("medqa", "medqa.synthetic.jsonl"),
    ("medqa", "medqa_hf.synthetic.jsonl"),
    ("pubmedqa", "pubmedqa.synthetic.json"),
])
def test_cli_writes_the_same_rows_as_the_function(tmp_path, source, sample):
    module = load_sources()[source]
    (tmp_path / "fn").mkdir()
    run(module, [SAMPLES / sample], tmp_path / "fn")
    out = tmp_path / "cli" / "out.jsonl"
    result = subprocess.run([sys.executable, "-m", "data_prep", "convert", source, str(SAMPLES / sample),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.startswith(f"{source}: ")
    assert out.read_bytes() == (tmp_path / "fn" / "out.jsonl").read_bytes()
    manifest = json.loads(sidecar(out, "manifest.json").read_text())
    assert_counts_add_up(manifest)
