"""python -m release generate RUN_OR_MODEL [PROMPT ...]: one JSON line per prompt on stdout.

Prompts are the arguments, else JSONL on stdin, one ``{"prompt": "...", "system": "..."}`` per line ("system"
optional: absent, --system; "" for none). Each output line: ``{"prompt", "text", "tokens", "stop",
"stop_token"}`` (inference/reply.py). stdin is read and checked whole before the model loads (JSON, keys, UTF-8
text), and every prompt is measured against the model's context before the first is answered: a bad line ends
the command in one line naming it, and nothing is answered.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, replace

from common.errors import InputError
from inference.model_source import find_source, load_model
from inference.reply import add_decoding_options, check_fits, decoding_of, first_messages, respond, unencodable

KEYS = ("prompt", "system")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m release generate", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", metavar="RUN_OR_MODEL",
                        help="runs/<id>, an adapter folder, a model folder or a .gguf file (run by llama.cpp)")
    parser.add_argument("prompts", metavar="PROMPT", nargs="*", help="prompts (default: JSONL on stdin)")
    add_decoding_options(parser)
    return parser.parse_args(argv)


def read_prompts(lines: Iterable[str | bytes], where: str = "stdin") -> list[dict[str, str]]:
    """The prompts of JSONL ``lines`` (text, or bytes read as UTF-8); InputError naming the line of the first bad
    one."""
    return [row for _, row in numbered_prompts(lines, where)]


def numbered_prompts(lines: Iterable[str | bytes], where: str = "stdin") -> list[tuple[int, dict[str, str]]]:
    """(line number, prompt) of each prompt of JSONL ``lines``, as :func:`read_prompts` reads them."""
    prompts = []
    for number, line in enumerate(lines, 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{where} line {number}: not UTF-8 text (byte {err.start + 1})") from None
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
        for key in KEYS:
            if key in row and (why := unencodable(row[key])) is not None:
                raise InputError(f"{where} line {number}: {key}: {why}")
        prompts.append((number, row))
    if not prompts:
        raise InputError(f"{where}: no prompts")
    return prompts


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.prompts:
        prompts = [{"prompt": prompt} for prompt in args.prompts]
        places = [f"PROMPT {number}" for number in range(1, len(prompts) + 1)]
        for place, prompt in zip(places, args.prompts, strict=True):
            if (why := unencodable(prompt)) is not None:
                raise InputError(f"{place}: {why}")
    elif sys.stdin.isatty():
        raise InputError("no PROMPT given: pass prompts as arguments or JSONL lines on stdin")
    else:
        numbered = numbered_prompts(getattr(sys.stdin, "buffer", sys.stdin))  # bytes: a bad one is named by line
        prompts, places = [row for _, row in numbered], [f"stdin line {number}" for number, _ in numbered]
    if (why := unencodable(args.system)) is not None:
        raise InputError(f"--system: {why}")
    source = find_source(args.model)
    model, tokenizer = load_model(source)
    decoding = decoding_of(args)
    asked = [replace(decoding, system=row.get("system", decoding.system)) for row in prompts]
    conversations = [[*first_messages(d), {"role": "user", "content": row["prompt"]}]
                     for d, row in zip(asked, prompts, strict=True)]
    for place, messages, d in zip(places, conversations, asked, strict=True):  # every one before any answer
        check_fits(model, tokenizer, messages, d, place)
    for row, messages, d in zip(prompts, conversations, asked, strict=True):
        reply = respond(model, tokenizer, messages, d)
        print(json.dumps({"prompt": row["prompt"], **asdict(reply)}, ensure_ascii=False), flush=True)
