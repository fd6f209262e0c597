"""The planner's formulas: per-GPU memory and FLOPs of QLoRA training of a Llama model, with their sources.

    python -m launch plan recipes/openbiollm-70b/v1/sft.yaml --gpus 8 --gpu h100-80gb   (uses these)

Notation: h hidden size, L layers, i MLP intermediate size, kv = key/value heads x head size, V vocabulary,
r LoRA rank, T tokens per micro-batch on one GPU, s sequence length, W GPUs sharing a sharded model.
Every figure is an estimate; each function says where its formula comes from and what it leaves out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 2**30
# GPU kinds: usable memory in GiB (nvidia-smi's total) and dense bf16 FLOP/s without sparsity (NVIDIA's data sheets).
GPUS = {"h100-80gb": (79.6, 989e12), "a100-80gb": (79.2, 312e12), "h200-141gb": (139.8, 989e12)}
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """A Llama-architecture model's dimensions (the fields of its config.json)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    head_dim: int = 0
    tied: bool = False

    @property
    def kv(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def q(self) -> int:
        return self.heads * (self.head_dim or self.hidden // self.heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each decoder-layer linear, as Llama's modeling code names them."""
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, self.q), "k_proj": (h, self.kv), "v_proj": (h, self.kv), "o_proj": (self.q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Weights of every decoder-layer linear: the ones bitsandbytes quantizes."""
        return self.layers * sum(a * b for a, b in self.linears().values())

    def embedding_params(self) -> int:
        """Input embedding and LM head (one matrix when tied): kept in bf16 by bitsandbytes."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    def params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.norm_params()


# Llama-3 shapes from Meta's config.json files, so the planner needs no download.
MODELS = {
    "llama-3-8b": Shape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256),
    "llama-3-70b": Shape(hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=28672, vocab=128256),
}


def shape_from_config(config: dict) -> Shape:
    """A Shape from a transformers Llama config.json."""
    return Shape(hidden=config["hidden_size"], layers=config["num_hidden_layers"],
                 heads=config["num_attention_heads"],
                 kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                 intermediate=config["intermediate_size"], vocab=config["vocab_size"],
                 head_dim=config.get("head_dim") or 0, tied=bool(config.get("tie_word_embeddings", False)))


def lora_params(shape: Shape, rank: int, targets: list[str] | tuple[str, ...]) -> int:
    """Trainable LoRA parameters: r x (in + out) for each targeted linear of each layer.

    Source: Hu et al. 2021, LoRA, section 4.1: W + BA with A of r x in and B of out x r.
    """
    return shape.layers * sum(rank * (a + b) for name, (a, b) in shape.linears().items() if name in targets)


def nf4_bytes(shape: Shape, double_quant: bool = True) -> float:
    """Base weights as QLoRA loads them: decoder linears in NF4, embeddings, head and norms in bf16.

    Source: Dettmers et al. 2023, QLoRA, section 3: 4 bits per weight, plus one fp32 absmax per block of
    64 (0.5 bits per weight), or with double quantization an 8-bit absmax per 64 and an fp32 constant per
    256 blocks: 8/64 + 32/(64 x 256) = 0.127 bits per weight.
    """
    bits = 4 + (8 / 64 + 32 / (64 * 256) if double_quant else 32 / 64)
    return shape.linear_params() * bits / 8 + 2 * (shape.embedding_params() + shape.norm_params())


def adapter_state_bytes(n_lora: int, optimizer: str, engine: str) -> dict[str, float]:
    """LoRA weights, their gradients and the optimizer's states, before sharding.

    peft keeps adapter weights in fp32 (4 bytes) and so are their gradients. Adam keeps two states per
    weight: fp32 (8 bytes) for adamw_torch, 1 byte each for bitsandbytes' 8-bit Adam (Dettmers et al.
    2022, 8-bit Optimizers via Block-wise Quantization; its per-block constants are negligible).
    Under DeepSpeed with bf16, the weights and gradients are bf16 (2 + 2 bytes) and the optimizer adds an
    fp32 master copy (4 bytes): the 2 + 2 + K bytes of Rajbhandari et al. 2020, ZeRO, section 3.
    """
    states = 2.0 if "8bit" in optimizer else 8.0
    if engine.startswith("zero"):
        return {"weights": 2.0 * n_lora, "gradients": 2.0 * n_lora, "optimizer": (4 + states) * n_lora}
    return {"weights": 4.0 * n_lora, "gradients": 4.0 * n_lora, "optimizer": states * n_lora}


def shard(parts: dict[str, float], base: float, engine: str, world: int) -> tuple[float, dict[str, float]]:
    """Per-GPU base and adapter bytes under an engine (Rajbhandari et al. 2020, ZeRO, section 5).

    ddp replicates everything; zero2 shards gradients and optimizer states over the W GPUs; zero3 and
    fsdp (FULL_SHARD) shard the base weights, adapter weights, gradients and states.
    """
    if engine in ("zero3", "fsdp"):
        return base / world, {k: v / world for k, v in parts.items()}
    if engine == "zero2":
        return base, {k: (v if k == "weights" else v / world) for k, v in parts.items()}
    return base, dict(parts)


def layer_activation_bytes(shape: Shape, rank: int, lora_dropout: bool) -> float:
    """Bytes one decoder layer keeps for its backward pass, per token, in bf16 (no checkpointing).

    The method of Korthikanti et al. 2022 (Reducing Activation Recomputation, section 4.1) counted for
    Llama's layer instead of GPT's: saved bf16 tensors x, norm1 out, q, k, v, attention out, norm2 in,
    norm2 out, gate, silu(gate), up, gate x up: 6h + 2kv + 4i elements; fp32 copies inside the two
    RMSNorms: 8h bytes. Flash attention keeps no s x s scores. With lora_dropout, peft keeps each adapted
    linear's dropped input and its mask (2 + 1 bytes): q, k, v, o, gate, up take h each, down i; plus the
    r-wide LoRA A outputs. Softmax and RoPE buffers are left out (small).
    """
    h, i, kv = shape.hidden, shape.intermediate, shape.kv
    base = 2 * (6 * h + 2 * kv + 4 * i) + 8 * h
    lora = (3 * (6 * h + i) if lora_dropout else 0) + 2 * 7 * rank
    return base + lora


def activation_bytes(shape: Shape, tokens: int, rank: int, lora_dropout: bool, checkpointing: bool) -> float:
    """Activations of one micro-batch of ``tokens`` tokens, without the logits.

    Without checkpointing every layer keeps its activations: L x a x T. With transformers' per-layer
    gradient checkpointing only each layer's input is kept (2h bytes per token), and one layer at a time
    is recomputed during the backward pass: 2hLT + aT (Chen et al. 2016, Training Deep Nets with
    Sublinear Memory Cost; Korthikanti et al. 2022, section 5).
    """
    per_layer = layer_activation_bytes(shape, rank, lora_dropout)
    if checkpointing:
        return 2 * shape.hidden * shape.layers * tokens + per_layer * tokens
    return per_layer * shape.layers * tokens


def logits_bytes(shape: Shape, tokens: int, fused: bool = False) -> float:
    """The LM head's output and the loss over it: 12 bytes per vocabulary entry per token.

    transformers' causal-LM loss upcasts the bf16 logits (2 bytes) to fp32 (4) and cross-entropy keeps
    its fp32 log-softmax (4) for the backward pass, which then makes an fp32 gradient (4) while the upcast
    copy is freed: about 12 bytes at the peak. With a 128k vocabulary this is often the largest term.
    A fused linear cross-entropy (Liger's, ``fused``) never holds all the logits: it computes them a chunk of
    tokens at a time, next_power_of_2(ceil(T / ceil(V / h))) tokens a chunk (its chunk_size), 12 bytes each.
    """
    if fused:
        chunk = 2 ** math.ceil(math.log2(max(1, math.ceil(tokens / math.ceil(shape.vocab / shape.hidden)))))
        tokens = min(tokens, chunk)
    return 12.0 * shape.vocab * tokens


def overhead_bytes(subtotal: float) -> float:
    """Framework overhead, our assumption: 1.5 GiB for the CUDA context, cuBLAS workspaces and NCCL
    buffers, plus 10% of everything else for the caching allocator's fragmentation."""
    return 1.5 * GIB + 0.10 * subtotal


def linear_flops(shape: Shape, n_lora: int, checkpointing: bool, dpo: bool) -> dict[str, float]:
    """Matrix-multiply FLOPs per token computed (padding too): ``model`` (for MFU) and ``hardware`` (executed).

    N = decoder linears + LM head. A forward pass costs 2N (Kaplan et al. 2020, section 2.1). QLoRA freezes
    the base, so its backward computes input gradients only (2N, not 4N), while the adapter gets the full
    6 N_lora: model = 4N + 6 N_lora. Checkpointing repeats the forward: hardware = model + 2N + 2 N_lora.
    DPO adds the reference model's forward (the adapter switched off): + 2N.
    """
    n = shape.linear_params() + shape.vocab * shape.hidden
    model = 4 * n + 6 * n_lora
    hardware = model + (2 * n + 2 * n_lora if checkpointing else 0)
    return {"model": model + (2 * n if dpo else 0), "hardware": hardware + (2 * n if dpo else 0)}


def attention_flops(shape: Shape, checkpointing: bool, dpo: bool) -> dict[str, float]:
    """Attention's FLOPs per row per squared span (the tokens a row attends over): multiply by span**2.

    QK^T and AV cost 4 L d s^2 forward for a row of s tokens (d = heads x head size), counted without the
    causal half as PaLM's MFU does (Chowdhery et al. 2022, appendix B); their backward twice that, since
    attention has no weights to freeze: 12 L d s^2. Checkpointing repeats the forward (+4), and so does
    DPO's reference model (+4).
    """
    forward = 4.0 * shape.layers * shape.q
    model = 3 * forward + (forward if dpo else 0)
    return {"model": model, "hardware": model + (forward if checkpointing else 0)}


def flops_per_token(shape: Shape, n_lora: int, seq: int, checkpointing: bool, dpo: bool) -> dict[str, float]:
    """Training FLOPs per token of rows ``seq`` tokens long: ``model`` (for MFU) and ``hardware`` (executed).

    linear_flops per token plus attention_flops x seq (a row's s**2 shared by its s tokens): PaLM's 6N + 12Lds
    for full training becomes 4N + 6 N_lora + 12Lds under QLoRA (Chowdhery et al. 2022, appendix B).
    """
    linear, attention = linear_flops(shape, n_lora, checkpointing, dpo), attention_flops(shape, checkpointing, dpo)
    return {key: linear[key] + attention[key] * seq for key in ("model", "hardware")}
