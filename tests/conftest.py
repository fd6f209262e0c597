"""Fixtures built in code: a tiny random Llama with a Llama-3 tokenizer, and small data files.

Nothing here comes from a model hub: the tokenizer is trained in-process on the bundled rows,
then given the Llama-3 special tokens and Meta's exact Llama-3-Instruct chat template.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import DPO_DATA, SFT_DATA, read_jsonl, write_jsonl

# Meta-Llama-3-8B-Instruct's chat template, as published in its tokenizer_config.json.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]

# Every test subprocess runs offline and without telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def build_llama3_tokenizer(corpus: list[str]):
    """A small byte-level BPE tokenizer with Llama-3's special tokens, BOS handling and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=LLAMA3_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(corpus, trainer)
    bos_id = backend.token_to_id("<|begin_of_text|>")
    # Like Llama-3's tokenizer: plain encoding prepends BOS; chat templates write it themselves.
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos_id)],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
    )
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    return tokenizer


def corpus_from(paths: list[Path]) -> list[str]:
    """Every message text in the bundled SFT and DPO rows."""
    texts = []
    for path in paths:
        for row in read_jsonl(path):
            texts += [m["content"] for m in row["messages"]]
            texts += [row[k]["content"] for k in ("chosen", "rejected") if k in row]
    return texts


@pytest.fixture(scope="session")
def tiny_llama3(tmp_path_factory) -> Path:
    """A random 2-layer Llama (a few hundred kB) with a Llama-3 tokenizer, saved as a local model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama3")
    tokenizer = build_llama3_tokenizer(corpus_from([SFT_DATA, DPO_DATA]))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """Eight rows of each bundled set (two multi-turn SFT conversations among them): a few training steps."""
    out = tmp_path_factory.mktemp("data")
    sft = read_jsonl(SFT_DATA)
    multi_turn = [row for row in sft if len(row["messages"]) > 3][:2]
    single_turn = [row for row in sft if len(row["messages"]) == 3][:6]
    return {
        "sft": write_jsonl(out / "sft.jsonl", multi_turn + single_turn),
        "dpo": write_jsonl(out / "dpo.jsonl", read_jsonl(DPO_DATA)[:8]),
    }
