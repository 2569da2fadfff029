"""``estimate()``: memory, prefill and decode latency, throughput and the per-operator breakdown.

Prefill runs once over ``batch x isl`` tokens and produces the first output token (TTFT).
Each of the ``osl - 1`` decode steps then produces one token per sequence; step j
(j = 1 .. osl - 1) attends over ``isl + j`` keys. The decode total is the exact sum over
those steps, evaluated as one vectorised call over the array of KV lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from infercast.errors import InfercastError, pydantic_error_line
from infercast.formats import element_bytes
from infercast.hardware import Chip, load_chip
from infercast.memory import MemoryOptions, MemoryPlan, plan_memory
from infercast.model import ModelSpec, load_model
from infercast.ops import Attention, Op, Precision, forward_ops
from infercast.roofline import Efficiency, default_efficiency, op_time


@dataclass(frozen=True)
class PhaseTotals:
    latency_s: float
    flops: float
    bytes: float
    bound: str


@dataclass(frozen=True)
class OpRow:
    op: str
    phase: str
    flops: float
    bytes: float
    time_s: float
    bound: str


@dataclass(frozen=True)
class Estimate:
    """The result of one estimate; ``to_dict()`` is the JSON contract of DESIGN.md."""

    model: str
    hardware: str
    batch: int
    isl: int
    osl: int
    precision: Precision
    params_total: int
    params_active: int
    memory: MemoryPlan
    prefill: PhaseTotals
    decode: PhaseTotals
    breakdown: list[OpRow]
    efficiency: Efficiency
    peak_flops: float
    peak_bandwidth: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ttft_s(self) -> float:
        return self.prefill.latency_s

    @property
    def e2e_latency_s(self) -> float:
        return self.prefill.latency_s + self.decode.latency_s

    @property
    def tpot_s(self) -> float | None:
        return self.decode.latency_s / (self.osl - 1) if self.osl > 1 else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        return self.batch * (self.osl - 1) / self.decode.latency_s if self.osl > 1 else None

    @property
    def throughput_tokens_per_s(self) -> float:
        return self.batch * self.osl / self.e2e_latency_s

    def to_dict(self) -> dict[str, Any]:
        def util(flops: float, t: float, peak: float) -> float | None:
            return flops / (t * peak) if t > 0 else None

        p = self.precision
        return {
            "model": self.model,
            "hardware": self.hardware,
            "parallel": {"tp": 1, "pp": 1, "ep": 1, "dp": 1, "num_chips": 1},
            "workload": {"batch": self.batch, "isl": self.isl, "osl": self.osl, "weight_dtype": p.weight,
                         "act_dtype": p.act, "kv_dtype": p.kv},
            "params": {"total": self.params_total, "active": self.params_active},
            "memory": self.memory.to_dict(),
            "prefill": vars(self.prefill).copy(),
            "decode": {"tpot_s": self.tpot_s, "tokens_per_s": self.decode_tokens_per_s, **vars(self.decode)},
            "ttft_s": self.ttft_s,
            "e2e_latency_s": self.e2e_latency_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "utilization": {
                "prefill_compute": util(self.prefill.flops, self.prefill.latency_s, self.peak_flops),
                "decode_compute": util(self.decode.flops, self.decode.latency_s, self.peak_flops),
                "decode_bandwidth": util(self.decode.bytes, self.decode.latency_s, self.peak_bandwidth),
            },
            "efficiency": self.efficiency.model_dump(),
            "energy": None,
            "cost": None,
            "breakdown": [vars(row).copy() for row in self.breakdown],
        }


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InfercastError(f"{name} (--{name}) must be a whole number of at least 1, got {value!r}")
    return int(value)


def _phase(ops: list[Op], phase: str, steps: int, chip: Chip, eff: Efficiency) -> tuple[PhaseTotals, list[OpRow]]:
    """Sum each operator over its layers and (for decode) over every step's KV length."""
    rows, totals = [], {"compute": 0.0, "memory": 0.0, "overhead": 0.0}
    shape = (steps,)
    for op in ops:
        t = op_time(op, chip, eff)

        def total(x, count=op.count) -> float:
            return float(np.broadcast_to(x, shape).sum()) * count

        compute, memory, time = total(t.compute_s), total(t.memory_s), total(t.time_s)
        overhead = t.overhead_s * steps * op.count
        bound = max((("compute", compute), ("memory", memory), ("overhead", overhead)), key=lambda kv: kv[1])[0]
        totals[bound] += time
        rows.append(OpRow(op.name, phase, total(op.flops), total(op.bytes), time, bound))
    if eff.step_overhead_s:
        step = eff.step_overhead_s * steps
        totals["overhead"] += step
        rows.append(OpRow("framework", phase, 0.0, 0.0, step, "overhead"))
    latency = sum(r.time_s for r in rows)
    phase_bound = max(totals, key=totals.get)
    return PhaseTotals(latency, sum(r.flops for r in rows), sum(r.bytes for r in rows), phase_bound), rows


def resolve_precision(dtype: str | None, weight_dtype: str | None, act_dtype: str | None,
                      kv_cache_dtype: str | None) -> Precision:
    """``dtype`` sets all three tensor classes; the specific flags override it (default fp16)."""
    base = dtype or "fp16"
    return Precision(weight=weight_dtype or base, act=act_dtype or base, kv=kv_cache_dtype or base)


def estimate(
    model: str | ModelSpec,
    hardware: str | Chip,
    *,
    batch: int = 1,
    isl: int = 128,
    osl: int = 128,
    dtype: str | None = None,
    weight_dtype: str | None = None,
    act_dtype: str | None = None,
    kv_cache_dtype: str | None = None,
    attention: Attention = "flash",
    efficiency: Efficiency | dict[str, float] | None = None,
    memory: MemoryOptions | dict[str, float] | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp: int = 1,
) -> Estimate:
    """Estimate one model serving one static batch on one chip.

    ``efficiency`` overrides fields of the chip family's defaults (a full ``Efficiency``
    or a dict of some fields); ``memory`` likewise for ``MemoryOptions``.
    """
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    chip = hardware if isinstance(hardware, Chip) else load_chip(hardware)
    batch, isl, osl = _positive("batch", batch), _positive("isl", isl), _positive("osl", osl)
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep), ("dp", dp)):
        if _positive(name, value) != 1:
            raise InfercastError(f"--{name} {value}: this version plans one chip; use --{name} 1")
    # the last output token is sampled, never fed back: isl + osl - 1 positions are processed
    if isl + osl - 1 > spec.max_position_embeddings:
        raise InfercastError(
            f"isl + osl = {isl + osl} exceeds {spec.name}'s context of {spec.max_position_embeddings} tokens "
            f"(+1 for the last token, which is never fed back); shorten --isl or --osl"
        )
    if attention not in ("flash", "materialized"):
        raise InfercastError(f"attention must be 'flash' or 'materialized' (got {attention!r})")
    p = resolve_precision(dtype, weight_dtype, act_dtype, kv_cache_dtype)
    eff = _merge(default_efficiency(chip), efficiency, Efficiency, "efficiency")
    mem_opts = _merge(MemoryOptions(), memory, MemoryOptions, "memory")

    total, active = spec.params()
    plan = plan_memory(spec, chip, batch=batch, isl=isl, osl=osl, p=p, attention=attention, options=mem_opts,
                       weight_bytes=total * element_bytes(p.weight))
    prefill, prefill_rows = _phase(forward_ops(spec, batch, isl, isl, p, attention), "prefill", 1, chip, eff)
    steps = osl - 1
    kv_len = isl + np.arange(1, osl, dtype=float)
    decode_ops = forward_ops(spec, batch, 1, kv_len, p, attention)
    decode, decode_rows = _phase(decode_ops, "decode", steps, chip, eff) if steps else (
        PhaseTotals(0.0, 0.0, 0.0, "memory"), [])
    return Estimate(
        model=spec.name, hardware=chip.id, batch=batch, isl=isl, osl=osl, precision=p, params_total=total,
        params_active=active, memory=plan, prefill=prefill, decode=decode, breakdown=prefill_rows + decode_rows,
        efficiency=eff, peak_flops=chip.peak(p.gemm_math), peak_bandwidth=chip.figure("memory.bandwidth_bytes_per_s"),
    )


def _merge(default, override, cls, name: str):
    """``default`` with the fields of ``override`` (a dict) replaced, validated; or ``override`` itself."""
    if override is None:
        return default
    if isinstance(override, cls):
        return override
    try:
        return cls(**{**default.model_dump(), **override})
    except ValidationError as exc:
        raise InfercastError(f"{name}.{pydantic_error_line(exc)}") from None
