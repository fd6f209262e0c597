"""A GGUF file as a model to answer with, through llama.cpp (llama-cpp-python's binding).

The file's own tokenizer and chat template: the template is rendered as transformers renders it (its jinja
environment, ``add_generation_prompt``), llama.cpp tokenizes the prompt with special tokens parsed and decodes
greedily (or with the card's top-p sampling), and the reply stops on the same terminators as a run's model
(inference/terminators.py: eos and every end-of-turn token of the template). :class:`GGUFTokenizer` gives the few
tokenizer methods inference/reply.py and the generation check use, so their answers read the same for both.
The binding is built once by ``make gguf-tools`` (inference/llama_cpp_tools.py; ``make release`` and ``make test``
run it).
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

from common.errors import InputError
from inference.card_usage import TOP_P
from inference.gguf_file import GGUFFile
from inference.terminators import terminators

MAX_CONTEXT = 8192  # ours: the KV cache is sized for this at most; Llama-3's own context length


def cores() -> int:
    """The CPU cores this process may run on: llama.cpp's threads unless told."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def import_llama_cpp() -> Any:
    """The binding; its OpenMP threads wait passively (``OMP_WAIT_POLICY``, unless set): on 2 cores shared with
    another job, spinning threads made llama.cpp 7 times slower (41 against 282 tokens/s, 2026-12-06)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # read once, when llama.cpp's libgomp loads
    try:
        import llama_cpp
    except ImportError:
        raise InputError("llama-cpp-python is not installed here: run `make gguf-tools` (python -m "
                         "inference.llama_cpp_tools; built once, about 3-15 min, then cached)") from None
    return llama_cpp


class GGUFTokenizer:
    """The GGUF's vocabulary, with the tokenizer methods inference/reply.py uses."""

    def __init__(self, llm: Any, path: Path) -> None:
        llama_cpp = import_llama_cpp()
        self.llm, self.name_or_path = llm, str(path)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        count = llama_cpp.llama_vocab_n_tokens(vocab)
        self.tokens = [llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8", "replace") for i in range(count)]
        self.ids = {token: i for i, token in reversed(list(enumerate(self.tokens)))}
        self.chat_template = llm.metadata.get("tokenizer.chat_template")
        self.eos_token_id = llm.token_eos() if llm.token_eos() >= 0 else None
        bos = llm.token_bos()
        self.bos_token_id = bos if bos >= 0 else None
        self.bos_token = self.tokens[bos] if bos >= 0 else ""
        self.eos_token = self.tokens[self.eos_token_id] if self.eos_token_id is not None else ""
        # read by lm-eval's add_tokenizer_info (results.json), which records nothing of the tokenizer without them
        self.pad_token, self.pad_token_id = None, None

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ids)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.ids.get(token)

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.tokens[token_id]

    def decode(self, ids: list[int], skip_special_tokens: bool = False, **_: Any) -> str:
        return self.llm.detokenize(list(ids), special=not skip_special_tokens).decode("utf-8", "replace")

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt: the file's chat template over ``messages``, as transformers renders it (without
        ``add_generation_prompt``, the last message is continued, as lm-eval asks for a prefilled answer)."""
        from transformers.utils.chat_template_utils import render_jinja_template

        if not self.chat_template:
            raise InputError(f"{self.name_or_path}: the GGUF carries no chat template (tokenizer.chat_template)")
        rendered, _ = render_jinja_template(conversations=[messages], chat_template=self.chat_template,
                                            add_generation_prompt=add_generation_prompt,
                                            continue_final_message=not add_generation_prompt,
                                            bos_token=self.bos_token, eos_token=self.eos_token)
        return rendered[0]

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return self.llm.tokenize(self.render(messages).encode("utf-8"), add_bos=False, special=True)


class GGUFModel:
    """A loaded GGUF; ``new_tokens`` answers as inference/reply.py's ``new_tokens`` does for a transformers model."""

    is_gguf = True

    def __init__(self, path: Path, context: int | None = None, threads: int | None = None,
                 gpu_layers: int = 0) -> None:
        metadata = GGUFFile.of(path).metadata
        trained = int(metadata.get(f"{metadata.get('general.architecture')}.context_length") or MAX_CONTEXT)
        llama_cpp = import_llama_cpp()
        threads = threads or cores()
        try:  # default context: ours, never more than the model was trained on
            self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=context or min(MAX_CONTEXT, trained), n_batch=512,
                                       n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers,
                                       verbose=False)
        except ValueError as err:  # the binding's word for a file llama.cpp could not load
            raise InputError(f"{path}: llama.cpp could not load it ({err}); a truncated or foreign file?") from None
        atexit.register(self.llm.close)  # before interpreter teardown, where the binding's __del__ fails
        self.path = path
        self.tokenizer = GGUFTokenizer(self.llm, path)
        self.context = self.llm.n_ctx()  # the most tokens a reply sees, its prompt included

    def new_tokens(self, messages: list[dict[str, str]], decoding: Any, streamer: Any = None
                   ) -> tuple[list[int], list[int]]:
        """(the next turn's new token ids, the stopping one included; the ids that stop it)."""
        stops = terminators(self.tokenizer)
        if not stops:
            raise InputError(f"{self.path}: no eos token and no known end-of-turn token in the GGUF")
        prompt = self.tokenizer.prompt_ids(messages)
        if len(prompt) + decoding.max_new_tokens > self.context:
            raise InputError(f"the prompt: {len(prompt)} prompt tokens and --max-new-tokens {decoding.max_new_tokens} "
                             f"exceed the model's {self.context}-token context ({self.path})")
        sampling = decoding.temperature > 0
        settings = ({"temp": decoding.temperature, "top_p": TOP_P, "top_k": 0, "min_p": 0.0} if sampling
                    else {"temp": 0.0, "top_k": 1})
        if streamer is not None:
            import torch

            streamer.put(torch.tensor([prompt]))
        new: list[int] = []
        for token in self.llm.generate(prompt, repeat_penalty=1.0, reset=True, **settings):
            new.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if token in stops or len(new) >= decoding.max_new_tokens:
                break
        if streamer is not None:
            streamer.end()
        return new, stops


def load_gguf(path: Path) -> tuple[GGUFModel, GGUFTokenizer]:
    model = GGUFModel(path)
    return model, model.tokenizer
