"""Keep the model on CPU in a multi-process run on a machine without an accelerator.

    torchrun --nproc-per-node 2 -m axolotl.cli.train runs/<id>/config.yaml   # config lists this plugin

Axolotl 0.19.0's ``normalize_config`` sets ``device_map={"": LOCAL_RANK}`` whenever WORLD_SIZE > 1,
which transformers reads as accelerator index LOCAL_RANK and fails on a CPU-only host
("Cannot access accelerator device"). ``load_datasets`` is the first plugin hook that receives the
normalized config (before the model loader reads ``device_map``), so the fix lives there; it loads no
data itself (returns None, so Axolotl's own loader runs). ``register`` also turns on real DDP over gloo
(``ACCELERATE_USE_CPU``, ``ddp_backend: gloo``): without it transformers sees no accelerator and each
rank trains alone. Accelerate names the MULTI_CPU device ``cpu:0``, which ``torch.load`` cannot map a
resumed optimizer state to; ``post_trainer_create`` sets the trainer's device back to plain ``cpu``.
With an accelerator, or in a single process, the plugin does nothing.
"""

from __future__ import annotations

import logging
import os

from axolotl.integrations.base import BasePlugin

LOG = logging.getLogger(__name__)


def has_accelerator() -> bool:
    """True when torch sees a CUDA, XPU, MPS or NPU device."""
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available()


def cpu_distributed() -> bool:
    """A multi-process run (torchrun sets WORLD_SIZE) on a host without an accelerator."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not has_accelerator()


def place_on_cpu(cfg) -> None:
    """Point ``device_map`` at the CPU when Axolotl aimed it at a missing accelerator."""
    if not cpu_distributed() or not isinstance(cfg.device_map, dict):
        return
    if cfg.device_map and set(cfg.device_map.values()) != {"cpu"}:
        LOG.info("no accelerator: rank %s keeps the model on CPU (device_map was %s)", cfg.local_rank, cfg.device_map)
        cfg.device_map = "cpu"


class CPUPlacementPlugin(BasePlugin):
    """Rewrites ``device_map`` to ``"cpu"`` and selects gloo DDP on accelerator-less hosts, for world size > 1."""

    def register(self, cfg: dict) -> None:
        if cpu_distributed():
            os.environ["ACCELERATE_USE_CPU"] = "true"  # transformers then builds a MULTI_CPU (gloo) DDP state
            cfg.setdefault("ddp_backend", "gloo")

    def load_datasets(self, cfg, preprocess: bool = False):
        place_on_cpu(cfg)
        return None  # Axolotl loads the datasets itself

    def pre_model_load(self, cfg) -> None:
        place_on_cpu(cfg)  # paths that skip load_datasets (merge, inference) still get the fix

    def post_trainer_create(self, cfg, trainer) -> None:
        import torch

        if cpu_distributed() and trainer.args.device.type == "cpu":
            trainer.args.__dict__["_setup_devices"] = torch.device("cpu")  # TrainingArguments.device's cached value
