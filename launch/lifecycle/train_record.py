"""What a finished train step must record for a later run to be checked against it, and the check.

    python -m launch.lifecycle.train_record runs/<run-id>      print a run's tokenized-dataset hash and logged losses

Three records, all read back from what Axolotl leaves in the run folder:

- ``tokenized_dataset``: a content hash of the tokenized rows Axolotl saved under ``dataset_prepared_path``
  (every column of every row, in order). Axolotl's own prepared-data key hashes the config, not the content;
  this hash changes when the tokenizer, the chat template or a single row changes.
- ``losses``: the training loss at every logged step, keyed by the trainer's global step, with the attempt that
  logged it: ``train_losses.jsonl``, written by launch/plugins/preempt.py in the output folder across attempts
  (a step logged again after a resume keeps the later attempt's value). Runs without that file: parsed from the
  Trainer's log lines in ``logs/train.log`` (``{'loss': '3.127', ..., 'epoch': '0.04545'}``). A DPO run's rows also
  hold TRL's reward margin (``rewards/margins``).
- ``eval_losses``: the same for every evaluation (``eval_loss``), from ``eval_losses.jsonl``; none without that file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from common.rundir import read_manifest
from launch.plugins import EVAL_LOSSES_FILE, LOSSES_FILE  # written by launch/plugins/preempt.py

HASH_BATCH_ROWS = 1000
DEFAULT_STEPS = 10
# Axolotl logs losses to four significant digits, so equal runs can differ by one unit in the last digit (< 1e-3).
DEFAULT_TOLERANCE = 2e-3


def prepared_folders(prepared: Path) -> list[Path]:
    """Every dataset Axolotl saved under ``prepared`` (``save_to_disk`` folders hold a ``state.json``)."""
    if not prepared.is_dir():
        return []
    return sorted(p.parent for p in prepared.rglob("state.json") if (p.parent / "dataset_info.json").is_file())


def hash_dataset(folder: Path) -> dict[str, Any]:
    """Rows, columns and a sha256 over every row's values, in order, of one saved dataset."""
    from datasets import load_from_disk

    dataset = load_from_disk(str(folder))
    columns = sorted(dataset.column_names)
    digest = hashlib.sha256(json.dumps(columns).encode())
    for batch in dataset.iter(batch_size=HASH_BATCH_ROWS):
        digest.update(json.dumps([batch[c] for c in columns], separators=(",", ":")).encode())
    return {"rows": dataset.num_rows, "columns": columns, "sha256": digest.hexdigest()}


def tokenized_dataset(prepared: Path) -> dict[str, Any] | None:
    """The content hash of every prepared dataset under ``prepared``, and one hash over them all."""
    folders = prepared_folders(prepared)
    if not folders:
        return None
    parts = [{"path": folder.relative_to(prepared).as_posix(), **hash_dataset(folder)} for folder in folders]
    combined = hashlib.sha256("".join(p["sha256"] for p in parts).encode()).hexdigest()
    return {"sha256": combined, "rows": sum(p["rows"] for p in parts), "parts": parts}


def parse_losses(log: Path, logging_steps: int = 1) -> list[dict[str, Any]]:
    """The training loss of every logged step, in order: ``[{"step": 1, "loss": 3.127, "epoch": 0.045}, ...]``.

    The Trainer logs every ``logging_steps`` optimizer steps and prints each log as a Python dict on its own line.
    Evaluation logs (``eval_loss``) and the closing summary (``train_loss``) are not training steps: left out.
    """
    losses = []
    with open(log, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text.startswith("{'loss':"):
                continue
            try:
                values = ast.literal_eval(text)
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"{log}:{number}: unreadable training log line ({err}): {text[:120]}") from err
            entry = {"step": (len(losses) + 1) * logging_steps, "loss": float(values["loss"])}
            if "epoch" in values:
                entry["epoch"] = float(values["epoch"])
            losses.append(entry)
    return losses


def recorded_losses(path: Path) -> list[dict[str, Any]]:
    """The rows the trainer recorded by global step, across attempts: the last entry for each step, in order."""
    by_step: dict[int, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
                by_step[int(row["step"])] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
    return [by_step[step] for step in sorted(by_step)]


def summarize_training(run_dir: Path, config: dict[str, Any], log: Path) -> dict[str, Any]:
    """The records a train step adds to its run's manifest."""
    prepared = Path(config.get("dataset_prepared_path") or run_dir / "prepared")
    every = config.get("logging_steps")
    every = every if isinstance(every, int) and every >= 1 else 1  # a float means a fraction of the run: unknown
    recorded = run_dir / "adapter" / LOSSES_FILE
    losses = recorded_losses(recorded) if recorded.is_file() else parse_losses(log, every) if log.is_file() else []
    evals = run_dir / "adapter" / EVAL_LOSSES_FILE
    return {"tokenized_dataset": tokenized_dataset(prepared), "losses": losses,
            "eval_losses": recorded_losses(evals) if evals.is_file() else []}


def compare_losses(original: dict[str, Any], new: dict[str, Any], steps: int, tolerance: float) -> dict[str, Any]:
    """Tokenized dataset hashes and the first ``steps`` losses of two runs' records, side by side."""
    hashes = [(r.get("tokenized_dataset") or {}).get("sha256") for r in (original, new)]
    losses = []
    for a, b in zip(original.get("losses", [])[:steps], new.get("losses", [])[:steps], strict=False):
        losses.append({"step": a["step"], "original": a["loss"], "reproduced": b["loss"],
                       "difference": b["loss"] - a["loss"],
                       "within_tolerance": math.isclose(a["loss"], b["loss"], rel_tol=tolerance)})
    expected = min(steps, len(original.get("losses", [])))
    same_data = hashes[0] is not None and hashes[0] == hashes[1]
    same_losses = expected > 0 and len(losses) == expected and all(x["within_tolerance"] for x in losses)
    return {"tokenized_dataset": {"original": hashes[0], "reproduced": hashes[1], "same": same_data},
            "losses": losses, "steps_compared": len(losses), "relative_tolerance": tolerance,
            "same_losses": same_losses, "reproduced": same_data and same_losses}


def print_comparison(result: dict[str, Any]) -> None:
    data = result["tokenized_dataset"]
    print(f"tokenized dataset: original {data['original']}\n                   reproduced {data['reproduced']}"
          f"  -> {'same' if data['same'] else 'DIFFERENT'}")
    print(f"losses, first {result['steps_compared']} steps (relative tolerance {result['relative_tolerance']}):")
    print(f"  {'step':>5}  {'original':>10}  {'reproduced':>10}  {'difference':>10}")
    for row in result["losses"]:
        flag = "" if row["within_tolerance"] else "  DIFFERENT"
        print(f"  {row['step']:>5}  {row['original']:>10.4f}  {row['reproduced']:>10.4f}  {row['difference']:>+10.4f}"
              f"{flag}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch.lifecycle.train_record",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder, e.g. runs/<run-id>")
    args = parser.parse_args(argv)
    config = read_manifest(args.run)["config"]
    json.dump(summarize_training(args.run, config, args.run / "logs/train.log"), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
