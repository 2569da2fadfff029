"""Energy of a run: arithmetic, data movement per memory level, interconnect bits and static power.

Per chip, over every operator row of the estimate's breakdown (one chip's work):

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

Average power per chip is energy over time, never below idle (the static term) and reported
at most at TDP: a run the model puts above TDP would throttle, and ``power_capped`` says so.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.errors import InfercastError, with_overrides
from infercast.formats import element_bytes
from infercast.hardware import Chip, chip_ids, load_chip
from infercast.system import System

if TYPE_CHECKING:
    from infercast.estimate import Estimate, OpRow

pJ = 1e-12


class EnergyOptions(BaseModel):
    """Energy per operation, per byte and per bit, and the rules that adapt them to a chip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    int8_add_j: float = Field(default=0.03 * pJ, gt=0)
    """8-bit integer add, 45 nm (Horowitz, ISSCC 2014)."""
    int8_mul_j: float = Field(default=0.2 * pJ, gt=0)
    """8-bit integer multiply, 45 nm (Horowitz)."""
    fp16_add_j: float = Field(default=0.4 * pJ, gt=0)
    """16-bit float add, 45 nm (Horowitz)."""
    fp16_mul_j: float = Field(default=1.1 * pJ, gt=0)
    """16-bit float multiply, 45 nm (Horowitz)."""
    fp32_add_j: float = Field(default=0.9 * pJ, gt=0)
    """32-bit float add, 45 nm (Horowitz)."""
    fp32_mul_j: float = Field(default=3.7 * pJ, gt=0)
    """32-bit float multiply, 45 nm (Horowitz)."""
    register_j_per_byte: float = Field(default=10 * pJ / 8, gt=0)
    """Register file: Horowitz's 64-bit read of an 8 KB SRAM (10 pJ), per byte; register files are
    banked in arrays of that order."""
    shared_j_per_byte: float = Field(default=20 * pJ / 8, gt=0)
    """Shared memory / L1: Horowitz's 64-bit read of a 32 KB SRAM (20 pJ), per byte."""
    l2_j_per_byte: float = Field(default=100 * pJ / 8, gt=0)
    """L2 / last-level SRAM: Horowitz's 64-bit read of a 1 MB SRAM (100 pJ), per byte."""
    l2_tile_reuse: float = Field(default=64, gt=0)
    """Multiply-adds per operand element a GEMM fetches from L2: a 128 x 128 thread-block tile
    (CUTLASS's usual FP16 tile) uses each element 128 x 128 / (128 + 128) = 64 times."""
    shared_tile_reuse: float = Field(default=32, gt=0)
    """Multiply-adds per operand element read from shared memory into the matrix units: a 64 x 64
    warp tile, 64 x 64 / (64 + 64) = 32."""
    accumulator_bytes: float = Field(default=4, gt=0)
    """Partial sums are held in FP32 whatever the input format (tensor-core MMA accumulates in FP32)."""
    accumulator_depth: float = Field(default=16, gt=0)
    """Multiply-adds per read and write of an accumulator in the register file: the k = 16 of an
    mma.sync m16n8k16 / wgmma k16 instruction."""
    hbm_j_per_bit: float = Field(default=3.9 * pJ, gt=0)
    """HBM (any generation): 3.9 pJ/bit for HBM2 (O'Connor et al., MICRO 2017, "Fine-Grained
    DRAM"); HBM3/HBM3e are lower, but no figure for them is in the documents used."""
    gddr6x_j_per_bit: float = Field(default=7.25 * pJ, gt=0)
    """GDDR6X: 7.25 pJ/bit (Micron, GDDR6X product brief)."""
    gddr6_j_per_bit: float = Field(default=7.5 * pJ, gt=0)
    """GDDR6 (and GDDR7, for want of a figure): 7.5 pJ/bit, Micron's comparison figure for GDDR6."""
    other_dram_j_per_bit: float = Field(default=1300 * pJ / 64, gt=0)
    """LPDDR, DDR and anything else: Horowitz's DRAM access, 1.3 nJ per 64 bits (the low end of his
    1.3-2.6 nJ); an upper estimate for LPDDR."""
    scale_up_link_j_per_bit: float = Field(default=5 * pJ, gt=0)
    """NVLink, Infinity Fabric, ICI and other chip-to-chip SerDes links. Assumed: 100G-class
    long-reach SerDes are reported at a few pJ/bit per end; no vendor figure in the documents used."""
    pcie_j_per_bit: float = Field(default=5 * pJ, gt=0)
    """PCIe (cards without a scale-up link). Assumed, on the same SerDes basis."""
    network_j_per_bit: float = Field(default=50 * pJ, gt=0)
    """Across nodes (InfiniBand, RoCE). Assumed: NIC SerDes and a 400G optical module at each end
    (~25 pJ/bit per module at ~10 W) plus a switch hop."""
    reference_node_nm: float = Field(default=45, gt=0)
    """Process node of the per-operation figures (Horowitz's 45 nm)."""
    vdd_v: float = Field(default=0.8, gt=0)
    """Supply voltage at which Stillmaker & Baas's per-node energy equations are compared (the
    default of Accelergy's hwcomponents, which transcribes them)."""
    idle_fraction_of_tdp: float = Field(default=0.1, gt=0, le=1)
    """Idle power where the catalog has none, as a fraction of TDP. Assumed: nvidia-smi idle readings
    reported for datacenter GPUs are about a tenth of TDP (H100 SXM about 60-75 W of 700 W); no vendor
    publishes idle power."""
    chip_overhead: float = Field(default=7.86, ge=1)
    """Chip energy per unit of bare (Horowitz) arithmetic and SRAM energy: clock tree, control and
    wires. The median over the catalog of what each chip's TDP implies at its achievable 16-bit GEMM
    rate (``derive_chip_overhead``, kept in step by a test); 1 gives the bare model."""


DEFAULT_OPTIONS = EnergyOptions()

# Stillmaker & Baas, "Scaling equations for the accurate prediction of CMOS device performance from
# 180nm to 7nm", Integration 58 (2017) 74-81: energy at each node as a*Vdd^2 + b*Vdd + c, fitted to
# their simulations; transcribed from Accelergy's hwcomponents (scaling/techscaling.py).
_SB_NODES_NM = (130, 90, 65, 45, 32, 20, 16, 14, 10, 7)
_SB_ENERGY = ((7.171, -6.709, 2.904), (4.762, -4.781, 2.092), (3.755, -4.398, 1.975), (1.103, -0.362, 0.2767),
              (0.9559, -0.7823, 0.471), (0.373, -0.1582, 0.04104), (0.2958, -0.1241, 0.03024),
              (0.2363, -0.09675, 0.02239), (0.2068, -0.09311, 0.02375), (0.1776, -0.09097, 0.02447))


@cache
def _sb_energy(node_nm: float, vdd: float) -> float:
    """Stillmaker & Baas energy at ``node_nm`` (linear between their nodes). Outside 7-130 nm it scales
    with the square root of the node, as hwcomponents does after IRDS 2016-2017's fJ-per-switch
    projection."""
    lo, hi = _SB_NODES_NM[-1], _SB_NODES_NM[0]
    clamped = min(max(node_nm, lo), hi)
    extra = math.sqrt(node_nm / clamped)
    values = [a * vdd**2 + b * vdd + c for a, b, c in _SB_ENERGY]
    nodes = _SB_NODES_NM[::-1]  # ascending for np.interp
    return float(np.interp(clamped, nodes, values[::-1])) * extra


def node_scale(chip: Chip, options: EnergyOptions = DEFAULT_OPTIONS) -> float:
    """Energy of the chip's logic and SRAM relative to the 45 nm figures: the chip's own figure where
    its YAML gives one, else Stillmaker & Baas from 45 nm to the chip's node."""
    own = chip.energy.node_energy_scale if chip.energy else None
    if own is not None and own.value is not None:
        return own.value
    node = chip.process_nm.value
    if node is None:
        raise InfercastError(f"hardware {chip.id}: process_nm is unknown, so energy cannot be scaled; set "
                             f"process_nm or energy.node_energy_scale in the chip YAML")
    return _sb_energy(node, options.vdd_v) / _sb_energy(options.reference_node_nm, options.vdd_v)


def flop_energy_j(fmt: str, options: EnergyOptions = DEFAULT_OPTIONS) -> float:
    """Energy of one FLOP (half a multiply-add) in ``fmt`` at 45 nm.

    8-bit floats take the 8-bit integer figures (E4M3's 4-bit significand needs a smaller multiplier:
    an upper estimate); 4-bit formats scale those with the width, the multiplier as its square (an
    array multiplier grows with the product of the operand widths), the adder linearly. TF32's
    11-bit significand multiplies like FP16 and adds in FP32.
    """
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


def dram_j_per_bit(chip: Chip, options: EnergyOptions = DEFAULT_OPTIONS) -> float:
    """The chip's own figure, else the default for its memory technology."""
    own = chip.energy.dram_j_per_bit if chip.energy else None
    if own is not None and own.value is not None:
        return own.value
    tech = chip.memory.type.upper()
    if tech.startswith("HBM"):
        return options.hbm_j_per_bit
    if tech.startswith("GDDR6X"):
        return options.gddr6x_j_per_bit
    if tech.startswith("GDDR"):
        return options.gddr6_j_per_bit
    return options.other_dram_j_per_bit


def idle_w(chip: Chip, options: EnergyOptions = DEFAULT_OPTIONS) -> float:
    """Idle power: the catalog's figure, else ``idle_fraction_of_tdp`` of TDP."""
    if chip.idle_w.value is not None:
        return chip.idle_w.value
    return options.idle_fraction_of_tdp * tdp_w(chip)


def tdp_w(chip: Chip) -> float:
    if chip.tdp_w.value is None:
        raise InfercastError(f"hardware {chip.id}: tdp_w is unknown, so power cannot be bounded; set tdp_w in the "
                             f"chip YAML")
    return chip.tdp_w.value


@dataclass(frozen=True)
class OnChip:
    """Bare (unscaled, 45 nm) energy of operator rows on the chip: arrays, one entry per row."""

    compute_j: np.ndarray
    sram_j: np.ndarray


def on_chip_j(kind: np.ndarray, flops: np.ndarray, dram_bytes: np.ndarray, flop_j: np.ndarray,
              operand_bytes: np.ndarray, o: EnergyOptions = DEFAULT_OPTIONS) -> OnChip:
    """Arithmetic and SRAM traffic of operator rows at 45 nm.

    A matrix row (gemm, attention) stages operands from L2 into shared memory, each element feeding
    ``l2_tile_reuse`` multiply-adds, reads them into the matrix units (``shared_tile_reuse``), and
    reads and writes its FP32 accumulators once per ``accumulator_depth`` multiply-adds; a skinny
    GEMM cannot move less than its DRAM bytes through each level. A vector row passes every byte
    through L2 and the registers.
    """
    matrix = (kind == "gemm") | (kind == "attention")
    macs = flops / 2
    l2 = np.where(matrix, np.maximum(dram_bytes, macs * operand_bytes / o.l2_tile_reuse), dram_bytes)  # bytes
    shared = np.where(matrix, l2 + np.maximum(dram_bytes, macs * operand_bytes / o.shared_tile_reuse), 0.0)
    registers = np.where(matrix, 2 * macs * o.accumulator_bytes / o.accumulator_depth, dram_bytes)
    sram = l2 * o.l2_j_per_byte + shared * o.shared_j_per_byte + registers * o.register_j_per_byte
    return OnChip(flops * flop_j, sram)


def _wire_factor(op: str, n_tp: int, n_ep: int) -> float:
    """Bytes one chip sends per byte of message (the alpha-beta model's bandwidth terms)."""
    if op == "allreduce":
        return 2 * (n_tp - 1) / n_tp
    if op in ("reduce_scatter", "all_gather", "all_gather_logits"):
        return (n_tp - 1) / n_tp
    if op == "all_to_all":
        return (n_ep - 1) / n_ep
    return 1.0  # p2p


def _link_j_per_bit(tier: str | None, chip: Chip, system: System, o: EnergyOptions, host_staging: float) -> float:
    inter = system.inter_node
    if inter is not None and tier and inter.name in tier:
        return o.network_j_per_bit  # a hierarchical collective's bytes all priced at the slower tier
    if system.intra_node is not None and system.intra_node.topology == "host":
        return o.pcie_j_per_bit * host_staging  # through host memory: device to host, then host to device
    own = chip.energy.link_j_per_bit if chip.energy else None
    return own.value if own is not None and own.value is not None else o.scale_up_link_j_per_bit


@dataclass(frozen=True)
class EnergySplit:
    """Energy of the whole deployment by where it goes (all chips, the whole batch)."""

    compute_j: float
    """Arithmetic (Horowitz, node-scaled)."""
    memory_j: float
    """Data movement to and within the chip: dram_j + sram_j."""
    interconnect_j: float
    static_j: float
    """Idle power over the run."""
    dram_j: float
    sram_j: float
    overhead_j: float
    """Clock, control and wires beyond the bare arithmetic and SRAM figures (chip_overhead - 1 times them)."""


@dataclass(frozen=True)
class Energy:
    """Energy and power of one estimate. Energies cover every chip of the plan, each doing the
    busiest chip's work (exact for TP and DP; an upper bound for uneven pipeline stages)."""

    prefill_j: float
    decode_j: float
    output_tokens: int
    average_power_w: float
    """Per chip over the run, between idle and TDP."""
    prefill_power_w: float
    decode_power_w: float | None
    power_capped: bool
    """The model puts a phase above TDP: the chip would throttle and take longer than estimated."""
    split: EnergySplit
    w_per_delivered_pflops: float | None
    """Average power per PFLOP/s a chip delivers over the run (C17)."""
    idle_w: float
    tdp_w: float
    node_scale: float
    chip_overhead: float

    @property
    def total_j(self) -> float:
        return self.prefill_j + self.decode_j

    @property
    def joules_per_token(self) -> float:
        return self.total_j / self.output_tokens

    @property
    def tokens_per_joule(self) -> float:
        return self.output_tokens / self.total_j

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"joules_per_token": self.joules_per_token, "tokens_per_joule": self.tokens_per_joule,
                "total_j": self.total_j, **d}


@dataclass(frozen=True)
class RowEnergy:
    """Energy of each breakdown row on one chip (J, arrays aligned with the rows), static power aside."""

    compute_j: np.ndarray
    sram_j: np.ndarray
    dram_j: np.ndarray
    interconnect_j: np.ndarray
    overhead_j: np.ndarray
    node_scale: float
    """The factor the 45 nm arithmetic and SRAM figures were scaled by."""


def row_energy(rows: list[OpRow], est: Estimate, chip: Chip, system: System,
               options: EnergyOptions = DEFAULT_OPTIONS) -> RowEnergy:
    """Energy of ``rows`` (one chip's operators) of ``est``: matrix rows in the estimate's math formats,
    vector rows in FP32; a collective's bytes go over its link, every other row's to and from DRAM."""
    o, p = options, est.precision
    math_of = {"gemm": p.gemm_math, "attention": p.attention_math}
    fmts = [math_of.get(r.kind or "", "fp32") for r in rows]
    per_flop = {f: (flop_energy_j(f, o), element_bytes(f)) for f in set(fmts)}
    kind = np.array([r.kind or "" for r in rows])
    flops = np.array([r.flops for r in rows], float)
    comm = kind == "comm"
    dram = np.where(comm, 0.0, np.array([r.bytes for r in rows], float))  # bytes
    bare = on_chip_j(kind, flops, dram, np.array([per_flop[f][0] for f in fmts]),
                     np.array([per_flop[f][1] for f in fmts]), o)
    scale = node_scale(chip, o)
    n_tp, n_ep = est.plan.tp, max(est.plan.ep_across_dp, 1)
    link = np.array([r.bytes * _wire_factor(r.op, n_tp, n_ep) * 8
                     * _link_j_per_bit(r.tier, chip, system, o, est.comm.host_staging)
                     if r.kind == "comm" else 0.0 for r in rows])
    compute, sram = bare.compute_j * scale, bare.sram_j * scale
    return RowEnergy(compute, sram, dram * 8 * dram_j_per_bit(chip, o), link, (o.chip_overhead - 1) * (compute + sram),
                     scale)


def estimate_energy(est: Estimate, chip: Chip, system: System,
                    options: EnergyOptions = DEFAULT_OPTIONS) -> Energy:
    """Energy of ``est`` on ``chip`` in ``system`` from its breakdown rows (one chip's work), plus idle
    power over each phase's latency."""
    idle, tdp = idle_w(chip, options), tdp_w(chip)
    parts = ("compute_j", "sram_j", "dram_j", "interconnect_j", "overhead_j")
    e = row_energy(est.breakdown, est, chip, system, options)
    phase_of = np.array([r.phase for r in est.breakdown])
    phases: dict[str, dict[str, float]] = {}
    for phase, latency in (("prefill", est.prefill.latency_s), ("decode", est.decode.latency_s)):
        mask = phase_of == phase
        phases[phase] = {k: float(getattr(e, k)[mask].sum()) for k in parts} | {"static_j": idle * latency}
    per_chip = {phase: sum(v.values()) for phase, v in phases.items()}
    n = est.plan.num_chips
    total = {k: n * (phases["prefill"][k] + phases["decode"][k]) for k in phases["prefill"]}

    def power(phase: str, latency: float) -> float | None:
        return per_chip[phase] / latency if latency > 0 else None

    pre_w, dec_w = power("prefill", est.prefill.latency_s), power("decode", est.decode.latency_s)
    avg_w = min((per_chip["prefill"] + per_chip["decode"]) / est.e2e_latency_s, tdp)
    delivered_pflops = (est.prefill.flops + est.decode.flops) / est.e2e_latency_s / 1e15  # per chip
    return Energy(
        prefill_j=n * per_chip["prefill"], decode_j=n * per_chip["decode"], output_tokens=est.batch * est.osl,
        average_power_w=avg_w, prefill_power_w=min(pre_w, tdp),
        decode_power_w=min(dec_w, tdp) if dec_w is not None else None,
        power_capped=any(w is not None and w > tdp for w in (pre_w, dec_w)),
        split=EnergySplit(compute_j=total["compute_j"], memory_j=total["dram_j"] + total["sram_j"],
                          interconnect_j=total["interconnect_j"], static_j=total["static_j"], dram_j=total["dram_j"],
                          sram_j=total["sram_j"], overhead_j=total["overhead_j"]),
        w_per_delivered_pflops=avg_w / delivered_pflops if delivered_pflops > 0 else None,
        idle_w=idle, tdp_w=tdp, node_scale=e.node_scale, chip_overhead=options.chip_overhead,
    )


def merge_options(overrides: EnergyOptions | dict[str, float] | None) -> EnergyOptions:
    """The defaults with ``overrides`` (a dict of fields, as ``--energy KEY=VALUE`` gives) applied."""
    return with_overrides(DEFAULT_OPTIONS, overrides, "--energy ")


@dataclass(frozen=True)
class OverheadFit:
    value: float
    """The median of ``per_chip``."""
    per_chip: dict[str, float]
    """(TDP - idle - DRAM power) / bare on-chip power of a large 16-bit GEMM at the achievable rate."""


def chip_overhead_at_tdp(chip: Chip, options: EnergyOptions = DEFAULT_OPTIONS) -> float:
    """The chip_overhead at which ``chip`` draws its TDP running an 8192^3 FP16 GEMM at its achievable
    rate (the family's ``gemm_max`` of the 16-bit peak): TDP is the power its best sustained matrix work
    is built for."""
    from infercast.roofline import default_efficiency

    d = 8192.0
    flops, dram = 2 * d**3, 3 * d * d * 2  # FLOPs; bytes: A and B read, C written, once each
    rate = default_efficiency(chip).gemm_max * chip.peak("fp16")  # FLOP/s
    t = flops / rate
    bare = on_chip_j(np.array(["gemm"]), np.array([flops]), np.array([dram]), np.array([flop_energy_j("fp16")]),
                     np.array([2.0]), options)
    bare_w = float(bare.compute_j[0] + bare.sram_j[0]) * node_scale(chip, options) / t
    dram_w = dram * 8 * dram_j_per_bit(chip, options) / t
    return (tdp_w(chip) - idle_w(chip, options) - dram_w) / bare_w


def derive_chip_overhead(options: EnergyOptions = DEFAULT_OPTIONS) -> OverheadFit:
    """``chip_overhead_at_tdp`` for every catalog chip with a TDP, a node and a 16-bit peak; the median."""
    per_chip = {}
    for cid in chip_ids():
        chip = load_chip(cid)
        try:
            per_chip[cid] = chip_overhead_at_tdp(chip, options)
        except InfercastError:
            continue  # a figure the fit needs is unknown for this chip
    return OverheadFit(statistics.median(per_chip.values()), per_chip)
