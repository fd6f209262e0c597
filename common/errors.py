"""How a command ends on bad input: one line naming the file, line or key and the reason, exit 2, no traceback.

Every CLI (``python -m launch``, ``python -m data_prep``, ``python -m eval``) uses this one convention: a check
raises :class:`InputError` (or ``SystemExit`` with a message), and the entry point wraps its work in
:func:`one_line_errors`:

    debug, argv = split_debug(sys.argv[1:])
    with one_line_errors(debug):
        run(argv)

A ``SystemExit`` with a message (our checks), a file that cannot be read, text that is not UTF-8 and
JSON that is malformed or nested too deeply all end that way; Ctrl-C ends with one line and exit 130.
``--debug`` anywhere on the command line shows the traceback instead. Other exceptions are bugs and
keep their traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

INPUT_ERROR_EXIT = 2  # as argparse's usage errors
INTERRUPTED_EXIT = 130  # as a shell reports SIGINT
DEBUG_FLAG = "--debug"


class InputError(SystemExit):
    """Bad input (a command-line value, a recipe, a run folder): one line naming it and the reason."""

    exit_code = INPUT_ERROR_EXIT


def split_debug(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether ``--debug`` was given, the arguments without it)."""
    return DEBUG_FLAG in argv, [arg for arg in argv if arg != DEBUG_FLAG]


def one_line(err: BaseException) -> str:
    """The error in one line (several only when a check lists several places), with the notes added to it."""
    if isinstance(err, SystemExit):
        text = str(err.code)
    elif isinstance(err, KeyboardInterrupt):
        text = "interrupted"
    elif isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, RecursionError):
        text = "input nested too deeply to read"
    elif isinstance(err, UnicodeDecodeError):
        text = f"not UTF-8 text (byte {err.start})"
    else:
        text = f"{type(err).__name__}: {err}"
    return "; ".join([text, *getattr(err, "__notes__", [])])


@contextmanager
def one_line_errors(debug: bool = False) -> Iterator[None]:
    """Turn input errors raised in the block into one line on stderr and exit 2 (130 for Ctrl-C)."""
    try:
        yield
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            raise
        if debug:
            traceback.print_exc()
        print(one_line(err), file=sys.stderr)
        raise SystemExit(INPUT_ERROR_EXIT) from None
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(one_line(err), file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as err:
        if debug:
            raise
        print(one_line(err) + f" (rerun with {DEBUG_FLAG} for the traceback)", file=sys.stderr)
        raise SystemExit(INPUT_ERROR_EXIT) from None


def fraction(text: str) -> float:
    """argparse type: a number from 0 to 1 (not nan)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction from 0 to 1")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value
