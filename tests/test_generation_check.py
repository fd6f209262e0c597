"""``python -m eval generate-check``: the gap benchmarks miss, a model that never ends its turn, in figures.

The slow test trains the tiny Llama-3 for real through ``python -m launch sft`` twice on the same two answers,
the end of turn labelled (``train_on_eos: turn``, as the recipes) and masked (``none``, as v1's defect left it:
test_eot_labels.py): the check must tell them apart. The others use models rigged as in
test_release_generate.py (the greedy next token is always one token): "trained" always says ``<|eot_id|>``,
"untrained" always an ordinary word (it talks to the limit), "leaky" always ``<|start_header_id|>``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SFT_RECIPE, launch, only_run, tiny_overrides
from test_release_generate import WORD_ID, rigged

from eval import generation_check
from eval.generation_check import Answer, all_figures, generation_figures, leaks, nearest_rank, repeats

VALIDATION = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is anemia?"},
                            {"role": "assistant", "content": "Too few red cells."}]},
              {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                            {"role": "user", "content": "What is jaundice?"},
                            {"role": "assistant", "content": "Yellow skin."}]},
              {"messages": [{"role": "user", "content": "And gout?"}]}]  # a DPO row: the prompt only


def reply(tokens: int, stop: str = "end_of_turn", use_case: str = "q", repeat: bool = False,
          leaked: tuple[str, ...] = ()) -> Answer:
    return Answer("id", use_case, "text", tokens, stop, None, repeat, list(leaked))


def test_figures_of_hand_made_replies():
    answers = [reply(3), reply(5, "eos"), reply(10, "max_new_tokens", repeat=True),
               reply(7, leaked=("<|im_start|>",)), reply(100, "max_new_tokens", use_case="x")]
    got = generation_figures(answers)
    assert got == {"answers": 5, "stop_rate": 3 / 5, "median_tokens": 7, "p95_tokens": 100,
                   "repetition_rate": 1 / 5, "leak_rate": 1 / 5}
    split = all_figures(answers)
    assert split["overall"] == got and list(split["use_cases"]) == ["q", "x"]
    assert split["use_cases"]["x"]["stop_rate"] == 0 and split["use_cases"]["q"]["stop_rate"] == 3 / 4
    assert generation_figures([reply(1), reply(2)])["median_tokens"] == 1.5


def test_p95_is_the_nearest_rank():
    assert nearest_rank(list(range(1, 101)), 0.95) == 95
    assert nearest_rank([4, 1, 9], 0.95) == 9 and nearest_rank([7], 0.95) == 7


def test_repetition_is_a_4_gram_three_times():
    assert repeats([1, 2, 3, 4] * 3)
    assert not repeats([1, 2, 3, 4] * 2 + [1, 2, 3])  # twice and a bit
    assert repeats([9] * 6) and not repeats([9] * 5)  # 6 tokens hold the 4-gram 9 9 9 9 three times
    assert not repeats(list(range(50))) and not repeats([])


def test_leaks_are_template_tokens_in_the_raw_text():
    assert leaks("Anemia is ...<|eot_id|><|start_header_id|>user<|end_header_id|>") == [
        "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    assert leaks("<|im_start|>assistant") == ["<|im_start|>"]
    assert leaks("Anemia is a low red cell count.") == []


def make_run(root: Path, model: Path, name: str) -> Path:
    """runs/<name>/ with ``model`` as its merged/, a manifest naming data/build/tiny/sft.jsonl, a results.json."""
    data = root / "data/build/tiny"
    data.mkdir(parents=True, exist_ok=True)
    (data / "sft.validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in VALIDATION))
    run = root / "runs" / name
    (run / "eval").mkdir(parents=True)
    shutil.copytree(model, run / "merged")
    (run / "manifest.json").write_text(json.dumps({"run_id": name, "stage": "sft", "status": "succeeded",
                                                    "datasets": [{"path": "data/build/tiny/sft.jsonl"}]}))
    (run / "eval/results.json").write_text(json.dumps({"summary": {"run_id": name, "tasks": {}}, "kept": 1}))
    return run


@pytest.fixture(scope="module")
def runs(tiny_llama3, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("project")
    models = tmp_path_factory.mktemp("rigged-models")
    return {name: make_run(root, rigged(tiny_llama3, models / name, emits, eos="<|end_of_text|>"), name)
            for name, emits in (("trained", "<|eot_id|>"), ("untrained", WORD_ID),
                                ("leaky", "<|start_header_id|>"))}


def test_the_check_shows_a_model_that_never_ends_its_turn(runs, capsys):
    trained = generation_check.main(["--model", str(runs["trained"]), "--max-new-tokens", "12"])
    untrained = generation_check.main(["--model", str(runs["untrained"]), "--max-new-tokens", "12"])
    fixture = sum(1 for line in generation_check.PROMPTS.read_text().splitlines() if line.strip())
    for result in (trained, untrained):
        assert result["overall"]["answers"] == len(VALIDATION) + fixture
        assert {"validation", "medical_question", "de_identification"} <= set(result["use_cases"])
    assert trained["overall"] | {"answers": 0} == {"answers": 0, "stop_rate": 1.0, "median_tokens": 1,
                                                    "p95_tokens": 1, "repetition_rate": 0.0, "leak_rate": 0.0}
    assert untrained["overall"] | {"answers": 0} == {"answers": 0, "stop_rate": 0.0, "median_tokens": 12,
                                                      "p95_tokens": 12, "repetition_rate": 1.0, "leak_rate": 0.0}
    assert {a["stop"] for a in untrained["answers"]} == {"max_new_tokens"}
    prompts = [a["id"] for a in trained["answers"] if a["use_case"] == "validation"]
    assert prompts == ["sft.validation.jsonl:1", "sft.validation.jsonl:2", "sft.validation.jsonl:3"]
    out = capsys.readouterr().out
    assert "stop 100%" in out and "stop 0%" in out and "next: python -m eval report" in out


def test_validation_prompts_end_before_the_last_answer(runs):
    prompts = generation_check.validation_prompts(runs["trained"])
    assert [p.messages[-1]["content"] for p in prompts] == ["What is anemia?", "What is jaundice?", "And gout?"]
    assert prompts[1].messages[1] == {"role": "assistant", "content": "Hello."}  # earlier turns kept
    assert len(generation_check.validation_prompts(runs["trained"], limit=2)) == 2


def test_a_leaked_template_token_is_counted(runs):
    result = generation_check.main(["--model", str(runs["leaky"]), "--max-new-tokens", "3"])
    assert result["overall"]["leak_rate"] == 1.0 and result["overall"]["stop_rate"] == 0.0
    assert all(a["leaks"] == ["<|start_header_id|>"] and "<|start_header_id|>" not in a["text"]
               for a in result["answers"])  # the text skips special tokens: only the raw decode shows them


def test_cli_writes_the_answers_and_merges_the_figures_into_results(runs, tmp_path):
    run = runs["trained"]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "q1", "use_case": "medical_question", "prompt": "What is sepsis?"}) + "\n")
    done = subprocess.run([sys.executable, "-m", "eval", "generate-check", "--model", str(run), "--max-new-tokens",
                           "4", "--prompts", str(prompts)], cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = json.loads((run / "eval/generation_check.json").read_text())
    assert [a["id"] for a in written["answers"]][-1] == "q1" and written["overall"]["answers"] == 4
    assert set(written["answers"][0]) == {"id", "use_case", "text", "tokens", "stop", "stop_token", "repeats", "leaks"}
    results = json.loads((run / "eval/results.json").read_text())
    assert results["kept"] == 1 and results["generation_check"]["overall"] == written["overall"]
    assert (run / "logs/generation_check.log").is_file()
    assert len(done.stdout.splitlines()) <= 3 and len(done.stderr.splitlines()) <= 3, done.stdout + done.stderr


def test_report_shows_the_figures_beside_the_benchmarks(runs, tmp_path):
    run = runs["untrained"]
    results = json.loads((run / "eval/results.json").read_text())
    results["generation_check"] = all_figures([reply(12, "max_new_tokens", use_case="validation", repeat=True)])
    results["summary"]["tasks"] = {"pubmedqa": {"acc": 0.5, "n": 4, "stderr": 0.25}}
    (run / "eval/results.json").write_text(json.dumps(results))
    brief = subprocess.run([sys.executable, "-m", "eval", "report", "--brief", str(run), "--out",
                            str(tmp_path / "report.md")], cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert brief.returncode == 0, brief.stderr
    assert "generation check: stop 0%, tokens median 12 p95 12, repetition 100%, leaks 0% (n=1)" in brief.stdout
    report = (tmp_path / "report.md").read_text()
    assert "## Generation check" in report and "| **overall** | 1 | 0% | 12 | 12 | 100% | 0% |" in report


def test_bad_prompts_file_is_one_line(runs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "no use case"}\n')
    done = subprocess.run([sys.executable, "-m", "eval", "generate-check", "--model", str(runs["trained"]),
                           "--prompts", str(bad)], cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().endswith('line 1: expected {"id", "use_case", "prompt"}')


# The least lead, in logits, that each token of an answer learned by heart must have over the runner-up for its
# text to be asserted exactly. Another CPU rounds differently (another summation order, other vector widths), and
# training carries that on. Measured 2026-12-07 (2-core AMD EPYC, AVX2): training this run with 1 thread rather
# than 2, another summation order, moved any logit at the answers' positions by at most 0.08 after 120 steps
# (0.18 after 60), while the least lead was 0.62 (the random, untrained output layer keeps leads small). So a
# lead can move by at most 2 x 0.08; requiring 0.25 leaves room for a CPU that rounds worse than that.
LEARNED_LEAD = 0.25
LEARNING_STEPS = 120


def least_leads(merged: Path, rows: list[dict]) -> list[float]:
    """For each row, the smallest lead of its answer's tokens (then <|eot_id|>) over the runner-up, teacher-forced."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inference.reply import prompt_ids

    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    leads = []
    for row in rows:
        prompt = prompt_ids(model, tokenizer, row["messages"][:-1])
        answer = tokenizer(row["messages"][-1]["content"], add_special_tokens=False)["input_ids"]
        answer += [tokenizer.convert_tokens_to_ids("<|eot_id|>")]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
        chosen = logits.gather(1, torch.tensor(answer)[:, None])[:, 0]
        logits[torch.arange(len(answer)), answer] = float("-inf")
        leads.append(float((chosen - logits.max(dim=1).values).min()))
    return leads


@pytest.mark.slow
def test_real_training_with_the_end_of_turn_masked_never_stops(tiny_llama3, tmp_path):
    """Two answers learned by heart (120 steps at a high rate): only the run that labels <|eot_id|> stops.

    Their texts are asserted exactly only because each token of them leads the runner-up by more than
    ``LEARNED_LEAD`` logits, which is checked first: a lead that large no CPU's rounding can overturn."""
    rows = VALIDATION[:2]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows * 8))
    (tmp_path / "sft.validation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    found = {}
    for eos in ("turn", "none"):
        runs_dir = tmp_path / f"runs-{eos}"
        hard = [arg for pair in (f"datasets.0.train_on_eos={eos}", f"max_steps={LEARNING_STEPS}", "learning_rate=1e-2",
                                 "warmup_steps=0", "lr_scheduler=constant", "lora_dropout=0")
                for arg in ("--set", pair)]
        done = launch("sft", SFT_RECIPE, runs_dir, *tiny_overrides(tiny_llama3, data), *hard, merged=True)
        assert done.returncode == 0, done.stdout[-3000:]
        found[eos] = generation_check.main(["--model", str(only_run(runs_dir, "sft")), "--max-new-tokens", "24"])
    leads = least_leads(only_run(tmp_path / "runs-turn", "sft") / "merged", rows)
    assert min(leads) > LEARNED_LEAD, f"the learned answers' least leads {leads} are too close to call exactly"
    learned = [a for a in found["turn"]["answers"] if a["use_case"] == "validation"]
    assert [(a["text"], a["stop"]) for a in learned] == [("Too few red cells.", "end_of_turn"),
                                                         ("Yellow skin.", "end_of_turn")]
    assert found["turn"]["use_cases"]["validation"]["stop_rate"] == 1.0
    assert found["none"]["use_cases"]["validation"]["stop_rate"] == 0.0
    assert found["none"]["overall"]["stop_rate"] < found["turn"]["overall"]["stop_rate"]
    assert found["none"]["overall"]["median_tokens"] == 24


def test_report_refuses_malformed_figures_in_one_line(runs, tmp_path):
    run = make_run(tmp_path, runs["trained"] / "merged", "malformed")
    results = json.loads((run / "eval/results.json").read_text())
    results["generation_check"] = {"overall": {"stop_rate": "high"}, "use_cases": {}}
    (run / "eval/results.json").write_text(json.dumps(results))
    done = subprocess.run([sys.executable, "-m", "eval", "report", "--brief", str(run)], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode != 0 and "generation_check: expected overall" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
