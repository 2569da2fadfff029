"""Roofline with achievable efficiency: the time of each operator on a chip.

    time = max(FLOPs / achievable FLOP/s, bytes / achievable bytes/s) + kernel overhead

Achievable compute is the dense peak of the format the math runs in times an efficiency:

    eff = eff_max(format) * d / (d + d_half) * wave(tiles, units)

d is the GEMM's smallest dimension (a GEMM with M = 1 row cannot fill a tensor core's tile;
one with every side in the thousands reaches eff_max, which is lower for 8-bit and narrower
math), and wave() the busy share of the compute units when the output tiles do not fill the
last wave. Fused attention reaches attention_max, less at short key lengths. Achievable
bandwidth is a fixed fraction of peak. Every kernel pays a fixed overhead (launch, ramp-up and
tail), and every forward pass a framework overhead (scheduling, sampling hand-off, CPU-GPU
synchronisation).

The parameters per chip family are fitted to public measurements by ``infercast calibrate
--fit`` (``infercast.calibration``); every field is a named, overridable parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.hardware import Chip
from infercast.ops import Op

BOUNDS = ("compute", "memory", "communication", "overhead")


NARROW_MATH = ("fp8", "int8", "fp6", "int4", "fp4")
"""Math formats of 8 bits or fewer: ``gemm_max_narrow`` applies to them."""


class Efficiency(BaseModel):
    """Achievable fractions of peak and fixed overheads of a chip running an inference engine.

    The defaults per chip family are fitted to public measurements (``infercast calibrate --fit``,
    shipped as ``catalog/calibration/default.yaml``); any field can be overridden.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_max: float = Field(gt=0, le=1)
    """Fraction of dense peak FLOP/s a large 16-bit (or wider) GEMM reaches."""
    gemm_max_narrow: float | None = Field(default=None, gt=0, le=1)
    """The same for math in an 8-bit or narrower format (FP8, INT8, FP4...); None: gemm_max. Doubling
    the peak does not double what feeds it (shared-memory, register and scale handling), so
    narrow GEMMs usually reach a lower fraction."""
    gemm_half_dim: float = Field(ge=0)
    """Smallest GEMM dimension at which efficiency is half of gemm_max (tensor-core tile fill)."""
    wave_quantization: bool = True
    """Lose the idle compute units of a GEMM's last wave of output tiles (needs the chip's unit count)."""
    attention_max: float = Field(gt=0, le=1)
    """Fraction of dense peak a fused attention kernel reaches at long sequences."""
    attention_half_len: float = Field(default=0.0, ge=0)
    """Keys per query at which attention efficiency is half of attention_max (short sequences
    cannot amortise the kernel's softmax bookkeeping and tile loads)."""
    bandwidth: float = Field(gt=0, le=1)
    """Fraction of peak memory bandwidth a streaming kernel reaches."""
    kernel_overhead_s: float = Field(ge=0)
    """Fixed time per kernel: launch, ramp-up and tail."""
    step_overhead_s: float = Field(default=0.0, ge=0)
    """Fixed time per forward pass outside the kernels (scheduler, sampling, CPU-GPU sync)."""

    def compute_fraction(self, op: Op, units: float | None = None, native: str | None = None) -> np.ndarray:
        """Achievable fraction of the peak for ``op`` on a chip with ``units`` compute units whose
        ``native`` format runs its math (default: the op's own; an A100 runs FP8 math on FP16 units)."""
        if op.kind == "vector":
            return np.ones_like(op.flops)
        if op.kind == "attention":
            top = self.attention_max
            if self.attention_half_len and op.seq_len is not None:
                top = top * op.seq_len / (op.seq_len + self.attention_half_len)
        else:
            narrow = (native or op.math) in NARROW_MATH and self.gemm_max_narrow is not None
            top = self.gemm_max_narrow if narrow else self.gemm_max
        d = op.min_dim
        frac = top * d / (d + self.gemm_half_dim)
        if self.wave_quantization and units and op.tiles is not None:
            frac = frac * wave_efficiency(op.tiles, units)
        return frac


def wave_efficiency(tiles, units: float):
    """Busy share of the compute units over all waves: ``tiles`` output tiles run ceil(tiles / units)
    waves of ``units`` tiles, the last one partly idle (NVIDIA, "Matrix Multiplication Background
    User's Guide", wave quantization). Below one full wave, split-K and stream-K kernels keep the
    units busy, so only whole waves are counted as partly idle."""
    tiles = np.asarray(tiles, float)
    waves = np.ceil(tiles / units)
    return np.where(tiles > units, tiles / (waves * units), 1.0)


# FlashAttention-2 reaches 73% of A100 peak in the forward pass (Dao 2023, "FlashAttention-2",
# abstract: "reaching 50-73% of the theoretical maximum FLOPs/s on A100"); FlashAttention-3
# reaches 75% of H100 peak in FP16 (Shah et al. 2024, abstract: "up to 740 TFLOPs/s (75%
# utilization)"). The prior for every family before fitting.
ATTENTION_MAX = 0.73


def default_efficiency(chip: Chip, calibration=None) -> Efficiency:
    """The efficiency of ``chip``: the shipped profile's fit for its family (the fit's generic values
    for families it has no measurements of), the chip's own YAML overrides, then ``calibration``
    (a ``Calibration`` or a profile path) for the family and the chip."""
    from infercast.calibration import efficiency_for

    return efficiency_for(chip, calibration)


IDEAL = Efficiency(gemm_max=1.0, gemm_half_dim=0.0, wave_quantization=False, attention_max=1.0, bandwidth=1.0,
                   kernel_overhead_s=0.0)
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
    native = None if op.kind == "vector" else chip.native_format(op.math)
    peak = vector_peak(chip) if native is None else getattr(chip.peak_flops, native).value
    bw = chip.figure("memory.bandwidth_bytes_per_s")
    frac = eff.compute_fraction(op, chip.num_compute_units.value, native)
    compute = op.flops / (peak * frac) * op.compute_factor
    if np.any(op.vector_flops):
        compute = compute + op.vector_flops / vector_peak(chip)
    memory = op.bytes / (bw * eff.bandwidth)
    overhead = eff.kernel_overhead_s
    return OpTime(compute, memory, overhead, np.maximum(compute, memory) + overhead)
