"""Fixtures built in code: a tiny random Llama with a Llama-3 tokenizer, and small data files.

Nothing here comes from a model hub: the tokenizer is trained in-process on the bundled rows,
then given the Llama-3 special tokens and Meta's exact Llama-3-Instruct chat template
(bench/llama3_tokenizer.py, shared with bench/gpu_check.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import DPO_DATA, SFT_DATA, read_jsonl, write_jsonl

from bench.llama3_tokenizer import build_llama3_tokenizer, corpus_from

# Every test subprocess runs offline and without telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


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
