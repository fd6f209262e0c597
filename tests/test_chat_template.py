"""The Llama-3 template is rendered exactly, and Axolotl trains only on assistant turns.

The OpenBioLLM model card warns that the model degrades without the exact Llama-3 template,
so these tests compare bytes, and use Axolotl's own tokenization for the label mask.
"""

from __future__ import annotations

import subprocess
import sys

import yaml
from datasets import load_from_disk
from helpers import SFT_RECIPE, read_jsonl, tiny_overrides
from transformers import AutoTokenizer

from launch.lifecycle.config import parse_override
from launch.lifecycle.run import StageRun, resolve_config

CONVERSATION = [
    {"role": "system", "content": "You are a careful clinician."},
    {"role": "user", "content": "What does the thyroid gland produce?"},
    {"role": "assistant", "content": "Thyroxine (T4), triiodothyronine (T3) and calcitonin."},
]
# The official Llama-3-Instruct prompt format, written out by hand.
OFFICIAL = (
    "<|begin_of_text|>"
    "<|start_header_id|>system<|end_header_id|>\n\nYou are a careful clinician.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhat does the thyroid gland produce?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nThyroxine (T4), triiodothyronine (T3) and calcitonin.<|eot_id|>"
)


def test_meta_llama3_template_renders_the_official_format(tiny_llama3):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == OFFICIAL


def test_axolotl_llama3_template_renders_the_official_format(tiny_llama3):
    from axolotl.utils.chat_templates import get_chat_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    rendered = tokenizer.apply_chat_template(CONVERSATION, chat_template=get_chat_template("llama3"), tokenize=False)
    assert rendered == OFFICIAL
    prompt = tokenizer.apply_chat_template(CONVERSATION[:2], chat_template=get_chat_template("llama3"),
                                           add_generation_prompt=True, tokenize=False)
    assert prompt == OFFICIAL.split("Thyroxine")[0]


def trained_spans(input_ids: list[int], labels: list[int]) -> list[list[int]]:
    """Runs of consecutive positions whose label is not masked (-100)."""
    spans: list[list[int]] = []
    for position, (token, label) in enumerate(zip(input_ids, labels, strict=True)):
        if label == -100:
            continue
        assert label == token, f"label at {position} is {label}, not the input token {token}"
        if spans and labels[position - 1] != -100:
            spans[-1].append(token)
        else:
            spans.append([token])
    return spans


def test_axolotl_labels_mask_everything_but_assistant_turns_and_their_eot(tiny_llama3, small_data, tmp_path):
    overrides = dict(parse_override(arg) for arg in tiny_overrides(tiny_llama3, small_data["sft"])[1::2])
    config = resolve_config(StageRun(stage="sft", recipe=SFT_RECIPE, overrides=overrides), tmp_path / "run", None)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "axolotl.cli.preprocess", str(config_path)], check=True,
                   capture_output=True, text=True)

    prepared = [p for p in (tmp_path / "run/prepared").iterdir() if p.is_dir()]
    assert len(prepared) == 1
    rows = load_from_disk(str(prepared[0]))
    source = read_jsonl(small_data["sft"])
    assert len(rows) == len(source)

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    by_text = {tokenizer.apply_chat_template(row["messages"], tokenize=False): row for row in source}
    for row in rows:  # Axolotl shuffles, so match each tokenized row to its source by its text
        ids = row["input_ids"]
        original = by_text.pop(tokenizer.decode(ids))
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
        expected = [m["content"].strip() + "<|eot_id|>" for m in original["messages"] if m["role"] == "assistant"]
        assert [tokenizer.decode(span) for span in trained_spans(ids, row["labels"])] == expected
    assert not by_text
