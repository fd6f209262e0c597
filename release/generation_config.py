"""The ``generation_config.json`` a released model carries: every terminator as ``eos_token_id``, greedy decoding.

A Llama-3 base model's ``generation_config.json`` stops only on ``<|end_of_text|>``; a merge keeps it, so without
``<|eot_id|>`` a chat model talks on past its answer. The terminators are inference/terminators.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from inference.terminators import SAMPLING_KEYS, terminators


def release_generation_config(model_dir: Path, tokenizer: Any = None) -> dict[str, Any]:
    """``model_dir``'s ``generation_config.json`` with every terminator as ``eos_token_id`` and greedy decoding.

    Greedy (``do_sample: false``) is the cards' "temperature 0"; the sampling keys are dropped with it.
    ``max_new_tokens`` stays unset: the length is the caller's (the cards' snippet uses 256). ``tokenizer``:
    ``model_dir``'s, when the caller has it loaded.
    """
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    base = config.get("eos_token_id")
    base = [] if base is None else [base] if isinstance(base, int) else list(base)
    config = {key: value for key, value in config.items() if key not in SAMPLING_KEYS}
    config["eos_token_id"] = list(dict.fromkeys([*base, *terminators(tokenizer)]))
    config["do_sample"] = False
    return config
