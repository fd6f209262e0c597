"""How every command ends on an error: one line, no traceback; exit 2 for bad input, 1 for a failure of the world.

Every CLI (``python -m launch``, ``python -m data_prep``, ``python -m eval``, ``python -m release``) starts the same
way, through :func:`cli_main`:

    def main(argv=None):
        cli_main(run, argv)      # run(argv): the command's work, on argv without --debug, --verbose, --quiet

- bad input (a check raises :class:`InputError` or ``SystemExit`` with a message; a command-line value argparse
  refuses; a named file that is missing, a folder, unreadable; text that is not UTF-8; JSON that is malformed or
  nested too deeply): one line naming the file, line or key and the reason, exit 2;
- a failure of the world (:class:`WorldError`; a network client's error; a full disk, any other ``OSError``):
  one line, exit 1;
- anything else is a bug: one line naming the exception and the file that keeps its traceback (secrets
  redacted): the command's log where it keeps one (:func:`note_log`, launch's ``logs/launch.log``), else
  ``$OPENBIOLLM_CACHE/errors/<time>-<pid>.log``; exit 1;
- Ctrl-C: one line, exit 130.

``--debug`` anywhere on the command line shows the traceback as well; ``--quiet`` turns progress lines off and
``--verbose`` shows third-party import noise (common/quiet.py). A refused combination of flags is refused before
anything is written.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.files import cache_root
from common.secrets import redact_text, secret_values

INPUT_ERROR_EXIT = 2  # as argparse's usage errors
WORLD_ERROR_EXIT = 1  # no network, a full disk, a bug
INTERRUPTED_EXIT = 130  # as a shell reports SIGINT
DEBUG_FLAG = "--debug"
HINT = f"rerun with {DEBUG_FLAG} for the traceback"
INPUT_ERRNOS = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EEXIST,
                errno.ENAMETOOLONG, errno.ELOOP}  # a path the user named that cannot serve

NETWORK_MODULES = {"httpx", "httpcore", "requests", "urllib3", "huggingface_hub"}  # their errors: the world's
_active = False  # inside cli_main
_log: Path | None = None  # where the running command logs (note_log): an unexpected error's traceback goes there


class InputError(SystemExit):
    """Bad input (a command-line value, a recipe, a run folder): one line naming it and the reason."""

    exit_code = INPUT_ERROR_EXIT


class WorldError(SystemExit):
    """A failure of the world, not of the input (no network, the hub refuses, a run in use): one line, exit 1."""

    exit_code = WORLD_ERROR_EXIT


class StepFailed(WorldError):
    """A step that failed (a trainer, a merge): its own lines, the cause first, then the log's tail and path; exit 1."""

    label = ""  # the message names the run and the step itself


def note_log(path: Path | None) -> None:
    """Name the log of the running command: an unexpected error's traceback is appended to it, and named."""
    global _log
    _log = path


def error_log() -> Path:
    """Where a command that keeps no log of its own leaves an unexpected error's traceback: one file per error,
    under the project's cache (``$OPENBIOLLM_CACHE/errors/``)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return cache_root() / "errors" / f"{stamp}-{os.getpid()}.log"


def keep_traceback(err: BaseException) -> Path | None:
    """Append ``err``'s traceback, secrets redacted, to the command's log (:func:`note_log`), else to a new
    :func:`error_log`; the file's path, or None when it cannot be written."""
    path = _log or error_log()
    text = redact_text(f"{' '.join(sys.argv)}\n{''.join(traceback.format_exception(err))}", secret_values())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(text)
    except OSError:
        return None
    return path


def split_debug(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether ``--debug`` was given, the arguments without it)."""
    return DEBUG_FLAG in argv, [arg for arg in argv if arg != DEBUG_FLAG]


def is_input(err: BaseException) -> bool:
    """Whether ``err`` is the input's fault (exit 2) rather than the world's or a bug (exit 1)."""
    if isinstance(err, OSError):
        return err.filename is not None and err.errno in INPUT_ERRNOS
    return isinstance(err, (SystemExit, UnicodeDecodeError, RecursionError, json.JSONDecodeError))


def is_network(err: BaseException) -> bool:
    """Whether ``err`` is a network client's (httpx, requests, urllib3, the hub's): the world's, not a bug."""
    return isinstance(err, (ConnectionError, TimeoutError)) or any(
        kind.__module__.split(".")[0] in NETWORK_MODULES for kind in type(err).__mro__)


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
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if not isinstance(err, SystemExit):  # a check may list several places; anything else stays one line
        text = " ".join(text.split())
    return "; ".join([text, *getattr(err, "__notes__", [])])


def _usage_error(parser: argparse.ArgumentParser, message: str) -> None:
    """argparse's usage error as one line (exit 2), the usage behind --help."""
    raise InputError(f"{parser.prog}: {message} ({parser.prog} --help shows the usage)")


@contextmanager
def one_line_errors(debug: bool = False) -> Iterator[None]:
    """Every error raised in the block as one line on stderr: exit 2 (bad input), 1 (the world, a bug) or 130
    (Ctrl-C); ``debug``: the traceback first. argparse's usage errors in the block are one line too."""
    usage_error = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _usage_error  # type: ignore[method-assign]
    try:
        yield
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            raise
        if debug:
            traceback.print_exc()
        print(f"{getattr(err, 'label', 'error: ')}{one_line(err)}", file=sys.stderr)
        raise SystemExit(getattr(err, "exit_code", INPUT_ERROR_EXIT)) from None
    except KeyboardInterrupt as err:
        if debug:
            raise
        print(one_line(err), file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT) from None
    except Exception as err:
        if debug:
            traceback.print_exc()
        code = INPUT_ERROR_EXIT if is_input(err) else WORLD_ERROR_EXIT
        bug = code == WORLD_ERROR_EXIT and not isinstance(err, OSError) and not is_network(err)
        kept = keep_traceback(err) if bug else None
        where = f" (traceback in {kept}; {HINT})" if kept else f" ({HINT})"
        print(f"error: {'unexpected error: ' if bug else ''}{one_line(err)}{'' if debug else where}", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        argparse.ArgumentParser.error = usage_error  # type: ignore[method-assign]


def cli_main(run: Callable[[list[str]], object], argv: list[str] | None = None, debug_streams: bool = False) -> None:
    """The one entry of every CLI: ``--debug``, ``--verbose`` and ``--quiet`` taken from ``argv`` (default the
    command line) and applied, then ``run(rest)`` with every error ending as :func:`one_line_errors` says.
    ``debug_streams``: ``--debug`` streams the processes' output as ``--verbose`` does (launch: a trainer's
    traceback)."""
    global _active
    if _active:  # a command run by another's entry (python -m launch check ...): that entry handles it all
        run(list(sys.argv[1:] if argv is None else argv))
        return
    from common import progress, quiet

    debug, argv = split_debug(sys.argv[1:] if argv is None else list(argv))
    argv, verbose, silent = quiet.take_flags(argv)
    quiet.install(verbose)
    quiet.VERBOSE = verbose or (debug and debug_streams)
    progress.SHOW = not silent
    note_log(None)
    _active = True
    try:
        with one_line_errors(debug):
            run(argv)
    finally:
        _active = False


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
