"""The chat and preference converters: sharegpt, messages, pref-pairs, pref-messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.convert import convert
from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT, Reject
from data_prep.sources import load_sources, messages, pref_messages, pref_pairs, sharegpt

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data_prep/samples"
SYSTEM = {"role": "system", "content": OPENBIOLLM_SYSTEM_PROMPT}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_sample(module, stem: str, tmp_path: Path) -> tuple[list[dict], dict[str, str], dict]:
    """Convert a bundled sample; return the kept rows, the reject reasons by place, and the manifest."""
    out = tmp_path / "out.jsonl"
    manifest = convert(module, [str(SAMPLES / f"{stem}.synthetic.jsonl")], out, OPENBIOLLM_SYSTEM_PROMPT)
    rejects = {r["where"]: r["reason"] for r in read_jsonl(tmp_path / "out.rejects.jsonl")}
    return read_jsonl(out), rejects, manifest


def assert_counts(manifest: dict, rows: int, kept: int, rejected: int) -> None:
    (record,) = manifest["inputs"]
    assert (record["rows"], record["kept"], record["rejected"]) == (rows, kept, rejected)
    assert record["rows"] == record["kept"] + record["rejected"]
    assert manifest["output"]["rows"] == kept and manifest["rejects"]["rows"] == rejected


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_the_four_converters_are_registered_by_name_and_kind():
    kinds = {name: module.KIND for name, module in load_sources().items()}
    assert {k: kinds[k] for k in ("sharegpt", "messages", "pref-pairs", "pref-messages")} == {
        "sharegpt": "sft", "messages": "sft", "pref-pairs": "dpo", "pref-messages": "dpo"}


# --- sharegpt ---------------------------------------------------------------------------------------------


def test_sharegpt_sample_keeps_good_rows_and_rejects_bad_ones_with_reasons(tmp_path):
    rows, rejects, manifest = run_sample(sharegpt, "sharegpt", tmp_path)
    assert_counts(manifest, rows=10, kept=7, rejected=3)
    assert rejects == {
        "line 8": "unknown speaker 'chatgpt' in conversations turn 2",
        "line 9": "conversations is text that does not parse as a list",
        "line 10": "conversation ends with 'user', expected 'assistant'",
    }
    # line 3 stores its conversations as a Python list repr
    assert rows[2] == {"messages": [
        SYSTEM,
        u("What is the first-line drug treatment for type 2 diabetes in most adults?"),
        a("Metformin, together with diet and exercise, unless it is contraindicated, for example by severe "
          "kidney impairment."),
    ]}
    # line 7's repr quotes strings holding an apostrophe with double quotes
    assert rows[6]["messages"][1] == u("What's the main risk of stopping long-term oral corticosteroids abruptly?")
    # line 5 is multi-turn
    assert [m["role"] for m in rows[4]["messages"]] == ["system", "user", "assistant", "user", "assistant"]


def test_sharegpt_keeps_the_rows_own_system_turn_and_adds_none(tmp_path):
    rows, _, _ = run_sample(sharegpt, "sharegpt", tmp_path)
    assert rows[5]["messages"][0] == {"role": "system", "content": "You are a careful clinical pharmacist."}
    assert [m["role"] for m in rows[5]["messages"]] == ["system", "user", "assistant"]


def test_sharegpt_reads_an_ultramedical_shaped_row():
    record = {  # as in UltraMedical: id, type, conversations (from human/gpt), answer, score
        "id": "MedQA,1",
        "type": "Exam",
        "conversations": [
            {"from": "human", "value": "Which nerve is injured in wrist drop?\n\nA. Median\nB. Radial\nC. Ulnar"},
            {"from": "gpt", "value": "Wrist drop comes from weak wrist extensors.\n\nSo, the answer is B."},
        ],
        "answer": "B",
        "score": "This question would be rated a 3. It requires basic anatomy.",
    }
    assert sharegpt.convert(record, None) == {"messages": [
        u("Which nerve is injured in wrist drop?\n\nA. Median\nB. Radial\nC. Ulnar"),
        a("Wrist drop comes from weak wrist extensors.\n\nSo, the answer is B."),
    ]}


def test_sharegpt_parses_conversations_stored_as_json_text():
    turns = [{"from": "human", "value": "Is 😀 text?"}, {"from": "gpt", "value": "Yes."}]
    record = {"conversations": json.dumps(turns)}  # ASCII-escaped surrogate pair for the emoji
    assert sharegpt.convert(record, None)["messages"][0] == u("Is 😀 text?")


def test_sharegpt_text_that_is_code_is_rejected_not_run(tmp_path):
    marker = tmp_path / "ran"
    record = {"conversations": f"__import__('pathlib').Path({str(marker)!r}).touch()"}
    with pytest.raises(Reject) as err:
        sharegpt.convert(record, None)
    assert str(err.value) == "conversations is text that does not parse as a list"
    assert not marker.exists()


@pytest.mark.parametrize(("record", "reason"), [
    ({"id": "x"}, "missing field 'conversations'"),
    ({"conversations": "{'from': 'human', 'value': 'Hi'}"}, "conversations is dict, not a list"),
    ({"conversations": [["human", "Hi"]]}, "conversations turn 1 is list, not an object"),
    ({"conversations": [{"from": "human"}]}, "conversations turn 1 has no 'value'"),
    ({"conversations": [{"from": "user", "value": "Hi"}]}, "unknown speaker 'user' in conversations turn 1"),
    ({"conversations": [{"from": ["gpt"], "value": "Hi"}]}, "unknown speaker ['gpt'] in conversations turn 1"),
    ({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": " "}]}, "empty assistant content"),
    ({"conversations": []}, "no user or assistant turns"),
])
def test_sharegpt_rejects_bad_rows_with_a_reason(record, reason):
    with pytest.raises(Reject) as err:
        sharegpt.convert(record, OPENBIOLLM_SYSTEM_PROMPT)
    assert str(err.value) == reason


# --- messages ---------------------------------------------------------------------------------------------


def test_messages_sample_keeps_good_rows_and_rejects_bad_ones_with_reasons(tmp_path):
    rows, rejects, manifest = run_sample(messages, "messages", tmp_path)
    assert_counts(manifest, rows=9, kept=6, rejected=3)
    assert rejects == {
        "line 7": "unknown role 'tool' in message 2",
        "line 8": "conversation ends with 'user', expected 'assistant'",
        "line 9": "assistant content is list, not text",
    }
    assert rows[0] == {"messages": [
        SYSTEM,
        u("What does a high LDL cholesterol level mean?"),
        a("LDL carries cholesterol to the arteries; a high level raises the risk of atherosclerosis, heart attack "
          "and stroke."),
    ]}
    assert rows[2]["messages"][0] == {"role": "system", "content": "You are a paediatric nurse answering parents."}
    assert rows[4]["messages"][1:] == [u("What is the normal adult respiratory rate?"),
                                       a("12 to 20 breaths per minute at rest.")]


def test_messages_without_a_system_prompt_adds_none():
    record = {"messages": [u("What causes gout?"), a("Urate crystals in a joint.")]}
    assert messages.convert(record, None) == record


@pytest.mark.parametrize(("record", "reason"), [
    ({"conversations": []}, "missing field 'messages'"),
    ({"messages": "user: hi"}, "messages is str, not a list of messages"),
    ({"messages": [u("Hi"), "Hello"]}, "message 2 is str, not an object"),
    ({"messages": [{"role": "user"}]}, "message 1 has no 'content'"),
    ({"messages": [{"role": "human", "content": "Hi"}]}, "unknown role 'human' in message 1"),
    ({"messages": [u("Hi"), u("Hello?"), a("Hello.")]}, "turn 2 is 'user', expected 'assistant'"),
])
def test_messages_rejects_bad_rows_with_a_reason(record, reason):
    with pytest.raises(Reject) as err:
        messages.convert(record, OPENBIOLLM_SYSTEM_PROMPT)
    assert str(err.value) == reason


# --- pref-pairs -------------------------------------------------------------------------------------------


def test_pref_pairs_sample_keeps_good_rows_and_rejects_bad_ones_with_reasons(tmp_path):
    rows, rejects, manifest = run_sample(pref_pairs, "pref_pairs", tmp_path)
    assert_counts(manifest, rows=9, kept=6, rejected=3)
    assert rejects == {
        "line 7": "chosen and rejected are the same text",
        "line 8": "missing field 'rejected'",
        "line 9": "chosen is a list, not text (message lists are the pref-messages source)",
    }
    assert rows[1] == {
        "messages": [SYSTEM, u("Is it safe to drink alcohol while taking metronidazole?")],
        "chosen": a("No. Avoid alcohol during treatment and for 48 hours afterwards, as the combination can cause "
                    "nausea, vomiting, flushing and palpitations."),
        "rejected": a("Yes, metronidazole does not interact with alcohol."),
    }


@pytest.mark.parametrize(("record", "reason"), [
    ({"chosen": "Yes.", "rejected": "No."}, "missing field 'prompt'"),
    ({"prompt": "Is it?", "chosen": "  ", "rejected": "No."}, "empty chosen content"),
    ({"prompt": "Is it?", "chosen": "Yes.", "rejected": None}, "rejected content is NoneType, not text"),
    ({"prompt": 7, "chosen": "Yes.", "rejected": "No."}, "prompt content is int, not text"),
])
def test_pref_pairs_rejects_bad_rows_with_a_reason(record, reason):
    with pytest.raises(Reject) as err:
        pref_pairs.convert(record, OPENBIOLLM_SYSTEM_PROMPT)
    assert str(err.value) == reason


# --- pref-messages ----------------------------------------------------------------------------------------


def test_pref_messages_sample_keeps_good_rows_and_rejects_bad_ones_with_reasons(tmp_path):
    rows, rejects, manifest = run_sample(pref_messages, "pref_messages", tmp_path)
    assert_counts(manifest, rows=9, kept=6, rejected=3)
    assert rejects == {
        "line 7": "chosen and rejected have different prompts",
        "line 8": "rejected ends with a 'user' message, not the assistant's",
        "line 9": "prompt field is not the last user turn of chosen and rejected",
    }
    assert rows[0] == {
        "messages": [SYSTEM, u("What is the antidote for paracetamol overdose?")],
        "chosen": a("Acetylcysteine, given intravenously, ideally within 8 hours of ingestion."),
        "rejected": a("Naloxone."),
    }
    # line 4 brings its own system turn on both sides: it is kept and ours is not added
    assert rows[3]["messages"] == [{"role": "system", "content": "You are a concise emergency physician."},
                                   u("How is a tension pneumothorax treated?")]
    # line 5 is multi-turn: the prompt is everything before the final answers
    assert [m["role"] for m in rows[4]["messages"]] == ["system", "user", "assistant", "user"]
    assert rows[4]["chosen"] == a("Intramuscular adrenaline into the outer thigh.")


def test_pref_messages_reads_ultramedical_preference_and_argilla_shaped_rows():
    question = "What is the antidote for opioid overdose?"
    chosen, rejected = [u(question), a("Naloxone.")], [u(question), a("Flumazenil.")]
    expected = {"messages": [u(question)], "chosen": a("Naloxone."), "rejected": a("Flumazenil.")}
    with_prompt = {"prompt": question, "prompt_id": "abc", "chosen": chosen, "rejected": rejected,
                   "score_chosen": 9.0, "score_rejected": 2.0}
    without_prompt = {"source": "synthetic", "chosen": chosen, "chosen-rating": 5,
                      "rejected": rejected, "rejected-rating": 1}
    assert pref_messages.convert(with_prompt, None) == expected
    assert pref_messages.convert(without_prompt, None) == expected


def test_pref_messages_takes_the_prompt_field_as_the_user_turn_when_the_lists_hold_only_answers():
    record = {"prompt": "What is the antidote for opioid overdose?",
              "chosen": [a("Naloxone.")], "rejected": [a("Flumazenil.")]}
    assert pref_messages.convert(record, OPENBIOLLM_SYSTEM_PROMPT) == {
        "messages": [SYSTEM, u("What is the antidote for opioid overdose?")],
        "chosen": a("Naloxone."), "rejected": a("Flumazenil.")}


@pytest.mark.parametrize(("record", "reason"), [
    ({"chosen": [u("Q?"), a("Yes.")]}, "missing field 'rejected'"),
    ({"chosen": "Yes.", "rejected": "No."},
     "chosen is text, not a list of messages (text pairs are the pref-pairs source)"),
    ({"chosen": [], "rejected": [u("Q?"), a("No.")]}, "chosen has no messages"),
    ({"chosen": [u("Q?"), {"role": "bot", "content": "Yes."}], "rejected": [u("Q?"), a("No.")]},
     "unknown role 'bot' in chosen message 2"),
    ({"chosen": [a("Yes.")], "rejected": [a("No.")]}, "no user turn before the assistant answers"),
    ({"chosen": [u("Q?"), a("Yes.")], "rejected": [u("Q?"), a("Yes.")]}, "chosen and rejected are the same text"),
    ({"prompt": "", "chosen": [u("Q?"), a("Yes.")], "rejected": [u("Q?"), a("No.")]}, "empty prompt content"),
])
def test_pref_messages_rejects_bad_rows_with_a_reason(record, reason):
    with pytest.raises(Reject) as err:
        pref_messages.convert(record, OPENBIOLLM_SYSTEM_PROMPT)
    assert str(err.value) == reason


# --- the command line -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "stem", "kept", "rejected"), [
    ("sharegpt", "sharegpt", 7, 3),
    ("messages", "messages", 6, 3),
    ("pref-pairs", "pref_pairs", 6, 3),
    ("pref-messages", "pref_messages", 6, 3),
])
def test_cli_converts_each_sample_like_the_api(tmp_path, source, stem, kept, rejected):
    sample = SAMPLES / f"{stem}.synthetic.jsonl"
    out = tmp_path / "cli" / "out.jsonl"
    result = subprocess.run([sys.executable, "-m", "data_prep", "convert", source, str(sample), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"{source}: {kept} rows -> ")
    manifest = json.loads((tmp_path / "cli" / "out.manifest.json").read_text(encoding="utf-8"))
    assert_counts(manifest, rows=kept + rejected, kept=kept, rejected=rejected)
    module = load_sources()[source]
    api_out = tmp_path / "api" / "out.jsonl"
    convert(module, [str(sample)], api_out, OPENBIOLLM_SYSTEM_PROMPT)
    assert out.read_bytes() == api_out.read_bytes()
