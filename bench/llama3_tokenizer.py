"""A small Llama-3 tokenizer built in-process: for the test fixtures and bench/gpu_check.py, no model hub needed.

    from bench.llama3_tokenizer import build_llama3_tokenizer, corpus_from
    tokenizer = build_llama3_tokenizer(corpus_from([Path("data/default/sft.jsonl")]))

A byte-level BPE trained on the given texts, with Llama-3's special tokens, its BOS handling and Meta's exact
Llama-3-Instruct chat template, so Axolotl's ``llama3`` template and lm-eval treat it as they treat Llama-3's.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_prep.templates import LLAMA3_CHAT_TEMPLATE  # Meta's exact Llama-3-Instruct template

LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]


def build_llama3_tokenizer(corpus: list[str], vocab_size: int = 600):
    """A small byte-level BPE tokenizer with Llama-3's special tokens, BOS handling and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA3_SPECIAL_TOKENS,
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
    """Every message text in SFT (``messages``) and DPO (``chosen``, ``rejected``) JSONL rows."""
    texts = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            texts += [m["content"] for m in row["messages"]]
            texts += [row[k]["content"] for k in ("chosen", "rejected") if k in row]
    return texts
