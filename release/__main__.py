"""A trained run as a model to use: generate from a script, or chat.

    python -m release generate RUN_OR_MODEL [PROMPT ...]   one JSON line per prompt (or JSONL prompts on stdin)
    python -m release chat [RUN_OR_MODEL]                  interactive, streamed; /reset, /exit (make chat RUN=...)
    python -m release build [RUN] [--name NAME] [--out releases]   releases/<name>/: weights, card, release.json
    python -m release publish releases/<name> --repo ORG/NAME [--private] [--dry-run]   one hub commit (HF_TOKEN)
    python -m release tools                                 llama.cpp's GGUF tools: built once, cached

RUN_OR_MODEL: runs/<id> (its merged/, else its adapter/ on its base), an adapter folder, a model folder or a .gguf
file (llama.cpp, inference/gguf_model.py).
Both use the model card's system prompt (--system), greedy decoding (--temperature), --max-new-tokens, and stop on
the eos and every end-of-turn token of the chat template. Bad input ends with one line (exit 2); --debug shows
the traceback; --verbose shows third-party import noise too.
"""

from __future__ import annotations

import importlib
import sys

from common import quiet
from common.errors import one_line_errors, split_debug

COMMANDS = {"generate": "release.generate", "chat": "release.chat", "build": "release.build",
            "publish": "release.publish", "tools": "inference.llama_cpp_tools"}


def main(argv: list[str] | None = None) -> None:
    debug, argv = split_debug(sys.argv[1:] if argv is None else argv)
    argv, verbose, _ = quiet.take_flags(argv)
    quiet.install(verbose)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    with one_line_errors(debug):
        importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main()
