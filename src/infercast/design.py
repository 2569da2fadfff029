"""Chip designs: compute units, SRAM, DRAM, links and a process node, turned into the ``Chip`` the engine uses.

A design YAML (``catalog/designs/`` holds the shipped ones) describes a chip that may not exist::

    design: h100-sxm-design            # its id, and the id of the chip derived from it
    compute: {units: 132, matrix_cores_per_unit: 4, clock_hz: 1.83e9,
              macs_per_core_per_clock: {bf16: 512, fp8: 1024}}
    sram: [{name: l2, bytes: 50.0e+6}]  # levels from the units out; the last one faces DRAM
    dram: {type: HBM3, interfaces: 5, capacity_bytes_per_interface: 16.0e+9}
    process_nm: 4

From it follow the chip's figures (peaks, bandwidths, capacity, SRAM: ``derive_chip``), its die area
(given, or estimated from its units and SRAM by per-node densities: ``area_mm2``), its cost
(dies per wafer, yield, wafer price per node, DRAM per GB, packaging and board: ``cost_usd``) and,
when not given, its TDP (the power its most demanding GEMMs draw on ``infercast.energy``'s model with the
catalog's median chip overhead: ``derived_tdp_w``). ``--hardware design.yaml`` runs a design wherever a
catalog chip runs (``load_hardware``), and ``--chip KEY=VALUE`` changes one figure of either
(``modify``).

    peak(fmt)  = units x matrix cores per unit x MACs per core per clock (fmt) x 2 x clock     FLOP/s
    bandwidth  = DRAM interfaces x bandwidth per interface (stack or channel)                 bytes/s

Every formula is written on numpy arrays, so ``infercast.whatif`` sweeps a design's knobs through
``evaluate()`` with the same code that derives one chip. The figures behind the area and cost models
(densities, wafer prices, defect densities, memory and packaging prices) are module constants with
their sources; those no document states are marked assumed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from infercast.calibration import efficiency_for
from infercast.energy import DEFAULT_OPTIONS as ENERGY_DEFAULTS
from infercast.energy import derive_chip_overhead, dram_j_per_bit, gemm_power_w, node_scale
from infercast.errors import InfercastError, UnknownName, did_you_mean, pydantic_error_line
from infercast.files import exists, is_package_file, read_text
from infercast.hardware import (DTYPES, Chip, Family, SparsitySupport, Spec, catalog_id, is_catalog_id, load_chip,
                                parse_spec)
from infercast.roofline import NARROW_MATH, ChipRates

# --- per-node figures -------------------------------------------------------------------------------------------

NODES_NM = (2, 3, 4, 5, 7, 10, 12, 16)
"""Process nodes the tables below cover (TSMC's names; '4' is N4/4N, an N5 derivative)."""

LOGIC_MTR_PER_MM2 = {
    16: 28.88,  # TSMC 16FF+, WikiChip (from TSMC's disclosures)
    12: 28.88 / 0.9,  # TSMC 12FFC: assumed 10% denser than 16FF+ (a 16 nm-class node with smaller cells)
    10: 52.51,  # TSMC 10FF, WikiChip
    7: 91.2,  # TSMC N7, WikiChip
    5: 171.3,  # TSMC N5, WikiChip
    4: 171.3 * 1.06,  # TSMC N4: N5 with 6% smaller logic (TSMC, N4 announcement, 2020)
    3: 171.3 * 1.6,  # TSMC N3E: 1.6x N5's logic density (TSMC Technology Symposium 2021)
    2: 171.3 * 1.6 * 1.15,  # TSMC N2: 1.15x N3E's density (TSMC Technology Symposium 2024)
}
"""Peak logic density per node, million transistors per mm^2: it scales the area of a matrix core."""

SRAM_BITCELL_UM2 = {
    16: 0.074,  # TSMC 16FF+ high-density 6T cell (TSMC, IEDM 2014)
    12: 0.074,  # TSMC 12FFC: assumed the 16FF+ cell (no published HD cell)
    10: 0.042,  # TSMC 10FF (TSMC, IEDM 2016)
    7: 0.027,  # TSMC N7 (TSMC, IEDM 2016)
    5: 0.021,  # TSMC N5 (TSMC, IEDM 2019)
    4: 0.021,  # N4 keeps N5's cell
    3: 0.021,  # TSMC N3E: no SRAM scaling over N5 (TSMC, IEDM 2022; N3B's cell is 0.0199)
    2: 0.0175,  # TSMC N2 (TSMC, IEDM 2024: 38 Mb/mm^2 arrays)
}
"""High-density SRAM bit cell per node, um^2."""

SRAM_ARRAY_EFFICIENCY = (64 * 2**20 * 8 / 41.0) / (1e6 / SRAM_BITCELL_UM2[7])
"""Bits per mm^2 of a whole SRAM (periphery, redundancy, wiring) over bits per mm^2 of bare cells: AMD's 3D
V-Cache die holds 64 MiB in 41 mm^2 of TSMC N7 (AMD, ISSCC 2022), about 0.35 of its cells' density."""

MAC_AREA_MM2_N4 = 1.869e-3
"""Area per 16-bit MAC/clock of a matrix core at N4, with its unit's share of the vector lanes, schedulers,
load/store and the unit's wiring (its register file and L1 counted as SRAM). Fitted: the H100 design
(``catalog/designs/h100-sxm-design.yaml``) then estimates GH100's 814 mm^2 (NVIDIA H100 whitepaper) from
its 144 SMs, its SRAM, 5 HBM3 interfaces and 18 NVLink ports; ``docs/design.md`` checks A100's 826 mm^2."""

MAC_AREA_BY_FORMAT = {"fp32": 4.0, "tf32": 1.0, "bf16": 1.0, "fp16": 1.0, "fp8": 0.5, "int8": 0.5, "fp6": 0.3,
                      "int4": 0.25, "fp4": 0.25}
"""A format's MAC in 16-bit MAC areas. A matrix core's area follows its most demanding format: Hopper and
Blackwell double the MACs per clock each time the width halves within one core, so the datapath's bits per
clock (MACs x width) set its size. Assumed; fp6 between fp8 and fp4."""

DRAM_PHY_AREA_MM2 = {"HBM": 12.0, "GDDR": 4.0, "LPDDR": 2.5, "DDR": 3.0}
"""PHY and controller area per interface (an HBM stack, a 32-bit GDDR channel, a 16-bit LPDDR channel, a 64-bit
DDR channel). Assumed: the order of die-shot estimates of 5 nm-class GPUs' HBM3 and GDDR interfaces."""
LINK_PORT_AREA_MM2 = 1.5
"""Area of one chip-to-chip port (an NVLink 4 link: two 100G SerDes lanes each way). Assumed."""
HOST_PHY_AREA_MM2 = 10.0
"""A PCIe x16 host interface. Assumed."""
UNCORE_SHARE = 0.15
"""Area beyond units, SRAM and PHYs (network on chip, crossbars, command processors, fuses) as a share of
them. Assumed."""

# --- cost figures ---------------------------------------------------------------------------------------------

WAFER_USD = {
    16: 3984.0, 12: 3984.0, 10: 5992.0, 7: 9346.0,  # CSET (Khan & Mann 2020, "AI Chips"), TSMC wafer estimates
    5: 16988.0, 4: 16988.0,  # CSET: 5 nm; N4 priced as N5 (its derivative)
    3: 20000.0,  # about USD 20,000 for N3 wafers (DigiTimes via Tom's Hardware, 2023); reported, not quoted by TSMC
    2: 30000.0,  # about USD 30,000 for N2 wafers (reported 2024-2025, e.g. Tom's Hardware); not quoted by TSMC
}
"""Price of a processed 300 mm wafer per node, USD."""

DEFECTS_PER_CM2 = {16: 0.05, 12: 0.05, 10: 0.08, 7: 0.09, 5: 0.1, 4: 0.1, 3: 0.1, 2: 0.1}
"""Defect density at volume production, per cm^2: TSMC reported N7 near 0.09 and N5 near 0.1 in their ramps
(TSMC Technology Symposium 2020, as reported by AnandTech); N3 and N2 assumed the same once mature; 16/12 nm
assumed lower (mature nodes)."""

CLUSTER_ALPHA = 3.0
"""Defect clustering of the negative-binomial yield model (Stapper): alpha 2-5 is the range fabs report; 3
assumed. alpha -> inf is Poisson."""
WAFER_DIAMETER_MM = 300.0
EDGE_EXCLUSION_MM = 3.0
SCRIBE_MM = 0.1
"""Scribe lane added to each die edge, mm. Assumed."""

DRAM_USD_PER_GB = {"HBM": 15.0, "GDDR": 8.0, "LPDDR": 4.0, "DDR": 3.0}
"""Memory price per GB. Assumed: HBM3/HBM3e near USD 10-20/GB in analysts' 2024 estimates (several times DDR5 per
bit); GDDR6/7 and LPDDR5 at contract prices of the order of USD 3-10/GB."""
INTERPOSER_USD_PER_MM2 = 0.47
"""2.5D packaging (CoWoS-class interposer, assembly, test) per mm^2 of interposer: USD 700 for an H100-class
package of 814 mm^2 of die and six HBM stacks of 110 mm^2. Assumed: the order of public analysts' estimates."""
HBM_FOOTPRINT_MM2 = 110.0
"""Interposer area one HBM stack takes (about 11 x 10 mm, JEDEC HBM3 package)."""
ORGANIC_PACKAGE_USD = 50.0
"""A flip-chip package on an organic substrate (GDDR and LPDDR chips). Assumed."""
BOARD_USD = {"module": 300.0, "card": 150.0}
"""The module or card around the chip: power stages, PCB, connectors. Assumed."""

DRAM_DEFAULTS = {
    # type: (bits per interface, Gb/s per pin); bandwidth per interface = bits x rate / 8
    "HBM2": (1024, 2.4), "HBM2E": (1024, 3.2), "HBM3": (1024, 6.4), "HBM3E": (1024, 9.6), "HBM4": (2048, 8.0),
    "GDDR6": (32, 16.0), "GDDR6X": (32, 21.0), "GDDR7": (32, 28.0),
    "LPDDR4X": (16, 4.266), "LPDDR5": (16, 6.4), "LPDDR5X": (16, 8.533), "DDR5": (64, 5.6),
}
"""JEDEC interface widths and top pin rates (JESD235/238/270 for HBM; JESD250/239 GDDR; JESD209 LPDDR; JESD79-5
DDR5); GDDR6X is Micron's. Products often run below the top rate: give bandwidth_bytes_per_s_per_interface."""

# --- the spec -------------------------------------------------------------------------------------------------


class Compute(Spec):
    units: int = Field(gt=0)
    """Compute units enabled (SMs, CUs, cores) that GEMM tiles spread over."""
    units_physical: int | None = Field(default=None, gt=0)
    """Units on the die, spares included (area and yield); None: as many as enabled."""
    unit_name: str = "unit"
    matrix_cores_per_unit: int = Field(gt=0)
    macs_per_core_per_clock: dict[str, float]
    """Dense multiply-accumulates one matrix core does per clock, per format (bf16, fp16, fp8, int8, fp4 ...)."""
    clock_hz: float = Field(gt=0, allow_inf_nan=False)
    """Clock the matrix cores run at under sustained load."""
    vector_flops_per_unit_per_clock: float | None = Field(default=None, gt=0)
    """FP32 FLOPs per unit per clock on the vector lanes (an FMA is 2); None: the 16-bit matrix rate stands in."""
    vector_clock_hz: float | None = Field(default=None, gt=0)
    """Clock of the vector lanes where it differs from the matrix cores'."""
    sparsity: SparsitySupport | None = None
    """What sparsity the matrix cores accelerate (``hardware.SparsitySupport``); None: none."""

    @model_validator(mode="after")
    def _checks(self) -> Compute:
        unknown = sorted(set(self.macs_per_core_per_clock) - set(DTYPES))
        if unknown:
            raise ValueError(f"macs_per_core_per_clock.{unknown[0]}: unknown format; use "
                             f"{', '.join(DTYPES)}")
        if not self.macs_per_core_per_clock:
            raise ValueError("macs_per_core_per_clock: give at least one format, e.g. {bf16: 512}")
        for fmt, v in self.macs_per_core_per_clock.items():
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"macs_per_core_per_clock.{fmt}: must be a positive number, got {v}")
        if self.units_physical is not None and self.units_physical < self.units:
            raise ValueError(f"units_physical: {self.units_physical} is below the {self.units} units enabled")
        return self


class SramLevel(Spec):
    name: str
    """registers, shared, l1, l2, global_buffer ..."""
    bytes_per_unit: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Capacity in each compute unit (registers, shared memory)."""
    bytes: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Capacity shared by the chip (L2, global buffer)."""
    bandwidth_bytes_per_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Bandwidth of the whole level; None: unknown."""

    @model_validator(mode="after")
    def _one_size(self) -> SramLevel:
        if (self.bytes_per_unit is None) == (self.bytes is None):
            raise ValueError(f"sram level {self.name}: give exactly one of bytes_per_unit or bytes")
        return self


class Dram(Spec):
    type: str
    """HBM2, HBM2e, HBM3, HBM3e, HBM4, GDDR6, GDDR6X, GDDR7, LPDDR4X, LPDDR5, LPDDR5X or DDR5."""
    interfaces: int = Field(gt=0)
    """HBM stacks, or GDDR (32-bit) / LPDDR (16-bit) / DDR (64-bit) channels."""
    capacity_bytes_per_interface: float = Field(gt=0, allow_inf_nan=False)
    bandwidth_bytes_per_s_per_interface: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """None: the type's JEDEC width x top pin rate (``DRAM_DEFAULTS``)."""

    @model_validator(mode="after")
    def _known(self) -> Dram:
        if self.type.upper() not in DRAM_DEFAULTS:
            raise ValueError(f"type: unknown memory {self.type!r}{did_you_mean(self.type.upper(), DRAM_DEFAULTS)}; "
                             f"use one of {', '.join(DRAM_DEFAULTS)}")
        return self

    @property
    def kind(self) -> str:
        """HBM, GDDR, LPDDR or DDR: the price and PHY-area class."""
        t = self.type.upper()
        return next(k for k in ("HBM", "GDDR", "LPDDR", "DDR") if t.startswith(k))

    @property
    def bandwidth_per_interface(self) -> float:
        if self.bandwidth_bytes_per_s_per_interface is not None:
            return self.bandwidth_bytes_per_s_per_interface
        bits, gbps = DRAM_DEFAULTS[self.type.upper()]
        return bits * gbps * 1e9 / 8


class Links(Spec):
    name: str
    """e.g. 'NVLink 4 (18 links)'."""
    ports: int = Field(gt=0)
    bandwidth_bytes_per_s_per_port: float = Field(gt=0, allow_inf_nan=False)
    """Per direction."""
    latency_s: float | None = Field(default=None, gt=0)


class HostLink(Spec):
    name: str = "PCIe Gen5 x16"
    bandwidth_bytes_per_s: float = Field(default=64e9, gt=0, allow_inf_nan=False)
    """Per direction (PCIe 5.0 x16: 64 GB/s as vendors quote it)."""


class CostSpec(Spec):
    """How a design's price is built; every field defaults to the module's sourced or assumed figures."""

    wafer_usd: float | None = Field(default=None, gt=0)
    """None: ``WAFER_USD`` of the node."""
    defects_per_cm2: float | None = Field(default=None, ge=0)
    """None: ``DEFECTS_PER_CM2`` of the node."""
    yield_model: Literal["negative_binomial", "murphy"] = "negative_binomial"
    cluster_alpha: float = Field(default=CLUSTER_ALPHA, gt=0)
    dram_usd_per_gb: float | None = Field(default=None, ge=0)
    packaging_usd: float | None = Field(default=None, ge=0)
    """None: 2.5D interposer by area for HBM, an organic package otherwise."""
    board_usd: float | None = Field(default=None, ge=0)
    """None: a module (HBM parts) or a card."""
    gross_margin: float = Field(default=0.0, ge=0, lt=1)
    """Vendor margin on top of the cost: price = cost / (1 - margin). 0: priced at cost."""


class Design(Spec):
    design: str
    """The design's id: also the id of the chip derived from it."""
    name: str
    vendor: str = "design"
    family: Family
    """Architecture family whose fitted efficiency (``infercast.calibration``) the design is assumed to reach."""
    launch_year: int = 2025
    process_nm: float = Field(ge=2, le=16)
    """Process node, nm (TSMC-style names: 4 is N4/4N); 2-16 nm, what the density and cost tables cover."""
    compute: Compute
    sram: tuple[SramLevel, ...] = Field(min_length=1)
    """On-chip SRAM levels from the units outwards; the last one faces DRAM (the buffer kernels tile in)."""
    dram: Dram
    links: Links | None = None
    """Chip-to-chip ports; None: peers talk through the host."""
    host_link: HostLink = HostLink()
    die_area_mm2: float | None = Field(default=None, gt=0)
    """Silicon area of all dies; None: estimated (``area_mm2``)."""
    dies: int = Field(default=1, gt=0)
    """Dies the area is split over (chiplets): yield is per die."""
    tdp_w: float | None = Field(default=None, gt=0)
    """None: derived, the power of its most demanding GEMM at the catalog's median chip overhead (``derived_tdp_w``)."""
    price_usd: float | None = Field(default=None, gt=0)
    """None: derived from the cost model (``cost_usd``)."""
    cost: CostSpec = CostSpec()
    efficiency: dict[str, float | bool] | None = None
    """Overrides of the family's efficiency parameters, as a chip YAML's."""
    notes: str | None = None

    def __hash__(self) -> int:
        # dict fields are unhashable, and derived chips are cached per design
        return hash(self.model_dump_json())


# --- the figures, on arrays -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The numbers of a design that what-ifs change: floats, or arrays that broadcast."""

    units: Any
    matrix_cores: Any
    clock_hz: Any
    sram_bytes: Any
    """The last (DRAM-facing) level."""
    sram_bw: Any
    dram_bw: Any
    dram_capacity: Any
    process_nm: Any
    fp4_over_fp8: Any = None
    """MACs of added FP4 units over the FP8 ones (None: the design's own)."""

    @classmethod
    def of(cls, d: Design) -> Knobs:
        last = d.sram[-1]
        return cls(float(d.compute.units), float(d.compute.matrix_cores_per_unit), d.compute.clock_hz,
                   _level_bytes(d, last), last.bandwidth_bytes_per_s, d.dram.interfaces * d.dram.bandwidth_per_interface,
                   d.dram.interfaces * d.dram.capacity_bytes_per_interface, d.process_nm)


def _level_bytes(d: Design, level: SramLevel, units=None):
    u = d.compute.units if units is None else units
    return level.bytes if level.bytes is not None else level.bytes_per_unit * u


def macs(d: Design, k: Knobs) -> dict[str, float]:
    """MACs per matrix core per clock per format, with added FP4 units where ``k`` says."""
    m = dict(d.compute.macs_per_core_per_clock)
    if k.fp4_over_fp8 is not None:
        base = m.get("fp8", m.get("int8"))
        if base is None:
            raise InfercastError(f"design {d.design}: fp4_units needs fp8 (or int8) units to size them by")
        m["fp4"] = k.fp4_over_fp8 * base
    return m


def peak_flops(d: Design, k: Knobs, fmt: str):
    """units x matrix cores per unit x MACs per core per clock x 2 FLOPs x clock."""
    return k.units * k.matrix_cores * macs(d, k)[fmt] * 2 * k.clock_hz


def vector_flops(d: Design, k: Knobs):
    c = d.compute
    if c.vector_flops_per_unit_per_clock is None:
        return None
    clock = k.clock_hz * (c.vector_clock_hz or c.clock_hz) / c.clock_hz
    return k.units * c.vector_flops_per_unit_per_clock * clock


def _node_table(table: dict[int, float], node_nm):
    """A per-node figure, log-log interpolated between the nodes of the table."""
    nodes = np.array(sorted(table), dtype=float)
    values = np.array([table[int(n)] for n in nodes])
    out = np.exp(np.interp(np.log(node_nm), np.log(nodes), np.log(values)))
    return float(out) if np.ndim(out) == 0 else out


def sram_bytes_per_mm2(node_nm):
    """SRAM bytes per mm^2 at a node: bit cells at ``SRAM_ARRAY_EFFICIENCY``."""
    return 1e6 / _node_table(SRAM_BITCELL_UM2, node_nm) * SRAM_ARRAY_EFFICIENCY / 8


def mac_area_mm2(node_nm):
    """Area per 16-bit MAC/clock at a node: N4's, scaled by logic density."""
    return MAC_AREA_MM2_N4 * LOGIC_MTR_PER_MM2[4] / _node_table(LOGIC_MTR_PER_MM2, node_nm)


@dataclass(frozen=True)
class Area:
    """Estimated silicon area, mm^2 (floats or arrays)."""

    matrix_mm2: Any
    sram_mm2: Any
    phy_mm2: Any
    uncore_mm2: Any
    unit_mm2: Any
    """One compute unit: its matrix cores and its own SRAM levels (what a disabled spare unit takes)."""

    @property
    def total_mm2(self):
        return self.matrix_mm2 + self.sram_mm2 + self.phy_mm2 + self.uncore_mm2


def estimated_area(d: Design, k: Knobs) -> Area:
    """Matrix cores (16-bit MAC equivalents of their most demanding format) at the node's MAC area, every SRAM
    level at its density, DRAM, link and host PHYs, and the uncore share on top."""
    c = d.compute
    units = k.units * (c.units_physical or c.units) / c.units  # spares included
    mac16 = np.maximum.reduce([n * MAC_AREA_BY_FORMAT[f] for f, n in macs(d, k).items()])
    density = sram_bytes_per_mm2(k.process_nm)
    per_unit_sram = sum(_level_bytes(d, lv, 1.0) for lv in d.sram[:-1] if lv.bytes_per_unit is not None)
    unit = k.matrix_cores * mac16 * mac_area_mm2(k.process_nm) + per_unit_sram / density
    matrix = units * k.matrix_cores * mac16 * mac_area_mm2(k.process_nm)
    sram = sum(_level_bytes(d, lv, units) for lv in d.sram[:-1]) + k.sram_bytes
    sram_mm2 = sram / density
    phy = d.dram.interfaces * DRAM_PHY_AREA_MM2[d.dram.kind] + HOST_PHY_AREA_MM2
    phy += (d.links.ports * LINK_PORT_AREA_MM2) if d.links is not None else 0.0
    return Area(matrix, sram_mm2, phy, UNCORE_SHARE * (matrix + sram_mm2 + phy), unit)


def area_mm2(d: Design, k: Knobs | None = None):
    """The design's silicon area: given (then a what-if adds the estimate's change), or estimated."""
    base = Knobs.of(d)
    k = base if k is None else k
    estimate = estimated_area(d, k).total_mm2
    if d.die_area_mm2 is None:
        return estimate
    return d.die_area_mm2 + estimate - estimated_area(d, base).total_mm2


def dies_per_wafer(die_mm2):
    """Whole dies on a 300 mm wafer: pi r^2 / A - pi d / sqrt(2 A) (de Vries, IEEE Trans. Semicond. Manuf. 2005),
    with the edge exclusion and scribe lanes."""
    d = WAFER_DIAMETER_MM - 2 * EDGE_EXCLUSION_MM
    a = (np.sqrt(die_mm2) + SCRIBE_MM) ** 2
    return np.maximum(np.floor(np.pi * d**2 / (4 * a) - np.pi * d / np.sqrt(2 * a)), 0.0)


def die_yield(die_mm2, defects_per_cm2, model: str = "negative_binomial", alpha: float = CLUSTER_ALPHA):
    """Share of dies without a killer defect: negative binomial (Stapper) Y = (1 + A D0 / alpha)^-alpha, or Murphy
    Y = ((1 - e^-A D0) / (A D0))^2; A in cm^2."""
    ad = die_mm2 / 100 * defects_per_cm2
    if model == "murphy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ad > 0, ((1 - np.exp(-ad)) / np.where(ad > 0, ad, 1.0)) ** 2, 1.0)
    return (1 + ad / alpha) ** -alpha


def harvested_yield(die_mm2, unit_mm2, units, spares, defects_per_cm2, model: str = "negative_binomial",
                    alpha: float = CLUSTER_ALPHA):
    """Share of dies that can be sold with up to ``spares`` of their ``units`` disabled: the rest of the die
    defect-free and at most ``spares`` units hit (each unit good with the yield of its own area, independently)."""
    rest = die_yield(np.maximum(die_mm2 - units * unit_mm2, 0.0), defects_per_cm2, model, alpha)
    y = die_yield(unit_mm2, defects_per_cm2, model, alpha)
    term = y**units  # P(no unit hit)
    ok = term
    for j in range(1, int(np.max(spares)) + 1):  # P(j units hit), by the binomial recurrence
        term = term * (units - j + 1) / j * (1 - y) / y
        ok = ok + np.where(j <= spares, term, 0.0)
    return rest * np.minimum(ok, 1.0)


@dataclass(frozen=True)
class Cost:
    """What one chip costs to build, USD (floats or arrays), and the yield behind it."""

    die_usd: Any
    dram_usd: Any
    packaging_usd: Any
    board_usd: Any
    yield_: Any
    dies_per_wafer: Any
    area_mm2: Any

    @property
    def total_usd(self):
        return self.die_usd + self.dram_usd + self.packaging_usd + self.board_usd


def cost_usd(d: Design, k: Knobs | None = None) -> Cost:
    """Dies at the node's wafer price over good dies per wafer, DRAM per GB, packaging and board."""
    k = Knobs.of(d) if k is None else k
    c, o = d.compute, d.cost
    area = area_mm2(d, k)
    die = area / d.dies
    node = np.round(np.asarray(k.process_nm, dtype=float))
    wafer = o.wafer_usd if o.wafer_usd is not None else _by_node(WAFER_USD, node)
    d0 = o.defects_per_cm2 if o.defects_per_cm2 is not None else _by_node(DEFECTS_PER_CM2, node)
    spares = (c.units_physical or c.units) - c.units
    units_per_die = k.units * (c.units_physical or c.units) / c.units / d.dies
    unit_mm2 = estimated_area(d, k).unit_mm2
    y = harvested_yield(die, unit_mm2, units_per_die, spares / d.dies, d0, o.yield_model, o.cluster_alpha)
    per_wafer = dies_per_wafer(die)
    with np.errstate(divide="ignore"):
        die_usd = d.dies * wafer / (per_wafer * y)
    gb = k.dram_capacity / 1e9
    dram = gb * (o.dram_usd_per_gb if o.dram_usd_per_gb is not None else DRAM_USD_PER_GB[d.dram.kind])
    hbm = d.dram.kind == "HBM"
    if o.packaging_usd is not None:
        pack = o.packaging_usd
    elif hbm:
        pack = INTERPOSER_USD_PER_MM2 * (area + d.dram.interfaces * HBM_FOOTPRINT_MM2)
    else:
        pack = ORGANIC_PACKAGE_USD
    board = o.board_usd if o.board_usd is not None else BOARD_USD["module" if hbm else "card"]
    return Cost(die_usd, dram, pack, board, y, per_wafer, area)


def _by_node(table: dict[int, float], node):
    """The table's figure for each node (nearest node of the table)."""
    keys = np.array(sorted(table))
    idx = np.abs(keys[:, None] - np.ravel(node)[None]).argmin(axis=0)
    out = np.array([table[int(x)] for x in keys[idx]]).reshape(np.shape(node))
    return float(out) if out.ndim == 0 else out


def price_usd(d: Design, k: Knobs | None = None):
    """The given price, or the cost over (1 - gross margin)."""
    if d.price_usd is not None and k is None:
        return d.price_usd
    built = cost_usd(d, k).total_usd / (1 - d.cost.gross_margin)
    if d.price_usd is None:
        return built
    return d.price_usd * built / (cost_usd(d).total_usd / (1 - d.cost.gross_margin))  # a what-if scales the price


@cache
def reference_chip_overhead() -> float:
    """The catalog's median chip overhead (``energy.derive_chip_overhead``): a design without a TDP is assumed
    to spend as much beyond its bare datapath as today's chips do."""
    return derive_chip_overhead(lambda chip: efficiency_for(chip).gemm_max).value


def _rates(d: Design, k: Knobs) -> ChipRates:
    """The rates the energy model needs (peaks, node, memory) of a design with knobs ``k``."""
    m = macs(d, k)
    peaks = {f: peak_flops(d, k, f) for f in m}
    any_peak = next(iter(peaks.values()))
    return ChipRates(peak_flops=peaks, native={f: f for f in peaks}, vector_flops_per_s=any_peak,
                     mem_bw_bytes_per_s=k.dram_bw, mem_capacity_bytes=k.dram_capacity, compute_units=k.units,
                     sram_bytes=k.sram_bytes, tdp_w=None, idle_w=None, price_usd=None, process_nm=k.process_nm,
                     memory_type=d.dram.type)


def derived_tdp_w(d: Design, k: Knobs | None = None, chip_overhead: float | None = None,
                  matrix_max: float | None = None):
    """TDP of a design that gives none: the power of its most demanding work, a large GEMM in any of its matrix
    formats at its family's achievable rate or a stream at full DRAM bandwidth, (DRAM W + k x bare W) / (1 - idle
    share), with k the catalog's median chip
    overhead (or ``chip_overhead``); ``matrix_max`` replaces the family's achievable share of peak. The derived chip
    states k (``energy.chip_overhead``), so the engine uses it rather than the one its TDP would imply."""
    k_ = Knobs.of(d) if k is None else k
    eff = efficiency_for(design_chip(d))
    if matrix_max is not None:
        eff = eff.model_copy(update={"gemm_max": matrix_max, "gemm_max_narrow": matrix_max})
    overhead = reference_chip_overhead() if chip_overhead is None else chip_overhead
    rates, watts = _rates(d, k_), []
    for fmt in macs(d, k_):
        if fmt in ("fp32", "tf32"):
            continue  # no LLM runs its GEMMs there
        narrow = fmt in NARROW_MATH and eff.gemm_max_narrow is not None
        bare_w, dram_w = gemm_power_w(rates, eff.gemm_max_narrow if narrow else eff.gemm_max, ENERGY_DEFAULTS,
                                      d.design, fmt)
        watts.append((dram_w + overhead * bare_w) / (1 - ENERGY_DEFAULTS.idle_fraction_of_tdp))
    if not watts:
        raise InfercastError(f"design {d.design}: no matrix format below 32 bits to derive a TDP from; give tdp_w")
    # streaming at full DRAM bandwidth (a memory-bound decode): every byte through DRAM, L2 and the registers
    o = ENERGY_DEFAULTS
    bw = k_.dram_bw
    stream = bw * 8 * dram_j_per_bit(rates, o) + overhead * bw * (o.l2_j_per_byte + o.register_j_per_byte) \
        * node_scale(rates, o)
    watts.append(stream / (1 - o.idle_fraction_of_tdp))
    out = np.maximum.reduce(np.broadcast_arrays(*watts)) if len(watts) > 1 else watts[0]
    return float(out) if np.ndim(out) == 0 else out


def tdp_w(d: Design, k: Knobs | None = None, chip_overhead: float | None = None, matrix_max: float | None = None):
    """The given TDP, or ``derived_tdp_w``."""
    if d.tdp_w is not None:
        return d.tdp_w
    return derived_tdp_w(d, k, chip_overhead, matrix_max)


# --- the chip -------------------------------------------------------------------------------------------------


def _figure(value, source: str, note: str | None = None, assumed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"value": None if value is None else float(value), "source": source}
    if note:
        out["note"] = note
    if assumed:
        out["assumed"] = True
    return out


def _unknown(note: str) -> dict[str, Any]:
    return {"value": None, "note": note}


def chip_data(d: Design, *, with_price: bool = True, with_tdp: bool = True) -> dict[str, Any]:
    """The ``Chip`` fields of a design, each figure sourced to the design and the formula that gives it."""
    c, k = d.compute, Knobs.of(d)
    src = f"design {d.design}"
    peaks = {}
    for fmt, n in macs(d, k).items():
        peaks[fmt] = _figure(peak_flops(d, k, fmt), f"{src}: {c.units} {c.unit_name}s x {c.matrix_cores_per_unit} "
                             f"matrix cores x {n:g} MAC/clock x 2 x {c.clock_hz / 1e9:g} GHz")
    vec = vector_flops(d, k)
    if vec is not None and "fp32" not in peaks:
        clock = c.vector_clock_hz or c.clock_hz
        peaks["fp32"] = _figure(vec, f"{src}: {c.units} {c.unit_name}s x {c.vector_flops_per_unit_per_clock:g} FP32 "
                                f"FLOP/clock (vector) x {clock / 1e9:g} GHz")
    last = d.sram[-1]
    sram_bw = None if last.bandwidth_bytes_per_s is None else _figure(last.bandwidth_bytes_per_s,
                                                                       f"{src}: sram {last.name}")
    m = d.dram
    link = None
    if d.links is not None:
        link = {"name": d.links.name,
                "bandwidth_bytes_per_s_per_direction": _figure(d.links.ports * d.links.bandwidth_bytes_per_s_per_port,
                                                               f"{src}: {d.links.ports} ports x "
                                                               f"{d.links.bandwidth_bytes_per_s_per_port / 1e9:g} GB/s"),
                "latency_s": (_figure(d.links.latency_s, src) if d.links.latency_s is not None
                              else _unknown("not given in the design"))}
    area = area_mm2(d)
    how = "given" if d.die_area_mm2 is not None else "estimated"
    data: dict[str, Any] = {
        "id": d.design, "name": d.name, "vendor": d.vendor, "family": d.family, "launch_year": d.launch_year,
        "process_nm": _figure(d.process_nm, src),
        "peak_flops": peaks,
        "memory": {"type": m.type,
                   "capacity_bytes": _figure(k.dram_capacity, f"{src}: {m.interfaces} x "
                                             f"{m.capacity_bytes_per_interface / 1e9:g} GB {m.type}"),
                   "bandwidth_bytes_per_s": _figure(k.dram_bw, f"{src}: {m.interfaces} x "
                                                    f"{m.bandwidth_per_interface / 1e9:g} GB/s {m.type}")},
        "on_chip_sram_bytes": _figure(k.sram_bytes, f"{src}: sram {last.name}"),
        "on_chip_sram_bandwidth_bytes_per_s": sram_bw,
        "num_compute_units": _figure(c.units, src),
        "interconnect": link,
        "host_link": {"name": d.host_link.name,
                      "bandwidth_bytes_per_s_per_direction": _figure(d.host_link.bandwidth_bytes_per_s, src),
                      "latency_s": _unknown("not given in the design")},
        "tdp_w": _figure(d.tdp_w, src) if d.tdp_w is not None else _unknown("derived later"),
        "idle_w": _unknown("a design states none: the energy model's share of TDP"),
        "price_usd": _figure(d.price_usd, src) if d.price_usd is not None else _unknown("derived later"),
        "sparsity": c.sparsity.model_dump() if c.sparsity is not None else None,
        "efficiency": d.efficiency,
        "notes": f"derived from design {d.design}; die area {area:.0f} mm^2 ({how})"
                 + (f". {d.notes}" if d.notes else ""),
    }
    if with_tdp and d.tdp_w is None:
        k_ref = reference_chip_overhead()
        data["tdp_w"] = _figure(derived_tdp_w(d), f"{src}: derived", "the power of its most demanding GEMM at the "
                                f"catalog's median chip overhead ({k_ref:.3g}), infercast.design.derived_tdp_w",
                                assumed=True)
        data["energy"] = {"chip_overhead": _figure(k_ref, f"{src}: the catalog's median chip overhead",
                                                   "infercast.design.reference_chip_overhead", assumed=True)}
    if with_price and d.price_usd is None:
        cost = cost_usd(d)
        data["price_usd"] = _figure(price_usd(d), f"{src}: cost model", (
            f"die USD {cost.die_usd:,.0f} ({cost.area_mm2:.0f} mm^2, yield {cost.yield_:.2f}, "
            f"{cost.dies_per_wafer:.0f} per wafer), {m.type} USD {cost.dram_usd:,.0f}, packaging USD "
            f"{cost.packaging_usd:,.0f}, board USD {cost.board_usd:,.0f}; margin {d.cost.gross_margin:g}; "
            f"infercast.design.cost_usd"), assumed=True)
    return data


def design_chip(d: Design) -> Chip:
    """The chip of a design without its derived TDP and price (what the efficiency lookup needs)."""
    return _chip(d, False)


@cache
def _chip(d: Design, full: bool) -> Chip:
    try:
        return Chip.model_validate(chip_data(d, with_price=full, with_tdp=full))
    except ValidationError as exc:  # a derived figure out of the chip's ranges: say which design
        raise InfercastError(f"design {d.design}: its chip is not valid ({pydantic_error_line(exc)})") from None


def derive_chip(d: Design) -> Chip:
    """The ``Chip`` a design describes, interchangeable with a catalog chip."""
    return _chip(d, True)


# --- loading ---------------------------------------------------------------------------------------------------

_DESIGNS = resources.files("infercast") / "catalog" / "designs"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def design_ids() -> list[str]:
    """The shipped designs' ids, sorted."""
    return sorted(e.name.removesuffix(".yaml") for e in _DESIGNS.iterdir() if e.name.endswith(".yaml"))


@cache
def load_design(name: str) -> Design:
    """A shipped design by id, or a design YAML by path."""
    if is_package_file(_DESIGNS, f"{name}.yaml"):
        return parse_spec((_DESIGNS / f"{name}.yaml").read_text(encoding="utf-8"), f"design {name}", Design)
    if name.endswith((".yaml", ".yml")) or exists(name):
        return parse_spec(read_text(name, "--hardware"), f"--hardware {name}", Design)
    raise UnknownName(f"unknown design '{name}'{did_you_mean(name, design_ids())}; shipped designs: "
                         f"{', '.join(design_ids())}")


def is_design(name: str) -> bool:
    """Whether ``name`` is a shipped design id or a YAML file whose top-level key ``design`` makes it one."""
    if is_catalog_id(name):
        return False
    if is_package_file(_DESIGNS, f"{name}.yaml"):
        return True
    if not (name.endswith((".yaml", ".yml")) or exists(name)) or catalog_id(name) is not None:
        return False
    try:
        data = yaml.load(read_text(name, "--hardware"), Loader=_Loader)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return False  # the chip reader reports it
    return isinstance(data, dict) and "design" in data


def load_hardware(hardware: str | Chip | Design, chip: Mapping[str, Any] | None = None) -> Chip:
    """A catalog chip, a chip YAML or a design (shipped id, YAML path or object), with ``chip``'s figures changed
    (``--chip KEY=VALUE``: ``modify``)."""
    if isinstance(hardware, Design):
        base: Chip | Design = hardware
    elif isinstance(hardware, Chip):
        base = hardware
    else:
        base = load_design(hardware) if is_design(hardware) else load_chip(hardware)
    if chip:
        base = modify(base, chip)
    return derive_chip(base) if isinstance(base, Design) else base


# --- knobs: --chip KEY=VALUE and what-if axes ---------------------------------------------------------------------

KNOBS = {
    "dram_bandwidth": "DRAM bandwidth, bytes/s (memory.bandwidth_bytes_per_s)",
    "dram_capacity": "DRAM capacity, bytes (memory.capacity_bytes)",
    "sram_bytes": "last-level SRAM, bytes (on_chip_sram_bytes): the tiling buffer",
    "sram_bandwidth": "last-level SRAM bandwidth, bytes/s",
    "clock": "matrix (and vector) clock: every peak scales; Hz on a design, a ratio (1.2x) on a catalog chip",
    "compute": "every peak FLOP/s (a ratio: more matrix cores per unit on a design)",
    "compute_units": "compute units: the peaks scale with them",
    "tdp": "TDP, W",
    "price": "chip price, USD",
    "process_nm": "process node, nm (energy per operation; on a design also area, cost and a derived TDP)",
    "fp4_units": "FP4 matrix units at this many times the FP8 MACs (2: Blackwell's); 0 removes them",
}
"""What ``--chip KEY=VALUE`` and ``whatif --vary`` change: a value is absolute (SI) or a ratio to the base ('2x')."""

_CHIP_PATHS = {"dram_bandwidth": "memory.bandwidth_bytes_per_s", "dram_capacity": "memory.capacity_bytes",
               "sram_bytes": "on_chip_sram_bytes", "sram_bandwidth": "on_chip_sram_bandwidth_bytes_per_s",
               "compute_units": "num_compute_units", "tdp": "tdp_w", "price": "price_usd", "process_nm": "process_nm"}


def parse_value(key: str, text: Any, base: float | None) -> float:
    """A knob's value: a number (SI) or a ratio to ``base`` ('2x'); one line naming the key if bad."""
    raw = str(text).strip()
    ratio = raw.lower().endswith("x")
    try:
        number = float(raw[:-1] if ratio else raw)
    except ValueError:
        raise InfercastError(f"--chip {key}={raw!r}: expected a number (SI units) or a ratio such as 2x") from None
    if ratio and base is None:
        raise InfercastError(f"--chip {key}={raw}: the chip's {key} is unknown, so a ratio has nothing to scale; "
                             f"give an absolute value")
    value = number * base if ratio else number
    if not math.isfinite(value) or value < 0 or (value == 0 and key != "fp4_units"):
        raise InfercastError(f"--chip {key}={raw}: must be a positive finite number")
    return value


def base_value(hw: Chip | Design, key: str) -> float | None:
    """The knob's value on the base hardware (None where unknown); clock and compute are 1 on a catalog chip."""
    if isinstance(hw, Design):
        k = Knobs.of(hw)
        return {"dram_bandwidth": k.dram_bw, "dram_capacity": k.dram_capacity, "sram_bytes": k.sram_bytes,
                "sram_bandwidth": k.sram_bw, "clock": k.clock_hz, "compute": 1.0, "compute_units": k.units,
                "tdp": tdp_w(hw), "price": price_usd(hw), "process_nm": k.process_nm,
                "fp4_units": _fp4_ratio(hw.compute.macs_per_core_per_clock)}.get(key)
    if key in ("clock", "compute"):
        return 1.0
    if key == "fp4_units":
        pf = hw.peak_flops
        fp8 = pf.fp8.value if pf.fp8 is not None else None
        fp4 = pf.fp4.value if pf.fp4 is not None else None
        return fp4 / fp8 if fp4 and fp8 else 0.0
    figure = hw._sourced(_CHIP_PATHS[key]) if key in _CHIP_PATHS else None
    return None if figure is None else figure.value


def _fp4_ratio(m: Mapping[str, float]) -> float:
    return m["fp4"] / m["fp8"] if "fp4" in m and "fp8" in m else 0.0


def modify(hw: Chip | Design, changes: Mapping[str, Any]) -> Chip | Design:
    """``hw`` with knobs (``KNOBS``) or, on a chip, any numeric figure by its dotted path (``peak_flops.fp8``)
    set; a design re-derives what follows (area, cost, TDP)."""
    for key, raw in changes.items():
        if key not in KNOBS and not (isinstance(hw, Chip) and _is_figure_path(hw, key)):
            known = list(KNOBS) + ([] if isinstance(hw, Design) else ["<figure path, e.g. peak_flops.fp8>"])
            raise InfercastError(f"--chip {key}: unknown key{did_you_mean(key, KNOBS)}; use one of {', '.join(known)}")
        base = base_value(hw, key) if key in KNOBS else hw._sourced(key).value
        value = parse_value(key, raw, base)
        hw = _set_design(hw, key, value) if isinstance(hw, Design) else _set_chip(hw, key, value, base)
    return hw


def _is_figure_path(chip: Chip, path: str) -> bool:
    try:
        figure = chip._sourced(path)
    except AttributeError:
        return False
    return figure is not None and hasattr(figure, "value") and not isinstance(figure, type)


def _set_chip(chip: Chip, key: str, value: float, base: float | None) -> Chip:
    data = chip.model_dump()
    note = f"--chip {key}={value:g}"
    if key in ("clock", "compute"):
        for fig in data["peak_flops"].values():
            if fig is not None and fig["value"] is not None:
                fig.update(value=fig["value"] * value, note=note)
    elif key == "fp4_units":
        fp8 = data["peak_flops"].get("fp8")
        if value > 0 and (fp8 is None or fp8["value"] is None):
            raise InfercastError(f"--chip fp4_units: hardware {chip.id} has no fp8 peak to size FP4 units by")
        data["peak_flops"]["fp4"] = ({"value": value * fp8["value"], "source": note} if value > 0 else None)
    else:
        path = _CHIP_PATHS.get(key, key)
        *parents, leaf = path.split(".")
        target = data
        for p in parents:
            target = target[p]
        if key == "compute_units" and base:
            for fig in data["peak_flops"].values():
                if fig is not None and fig["value"] is not None:
                    fig["value"] *= value / base
        target[leaf] = {"value": value, "source": note}
    data["name"] = f"{chip.name} ({note})"
    try:
        return Chip.model_validate(data)
    except ValidationError as exc:
        raise InfercastError(f"--chip {key}={value:g}: {pydantic_error_line(exc)}") from None


def _set_design(d: Design, key: str, value: float) -> Design:
    data = d.model_dump()
    c, m, last = data["compute"], data["dram"], data["sram"][-1]
    if key == "dram_bandwidth":
        m["bandwidth_bytes_per_s_per_interface"] = value / d.dram.interfaces
    elif key == "dram_capacity":
        m["capacity_bytes_per_interface"] = value / d.dram.interfaces
    elif key == "sram_bytes":
        if last["bytes"] is not None:
            last["bytes"] = value
        else:
            last["bytes_per_unit"] = value / d.compute.units
    elif key == "sram_bandwidth":
        last["bandwidth_bytes_per_s"] = value
    elif key == "clock":
        c["clock_hz"] = value
    elif key == "compute":
        c["macs_per_core_per_clock"] = {f: n * value for f, n in c["macs_per_core_per_clock"].items()}
    elif key == "compute_units":
        ratio = (d.compute.units_physical or d.compute.units) / d.compute.units  # spares in proportion, as on arrays
        c["units"] = round(value)
        c["units_physical"] = max(round(value * ratio), round(value))
    elif key == "tdp":
        data["tdp_w"] = value
    elif key == "price":
        data["price_usd"] = value
    elif key == "process_nm":
        data["process_nm"] = value
    elif key == "fp4_units":
        macs_ = c["macs_per_core_per_clock"]
        base = macs_.get("fp8", macs_.get("int8"))
        if value > 0 and base is None:
            raise InfercastError(f"--chip fp4_units: design {d.design} has no fp8 units to size FP4 units by")
        macs_.pop("fp4", None)
        if value > 0:
            macs_["fp4"] = value * base
    try:
        new = Design.model_validate(data)
    except ValidationError as exc:
        raise InfercastError(f"--chip {key}={value:g}: {pydantic_error_line(exc)}") from None
    # a given area or price moves with the estimate's change, as ``area_mm2`` and ``price_usd`` move them on arrays
    update: dict[str, Any] = {}
    if d.die_area_mm2 is not None:
        update["die_area_mm2"] = (d.die_area_mm2 + estimated_area(new, Knobs.of(new)).total_mm2
                                  - estimated_area(d, Knobs.of(d)).total_mm2)
    if d.price_usd is not None and key != "price":
        update["price_usd"] = d.price_usd * cost_usd(new.model_copy(update=update)).total_usd / cost_usd(d).total_usd
    return new.model_copy(update=update) if update else new


# --- the microarchitecture check ----------------------------------------------------------------------------------

MICROARCH_DESIGNS = {"h100-sxm": "h100-sxm-design", "h200-sxm": "h200-sxm-design", "b200": "b200-design",
                     "b300": "b300-design", "gb300": "gb300-design", "mi300x": "mi300x-design",
                     "mi325x": "mi325x-design", "mi350x": "mi350x-design", "mi355x": "mi355x-design",
                     "rtx-5090": "rtx-5090-design"}
"""The shipped design of every chip of ``catalog/designs/microarch.csv`` (a copy of ../shared/data/microarch.csv)."""


def microarch_table() -> list[dict[str, Any]]:
    """Per row of microarch.csv: the design's dense 16-bit peak against the CSV's check figure and the catalog's."""
    import csv
    import io

    text = (_DESIGNS / "microarch.csv").read_text(encoding="utf-8")
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        d = load_design(MICROARCH_DESIGNS[r["chip"]])
        k = Knobs.of(d)
        fmt = "bf16" if "bf16" in d.compute.macs_per_core_per_clock else "fp16"
        derived = peak_flops(d, k, fmt)
        catalog = load_chip(r["chip"]).peak(fmt)
        check = float(r["dense_fp16_tflops_check"]) * 1e12
        csv_clock = float(r["boost_clock_ghz"]) * 1e9 if r["boost_clock_ghz"] else None
        rows.append({
            "chip": r["chip"], "design": d.design, "units": d.compute.units,
            "matrix_cores_per_unit": d.compute.matrix_cores_per_unit,
            "macs_per_core_per_clock": d.compute.macs_per_core_per_clock[fmt], "clock_ghz": d.compute.clock_hz / 1e9,
            "csv_clock_ghz": None if csv_clock is None else csv_clock / 1e9,
            "clock_from_csv": csv_clock is not None and math.isclose(csv_clock, d.compute.clock_hz, rel_tol=1e-6),
            "design_tflops": derived / 1e12, "csv_check_tflops": check / 1e12, "catalog_tflops": catalog / 1e12,
            "error_vs_catalog": derived / catalog - 1, "error_vs_csv_check": derived / check - 1,
            "at_csv_clock_tflops": None if csv_clock is None else derived * csv_clock / d.compute.clock_hz / 1e12,
        })
    return rows
