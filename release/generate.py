"""python -m release generate RUN_OR_MODEL [PROMPT ...]: one JSON line per prompt on stdout.

Prompts are the arguments, else JSONL on stdin, one ``{"prompt": "...", "system": "..."}`` per line ("system"
optional: absent, --system; "" for none). Each output line: ``{"prompt", "text", "tokens", "stop",
"stop_token"}`` (inference/reply.py). stdin is read and checked whole before the model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, replace

from common.errors import InputError
from inference.model_source import find_source, load_model
from inference.reply import Decoding, add_decoding_options, decoding_of, first_messages, respond

KEYS = ("prompt", "system")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m release generate", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", metavar="RUN_OR_MODEL",
                        help="runs/<id>, an adapter folder, a model folder or a .gguf file (run by llama.cpp)")
    parser.add_argument("prompts", metavar="PROMPT", nargs="*", help="prompts (default: JSONL on stdin)")
    add_decoding_options(parser)
    return parser.parse_args(argv)


def read_prompts(lines: Iterable[str], where: str = "stdin") -> list[dict[str, str]]:
    """The prompts of JSONL ``lines``; InputError naming the line of the first bad one."""
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{where} line {number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise InputError(f'{where} line {number}: expected {{"prompt": "...", "system": optional}}')
        if unknown := sorted(set(row) - set(KEYS)):
            raise InputError(f"{where} line {number}: unknown key {unknown[0]!r} (keys: {', '.join(KEYS)})")
        if not isinstance(row.get("system", ""), str):
            raise InputError(f"{where} line {number}: system is not a string")
        prompts.append(row)
    if not prompts:
        raise InputError(f"{where}: no prompts")
    return prompts


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.prompts:
        prompts = [{"prompt": prompt} for prompt in args.prompts]
    elif sys.stdin.isatty():
        raise InputError("no PROMPT given: pass prompts as arguments or JSONL lines on stdin")
    else:
        prompts = read_prompts(sys.stdin)
    source = find_source(args.model)
    model, tokenizer = load_model(source)
    decoding = decoding_of(args)
    for row in prompts:
        asked: Decoding = replace(decoding, system=row.get("system", decoding.system))
        reply = respond(model, tokenizer, [*first_messages(asked), {"role": "user", "content": row["prompt"]}], asked)
        print(json.dumps({"prompt": row["prompt"], **asdict(reply)}, ensure_ascii=False), flush=True)
