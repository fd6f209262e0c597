"""A run's config: the recipe, the user's ``--set`` overrides, and the run folder's own paths (``config.yaml``).

    python -m launch sft RECIPE --set num_epochs=2 --set datasets.0.path=data/build/sft.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from common.errors import InputError
from common.files import atomic_writer

RUN_PATHS = {"output_dir": "adapter", "dataset_prepared_path": "prepared"}  # the config keys inside the run folder
CONFIG = "config.yaml"
ALLOC_CONF = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")  # torch's allocator settings: the new name, the old
GROUP_EXIT_WAIT_S = 600  # after the trainer's first process exits, how long its group may take to follow


def parse_override(text: str) -> tuple[str, object]:
    """``key.path=value`` with the value read as YAML (``2`` is an int, ``[a, b]`` a list)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def set_dotted(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts and lists; InputError naming the key when the path does not fit."""
    keys = dotted.split(".")
    node: Any = config
    for depth, key in enumerate(keys):
        where, last = ".".join(keys[:depth]) or "the recipe", depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise InputError(f"--set {dotted}: {where} is a list of {len(node)} item(s); {key!r} is not an index "
                                 f"in it (0 to {len(node) - 1})")
            key = int(key)
        elif not isinstance(node, dict):
            raise InputError(f"--set {dotted}: {where} is {node!r}, not a mapping or a list")
        elif not last:
            node.setdefault(key, {})
        if last:
            node[key] = value
        else:
            node = node[key]


def load_recipe(recipe: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the user's ``--set`` overrides applied; InputError naming the file when it cannot be one."""
    try:
        with open(recipe, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{recipe}: cannot read the recipe ({getattr(err, 'strerror', None) or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{recipe}:{mark.line + 1}" if mark else str(recipe)
        raise InputError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(config, dict):
        found = "empty" if config is None else f"a {type(config).__name__}"
        raise InputError(f"{recipe}: a recipe is a mapping of Axolotl settings; this file is {found}")
    if not config.get("base_model"):
        raise InputError(f"{recipe}: no base_model")
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def attach_paths(config: dict[str, Any], run_dir: Path) -> bool:
    """Point the config's run-folder paths at ``run_dir`` as it is now; True when they pointed elsewhere.

    Axolotl reads ``output_dir`` relative to its working directory, the repository root, where the recipe's data
    and model paths are too. So the run folder's own paths are set to where the folder is each time it is
    opened: a copied or moved run folder writes into itself, never into the folder it was copied from.
    """
    moved = False
    for key, name in RUN_PATHS.items():
        path = run_dir / name
        moved |= not config.get(key) or Path(str(config[key])).resolve() != path.resolve()
        config[key] = str(path)
    return moved


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``config.yaml``."""
    return yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Replace a run folder's ``config.yaml`` whole."""
    with atomic_writer(run_dir / CONFIG) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)


def reattach(run_dir: Path, config: dict[str, Any]) -> None:
    """Rewrite ``config.yaml`` when the run folder was copied or moved since it was written."""
    if attach_paths(config, run_dir):
        print(f"run {run_dir.name}: the folder moved; config.yaml now points into {run_dir}")
        write_config(run_dir, config)


def stage_env(config: dict[str, Any]) -> dict[str, str]:
    """The environment Axolotl runs in: offline by default, no telemetry, wandb off unless asked for, and torch's
    expandable memory segments unless the user set the allocator (as the ``axolotl`` command does; we start
    ``python -m axolotl.cli.train``, which does not)."""
    env = dict(os.environ)
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    if not any(name in env for name in ALLOC_CONF):
        env["PYTORCH_ALLOC_CONF"] = "expandable_segments:True"  # fewer unusable slivers of reserved GPU memory
    env.setdefault("HF_HUB_OFFLINE", "1")
    if not (config.get("use_wandb") or config.get("wandb_project")):
        env["WANDB_MODE"] = "disabled"
    elif not env.get("WANDB_API_KEY"):  # a recipe that logs to wandb logs offline until a key is set
        env.setdefault("WANDB_MODE", "offline")
    if env.get("WANDB_MODE") != "disabled" and config.get("output_dir"):  # wandb/ lands in the run folder
        env.setdefault("WANDB_DIR", str(Path(config["output_dir"]).resolve().parent))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows each step as it happens
    # torchrun passes SIGUSR1 on to its workers like SIGTERM, and gives them time to write the checkpoint.
    env.setdefault("TORCHELASTIC_SIGNALS_TO_HANDLE", "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1")
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(GROUP_EXIT_WAIT_S))
    return env
