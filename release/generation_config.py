"""Where a reply ends: the tokenizer's eos and every end-of-turn token its chat template writes.

A Llama-3 base model's ``generation_config.json`` stops only on ``<|end_of_text|>``; its chat template ends each
turn with ``<|eot_id|>``, so without that token a chat model talks on past its answer (the cards' snippet adds it
by hand). ChatML models (SmolLM2) end turns with ``<|im_end|>``. :func:`terminators` finds them all;
:func:`release_generation_config` writes them into the ``generation_config.json`` a released model carries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The end-of-turn tokens of the chat templates we know: Llama-3 (and 3.1's tool turns), ChatML, Gemma, Phi-3.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>")
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "typical_p")  # meaningless, and warned about, when greedy


def template_text(tokenizer: Any) -> str:
    """The tokenizer's chat template(s) as one string ("" without one)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return "\n".join(template.values()) if isinstance(template, dict) else template


def end_of_turn_tokens(tokenizer: Any) -> list[str]:
    """The known end-of-turn tokens that are in the tokenizer's vocabulary and written by its chat template."""
    vocab, template = tokenizer.get_vocab(), template_text(tokenizer)
    return [token for token in END_OF_TURN_TOKENS if token in vocab and token in template]


def terminators(tokenizer: Any) -> list[int]:
    """Token ids that end a reply: eos first, then each end-of-turn token of the chat template, no repeats."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    ids += [tokenizer.convert_tokens_to_ids(token) for token in end_of_turn_tokens(tokenizer)]
    return list(dict.fromkeys(ids))


def release_generation_config(model_dir: Path) -> dict[str, Any]:
    """``model_dir``'s ``generation_config.json`` with every terminator as ``eos_token_id`` and greedy decoding.

    Greedy (``do_sample: false``) is the cards' "temperature 0"; the sampling keys are dropped with it.
    ``max_new_tokens`` stays unset: the length is the caller's (the cards' snippet uses 256).
    """
    from transformers import AutoTokenizer

    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = config.get("eos_token_id")
    base = [] if base is None else [base] if isinstance(base, int) else list(base)
    config = {key: value for key, value in config.items() if key not in SAMPLING_KEYS}
    config["eos_token_id"] = list(dict.fromkeys([*base, *terminators(tokenizer)]))
    config["do_sample"] = False
    return config
