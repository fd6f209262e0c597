"""``python -m release generate|chat``: the chat template, every terminator, which one stopped a reply, bad input.

A random model does not stop by itself, so the models here are rigged: every layer's output projections are
zero and every embedding is ones, so the last hidden state is the same at every position, and ``lm_head`` has
one row of ones: the greedy next token is always that row's token.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, refused_in_one_line

from inference.card_usage import SYSTEM_PROMPT
from inference.reply import Decoding, generation_settings
from inference.terminators import terminators
from release.__main__ import main
from release.generation_config import release_generation_config

WORD_ID = 300  # an ordinary token of the fixture's trained vocabulary


def rigged(base: Path, out: Path, emits: str | int, eos: str = "<|eot_id|>") -> Path:
    """A copy of ``base`` whose greedy next token is always ``emits``, its tokenizer's eos set to ``eos``."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.eos_token = eos
    model = LlamaForCausalLM.from_pretrained(base)
    target = emits if isinstance(emits, int) else tokenizer.convert_tokens_to_ids(emits)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[target] = 1.0
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tiny_llama3, tmp_path_factory) -> dict[str, Path]:
    """Llama-3 models whose tokenizer's eos is ``<|end_of_text|>`` (as the base model's), each always emitting one
    token: ``<|eot_id|>`` (the end of turn), ``<|end_of_text|>`` (the eos) or an ordinary word."""
    root = tmp_path_factory.mktemp("rigged")
    return {name: rigged(tiny_llama3, root / name, emits, eos="<|end_of_text|>")
            for name, emits in (("eot", "<|eot_id|>"), ("eos", "<|end_of_text|>"), ("word", WORD_ID))}


def generate(capsys, *argv: str) -> list[dict]:
    main(["generate", *argv])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def refused(capsys, *argv: str) -> str:
    return refused_in_one_line(main, capsys, *argv)


def test_the_generation_config_stops_on_end_of_text_and_eot(tiny_llama3, tmp_path):
    """A Llama-3 base folder whose generation_config.json stops only on <|end_of_text|> comes out with both."""
    from transformers import AutoTokenizer

    model = rigged(tiny_llama3, tmp_path / "base", "<|eot_id|>", eos="<|end_of_text|>")
    tokenizer = AutoTokenizer.from_pretrained(model)
    end_of_text, eot = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    (model / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": end_of_text, "do_sample": True,
         "temperature": 0.6, "top_p": 0.9}))
    config = release_generation_config(model)
    assert config["eos_token_id"] == [end_of_text, eot] and end_of_text != eot
    assert config["do_sample"] is False and "temperature" not in config and "top_p" not in config
    assert config["bos_token_id"] == tokenizer.bos_token_id and "max_new_tokens" not in config


def test_a_chatml_template_stops_on_im_end_and_not_on_tokens_it_never_writes(tiny_llama3):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|end_of_text|>"
    tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                               "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert terminators(tokenizer) == tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|im_end|>"])
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") not in terminators(tokenizer)  # in the vocabulary only


def test_decoding_is_greedy_by_default_whatever_the_models_own_config(models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(models["word"])
    model.generation_config.update(do_sample=True, temperature=0.6, top_p=0.9)
    tokenizer = AutoTokenizer.from_pretrained(models["word"])
    greedy = generation_settings(model, tokenizer, Decoding())
    assert greedy.do_sample is False and greedy.temperature is None and greedy.top_p is None
    assert greedy.eos_token_id == terminators(tokenizer) and len(greedy.eos_token_id) == 2
    sampled = generation_settings(model, tokenizer, Decoding(temperature=0.7))
    assert sampled.do_sample is True and sampled.temperature == 0.7


def test_generate_reads_jsonl_on_stdin_and_stops_on_eot_though_eos_is_end_of_text(models):
    rows = [{"prompt": "What is anemia?"}, {"prompt": "And jaundice?", "system": ""}]
    done = subprocess.run([sys.executable, "-m", "release", "generate", str(models["eot"])], cwd=ROOT, text=True,
                          input="".join(json.dumps(row) + "\n" for row in rows), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["prompt"] for line in out] == [row["prompt"] for row in rows]
    for line in out:
        assert line == {"prompt": line["prompt"], "text": "", "tokens": 1, "stop": "end_of_turn",
                        "stop_token": "<|eot_id|>"}


def test_generate_stops_on_the_eos_and_names_it(models, capsys):
    [line] = generate(capsys, str(models["eos"]), "What is anemia?")
    assert (line["stop"], line["stop_token"], line["tokens"]) == ("eos", "<|end_of_text|>", 1)


def test_generate_without_a_terminator_stops_at_max_new_tokens(models, capsys):
    from transformers import AutoTokenizer

    out = generate(capsys, str(models["word"]), "one", "two", "--max-new-tokens", "3")
    word = AutoTokenizer.from_pretrained(models["word"]).decode([WORD_ID] * 3)
    assert [(line["prompt"], line["text"], line["tokens"], line["stop"], line["stop_token"]) for line in out] == [
        ("one", word, 3, "max_new_tokens", None), ("two", word, 3, "max_new_tokens", None)]


def test_generate_sends_the_cards_system_prompt_unless_told_otherwise(models, monkeypatch, capsys):
    import release.generate as command

    asked = []
    real = command.respond
    monkeypatch.setattr(command, "respond", lambda m, t, messages, *rest: asked.append(messages)
                        or real(m, t, messages, *rest))
    generate(capsys, str(models["eot"]), "hi")
    generate(capsys, str(models["eot"]), "hi", "--system", "Be brief.")
    monkeypatch.setattr(sys, "stdin", _Piped('{"prompt": "hi", "system": ""}\n'))
    generate(capsys, str(models["eot"]), "--system", "Be brief.")
    assert [[m["content"] for m in messages if m["role"] == "system"] for messages in asked] == [
        [SYSTEM_PROMPT], ["Be brief."], []]
    assert "OpenBioLLM" in SYSTEM_PROMPT


def run_folder(root: Path, status: str = "succeeded", base_model: str | None = None) -> Path:
    run = root / "runs" / "20260101-000000-sft-tiny"
    run.mkdir(parents=True)
    manifest = {"run_id": run.name, "stage": "sft", "status": status}
    if base_model:
        manifest["base_model"] = {"id": base_model, "local": True}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_a_run_loads_its_merged_model(models, tmp_path, capsys):
    run = run_folder(tmp_path)
    shutil.copytree(models["eot"], run / "merged")
    assert generate(capsys, str(run), "hi")[0]["stop"] == "end_of_turn"


def test_a_run_without_merged_loads_its_adapter_on_the_base_its_manifest_names(models, tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shutil.copytree(models["word"], tmp_path / "models" / "tiny-word")  # the manifest's id, relative to the project
    run = run_folder(tmp_path, base_model="models/tiny-word")
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(AutoModelForCausalLM.from_pretrained(tmp_path / "models" / "tiny-word"), lora).save_pretrained(
        run / "adapter")
    [line] = generate(capsys, str(run), "hi", "--max-new-tokens", "2")
    assert (line["tokens"], line["stop"]) == (2, "max_new_tokens")  # the base's word: a fresh LoRA changes nothing


def test_bad_input_ends_in_one_line(models, tmp_path, capsys, monkeypatch):
    assert "no such folder" in refused(capsys, "generate", str(tmp_path / "nothing"), "hi")
    assert "neither a run" in refused(capsys, "generate", str(tmp_path), "hi")
    assert "neither merged/ nor adapter/" in refused(capsys, "generate", str(run_folder(tmp_path / "a")), "hi")
    run = run_folder(tmp_path / "b", base_model="models/not-here")
    (run / "adapter").mkdir()
    (run / "adapter" / "adapter_config.json").write_text("{}")
    assert "'models/not-here' is not a model folder" in refused(capsys, "generate", str(run), "hi")
    for text, expected in [('{"prompt": "ok"}\n\n{"prompt": "x",\n', "stdin line 3: not JSON"),
                           ('{"prompt": "ok"}\n["x"]\n', "stdin line 2: expected"),
                           ('{"prompt": "ok", "sytem": "x"}\n', "stdin line 1: unknown key 'sytem'"),
                           ("\n", "stdin: no prompts")]:
        monkeypatch.setattr(sys, "stdin", _Piped(text))
        assert expected in refused(capsys, "generate", str(models["eot"])), text
    with pytest.raises(SystemExit) as end:  # argparse's usage error, as every CLI's
        main(["generate", str(models["eot"]), "hi", "--temperature", "nan"])
    assert end.value.code == 2 and "'nan' is not a number of 0 or more" in capsys.readouterr().err


def test_a_run_that_did_not_succeed_is_refused_alike_by_every_command(tmp_path, capsys):
    """One rule (inference/model_source.py): chat, generate, release build, eval run and the generation check."""
    from eval.__main__ import main as eval_main

    run = run_folder(tmp_path, status="failed")
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    expected = f"{run}: run status is 'failed'; only a succeeded run is used"
    for command in (["generate", str(run), "hi"], ["chat", str(run)], ["build", str(run)]):
        assert expected in refused(capsys, *command), command
    for command in (["run", "--model", str(run)], ["generate-check", "--model", str(run)]):
        assert expected in refused_in_one_line(eval_main, capsys, *command), command


class _Piped:
    """stdin that is not a terminal."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)

    def __iter__(self):
        return iter(self.lines)

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


def test_chat_streams_replies_resets_and_exits(models):
    from transformers import AutoTokenizer

    word = AutoTokenizer.from_pretrained(models["word"]).decode([WORD_ID] * 2)
    done = subprocess.run([sys.executable, "-m", "release", "chat", str(models["word"]), "--max-new-tokens", "2"],
                          cwd=ROOT, input="hello\n/reset\nhi again\n/exit\nnever read\n", text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"model> {word}\n") == 2 and "never read" not in done.stdout, done.stdout
    assert "[conversation reset]" in done.stderr and "[cut at 2 new tokens" in done.stderr


def test_chat_keeps_the_conversation_and_ends_at_end_of_input(models, monkeypatch, capsys):
    import release.chat as chat

    asked = []
    real = chat.respond
    monkeypatch.setattr(chat, "respond", lambda m, t, messages, *rest: asked.append(list(messages))
                        or real(m, t, messages, *rest))
    monkeypatch.setattr(sys, "stdin", _Piped("first\nsecond\n/reset\nthird\n"))
    main(["chat", str(models["eot"]), "--system", "Be brief."])
    roles = [[m["role"] for m in messages] for messages in asked]
    assert roles == [["system", "user"], ["system", "user", "assistant", "user"], ["system", "user"]]
    assert asked[1][-1]["content"] == "second" and asked[2][-1]["content"] == "third"
    assert "[empty reply]" in capsys.readouterr().err  # <|eot_id|> first: nothing said, and the turn ended
