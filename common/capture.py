"""A library's output into a log file: everything written to file descriptors 1 and 2 while a block runs.

    with output_to_log(run / "logs/eval.log", "eval run", tee=quiet.VERBOSE) as terminal:
        with StepLine("evaluate", stream=terminal) as line:   # our own lines still reach the terminal
            ...

Python's prints, logging, warnings and tqdm bars, C libraries' output and child processes' all go through a pipe
to a thread that writes them to the log with secret values redacted (common/secrets.py); ``tee`` copies them to
the terminal too (``--verbose``). The descriptors are restored when the block ends, however it ends.
``output_to_log`` also turns an exception in the block into one line with its cause, the log's last relevant
lines and its path on stderr (the traceback goes to the log), and exit 1. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, TextIO

from common.secrets import redact_text, secret_values

TAIL_LINES = 15
PIPE_BYTES = 1 << 20  # a bigger pipe: a C library writing while it holds the GIL does not wait on our thread
MAX_PENDING = 1 << 16  # flush a line that long even without its end
# the end of a tqdm bar: "[00:00<00:00, 3.2it/s]", "[00:00, ? examples/s]", "[01:02<00:10,  1.79s/it]"
BAR_END = re.compile(r"\[\d+:\d\d(?::\d\d)?(?:<[^\]]*)?,[^\]]*/(?:s|it)\]")
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TITLE = "==> "
FAILED_EXIT = 1


def flush_streams() -> None:
    """Flush Python's stdout and stderr, and the C library's buffers, into whatever fds 1 and 2 are now."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError, AttributeError):
            stream.flush()
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(None).fflush(None)


def widen_pipe(fd: int) -> None:
    """Ask Linux for a 1 MiB pipe (best effort: the default 64 kB elsewhere)."""
    with suppress(ImportError, OSError):
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)


def redacted_bytes(data: bytes, secrets: list[str]) -> bytes:
    """``data`` with every secret value replaced, any bytes kept as they are."""
    if not secrets:
        return data
    return redact_text(data.decode("utf-8", "surrogateescape"), secrets).encode("utf-8", "surrogateescape")


def copy_pipe(read_fd: int, outputs: list[BinaryIO], secrets: list[str]) -> None:
    """Copy the pipe into ``outputs`` (log, terminal) until every writer has closed it, whole lines at a time."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            chunk = b""
        pending += chunk
        cut = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1  # a secret never spans a line end
        if chunk and not cut and len(pending) < MAX_PENDING:
            continue
        cut = cut if chunk and cut else len(pending)
        data, pending = redacted_bytes(pending[:cut], secrets), pending[cut:]
        for output in outputs:
            try:
                output.write(data)
                output.flush()
            except (OSError, ValueError):  # a full disk or a closed terminal: keep draining the pipe
                pass
        if not chunk:
            break
    os.close(read_fd)


@contextmanager
def captured_output(log: Path, tee: bool = False, title: str = "") -> Iterator[TextIO]:
    """Send fds 1 and 2 into ``log`` (overwritten) while the block runs; yield a text stream on the terminal's stderr.

    ``title`` starts the log (``==> title, <local time>``); ``tee`` also copies everything to the terminal.
    """
    secrets = secret_values()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as handle:
        if title:
            handle.write(redacted_bytes(f"{TITLE}{title}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), secrets))
        flush_streams()
        saved_out, saved_err = os.dup(1), os.dup(2)
        read_fd, write_fd = os.pipe()
        widen_pipe(write_fd)
        encoding = sys.stderr.encoding or "utf-8"
        with open(os.dup(saved_err), "w", buffering=1, encoding=encoding, errors="replace") as terminal, \
                open(os.dup(saved_err), "wb") as echo:
            pump = threading.Thread(target=copy_pipe, args=(read_fd, [handle, echo] if tee else [handle], secrets),
                                    name="captured-output", daemon=True)
            pump.start()
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
            try:
                yield terminal
            finally:
                flush_streams()
                os.dup2(saved_out, 1)
                os.dup2(saved_err, 2)
                os.close(saved_out)
                os.close(saved_err)
                pump.join(timeout=10)  # the pipe ends when its last writer (a lingering child too) lets go


def readable(line: str) -> str:
    """A log line as a person reads it: the last piece between carriage returns that is not a progress bar."""
    for piece in reversed(ESCAPES.sub("", line).split("\r")):
        found = list(BAR_END.finditer(piece))
        text = piece[found[-1].end():] if found else piece  # a message written right after a bar keeps its words
        if text.strip():
            return text.rstrip()
    return ""


def log_tail(log: Path, count: int = TAIL_LINES) -> list[str]:
    """The log's last ``count`` lines worth reading: no progress bars, no blank lines, no terminal escapes."""
    with open(log, "rb") as handle:
        handle.seek(max(0, handle.seek(0, os.SEEK_END) - (1 << 18)))
        text = handle.read().decode("utf-8", "replace")
    lines = [readable(line) for line in text.split("\n")]
    return [line for line in lines if line and not line.startswith(TITLE)][-count:]


def cause_words(err: BaseException) -> str:
    """``Type: message`` in one line, with the error it was raised from (``from ArrowInvalid: ...``)."""
    words = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(":")
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    if root is not err:
        words += " (from " + " ".join(f"{type(root).__name__}: {root}".split()).rstrip(":") + ")"
    return words if len(words) <= 400 else words[:400] + " ..."


def failure_lines(what: str, err: BaseException, log: Path, tail: list[str]) -> list[str]:
    """``WHAT failed: Type: message`` in one line, then the log's last lines and its path."""
    lines = [f"{what} failed: {cause_words(err)}"]
    if tail:
        lines += [f"  last lines of {log}:", *(f"    {line[:200]}" for line in tail)]
    return [*lines, f"  traceback and everything else: {log}"]


@contextmanager
def output_to_log(log: Path, what: str, tee: bool = False, title: str = "") -> Iterator[TextIO]:
    """:func:`captured_output`; an exception in the block ends the command: its cause in one line, exit 1."""
    inside = False
    try:
        with captured_output(log, tee, title) as terminal:
            inside = True
            yield terminal
    except Exception as err:  # whatever the library raised: a line here, its traceback in the log
        if not inside:  # the log itself could not be opened: the caller's one-line error
            raise
        tail = log_tail(log)
        with open(log, "ab") as handle:  # after a progress bar's last "\r": on a line of its own
            handle.write(b"\n" + redacted_bytes(traceback.format_exc().encode("utf-8", "replace"), secret_values()))
        print("\n".join(failure_lines(what, err, log, tail)), file=sys.stderr, flush=True)
        raise SystemExit(FAILED_EXIT) from None
