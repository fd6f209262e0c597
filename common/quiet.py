"""Keep known third-party noise off our commands' output; ``--verbose`` shows everything.

    argv, verbose, quiet = take_flags(sys.argv[1:]); install(verbose)   # first thing in a CLI's main()

Filtered by message, at its source, nothing else: a warning or log line we do not list still shows.
  torchao       "Failed to load .../_C_mxfp8.cpython-310-...so" (logging, at import: prebuilt kernels for
                another Python or CUDA; torchao falls back to its Python kernels)
  torch         "<enum ...> is an Enum subclass ... register_constant() ... deprecated" (logging, from
                torch.utils._pytree when torchao registers its enums) and the old ``_register_pytree_node``
                FutureWarning
  transformers  the ``clean_up_tokenization_spaces`` notices (logging and FutureWarning)
  bitsandbytes  "Failed to load CPU gemm_4bit_forward from kernels-community" (offline CPU runs: it falls back
                to its bundled kernel)
Axolotl's and lm-eval's own progress and logs are not touched. Standard library only: every CLI may import it.
"""

from __future__ import annotations

import logging
import re
import warnings

# (logger that emits it, what its message says)
LOGGED_NOISE = (
    ("torchao", r"Failed to load .*_C\w*\.\S*so"),
    ("torch.utils._pytree", r"is an Enum subclass and is now natively supported"),
    ("transformers.tokenization_utils_base", r"clean_up_tokenization"),
    ("transformers.tokenization_utils_tokenizers", r"clean_up_tokenization"),
    ("transformers.tokenization_python", r"clean_up_tokenization"),
    # bitsandbytes on CPU, offline: it asks the hub for an optional kernel, then uses its own
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU \w+ from kernels-community"),
)
WARNED_NOISE = (r".*_register_pytree_node is deprecated", r".*clean_up_tokenization_spaces")
LINE_NOISE = re.compile("|".join(f"(?:{pattern})" for _, pattern in LOGGED_NOISE) + r"|_register_pytree_node is "
                        r"deprecated|clean_up_tokenization_spaces")

VERBOSE = False  # set by install(); read by is_noise() for the output of the processes we start


class MessageFilter(logging.Filter):
    """Drop records whose message matches ``pattern``."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def take_flags(argv: list[str]) -> tuple[list[str], bool, bool]:
    """``argv`` without ``--verbose`` and ``--quiet``, and whether each was given."""
    rest = [arg for arg in argv if arg not in ("--verbose", "--quiet")]
    return rest, "--verbose" in argv, "--quiet" in argv


def install(verbose: bool = False) -> None:
    """Filter the known noise (unless ``verbose``), before the libraries that print it are imported."""
    global VERBOSE
    VERBOSE = verbose
    if verbose:
        return
    for name, pattern in LOGGED_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MessageFilter) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(MessageFilter(pattern))
    for pattern in WARNED_NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def is_noise(line: str) -> bool:
    """Whether a line of a child process's output (Axolotl, torchrun) is known noise to keep off the terminal."""
    return not VERBOSE and bool(LINE_NOISE.search(line))
