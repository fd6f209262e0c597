"""MedQA-USMLE, 4 options (test split, 1273 rows), JSONL/JSON/Parquet in any of its published layouts:

    python -m eval prepare medqa_4options phrases_no_exclude_test.jsonl --out data/benchmarks

- the original release: ``question``, ``options`` {"A": ..., "D": ...}, ``answer_idx`` (a letter), ``answer``;
- GBaker/MedQA-USMLE-4-options-hf (what upstream lm-eval reads): ``sent1``, ``ending0``..``ending3``, ``label``;
- a list of options: ``question``, ``options`` [text, ...] or [{"key": "A", "value": ...}, ...] (bigbio),
  ``answer_idx`` (a letter or an index), ``answer`` checked against it when present.

The layout is decided row by row, with the training converter's checks (``data_prep.sources.medqa``).
A row with other than four options is an error: this is the 4-option task. Rows keep a published
``id`` when they have one; otherwise the id comes from the content.
"""

from __future__ import annotations

from typing import Any

from data_prep.readers import read_rows
from data_prep.rows import Reject
from data_prep.sources import medqa as training
from eval.benchmarks._common import LETTERS, Loaded, content_id, convert_rows, mcq_row, unique_ids

NAME = "medqa"
SUMMARY = ("MedQA-USMLE 4-option test (JSONL): question, options{A..D}, answer_idx, answer; "
           "or sent1, ending0..3, label (-hf); or options as a list")


def from_option_list(record: dict[str, Any]) -> tuple[Any, list[Any], int]:
    """(question, options, answer index) when ``options`` is a list of texts or of {key, value}."""
    if "answer_idx" not in record:
        raise Reject("missing field 'answer_idx'")
    options = record["options"]
    if all(isinstance(o, dict) for o in options):
        keys = [o.get("key") for o in options]
        if keys != list(LETTERS[: len(keys)]):
            raise Reject(f"option keys {keys} are not the letters A, B, C, ... in sequence")
        options = [o.get("value") for o in options]
    answer_idx = record["answer_idx"]
    if isinstance(answer_idx, str) and len(answer_idx) == 1 and answer_idx in LETTERS[: len(options)]:
        index = LETTERS.index(answer_idx)
    elif isinstance(answer_idx, int) and not isinstance(answer_idx, bool) and 0 <= answer_idx < len(options):
        index = answer_idx
    else:
        raise Reject(f"answer_idx {answer_idx!r} is not an option letter or index")
    answer = record.get("answer")
    if answer is not None and (not isinstance(options[index], str) or str(answer).strip() != options[index].strip()):
        raise Reject(f"answer does not match the text of option {LETTERS[index]}")
    return record["question"], options, index


def item(record: dict[str, Any]) -> dict[str, Any]:
    """One prepared row from a MedQA record in any of the layouts."""
    if "question" in record and "sent1" in record:
        raise Reject("row has both 'question' and 'sent1'; cannot tell which layout it is")
    if "sent1" in record:
        question, options, index = training.from_endings(record)
    elif isinstance(record.get("options"), list):
        question, options, index = from_option_list(record)
    elif "question" in record:
        question, options, index = training.from_options(record)
    else:
        raise Reject("missing field 'question' (or 'sent1' in the -hf layout)")
    item_id = record.get("id")
    if item_id is None:
        item_id = content_id(NAME, str(question), *map(str, options))
    return mcq_row(item_id, question, options, index)


def load(inputs: list[str], task: Any) -> Loaded:
    """Every row of every input, in order."""
    rows = []
    for spec in inputs:
        rows += convert_rows(read_rows(spec), item)
    return Loaded(unique_ids(rows))
