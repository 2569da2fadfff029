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
    comm_buffer_bytes: float = 0.0
    min_plan: dict | None = None
    """The plan (tp, pp) behind ``min_chips``."""

    @property
    def total_per_chip_bytes(self) -> float:
        return (self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.overhead_bytes
                + self.comm_buffer_bytes)

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
                f"{self.overhead_bytes / gb:.1f}) per chip but a chip has {self.usable_per_chip_bytes / gb:.1f} GB "
                f"usable; at least {self.min_chips} chips by memory")

    def to_dict(self) -> dict:
        return dict(
            weights_bytes=self.weights_bytes, kv_cache_bytes=self.kv_cache_bytes,
            kv_cache_bytes_if_mha=self.kv_cache_bytes_if_mha, activation_bytes=self.activation_bytes,
            overhead_bytes=self.overhead_bytes, total_per_chip_bytes=self.total_per_chip_bytes,
            capacity_per_chip_bytes=self.capacity_per_chip_bytes, usable_per_chip_bytes=self.usable_per_chip_bytes,
            comm_buffer_bytes=self.comm_buffer_bytes, fits=self.fits, reason=self.reason, min_chips=self.min_chips,
            min_plan=self.min_plan, max_batch=self.max_batch,
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


@dataclass(frozen=True)
class ChipLoad:
    """What one chip of a plan holds, per sequence where it scales with the batch."""

    weights_bytes: float
    kv_bytes_per_seq: float
    kv_bytes_per_seq_if_mha: float
    act_bytes_per_seq: float
    comm_buffer_bytes: float


def chip_load(local: ModelSpec, weight_params: float, *, isl: int, osl: int, p: Precision, attention: Attention,
              comm_message_bytes_per_seq: float = 0.0) -> ChipLoad:
    """Memory of one chip whose share of the model is ``local`` (a TP-sharded stage spec).

    A sliding window keeps at most W tokens per sequence (a rolling buffer, Mistral-7B v0.1).
    Collectives need a send and a receive buffer of the largest message.
    """
    c = element_bytes(p.kv)
    kept = isl + osl if local.sliding_window is None else min(isl + osl, local.sliding_window)
    return ChipLoad(
        weights_bytes=weight_params * element_bytes(p.weight),
        kv_bytes_per_seq=kept * local.kv_elements_per_token() * c,
        kv_bytes_per_seq_if_mha=kept * local.kv_elements_per_token_if_mha() * c,
        act_bytes_per_seq=activation_bytes_per_sequence(local, isl, p, attention),
        comm_buffer_bytes=2 * comm_message_bytes_per_seq,
    )


def fits(load: ChipLoad, batch: int, usable: float, options: MemoryOptions) -> bool:
    total = load.weights_bytes + batch * (load.kv_bytes_per_seq + load.act_bytes_per_seq + load.comm_buffer_bytes)
    return total + options.runtime_overhead_bytes <= usable


def plan_memory(load: ChipLoad, chip: Chip, *, batch: int, replicas: int, options: MemoryOptions, min_chips: int,
                min_plan: dict | None) -> MemoryPlan:
    """Memory of the binding chip for a per-replica ``batch``; ``max_batch`` counts all replicas."""
    capacity = chip.figure("memory.capacity_bytes")
    usable = capacity * options.gpu_memory_utilization
    free = usable - options.runtime_overhead_bytes - load.weights_bytes
    per_seq = load.kv_bytes_per_seq + load.act_bytes_per_seq + load.comm_buffer_bytes
    return MemoryPlan(
        weights_bytes=load.weights_bytes, kv_cache_bytes=batch * load.kv_bytes_per_seq,
        kv_cache_bytes_if_mha=batch * load.kv_bytes_per_seq_if_mha, activation_bytes=batch * load.act_bytes_per_seq,
        overhead_bytes=options.runtime_overhead_bytes, capacity_per_chip_bytes=capacity, usable_per_chip_bytes=usable,
        min_chips=min_chips, max_batch=replicas * max(0, math.floor(free / per_seq)) if free > 0 else 0,
        comm_buffer_bytes=batch * load.comm_buffer_bytes, min_plan=min_plan,
    )


def plan_loads(spec: ModelSpec, plan, *, isl: int, osl: int, p: Precision, attention: Attention,
               local: ModelSpec | None = None) -> list[ChipLoad]:
    """The memory load of one chip of each pipeline stage of ``plan``."""
    from infercast.parallel import layer_message_bytes, stage_layers, stage_weight_bytes, stage_weight_params, tp_shard

    local = local or tp_shard(spec, plan)
    per_layer_kv = local.kv_elements_per_token() / local.num_layers
    per_layer_mha = local.kv_elements_per_token_if_mha() / local.num_layers
    c = element_bytes(p.kv)
    kept = isl + osl if spec.sliding_window is None else min(isl + osl, spec.sliding_window)
    act = activation_bytes_per_sequence(local, isl, p, attention)
    message = layer_message_bytes(spec, isl, p) if plan.tp > 1 or plan.pp > 1 else 0.0
    return [ChipLoad(weights_bytes=stage_weight_bytes(stage_weight_params(spec, local, plan, s, layers, dense), p),
                     kv_bytes_per_seq=kept * per_layer_kv * layers * c,
                     kv_bytes_per_seq_if_mha=kept * per_layer_mha * layers * c,
                     act_bytes_per_seq=act, comm_buffer_bytes=2 * message)
            for s, (_, layers, dense) in enumerate(stage_layers(spec, plan))]


def binding_load(loads: list[ChipLoad], batch: int) -> ChipLoad:
    """The stage whose chip needs the most memory at ``batch`` sequences."""
    return max(loads, key=lambda x: x.weights_bytes + batch * (x.kv_bytes_per_seq + x.act_bytes_per_seq
                                                                + x.comm_buffer_bytes))


def min_chips_plan(spec: ModelSpec, chip: Chip, *, batch: int, isl: int, osl: int, p: Precision,
                   attention: Attention, options: MemoryOptions, max_tp: int,
                   limit: int = 4096) -> tuple[int, dict | None]:
    """The fewest chips of this kind whose best (tp, pp) plan holds ``batch`` sequences; (0, None) if none
    up to ``limit``. Tensor parallelism stays within ``max_tp`` (a node)."""
    from infercast.parallel import candidate_plans, tp_shard

    usable = chip.figure("memory.capacity_bytes") * options.gpu_memory_utilization
    shards: dict[int, ModelSpec] = {}
    for n in range(1, limit + 1):
        for plan in candidate_plans(spec, n, max_tp):
            local = shards.setdefault(plan.tp, tp_shard(spec, plan))
            loads = plan_loads(spec, plan, isl=isl, osl=osl, p=p, attention=attention, local=local)
            if all(fits(x, batch, usable, options) for x in loads):
                return n, {"tp": plan.tp, "pp": plan.pp}
    return 0, None
