"""Check a recipe before it reaches a GPU: Axolotl's own validation, then ours. No GPU, no download.

    python -m launch check recipes/openbiollm-70b/v2/sft.yaml [RECIPE ...] [--gpus N --gpu h100-80gb]
    python -m launch check RECIPE --cluster launch/clusters/h100-8x.yaml [--nodes N]

Resolves each recipe offline as Axolotl will on the cluster (launch/preflight/resolve.py: its validate_config and
normalize_config on the GPUs given, default the card's for OpenBioLLM, and its chat_template strategy on the
base model's config files in base_model_configs/), prints what it resolves, and applies our rules:
  axolotl    Axolotl accepts the recipe and logs no warning (a card-caused one is printed as acknowledged)
  unread     no key that nothing reads in the recipe's stage (max_prompt_len in DPO, rl_beta in SFT)
  turns      every assistant turn ends in an end-of-turn token that carries a label
  plugins    every plugin the recipe lists loads (Axolotl would train without one that does not)
  keys       every key, top level and in dataset entries, is one Axolotl's schema knows, with the input args of
             the plugins the recipe lists, as Axolotl merges them (preflight/plugin_schema.py) (else: "did you mean")
  datasets   every dataset path is an output of a mixture in data_prep/mixtures/ (data/build/<mixture>/<kind>.jsonl)
  base model a hub model names its revision (revision_of_model); a local folder is hashed into the manifest
  engine     a ``deepspeed`` config file exists
  lock       a released recipe (and the engine file it names) still has its sha256 in recipes/LOCK
  card       the OpenBioLLM recipes carry the model card's published hyperparameters, exactly, and its
             global batch of train_batch_size 12 examples x num_devices (8B: 1 GPU, 12; 70B: 8 GPUs, 96).
             Unpacked, a micro-batch is rows: micro_batch_size 12 and total batch 12 x num_devices. Packed
             (sample_packing), it is bins of sequence_len tokens: check prints the tokens per step and the average
             examples per step at the mixture's mean row length (launch/preflight/packed_batch.py), which must be within
             25% of 12 x num_devices
Exit status 1 when any recipe has a problem; each problem names the file, the line and the reason.
"""

from __future__ import annotations

import argparse
import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from common.errors import cli_main, positive_int

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path("recipes/LOCK")
MIXTURES = Path("data_prep/mixtures")
BUILD = Path("data/build")
DATASET_LISTS = ("datasets", "test_datasets")

# The OpenBioLLM model card's training hyperparameters (aaditya/Llama3-OpenBioLLM-70B and -8B).
CARD_ADAPTER = {"adapter": "qlora", "load_in_4bit": True, "lora_r": 128, "lora_alpha": 256, "lora_dropout": 0.05,
                "lora_target_linear": True, "chat_template": "llama3"}
CARD_TARGET_MODULES = {"q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "down_proj", "up_proj"}
CARD_SFT = {"learning_rate": 0.0002, "lr_scheduler": "cosine", "warmup_steps": 100, "num_epochs": 4,
            "optimizer": "adamw_bnb_8bit", "micro_batch_size": 12, "eval_batch_size": 8}
CARD_BASE_MODEL = {"openbiollm-70b": "meta-llama/Meta-Llama-3-70B-Instruct",
                   "openbiollm-8b": "meta-llama/Meta-Llama-3-8B"}  # the 8B card's base is not -Instruct


def schema_keys(schema: Any) -> set[str]:
    """The field names of a pydantic model and their aliases."""
    keys = set()
    for name, field in schema.model_fields.items():
        keys |= {name} | {alias for alias in (field.alias, field.validation_alias) if isinstance(alias, str)}
    return keys


@cache
def axolotl_keys(plugins: tuple[str, ...] = ()) -> frozenset[str]:
    """Every top-level key Axolotl's config schema accepts, with the keys of the recipe's ``plugins``: Axolotl
    merges each registered plugin's input args into its schema (integrations/config.py merge_input_args)."""
    from axolotl.utils.schemas.config import AxolotlInputConfig

    from launch.preflight.plugin_schema import plugin_args

    keys = schema_keys(AxolotlInputConfig)
    for name in plugins:
        schema = plugin_args(name)
        keys |= schema_keys(schema) if schema is not None else set()
    return frozenset(keys)


@cache
def dataset_keys() -> frozenset[str]:
    """Every key a ``datasets`` / ``test_datasets`` entry may have (Axolotl's SFT and DPO dataset schemas)."""
    from axolotl.utils.schemas.datasets import DPODataset, SFTDataset

    keys = set()
    for schema in (SFTDataset, DPODataset):
        for name, field in schema.model_fields.items():
            keys |= {name} | {alias for alias in (field.alias, field.validation_alias) if isinstance(alias, str)}
    return frozenset(keys)


def key_lines(text: str) -> dict[str, int]:
    """Line number (from 1) of each top-level key, and of each dataset entry's keys as ``datasets.0.path``."""
    node = yaml.compose(text)
    if not isinstance(node, yaml.MappingNode):
        return {}
    lines = {}
    for key, value in node.value:
        lines[key.value] = key.start_mark.line + 1
        if key.value in DATASET_LISTS and isinstance(value, yaml.SequenceNode):
            for number, item in enumerate(value.value):
                for inner, _ in item.value if isinstance(item, yaml.MappingNode) else []:
                    lines[f"{key.value}.{number}.{inner.value}"] = inner.start_mark.line + 1
    return lines


def suggest(key: str, known: frozenset[str]) -> str:
    near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return f"; did you mean {near[0]!r}?" if near else ""


def unknown_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, reason)`` for each key Axolotl would drop (top level, dataset entries), with the nearest known one."""
    from launch.preflight.plugin_schema import loadable_plugins

    known = axolotl_keys(tuple(loadable_plugins(config)))
    found = [(key, f"unknown key {key!r}, Axolotl would ignore it{suggest(key, known)}")
             for key in config if key not in known]
    for group in DATASET_LISTS:
        for number, entry in enumerate(config.get(group) or []):
            found += [(f"{group}.{number}.{key}", f"unknown key {key!r} in {group}.{number}, Axolotl would ignore it"
                       f"{suggest(key, dataset_keys())}") for key in entry if key not in dataset_keys()]
    return found


def axolotl_problems(config: dict[str, Any]) -> list[str]:
    """Axolotl's own validation of the config, as messages (empty when it passes)."""
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    from launch.preflight.plugin_schema import recipe_plugins
    from launch.preflight.resolve import axolotl_warnings

    try:
        # its warnings are kept and reported by the resolution (launch/preflight/resolve.py)
        with axolotl_warnings(1), recipe_plugins(config):
            validate_config(DictDefault(json.loads(json.dumps(config))))
    except Exception as err:  # pydantic's ValidationError, ValueError, ...: report whatever Axolotl refuses
        return [f"Axolotl's validation: {' '.join(str(err).split())}"]
    return []


def mixture_outputs(root: Path) -> dict[str, str]:
    """Every file a mixture build writes, relative to the repository: path -> the mixture that makes it."""
    outputs = {}
    for mixture in sorted((root / MIXTURES).glob("*.yaml")):
        with open(mixture, encoding="utf-8") as handle:
            spec = yaml.safe_load(handle) or {}
        for kind in ("sft", "dpo"):
            if spec.get(kind):
                for name in (f"{kind}.jsonl", f"{kind}.validation.jsonl"):
                    outputs[(BUILD / mixture.stem / name).as_posix()] = (MIXTURES / mixture.name).as_posix()
    return outputs


def dataset_problems(config: dict[str, Any], root: Path) -> list[tuple[str, str]]:
    """``(key, reason)`` for each dataset path that is not a mixture's output, or the wrong kind of one."""
    outputs, kind = mixture_outputs(root), "dpo" if config.get("rl") else "sft"
    found = []
    for key in DATASET_LISTS:
        for number, dataset in enumerate(config.get(key) or []):
            path = str(dataset.get("path", ""))
            if path not in outputs:
                found.append((key, f"{key}.{number}.path {path!r} is not the output of a mixture in {MIXTURES}/ "
                                   f"(expected {BUILD}/<mixture>/{kind}.jsonl)"))
            elif not Path(path).name.startswith(kind):
                found.append((key, f"{key}.{number}.path {path!r} holds {Path(path).name.split('.')[0]} rows; "
                                   f"this recipe trains {kind}"))
    return found


def base_model_problems(config: dict[str, Any], root: Path) -> list[tuple[str, str]]:
    """A hub base model must name a revision: a commit, or a branch the launcher resolves at submission."""
    model = str(config.get("base_model", ""))
    local = model.startswith(("/", ".", "models/")) or (root / model).is_dir()
    if local or config.get("revision_of_model") or config.get("model_revision"):
        return []
    return [("base_model", f"base model {model!r} is not pinned: add revision_of_model (a commit id, or a branch "
                           "that the launcher resolves to a commit at submission)")]


def card_model(recipe: Path) -> str | None:
    """The OpenBioLLM model a recipe reproduces, from its folder name (None: not an OpenBioLLM recipe)."""
    return next((part for part in recipe.parts if part in CARD_BASE_MODEL), None)


def card_problems(config: dict[str, Any], recipe: Path) -> list[tuple[str, str]]:
    """For an OpenBioLLM recipe: each card value that is missing or different."""
    model = card_model(recipe)
    if model is None:
        return []
    expected: dict[str, Any] = dict(CARD_ADAPTER)
    if not config.get("rl"):
        expected |= CARD_SFT | {"base_model": CARD_BASE_MODEL[model]}
    if config.get("sample_packing"):  # micro_batch_size counts packed bins: packed_batch_report's rule
        expected.pop("micro_batch_size", None)
    found = [(key, f"{key} is {config.get(key)!r}; the model card says {value!r}")
             for key, value in expected.items() if config.get(key) != value]
    if set(config.get("lora_target_modules") or []) != CARD_TARGET_MODULES:
        found.append(("lora_target_modules", f"lora_target_modules must be the card's {sorted(CARD_TARGET_MODULES)}"))
    return found


def packed_batch_report(config: dict[str, Any], model: str | None, gpus: int,
                        root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """For a packed SFT recipe: its step in tokens and examples (printed), and for an OpenBioLLM one the card rule:
    the card's train_batch_size 12 per device counts examples, so a step's average examples must be near it."""
    from launch.preflight.packed_batch import packed_batch
    from launch.preflight.resolve import CARD_BATCH, CARD_DEVICES

    batch = packed_batch(config, gpus, root)
    if model is None:
        return [], batch.lines()
    card_batch = CARD_BATCH * CARD_DEVICES[model]
    found = [] if batch.near(card_batch) else [("micro_batch_size", batch.off_card(card_batch, CARD_DEVICES[model]))]
    return found, batch.lines(card_batch, (CARD_SFT["learning_rate"], CARD_SFT["warmup_steps"]))


def read_lock(root: Path) -> dict[str, str]:
    """recipes/LOCK (``sha256sum`` lines: hash, two spaces, path from the repository root) as path -> hash."""
    lock = {}
    for number, line in enumerate((root / LOCK).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.startswith("#"):
            digest, sep, path = line.partition("  ")
            if not sep or len(digest) != 64:
                raise SystemExit(f"{root / LOCK}:{number}: expected '<sha256>  <path>', got {line!r}")
            lock[path.strip()] = digest
    return lock


def lock_problems(recipe: Path, config: dict[str, Any], root: Path) -> list[str]:
    """A recipe, and the engine file it names, must match their sha256 in recipes/LOCK."""
    from common.files import sha256_file

    lock, found = read_lock(root), []
    relative = recipe.resolve().relative_to(root.resolve()).as_posix()
    files = [relative] + ([str(config["deepspeed"])] if config.get("deepspeed") else [])
    for path in files:
        if path not in lock:
            found.append(f"{path} is not in {LOCK}: release it with a line in recipes/CHANGELOG.md and "
                         f"`sha256sum {path} >> {LOCK}`")
        elif (root / path).is_file() and sha256_file(root / path) != lock[path]:
            found.append(f"{path} changed since its release (sha256 differs from {LOCK}): released versions "
                         f"never change; put the change in a new version folder (v2/) with a CHANGELOG line")
    return found


def check_recipe(recipe: Path, root: Path = ROOT, gpus: int | None = None,
                 gpu: str | None = None) -> tuple[list[str], list[str]]:
    """Every problem with a recipe, as ``FILE:LINE: reason`` lines, and what Axolotl resolves for it."""
    text = recipe.read_text(encoding="utf-8")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [f"{recipe}: not YAML: {' '.join(str(err).split())}"], []
    if not isinstance(config, dict):
        return [f"{recipe}:1: a recipe is a YAML mapping of Axolotl keys"], []
    from launch.preflight.plugin_schema import plugin_problems
    from launch.preflight.resolve import job_gpus, resolved_problems, unread_keys

    lines = key_lines(text)
    found = plugin_problems(config) + unknown_keys(config) + dataset_problems(config, root)
    found += base_model_problems(config, root)
    if config.get("deepspeed") and not (root / str(config["deepspeed"])).is_file():
        found.append(("deepspeed", f"deepspeed config {config['deepspeed']!r} does not exist"))
    found += card_problems(config, recipe)
    stage = "a DPO" if config.get("rl") else "an SFT"
    found += [(key, f"{key}: nothing reads it in {stage} recipe: {why}") for key, why in unread_keys(config)]
    axolotl = axolotl_problems(config)
    resolved, printed = resolved_problems(config, card_model(recipe), gpus, gpu, root) if not axolotl \
        else ([], [])
    found += resolved
    if not axolotl and config.get("sample_packing") and not config.get("rl"):
        model = card_model(recipe)
        packed, batch = packed_batch_report(config, model, job_gpus(model, gpus, gpu)[0], root)
        found, printed = found + packed, printed[:1] + batch + printed[1:]  # after the total batch line
    problems = [f"{recipe}:{lines.get(key, 1)}: {reason}" if key else f"{recipe}: {reason}" for key, reason in found]
    if recipe.resolve().is_relative_to((root / "recipes").resolve()):
        problems += [f"{recipe}: {reason}" for reason in lock_problems(recipe, config, root)]
    return problems + [f"{recipe}: {reason}" for reason in axolotl], printed


def check(recipe: Path, root: Path = ROOT, gpus: int | None = None, gpu: str | None = None) -> list[str]:
    """Every problem with a recipe, as ``FILE:LINE: reason`` lines (empty when it passes)."""
    return check_recipe(recipe, root, gpus, gpu)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m launch check", description=__doc__.splitlines()[0])
    from launch.preflight.resolve import CARD_GPU, GPU_KINDS

    parser.add_argument("recipes", nargs="+", type=Path, metavar="RECIPE", help="recipe YAML files")
    parser.add_argument("--gpus", type=positive_int,
                        help="GPUs the job gets (default: the card's for OpenBioLLM, else 1)")
    parser.add_argument("--gpu", choices=sorted(GPU_KINDS), default=None, help=f"GPU kind (default {CARD_GPU} "
                        "with --gpus, --cluster or an OpenBioLLM recipe; else this machine, as on CPU)")
    parser.add_argument("--cluster", type=Path, help="a cluster profile (launch/clusters/): its gpus_per_node")
    parser.add_argument("--nodes", type=positive_int, default=1, help="nodes, with --cluster (default 1)")
    args = parser.parse_args(argv)
    gpus = args.gpus
    if args.cluster is not None:
        if not args.cluster.is_file():
            raise SystemExit(f"cluster profile not found: {args.cluster}")
        profile = yaml.safe_load(args.cluster.read_text(encoding="utf-8")) or {}
        if not isinstance(profile.get("gpus_per_node"), int):
            raise SystemExit(f"{args.cluster}: gpus_per_node must be a whole number")
        gpus = profile["gpus_per_node"] * args.nodes
    gpu = args.gpu or (CARD_GPU if gpus is not None else None)
    failed = 0
    for recipe in args.recipes:
        if not recipe.is_file():
            raise SystemExit(f"recipe not found: {recipe}")
        problems, resolved = check_recipe(recipe, gpus=gpus, gpu=gpu)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{recipe}: ok (Axolotl's resolution without warnings, every key read, end of turn trained, "
                  "known keys, mixture datasets, pinned base model, lock, card)")
        print("\n".join(resolved))
        failed += bool(problems)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    cli_main(main)
