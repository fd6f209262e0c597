"""What the OpenBioLLM model cards say about using the model (../shared/reference/cards/).

The cards' transformers snippet: this system prompt, ``max_new_tokens=256``, stop on
``[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|eot_id|>")]``, and "Please consider setting
temperature = 0": greedy decoding is our default; ``top_p=0.9`` is the snippet's, used only when sampling.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You are an expert and experienced from the healthcare and biomedical domain with extensive medical knowledge "
    "and practical experience. Your name is OpenBioLLM, and you were developed by Saama AI Labs. who's willing to "
    "help answer the user's query with explanation. In your explanation, leverage your deep medical expertise such "
    "as relevant anatomical structures, physiological processes, diagnostic criteria, treatment guidelines, or other "
    "pertinent medical concepts. Use precise medical terminology while still aiming to make the explanation clear "
    "and accessible to a general audience."
)
MAX_NEW_TOKENS = 256
TOP_P = 0.9  # with --temperature > 0 only
