"""Does the model end its turn? Greedy answers to held-out prompts, and figures benchmarks cannot show.

    python -m eval generate-check [--model RUN_OR_GGUF] [--max-new-tokens N] [--prompts FILE] [--out DIR]

Benchmarks score log-likelihoods, so a model that never learned its end-of-turn token looks fine on them.
Prompts: the run's validation rows (each dataset of its manifest, ``X.jsonl`` -> ``X.validation.jsonl``; the
messages before the last assistant turn; at most 20) and a few of each use case the model card lists
(``eval/fixtures/generation_prompts.jsonl``, or ``--prompts``: JSONL ``{"id", "use_case", "prompt"}``), answered
greedily with the card's system prompt (inference/reply.py). Figures, per use case and overall:

- stop rate: the share of answers that ended on a terminator (end-of-turn or eos) before ``--max-new-tokens``;
- median and p95 (nearest rank) length in new tokens, the stopping token included;
- repetition: the share of answers in which some 4-gram of token ids occurs 3 times or more (a loop);
- leaks: the share of answers whose text, decoded without skipping special tokens, holds a chat-template token
  (``<|start_header_id|>``, ``<|im_start|>``, ``<|eot_id|>``...) before the token that stopped it.

A GGUF file (``--model X.gguf``) is answered by llama.cpp (inference/gguf_model.py) with the same prompts and stops.
Writes ``runs/<id>/eval/generation_check.json`` (figures and every answer) and adds the figures to
``results.json`` beside it under ``generation_check`` when there is one. The model's own output goes to
``runs/<id>/logs/generation_check.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from common import quiet
from common.capture import output_to_log
from common.errors import InputError, positive_int
from common.files import write_json_atomic
from common.progress import StepLine, clock
from common.rundir import RunWriter, final_place, read_manifest
from inference.card_usage import MAX_NEW_TOKENS
from inference.gguf_file import GGUFFile, is_gguf
from inference.model_source import find_source, load_model
from inference.reply import Decoding, first_messages, new_tokens, reply_of
from inference.terminators import END_OF_TURN_TOKENS

PROMPTS = Path(__file__).parent / "fixtures" / "generation_prompts.jsonl"
VALIDATION = "validation"  # the use case of the run's validation rows
MAX_VALIDATION_ROWS = 20
NGRAM, REPEATS = 4, 3
TEMPLATE_TOKENS = (*END_OF_TURN_TOKENS, "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>",
                   "<|end_of_text|>", "<|im_start|>", "<|endoftext|>", "<start_of_turn>", "<|user|>",
                   "<|assistant|>", "<|system|>")
LOG = Path("logs/generation_check.log")
STEP_EVERY_S = 600.0  # not a terminal: a progress line every 10 minutes at most (make eval stays <= 40 lines)


@dataclass(frozen=True)
class Prompt:
    id: str
    use_case: str
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class Answer:
    id: str
    use_case: str
    text: str
    tokens: int
    stop: str
    stop_token: str | None
    repeats: bool
    leaks: list[str]


def repeats(ids: list[int], n: int = NGRAM, times: int = REPEATS) -> bool:
    """Whether some n-gram of ``ids`` occurs ``times`` times or more."""
    counts = Counter(tuple(ids[i:i + n]) for i in range(len(ids) - n + 1))
    return bool(counts) and max(counts.values()) >= times


def leaks(raw: str) -> list[str]:
    """The chat-template tokens in ``raw`` (an answer decoded with its special tokens, the stopping one cut)."""
    return [token for token in TEMPLATE_TOKENS if token in raw]


def nearest_rank(values: list[int], share: float) -> int:
    """The value at ``share`` (0..1] of the sorted values, nearest-rank."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


def generation_figures(answers: list[Answer]) -> dict[str, Any]:
    """The figures of some answers (see the module's docstring); rates are shares from 0 to 1."""
    lengths = [a.tokens for a in answers]
    count = len(answers)
    return {"answers": count,
            "stop_rate": sum(a.stop != "max_new_tokens" for a in answers) / count,
            "median_tokens": statistics.median(lengths), "p95_tokens": nearest_rank(lengths, 0.95),
            "repetition_rate": sum(a.repeats for a in answers) / count,
            "leak_rate": sum(bool(a.leaks) for a in answers) / count}


def all_figures(answers: list[Answer]) -> dict[str, Any]:
    """``{"overall": ..., "use_cases": {use case: ...}}``."""
    cases = list(dict.fromkeys(a.use_case for a in answers))
    return {"overall": generation_figures(answers),
            "use_cases": {case: generation_figures([a for a in answers if a.use_case == case]) for case in cases}}


def answer(model: Any, tokenizer: Any, prompt: Prompt, decoding: Decoding) -> Answer:
    """One greedy answer and its repetition and leaks."""
    new, stops = new_tokens(model, tokenizer, prompt.messages, decoding)
    reply = reply_of(tokenizer, new, stops)
    body = new[:-1] if reply.stop_token else new
    return Answer(prompt.id, prompt.use_case, reply.text, reply.tokens, reply.stop, reply.stop_token,
                  repeats(body), leaks(tokenizer.decode(body, skip_special_tokens=False)))


def answer_all(source: Any, prompts: list[Prompt], decoding: Decoding, terminal: TextIO) -> list[Answer]:
    """Load the model, then answer every prompt, one progress line on ``terminal``."""
    answers: list[Answer] = []
    with StepLine("load model, answer", total=len(prompts), unit="prompts", stream=terminal,
                  every_s=STEP_EVERY_S) as line:
        model, tokenizer = load_model(source)
        for prompt in prompts:
            answers.append(answer(model, tokenizer, prompt, decoding))
            line.update(len(answers), stopped=sum(a.stop != "max_new_tokens" for a in answers))
    return answers


def validation_prompts(run: Path | None, limit: int = MAX_VALIDATION_ROWS) -> list[Prompt]:
    """The first ``limit`` validation rows of the run's datasets, as the messages before the last answer."""
    prompts: list[Prompt] = []
    if run is None:
        return prompts
    for dataset in read_manifest(run).get("datasets") or []:
        path = Path(str(dataset.get("path", "")))
        name = path.name.removesuffix(".jsonl") + ".validation.jsonl"
        rows = next((p for p in (path.with_name(name), run.resolve().parent.parent / path.with_name(name))
                     if path.name.endswith(".jsonl") and p.is_file()), None)
        if rows is None:
            continue
        for number, line in enumerate(rows.read_text(encoding="utf-8").splitlines(), 1):
            row = json.loads(line) if line.strip() else {}
            messages = row.get("messages") if isinstance(row, dict) else None
            answers = [i for i, m in enumerate(messages or []) if m.get("role") == "assistant"]
            asked = messages[:answers[-1]] if answers else messages
            if asked and asked[-1].get("role") == "user" and len(prompts) < limit:
                prompts.append(Prompt(f"{rows.name}:{number}", VALIDATION, asked))
    return prompts


def use_case_prompts(path: Path, decoding: Decoding) -> list[Prompt]:
    """The use-case prompts of a JSONL file ``{"id", "use_case", "prompt"}``; InputError on a bad line."""
    if not path.is_file():
        raise InputError(f"--prompts {path}: no such file")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompts.append(Prompt(str(row["id"]), str(row["use_case"]),
                                  [*first_messages(decoding), {"role": "user", "content": str(row["prompt"])}]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f'{path} line {number}: expected {{"id", "use_case", "prompt"}}') from None
    return prompts


def percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def figure_words(row: dict[str, Any]) -> str:
    """``stop 95%, tokens median 40 p95 180, repetition 5%, leaks 0% (n=32)``."""
    return (f"stop {percent(row['stop_rate'])}, tokens median {row['median_tokens']:g} p95 {row['p95_tokens']}, "
            f"repetition {percent(row['repetition_rate'])}, leaks {percent(row['leak_rate'])} (n={row['answers']})")


def check_summary(result: dict[str, Any], out: Path, seconds: float, run: Path | None) -> list[str]:
    """The overall figures and the use case that stops least; where the answers are; the next command."""
    case, row = min(result["use_cases"].items(), key=lambda item: item[1]["stop_rate"])
    return [f"generation check done in {clock(seconds)}: {figure_words(result['overall'])}; "
            f"stops least: {case} {percent(row['stop_rate'])}",
            f"  answers     {final_place(out)}; next: python -m eval report {run or final_place(out).parent}"]


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Answer every prompt, write generation_check.json, merge the figures into results.json."""
    start = time.monotonic()
    source = find_source(args.model)
    run = source.run
    spec = args.model or str(run)
    rows_of = args.validation_from or run
    if is_gguf(spec) and args.out is None:  # a release's GGUF: its run's eval/gguf/<QUANT>/
        gguf = GGUFFile.of(spec)
        args.out = gguf.release_eval_dir()
        rows_of = rows_of or gguf.release_run()
    if run is None and args.out is None:
        raise InputError(f"--model {spec} is neither a run folder nor a release's GGUF: pass --out DIR for its "
                         "answers")
    out = args.out or run / "eval"
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    prompts = validation_prompts(rows_of) + use_case_prompts(args.prompts, decoding)
    if not prompts:
        raise InputError(f"--prompts {args.prompts}: no prompts, and no validation rows in the run's datasets")
    log = (run or out) / LOG
    print(f"generation check of {source.describe()}: {len(prompts)} prompts, greedy, at most "
          f"{args.max_new_tokens} new tokens (model output: {log})", flush=True)
    with output_to_log(log, "eval generate-check", tee=quiet.VERBOSE, title=f"generation check of {spec}") as terminal:
        answers = answer_all(source, prompts, decoding, terminal)
    result = {**all_figures(answers), "model": source.describe(), "max_new_tokens": args.max_new_tokens,
              "prompts": str(args.prompts), "answers": [asdict(a) for a in answers]}
    write_json_atomic(out / "generation_check.json", result)
    results = out / "results.json"
    if results.is_file():
        data = json.loads(results.read_text(encoding="utf-8"))
        data["generation_check"] = {key: result[key] for key in ("overall", "use_cases", "max_new_tokens")}
        write_json_atomic(results, data)
    print("\n".join(check_summary(result, out / "generation_check.json", time.monotonic() - start, run)), flush=True)
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m eval generate-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="runs/<id> or a .gguf file (default: the latest successful dpo, else sft, "
                                        "run)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=MAX_NEW_TOKENS,
                        help=f"most new tokens per answer (default {MAX_NEW_TOKENS}, the card's)")
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="use-case prompts (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<id>/eval/; a release's GGUF: its "
                                                 "run's eval/gguf/<QUANT>/)")
    parser.add_argument("--validation-from", type=Path, metavar="RUN",
                        help="the run whose validation rows to ask (default: --model's run; a release's GGUF: its run)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m eval generate-check ...``; returns what generation_check.json holds. Into a run's ``eval/``
    (no ``--out``), under the run's lock, its adapter/ and merged/ checked against the manifest's hashes first."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.out is not None:
        return run_check(args)
    gguf = bool(args.model and is_gguf(args.model))
    run = GGUFFile.of(args.model).release_run() if gguf else find_source(args.model).run
    if run is None:
        return run_check(args)
    if not gguf:
        args.model = str(run)  # the run locked is the run checked
    with RunWriter.open(run) as writer:
        if not gguf:
            writer.verify()
        return run_check(args)
