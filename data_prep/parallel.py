"""Run a function over chunks of rows in forked worker processes; results come back in input order.

The order of results never depends on the worker count, so neither do the build's outputs. At most
two chunks per worker are in flight, so memory stays bounded by the chunk size, not the input size.
State the workers need (the benchmark index, the tokenizer path) is put in ``SHARED`` before the
fork and inherited, never pickled.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from common.progress import track

SHARED: dict[str, Any] = {}  # set by the parent before forking; read by worker functions
MAX_CHUNK = 2000


def default_workers() -> int:
    """The cores this process may run on (a SLURM allocation or taskset limits them), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off in this process for a bulk step (workers run theirs).

    Rows are acyclic dicts, lists and strings, freed by reference counting; as hundreds of thousands of
    them pile up the collector would walk them again and again, for nothing (a tenth of a build's time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def map_chunks(fn: Callable[[list[Any]], Any], items: Iterable[Any], count: int, workers: int | None = None,
               shared: dict[str, Any] | None = None, label: str | None = None) -> Iterator[Any]:
    """``fn`` of each consecutive chunk of ``items`` (``count`` of them), in input order.

    With one worker (or no fork on this platform) it runs in this process. Chunks are small enough that
    every worker gets several, and at most ``MAX_CHUNK`` items. ``label`` names the step in the progress
    bar (common/progress.py), which counts the items as they are handed out.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if label is not None:
        items = track(items, label, total=count)
    SHARED.clear()
    SHARED.update(shared or {})
    try:
        yield from _run(fn, items, count, workers)
    finally:
        SHARED.clear()


def _run(fn: Callable[[list[Any]], Any], items: Iterable[Any], count: int, workers: int) -> Iterator[Any]:
    size = max(1, min(MAX_CHUNK, -(-count // (4 * workers))))
    if workers == 1 or count <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for chunk in chunked(items, size):
            yield fn(chunk)
        return
    gc.freeze()  # the workers' garbage collector then leaves the parent's objects (and their pages) alone
    try:
        pool = multiprocessing.get_context("fork").Pool(min(workers, -(-count // size)), initializer=gc.enable)
    finally:
        gc.unfreeze()
    with pool:
        pending: deque = deque()
        for chunk in chunked(items, size):
            pending.append(pool.apply_async(fn, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
