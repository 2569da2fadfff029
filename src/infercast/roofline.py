"""Roofline with achievable efficiency: the time of each operator on a chip.

    time = max(FLOPs / achievable FLOP/s, bytes / achievable bytes/s) + kernel overhead

Achievable compute is the dense peak of the format the math runs in times an efficiency
that falls for small matrices, in the operator's smallest dimension d:

    eff(d) = eff_max * d / (d + d_half)

(a GEMM with M = 1 row cannot fill a tensor core's tile; one with every side in the
thousands reaches eff_max). Achievable bandwidth is a fixed fraction of peak. Every kernel
pays a fixed overhead (launch, ramp-up and tail), and every forward pass a framework
overhead (scheduling, sampling hand-off, CPU-GPU synchronisation).

The defaults per chip family are derived from ../shared/data/measured-public.csv by
``scripts/derive_efficiency.py`` (it prints the figures below and how it got them); a test
keeps the two in step. Every field is a named, overridable parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infercast.errors import InfercastError, pydantic_error_line
from infercast.hardware import Chip
from infercast.ops import Op

BOUNDS = ("compute", "memory", "communication", "overhead")


class Efficiency(BaseModel):
    """Achievable fractions of peak and fixed overheads of a chip running an inference engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_max: float = Field(gt=0, le=1)
    """Fraction of dense peak FLOP/s a large GEMM reaches."""
    gemm_half_dim: float = Field(ge=0)
    """Smallest GEMM dimension at which efficiency is half of gemm_max."""
    attention_max: float = Field(gt=0, le=1)
    """Fraction of dense peak a fused attention kernel reaches at long sequences."""
    bandwidth: float = Field(gt=0, le=1)
    """Fraction of peak memory bandwidth a streaming kernel reaches."""
    kernel_overhead_s: float = Field(ge=0)
    """Fixed time per kernel: launch, ramp-up and tail."""
    step_overhead_s: float = Field(default=0.0, ge=0)
    """Fixed time per forward pass outside the kernels (scheduler, sampling, sync)."""

    def compute_fraction(self, op: Op) -> np.ndarray:
        if op.kind == "vector":
            return np.ones_like(op.flops)
        top = self.attention_max if op.kind == "attention" else self.gemm_max
        d = op.min_dim
        return top * d / (d + self.gemm_half_dim)


# FlashAttention-2 reaches 73% of A100 peak in the forward pass (Dao 2023, "FlashAttention-2",
# abstract: "reaching 50-73% of the theoretical maximum FLOPs/s on A100"); FlashAttention-3
# reaches 75% of H100 peak in FP16 (Shah et al. 2024, abstract: "up to 740 TFLOPs/s (75%
# utilization)"). Used for every family: no measurement here says otherwise.
ATTENTION_MAX = 0.73

# Derived by scripts/derive_efficiency.py from the op-level rows of measured-public.csv
# (Vidur and LLMCompass GEMM timings on A100 and H100). Families without op-level
# measurements take GENERIC, the mean of the measured families, until calibration
# (infercast calibrate) fits them.
FAMILY_DEFAULTS: dict[str, dict[str, float]] = {
    "nvidia-ampere": dict(gemm_max=0.785, gemm_half_dim=25.0, bandwidth=0.826, kernel_overhead_s=6.54e-6),
    "nvidia-hopper": dict(gemm_max=0.767, gemm_half_dim=25.0, bandwidth=0.932, kernel_overhead_s=5.74e-6),
}
GENERIC = dict(gemm_max=0.776, gemm_half_dim=25.0, bandwidth=0.879, kernel_overhead_s=6.14e-6)


def default_efficiency(chip: Chip) -> Efficiency:
    """The family's derived defaults (GENERIC where the family has no measurements), with the
    chip's own overrides (its YAML's ``efficiency:`` block) on top."""
    fields = {**FAMILY_DEFAULTS.get(chip.family, GENERIC), "attention_max": ATTENTION_MAX, **(chip.efficiency or {})}
    try:
        return Efficiency(**fields)
    except ValidationError as exc:
        raise InfercastError(f"hardware {chip.id}: efficiency.{pydantic_error_line(exc)}") from None


IDEAL = Efficiency(gemm_max=1.0, gemm_half_dim=0.0, attention_max=1.0, bandwidth=1.0, kernel_overhead_s=0.0)
"""The textbook roofline: peak compute, peak bandwidth, no overheads."""


@dataclass(frozen=True)
class OpTime:
    """Time of one operator per execution (arrays broadcast like the operator's sizes)."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: float
    time_s: np.ndarray
    communication: bool = False

    @property
    def bound(self) -> np.ndarray:
        """'compute', 'memory' or 'overhead' per element: whichever term is largest
        ('communication' for a collective)."""
        if self.communication:
            return np.full(np.shape(self.time_s), "communication")
        return np.where(
            self.overhead_s > np.maximum(self.compute_s, self.memory_s), "overhead",
            np.where(self.compute_s >= self.memory_s, "compute", "memory"),
        )


def vector_peak(chip: Chip) -> float:
    """FLOP/s of elementwise kernels: the fp32 (non-tensor) rate, or the matrix rate if unknown."""
    fp32 = chip.peak_flops.fp32
    return fp32.value if fp32 is not None and fp32.value is not None else chip.peak("bf16")


def op_time(op: Op, chip: Chip, eff: Efficiency) -> OpTime:
    """Roofline time of one execution of ``op`` on ``chip`` at efficiency ``eff``.

    A collective (kind 'comm') carries its own alpha-beta time (``infercast.parallel``).
    """
    if op.kind == "comm":
        zero = np.zeros_like(op.comm_s)
        return OpTime(zero, zero, 0.0, op.comm_s, communication=True)
    peak = vector_peak(chip) if op.kind == "vector" else chip.peak(op.math)
    bw = chip.figure("memory.bandwidth_bytes_per_s")
    compute = op.flops / (peak * eff.compute_fraction(op)) * op.compute_factor
    if np.any(op.vector_flops):
        compute = compute + op.vector_flops / vector_peak(chip)
    memory = op.bytes / (bw * eff.bandwidth)
    overhead = eff.kernel_overhead_s
    return OpTime(compute, memory, overhead, np.maximum(compute, memory) + overhead)
