"""Progress on our long steps: a tqdm bar on a terminal, one summary line otherwise, nothing with ``--quiet``.

    for row in track(rows, "sft: dedup"):        # wrap the iterable at the call site
        ...

On a terminal (stderr): ``sft: dedup:  42%|████      | 420000/1000000 [00:12<00:17, 34.1k rows/s]``.
Not a terminal (a log, a SLURM job): ``sft: dedup: 1000000 rows in 29.3 s (34130 rows/s)`` once the step ends.
Standard library and tqdm only: every CLI may import it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

SHOW = True  # the CLIs set it False for --quiet


class Tracked(Generic[T]):
    """An iterable that reports its progress while it is iterated; sized when what it wraps is."""

    def __init__(self, items: Iterable[T], what: str, total: int | None = None, unit: str = "rows") -> None:
        self.items, self.what, self.unit = items, what, unit
        self.total = total if total is not None else len(items) if hasattr(items, "__len__") else None

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError(f"{self.what}: the number of {self.unit} is not known in advance")
        return self.total

    def __iter__(self) -> Iterator[T]:
        if not SHOW:
            yield from self.items
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            size = shutil.get_terminal_size((100, 24))  # a pty without a size (script, CI) reports 0 x 0
            # whole counts, the rate scaled (34.1k rows/s); without a total, tqdm's own counter line
            bar = None if self.total is None else "{l_bar}{bar}| {n}/{total} [{elapsed}<{remaining}, {rate_fmt}]"
            yield from tqdm(self.items, desc=self.what, total=self.total, unit=f" {self.unit}", unit_scale=True,
                            bar_format=bar, file=sys.stderr, ncols=size.columns, nrows=size.lines, mininterval=0.5)
            return
        start, count = time.monotonic(), 0
        for item in self.items:
            count += 1
            yield item
        print(summary(self.what, count, time.monotonic() - start, self.unit), file=sys.stderr, flush=True)


def summary(what: str, count: int, seconds: float, unit: str = "rows") -> str:
    """``what: N rows in S s (R rows/s)``."""
    rate = f" ({count / seconds:.0f} {unit}/s)" if seconds > 0 else ""
    return f"{what}: {count} {unit} in {seconds:.1f} s{rate}"


def track(items: Iterable[T], what: str, total: int | None = None, unit: str = "rows") -> Tracked[T]:
    """``items``, reporting progress under the name ``what`` as they are iterated."""
    return Tracked(items, what, total, unit)
