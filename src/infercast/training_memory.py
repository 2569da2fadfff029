"""Memory of a training step, per chip: model states, activations, in-flight micro-batches, workspace.

Model states (Rajbhandari et al. 2020, "ZeRO", sec. 3.1): mixed-precision Adam keeps, per parameter,
16-bit working weights, an FP32 master copy, two FP32 moments and the gradients:

    2 + 4 + 4 + 4 + 2 = 16 bytes per parameter      (bf16 gradients; Megatron's FP32 main grads: 18)

ZeRO shards them over the N chips of the data-parallel group (Megatron also shards over the context-
parallel ranks): stage 1 the master weights and moments, stage 2 the gradients too, stage 3 (FSDP) the
weights as well, which are gathered a layer at a time for compute.

Activations saved for the backward pass, per transformer layer and micro-batch (Korthikanti et al. 2022,
"Reducing Activation Recomputation in Large Transformer Models", sec. 4, 16-bit activations, s tokens,
b sequences, h hidden, a heads, t tensor-parallel ranks):

    no recomputation, no TP          s b h (34 + 5 a s / h)
    TP, no sequence parallelism      s b h (10 + 24 / t + 5 a s / (h t))
    TP with sequence parallelism     s b h / t (34 + 5 a s / h)
    selective recomputation (+ SP)   s b h / t x 34            (attention scores recomputed)
    full recomputation               2 s b h (/ t with SP)     (only each layer's input kept)

``layer_activation_bytes`` writes the 34 and the 5as/h term by tensor, so that grouped-query attention,
gated MLPs, no dropout and FlashAttention (which keeps no s x s matrix) change them where they should;
for GPT-3's shape with dropout and materialised attention it is the formula above exactly.

A pipeline stage holds the activations of its in-flight micro-batches: with 1F1B stage i of p holds
min(p - i, m) of them (Narayanan et al. 2021, sec. 2.2.1), so the first stage holds as many as the whole
model's layers for one micro-batch; with v interleaved chunks, Megatron's schedule warms up
2 (p - i - 1) + (v - 1) p + 1 chunk micro-batches, L (1 + (p - 1) / (p v)) layers' worth on the first
stage (Korthikanti et al. sec. 4.2.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from infercast.model import ModelSpec

Recompute = Literal["none", "selective", "full"]
RECOMPUTE = ("none", "selective", "full")
Selective = Literal["attention", "op", "layer"]
SELECTIVE = ("attention", "op", "layer")
"""What selective recomputation recomputes: the attention core (Megatron, Korthikanti et al. 2022), every
second matmul and the elementwise ops between them (torchtitan's per-op policy), or every second layer
whole (torchtitan's per-layer policy)."""


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of each model-state class, before sharding."""

    weights: float = 2.0
    """Working weights the GEMMs read (bf16)."""
    master: float = 4.0
    """FP32 master copy the optimizer updates (0 for pure 16-bit training)."""
    moments: float = 8.0
    """Adam's two FP32 moments."""
    gradients: float = 2.0
    """Gradient buffers (bf16; Megatron and NeMo accumulate FP32 main grads: 4)."""

    @property
    def total(self) -> float:
        return self.weights + self.master + self.moments + self.gradients


@dataclass(frozen=True)
class States:
    """Model-state bytes one chip holds, by class."""

    weights_bytes: float
    master_weights_bytes: float
    moments_bytes: float
    gradients_bytes: float
    gathered_bytes: float
    """ZeRO-3 / FSDP: full copies of the layers being computed (and prefetched), with their gradients."""

    @property
    def optimizer_bytes(self) -> float:
        """Master weights and moments: ZeRO's K = 12 bytes per parameter."""
        return self.master_weights_bytes + self.moments_bytes

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.optimizer_bytes + self.gradients_bytes + self.gathered_bytes


def shard_states(params: float, b: StateBytes, zero_stage: int, shards: int, *, layer_params: float = 0.0,
                 gathered_layers: float = 0.0, master_is_sharded_param: bool = False) -> States:
    """Model states of ``params`` parameters on one chip of a ZeRO group of ``shards`` chips.

    Stage 0 replicates everything; 1 shards master weights and moments; 2 also gradients; 3 also the
    working weights, gathering ``gathered_layers`` layers of ``layer_params`` at a time (the one being
    computed and the one prefetched) with their 16-bit gradients before they are reduce-scattered.
    ``master_is_sharded_param``: FSDP with mixed precision keeps the sharded parameter itself in FP32 and
    casts a gathered copy, so there is no separate 16-bit shard.
    """
    n = float(shards)
    opt = 1 / n if zero_stage >= 1 else 1.0
    grad = 1 / n if zero_stage >= 2 else 1.0
    weight = 1 / n if zero_stage >= 3 else 1.0
    weights = 0.0 if zero_stage >= 3 and master_is_sharded_param else params * b.weights * weight
    gathers = zero_stage >= 3 and (shards > 1 or master_is_sharded_param)  # FSDP casts its FP32 shard even alone
    gathered = gathered_layers * layer_params * (b.weights + 2.0) if gathers else 0.0
    return States(weights_bytes=weights, master_weights_bytes=params * b.master * opt,
                  moments_bytes=params * b.moments * opt, gradients_bytes=params * b.gradients * grad,
                  gathered_bytes=gathered)


def matmul_outputs(spec: ModelSpec) -> list[tuple[str, int]]:
    """A layer's matmuls in execution order as (fused operator, output width): Q, K, V, O, then the MLP's
    gate, up and down (or up and down). torchtitan's per-op policy saves the 1st, 3rd, 5th... outputs."""
    mlp = ([("mlp_gate_up", spec.intermediate_size)] * 2 if spec.gated_mlp else [("mlp_up", spec.intermediate_size)])
    return ([("qkv_proj", spec.q_dim), ("qkv_proj", spec.kv_dim), ("qkv_proj", spec.kv_dim),
             ("out_proj", spec.hidden_size)] + mlp + [("mlp_down", spec.hidden_size)])


def op_policy_recomputed(spec: ModelSpec) -> dict[str, float]:
    """Share of each fused matmul's FLOPs torchtitan's per-op policy recomputes (every second matmul)."""
    mms = matmul_outputs(spec)
    total: dict[str, float] = {}
    redo: dict[str, float] = {}
    for i, (name, width) in enumerate(mms):
        total[name] = total.get(name, 0) + width
        redo[name] = redo.get(name, 0) + (width if i % 2 else 0)
    return {name: redo[name] / total[name] for name in total}


def layer_activation_bytes(spec: ModelSpec, tokens, seq_len, *, tp: int = 1, sequence_parallel: bool = False,
                           recompute: Recompute = "none", attention: str = "flash", dropout: bool = False,
                           act_bytes: float = 2.0, selective: Selective = "attention",
                           linear_input_bytes: float | None = None):
    """Bytes one chip keeps for the backward pass of one transformer layer over ``tokens`` tokens of sequences
    ``seq_len`` long (Korthikanti et al. 2022, sec. 4.1, generalised tensor by tensor; ``spec`` is the full,
    unsharded model).

    Per token, with e bytes per activation (2 in Korthikanti's 34 and 5as/h):
      kept whole by each TP rank unless sequence-parallel (the 10 of 10 + 24/t):
        norm inputs               e h per norm          (2 x 2)
        attention and MLP inputs  e h each              (2 + 2; one for a parallel block)
        dropout masks             1 byte x h, twice      (1 + 1, with dropout)
      split over TP ranks (the 24):
        Q and K                   e (q_dim + kv_dim)     (4)
        V                         e kv_dim               (2)
        output-projection input   e attn_out_dim          (2)
        MLP up output             e x up width            (8: 4h; a gated MLP keeps 2f)
        MLP activation output     e f                     (8)
      the attention core (5as/h): materialised scores keep softmax output e a s, and with dropout its mask
      a s and output e a s; FlashAttention keeps only the row statistics (4 bytes x a).
    ``linear_input_bytes``: what the inputs of the linear layers are kept in (FP8 training keeps the FP8 casts
    its GEMMs read: 1; default e). Selective recomputation drops the attention core; full recomputation keeps
    only the layer input. torchtitan's per-op policy keeps the layer input, every other matmul output and the attention output
    with its row statistics; its per-layer policy recomputes every second layer whole (the mean of the two).
    """
    h, a = spec.hidden_size, spec.num_heads
    e, t = act_bytes, tp
    x = e if linear_input_bytes is None else linear_input_bytes
    if recompute == "full":
        kept = e * h / (t if sequence_parallel else 1)
        return tokens * kept
    if recompute == "selective" and selective == "layer":
        kw = dict(tp=tp, sequence_parallel=sequence_parallel, attention=attention, dropout=dropout, act_bytes=act_bytes,
                  linear_input_bytes=linear_input_bytes)
        return (layer_activation_bytes(spec, tokens, seq_len, recompute="none", **kw)
                + layer_activation_bytes(spec, tokens, seq_len, recompute="full", **kw)) / 2
    if recompute == "selective" and selective == "op":
        saved = sum(width for width, in [(w,) for _, w in matmul_outputs(spec)[0::2]])
        layer_input = e * h / (t if sequence_parallel else 1)
        return tokens * (layer_input + (e * (saved + spec.attn_out_dim) + 4.0 * a) / t)
    inputs = (1 if spec.parallel_block else 2) * x * h
    norms = spec.norms_per_layer * e * h
    masks = 2 * h if dropout else 0.0
    replicated = norms + inputs + masks
    up = (2 if spec.gated_mlp else 1) * spec.intermediate_size
    if spec.is_moe:
        up = max(up if spec.num_dense_layers else 0, spec.experts_per_token * spec.moe_intermediate_size *
                 (2 if spec.gated_mlp else 1))
    f = up / (2 if spec.gated_mlp else 1)
    split = e * (spec.q_dim + 2 * spec.kv_dim + up) + x * (spec.attn_out_dim + f)
    if recompute == "selective":
        core = 0.0
    elif attention == "materialized":
        core = (e + (1 + e if dropout else 0)) * a * seq_len
    else:
        core = 4.0 * a
    per_token = replicated / (t if sequence_parallel else 1) + (split + core) / t
    return tokens * per_token


def head_activation_bytes(spec: ModelSpec, tokens, *, tp: int = 1, act_bytes: float = 2.0,
                          logits_bytes: float = 6.0):
    """The last stage's transient at the loss: the final norm's and the LM head's inputs, and the logits of
    the chip's vocabulary shard, ``logits_bytes`` per element (the framework's: 16-bit logits and an FP32
    copy, 2 + 4, and log_softmax's FP32 output where the loss keeps it, + 4)."""
    return tokens * (2 * act_bytes * spec.hidden_size + logits_bytes * math.ceil(spec.vocab_size / tp))


def in_flight(stage: int, pp: int, micro_batches: int, virtual_stages: int = 1) -> float:
    """Micro-batches (in units of a stage's whole share of layers) whose activations stage ``stage`` holds at
    its peak: min(p - i, m) with 1F1B; with v interleaved chunks, Megatron's warm-up of 2 (p - i - 1) +
    (v - 1) p + 1 chunk micro-batches of 1/v of the stage's layers each, at most all m v of them."""
    if pp == 1:
        return 1.0
    if virtual_stages == 1:
        return float(min(pp - stage, micro_batches))
    v = virtual_stages
    chunks = min(2 * (pp - stage - 1) + (v - 1) * pp + 1, micro_batches * v)
    return chunks / v


def bubble_fraction(pp: int, micro_batches: int, virtual_stages: int = 1) -> float:
    """Idle share of a pipeline step: (p - 1) / v over (m + (p - 1) / v) (Narayanan et al. 2021, sec. 2.2:
    bubble time (p - 1) / v micro-batch slots against m of work; (p - 1) / (m + p - 1) with 1F1B)."""
    idle = (pp - 1) / virtual_stages
    return idle / (micro_batches + idle)


def tokens_that_fit(free_bytes, bytes_per_token, bytes_per_token_squared=0.0):
    """The most tokens whose activations fit in ``free_bytes``: the root of q x^2 + l x = free (0 if none)."""
    if free_bytes <= 0:
        return 0.0
    if not bytes_per_token_squared:
        return free_bytes / bytes_per_token
    q, lin = bytes_per_token_squared, bytes_per_token
    return (-lin + math.sqrt(lin * lin + 4 * q * free_bytes)) / (2 * q)
