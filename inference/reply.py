"""One reply to a conversation: the tokenizer's chat template, the card's decoding, stop on any terminator.

``stop`` says what ended it: ``"end_of_turn"`` (an end-of-turn token such as ``<|eot_id|>`` or ``<|im_end|>``),
``"eos"`` (the tokenizer's eos when it is no end-of-turn token, e.g. Llama-3's ``<|end_of_text|>``) or
``"max_new_tokens"``. ``tokens`` counts every new token, the stopping one included.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Any

from common.errors import InputError, positive_int
from inference.card_usage import MAX_NEW_TOKENS, SYSTEM_PROMPT, TOP_P
from inference.terminators import END_OF_TURN_TOKENS, SAMPLING_KEYS, terminators


@dataclass(frozen=True)
class Decoding:
    """How to answer: greedy unless ``temperature`` > 0 (then top-p sampling, as in the card's snippet)."""

    system: str = SYSTEM_PROMPT
    max_new_tokens: int = MAX_NEW_TOKENS
    temperature: float = 0.0


@dataclass(frozen=True)
class Reply:
    text: str
    tokens: int
    stop: str
    stop_token: str | None


def first_messages(decoding: Decoding) -> list[dict[str, str]]:
    """A conversation's first messages: the system prompt, unless it is empty."""
    return [{"role": "system", "content": decoding.system}] if decoding.system else []


def unencodable(text: str) -> str | None:
    """Why ``text`` cannot be a prompt (a lone surrogate: an undecodable byte or a ``\\ud800`` escape), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"not UTF-8 text (character {err.start + 1} is {text[err.start]!a}, an undecodable byte or a lone " \
               "surrogate)"
    return None


def check_messages(messages: list[dict[str, str]], where: str = "the conversation") -> None:
    """InputError naming ``where`` unless every message is text a tokenizer can take."""
    for message in messages:
        if (why := unencodable(message["content"])) is not None:
            raise InputError(f"{where}: {message['role']} message: {why}")


def context_of(model: Any) -> int | None:
    """The most tokens ``model`` attends to: a GGUF's llama.cpp context, else its config's position count."""
    if getattr(model, "is_gguf", False):
        return model.context
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


def prompt_ids(model: Any, tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt's token ids: the chat template over ``messages``, with the generation prompt."""
    if getattr(model, "is_gguf", False):
        return model.tokenizer.prompt_ids(messages)
    if not tokenizer.chat_template:
        raise InputError(f"{tokenizer.name_or_path}: its tokenizer has no chat template")
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                              return_dict=True)["input_ids"])


def check_fits(model: Any, tokenizer: Any, messages: list[dict[str, str]], decoding: Decoding,
               where: str = "the prompt") -> None:
    """InputError naming ``where`` when the prompt and ``max_new_tokens`` exceed the model's context: refused
    before any generation, rather than minutes of it on positions the model never saw."""
    check_messages(messages, where)
    context = context_of(model)
    if context is None:
        return
    length = len(prompt_ids(model, tokenizer, messages))
    if length + decoding.max_new_tokens > context:
        raise InputError(f"{where}: {length} prompt tokens and --max-new-tokens {decoding.max_new_tokens} exceed "
                         f"the model's {context}-token context")


def generation_settings(model: Any, tokenizer: Any, decoding: Decoding) -> Any:
    """The model's generation config with the card's decoding; eos: its own eos ids and every terminator."""
    own = model.generation_config.eos_token_id
    own = [] if own is None else [own] if isinstance(own, int) else list(own)
    stops = list(dict.fromkeys([*terminators(tokenizer), *own]))
    if not stops:
        raise InputError(f"{tokenizer.name_or_path}: no eos token and no known end-of-turn token in the tokenizer")
    config = copy.deepcopy(model.generation_config)
    sampling = decoding.temperature > 0
    config.update(max_new_tokens=decoding.max_new_tokens, do_sample=sampling, eos_token_id=stops,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
                  **({"temperature": decoding.temperature, "top_p": TOP_P} if sampling
                     else dict.fromkeys(SAMPLING_KEYS)))
    return config


def respond(model: Any, tokenizer: Any, messages: list[dict[str, str]], decoding: Decoding,
            streamer: Any = None) -> Reply:
    """Generate the assistant's next turn after ``messages``."""
    return reply_of(tokenizer, *new_tokens(model, tokenizer, messages, decoding, streamer))


def new_tokens(model: Any, tokenizer: Any, messages: list[dict[str, str]], decoding: Decoding,
               streamer: Any = None) -> tuple[list[int], list[int]]:
    """(the next turn's new token ids, the stopping one included; the ids that stop it)."""
    check_messages(messages)
    if getattr(model, "is_gguf", False):  # inference/gguf_model.py: llama.cpp answers
        return model.new_tokens(messages, decoding, streamer)
    import torch

    if not tokenizer.chat_template:
        raise InputError(f"{tokenizer.name_or_path}: its tokenizer has no chat template")
    context = context_of(model)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt").to(model.device)
    length = inputs["input_ids"].shape[1]
    if context is not None and length + decoding.max_new_tokens > context:
        raise InputError(f"the prompt: {length} prompt tokens and --max-new-tokens {decoding.max_new_tokens} exceed "
                         f"the model's {context}-token context")
    settings = generation_settings(model, tokenizer, decoding)
    with torch.inference_mode():
        output = model.generate(**inputs, generation_config=settings, streamer=streamer)
    return output[0, inputs["input_ids"].shape[1]:].tolist(), list(settings.eos_token_id)


def reply_of(tokenizer: Any, new: list[int], stops: list[int]) -> Reply:
    """The reply of new token ids: its text without special tokens, and what stopped it."""
    last = new[-1] if new else None
    if last in stops:
        token = tokenizer.convert_ids_to_tokens(last)
        stop = "end_of_turn" if token in END_OF_TURN_TOKENS else "eos"
        return Reply(tokenizer.decode(new[:-1], skip_special_tokens=True), len(new), stop, token)
    return Reply(tokenizer.decode(new, skip_special_tokens=True), len(new), "max_new_tokens", None)


def add_decoding_options(parser: argparse.ArgumentParser) -> None:
    """--system, --max-new-tokens, --temperature: the same for generate and chat."""
    parser.add_argument("--system", default=SYSTEM_PROMPT,
                        help="the system prompt (default: the model card's; '' for none)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=MAX_NEW_TOKENS,
                        help=f"most new tokens per reply (default {MAX_NEW_TOKENS}, as the card's snippet)")
    parser.add_argument("--temperature", type=non_negative, default=0.0,
                        help=f"0 (default, the card's advice): greedy; above 0: sampling with top_p {TOP_P}")


def decoding_of(args: argparse.Namespace) -> Decoding:
    return Decoding(system=args.system, max_new_tokens=args.max_new_tokens, temperature=args.temperature)


def non_negative(text: str) -> float:
    """argparse type: a number of 0 or more (not nan)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return value
