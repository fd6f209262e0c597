"""Log-probabilities of continuation tokens, from llama.cpp's own logits, in-process (llama-cpp-python's binding).

    scorer = ContinuationScorer(model.llm)          # a loaded inference.gguf_model.GGUFModel
    after = scorer.context(context_ids)             # log-probabilities of the token after the context
    logprob, greedy = scorer.continuation(len(context_ids), after, continuation_ids)

The context's keys and values stay in llama.cpp's cache: each continuation of the same context decodes only its
own tokens but the last (none for a one-token continuation, read from ``after``), and the next context decodes
only what follows the prefix it shares with what is cached. Logits are turned into log-probabilities in float64
(numpy): log-softmax over the vocabulary, as lm-eval's hf backend does in torch.

Each score is bit-identical to the request's own from an empty cache. llama.cpp computes a one-token batch by
another kernel (matrix-vector, activations rounded otherwise): on the default model's F16 file such a token moved
scores by up to 0.012 nats, while batches of two or more tokens gave identical logits however a sequence was split
(2026-12-06, CPU). So the scorer never decodes a context's tokens one alone where a whole decode would not (the
tail after a shared prefix, the last of ``n_batch`` chunks: at least two tokens), and never reuses a cached token
that was decoded alone (a one-token context, a two-token continuation's first token).
"""

from __future__ import annotations

import atexit
from typing import Any

import numpy as np

from inference.gguf_model import import_llama_cpp

SEQUENCE = 0  # the one sequence we decode
MIN_BATCH = 2  # tokens a decode takes at least where it can (the module's docstring)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities from one row of logits."""
    row = logits.astype(np.float64)
    top = row.max()
    return row - (top + np.log(np.exp(row - top).sum()))


def chunks(count: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of ``count`` tokens in batches of at most ``size``, none of one token unless ``count`` is 1."""
    bounds = [[start, min(start + size, count)] for start in range(0, count, size)]
    if size >= 2 * MIN_BATCH and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_BATCH:
        bounds[-2][1] -= 1
        bounds[-1][0] -= 1
    return [(start, end) for start, end in bounds]


def shared_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


class ContinuationScorer:
    """One llama.cpp context scoring continuations after contexts; it remembers which tokens its cache holds."""

    def __init__(self, llm: Any) -> None:
        self.lib = import_llama_cpp()
        self.ctx, self.n_batch, self.n_vocab, self.n_ctx = llm.ctx, llm.n_batch, llm.n_vocab(), llm.n_ctx()
        self.memory = self.lib.llama_get_memory(self.ctx)
        self.lib.llama_memory_clear(self.memory, True)
        self.batch = self.lib.llama_batch_init(self.n_batch, 0, 1)
        atexit.register(self.close)  # before the model's own close (registered earlier, run later)
        self.cached: list[int] = []  # the tokens whose keys and values are in the cache, from position 0
        self.reusable = 0  # how many of them, from position 0, were decoded in batches of two or more
        self.decoded = 0  # tokens decoded, for the throughput figures

    def close(self) -> None:
        """Free the batch (the context is the model's)."""
        if self.batch is not None:
            self.lib.llama_batch_free(self.batch)
            self.batch = None

    def keep(self, count: int) -> None:
        """Keep the first ``count`` cached tokens, drop the rest from the cache."""
        if count < len(self.cached) and not self.lib.llama_memory_seq_rm(self.memory, SEQUENCE, count, -1):
            self.lib.llama_memory_clear(self.memory, True)  # a cache that cannot drop a tail: start again
            count = 0
        self.cached = self.cached[:count]
        self.reusable = min(self.reusable, count)

    def decode(self, tokens: list[int], outputs: int) -> list[np.ndarray]:
        """Decode ``tokens`` after the cached ones; log-probabilities after each of the last ``outputs`` of them."""
        if len(self.cached) + len(tokens) > self.n_ctx:
            raise ValueError(f"{len(self.cached) + len(tokens)} tokens do not fit llama.cpp's {self.n_ctx}-token "
                             "context")
        rows, first_output = [], len(tokens) - outputs
        for start, end in chunks(len(tokens), self.n_batch):
            chunk = tokens[start:end]
            self.batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                self.batch.token[i], self.batch.pos[i] = token, len(self.cached) + i
                self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, SEQUENCE
                self.batch.logits[i] = start + i >= first_output
            status = self.lib.llama_decode(self.ctx, self.batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} on {len(chunk)} tokens at position "
                                   f"{len(self.cached)}")
            if self.reusable == len(self.cached) and len(chunk) >= MIN_BATCH:
                self.reusable += len(chunk)
            self.cached += chunk
            self.decoded += len(chunk)
            for i in range(max(first_output - start, 0), len(chunk)):
                pointer = self.lib.llama_get_logits_ith(self.ctx, i)
                rows.append(log_softmax(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))))
        return rows

    def context(self, ids: list[int]) -> np.ndarray:
        """Put ``ids`` in the cache (the prefix shared with what is there is kept); the log-probabilities after it."""
        if not ids:
            raise ValueError("an empty context")
        self.keep(max(0, min(shared_prefix(self.cached[:self.reusable], ids), len(ids) - MIN_BATCH)))
        return self.decode(ids[len(self.cached):], 1)[-1]

    def continuation(self, context_length: int, after: np.ndarray, ids: list[int]) -> tuple[float, bool]:
        """(log-probability of ``ids`` after the cached context of ``context_length`` tokens, all of them greedy?)"""
        self.keep(context_length)
        rows = [after, *(self.decode(ids[:-1], len(ids) - 1) if len(ids) > 1 else [])]
        logprob = float(sum(row[token] for row, token in zip(rows, ids, strict=True)))
        return logprob, all(int(row.argmax()) == token for row, token in zip(rows, ids, strict=True))
