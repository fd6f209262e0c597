"""Where a reply ends: the tokenizer's eos and every end-of-turn token its chat template writes.

A Llama-3 base model's ``generation_config.json`` stops only on ``<|end_of_text|>``; its chat template ends each
turn with ``<|eot_id|>``, so without that token a chat model talks on past its answer (the cards' snippet adds it
by hand). ChatML models (SmolLM2) end turns with ``<|im_end|>``. :func:`terminators` finds them all;
release/generation_config.py writes them into the ``generation_config.json`` a released model carries.
"""

from __future__ import annotations

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
