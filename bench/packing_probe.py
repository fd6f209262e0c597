"""Axolotl plugin: does a packed batch keep its rows apart? Each row's loss packed against the row alone.

    plugins:
      - bench.packing_probe.PackingProbePlugin     # result to the JSON file named by $PACKING_PROBE_RESULT

Before the first training step it takes the first batch of the trainer's own dataloader (packed by Axolotl's
multipack sampler and collator, attention mask dropped as Axolotl drops it), and with the model exactly as
Axolotl built it (adapter, kernels, attention patches), dropout off and without gradients, computes:

- each row's loss inside the packed bin, and the same row's loss run alone (position ids from 0);
- the first layer's attention output for each row, packed and alone (relative difference);
- the same two figures for a control that does NOT keep rows apart: the bin with position ids running on
  across rows, so every token also sees the rows before it in the bin.

Rows kept apart give the same loss packed and alone (fp32: to rounding) and an attention difference far
below the control's. Training then goes on as configured (the tests use max_steps 1).
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback


def segments(position_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each row in one packed bin: a row starts where the position id resets to 0."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    return [(s, e) for s, e in zip(starts, [*starts[1:], len(position_ids)], strict=True) if e - s > 1]


def row_loss(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean next-token cross-entropy of one row (fp32), from its logits and its own token ids."""
    return float(torch.nn.functional.cross_entropy(logits[:-1].float(), ids[1:]))


class Probe:
    """Forward passes of one model, recording the first decoder layer's attention output."""

    def __init__(self, model: Any):
        self.model, self.attention = model, None
        layers = [m for name, m in model.named_modules() if name.endswith("layers.0.self_attn")]
        self.hook = layers[0].register_forward_hook(self.keep) if layers else None

    def keep(self, module: Any, args: Any, output: Any) -> None:
        self.attention = (output[0] if isinstance(output, tuple) else output).detach().float()

    def run(self, ids: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and first-layer attention output of one sequence (batch of 1)."""
        out = self.model(input_ids=ids[None], position_ids=positions[None], use_cache=False)
        return out.logits[0].float(), None if self.attention is None else self.attention[0]


def relative(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None:
        return None
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def measure(model: Any, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per-row losses and attention outputs of the batch's first bin: packed, alone, and the leaking control."""
    ids, positions = batch["input_ids"][0], batch["position_ids"][0]
    probe = Probe(model)
    try:
        packed_logits, packed_attention = probe.run(ids, positions)
        leak_logits, leak_attention = probe.run(ids, torch.arange(len(ids), device=ids.device))
        rows = []
        labels = batch.get("labels")
        for start, end in segments(positions):
            if labels is not None and bool((labels[0][start + 1:end] == -100).all()):
                continue  # the bin's padding tail, or a row without a trained token
            alone_logits, alone_attention = probe.run(ids[start:end], torch.arange(end - start, device=ids.device))
            alone = row_loss(alone_logits, ids[start:end])
            rows.append({
                "tokens": end - start, "loss_alone": alone,
                "loss_packed": row_loss(packed_logits[start:end], ids[start:end]),
                "loss_not_kept_apart": row_loss(leak_logits[start:end], ids[start:end]),
                "attention_difference": relative(None if packed_attention is None else packed_attention[start:end],
                                                 alone_attention),
                "attention_difference_not_kept_apart": relative(
                    None if leak_attention is None else leak_attention[start:end], alone_attention)})
    finally:
        if probe.hook is not None:
            probe.hook.remove()
    later = rows[1:]  # the first row sees nothing before it, packed or not: the control only differs after it
    return {"rows": rows, "bin_tokens": len(ids),
            "max_loss_difference": max(abs(r["loss_packed"] - r["loss_alone"]) for r in rows),
            "max_loss_difference_not_kept_apart": max((abs(r["loss_not_kept_apart"] - r["loss_alone"])
                                                       for r in later), default=None),
            "max_attention_difference": max((r["attention_difference"] or 0.0) for r in rows),
            "min_attention_difference_not_kept_apart": min(
                ((r["attention_difference_not_kept_apart"] or 0.0) for r in later), default=None)}


class ProbeCallback(TrainerCallback):
    """Measures once, before the first step, on the trainer's first batch."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model = model or self.trainer.model
        batch = next(iter(self.trainer.get_train_dataloader()))
        device = next(p for p in model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        was_training = model.training
        model.train()  # as the trainer runs it (bitsandbytes repacks its CPU weights in eval mode) ...
        for module in model.modules():  # ... but without dropout
            if isinstance(module, torch.nn.Dropout):
                module.eval()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and args.bf16 \
            else nullcontext()
        try:
            with torch.no_grad(), autocast:
                result = measure(model, batch)
        finally:
            model.train(was_training)
        result |= {"device": str(device), "dtype": str(next(p for p in model.parameters()).dtype),
                   "attn_implementation": getattr(getattr(model, "config", None), "_attn_implementation", None),
                   "batch_keys": sorted(batch)}
        if args.process_index == 0:
            Path(os.environ["PACKING_PROBE_RESULT"]).write_text(json.dumps(result, indent=2), encoding="utf-8")


class PackingProbePlugin(BasePlugin):
    """Adds the probe's callback to the trainer."""

    def add_callbacks_post_trainer(self, cfg: Any, trainer: Any) -> list:
        return [ProbeCallback(trainer)]
