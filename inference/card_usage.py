"""What the OpenBioLLM model cards say about using the model (../shared/reference/cards/).

The cards' transformers snippet: this system prompt, ``max_new_tokens=256``, stop on
``[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|eot_id|>")]``, and "Please consider setting
temperature = 0": greedy decoding is our default; ``top_p=0.9`` is the snippet's, used only when sampling.
"""

from __future__ import annotations

from data_prep.rows import OPENBIOLLM_SYSTEM_PROMPT

SYSTEM_PROMPT = OPENBIOLLM_SYSTEM_PROMPT  # the one copy: the rows data_prep builds carry it too
MAX_NEW_TOKENS = 256
TOP_P = 0.9  # with --temperature > 0 only
