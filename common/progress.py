"""Progress on our long steps: a tqdm bar on a terminal, plain lines otherwise, nothing with ``--quiet``.

``track`` wraps an iterable of rows; ``StepLine`` is one line for one step of a stage, fed by the caller.

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
from typing import Any, Generic, TextIO, TypeVar

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


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n}/{total} [{elapsed}<{remaining}{postfix}]"
UNSIZED_FORMAT = "{desc}: [{elapsed}{postfix}]"  # a step whose length is not known (yet)


def clock(seconds: float) -> str:
    """``95`` -> ``1:35``; ``3725`` -> ``1:02:05``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class StepLine:
    """One line for one step of a stage (prepare, train, merge, eval): position, figures, ETA.

        with StepLine("train", total=12, unit="steps") as line:
            line.update(4, loss="2.725", **{"tok/s": "38"})

    On a terminal it is a tqdm bar that updates in place. Otherwise (SLURM, CI, a pipe) it prints a plain line at the
    first position, then every ``every_s`` seconds or ``every_n`` positions, whichever comes first, never a carriage
    return; with ``--quiet`` only the closing line. The closing line is always printed.
    """

    def __init__(self, name: str, total: int | None = None, unit: str = "steps", stream: TextIO | None = None,
                 every_s: float = 30.0, every_n: int | None = None) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.stream = stream or sys.stderr
        self.every_s, self.every_n = every_s, every_n
        self.n, self.fields = 0, {}
        self.start = time.monotonic()
        self.last_print: tuple[float, int] | None = None
        self.first: tuple[float, int] | None = None  # when the first position came: the rate is measured from it
        self.bar: Any = None
        self.closed = False
        if SHOW and self.stream.isatty():
            from tqdm import tqdm

            size = shutil.get_terminal_size((100, 24))
            self.bar = tqdm(total=total, desc=name, unit=f" {unit}", file=self.stream, ncols=min(size.columns, 120),
                            nrows=size.lines,  # a pty without a size (script, CI) reports 0 x 0: tqdm would hide it
                            mininterval=0.2, bar_format=BAR_FORMAT if total else UNSIZED_FORMAT)

    def __enter__(self) -> StepLine:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close("stopped" if kind else "")

    def words(self) -> str:
        """The figures as ``loss 2.725, tok/s 38``."""
        return ", ".join(f"{key} {value}" for key, value in self.fields.items() if value is not None)

    def eta(self) -> float | None:
        """Seconds left at the mean rate so far; None before the first position or without a total."""
        if not self.total or self.n <= 0:
            return None
        if self.first is None or self.n <= self.first[1]:  # the first position's time holds the start-up too
            return None
        since, at = self.first
        return (time.monotonic() - since) / (self.n - at) * max(self.total - self.n, 0)

    def plain(self) -> str:
        """``train: 4/12 steps, loss 2.725, 0:47 elapsed, ETA 1:27``."""
        where = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}" if self.n else ""
        eta = self.eta()
        parts = [where, self.words(), f"{clock(time.monotonic() - self.start)} elapsed",
                 f"ETA {clock(eta)}" if eta is not None and self.n < (self.total or 0) else ""]
        return f"{self.name}: " + ", ".join(p for p in parts if p)

    def update(self, n: int | None = None, total: int | None = None, **fields: object) -> None:
        """Move to position ``n`` (absolute), set the total once known, and replace the named figures."""
        if total and total != self.total:
            self.total = total
            if self.bar is not None:
                self.bar.total, self.bar.bar_format = total, BAR_FORMAT
        self.fields.update({key: value for key, value in fields.items()})
        if n is not None:
            if self.bar is not None and n > self.n:
                self.bar.update(n - self.n)
            self.n = n
            if self.first is None and n > 0:
                self.first = (time.monotonic(), n)
        if self.bar is not None:
            self.bar.set_postfix_str(self.words(), refresh=True)
            return
        if not SHOW:
            return
        now = time.monotonic()
        since, at = self.last_print or (self.start, 0)
        due = (self.last_print is None and self.n > 0) or now - since >= self.every_s or (
            self.every_n is not None and self.n - at >= self.every_n)
        if due and self.n < (self.total or self.n + 1):
            print(self.plain(), file=self.stream, flush=True)
            self.last_print = (now, self.n)

    def close(self, status: str = "") -> None:
        """End the line: the bar stays as it is, or a plain closing line (``train: 12/12 steps, ..., done``)."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            if status:
                self.bar.set_postfix_str(", ".join(p for p in (self.words(), status) if p), refresh=True)
            self.bar.close()
            return
        line = self.plain()
        print(f"{line}, {status}" if status else line, file=self.stream, flush=True)
