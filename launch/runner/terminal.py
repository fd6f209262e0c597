"""What a stage shows on the terminal: a header, one progress line per step, a summary; a failure in one line.

Everything the trainer prints (Axolotl, transformers, torchrun) goes to ``runs/<id>/logs/<step>.log``; ``--verbose``
streams it too. ``Watch`` reads those lines as they come and moves the step's ``common.progress.StepLine``:

    prepare: 0:07 elapsed, Tokenizing Prompts                                  (until the trainer starts)
    train:  42%|████████      | 5/12 [00:55<01:08, loss 3.114, tok/s 38.8]     (a terminal; plain lines otherwise)
    merge: 0:09 elapsed, done
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from common import quiet
from common.progress import StepLine, clock
from launch.registry import DEFAULT_RECIPES

TRAINER_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[")  # HF Trainer's bar: no description before it
NAMED_BAR = re.compile(r"^\s*([A-Za-z][^:|]{2,60}?)(?: \(num_proc=\d+\))?:\s+\d+%\|")  # "Loading weights:  7%|"
TRAINER_STARTS = "Starting trainer"
PROGRESS_LINE = re.compile(r"\d+%\|.*\||it/s\]|s/it\]|examples/s\]|^\s*[\^~]+\s*$")  # bars; traceback carets
CAUSE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt))(?::\s*(.*))?$")
TAIL_LINES = 12
SHOWN_FIELDS = {"loss": "loss", "eval_loss": "eval loss", "rewards/margins": "margin",
                "tokens/train_per_sec_per_gpu": "tok/s"}


def log_dict(line: str) -> dict[str, Any] | None:
    """The Trainer's logged values on a line (``{'loss': '3.127', ..., 'epoch': '0.045'}``), or None."""
    text = line.strip()
    if not (text.startswith("{'") and text.endswith("}")):
        return None
    try:
        values = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    return values if isinstance(values, dict) else None


class Watch:
    """Progress of one step from its output lines: ``prepare`` then ``train`` for training, one line otherwise."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.show = not quiet.VERBOSE  # with --verbose the lines themselves are the progress
        self.line: StepLine | None = None
        self.values: dict[str, Any] = {}  # the last logged value of each field (loss, eval_loss, ...)
        self.total: int | None = None
        self.open("prepare" if step == "train" else step)

    def open(self, name: str, total: int | None = None) -> None:
        if self.line is not None:
            self.line.fields.pop("now", None)
            self.line.close("done")
        self.line = StepLine(name, total=total) if self.show else None
        if self.line is not None:
            self.line.update()

    def feed(self, line: str) -> None:
        """Take one line of the step's output."""
        if values := log_dict(line):
            self.values.update(values)
            self.figures()
            return
        if self.step != "train":
            self.activity(line)
            return
        bar = TRAINER_BAR.match(line)
        if bar and (self.total is None or int(bar.group(2)) == self.total):
            if self.total is None:
                self.total = int(bar.group(2))
                if self.line is None or self.line.name != "train":
                    self.open("train", self.total)
                elif self.line is not None:
                    self.line.fields.pop("now", None)
            if self.line is not None:
                self.line.update(int(bar.group(1)), total=self.total)
        elif TRAINER_STARTS in line and self.total is None and self.line is not None and self.line.name == "prepare":
            self.open("train")
        elif self.total is None:
            self.activity(line)

    def activity(self, line: str) -> None:
        """Name what the step is doing (the description of a library's progress bar)."""
        named = NAMED_BAR.match(line)
        if named and self.line is not None:
            self.line.update(now=named.group(1).strip())

    def figures(self) -> None:
        if self.line is None:
            return
        shown = {name: self.values[key] for key, name in SHOWN_FIELDS.items() if key in self.values}
        self.line.update(**shown)

    def close(self, status: str) -> None:
        if self.line is not None:
            self.line.fields.pop("now", None)
            self.line.close(status)
            self.line = None


def cause(tail: list[str], code: int) -> str:
    """The error a failed step's output ends with (``FileNotFoundError: ...``), else its exit code."""
    for line in reversed(tail):
        found = CAUSE.match(line.strip())
        if found and found.group(1) not in ("KeyboardInterrupt",):
            return f"{found.group(1)}: {found.group(2)}" if found.group(2) else found.group(1)
    return f"exit code {code}"


def relevant(tail: list[str], count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` lines worth reading: no progress bars, no blank lines, no known noise."""
    kept = [line for line in tail if line.strip() and not PROGRESS_LINE.search(line) and not quiet.is_noise(line)]
    return kept[-count:]


def failure(run_id: str, step: str, code: int, tail: list[str], log: Path) -> str:
    """One line with the cause, then the last relevant lines of the log and its path."""
    lines = [f"run {run_id}: {step} failed: {cause(tail, code)}"]
    shown = relevant(tail)
    if shown:
        lines.append(f"  last lines of {log}:")
        lines += [f"    {line[:200]}" for line in shown]
    else:
        lines.append(f"  log: {log}")
    return "\n".join(lines)


def say(text: str = "") -> None:
    """A line of ours on stdout, at once."""
    print(text, flush=True)


def aligned(rows: list[tuple[str, str]]) -> list[str]:
    """``  name        value`` lines, the names in one column."""
    width = max((len(name) for name, value in rows if value), default=0)
    return [f"  {name:<{width}}  {value}" for name, value in rows if value]


def losses_words(record: dict[str, Any]) -> str:
    """``3.127 (step 1) -> 2.883 (step 12)`` from the manifest's losses by global step."""
    losses = record.get("losses") or []
    if not losses:
        return ""
    first, last = losses[0], losses[-1]
    return f"{first['loss']:.3f} (step {first['step']}) -> {last['loss']:.3f} (step {last['step']})"


def duration(seconds: float | None) -> str:
    return clock(seconds) if seconds is not None else "?"


def data_words(record: dict[str, Any], root: Path) -> str:
    """``data/build/default-v1/sft.jsonl: 85 rows, ~20.4k tokens (median 240)`` from the manifest's datasets."""
    import json

    words = []
    for entry in record.get("datasets") or []:
        if entry.get("role") != "datasets":
            continue
        text = f"{entry['path']}: {entry['rows']} rows" if "rows" in entry else \
            f"{entry['path']} (not a local file: a hub dataset)"
        built = entry.get("data_manifest")
        if built and (root / built["path"]).is_file():
            kinds = json.loads((root / built["path"]).read_text(encoding="utf-8")).get("kinds", {})
            tokens = next((k["tokens"] for k in kinds.values() if Path(entry["path"]).name in k.get("outputs", {})
                           and "tokens" in k), None)
            if tokens and "rows" in entry:
                text += f", median {tokens['p50']} tokens (p90 {tokens['p90']}, max {tokens['p100']})"
        words.append(text)
    return "; ".join(words)


def engine_words(config: dict[str, Any], topology: Any) -> str:
    """``1 process on CPU`` / ``8 GPUs x 2 nodes, DeepSpeed launch/engines/zero3.json``."""
    where = (f"{topology.procs_per_node} GPU(s)" if topology.device == "gpu" else
             f"{topology.procs_per_node} CPU process(es)")
    where += f" x {topology.nodes} nodes" if topology.nodes > 1 else ""
    engine = f"DeepSpeed {config['deepspeed']}" if config.get("deepspeed") else \
        "FSDP" if config.get("fsdp") or config.get("fsdp_config") else "DDP" if topology.world_size > 1 else \
        "no DeepSpeed/FSDP"
    return f"{where}, {engine}"


def estimate_words(config: dict[str, Any], record: dict[str, Any], topology: Any, root: Path) -> str:
    """The planner's wall-clock estimate for this run's GPU kind, or why there is none."""
    from launch.preflight.plan import estimate
    from launch.runner.out_of_memory import gpu_kind, host_gpu

    name = host_gpu(record.get("host"))
    kind = gpu_kind(name)
    if topology.device != "gpu" or kind is None:
        return f"none here: launch plan estimates GPUs ({name or 'no GPU on this host'})"
    dataset = next((root / Path(d["data_manifest"]["path"]).parent for d in record.get("datasets") or []
                    if d.get("role") == "datasets" and d.get("data_manifest")), None)
    try:
        found = estimate(config, topology.world_size, kind, dataset)
    except (SystemExit, Exception) as err:  # an estimate is advice: a run never stops for it
        return f"none ({err})"
    run = found.get("whole_run")
    if not run:
        return f"{found['trained_tokens_per_s_per_gpu']:.0f} trained tokens/s per {kind} (no built dataset to size)"
    return (f"{clock(run['hours'] * 3600)} for {run['steps']} steps on {topology.world_size} x {kind} "
            f"({found['trained_tokens_per_s_per_gpu']:.0f} trained tokens/s per GPU; launch plan)")


def header_lines(stage: str, recipe: Path, run_dir: Path, config: dict[str, Any], record: dict[str, Any],
           topology: Any, attempt: int, root: Path) -> list[str]:
    """What is being trained, on what, where, and how long the planner expects it to take."""
    again = f", attempt {attempt}" if attempt > 1 else ""
    return [f"{stage} of {recipe}{again}", *aligned([
        ("base model", str(config.get("base_model"))),
        ("data", data_words(record, root)),
        ("engine", engine_words(config, topology)),
        ("estimate", estimate_words(config, record, topology, root)),
        ("run folder", f"{run_dir}/ (logs: {run_dir}/logs/)"),
    ])]


def next_command(stage: str, recipe: Path, run_dir: Path, merged: bool, plain: bool) -> str:
    """What a user runs after this stage; ``plain``: the default recipes, no overrides, so ``make`` does the same."""
    if not merged:
        return f"python -m launch merge {run_dir}"
    dpo = recipe.with_name("dpo.yaml")
    if stage == "sft" and dpo.is_file():
        default = plain and recipe.parent.resolve() == (Path.cwd() / DEFAULT_RECIPES).resolve()
        return f"make dpo SFT={run_dir}" if default else f"python -m launch dpo {dpo} --parent {run_dir}"
    return f"make eval RUN={run_dir}"


def summary_lines(stage: str, recipe: Path, run_dir: Path, record: dict[str, Any], logged: dict[str, Any]) -> list[str]:
    """The final losses (and the last logged eval loss and DPO reward margin), wall time, outputs, next command."""
    outputs = record.get("outputs") or {}
    shown = [f"{run_dir / outputs[name]}/" for name in ("adapter", "merged") if name in outputs]
    return [f"{stage} done in {duration(record.get('duration_s'))}: run {run_dir.name}", *aligned([
        ("loss", losses_words(record)),
        ("eval loss", str(logged.get("eval_loss", ""))),
        ("reward margin", str(logged.get("rewards/margins", ""))),
        ("outputs", ", ".join(shown)),
        ("loss curve", str(run_dir / outputs["loss_curve"]) if "loss_curve" in outputs else ""),
        ("manifest", str(run_dir / "manifest.json")),
        ("logs", f"{run_dir}/logs/"),
        ("next", next_command(stage, recipe, run_dir, "merged" in outputs, not record.get("overrides"))),
    ])]
