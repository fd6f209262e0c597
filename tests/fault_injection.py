"""Fault injection for tests: an Axolotl plugin that makes a real CPU training run fail as a GPU run does.

    LAUNCH_FAULT_OOM_STEP=3 python -m launch sft RECIPE --set 'plugins=[tests.fault_injection.OutOfMemoryAtStepPlugin]'

``OutOfMemoryAtStepPlugin`` raises ``torch.cuda.OutOfMemoryError``, worded as torch's CUDA caching allocator words
it (c10/cuda/CUDACachingAllocator.cpp), from the model's forward pass in training step N (the trainer's global step
+ 1, as the losses number steps): the error comes from inside the trainer's step, as a real one does. Tests only;
never in a recipe.
"""

from __future__ import annotations

import os

from axolotl.integrations.base import BasePlugin

STEP_ENV = "LAUNCH_FAULT_OOM_STEP"
PLUGIN = "tests.fault_injection.OutOfMemoryAtStepPlugin"
MESSAGE = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
           "1.10 GiB is free. Including non-PyTorch memory, this process has 78.08 GiB memory in use. Of the "
           "allocated memory 74.52 GiB is allocated by PyTorch, and 2.11 GiB is reserved by PyTorch but unallocated. "
           "If reserved but unallocated memory is large try setting PYTORCH_ALLOC_CONF=expandable_segments:True to "
           "avoid fragmentation.  See documentation for Memory Management  "
           "(https://docs.pytorch.org/docs/stable/notes/cuda.html#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)")


class OutOfMemoryAtStepPlugin(BasePlugin):
    """Raises torch's CUDA out-of-memory error in the training forward pass of step ``LAUNCH_FAULT_OOM_STEP``."""

    def post_trainer_create(self, cfg, trainer) -> None:
        import torch

        step = int(os.environ[STEP_ENV])

        def fail(module, args) -> None:
            if module.training and trainer.state.global_step + 1 == step:
                raise torch.cuda.OutOfMemoryError(MESSAGE)

        trainer.model.register_forward_pre_hook(fail)
