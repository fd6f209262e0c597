"""lm-eval's ``llama-cpp`` model: a GGUF file scored by llama.cpp itself, in-process (llama-cpp-python's binding).

    python -m eval run --model releases/<name>/gguf/<name>-Q8_0.gguf --out DIR    # --backend llama-cpp: the default
    python -m eval run --model X.gguf --out DIR --model-args n_threads=8 max_length=4096

Multiple-choice scoring (``loglikelihood``, all that our nine tasks ask) as lm-eval 0.4.11's hf backend (HFLM)
does it, so that the two differ only by the numerics of the file users run:

- tokens: the GGUF's own vocabulary (llama.cpp's tokenizer, special tokens in the text parsed, as transformers
  does); each pair is split by lm-eval's own ``_encode_pair``; an empty context is the prefix token (BOS, else
  EOS), as lm-eval's ``loglikelihood`` does.
- BOS, HFLM's ``tok_encode`` rule: special tokens are added as the tokenizer adds them (llama.cpp adds BOS, or EOS,
  where the file says to: ``tokenizer.ggml.add_bos_token``, which the converter takes from the tokenizer), except
  when the text already starts with the prefix token's text (a chat template's ``<|begin_of_text|>``).
  ``add_bos_token=true|false`` overrides it, as HFLM's model argument does; ``eval run`` sets it from the
  release's tokenizer for a release's GGUF (the converter may read a flag transformers ignores).
- log-probabilities: llama.cpp's logits, log-softmax in float64 (eval/llama_cpp_scorer.py); ``is_greedy`` when
  every continuation token is the most likely one.
- shared contexts: requests are grouped by context tokens, each context decoded once (its cache kept) and each
  continuation adds only its own tokens; a one-token continuation reads the context's last logits. Every score
  equals the request's own from an empty cache, bit for bit (eval/llama_cpp_scorer.py says how).
- too long: lm-eval's own behaviour, left truncation: context and continuation together are cut to their last
  ``max_length`` + 1 tokens (a warning in the log), as HFLM does; a continuation longer than ``max_length`` is
  refused in one line. ``max_length``: the model's trained context (``<arch>.context_length``), at most 8192.
- ``n_threads``: this machine's cores (those this process may use) unless given.

``loglikelihood_rolling`` and ``generate_until`` are refused in one line (our tasks do not use them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (upstream's models first: get_model fills an empty registry only)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from common.errors import InputError
from eval.llama_cpp_scorer import ContinuationScorer
from inference.gguf_file import GGUFFile
from inference.gguf_model import MAX_CONTEXT, GGUFModel, cores, import_llama_cpp

NAME = "llama-cpp"
OPTIONS = ("pretrained", "max_length", "n_threads", "add_bos_token", "prefix_token_id", "n_gpu_layers")
log = logging.getLogger(__name__)


def trained_context(path: Path) -> int | None:
    """The GGUF's ``<arch>.context_length`` (transformers' ``max_position_embeddings``), if it has one."""
    metadata = GGUFFile.of(path).metadata
    length = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    return int(length) if length is not None else None


def option(name: str, value: Any, kind: type) -> Any:
    """A model argument as ``kind`` (``--model-args`` gives strings); InputError naming it otherwise."""
    if value is None or isinstance(value, kind):
        return value
    text = str(value).strip().lower()
    try:
        return {"true": True, "false": False}[text] if kind is bool else kind(text)
    except (KeyError, ValueError):
        raise InputError(f"--model-args {name}={value}: expected {kind.__name__}") from None


@register_model(NAME)
class LlamaCppLM(TemplateLM):
    """A GGUF scored by llama.cpp; ``batch_size`` and ``device``, which lm-eval passes every model, are unused."""

    def __init__(self, pretrained: str, max_length: int | None = None, n_threads: int | None = None,
                 add_bos_token: bool | None = None, prefix_token_id: int | None = None, n_gpu_layers: int = 0,
                 batch_size: Any = None, device: Any = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise InputError(f"--model-args {sorted(unknown)[0]}: not an argument of the {NAME} backend (one of "
                             f"{', '.join(OPTIONS)})")
        path = Path(pretrained)
        GGUFFile.of(path)
        self.path = path
        self.n_threads = option("n_threads", n_threads, int) or cores()
        self._max_length = option("max_length", max_length, int) or min(trained_context(path) or MAX_CONTEXT,
                                                                         MAX_CONTEXT)
        self.model = GGUFModel(path, context=self._max_length, threads=self.n_threads,
                               gpu_layers=option("n_gpu_layers", n_gpu_layers, int))
        self.llm, self.tokenizer = self.model.llm, self.model.tokenizer
        self.add_bos_token = option("add_bos_token", add_bos_token, bool)
        self.bos = self.llm.token_bos()
        custom = option("prefix_token_id", prefix_token_id, int)
        self._prefix = custom if custom is not None else self.bos if self.bos >= 0 else self.llm.token_eos()
        self.prefix_text = self.tokenizer.decode([self._prefix])
        self.scorer = ContinuationScorer(self.llm)

    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        return self._prefix

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return self.path.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **_: Any) -> list[int]:
        """The GGUF's tokens for ``string``, BOS by HFLM's rule (the module's docstring)."""
        add = add_special_tokens if add_special_tokens is not None else self.add_bos_token
        if add_special_tokens is None and self.prefix_text and string.startswith(self.prefix_text):
            add = False
        ids = self.llm.tokenize(string.encode("utf-8"), add_bos=add is not False, special=True)
        if add and self.add_bos_token and self.bos >= 0 and ids[:1] != [self.bos]:
            ids = [self.bos, *ids]
        return ids

    def fit(self, context: list[int], continuation: list[int]) -> list[int]:
        """The context left-truncated as HFLM does, so that context and continuation fit ``max_length`` + 1."""
        if len(continuation) > self.max_length:
            raise InputError(f"a {len(continuation)}-token continuation is longer than the {self.max_length}-token "
                             f"context of {self.path.name}")
        total = len(context) + len(continuation)
        if total <= self.max_length + 1:
            return context
        log.warning("Combined length of context (%d) and continuation (%d) exceeds the model's maximum length (%d). "
                    "Truncating %d tokens from the left.", len(context), len(continuation), self.max_length,
                    total - self.max_length - 1)
        return context[total - self.max_length - 1:]

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str] | None, list[int], list[int]]],
                              disable_tqdm: bool = False, **_: Any) -> list[tuple[float, bool]]:
        """(log-probability, greedy?) of each continuation; each distinct context decoded once."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (_, context, continuation) in enumerate(requests):
            groups.setdefault(tuple(self.fit(context, continuation)), []).append(index)
        results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for context in sorted(groups):  # neighbours share their longest prefixes, kept in the cache
            after = self.scorer.context(list(context))
            for index in groups[context]:
                strings, _, continuation = requests[index]
                results[index] = self.scorer.continuation(len(context), after, continuation)
                if strings is not None:
                    self.cache_hook.add_partial("loglikelihood", strings, results[index])
        return results

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        raise InputError(f"the {NAME} backend scores multiple-choice tasks only (loglikelihood); a task asking for "
                         "loglikelihood_rolling needs --backend hf")

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        raise InputError(f"the {NAME} backend scores multiple-choice tasks only (loglikelihood); a task asking for "
                         "generate_until needs --backend hf")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The GGUF's own template, rendered as transformers renders it (HFLM's ``apply_chat_template``)."""
        return self.tokenizer.render(chat_history, add_generation_prompt=add_generation_prompt)

    def get_model_info(self) -> dict[str, Any]:
        """What results.json's ``config`` records of the model."""
        return {"gguf": str(self.path.resolve()), "llama_cpp_python": import_llama_cpp().__version__,
                "n_ctx": self.max_length, "n_threads": self.n_threads, "tokens_decoded": self.scorer.decoded}
