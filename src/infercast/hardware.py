"""Chips: the catalog schema, the loader and the derived rates the roofline uses.

One YAML file per chip lives in ``infercast/catalog/hardware/``. Every number is a
``Sourced`` value: the figure in SI units plus where it comes from. A figure nobody has
published is ``value: null`` with a ``note`` saying so; it is never invented.

Peak FLOPS are dense. Datasheets that quote "with sparsity" figures are halved in the
catalog (DESIGN.md); sparsity is a separate feature.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infercast.errors import InfercastError, UnknownName, did_you_mean, pydantic_error_line
from infercast.files import exists, is_package_file, read_text
from infercast.keep import keep

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp6", "fp4")

Family = Literal[
    "nvidia-volta",
    "nvidia-turing",
    "nvidia-ampere",
    "nvidia-ampere-consumer",
    "nvidia-ada",
    "nvidia-hopper",
    "nvidia-blackwell",
    "nvidia-blackwell-ultra",
    "nvidia-orin",
    "amd-cdna2",
    "amd-cdna3",
    "amd-cdna4",
    "intel-gaudi",
    "intel-xe2",
    "google-tpu",
    "aws-neuron",
    "moffett-antoum",
    "apple-m",
    "cpu",
]


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# No figure of a chip or a system comes near it (a yottabyte, a yotta-FLOP/s): a larger one is a typo,
# and would overflow the integer conversions downstream (capacities to token counts).
LARGEST_FIGURE = 1e24


class Sourced(Spec):
    """A catalog figure in SI units and where it comes from."""

    value: float | None = Field(ge=0, allow_inf_nan=False)
    """The figure in SI units (FLOP/s, bytes, bytes/s, s, W, USD); null when unknown. Finite, never NaN."""
    source: str | None = None
    """Document the figure comes from (datasheet, whitepaper, measured reference)."""
    note: str | None = None
    """Caveats, or for a null value, why it is unknown."""
    assumed: bool = False
    """True where no document states the figure and it is an assumption; ``note`` gives the basis."""

    @field_validator("value", mode="before")
    @classmethod
    def _number(cls, value):
        if isinstance(value, bool):  # YAML's yes/no/true/false would otherwise read as 1 and 0
            raise ValueError(f"must be a number, got {value}")
        if isinstance(value, (int, float)) and math.isfinite(value) and value > LARGEST_FIGURE:
            raise ValueError(f"{value:g} is above {LARGEST_FIGURE:g}, more than any chip or system has; "
                             f"check the units (SI: bytes, bytes/s, FLOP/s, W, s, USD)")
        return value

    @model_validator(mode="after")
    def _explained(self) -> Sourced:
        if self.value is None and not self.note:
            raise ValueError("a null value needs a 'note' saying why the figure is unknown")
        if self.value is not None and not self.source:
            raise ValueError("a figure needs a 'source'")
        if self.assumed and not self.note:
            raise ValueError("an assumed figure needs a 'note' giving its basis")
        return self


class PeakFlops(Spec):
    """Dense peak FLOP/s (or OP/s for integers) per natively supported format.

    A format the chip has no units for is left out; the roofline then runs it at the
    rate of the nearest wider format the chip does have (fp8 on an A100 runs at fp16).
    """

    fp32: Sourced | None = None
    tf32: Sourced | None = None
    bf16: Sourced | None = None
    fp16: Sourced | None = None
    fp8: Sourced | None = None
    int8: Sourced | None = None
    int4: Sourced | None = None
    fp6: Sourced | None = None
    fp4: Sourced | None = None


class Memory(Spec):
    type: str
    """Memory technology, e.g. HBM3, GDDR6X, LPDDR5."""
    capacity_bytes: Sourced
    """Device memory capacity, decimal bytes as datasheets state it."""
    bandwidth_bytes_per_s: Sourced
    """Peak device memory bandwidth."""


class Interconnect(Spec):
    name: str
    """Chip-to-chip link, e.g. 'NVLink 4 (18 links)', 'PCIe Gen4 x16'."""
    bandwidth_bytes_per_s_per_direction: Sourced
    """Bandwidth one chip can send (and, at the same time, receive)."""
    latency_s: Sourced
    """Per-hop latency of a small message."""


class SparsitySupport(Spec):
    """What sparsity a chip's matrix units accelerate, as its vendor states it.

    Sparsity the units do not accelerate runs as dense math on dense weights: no speed-up.
    """

    structured: tuple[str, ...] = ()
    """N:M weight patterns the units skip zeros of, e.g. ('2:4',): N non-zeros in every M weights."""
    unstructured: bool = False
    """Weight sparsity at any ratio and placement is accelerated."""
    activation: bool = False
    """Zero activations (after ReLU, or unrouted tokens) are skipped as well."""
    max_speedup: float = Field(ge=1, allow_inf_nan=False)
    """Largest speed-up of the matrix math that sparsity can give (2 for NVIDIA's 2:4)."""
    compressed_weights: bool = False
    """Unstructured-sparse weights are held compressed (non-zeros plus an index), saving bytes."""
    source: str
    note: str | None = None

    @model_validator(mode="after")
    def _patterns(self) -> SparsitySupport:
        for pattern in self.structured:
            parse_pattern(pattern)
        return self


class PowerBasis(Spec):
    """The chip a power-capped part takes its energy per operation from, and why."""

    chip: str
    """Catalog id of the chip (its TDP is what its best sustained matrix work is built for)."""
    source: str
    """The documents that give both chips' die or architecture and process node."""
    note: str | None = None


class EnergySpec(Spec):
    """A chip's own energy figures; each replaces the default ``infercast.energy`` would use."""

    dram_j_per_bit: Sourced | None = None
    """Energy to move one bit between device memory and the chip (array, I/O and PHY)."""
    link_j_per_bit: Sourced | None = None
    """Energy to send one bit over the chip's scale-up link (NVLink, Infinity Fabric, ICI)."""
    node_energy_scale: Sourced | None = None
    """Energy of the chip's logic and SRAM relative to Horowitz's 45 nm figures, replacing the
    process-node scaling rule."""
    chip_overhead: Sourced | None = None
    """The chip's energy beyond its bare datapath (``EnergyOptions.chip_overhead``), replacing the one its TDP
    implies: a design whose TDP was derived from an overhead states it."""
    power_basis: PowerBasis | None = None
    """A catalog chip whose energy per operation this one shares (the same die, or the same architecture on the
    same node, sold at a higher TDP): its overhead is that chip's, so its own lower TDP binds (a power-capped part
    clocks down under matrix work) instead of being assumed to fit its best GEMM."""


def parse_pattern(pattern: str) -> tuple[int, int]:
    """'2:4' -> (2, 4): N non-zeros kept in every group of M weights."""
    n, sep, m = pattern.partition(":")
    if not (sep and n.isdecimal() and m.isdecimal() and 0 < int(n) < int(m)):
        raise InfercastError(f"sparsity pattern {pattern!r}: expected N:M with 0 < N < M, e.g. 2:4")
    return int(n), int(m)


class Chip(Spec):
    id: str
    """Catalog id, e.g. 'h100-sxm'."""
    aliases: tuple[str, ...] = ()
    """Other names that look this chip up."""
    name: str
    """Full product name."""
    vendor: str
    family: Family
    """Architecture family; selects the default efficiency parameters."""
    launch_year: int
    process_nm: Sourced
    """Process node in nanometres (value in nm, not metres: the one non-SI figure)."""
    peak_flops: PeakFlops
    memory: Memory
    on_chip_sram_bytes: Sourced
    """Last-level on-chip SRAM (L2 / Infinity Cache / scratchpad)."""
    on_chip_sram_bandwidth_bytes_per_s: Sourced | None = None
    """Bandwidth of that SRAM; None: unknown (a chip then never holds its weights resident in it)."""
    num_compute_units: Sourced
    """SMs / CUs / cores that GEMM tiles are spread over (wave quantisation)."""
    interconnect: Interconnect | None
    """Scale-up link to peer chips; null for a card with none (PCIe only)."""
    host_link: Interconnect
    """Link to the host CPU (PCIe or C2C)."""
    tdp_w: Sourced
    idle_w: Sourced
    price_usd: Sourced
    """Launch or list price of one chip."""
    sparsity: SparsitySupport | None = None
    """What sparsity the chip's units accelerate; None: none (sparse work runs dense)."""
    efficiency: dict[str, float | bool] | None = None
    """Overrides of the family's efficiency parameters (``infercast.roofline.Efficiency`` fields) for
    this chip, e.g. written by ``infercast calibrate --local`` from its own measurements."""
    energy: EnergySpec | None = None
    """Per-chip energy figures (memory and link J/bit, node scale); None: the defaults for its technology."""
    notes: str | None = None

    @model_validator(mode="after")
    def _physical(self) -> Chip:
        """Figures a chip cannot have: one place, so every reader of a chip YAML gets the same check."""
        for path in _POSITIVE:
            figure = self._sourced(path)
            if figure is not None and figure.value is not None and figure.value <= 0:
                raise ValueError(f"{path}.value: must be above zero, got {figure.value:g}; "
                                 f"write value: null with a note where the figure is unknown")
        link = self.interconnect
        if link is not None and link.bandwidth_bytes_per_s_per_direction.value == 0:
            # explicit rather than a quiet fall-back to the host link: a card with no chip-to-chip
            # link says so with interconnect: null (default_system then stages through host memory)
            raise ValueError("interconnect.bandwidth_bytes_per_s_per_direction.value: 0; for a chip with no "
                             "chip-to-chip link write interconnect: null (peers then talk through the host)")
        units = self.num_compute_units.value
        if units is not None and units != int(units):
            raise ValueError(f"num_compute_units.value: must be a whole number of units, got {units:g}")
        tdp, idle = self.tdp_w.value, self.idle_w.value
        if tdp is not None and idle is not None and idle > tdp:
            raise ValueError(f"idle_w.value: {idle:g} W is above tdp_w {tdp:g} W; idle power is at most the TDP")
        for key, value in (self.efficiency or {}).items():
            if not isinstance(value, bool) and not math.isfinite(value):
                raise ValueError(f"efficiency.{key}: must be a finite number, got {value}")
        return self

    def _sourced(self, path: str) -> Sourced | None:
        obj = self
        for part in path.split("."):
            obj = getattr(obj, part, None)
        return obj

    def __hash__(self) -> int:
        # the efficiency dict is unhashable, and cached helpers (system.default_system) key on the chip; a chip
        # is frozen, so its hash is kept (by object: the chip is held so that its id stays its own)
        return keep(_HASHES, (self,), lambda: hash(self.model_dump_json()))

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for math in ``dtype``, falling back to a wider native format."""
        return getattr(self.peak_flops, self.native_format(dtype)).value

    def native_format(self, dtype: str) -> str:
        """The format whose units run math in ``dtype``: itself, or the nearest wider one the chip has."""
        for fmt in _RATE_FALLBACK[dtype]:
            figure = getattr(self.peak_flops, fmt)
            if figure is not None and figure.value is not None:
                return fmt
        # name every key tried: a caller may ask for a wider format than the user's (the vector
        # rate falls back to bf16 when fp32 is unknown), so the user's own format must be visible
        tried = ", ".join(f"peak_flops.{fmt}" for fmt in _RATE_FALLBACK[dtype])
        raise InfercastError(
            f"hardware {self.id}: no peak FLOPS known for {dtype} math ({tried} all unknown); "
            f"add peak_flops.{dtype} to the chip YAML"
        )

    def figure(self, path: str) -> float:
        """The value at a dotted path ('memory.bandwidth_bytes_per_s'), or a clear error."""
        obj = self
        for part in path.split("."):
            obj = getattr(obj, part)
        if obj is None or obj.value is None:
            raise InfercastError(f"hardware {self.id}: {path} is unknown in the catalog; set it in the chip YAML")
        return obj.value


# Figures that are rates, capacities or sizes: zero is a typo (or an unknown written as 0), never a chip.
_POSITIVE = (
    "process_nm", "memory.capacity_bytes", "memory.bandwidth_bytes_per_s", "on_chip_sram_bytes",
    "on_chip_sram_bandwidth_bytes_per_s",
    "num_compute_units", "tdp_w", "price_usd", "host_link.bandwidth_bytes_per_s_per_direction",
    *(f"peak_flops.{fmt}" for fmt in DTYPES),
    "energy.dram_j_per_bit", "energy.link_j_per_bit", "energy.node_energy_scale", "energy.chip_overhead",
)

# Where a chip lacks units for a format, the math runs on the next wider units it has
# (DESIGN.md: "a chip without FP8 units computes FP8 at its FP16 rate").
_RATE_FALLBACK = {
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

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where present: ~10x faster
SpecT = TypeVar("SpecT", bound=BaseModel)
_CATALOG = resources.files("infercast") / "catalog" / "hardware"
_HASHES: dict[int, tuple[Chip, int]] = {}


@cache
def _catalog_files() -> dict[str, str]:
    """Map every id and alias to its YAML file name."""
    names: dict[str, str] = {}
    for entry in _CATALOG.iterdir():
        if entry.name.endswith(".yaml"):
            chip = _parse(entry.read_text(encoding="utf-8"), entry.name)
            for key in (chip.id, *chip.aliases):
                names[key] = entry.name
    return names


@cache
def is_catalog_id(name: str) -> bool:
    """Whether ``name`` is a catalog id (its file exists; an alias is not one), without reading the catalog."""
    return is_package_file(_CATALOG, f"{name}.yaml")


def catalog_id(name: str) -> str | None:
    """The catalog id ``name`` stands for (itself, or the id it is an alias of); None if neither."""
    file_name = _catalog_files().get(name)
    return file_name.removesuffix(".yaml") if file_name else None


def chip_ids() -> list[str]:
    """The catalog ids (aliases left out), sorted: the file names, as a catalog test holds each id to its file's."""
    return sorted(entry.name.removesuffix(".yaml") for entry in _CATALOG.iterdir() if entry.name.endswith(".yaml"))


def parse_spec(text: str, where: str, cls: type[SpecT]) -> SpecT:
    """A YAML document validated as ``cls``; every failure one line starting with ``where``."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise InfercastError(f"{where}: not valid YAML{at} ({exc.__class__.__name__})") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors raise these for a well-formed but impossible scalar: a date such as
        # 2024-13-45, an integer of more than 4300 digits
        raise InfercastError(f"{where}: not valid YAML ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise InfercastError(f"{where}: expected a mapping of {', '.join(list(cls.model_fields)[:4])}, ...")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise InfercastError(f"{where}: {pydantic_error_line(exc)}") from None


def _parse(text: str, origin: str) -> Chip:
    return parse_spec(text, f"hardware file {origin}", Chip)


def _catalog_text(file_name: str) -> str:
    return (_CATALOG / file_name).read_text(encoding="utf-8")


@cache
def load_chip(name: str) -> Chip:
    """A chip by catalog id or alias, or from a path to a chip YAML file."""
    if name.endswith((".yaml", ".yml")) or exists(name):
        return parse_spec(read_text(name, "--hardware"), f"--hardware {name}", Chip)
    if is_catalog_id(name):  # an id: skip reading the catalog for aliases
        return _parse(_catalog_text(f"{name}.yaml"), f"{name}.yaml")
    files = _catalog_files()
    if name not in files:
        raise UnknownName(f"unknown hardware '{name}'{did_you_mean(name, files)}; see 'infercast hardware list'")
    return _parse(_catalog_text(files[name]), files[name])
