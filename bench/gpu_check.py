"""One prepared GPU check: the recipes' CUDA path end to end, then its throughput, in one command.

    python3 bench/gpu_check.py --out "$OUT"                          # one H100/H200, at most 9 min (docs/gpu-check.md)
    .venv/bin/python bench/gpu_check.py --cpu --out /tmp/gpu-check   # the same steps, tiny, on CPU (the tests)

Steps, in order, each with its own time limit, all under one overall budget (--budget):

    environment  GPU, driver, torch/CUDA, bitsandbytes' native library, versions that differ from constraints.txt
    sft          QLoRA SFT + merge through `python -m launch sft`, the latest 8B recipe's settings, on a Llama-3
                 architecture model initialised from its config here (no download), tokenizer built in-process
    dpo          DPO from the SFT run's merged model through `python -m launch dpo`, then merge
    eval         zero-shot `python -m eval run` of the DPO run's merged model on the bundled fixtures
    throughput   bench/gpu_throughput.py on a Llama-3-8B-shaped model, beside `launch plan`'s estimates
    zero3        a few steps under the 70B recipe's DeepSpeed ZeRO-3 config, one process (when deepspeed is there)

After every step, OUT/results.json, OUT/results.md and OUT/logs.txt (each step's log tail) are rewritten whole,
so a run cut short keeps what it measured. Models, runs and full logs go to --work (default OUT/work; on the
GPU machine give a folder outside $OUT, which brings back only a few small files).

``--cpu`` swaps what a CPU cannot run (bf16, tf32, 8-bit AdamW, flash attention, large shapes) for what it
can, and results.json lists every such substitution.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import gpu_check_steps as steps  # noqa: E402
from common.files import atomic_writer, write_json_atomic  # noqa: E402

GPU_BUDGET_S = 540  # the 9 minutes
CPU_BUDGET_S = 1800  # two slow cores
# (step, seconds on a GPU, seconds on CPU). A step starts only while the budget has its limit left (zero3: if it fits).
STEPS = [("environment", 30, 120), ("sft", 130, 600), ("dpo", 120, 600), ("eval", 60, 300),
         ("throughput", 240, 600), ("zero3", 120, 300)]


LOG_TAIL = 80


class StepTimeout(Exception):
    """A step ran past its limit."""


class Check:
    """Runs the steps, keeps their results, and rewrites results.json and results.md after each."""

    TITLE = "GPU check"  # results.md's heading (bench/mini_repro.py runs its own steps under another)

    def __init__(self, out: Path, cpu: bool, budget: float, work: Path | None = None):
        self.out, self.cpu, self.work = out, cpu, work or out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.deadline = time.monotonic() + budget
        self.children: list[subprocess.Popen] = []
        self.step_limit = 0.0  # seconds the running step may take
        self.results: dict[str, Any] = {
            "mode": "cpu" if cpu else "gpu", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "budget_s": budget, "substitutions": {}, "steps": {}}

    def substitute(self, key: str, value: Any, reason: str) -> None:
        """Record a value the check runs with instead of the recipe's, and why."""
        self.results["substitutions"][key] = {"value": value, "reason": reason}

    def run(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
        """A subprocess in its own process group (so a timeout ends all of it), output to ``log``."""
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1",
                    "WANDB_MODE": "disabled", **(env or {})}
        with open(log, "w", encoding="utf-8") as handle:
            proc = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=handle, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.children.append(proc)
            try:
                return proc.wait()
            finally:
                self.children.remove(proc)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def step(self, name: str, limit: float, function) -> None:
        """Run one step under ``limit`` seconds (SIGALRM) and record its status, checks and figures."""
        left = self.deadline - time.monotonic()
        entry: dict[str, Any] = {"limit_s": round(min(limit, left))}
        if left < limit * (1.0 if name == "zero3" else 0.5):
            entry |= {"status": "skipped", "reason": f"only {left:.0f} s of the budget left"}
            return self.record(name, entry)
        limit = self.step_limit = min(limit, left)
        print(f"[{name}] limit {limit:.0f} s", flush=True)
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        start = time.monotonic()
        try:
            found = function(self, entry)
            entry["status"] = found or ("passed" if all(entry.get("checks", {}).values()) else "failed")
        except StepTimeout:
            entry["status"] = "timed out"
        except Exception as err:  # a step's failure is a result; the next step still runs
            entry |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        entry["seconds"] = round(time.monotonic() - start, 1)
        self.record(name, entry)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        self.results["steps"][name] = entry
        self.results["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(self.out / "results.json", self.results)
        with atomic_writer(self.out / "results.md") as handle:
            handle.write(self.render())
        with atomic_writer(self.out / "logs.txt") as handle:  # each step's log tail, for a step that failed
            for log in [*sorted(self.work.glob("*.log")), *sorted(self.work.glob("throughput/*.log"))]:
                lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL:]
                handle.write(f"==> {log.name} (last {len(lines)} lines)\n" + "\n".join(lines) + "\n")
        print(f"[{name}] {entry['status']}" + (f" ({entry.get('reason') or entry.get('error')})"
                                               if entry.get("reason") or entry.get("error") else ""), flush=True)


    def render(self) -> str:
        """results.md: the steps' table and the substitutions (a subclass may add its own sections)."""
        return markdown(self.results, self.TITLE)


def on_alarm(signum: int, frame: Any) -> None:
    raise StepTimeout()


def short(value: Any) -> str:
    """A figure for the table: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return re.sub(r"\s+", " ", str(value))


def markdown(results: dict[str, Any], title: str = Check.TITLE) -> str:
    """The results as a markdown table: one row per step, then the substitutions."""
    lines = [f"# {title} ({results['mode']}), {results['started_at']}", "",
             "| step | status | seconds | limit s | checks failed | figures |", "| --- | --- | --- | --- | --- | --- |"]
    for name, entry in results["steps"].items():
        failed = [k for k, ok in entry.get("checks", {}).items() if not ok]
        figures = "; ".join(f"{k} {short(v)}" for k, v in entry.get("figures", {}).items())
        note = entry.get("reason") or entry.get("error") or ""
        lines.append(f"| {name} | {entry['status']} | {entry.get('seconds', '')} | {entry['limit_s']} | "
                     f"{', '.join(failed) or ('none' if entry.get('checks') else '')} | "
                     f"{'; '.join(x for x in (figures, short(note)) if x)} |")
    if results["substitutions"]:
        lines += ["", "Substitutions (value the check ran with instead of the recipe's):", ""]
        lines += [f"- `{k}`: {v['value']} ({v['reason']})" for k, v in results["substitutions"].items()]
    return "\n".join(lines) + "\n"


def arguments(parser: argparse.ArgumentParser, default_out: str, steps: list[tuple[str, int, int]],
              gpu_budget: float, cpu_budget: float) -> argparse.ArgumentParser:
    """--out, --cpu, --budget, --work and --steps: the options of a one-command run of steps (this check,
    bench/mini_repro.py)."""
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or default_out),
                        help=f"results.json, results.md, logs.txt (default: $OUT, else {default_out}/)")
    parser.add_argument("--cpu", action="store_true", help="the same steps, small, on CPU: a pipeline check")
    parser.add_argument("--budget", type=float, help=f"overall seconds (default {gpu_budget} on GPU, "
                                                     f"{cpu_budget} with --cpu)")
    parser.add_argument("--work", type=Path, help="models, data, run folders and logs (default: OUT/work)")
    parser.add_argument("--steps", nargs="+", choices=[s[0] for s in steps],
                        help="a subset, in order (e.g. again on the same warm machine)")
    return parser


def run_steps(kind: type[Check], args: argparse.Namespace, steps: list[tuple[str, int, int]], module: Any,
              gpu_budget: float, cpu_budget: float) -> Check:
    """Each step of ``steps`` (name, GPU limit, CPU limit) that ``args`` ask for, ``module.<name>`` under its
    limit; prints the tables and returns the run."""
    check = kind(args.out.resolve(), args.cpu, args.budget or (cpu_budget if args.cpu else gpu_budget),
                 args.work.resolve() if args.work else None)
    for name, gpu_limit, cpu_limit in steps:
        if args.steps is None or name in args.steps:
            check.step(name, cpu_limit if args.cpu else gpu_limit, getattr(module, name))
    print(check.render())
    return check


def main(argv: list[str] | None = None) -> int:
    parser = arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "gpu-check", STEPS,
                       GPU_BUDGET_S, CPU_BUDGET_S)
    check = run_steps(Check, parser.parse_args(argv), STEPS, steps, GPU_BUDGET_S, CPU_BUDGET_S)
    print(f"results: {check.out / 'results.json'}")
    return 0 if all(e["status"] in ("passed", "skipped") for e in check.results["steps"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
