"""A GGUF file's metadata, read by gguf-py's reader: the one place a ``GGUFReader`` is made.

inference/gguf_file.py (``GGUFFile``: a GGUF read once, for eval and release) and launch's conversion of the
embedded model (launch/preflight/embedded_model.py, a floor that does not import inference) read GGUFs here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from common.errors import InputError

TOKEN_LISTS = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type", "tokenizer.ggml.scores")


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The GGUF's metadata as Python values (token lists left out), ``tensor_types`` (type name -> count) and
    ``n_tokens`` (the vocabulary's size); InputError when gguf-py cannot read it."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except (ValueError, OSError, IndexError, KeyError) as err:
        raise InputError(f"{path}: not a readable GGUF file ({err}); truncated?") from None
    values = {key: field.contents() for key, field in reader.fields.items() if not key.startswith(TOKEN_LISTS)}
    values["tensor_types"] = dict(Counter(tensor.tensor_type.name for tensor in reader.tensors))
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    values["n_tokens"] = len(tokens.data) if tokens is not None else 0
    return values
