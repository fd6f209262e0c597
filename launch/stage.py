"""Run one training stage locally: resolve the recipe, run Axolotl, merge the adapter, record it all.

    python -m launch sft recipes/smollm2-135m/v1/sft.yaml
    python -m launch dpo recipes/smollm2-135m/v1/dpo.yaml --parent runs/<sft-run-id>

A run folder ``runs/<run-id>/`` gets ``config.yaml`` (the recipe as run), ``adapter/``,
``merged/``, ``logs/`` and ``manifest.json``. Axolotl does the work; we give it paths and keep records.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from launch import attempts, manifest, quiet, train_record
from launch.distributed import Topology, train_command
from launch.records import redact_text, secret_values, write_json_atomic

# Each stage is a list of Axolotl CLI steps, run in order on the resolved config.
STAGE_STEPS = {
    "sft": ["train", "merge"],
    "dpo": ["train", "merge"],
}
STAGE_PARENT = {"dpo": "sft"}  # a DPO run starts from an SFT run's merged model
LOG_TAIL_LINES = 40


@dataclass
class StageRun:
    """What one invocation asks for."""

    stage: str
    recipe: Path
    runs_dir: Path = Path("runs")
    run_id: str | None = None
    parent: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    root: Path = field(default_factory=Path.cwd)
    topology: Topology = field(default_factory=Topology)  # nodes x processes the train step runs on
    merge: bool = True  # False: leave the merge to a separate `python -m launch merge runs/<id>` (SLURM chains)


def recipe_slug(recipe: Path) -> str:
    """``recipes/smollm2-135m/v1/sft.yaml`` -> ``smollm2-135m-v1``."""
    parts = recipe.resolve().parts
    if "recipes" in parts:
        inner = parts[parts.index("recipes") + 1 : -1]
        if inner:
            return "-".join(inner)
    return recipe.stem


def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts and lists."""
    *path, last = dotted.split(".")
    node: Any = config
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def latest_run(runs_dir: Path, stage: str) -> Path:
    """The most recently finished successful run of ``stage``."""
    done = []
    for path in runs_dir.glob(f"*/{manifest.MANIFEST}"):
        record = manifest.read(path.parent)
        if record.get("stage") == stage and record.get("status") == "succeeded":
            done.append((record["ended_at"], path.parent))
    if not done:
        raise SystemExit(f"no successful {stage} run in {runs_dir}/: run `make {stage}` first")
    return max(done)[1]


def load_recipe(recipe: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the user's ``--set`` overrides applied."""
    with open(recipe, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def resolve_config(request: StageRun, run_dir: Path, parent: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe with the user's overrides and the run folder's paths applied."""
    config = load_recipe(request.recipe, request.overrides)
    if parent is not None:
        config["base_model"] = str(Path(parent["path"]) / "merged")
    config["output_dir"] = str(run_dir / "adapter")
    config["dataset_prepared_path"] = str(run_dir / "prepared")
    attempts.launcher_settings(config)  # our Axolotl plugins (CPU placement, preemption) and auto-resume
    return config


def stage_env(config: dict[str, Any]) -> dict[str, str]:
    """The environment Axolotl runs in: offline by default, no telemetry, wandb off unless asked for."""
    env = dict(os.environ)
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    if not (config.get("use_wandb") or config.get("wandb_project")):
        env["WANDB_MODE"] = "disabled"
    elif not env.get("WANDB_API_KEY"):  # a recipe that logs to wandb logs offline until a key is set
        env.setdefault("WANDB_MODE", "offline")
    if env.get("WANDB_MODE") != "disabled" and config.get("output_dir"):  # wandb/ lands in the run folder
        env.setdefault("WANDB_DIR", str(Path(config["output_dir"]).resolve().parent))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def step_command(step: str, config_path: Path, run_dir: Path, topology: Topology | None = None) -> list[str]:
    """The Axolotl command for one step (train through torchrun/srun when ``topology`` spans processes)."""
    if step == "train":
        return train_command(config_path, topology or Topology())
    if step == "merge":
        adapter = run_dir / "adapter"
        return [sys.executable, "-m", "axolotl.cli.merge_lora", str(config_path), f"--lora_model_dir={adapter}"]
    raise ValueError(f"unknown step {step!r}")


def place_merged(run_dir: Path) -> None:
    """Axolotl merges into ``adapter/merged``; the run keeps it at ``merged/``, replacing any earlier attempt's."""
    shutil.rmtree(run_dir / "merged", ignore_errors=True)
    shutil.move(run_dir / "adapter" / "merged", run_dir / "merged")


def run_logged(command: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    """Run ``command``, echoing its output and writing it, secrets redacted, to ``log_path``.

    The log keeps every line; the terminal skips known third-party import noise unless --verbose (launch/quiet.py).
    """
    secrets = secret_values(env)
    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            line = redact_text(line, secrets)
            if not quiet.is_noise(line):
                sys.stdout.write(line)
            log.write(line)
            tail.append(line.rstrip("\n"))
        return proc.wait(), list(tail)


def open_run(request: StageRun) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Create the run folder, config and opening manifest; or reopen a queued or preempted one (SLURM requeue)."""
    if request.stage not in STAGE_STEPS:
        raise SystemExit(f"unknown stage {request.stage!r}: choose from {', '.join(STAGE_STEPS)}")
    if not request.recipe.is_file():
        raise SystemExit(f"recipe not found: {request.recipe}")
    parent = None
    if request.stage in STAGE_PARENT:
        parent_dir = request.parent or latest_run(request.runs_dir, STAGE_PARENT[request.stage])
        parent = {"run_id": parent_dir.name, "path": str(parent_dir), "stage": manifest.read(parent_dir)["stage"]}

    run_id = request.run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{request.stage}-{recipe_slug(request.recipe)}"
    run_dir = request.runs_dir / run_id
    if (run_dir / manifest.MANIFEST).is_file() and request.run_id:
        record = manifest.read(run_dir)
        if record["status"] not in attempts.REOPENABLE:
            raise SystemExit(f"run {run_id} already {record['status']}: choose another --run-id")
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        return run_dir, config, record
    config = resolve_config(request, run_dir, parent)
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [Path(sys.executable).name, "-m", "launch", *sys.argv[1:]]
    record = manifest.start(run_dir, stage=request.stage, recipe=request.recipe, config=config, root=request.root,
                            parent=parent, argv=argv, env=stage_env(config))
    return run_dir, config, record


def run_stage(request: StageRun) -> Path:
    """Run every step of a stage into its run folder and return it. Raises SystemExit on failure or preemption."""
    run_dir, config, record = open_run(request)
    run_id, config_path, env = run_dir.name, run_dir / "config.yaml", stage_env(config)
    attempt = attempts.begin(record, run_dir, request.topology.as_record())
    write_json_atomic(run_dir / manifest.MANIFEST, record)
    # SLURM's requeue and preemption send SIGTERM to every process: the trainer checkpoints, we record it.
    signal.signal(signal.SIGTERM, lambda signum, frame: print(f"run {run_id}: SIGTERM, waiting for the checkpoint"))
    print(f"run {run_id}: {request.stage} from {request.recipe}, base model {config['base_model']}, "
          f"attempt {attempt['attempt']}, {request.topology.world_size} process(es)")

    outputs = dict(record.get("outputs") or {}, config="config.yaml")
    steps = [s for s in STAGE_STEPS[request.stage] if request.merge or s != "merge"]
    for step in steps:
        suffix = "" if attempt["attempt"] == 1 else f".attempt{attempt['attempt']}"
        log_name = f"logs/{step}{suffix}.log"
        print(f"run {run_id}: {step} (log: {run_dir / log_name})")
        try:
            command = step_command(step, config_path, run_dir, request.topology)
            code, tail = run_logged(command, run_dir / log_name, env, request.root)
        except BaseException as err:  # interrupted or could not start: still say so in the manifest
            code, tail = 130 if isinstance(err, KeyboardInterrupt) else 1, [repr(err)]
            manifest.finish(run_dir, record, exit_code=code, outputs=outputs,
                            error={"step": step, "message": repr(err), "log": log_name, "log_tail": tail})
            raise
        outputs[f"log_{step}"] = log_name
        if attempts.end(attempt, run_dir, code) == "preempted":
            manifest.finish(run_dir, record, exit_code=code, outputs=outputs, error=None)
            record["status"] = "preempted"
            write_json_atomic(run_dir / manifest.MANIFEST, record)
            print(f"run {run_id}: preempted, checkpoint saved; the requeued job resumes it")
            raise SystemExit(attempts.PREEMPTED_EXIT)
        if code != 0:
            manifest.finish(run_dir, record, exit_code=code, outputs=outputs,
                            error={"step": step, "message": f"axolotl {step} exited with {code}", "log": log_name,
                                   "log_tail": tail})
            raise SystemExit(f"run {run_id}: {step} failed with exit code {code}; see {run_dir / log_name}")
        if step == "train":
            outputs["adapter"] = "adapter"
            record.update(train_record.summarize(run_dir, config, run_dir / log_name))  # for `launch reproduce`
        if step == "merge":
            place_merged(run_dir)
            outputs["merged"] = "merged"

    manifest.finish(run_dir, record, exit_code=0, error=None, outputs=outputs)
    print(f"run {run_id}: done -> {run_dir}")
    return run_dir
