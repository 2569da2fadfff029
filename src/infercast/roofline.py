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

The chip enters as ``ChipRates``: its sourced figures as floats, or arrays of what-if values
that broadcast with the workload's. Operators are stacked into an ``OpTable`` (a leading axis
over the operators) so that a pass costs a handful of numpy calls whatever its size.
The efficiency parameters per chip family are fitted to public measurements by ``infercast
calibrate --fit`` and resolved by ``infercast.calibration``; every field is a named, overridable
parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.errors import InfercastError
from infercast.hardware import Chip
from infercast.keep import keep
from infercast.ops import Op

NARROW_MATH = ("fp8", "int8", "fp6", "int4", "fp4")
"""Math formats of 8 bits or fewer: ``gemm_max_narrow`` applies to them."""
FOUR_BIT_MATH = ("int4", "fp4")
"""Math formats of 4 bits: ``gemm_max_fp4`` applies to them (where set)."""
EXPERT_GEMMS = frozenset({"moe_up", "moe_down"})
"""The grouped GEMMs of an MoE layer's routed experts: ``moe_gemm_efficiency`` applies to them."""


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
    gemm_max_fp4: float | None = Field(default=None, gt=0, le=1)
    """The same for 4-bit math (FP4, NVFP4, MXFP4, INT4); None: gemm_max_narrow. Block scales and a
    newer library path make the 4-bit GEMMs a format of their own."""
    gemm_half_dim: float = Field(ge=0, allow_inf_nan=False)
    """Smallest GEMM dimension at which efficiency is half of gemm_max (tensor-core tile fill)."""
    wave_quantization: bool = True
    """Lose the idle compute units of a GEMM's last wave of output tiles (needs the chip's unit count)."""
    attention_max: float = Field(gt=0, le=1)
    """Fraction of dense peak a fused attention kernel reaches at long sequences."""
    attention_half_len: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    """Keys per query at which attention efficiency is half of attention_max (short sequences
    cannot amortise the kernel's softmax bookkeeping and tile loads)."""
    bandwidth: float = Field(gt=0, le=1)
    """Fraction of peak memory bandwidth a streaming kernel reaches."""
    kernel_overhead_s: float = Field(ge=0, le=1.0)
    """Fixed time per kernel: launch, ramp-up and tail (at most a second: a kernel launch is microseconds)."""
    step_overhead_s: float = Field(default=0.0, ge=0, le=60.0)
    """Fixed time per forward pass outside the kernels (scheduler, sampling, CPU-GPU sync)."""
    graph_kernel_overhead_s: float | None = Field(default=None, ge=0, le=1.0)
    """Time per kernel of a step replayed from a CUDA graph (no launch from the host); None:
    kernel_overhead_s. The framework's profile says which steps are replayed (decode, or every step)."""
    request_overhead_s: float = Field(default=0.0, ge=0, le=60.0)
    """Time a served request spends outside the engine's steps (API server, tokenization, the hand-off
    to the scheduler, streaming back): added to its TTFT and end-to-end latency in the simulator; 0 for
    an offline engine."""
    moe_gemm_efficiency: float = Field(default=1.0, gt=0, le=1)
    """Fraction of the dense GEMM efficiency the grouped GEMMs of routed experts reach."""

    def for_steps(self, graphs: bool) -> Efficiency:
        """These efficiencies for steps replayed from CUDA graphs (``graphs``): a kernel then costs
        ``graph_kernel_overhead_s`` where it is set; launched steps keep ``kernel_overhead_s``."""
        if not graphs or self.graph_kernel_overhead_s is None:
            return self
        # kept per efficiency object, so that the roofline's per-efficiency cache (``_KEPT``) finds it again
        return keep(_FOR_GRAPHS, (self,),
                    lambda: self.model_copy(update={"kernel_overhead_s": self.graph_kernel_overhead_s}))

    def compute_fraction(self, op: Op, units: float | None = None, native: str | None = None):
        """Achievable fraction of the peak for one operator on a chip with ``units`` compute units whose
        ``native`` format runs its math (default: the op's own); ``compute_fraction`` of a one-row table."""
        return fraction(OpTable.of([op]), self, units, {op.math: native or op.math})[0]


_FOR_GRAPHS: dict[int, tuple[Efficiency, Efficiency]] = {}
"""``Efficiency.for_steps(True)`` by efficiency object (held, so that an id stays its own)."""

IDEAL = Efficiency(gemm_max=1.0, gemm_half_dim=0.0, wave_quantization=False, attention_max=1.0, bandwidth=1.0,
                   kernel_overhead_s=0.0)
"""The textbook roofline: peak compute, peak bandwidth, no overheads."""


@dataclass(frozen=True)
class ChipRates:
    """The chip's figures the formulas use, in SI units: floats from the sourced ``Chip`` (``of``), or
    arrays of what-if values (``with_values``) that broadcast with the workload's axes.

    It sits between the catalog and the roofline: the catalog keeps the sources, this keeps the
    numbers, and a sweep over bandwidth or compute replaces a number with an array.
    """

    peak_flops: Mapping[str, float | np.ndarray]
    """Dense peak FLOP/s of each format the chip has units for."""
    native: Mapping[str, str]
    """Math format -> the format whose units run it (itself, or the nearest wider one the chip has)."""
    vector_flops_per_s: float | np.ndarray
    """Elementwise (non-tensor) FLOP/s: the fp32 rate, or the 16-bit matrix rate where that is unknown."""
    mem_bw_bytes_per_s: float | np.ndarray
    mem_capacity_bytes: float | np.ndarray
    compute_units: float | np.ndarray | None
    """SMs / CUs over which GEMM tiles are spread; None where unknown (no wave quantization)."""
    sram_bytes: float | np.ndarray | None
    """Last-level on-chip SRAM: the buffer kernels tile their operands in (``infercast.tiling``)."""
    tdp_w: float | np.ndarray | None
    idle_w: float | np.ndarray | None
    """Catalog idle power; None: the energy model's default fraction of TDP."""
    price_usd: float | np.ndarray | None
    process_nm: float | np.ndarray | None
    dram_j_per_bit: float | np.ndarray | None = None
    """The chip's own DRAM energy figure; None: the default of its memory technology."""
    link_j_per_bit: float | np.ndarray | None = None
    node_energy_scale: float | np.ndarray | None = None
    memory_type: str = ""
    sram_bw_bytes_per_s: float | np.ndarray | None = None
    """Bandwidth of that SRAM; None: unknown (weights are never held resident in it)."""
    chip_overhead: float | None = None
    """The chip's own energy overhead factor; None: the one its TDP implies (``infercast.energy``)."""

    @classmethod
    def of(cls, chip: Chip) -> ChipRates:
        return keep(_RATES, (chip,), lambda: cls._of(chip))

    @classmethod
    def _of(cls, chip: Chip) -> ChipRates:
        pf = chip.peak_flops
        peaks = {name: getattr(pf, name).value for name in type(pf).model_fields
                 if getattr(pf, name) is not None and getattr(pf, name).value is not None}
        if not peaks:
            raise InfercastError(f"hardware {chip.id}: no peak FLOPS known for any format; add peak_flops.<format> "
                                 f"(e.g. peak_flops.fp16) to the chip YAML")
        native = {fmt: next(n for n in order if n in peaks) for fmt, order in _FALLBACK.items()
                  if any(n in peaks for n in order)}
        fp32 = peaks.get("fp32")
        vector = fp32 if fp32 is not None else peaks[native.get("bf16") or next(iter(peaks))]
        energy = chip.energy

        def own(name: str):
            figure = getattr(energy, name) if energy is not None else None
            return figure.value if figure is not None else None

        return cls(peak_flops=peaks, native=native, vector_flops_per_s=vector,
                   mem_bw_bytes_per_s=chip.figure("memory.bandwidth_bytes_per_s"),
                   mem_capacity_bytes=chip.figure("memory.capacity_bytes"),
                   compute_units=chip.num_compute_units.value, sram_bytes=chip.on_chip_sram_bytes.value,
                   tdp_w=chip.tdp_w.value, idle_w=chip.idle_w.value, price_usd=chip.price_usd.value,
                   process_nm=chip.process_nm.value, dram_j_per_bit=own("dram_j_per_bit"),
                   link_j_per_bit=own("link_j_per_bit"), node_energy_scale=own("node_energy_scale"),
                   memory_type=chip.memory.type,
                   sram_bw_bytes_per_s=getattr(chip.on_chip_sram_bandwidth_bytes_per_s, "value", None),
                   chip_overhead=own("chip_overhead"))

    def peak(self, fmt: str, chip_id: str = "the chip") -> float | np.ndarray:
        """Dense peak FLOP/s for math in ``fmt`` on the units that run it."""
        native = self.native.get(fmt)
        if native is None:
            raise InfercastError(f"hardware {chip_id}: no peak FLOPS known for {fmt} or any wider format; "
                                 f"add peak_flops.{fmt} to the chip YAML")
        return self.peak_flops[native]

    def with_values(self, **values) -> ChipRates:
        """These rates with some figures replaced (floats or arrays); ``peak_scale`` multiplies every peak
        (a clock or unit-count what-if)."""
        scale = values.pop("peak_scale", None)
        unknown = set(values) - {f.name for f in fields(self)}
        if unknown:
            raise InfercastError(f"chip rates: unknown field(s) {', '.join(sorted(unknown))}; use one of "
                                 f"{', '.join(f.name for f in fields(self) if f.name not in ('native', 'memory_type'))}")
        out = replace(self, **values)
        if scale is not None:
            out = replace(out, peak_flops={k: v * scale for k, v in out.peak_flops.items()},
                          vector_flops_per_s=out.vector_flops_per_s * scale)
        return out


_RATES: dict[int, tuple[Chip, ChipRates]] = {}
"""Rates by chip object (catalog chips are loaded once); the chip is kept so an id is never reused."""

# Where a chip lacks units for a format, the math runs on the next wider units it has
# (DESIGN.md: "a chip without FP8 units computes FP8 at its FP16 rate").
_FALLBACK = {
    "fp4": ("fp4", "fp6", "fp8", "fp16", "bf16", "fp32"),
    "fp6": ("fp6", "fp8", "fp16", "bf16", "fp32"),
    "fp8": ("fp8", "fp16", "bf16", "fp32"),
    "int4": ("int4", "int8", "fp16", "bf16", "fp32"),
    "int8": ("int8", "fp16", "bf16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "tf32": ("tf32", "fp32"),
    "fp32": ("fp32", "tf32"),
}


@dataclass(frozen=True)
class OpTable:
    """Operators stacked along a leading axis: every array is [ops, *workload shape]."""

    ops: tuple[Op, ...]
    count: np.ndarray
    """Executions per pass of each operator (its layers), shape [ops] broadcastable."""
    kind: np.ndarray
    flops: np.ndarray
    weight_bytes: np.ndarray
    bytes: np.ndarray
    min_dim: np.ndarray
    vector_flops: np.ndarray
    compute_factor: np.ndarray
    tiles: np.ndarray
    """Output tiles of a GEMM; NaN for operators without tiles."""
    seq_len: np.ndarray
    """Keys per query of an attention kernel; NaN otherwise."""
    comm_s: np.ndarray
    """Time of a collective; 0 for other operators."""
    maths: tuple[str, ...]
    key: tuple = field(repr=False, default=())
    """The operators' kinds, formats, executions and whether each is a routed expert's GEMM (its ceiling carries
    ``moe_gemm_efficiency``): what the workload's sizes do not change."""
    sram_bytes: np.ndarray | float = 0.0
    """Weight bytes read from on-chip SRAM where they are held resident instead of from DRAM (``bytes``)."""

    @classmethod
    def of(cls, ops: list[Op], ndim: int = 1) -> OpTable:
        """The operators stacked, every array of at least ``ndim`` dimensions (1 + the workload's, so that rates
        of the workload's shape broadcast against a table whose operators' figures are all scalars)."""
        key = tuple([(op.kind, op.math, op.count, op.name in EXPERT_GEMMS) for op in ops])
        kind, count, maths, matrix = _structure(key)
        nan = float("nan")
        values = [(op.flops, op.weight_bytes, op.weight_bytes + op.act_bytes + op.kv_bytes + op.write_bytes,
                   _finite(op.min_dim) if m else 1.0,
                   op.vector_flops, op.compute_factor,
                   op.tiles if op.tiles is not None else nan, op.seq_len if op.seq_len is not None else nan,
                   op.comm_s if op.comm_s is not None else 0.0) for op, m in zip(ops, matrix, strict=True)]
        stacked = _columns(values)
        nd = max(ndim, *(a.ndim for a in stacked.values()))
        shape = (len(ops),) + (1,) * (nd - 1)
        # a field of fewer dimensions broadcasts from the right, after the operator axis
        stacked = {k: a.reshape((a.shape[0],) + (1,) * (nd - a.ndim) + a.shape[1:]) if a.ndim < nd else a
                   for k, a in stacked.items()}
        return cls(ops=tuple(ops), count=count.reshape(shape), kind=kind.reshape(shape), maths=maths,
                   key=key, **stacked)

    def per_pass(self, x: np.ndarray) -> np.ndarray | float:
        """Sum over the operators of ``x`` (per execution, [ops, *shape]) times each one's executions."""
        total = (self.count * x).sum(axis=0)
        return float(total) if total.ndim == 0 else total


_COLUMNS = ("flops", "weight_bytes", "bytes", "min_dim", "vector_flops", "compute_factor", "tiles", "seq_len",
            "comm_s")


def _columns(values: list[tuple]) -> dict[str, np.ndarray]:
    """The ``_COLUMNS`` of the operators' figures, each [ops, *shape]."""
    if not values:
        return {k: np.zeros(0) for k in _COLUMNS}
    if not any(type(v) is np.ndarray for v in values[0]):
        try:  # every figure a float (one workload): one numpy call
            return dict(zip(_COLUMNS, np.array(values, dtype=float).T, strict=True))
        except ValueError:
            pass
    return {k: _stack(list(v)) for k, v in zip(_COLUMNS, zip(*values, strict=True), strict=True)}


_STRUCTURES: dict[tuple, tuple] = {}


def _structure(key: tuple) -> tuple:
    """(kinds, executions, formats, is-a-matrix-kernel) of an operator list, kept by its ``key``."""
    hit = _STRUCTURES.get(key)
    if hit is None:
        if len(_STRUCTURES) > 4096:
            _STRUCTURES.clear()
        hit = _STRUCTURES[key] = (np.array([k[0] for k in key]), np.array([float(k[2]) for k in key]),
                                  tuple(k[1] for k in key), [k[0] in ("gemm", "attention") for k in key])
    return hit


def _finite(d):
    """A GEMM's smallest dimension; an unbounded one (no dimension given) counts as fully efficient."""
    return 1e30 if type(d) is float and d == math.inf else d


def _stack(values: list) -> np.ndarray:
    """[ops, *shape]: one row per operator, broadcast to a common shape."""
    shapes = {v.shape if type(v) is np.ndarray else () for v in values}
    if len(shapes) == 1:  # floats, or arrays of one shape
        return np.array(values, dtype=float)
    out = np.empty((len(values),) + np.broadcast_shapes(*shapes))
    for i, v in enumerate(values):
        out[i] = v
    return out


@dataclass(frozen=True)
class Times:
    """Time of each operator per execution, [ops, *shape]."""

    compute_s: np.ndarray
    memory_s: np.ndarray
    overhead_s: np.ndarray
    time_s: np.ndarray
    comm: np.ndarray = field(repr=False, default=None)
    """True for collectives (their time is their own, not a roofline's)."""

    @property
    def bound(self) -> np.ndarray:
        """'compute', 'memory' or 'overhead' per element: whichever term is largest ('communication' for a
        collective)."""
        term = np.where(self.overhead_s > np.maximum(self.compute_s, self.memory_s), "overhead",
                        np.where(self.compute_s >= self.memory_s, "compute", "memory"))
        return np.where(self.comm, "communication", term)


def _expand(x):
    """An efficiency or rate (a float, or an array of the workload's shape) against [ops, *shape]."""
    return x if np.ndim(x) == 0 else np.asarray(x)[None]


def compute_fraction(table: OpTable, eff: Efficiency, rates: ChipRates) -> np.ndarray:
    """Achievable fraction of each operator's peak on the chip (``fraction``)."""
    return fraction(table, eff, rates.compute_units, rates.native)


def fraction(table: OpTable, eff: Efficiency, units, native: Mapping[str, str]) -> np.ndarray:
    """Achievable fraction of each operator's peak: 1 for elementwise kernels; attention_max (less at
    short key lengths) or gemm_max (gemm_max_narrow on native narrow units) times the tile fill of
    the smallest dimension, times the busy share of the last wave of tiles on ``units`` compute units."""
    return _fraction(table, _Ceilings.of(table, eff, units, native))


@dataclass(frozen=True)
class _Ceilings:
    """What bounds each operator's pace apart from its sizes: its kind, the efficiency ceiling of its math
    (before the key-length and tile terms), and the efficiency's and chip's figures against [ops, *shape]."""

    vector: np.ndarray
    attention: np.ndarray
    top: np.ndarray
    """gemm_max, gemm_max_narrow for math on native narrow units, gemm_max_fp4 on 4-bit ones, times
    moe_gemm_efficiency for routed experts' GEMMs."""
    attention_max: Any
    half_len: Any
    """attention_half_len, or None where it is 0 everywhere."""
    half_dim: Any
    units: Any
    """Compute units for wave quantization; None without it."""
    ceiling: Any = None
    """attention_max for attention kernels, ``top`` for the others: where no key-length term applies."""

    @classmethod
    def of(cls, table: OpTable, eff: Efficiency, units, native: Mapping[str, str]) -> _Ceilings:
        kind = table.kind
        narrow = np.array([native.get(m, m) in NARROW_MATH for m in table.maths], dtype=bool).reshape(kind.shape)
        g_max = _expand(eff.gemm_max)
        g_narrow = _expand(eff.gemm_max_narrow) if eff.gemm_max_narrow is not None else g_max
        top = np.where(narrow, g_narrow, g_max)
        if eff.gemm_max_fp4 is not None:
            four = np.array([native.get(m, m) in FOUR_BIT_MATH for m in table.maths]).reshape(kind.shape)
            top = np.where(four, _expand(eff.gemm_max_fp4), top)
        if np.any(np.asarray(eff.moe_gemm_efficiency) != 1.0):
            expert = np.array([op.name in EXPERT_GEMMS for op in table.ops]).reshape(kind.shape)
            top = np.where(expert, top * _expand(eff.moe_gemm_efficiency), top)
        half_len = _expand(eff.attention_half_len)
        attention, attention_max = kind == "attention", _expand(eff.attention_max)
        return cls(vector=kind == "vector", attention=attention, top=top,
                   attention_max=attention_max, half_len=half_len if np.any(half_len) else None,
                   half_dim=_expand(eff.gemm_half_dim),
                   units=_expand(units) if eff.wave_quantization and units is not None else None,
                   ceiling=np.where(attention, attention_max, top))


def _fraction(table: OpTable, c: _Ceilings) -> np.ndarray:
    ceiling = c.ceiling
    if c.half_len is not None:
        s = np.where(np.isnan(table.seq_len), 1.0, table.seq_len)
        ceiling = np.where(c.attention, c.attention_max * s / (s + c.half_len), c.top)
    d = table.min_dim
    frac = ceiling * d / (d + c.half_dim)
    if c.units is not None:
        tiles = table.tiles
        has = ~np.isnan(tiles)
        if has.any():
            frac = frac * np.where(has, wave_efficiency(np.where(has, tiles, 1.0), c.units), 1.0)
    return np.where(c.vector, 1.0, frac)


def wave_efficiency(tiles, units):
    """Busy share of the compute units over all waves: ``tiles`` output tiles run ceil(tiles / units)
    waves of ``units`` tiles, the last one partly idle (NVIDIA, "Matrix Multiplication Background
    User's Guide", wave quantization). Below one full wave, split-K and stream-K kernels keep the
    units busy, so only whole waves are counted as partly idle."""
    tiles = np.asarray(tiles, float)
    waves = np.ceil(tiles / units)
    return np.where(tiles > units, tiles / (waves * units), 1.0)


def op_peaks(table: OpTable, rates: ChipRates, chip_id: str) -> np.ndarray:
    """Peak FLOP/s of the units each operator runs on: the vector rate for elementwise kernels."""
    values = [rates.vector_flops_per_s if k in ("vector", "comm") else rates.peak(m, chip_id)
              for k, m in zip(table.kind.ravel(), table.maths, strict=True)]
    peaks = _stack(values)
    return peaks.reshape(table.kind.shape) if peaks.ndim == 1 else peaks


@dataclass(frozen=True)
class _Rates:
    """``times``'s inputs that the workload's sizes do not change: per operator, its peak and ceilings, and
    the achievable bandwidth, overhead and vector rate."""

    comm: np.ndarray
    peak: np.ndarray
    ceilings: _Ceilings
    bandwidth: Any
    overhead: np.ndarray
    vector_rate: Any
    any_comm: bool = True
    """Whether any operator is a collective (without one, no time is replaced by its own)."""


_KEPT: dict[tuple, tuple] = {}
"""``_Rates`` by operator structure, chip rates and efficiency (objects kept, so an id is never reused)."""


def _rates(table: OpTable, rates: ChipRates, eff: Efficiency, chip_id: str) -> _Rates:
    if not table.key:
        return _make_rates(table, rates, eff, chip_id)
    return keep(_KEPT, (rates, eff), lambda: _make_rates(table, rates, eff, chip_id),
                (table.key, table.kind.ndim, chip_id), limit=1024)


def _make_rates(table: OpTable, rates: ChipRates, eff: Efficiency, chip_id: str) -> _Rates:
    comm = table.kind == "comm"
    return _Rates(comm=comm, peak=op_peaks(table, rates, chip_id),
                  ceilings=_Ceilings.of(table, eff, rates.compute_units, rates.native),
                  bandwidth=_expand(rates.mem_bw_bytes_per_s) * _expand(eff.bandwidth),
                  overhead=np.where(comm, 0.0, _expand(eff.kernel_overhead_s)),
                  vector_rate=_expand(rates.vector_flops_per_s), any_comm=bool(comm.any()))


def times(table: OpTable, rates: ChipRates, eff: Efficiency, chip_id: str = "the chip") -> Times:
    """Roofline time of one execution of every operator of ``table``; a collective carries its own
    alpha-beta time (``infercast.parallel``)."""
    r = _rates(table, rates, eff, chip_id)
    comm = r.comm
    compute = table.flops / (r.peak * _fraction(table, r.ceilings)) * table.compute_factor
    if table.vector_flops.any():
        compute = compute + table.vector_flops / r.vector_rate
    memory = table.bytes / r.bandwidth
    if type(table.sram_bytes) is not float:  # weights held in SRAM (infercast.tiling sets an array)
        memory = memory + table.sram_bytes / (_expand(rates.sram_bw_bytes_per_s) * _expand(eff.bandwidth))
    if not r.any_comm:
        return Times(compute, memory, r.overhead, np.maximum(compute, memory) + r.overhead, comm)
    compute = np.where(comm, 0.0, compute)
    memory = np.where(comm, 0.0, memory)
    time = np.where(comm, table.comm_s, np.maximum(compute, memory) + r.overhead)
    return Times(compute, memory, r.overhead, time, comm)


def op_time(op: Op, chip: ChipRates | Chip, eff: Efficiency) -> Times:
    """``times`` of a single operator on a chip (its ``ChipRates``), with the operator axis dropped."""
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    t = times(OpTable.of([op]), rates, eff)
    return Times(t.compute_s[0], t.memory_s[0], t.overhead_s[0], t.time_s[0], t.comm[0])
