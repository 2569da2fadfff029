"""Memory per chip: weights, KV cache, activations and runtime overhead; fit, min chips, max batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from infercast.formats import element_bytes
from infercast.hardware import Chip
from infercast.model import ModelSpec
from infercast.ops import Attention, Precision


class MemoryOptions(BaseModel):
    """How much of a chip's memory an engine may use, and what it keeps for itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    """Fraction of device memory the engine may use (vLLM's --gpu-memory-utilization default)."""
    runtime_overhead_bytes: float = Field(default=2**30, ge=0)
    """Memory the runtime holds outside weights, KV and activations: CUDA context, cuBLAS and
    NCCL workspaces, CUDA-graph pools. 1 GiB, the order vLLM's startup memory profile reports
    as non-torch plus graph memory on one GPU."""


@dataclass(frozen=True)
class MemoryPlan:
    weights_bytes: float
    kv_cache_bytes: float
    kv_cache_bytes_if_mha: float
    activation_bytes: float
    overhead_bytes: float
    capacity_per_chip_bytes: float
    usable_per_chip_bytes: float
    min_chips: int
    max_batch: int

    @property
    def total_per_chip_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes

    @property
    def fits(self) -> bool:
        return self.total_per_chip_bytes <= self.usable_per_chip_bytes

    @property
    def reason(self) -> str:
        gb = 1e9
        if self.fits:
            return (f"needs {self.total_per_chip_bytes / gb:.1f} GB of {self.usable_per_chip_bytes / gb:.1f} GB usable "
                    f"per chip")
        return (f"needs {self.total_per_chip_bytes / gb:.1f} GB (weights {self.weights_bytes / gb:.1f}, KV cache "
                f"{self.kv_cache_bytes / gb:.1f}, activations {self.activation_bytes / gb:.1f}, runtime "
                f"{self.overhead_bytes / gb:.1f}) but one chip has {self.usable_per_chip_bytes / gb:.1f} GB usable; "
                f"at least {self.min_chips} chips by memory")

    def to_dict(self) -> dict:
        return dict(
            weights_bytes=self.weights_bytes, kv_cache_bytes=self.kv_cache_bytes,
            kv_cache_bytes_if_mha=self.kv_cache_bytes_if_mha, activation_bytes=self.activation_bytes,
            overhead_bytes=self.overhead_bytes, total_per_chip_bytes=self.total_per_chip_bytes,
            capacity_per_chip_bytes=self.capacity_per_chip_bytes, usable_per_chip_bytes=self.usable_per_chip_bytes,
            fits=self.fits, reason=self.reason, min_chips=self.min_chips, max_batch=self.max_batch,
        )


def activation_bytes_per_sequence(spec: ModelSpec, isl: int, p: Precision, attention: Attention) -> float:
    """Peak transient activations of one sequence's prefill (one layer's buffers live at a time).

    The residual stream and the normalised input (2 x hidden), the widest intermediate
    (the fused QKV output or the MLP's up/gate output), and the fp32 logits of the last
    token. Materialised attention also holds one layer's score matrix (heads x S^2).
    """
    a = element_bytes(p.act)
    h = spec.hidden_size
    mlp_width = 2 * spec.intermediate_size if spec.gated_mlp else spec.intermediate_size
    if spec.is_moe:
        moe_width = spec.experts_per_token * spec.moe_intermediate_size * (2 if spec.gated_mlp else 1)
        mlp_width = max(mlp_width if spec.num_dense_layers else 0, moe_width)
    widest = max(spec.q_dim + 2 * spec.num_kv_heads * spec.head_dim, mlp_width)
    per_token = (2 * h + widest) * a
    scores = spec.num_heads * isl * isl * a if attention == "materialized" else 0.0
    return isl * per_token + scores + spec.vocab_size * 4.0


def plan_memory(spec: ModelSpec, chip: Chip, *, batch: int, isl: int, osl: int, p: Precision,
                attention: Attention, options: MemoryOptions, weight_bytes: float) -> MemoryPlan:
    """Memory of the whole model and workload on one chip, and what it takes to fit."""
    kv_per_token = spec.kv_elements_per_token() * element_bytes(p.kv)
    mha_per_token = spec.kv_elements_per_token_if_mha() * element_bytes(p.kv)
    # a sliding window keeps at most W tokens per sequence (rolling buffer, Mistral-7B v0.1)
    kept = isl + osl if spec.sliding_window is None else min(isl + osl, spec.sliding_window)
    tokens = batch * kept
    act_per_seq = activation_bytes_per_sequence(spec, isl, p, attention)
    capacity = chip.figure("memory.capacity_bytes")
    usable = capacity * options.gpu_memory_utilization
    overhead = options.runtime_overhead_bytes
    free = usable - overhead
    per_seq = kv_per_token * kept + act_per_seq
    shardable = weight_bytes + batch * per_seq
    min_chips = math.ceil(shardable / free) if free > 0 else 0
    max_batch = max(0, math.floor((free - weight_bytes) / per_seq)) if free > weight_bytes else 0
    return MemoryPlan(
        weights_bytes=weight_bytes, kv_cache_bytes=tokens * kv_per_token, kv_cache_bytes_if_mha=tokens * mha_per_token,
        activation_bytes=batch * act_per_seq, overhead_bytes=overhead, capacity_per_chip_bytes=capacity,
        usable_per_chip_bytes=usable, min_chips=min_chips, max_batch=max_batch,
    )
