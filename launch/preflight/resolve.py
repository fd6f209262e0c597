"""Resolve a recipe offline the way Axolotl will on the cluster (used by ``python -m launch check``).

    python -m launch check recipes/openbiollm-8b/v2/sft.yaml --gpus 1 --gpu h100-80gb

Runs Axolotl's own ``validate_config`` (with the GPU capabilities of the target cluster) and
``normalize_config`` (with its ``WORLD_SIZE``), against the base model's small config files in
``base_model_configs/`` (no weights, no hub), then its chat_template prompt strategy on one
two-turn conversation with a stand-in tokenizer that carries the base model's special tokens and
ids. Every warning Axolotl logs on the way is kept: a released recipe must resolve without one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.preflight.base_models import CONFIGS, model_folder, stand_in_tokenizer
from launch.preflight.plugin_schema import recipe_plugins

ROOT = Path(__file__).resolve().parents[2]
# GPU kinds: (compute capability, FP8), from NVIDIA's data sheets; the names are launch plan's.
GPU_KINDS = {"h100-80gb": ("sm_90", True), "h200-141gb": ("sm_90", True), "a100-80gb": ("sm_80", False)}
CONVERSATION = [  # two assistant turns: both must end in a trained end-of-turn token
    {"role": "system", "content": "You answer medical questions."},
    {"role": "user", "content": "What does the thyroid make?"},
    {"role": "assistant", "content": "Thyroxine and triiodothyronine."},
    {"role": "user", "content": "And the adrenal medulla?"},
    {"role": "assistant", "content": "Adrenaline and noradrenaline."},
]

# Keys Axolotl 0.19 accepts and then reads on no code path of the recipe's stage: (stage, key) -> why.
UNREAD = {
    "dpo": {"max_prompt_len": "Axolotl 0.19 reads it nowhere on the DPO path (core/builders/rl.py passes "
                               "sequence_len as TRL's max_length) and TRL 1.9's DPOConfig has no prompt limit",
            "eot_tokens": "only the SFT chat_template strategy reads it; DPO's chat_template.default does not"},
    "sft": {"max_prompt_len": "Axolotl 0.19 reads it nowhere (an RL-only schema field with no reader)"},
}
SFT_UNREAD_PREFIXES = ("rl_", "dpo_", "kto_", "orpo_", "simpo_", "cpo_", "trl", "precompute_ref_log_probs")


@dataclass
class Resolved:
    """What Axolotl resolves for a recipe on a given number and kind of GPU."""

    gpus: int
    gpu: str | None
    total_batch: int = 0
    precision: str = ""
    attention: str = ""
    engine: str = ""
    checkpointing: str = ""
    eos_token: str = ""
    eot_tokens: list[str] = field(default_factory=list)
    after_turns: list[tuple[str, bool]] = field(default_factory=list)  # token after each assistant turn, trained?
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    dpo: bool = False
    packed: bool = False

    def lines(self) -> list[str]:
        """The printed summary."""
        turns = ", ".join(f"{token} {'trained' if trained else 'NOT trained'}" for token, trained in self.after_turns)
        eot = (f"end-of-turn tokens {self.eot_tokens}; after each assistant turn: {turns}" if not self.dpo else
               f"DPO trains the whole chosen and rejected answers; after the answer's text: {turns}")
        unit = " packed bins" if self.packed else ""
        return [f"  total batch {self.total_batch}{unit} on {self.gpus} x {self.gpu or 'this machine'}; "
                f"precision {self.precision}; attention {self.attention}; engine {self.engine}; "
                f"gradient checkpointing {self.checkpointing}",
                f"  eos {self.eos_token}; {eot or 'no turns resolved'}"]


def unread_keys(config: dict[str, Any]) -> list[tuple[str, str]]:
    """``(key, why)`` for each key nothing reads in the recipe's stage (DPO when ``rl`` is set, else SFT)."""
    stage = "dpo" if config.get("rl") else "sft"
    found = [(key, why) for key, why in UNREAD[stage].items() if key in config]
    if stage == "sft":
        found += [(key, "an RL-only key: read only by Axolotl's RL trainer builder (core/builders/rl.py), "
                        "which an SFT recipe (no `rl:`) never builds")
                  for key in config if key.startswith(SFT_UNREAD_PREFIXES) and key != "max_prompt_len"]
    return found


@contextmanager
def axolotl_warnings(world_size: int) -> Iterator[list[str]]:
    """Collect every warning Axolotl logs, with ``WORLD_SIZE`` set as the cluster's; restores the environment."""
    from axolotl.utils.logging import MultiProcessAdapter

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(" ".join(record.getMessage().split()))

    kept: list[str] = []
    handler, logger = Keep(level=logging.WARNING), logging.getLogger("axolotl")
    saved_env, saved_handlers, saved_propagate = dict(os.environ), list(logger.handlers), logger.propagate
    MultiProcessAdapter.warning_once.cache_clear()  # a warning already given in this process must count again
    os.environ.update({"WORLD_SIZE": str(world_size), "LOCAL_RANK": "0", "RANK": "0"})
    logger.handlers, logger.propagate = [handler], False  # kept and reported by check, not printed as they come
    try:
        yield kept
    finally:
        logger.handlers, logger.propagate = saved_handlers, saved_propagate
        os.environ.clear()
        os.environ.update(saved_env)


def capabilities(gpus: int, gpu: str | None) -> tuple[dict | None, dict | None]:
    """What Axolotl's ``gpu_capabilities()`` would report on the cluster (None, None: this machine's, as on CPU)."""
    import torch

    if gpu is None:
        return None, None
    compute, fp8 = GPU_KINDS[gpu]
    return ({"bf16": True, "fp8": fp8, "tf32": True, "n_gpu": gpus, "compute_capability": compute},
            {"torch_version": torch.__version__.split("+", maxsplit=1)[0]})


def as_trainer_runs(config: dict[str, Any]) -> dict[str, Any]:
    """The recipe with the checkpointing kwargs Axolotl fills in later, so the validators that test
    ``use_reentrant`` see what will run: normalize_config gives SFT ``use_reentrant: true``; for RL the
    trainer builder (core/builders/base.py) gives ``use_reentrant: false``."""
    data = json.loads(json.dumps(config))
    if data.get("gradient_checkpointing") and data.get("gradient_checkpointing_kwargs") is None:
        data["gradient_checkpointing_kwargs"] = {"use_reentrant": not data.get("rl")}
    return data


def trained_after_turns(cfg, tokenizer) -> list[tuple[str, bool]]:
    """For each assistant turn of CONVERSATION, the token right after its text and whether it carries a label."""
    if cfg.get("rl"):
        from axolotl.prompt_strategies.dpo.chat_template import default

        transform, _ = default(cfg)
        row = transform({"messages": CONVERSATION[:-1], "chosen": CONVERSATION[-1],
                         "rejected": {"role": "assistant", "content": "No idea."}}, tokenizer=tokenizer)
        tail = tokenizer(row["chosen"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(CONVERSATION[-1]["content"], add_special_tokens=False)["input_ids"]
        after = tail[len(answer)] if len(tail) > len(answer) else None
        return [(tokenizer.convert_ids_to_tokens(after) if after is not None else "nothing", after is not None)]
    from axolotl.prompt_strategies import load

    strategy = load("chat_template", tokenizer, cfg, dict(cfg["datasets"][0]))
    row = strategy.tokenize_prompt({"messages": [dict(m) for m in CONVERSATION]})
    ids, labels = row["input_ids"], row["labels"]
    found = []
    for turn in (m["content"] for m in CONVERSATION if m["role"] == "assistant"):
        answer = tokenizer(turn, add_special_tokens=False)["input_ids"]
        start = next(i for i in range(len(ids)) if ids[i:i + len(answer)] == answer)
        after = start + len(answer)
        found.append((tokenizer.convert_ids_to_tokens(ids[after]), labels[after] != -100))
    return found


def resolve(config: dict[str, Any], gpus: int, gpu: str | None, root: Path = ROOT) -> Resolved:
    """Axolotl's validation and normalization of ``config`` on ``gpus`` x ``gpu``, and the end-of-turn labels."""
    from axolotl.loaders.tokenizer import load_tokenizer
    from axolotl.utils.config import normalize_cfg_datasets, normalize_config, validate_config
    from axolotl.utils.dict import DictDefault

    out = Resolved(gpus=gpus, gpu=gpu, dpo=bool(config.get("rl")), packed=bool(config.get("sample_packing")))
    folder = model_folder(config, root)
    if folder is None:
        out.problems.append(f"no config files for base model {config.get('base_model')!r} here or in {CONFIGS}/: "
                            "Axolotl's resolution cannot run offline")
        return out
    caps, env_caps = capabilities(gpus, gpu)
    with axolotl_warnings(gpus) as kept, recipe_plugins(config), \
            tempfile.TemporaryDirectory(prefix="check-tokenizer-") as scratch:
        try:
            cfg = validate_config(DictDefault(json.loads(json.dumps(config))), caps, env_caps)
            validate_config(DictDefault(as_trainer_runs(config)), caps, env_caps)
            cfg.base_model_config = str(folder)
            normalize_config(cfg)
            normalize_cfg_datasets(cfg)
            cfg.tokenizer_config = str(stand_in_tokenizer(folder, Path(scratch)))
            tokenizer = load_tokenizer(cfg)
            out.after_turns = trained_after_turns(cfg, tokenizer)
        except Exception as err:  # Axolotl refuses the config: report its reason, not a traceback
            out.problems.append(f"Axolotl's validation: {' '.join(str(err).split())}")
            return out
    out.warnings = list(dict.fromkeys(kept))
    out.total_batch = int(cfg.batch_size)
    out.precision = "bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "fp32"
    out.precision += " + tf32" if cfg.tf32 else ""
    out.attention = str(cfg.attn_implementation or "eager")
    deepspeed = cfg.deepspeed if isinstance(cfg.deepspeed, dict) else {}  # normalize_config read the file
    stage = deepspeed.get("zero_optimization", {}).get("stage")
    out.engine = f"DeepSpeed ZeRO-{stage}" if stage is not None else f"DeepSpeed {cfg.deepspeed}" if cfg.deepspeed \
        else f"FSDP{cfg.fsdp_version or ''}" if cfg.fsdp_config else "DDP" if cfg.ddp else "one process"
    kwargs = as_trainer_runs(config).get("gradient_checkpointing_kwargs") or {}
    out.checkpointing = ("off" if not cfg.gradient_checkpointing else
                         f"on, {'reentrant' if kwargs.get('use_reentrant') else 'non-reentrant'}")
    out.eos_token = tokenizer.eos_token
    out.eot_tokens = list(cfg.eot_tokens or [tokenizer.eos_token])
    return out


# The OpenBioLLM cards: num_devices on H100 80GB SXM5 (8B card: 1; 70B card: 8), train_batch_size 12 per device.
CARD_DEVICES = {"openbiollm-70b": 8, "openbiollm-8b": 1}
CARD_GPU = "h100-80gb"
CARD_BATCH = 12
# Axolotl warnings the card's own values cause: printed as acknowledged, not failed.
CARD_WARNINGS = {"eval_batch_size != micro_batch_size": "the card's eval_batch_size 8 beside its train_batch_size 12, "
                                                         "as 12 rows or as v3's packed bins"}


def job_gpus(model: str | None, gpus: int | None, gpu: str | None) -> tuple[int, str | None]:
    """The GPUs a check resolves on: those given, else the card's for an OpenBioLLM ``model``, else one."""
    if gpus is None:
        return (CARD_DEVICES[model], gpu or CARD_GPU) if model else (1, gpu)
    return gpus, gpu


def resolved_problems(config: dict[str, Any], model: str | None, gpus: int | None, gpu: str | None,
                      root: Path = ROOT) -> tuple[list[tuple[str, str]], list[str]]:
    """``(key, reason)`` for each problem Axolotl's resolution shows on ``gpus`` (default: the card's for an
    OpenBioLLM ``model``, else one), and the lines to print."""
    gpus, gpu = job_gpus(model, gpus, gpu)
    base = str(config.get("base_model", ""))
    if model_folder(config, root) is None and base.startswith(("/", ".", "models/")):
        return [], [f"  not resolved: the local base model {base!r} is not built yet (make model)"]
    resolved = resolve(config, gpus, gpu, root)
    found = [("base_model", p) for p in resolved.problems]
    acknowledged = [(why, w) for w in resolved.warnings for text, why in CARD_WARNINGS.items() if model and text in w]
    found += [("", f"Axolotl warns: {w}") for w in resolved.warnings if w not in {w for _, w in acknowledged}]
    untrained = [token for token, trained in resolved.after_turns if not trained]
    if untrained:
        found.append(("chat_template", f"the token after each assistant turn ({untrained[0]}) carries no label, so "
                                       f"the model would not learn to stop: Axolotl's end-of-turn tokens are "
                                       f"{resolved.eot_tokens}; set eot_tokens to the template's turn-ending token"))
    card_batch = CARD_BATCH * CARD_DEVICES[model] if model else None
    unpacked = not config.get("rl") and not config.get("sample_packing")  # packed: packed_batch.py's rule
    if card_batch and unpacked and not resolved.problems and resolved.total_batch != card_batch:
        found.append(("micro_batch_size", f"total batch {resolved.total_batch} on {gpus} GPUs; the card trained "
                                          f"{card_batch} (train_batch_size {CARD_BATCH} x num_devices "
                                          f"{CARD_DEVICES[model]})"))
    printed = [] if resolved.problems else resolved.lines()
    return found, printed + [f"  acknowledged Axolotl warning ({why}): {w}" for why, w in acknowledged]
