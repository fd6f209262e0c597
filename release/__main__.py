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
the traceback; --verbose shows third-party import noise too; --quiet, no progress lines.
"""

from __future__ import annotations

import importlib
import sys

from common.errors import cli_main

COMMANDS = {"generate": "release.generate", "chat": "release.chat", "build": "release.build",
            "publish": "release.publish", "tools": "inference.llama_cpp_tools"}


def run(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


def main(argv: list[str] | None = None) -> None:
    cli_main(run, argv)


if __name__ == "__main__":
    main()
