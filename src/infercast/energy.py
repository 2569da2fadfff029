"""Energy of a run: arithmetic, data movement per memory level, interconnect bits and static power.

Per chip, for every operator of a pass (one chip's work):

    E = FLOPs x e_op(format)                        arithmetic
      + SRAM bytes x e_sram(level)                   L2, shared memory and registers on the chip
      + DRAM bytes x 8 x e_dram(technology)          HBM, GDDR or LPDDR
      + link bytes x 8 x e_link(tier)                chip-to-chip and network
      + (k - 1) x (arithmetic + SRAM)                the chip's overhead beyond the bare datapath
      + P_idle x time                                static power

Arithmetic and SRAM energies are Horowitz's 45 nm figures (ISSCC 2014, "Computing's energy
problem (and what we can do about it)", his table of rough energy costs at 45 nm), scaled to the
chip's process node by Stillmaker & Baas (2017). DRAM and link energies are per bit of the
technology, not scaled.

Horowitz prices a bare multiplier, adder or SRAM array; a chip also spends energy on its clock
tree, control and the wires between units. Scaled to 4 nm, the bare figures put an H100 running
large GEMMs at its achievable rate near 0.2 of its 700 W TDP, so ``chip_overhead`` (k) carries the
rest: one factor, the median over the catalog's chips of what their TDPs imply
(``derive_chip_overhead``), not a figure tuned to one chip.

A chip cannot draw more than its TDP: a pass (or decode step) whose energy over its roofline time
would exceed it runs slower, at TDP, and takes (dynamic energy) / (TDP - idle) (the engine applies
this, ``infercast.evaluate``), so power, time, energy and cost agree.

The SRAM energy of an operator is linear in its FLOPs f and DRAM bytes d but for two terms of the
form max(d, k f) (a GEMM cannot move less through L2 or shared memory than it reads from DRAM);
``SramTerms`` keeps that shape so a decode's sum over its steps has a closed form.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.errors import InfercastError, with_overrides
from infercast.formats import element_bytes
from infercast.hardware import Chip, chip_ids, load_chip
from infercast.ops import Precision
from infercast.roofline import NARROW_MATH, ChipRates, OpTable
from infercast.system import System

pJ = 1e-12


class EnergyOptions(BaseModel):
    """Energy per operation, per byte and per bit, and the rules that adapt them to a chip."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    int8_add_j: float = Field(default=0.03 * pJ, gt=0, le=1e-6)
    """8-bit integer add, 45 nm (Horowitz, ISSCC 2014)."""
    int8_mul_j: float = Field(default=0.2 * pJ, gt=0, le=1e-6)
    """8-bit integer multiply, 45 nm (Horowitz)."""
    fp16_add_j: float = Field(default=0.4 * pJ, gt=0, le=1e-6)
    """16-bit float add, 45 nm (Horowitz)."""
    fp16_mul_j: float = Field(default=1.1 * pJ, gt=0, le=1e-6)
    """16-bit float multiply, 45 nm (Horowitz)."""
    fp32_add_j: float = Field(default=0.9 * pJ, gt=0, le=1e-6)
    """32-bit float add, 45 nm (Horowitz)."""
    fp32_mul_j: float = Field(default=3.7 * pJ, gt=0, le=1e-6)
    """32-bit float multiply, 45 nm (Horowitz)."""
    register_j_per_byte: float = Field(default=10 * pJ / 8, gt=0, le=1e-6)
    """Register file: Horowitz's 64-bit read of an 8 KB SRAM (10 pJ), per byte; register files are
    banked in arrays of that order."""
    shared_j_per_byte: float = Field(default=20 * pJ / 8, gt=0, le=1e-6)
    """Shared memory / L1: Horowitz's 64-bit read of a 32 KB SRAM (20 pJ), per byte."""
    l2_j_per_byte: float = Field(default=100 * pJ / 8, gt=0, le=1e-6)
    """L2 / last-level SRAM: Horowitz's 64-bit read of a 1 MB SRAM (100 pJ), per byte."""
    l2_tile_reuse: float = Field(default=64, gt=0, le=1e6)
    """Multiply-adds per operand element a GEMM fetches from L2: a 128 x 128 thread-block tile
    (CUTLASS's usual FP16 tile) uses each element 128 x 128 / (128 + 128) = 64 times."""
    shared_tile_reuse: float = Field(default=32, gt=0, le=1e6)
    """Multiply-adds per operand element read from shared memory into the matrix units: a 64 x 64
    warp tile, 64 x 64 / (64 + 64) = 32."""
    accumulator_bytes: float = Field(default=4, gt=0, le=64)
    """Partial sums are held in FP32 whatever the input format (tensor-core MMA accumulates in FP32)."""
    accumulator_depth: float = Field(default=16, gt=0, le=1e6)
    """Multiply-adds per read and write of an accumulator in the register file: the k = 16 of an
    mma.sync m16n8k16 / wgmma k16 instruction."""
    hbm_j_per_bit: float = Field(default=3.9 * pJ, gt=0, le=1e-6)
    """HBM (any generation): 3.9 pJ/bit for HBM2 (O'Connor et al., MICRO 2017, "Fine-Grained
    DRAM"); HBM3/HBM3e are lower, but no figure for them is in the documents used."""
    gddr6x_j_per_bit: float = Field(default=7.25 * pJ, gt=0, le=1e-6)
    """GDDR6X: 7.25 pJ/bit (Micron, GDDR6X product brief)."""
    gddr6_j_per_bit: float = Field(default=7.5 * pJ, gt=0, le=1e-6)
    """GDDR6 (and GDDR7, for want of a figure): 7.5 pJ/bit, Micron's comparison figure for GDDR6."""
    other_dram_j_per_bit: float = Field(default=1300 * pJ / 64, gt=0, le=1e-6)
    """LPDDR, DDR and anything else: Horowitz's DRAM access, 1.3 nJ per 64 bits (the low end of his
    1.3-2.6 nJ); an upper estimate for LPDDR."""
    scale_up_link_j_per_bit: float = Field(default=5 * pJ, gt=0, le=1e-6)
    """NVLink, Infinity Fabric, ICI and other chip-to-chip SerDes links. Assumed: 100G-class
    long-reach SerDes are reported at a few pJ/bit per end; no vendor figure in the documents used."""
    pcie_j_per_bit: float = Field(default=5 * pJ, gt=0, le=1e-6)
    """PCIe (cards without a scale-up link). Assumed, on the same SerDes basis."""
    network_j_per_bit: float = Field(default=50 * pJ, gt=0, le=1e-6)
    """Across nodes (InfiniBand, RoCE). Assumed: NIC SerDes and a 400G optical module at each end
    (~25 pJ/bit per module at ~10 W) plus a switch hop."""
    reference_node_nm: float = Field(default=45, gt=0, le=1000)
    """Process node of the per-operation figures (Horowitz's 45 nm)."""
    vdd_v: float = Field(default=0.8, gt=0, le=5)
    """Supply voltage at which Stillmaker & Baas's per-node energy equations are compared (the
    default of Accelergy's hwcomponents, which transcribes them)."""
    idle_fraction_of_tdp: float = Field(default=0.1, gt=0, le=1)
    """Idle power where the catalog has none, as a fraction of TDP. Assumed: nvidia-smi idle readings
    reported for datacenter GPUs are about a tenth of TDP (H100 SXM about 60-75 W of 700 W); no vendor
    publishes idle power."""
    chip_overhead: float | None = Field(default=None, ge=1, le=1000)
    """Chip energy per unit of bare (Horowitz) arithmetic and SRAM energy: clock tree, control and
    wires. None (the default): what the chip's own TDP implies, the factor at which it draws its TDP
    running a large 16-bit GEMM at its achievable rate (``chip_overhead_at_tdp``), so that its best
    sustained matrix work lands at TDP; 1 gives the bare model."""


DEFAULT_OPTIONS = EnergyOptions()

# Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS device performance from
# 180nm to 7nm", Integration 58 (2017) 74-81: energy at each node as a*Vdd^2 + b*Vdd + c, fitted to
# their simulations; transcribed from Accelergy's hwcomponents (scaling/techscaling.py).
_SB_NODES_NM = (130, 90, 65, 45, 32, 20, 16, 14, 10, 7)
_SB_ENERGY = ((7.171, -6.709, 2.904), (4.762, -4.781, 2.092), (3.755, -4.398, 1.975), (1.103, -0.362, 0.2767),
              (0.9559, -0.7823, 0.471), (0.373, -0.1582, 0.04104), (0.2958, -0.1241, 0.03024),
              (0.2363, -0.09675, 0.02239), (0.2068, -0.09311, 0.02375), (0.1776, -0.09097, 0.02447))


def _sb_energy(node_nm, vdd: float):
    """Stillmaker & Baas energy at ``node_nm`` (linear between their nodes). Outside 7-130 nm it scales
    with the square root of the node, as hwcomponents does after IRDS 2016-2017's fJ-per-switch
    projection."""
    lo, hi = _SB_NODES_NM[-1], _SB_NODES_NM[0]
    clamped = np.clip(node_nm, lo, hi)
    extra = np.sqrt(node_nm / clamped)
    values = [a * vdd**2 + b * vdd + c for a, b, c in _SB_ENERGY]
    out = np.interp(clamped, _SB_NODES_NM[::-1], values[::-1]) * extra
    return float(out) if np.ndim(out) == 0 else out


def node_scale(chip: Chip | ChipRates, options: EnergyOptions = DEFAULT_OPTIONS):
    """Energy of the chip's logic and SRAM relative to the 45 nm figures: the chip's own figure where
    its YAML gives one, else Stillmaker & Baas from 45 nm to the chip's node."""
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    if rates.node_energy_scale is not None:
        return rates.node_energy_scale
    if rates.process_nm is None:
        name = chip.id if isinstance(chip, Chip) else "the chip"
        raise InfercastError(f"hardware {name}: process_nm is unknown, so energy cannot be scaled; set "
                             f"process_nm or energy.node_energy_scale in the chip YAML")
    return _sb_energy(rates.process_nm, options.vdd_v) / _sb_energy(options.reference_node_nm, options.vdd_v)


def flop_energy_j(fmt: str, options: EnergyOptions = DEFAULT_OPTIONS, rates: ChipRates | None = None):
    """Energy of one FLOP (half a multiply-add) in ``fmt`` at 45 nm.

    8-bit floats take the 8-bit integer figures (E4M3's 4-bit significand needs a smaller multiplier:
    an upper estimate); 4-bit formats scale those with the width, the multiplier as its square (an
    array multiplier grows with the product of the operand widths), the adder linearly. TF32's
    11-bit significand multiplies like FP16 and adds in FP32.

    On a chip (``rates``) whose matrix units run a narrow format (8, 6 or 4 bits) faster than 16 bits, they
    run it on the 16-bit datapath split into narrower lanes, not on multipliers of its own: a cycle costs what
    a 16-bit cycle costs, so a narrow FLOP costs at least the 16-bit FLOP's energy over the speed-up
    (peak16 / peak). Horowitz's standalone 8-bit multiplier would let an INT8 or FP8 GEMM at twice the rate
    draw a fraction of the 16-bit GEMM's power; MLPerf's INT8 rows of power-capped parts (A10, L4, T4, H100
    PCIe) run nearer their TDP ratio to the full-power part than their peak ratio, as a per-cycle cost has it.
    """
    own = _own_flop_energy_j(fmt, options)
    if rates is None or fmt not in NARROW_MATH:
        return own
    try:
        speedup = np.asarray(rates.peak(fmt) / rates.peak("fp16"), dtype=float)
    except InfercastError:
        return own
    speedup = float(speedup.flat[0])  # a what-if scales every peak alike (``ChipRates.with_values``)
    return max(own, _own_flop_energy_j("fp16", options) / speedup)


def _own_flop_energy_j(fmt: str, options: EnergyOptions) -> float:
    o = options
    table = {
        "fp32": (o.fp32_mul_j, o.fp32_add_j), "tf32": (o.fp16_mul_j, o.fp32_add_j),
        "bf16": (o.fp16_mul_j, o.fp16_add_j), "fp16": (o.fp16_mul_j, o.fp16_add_j),
        "fp8": (o.int8_mul_j, o.int8_add_j), "int8": (o.int8_mul_j, o.int8_add_j),
        "fp6": (o.int8_mul_j, o.int8_add_j),
        "int4": (o.int8_mul_j / 4, o.int8_add_j / 2), "fp4": (o.int8_mul_j / 4, o.int8_add_j / 2),
    }
    mul, add = table[fmt]
    return (mul + add) / 2


def dram_j_per_bit(chip: Chip | ChipRates, options: EnergyOptions = DEFAULT_OPTIONS):
    """The chip's own figure, else the default for its memory technology."""
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    if rates.dram_j_per_bit is not None:
        return rates.dram_j_per_bit
    tech = rates.memory_type.upper()
    if tech.startswith("HBM"):
        return options.hbm_j_per_bit
    if tech.startswith("GDDR6X"):
        return options.gddr6x_j_per_bit
    if tech.startswith("GDDR"):
        return options.gddr6_j_per_bit
    return options.other_dram_j_per_bit


def tdp_w(chip: Chip | ChipRates, chip_id: str | None = None):
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    if rates.tdp_w is None:
        name = chip_id or (chip.id if isinstance(chip, Chip) else "the chip")
        raise InfercastError(f"hardware {name}: tdp_w is unknown, so power cannot be bounded; set tdp_w in the "
                             f"chip YAML")
    return rates.tdp_w


def idle_w(chip: Chip | ChipRates, options: EnergyOptions = DEFAULT_OPTIONS, chip_id: str | None = None):
    """Idle power: the catalog's figure, else ``idle_fraction_of_tdp`` of TDP."""
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    if rates.idle_w is not None:
        return rates.idle_w
    return options.idle_fraction_of_tdp * tdp_w(chip, chip_id)


@dataclass(frozen=True)
class OnChip:
    """Bare (unscaled, 45 nm) energy of operator rows on the chip: arrays, one entry per row."""

    compute_j: np.ndarray
    sram_j: np.ndarray


@dataclass(frozen=True)
class SramTerms:
    """SRAM bytes-energy of an operator at 45 nm, as a function of its FLOPs f and DRAM bytes d:

        sram_j = lin_f f + lin_d d + w1 max(d, k1 f) + w2 max(d, k2 f)

    A matrix row (gemm, attention) stages operands from L2 into shared memory, each element feeding
    ``l2_tile_reuse`` multiply-adds, reads them into the matrix units (``shared_tile_reuse``), and
    reads and writes its FP32 accumulators once per ``accumulator_depth`` multiply-adds; a skinny
    GEMM cannot move less than its DRAM bytes through each level (the maxima). A vector row passes
    every byte through L2 and the registers. Arrays over the operators.
    """

    lin_f: np.ndarray
    lin_d: np.ndarray
    w1: np.ndarray
    k1: np.ndarray
    w2: np.ndarray
    k2: np.ndarray

    def at(self, f, d):
        return (self.lin_f * f + self.lin_d * d + self.w1 * np.maximum(d, self.k1 * f)
                + self.w2 * np.maximum(d, self.k2 * f))


def sram_terms(matrix: np.ndarray, operand_bytes: np.ndarray, o: EnergyOptions = DEFAULT_OPTIONS) -> SramTerms:
    """``SramTerms`` of operators that are matrix rows (``matrix``) with operands of ``operand_bytes``."""
    # per matrix row: l2 = max(d, macs ob / r_l2) read once into shared; shared = l2 + max(d, macs ob / r_sh);
    # registers = 2 macs acc_bytes / acc_depth; macs = f / 2
    zero = np.zeros_like(operand_bytes, dtype=float)
    reg_f = o.accumulator_bytes / o.accumulator_depth * o.register_j_per_byte
    return SramTerms(
        lin_f=np.where(matrix, reg_f, 0.0),
        lin_d=np.where(matrix, 0.0, o.l2_j_per_byte + o.register_j_per_byte),
        w1=np.where(matrix, o.l2_j_per_byte + o.shared_j_per_byte, 0.0),
        k1=np.where(matrix, operand_bytes / 2 / o.l2_tile_reuse, zero),
        w2=np.where(matrix, o.shared_j_per_byte, 0.0),
        k2=np.where(matrix, operand_bytes / 2 / o.shared_tile_reuse, zero),
    )


def on_chip_j(kind: np.ndarray, flops: np.ndarray, dram_bytes: np.ndarray, flop_j: np.ndarray,
              operand_bytes: np.ndarray, o: EnergyOptions = DEFAULT_OPTIONS) -> OnChip:
    """Arithmetic and SRAM traffic of operator rows at 45 nm (``SramTerms``)."""
    matrix = (kind == "gemm") | (kind == "attention")
    return OnChip(flops * flop_j, sram_terms(matrix, operand_bytes, o).at(flops, dram_bytes))


def wire_factor(op: str, n_tp: int, n_ep: int) -> float:
    """Bytes one chip sends per byte of message (the alpha-beta model's bandwidth terms)."""
    if op == "allreduce":
        return 2 * (n_tp - 1) / n_tp
    if op in ("reduce_scatter", "all_gather", "all_gather_logits"):
        return (n_tp - 1) / n_tp
    if op == "all_to_all":
        return (n_ep - 1) / n_ep
    return 1.0  # p2p


def link_j_per_bit(tier: str | None, rates: ChipRates, system: System, o: EnergyOptions, host_staging: float) -> float:
    inter = system.inter_node
    if inter is not None and tier and inter.name in tier:
        return o.network_j_per_bit  # a hierarchical collective's bytes all priced at the slower tier
    if system.intra_node is not None and system.intra_node.topology == "host":
        return o.pcie_j_per_bit * host_staging  # through host memory: device to host, then host to device
    return rates.link_j_per_bit if rates.link_j_per_bit is not None else o.scale_up_link_j_per_bit


@dataclass(frozen=True)
class EnergyRates:
    """A chip's energy coefficients in a system, resolved once per scenario (floats, or arrays of what-if
    values)."""

    node_scale: float | np.ndarray
    dram_j_per_byte: float | np.ndarray
    idle_w: float | np.ndarray
    tdp_w: float | np.ndarray
    chip_overhead: float
    options: EnergyOptions


def energy_rates(rates: ChipRates, options: EnergyOptions, chip_id: str, gemm_max: float,
                 basis: tuple[ChipRates, float, str] | None = None) -> EnergyRates:
    """The chip's energy coefficients (``gemm_max``: its calibrated 16-bit GEMM efficiency, for the default
    chip overhead); a figure the catalog lacks (TDP, process node) is one clear error. ``basis``: the rates,
    16-bit GEMM efficiency and id of the chip whose energy per operation this one shares (its power basis,
    ``hardware.PowerBasis``): the default overhead is that chip's at its TDP, not this one's."""
    tdp = tdp_w(rates, chip_id)
    idle = idle_w(rates, options, chip_id)
    if np.any(np.asarray(idle) >= np.asarray(tdp)):
        raise InfercastError(f"hardware {chip_id}: idle power is not below TDP; fix idle_w or tdp_w in the chip YAML")
    if rates.node_energy_scale is None and rates.process_nm is None:
        raise InfercastError(f"hardware {chip_id}: process_nm is unknown, so energy cannot be scaled; set "
                             f"process_nm or energy.node_energy_scale in the chip YAML")
    k = options.chip_overhead if options.chip_overhead is not None else rates.chip_overhead
    if k is None and basis is not None:
        k = float(np.maximum(chip_overhead_at_tdp(basis[0], basis[1], options, basis[2]), 1.0))
    if k is None:
        k = np.maximum(chip_overhead_at_tdp(rates, gemm_max, options, chip_id), 1.0)
        k = float(k) if np.ndim(k) == 0 else k
    return EnergyRates(node_scale=node_scale(rates, options), dram_j_per_byte=8 * dram_j_per_bit(rates, options),
                       idle_w=idle, tdp_w=tdp, chip_overhead=k, options=options)


@dataclass(frozen=True)
class OpEnergyCoefficients:
    """Per operator of a table ([ops, 1, ...]): J per FLOP (45 nm), the SRAM terms, whether its bytes are
    DRAM traffic, and J per byte of message on its link."""

    flop_j: np.ndarray
    sram: SramTerms
    dram: np.ndarray
    link_j_per_byte: np.ndarray


def op_energy_coefficients(table: OpTable, p: Precision, rates: ChipRates, system: System, options: EnergyOptions,
                           tp: int, ep: int, host_staging: float) -> OpEnergyCoefficients:
    """Matrix rows in the precision's math formats, vector rows in FP32; a collective's bytes go over its
    link (the bytes one chip sends per byte of message), every other row's to and from DRAM."""
    kinds = table.kind.ravel()
    fmts = [m if k in ("gemm", "attention") else "fp32" for k, m in zip(kinds, table.maths, strict=True)]
    shape = table.kind.shape
    flop_j = np.array([flop_energy_j(f, options, rates) for f in fmts]).reshape(shape)
    ob = np.array([element_bytes(f) for f in fmts]).reshape(shape)
    matrix = (table.kind == "gemm") | (table.kind == "attention")
    comm = table.kind == "comm"
    link = np.array([8 * wire_factor(op.name, tp, ep) * link_j_per_bit(op.tier, rates, system, options, host_staging)
                     if op.kind == "comm" else 0.0 for op in table.ops]).reshape(shape)
    return OpEnergyCoefficients(flop_j, sram_terms(matrix, ob, options), ~comm, link)


@dataclass(frozen=True)
class OpEnergy:
    """Dynamic energy of each operator per execution ([ops, *shape]), by where it goes (J, one chip)."""

    compute_j: np.ndarray
    sram_j: np.ndarray
    dram_j: np.ndarray
    interconnect_j: np.ndarray
    overhead_j: np.ndarray

    @property
    def total_j(self) -> np.ndarray:
        return self.compute_j + self.sram_j + self.dram_j + self.interconnect_j + self.overhead_j


def op_energy(table: OpTable, coef: OpEnergyCoefficients, er: EnergyRates) -> OpEnergy:
    """Dynamic energy of one execution of each operator of ``table``."""
    f, b = table.flops, table.bytes
    d = np.where(coef.dram, b, 0.0)
    scale = er.node_scale if np.ndim(er.node_scale) == 0 else np.asarray(er.node_scale)[None]
    dram_rate = er.dram_j_per_byte if np.ndim(er.dram_j_per_byte) == 0 else np.asarray(er.dram_j_per_byte)[None]
    compute = f * coef.flop_j * scale
    sram = (coef.sram.at(f, d) + table.sram_bytes * er.options.l2_j_per_byte) * scale  # + resident weights' reads
    return OpEnergy(compute, sram, d * dram_rate, np.where(coef.dram, 0.0, b * coef.link_j_per_byte),
                    (er.chip_overhead - 1) * (compute + sram))


@dataclass(frozen=True)
class RowEnergy:
    """Energy of breakdown rows on one chip (J, arrays aligned with the rows), static power aside."""

    compute_j: np.ndarray
    sram_j: np.ndarray
    dram_j: np.ndarray
    interconnect_j: np.ndarray
    overhead_j: np.ndarray
    node_scale: float


def row_energy(rows, p: Precision, chip: Chip | ChipRates, chip_overhead: float,
               options: EnergyOptions = DEFAULT_OPTIONS) -> RowEnergy:
    """Energy of operator rows (anything with ``kind``, ``flops`` and ``bytes``: ``estimate``'s breakdown rows
    or ``ops.Op``) that are not collectives: matrix rows in the precision's math formats, vector rows in FP32,
    every byte to and from DRAM, with the chip's ``chip_overhead`` (``EnergyRates``). The engine prices whole
    passes the same way (``op_energy``)."""
    if any(r.kind == "comm" for r in rows):
        raise InfercastError("row_energy prices computation; a collective's energy depends on its link")
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    math_of = {"gemm": p.gemm_math, "attention": p.attention_math}
    fmts = [math_of.get(r.kind or "", "fp32") for r in rows]
    kind = np.array([r.kind or "" for r in rows])
    flops = np.array([float(np.sum(r.flops)) for r in rows])
    dram = np.array([float(np.sum(r.bytes)) for r in rows])
    bare = on_chip_j(kind, flops, dram, np.array([flop_energy_j(f, options, rates) for f in fmts]),
                     np.array([element_bytes(f) for f in fmts]), options)
    scale = node_scale(rates, options)
    compute, sram = bare.compute_j * scale, bare.sram_j * scale
    return RowEnergy(compute, sram, dram * 8 * dram_j_per_bit(rates, options), np.zeros(len(rows)),
                     (chip_overhead - 1) * (compute + sram), scale)


def merge_options(overrides: EnergyOptions | dict[str, float] | None) -> EnergyOptions:
    """The defaults with ``overrides`` (a dict of fields, as ``--energy KEY=VALUE`` gives) applied."""
    return with_overrides(DEFAULT_OPTIONS, overrides, "--energy ")


@dataclass(frozen=True)
class OverheadFit:
    value: float
    """The median of ``per_chip`` (for comparison: each chip uses its own by default)."""
    per_chip: dict[str, float]
    """(TDP - idle - DRAM power) / bare on-chip power of a large 16-bit GEMM at the achievable rate; a power-capped
    part (``hardware.PowerBasis``) has its basis chip's, as the engine uses it."""


def gemm_power_w(chip: Chip | ChipRates, gemm_max: float, options: EnergyOptions = DEFAULT_OPTIONS,
                 chip_id: str | None = None, fmt: str = "fp16") -> tuple[Any, Any]:
    """(bare on-chip W, DRAM W) of the chip running an 8192^3 GEMM in ``fmt`` at its achievable rate (``gemm_max``
    of that format's peak): the bare (Horowitz, node-scaled) arithmetic and SRAM power, and the DRAM power."""
    d, b = 8192.0, element_bytes(fmt)
    flops, dram = 2 * d**3, 3 * d * d * b  # FLOPs; bytes: A and B read, C written, once each
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    name = chip_id or (chip.id if isinstance(chip, Chip) else "the chip")
    rate = gemm_max * rates.peak(fmt, name)  # FLOP/s
    t = flops / rate
    bare = on_chip_j(np.array(["gemm"]), np.array([flops]), np.array([dram]),
                     np.array([flop_energy_j(fmt, options, rates)]), np.array([b]), options)
    bare_w = float(bare.compute_j[0] + bare.sram_j[0]) * node_scale(rates, options) / t
    dram_w = dram * 8 * dram_j_per_bit(rates, options) / t
    return bare_w, dram_w


def chip_overhead_at_tdp(chip: Chip | ChipRates, gemm_max: float, options: EnergyOptions = DEFAULT_OPTIONS,
                         chip_id: str | None = None):
    """The chip_overhead at which the chip draws its TDP running an 8192^3 FP16 GEMM at its achievable
    rate (``gemm_max`` of the 16-bit peak): TDP is the power its best sustained matrix work is built for."""
    rates = chip if isinstance(chip, ChipRates) else ChipRates.of(chip)
    name = chip_id or (chip.id if isinstance(chip, Chip) else "the chip")
    bare_w, dram_w = gemm_power_w(rates, gemm_max, options, name)
    return (tdp_w(rates, name) - idle_w(rates, options, name) - dram_w) / bare_w


def derive_chip_overhead(gemm_max_of: Callable[[Chip], float],
                         options: EnergyOptions = DEFAULT_OPTIONS) -> OverheadFit:
    """``chip_overhead_at_tdp`` for every catalog chip with a TDP, a node and a 16-bit peak; the median.
    ``gemm_max_of(chip)``: the achievable fraction of its 16-bit peak (the calibration's)."""
    per_chip = {}
    for cid in chip_ids():
        chip = load_chip(cid)
        if chip.energy is not None and chip.energy.power_basis is not None:
            chip = load_chip(chip.energy.power_basis.chip)  # a power-capped part: its basis chip's overhead
        try:
            per_chip[cid] = chip_overhead_at_tdp(chip, gemm_max_of(chip), options)
        except InfercastError:
            continue  # a figure the fit needs is unknown for this chip
    return OverheadFit(statistics.median(per_chip.values()), per_chip)
