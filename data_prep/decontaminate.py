"""Drop training rows that share text with an evaluation benchmark item.

    python -m data_prep decontaminate INPUT.jsonl --benchmarks DIR --out CLEAN.jsonl

DIR holds one ``<task>.jsonl`` per benchmark (see docs/decontamination.md). A row is
contaminated when its normalised text contains a 13-gram of a benchmark item, or a whole
benchmark question of 8-12 words. Generic text never matches: a question that more than
``max_item_frequency`` items have ("Which of the following is the most likely diagnosis?"),
or a 13-gram holding a 7-word phrase that many items have. The benchmarks are indexed once;
each row then costs one pass over its own words, never a comparison with other rows.

Writes CLEAN.jsonl, CLEAN.contaminated.jsonl (each removed row with the task, item id and
overlap that matched) and, last, CLEAN.manifest.json: into a staging folder beside CLEAN first, then
moved in together, so a failed or stopped run leaves the previous set as it was.
"""

from __future__ import annotations

import argparse
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.benchmarks import BENCHMARKS
from common.errors import positive_int
from common.files import sha256_file, staged_outputs, write_json_atomic, write_jsonl_atomic
from data_prep.convert import sidecar
from data_prep.coverage import coverage, describe, missing_tasks
from data_prep.parallel import SHARED, map_chunks
from data_prep.readers import read_jsonl

TASKS = BENCHMARKS  # the nine benchmarks' names (common/benchmarks.py; eval/benchmarks holds their schemas)
DEFAULT_N = 13  # as lm-evaluation-harness
DEFAULT_MIN_QUESTION_WORDS = 8
DEFAULT_MAX_ITEM_FREQUENCY = 5
DEFAULT_THRESHOLD = 1

Key = tuple[bytes, ...]  # words are UTF-8 bytes: CPython splits and hashes bytes faster than str
Item = tuple[str, Any]  # (task, item id)

# Everything that is not a letter, digit or whitespace is punctuation here (symbols and "_" included).
_ASCII_NON_WORD = bytes(c for c in range(128) if not chr(c).isalnum() and not chr(c).isspace())
_ASCII_SPACES = bytes(c for c in range(128) if chr(c).isspace())  # str.split() splits on \x1c-\x1f too
_UPPER, _LOWER = bytes(range(65, 91)), bytes(range(97, 123))
_LOWER_REMOVE = bytes.maketrans(_UPPER + _ASCII_SPACES, _LOWER + b" " * len(_ASCII_SPACES))
_LOWER_SPACE = bytes.maketrans(_UPPER + _ASCII_SPACES + _ASCII_NON_WORD,
                               _LOWER + b" " * (len(_ASCII_SPACES) + len(_ASCII_NON_WORD)))
_ASCII = bytes(range(128))


def words(text: str, punctuation: str = "") -> list[bytes]:
    """The normalised words of ``text`` (NFKC, lowercase, punctuation replaced by ``punctuation``), as UTF-8.

    All on the bytes: each distinct character beyond ASCII is replaced once (lowercased, or made a
    space or ``punctuation``), then one translate lowercases ASCII and removes its punctuation. A
    regex or str.translate over the whole text is several times slower.
    """
    if text.isascii():  # already NFKC
        encoded = text.encode("ascii")
    else:
        encoded = utf8(unicodedata.normalize("NFKC", text))
        for char in set(unutf8(encoded.translate(None, _ASCII))):
            cleaned = "".join(c if c.isalnum() else " " if c.isspace() else punctuation for c in char.lower())
            encoded = encoded.replace(utf8(char), utf8(cleaned))
    if punctuation:
        return encoded.translate(_LOWER_SPACE).split()
    return encoded.translate(_LOWER_REMOVE, _ASCII_NON_WORD).split()


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate from JSON passes through


def unutf8(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def normalize(text: str) -> str:
    """Lowercase, Unicode NFKC, punctuation removed, whitespace collapsed to single spaces."""
    return unutf8(b" ".join(words(text)))


def ngrams(tokens: Sequence[bytes], n: int) -> Iterable[Key]:
    """Every run of ``n`` consecutive tokens."""
    return zip(*(tokens[i:] for i in range(n)), strict=False)


def item_words(texts: list[str], whole: range, short: int) -> list[list[bytes]]:
    """The word lists of an item's texts (its text, its question), with punctuation removed.

    A text of fewer than ``short`` words is listed again with punctuation turned into spaces, where
    that differs, so that "45-year-old" also matches a copy reading "45 year old"; a longer text has
    plenty of n-grams without such words. A list found inside an earlier one adds no n-gram and is
    left out, unless it is a whole key (its length is in ``whole``).
    """
    lists: list[list[bytes]] = []
    spaced: list[bytes] = []
    for text in texts:
        variants = [words(text)]
        if len(variants[0]) < short and (spaces := words(text, " ")) != variants[0]:
            variants.append(spaces)
        for tokens in variants:
            joined = b" " + b" ".join(tokens) + b" "
            if len(tokens) in whole or not any(joined in earlier for earlier in spaced):
                lists.append(tokens)
                spaced.append(joined)
    return lists


def occurrences(tokens: list[bytes], word: bytes) -> list[int]:
    """Every position of ``word`` in ``tokens`` (which holds it)."""
    first = tokens.index(word)
    if tokens.count(word) == 1:
        return [first]
    return [at for at in range(first, len(tokens)) if tokens[at] == word]


@dataclass(frozen=True)
class Match:
    """The benchmark item a text overlaps: its task and id, the first shared key's text, how many keys it shares."""

    task: str
    item_id: Any
    overlap: str
    matches: int


class BenchmarkIndex:
    """The specific keys of the benchmark items, built once; ``match`` looks a text's own n-grams up in it.

    An item's keys are the n-grams of its text and of its question, and its whole question (or text)
    when that has ``min_question_words`` to n - 1 words. Texts are indexed with punctuation removed and
    short ones (under 3n words) again with punctuation turned into spaces, so "45-year-old" matches
    "45yearold" and "45 year old".
    Generic keys never match: a whole question that more than ``max_item_frequency`` items have, and an
    n-gram that contains a generic phrase, a run of k = (n + 1) // 2 words that more than
    ``max_item_frequency`` items have (so also every n-gram that more than that many items have).
    """

    def __init__(self, items: Iterable[tuple[str, Any, list[str]]], n: int = DEFAULT_N,
                 min_question_words: int = DEFAULT_MIN_QUESTION_WORDS,
                 max_item_frequency: int = DEFAULT_MAX_ITEM_FREQUENCY) -> None:
        if n < 1 or min_question_words < 1 or max_item_frequency < 1:
            raise ValueError("n, min_question_words and max_item_frequency must be at least 1")
        self.n, self.min_question_words, self.max_item_frequency = n, min_question_words, max_item_frequency
        # A shared n-gram contains one of a row's anchors, its k-grams at positions 0, stride, 2 * stride,
        # ... (k + stride = n + 1): a row looks up only those, and checks the n-grams around any it finds.
        # The benchmarks' k-grams are also the phrases that can be generic.
        self.anchor = (n + 1) // 2
        self.stride = n - self.anchor + 1
        self.anchors: set[Key] = set()  # every k-gram of the benchmarks but the generic ones
        self.generic: set[Key] = set()  # the k-grams that more than max_item_frequency items have
        self.keys: dict[Key, Item] = {}  # every n-gram and whole question -> the first item that has it
        self.triggers: dict[bytes, list[tuple[int, Key]]] = {}  # a whole question's rarest word -> (where, key)
        self.trigger_words: frozenset[bytes] = frozenset()
        self.questions = 0  # how many whole questions are keys
        self.order: dict[Item, int] = {}  # every item -> its place in the benchmarks
        self.files: dict[str, Path] = {}  # the benchmark files, when built by from_folder
        self.build(items)

    def build(self, items: Iterable[tuple[str, Any, list[str]]]) -> None:
        """Index every item's keys, count the items each k-gram is in, and set the generic ones aside."""
        n, min_question_words, max_item_frequency = self.n, self.min_question_words, self.max_item_frequency
        word_counts: Counter[bytes] = Counter()
        phrases: set[Key] = set()  # every k-gram of the benchmarks
        repeats: Counter[Key] = Counter()  # a k-gram -> how many items after the first have it
        tokenized: list[tuple[Item, list[list[bytes]]]] = []
        for task, item_id, texts in items:
            item = (task, item_id)
            if item in self.order:
                raise ValueError(f"{task}: item id {item_id!r} appears twice")
            self.order[item] = len(self.order)
            lists = item_words(texts, range(min_question_words, n), 3 * n)
            own: set[Key] = set()
            for tokens in lists:
                if len(tokens) >= n:
                    own.update(ngrams(tokens, self.anchor))
            repeats.update(own.intersection(phrases))
            phrases |= own
            word_counts.update(lists[0])
            tokenized.append((item, lists))
        self.generic = {phrase for phrase, count in repeats.items() if count >= max_item_frequency}
        self.anchors = phrases - self.generic  # no specific key holds a generic phrase

        whole: dict[Key, list[Item]] = {}
        for item, lists in reversed(tokenized):  # so that the first item having a key is the one kept
            for tokens in lists:
                if len(tokens) >= n:
                    self.keys.update(dict.fromkeys(ngrams(tokens, n), item))
                elif len(tokens) >= min_question_words:
                    whole.setdefault(tuple(tokens), []).append(item)
        # Whole questions are looked up through their rarest word.
        for key, owners in sorted(whole.items()):
            if len(set(owners)) <= max_item_frequency:
                self.keys[key] = owners[-1]
                offset = min(range(len(key)), key=lambda at: (word_counts[key[at]], key[at]))
                self.triggers.setdefault(key[offset], []).append((offset, key))
        self.trigger_words = frozenset(self.triggers)
        self.questions = sum(len(keys) for keys in self.triggers.values())

    def specific(self, key: Key) -> bool:
        """Whether the n-gram ``key`` contains no generic phrase."""
        return self.generic.isdisjoint(ngrams(key, self.anchor))

    @classmethod
    def from_folder(cls, folder: str | Path, n: int = DEFAULT_N,
                    min_question_words: int = DEFAULT_MIN_QUESTION_WORDS,
                    max_item_frequency: int = DEFAULT_MAX_ITEM_FREQUENCY,
                    tasks: Iterable[str] = TASKS, require_all: bool = True) -> BenchmarkIndex:
        """Index ``<task>.jsonl`` files (objects with ``id``, ``text``, ``question``) in ``folder``."""
        files = {task: Path(folder) / f"{task}.jsonl" for task in tasks}
        missing = [task for task, path in files.items() if not path.is_file()]
        if missing and require_all:
            raise FileNotFoundError(f"{folder}: no benchmark file for {', '.join(missing)}")
        files = {task: path for task, path in files.items() if task not in missing}
        index = cls(read_benchmark_items(files), n, min_question_words, max_item_frequency)
        index.files = files
        return index

    def items_by_task(self) -> dict[str, int]:
        """How many items each task brought to the index."""
        return dict(Counter(task for task, _ in self.order))

    def shared_keys(self, tokens: list[bytes]) -> dict[Key, int]:
        """Every index key found in ``tokens``, with the token position where it first occurs."""
        found: dict[Key, int] = {}
        n, anchor, stride = self.n, self.anchor, self.stride
        if len(tokens) >= n and not self.anchors.isdisjoint(self.anchor_windows(tokens)):
            for step, window in enumerate(self.anchor_windows(tokens)):
                if window in self.anchors:
                    at = step * stride
                    for start in range(max(0, at - n + anchor), min(at, len(tokens) - n) + 1):
                        key = tuple(tokens[start:start + n])
                        if key in self.keys and self.specific(key):
                            found.setdefault(key, start)
        if self.triggers and len(tokens) >= self.min_question_words:
            present = set(tokens)
            for word in present & self.trigger_words:
                for offset, key in self.triggers[word]:
                    if present.issuperset(key):
                        for at in occurrences(tokens, word):
                            if at >= offset and tuple(tokens[at - offset:at - offset + len(key)]) == key:
                                found.setdefault(key, at - offset)
        return found

    def anchor_windows(self, tokens: list[bytes]) -> Iterable[Key]:
        """The k-grams of ``tokens`` at positions 0, stride, 2 * stride, ..."""
        return zip(*(tokens[i::self.stride] for i in range(self.anchor)), strict=False)

    def match(self, text: str, threshold: int = DEFAULT_THRESHOLD) -> Match | None:
        """The benchmark item ``text`` overlaps, when it shares at least ``threshold`` keys with the benchmarks.

        The item is the one that most of the shared keys come from (a key several items have counts for
        the first of them), and the overlap shown is the first of its keys in ``text``.
        """
        return self.match_words(words(text), threshold)

    def match_words(self, tokens: list[bytes], threshold: int = DEFAULT_THRESHOLD) -> Match | None:
        """``match`` of a text's normalised words (``words``)."""
        found = self.shared_keys(tokens)
        if not found or len(found) < threshold:
            return None
        counts = Counter(self.keys[key] for key in found)
        first: dict[Item, tuple[int, Key]] = {}
        for key, at in found.items():
            item = self.keys[key]
            if item not in first or at < first[item][0]:
                first[item] = (at, key)
        best = min(counts, key=lambda item: (-counts[item], first[item][0], self.order[item]))
        overlap = unutf8(b" ".join(first[best][1]))
        return Match(best[0], best[1], overlap, len(found))


def read_benchmark_items(files: dict[str, Path]) -> Iterable[tuple[str, Any, list[str]]]:
    """(task, id, [text, question]) for every line of every benchmark file; a bad line stops the run."""
    for task, path in files.items():
        for raw in read_jsonl(path):
            if raw.error is not None:
                raise ValueError(f"{path} {raw.where}: {raw.error}")
            record = raw.record
            if not isinstance(record, dict):
                raise ValueError(f"{path} {raw.where}: a JSON {type(record).__name__}, not an object")
            for field in ("id", "text", "question"):
                if field not in record:
                    raise ValueError(f"{path} {raw.where}: missing field {field!r}")
            if not isinstance(record["id"], str | int) or isinstance(record["id"], bool):
                raise ValueError(f"{path} {raw.where}: id is {type(record['id']).__name__}, not text or a number")
            for field in ("text", "question"):
                if not isinstance(record[field], str) or not record[field].strip():
                    raise ValueError(f"{path} {raw.where}: {field} is not a non-empty text")
            yield task, record["id"], [record["text"], record["question"]]


def row_text(row: dict[str, Any]) -> str:
    """The text checked for a chat row: every user and assistant content, then chosen and rejected, one per line."""
    return "\n".join(turn["content"] for turn in row_turns(row))


def row_turns(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns of ``row_text``: user and assistant messages, then chosen and rejected, each with text content."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise ValueError("row has no 'messages' list")
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    turns += [row[side] for side in ("chosen", "rejected") if isinstance(row.get(side), dict)]
    return [turn for turn in turns if isinstance(turn.get("content"), str)]


def decontaminate_rows(rows: Iterable[dict[str, Any]], index: BenchmarkIndex,
                       text_of: Callable[[dict[str, Any]], str] = row_text,
                       threshold: int = DEFAULT_THRESHOLD, workers: int | None = 1, label: str | None = None
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split rows into clean ones and contaminated records (position, task, item id, overlap, the row).

    With several workers, each checks chunks of the rows' texts against the index it inherited. ``label`` names
    the step in the progress bar.
    """
    rows = list(rows)
    texts = (text_of(row) for row in rows)
    parts = map_chunks(match_chunk, texts, len(rows), workers, shared={"index": index, "threshold": threshold},
                       label=label)
    found = (match for part in parts for match in part)
    clean, contaminated = [], []
    for position, (row, match) in enumerate(zip(rows, found, strict=True)):
        if match is None:
            clean.append(row)
        else:
            contaminated.append({"position": position, "task": match.task, "item_id": match.item_id,
                                 "overlap": match.overlap, "matches": match.matches, "row": row})
    return clean, contaminated


def match_chunk(texts: list[str]) -> list[Match | None]:
    """``BenchmarkIndex.match`` for each text, with the index and threshold ``decontaminate_rows`` shared."""
    index, threshold = SHARED["index"], SHARED["threshold"]
    return [index.match(text, threshold) for text in texts]


def read_chat_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a JSONL file of chat rows and where each was (``line 3``); a bad line stops the run."""
    rows, wheres = [], []
    for raw in read_jsonl(path):
        if raw.error is not None:
            raise SystemExit(f"{path} {raw.where}: {raw.error}")
        if not isinstance(raw.record, dict) or not isinstance(raw.record.get("messages"), list):
            raise SystemExit(f"{path} {raw.where}: not a chat row (an object with a 'messages' list)")
        rows.append(raw.record)
        wheres.append(raw.where)
    return rows, wheres


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``decontaminate`` command's arguments."""
    parser.add_argument("input", type=Path, metavar="INPUT.jsonl", help="chat rows, as written by convert")
    parser.add_argument("--benchmarks", type=Path, required=True, metavar="DIR",
                        help="folder with one <task>.jsonl per benchmark: " + ", ".join(TASKS))
    parser.add_argument("--out", type=Path, required=True, metavar="CLEAN.jsonl",
                        help="the rows kept; the contaminated rows and the manifest go beside it")
    parser.add_argument("--n", type=positive_int, default=DEFAULT_N, help=f"n-gram length (default {DEFAULT_N})")
    parser.add_argument("--min-question-words", type=positive_int, default=DEFAULT_MIN_QUESTION_WORDS,
                        help="shortest whole question that is matched on its own "
                             f"(default {DEFAULT_MIN_QUESTION_WORDS})")
    parser.add_argument("--max-item-frequency", type=positive_int, default=DEFAULT_MAX_ITEM_FREQUENCY,
                        help="a question or phrase that more benchmark items have is generic and never "
                             f"matches (default {DEFAULT_MAX_ITEM_FREQUENCY})")
    parser.add_argument("--allow-partial", action="store_true",
                        help="check against the benchmarks present in DIR (the manifest lists those not checked)")
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                        help="keys a row must share with the benchmarks to be removed "
                             f"(default {DEFAULT_THRESHOLD})")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Decontaminate one file; write the clean rows, the contaminated records and the manifest (last)."""
    if args.threshold < 1:
        raise SystemExit("--threshold must be at least 1")
    try:
        index = load_index(args.benchmarks, args.allow_partial, n=args.n, min_question_words=args.min_question_words,
                           max_item_frequency=args.max_item_frequency)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from err
    rows, wheres = read_chat_rows(args.input)
    clean, contaminated = decontaminate_rows(rows, index, threshold=args.threshold, label="decontaminate")
    contaminated = [{"where": wheres[record.pop("position")], **record} for record in contaminated]
    contaminated_path, manifest_path = sidecar(args.out, "contaminated.jsonl"), sidecar(args.out, "manifest.json")
    owned = [args.out.name, contaminated_path.name]
    with staged_outputs(args.out.parent, args.out.name, owned, manifest_path.name) as stage:
        manifest = write_outputs(args, stage, index, rows, clean, contaminated)
    print(f"decontaminate: {len(rows)} rows -> {len(clean)} clean in {args.out}; "
          f"{len(contaminated)} contaminated in {contaminated_path}")
    for task, count in manifest["contaminated"]["by_task"].items():
        print(f"  {count:>6}  {task}")
    print(describe(manifest["benchmarks"]))
    return manifest


def write_outputs(args: argparse.Namespace, stage: Path, index: BenchmarkIndex, rows: list[dict[str, Any]],
                  clean: list[dict[str, Any]], contaminated: list[dict[str, Any]]) -> dict[str, Any]:
    """The clean rows, the contaminated records and, last, the manifest, into ``stage`` (moved in whole after)."""
    contaminated_path, manifest_path = sidecar(args.out, "contaminated.jsonl"), sidecar(args.out, "manifest.json")
    write_jsonl_atomic(stage / contaminated_path.name, contaminated)
    write_jsonl_atomic(stage / args.out.name, clean)
    items = index.items_by_task()
    manifest = {
        "settings": {"n": index.n, "min_question_words": index.min_question_words,
                     "max_item_frequency": index.max_item_frequency, "threshold": args.threshold},
        "input": {"path": str(args.input), "sha256": sha256_file(args.input), "rows": len(rows)},
        "benchmarks": {
            "path": str(args.benchmarks),
            "files": [{"task": task, "path": str(path), "sha256": sha256_file(path), "items": items.get(task, 0)}
                      for task, path in index.files.items()],
            "ngrams": len(index.keys) - index.questions,
            "whole_questions": index.questions,
            "generic_phrases": len(index.generic),
            **coverage(index),
        },
        "output": {"path": str(args.out), "sha256": sha256_file(stage / args.out.name), "rows": len(clean)},
        "contaminated": {"path": str(contaminated_path), "sha256": sha256_file(stage / contaminated_path.name),
                         "rows": len(contaminated),
                         "by_task": dict(sorted(Counter(r["task"] for r in contaminated).items()))},
    }
    assert manifest["input"]["rows"] == len(clean) + len(contaminated), manifest
    write_json_atomic(stage / manifest_path.name, manifest)
    return manifest


def load_index(folder: Path, allow_partial: bool, where: str = "--allow-partial", **settings: Any) -> BenchmarkIndex:
    """The index of the benchmarks in ``folder``; all nine unless ``allow_partial``. ``where`` names the switch."""
    missing = missing_tasks(folder)
    present = len(TASKS) - len(missing)
    if missing and (not allow_partial or not present):
        go_on = f", or pass {where} to check against the {present} present" if present else ""
        raise SystemExit(f"{folder}: no benchmark file for {', '.join(missing)}; prepare them with "
                         f"`python -m eval prepare --all --out {folder}` (or `make benchmarks`){go_on}")
    return BenchmarkIndex.from_folder(folder, require_all=False, **settings)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m data_prep decontaminate INPUT.jsonl --benchmarks DIR --out CLEAN.jsonl``; returns the manifest."""
    parser = argparse.ArgumentParser(prog="python -m data_prep decontaminate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
