"""Fixtures built in code: a tiny random Llama with a Llama-3 tokenizer, small data files, and GGUF exports.

Nothing here comes from a model hub: the tokenizer is trained in-process on the bundled rows,
then given the Llama-3 special tokens and Meta's exact Llama-3-Instruct chat template
(bench/llama3_tokenizer.py, shared with bench/gpu_check.py). The GGUF fixtures (``tools``, ``default_model``,
``tiny``, ``exports``; tests/test_gguf.py says what each model is) are shared by tests/test_gguf.py and
tests/test_gguf_scoring.py, so each file is converted once a session.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import DPO_DATA, GGUF_QUANTS, ROOT, SFT_DATA, read_jsonl, write_jsonl

from bench.llama3_tokenizer import LLAMA3_SPECIAL_TOKENS, build_llama3_tokenizer, corpus_from
from data_prep.templates import LLAMA3_CHAT_TEMPLATE

SMOLLM2 = ROOT / "models" / "smollm2-135m-instruct"

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


@pytest.fixture(scope="session")
def tools():
    """llama.cpp's converter and quantizer (and the binding), found in the cache: never built by a test.
    ``make test`` builds them first (``make gguf-tools``); without them, the tests that need them skip."""
    from inference.llama_cpp_tools import ensure, pinned_tools

    if not pinned_tools().built:
        pytest.skip(f"llama.cpp's tools are not in {pinned_tools().home}: `make gguf-tools` builds them "
                    "(`make test` runs it first)")
    return ensure()


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items):
    """A test that needs llama.cpp's tools (the ``tools`` fixture, itself or through ``exports``...) is slow: ``make
    test-fast`` never runs it, so never builds or installs llama.cpp."""
    for item in items:
        if "tools" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def default_model(tmp_path_factory) -> Path:
    """``make model``'s folder when it is current, else the same conversion into a temporary folder."""
    from launch.preflight.embedded_model import CONVERSION, SOURCE_FILE, convert_gguf

    source = SMOLLM2 / SOURCE_FILE
    if source.is_file() and json.loads(source.read_text()).get("conversion") == CONVERSION:
        return SMOLLM2
    out = tmp_path_factory.mktemp("default") / "smollm2-135m-instruct"
    convert_gguf(out)
    return out


@pytest.fixture(scope="session")
def tiny(default_model, tmp_path_factory) -> Path:
    """A random tiny Llama-3 on SmolLM2's vocabulary (tests/test_gguf.py), a model folder: 256 wide, so Q4_K applies."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama3-gguf")
    tokenizer = AutoTokenizer.from_pretrained(default_model)
    tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIAL_TOKENS})
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token = "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>"
    tokenizer.chat_template = LLAMA3_CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def exports(tiny, default_model, tools, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """F16, Q8_0 and Q4_K_M of both models: ``{"tiny": {"F16": path, ...}, "default": {...}}``."""
    from release import gguf

    found = {}
    for name, model in (("tiny", tiny), ("default", default_model)):
        out = tmp_path_factory.mktemp(f"gguf-{name}")
        files = gguf.export(model, out, name, GGUF_QUANTS, tools, out / "export.log")
        found[name] = dict(zip(GGUF_QUANTS, files, strict=True))
    return found
