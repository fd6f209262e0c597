"""python -m release chat [RUN_OR_MODEL]: talk to a model, its reply streamed as it is generated.

Multi-turn, with the card's system prompt and greedy decoding (inference/reply.py). Type /reset to start over,
/exit (or end of input, Ctrl-D) to leave; Ctrl-C during a reply drops that turn. A line that is not UTF-8 text, or
that would not fit the model's context with the conversation and --max-new-tokens, is refused in one line naming
it, and the conversation goes on without it. Default model: the latest
successful dpo run, else sft.
"""

from __future__ import annotations

import argparse
import sys

from common.errors import InputError
from inference.model_source import find_source, load_model
from inference.reply import Reply, add_decoding_options, check_fits, decoding_of, first_messages, respond, unencodable

YOU, MODEL = "you> ", "model> "


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m release chat", description=__doc__.split("\n\n")[1])
    parser.add_argument("model", metavar="RUN_OR_MODEL", nargs="?",
                        help="runs/<id>, an adapter folder, a model folder or a .gguf file (llama.cpp) "
                             "(default: the latest dpo, else sft, run)")
    add_decoding_options(parser)
    return parser.parse_args(argv)


def stop_note(reply: Reply, max_new_tokens: int) -> str | None:
    """A line for stderr when a reply did not end on its own, or was empty."""
    if reply.stop == "max_new_tokens":
        return f"[cut at {max_new_tokens} new tokens: --max-new-tokens]"
    return "[empty reply]" if not reply.text.strip() else None


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    source = find_source(args.model)
    decoding = decoding_of(args)
    print(f"loading {source.describe()} ...", file=sys.stderr)
    model, tokenizer = load_model(source)
    from transformers import TextStreamer

    if (why := unencodable(decoding.system)) is not None:
        raise InputError(f"--system: {why}")
    if sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    if hasattr(sys.stdin, "reconfigure"):  # an undecodable byte arrives as a lone surrogate, refused below
        sys.stdin.reconfigure(errors="surrogateescape")
    mode = f"temperature {decoding.temperature}" if decoding.temperature else "greedy"
    print(f"{mode}, at most {decoding.max_new_tokens} new tokens a reply; /reset starts over, /exit leaves",
          file=sys.stderr)
    messages = first_messages(decoding)
    number = 0
    while True:
        try:
            number += 1
            text = input(YOU).strip()
            if not sys.stdin.isatty():
                print(text.encode("utf-8", "backslashreplace").decode("utf-8"))  # a piped conversation: a transcript
        except EOFError:
            print()
            return
        if text == "/exit":
            return
        if text == "/reset":
            messages = first_messages(decoding)
            print("[conversation reset]", file=sys.stderr)
            continue
        if not text or text.startswith("/"):
            if text:
                print(f"[unknown command {text}: /reset or /exit]", file=sys.stderr)
            continue
        messages.append({"role": "user", "content": text})
        try:
            check_fits(model, tokenizer, messages, decoding, f"line {number}")
        except InputError as err:
            messages.pop()
            print(f"[{err.code}: not sent]", file=sys.stderr)
            continue
        print(MODEL, end="", flush=True)
        try:
            reply = respond(model, tokenizer, messages, decoding,
                            TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True))
        except KeyboardInterrupt:
            messages.pop()
            print("\n[interrupted: that turn is dropped]", file=sys.stderr)
            continue
        messages.append({"role": "assistant", "content": reply.text})
        if line := stop_note(reply, decoding.max_new_tokens):
            print(line, file=sys.stderr)
