"""Calibration profiles: the efficiency parameters per chip family, where they come from, and how
they are applied.

A profile is a YAML file (``infercast calibrate --fit`` writes one; the package ships
``catalog/calibration/default.yaml``, fitted to the public measurements)::

    infercast_calibration: 1
    description: what it was fitted to
    generic: {gemm_max: 0.78, ...}          # every Efficiency field: families without their own
    vendors: {amd: {...}, ...}              # per chip vendor (the family's prefix: nvidia, amd, intel...)
    families: {nvidia-hopper: {...}, ...}   # fitted per chip family
    frameworks: {sglang: {...}, ...}        # per framework (infercast.framework), on any chip
    cells: {nvidia-hopper/sglang: {...}}    # per chip family x framework
    chips: {h100-sxm: {...}}                # optional per-chip overrides
    comm: {bandwidth: 0.77, launch_s: 6.6e-6}
    fit: {...}                              # how it was fitted, and its errors

The efficiency of a chip under a framework is, field by field, the last of: the profile's
``generic``, its ``vendors`` entry for the chip's vendor, its ``families`` entry for the chip's
family, its ``frameworks`` entry for the framework, its ``cells`` entry for the pair, the chip
YAML's own ``efficiency:`` block (what ``calibrate --local`` measured), the profile's ``chips``
entry. A user's profile replaces the shipped one as a whole (a fit carries the values it did not
fit over from its starting profile).
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Any, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infercast.errors import InfercastError, did_you_mean, pydantic_error_line, shown
from infercast.files import is_package_file, read_text
from infercast.framework import GENERIC, framework_names
from infercast.hardware import Chip, Family, catalog_id, chip_ids, parse_spec
from infercast.keep import keep
from infercast.parallel import CommOptions
from infercast.roofline import NARROW_MATH, ChipRates, Efficiency

DEFAULT_PROFILE = "default"


class Calibration(BaseModel):
    """A calibration profile: efficiency parameters per family and chip, and collective parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    infercast_calibration: int = Field(default=1, ge=1, le=1)
    """Format version of the profile."""
    description: str = ""
    """What the profile was fitted to, and how."""
    generic: dict[str, Any]
    """Every efficiency field, for chip families the profile has no entry for."""
    vendors: dict[str, dict[str, Any]] = {}
    """Efficiency fields per chip vendor (the prefix of a hardware.Family: nvidia, amd, intel, google...)."""
    families: dict[str, dict[str, Any]] = {}
    """Efficiency fields per chip family (a hardware.Family), over ``generic`` and the vendor's."""
    frameworks: dict[str, dict[str, Any]] = {}
    """Efficiency fields per framework (infercast.framework), over the chip family's."""
    cells: dict[str, dict[str, Any]] = {}
    """Efficiency fields per 'family/framework' pair, over the framework's."""
    chips: dict[str, dict[str, Any]] = {}
    """Efficiency fields per chip id of the catalog (not an alias, not a path), over everything else."""
    comm: dict[str, float]
    """Collective parameters (parallel.CommOptions fields): bandwidth and launch_s at least."""
    fit: dict[str, Any] | None = None
    """The fit's record: data, rows, loss, in-sample and leave-one-source-out errors."""

    @model_validator(mode="after")
    def _fields_exist(self) -> Calibration:
        """Every table names a real family or chip, and gives known, finite fields in range.

        An entry no chip can match (a misspelt family, an alias, a chip outside the catalog) would be
        ignored without a word, so it is an error; a chip of one's own carries its efficiency in its
        YAML's ``efficiency:`` block instead."""
        families = get_args(Family)
        for family in self.families:
            if family not in families:
                raise ValueError(f"families.{family}: not a chip family{did_you_mean(family, families)}; "
                                 f"use one of {', '.join(families)}")
        vendors = sorted({vendor_of(f) for f in families})
        for vendor in self.vendors:
            if vendor not in vendors:
                raise ValueError(f"vendors.{vendor}: not a chip vendor{did_you_mean(vendor, vendors)}; use one of "
                                 f"{', '.join(vendors)}")
        names = framework_names()
        for fw in self.frameworks:
            if fw not in names:
                raise ValueError(f"frameworks.{fw}: not a framework{did_you_mean(fw, names)}; use one of "
                                 f"{', '.join(names)}")
        for cell in self.cells:
            family, _, fw = cell.partition("/")
            if family not in families or fw not in names:
                raise ValueError(f"cells.{cell}: name a chip family and a framework, e.g. nvidia-hopper/sglang")
        ids = chip_ids()
        for chip in self.chips:
            if chip not in ids:
                real = catalog_id(chip)
                hint = (f"an alias of {real}; key the entry by the id {real}" if real else
                        f"not a chip id of the catalog{did_you_mean(chip, ids)}; a chip of your own carries its "
                        f"efficiency in its YAML's efficiency: block")
                raise ValueError(f"chips.{chip}: {hint}")
        tables = {"generic": self.generic, **{f"{name}.{k}": v for name in ("vendors", "families", "frameworks",
                                                                           "cells", "chips")
                                             for k, v in getattr(self, name).items()}}
        for where, table in tables.items():
            _finite(where, table)
            unknown = set(table) - set(Efficiency.model_fields)
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
            _valid(Efficiency, where, {**self.generic, **table})
        _finite("comm", self.comm)
        unknown = set(self.comm) - set(CommOptions.model_fields)
        if unknown:
            raise ValueError(f"comm: unknown field(s) {', '.join(sorted(unknown))}")
        _valid(CommOptions, "comm", self.comm)
        return self

    def efficiency_fields(self, chip: Chip, framework: str = GENERIC) -> dict[str, Any]:
        """The fields for ``chip`` under ``framework``, before the chip's own YAML overrides and the profile's
        chip entry."""
        return {**self.generic, **self.vendors.get(vendor_of(chip.family), {}), **self.families.get(chip.family, {}),
                **self.frameworks.get(framework, {}), **self.cells.get(f"{chip.family}/{framework}", {})}

    def to_yaml(self) -> str:
        data = self.model_dump(exclude_none=True)
        record = fit_record(self)
        if record is not None:
            data["fit"] = record
        return yaml.safe_dump(data, sort_keys=False, width=110)


def vendor_of(family: str) -> str:
    """The vendor of a chip family: its prefix (nvidia-hopper -> nvidia)."""
    return family.split("-", 1)[0]


def _finite(where: str, table: dict[str, Any]) -> None:
    for key, value in table.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}.{key}: must be a finite number, got {value}")
        if isinstance(value, (dict, list)):
            raise ValueError(f"{where}.{key}: must be a number, got {shown(value)}")


def _valid(spec, where: str, fields: dict[str, Any]) -> None:
    try:
        spec(**fields)
    except ValidationError as exc:
        raise ValueError(f"{where}.{pydantic_error_line(exc)}") from None
    except TypeError as exc:  # a key that is not a string (a YAML number or null as a key)
        raise ValueError(f"{where}: {exc}") from None


_PROFILES = resources.files("infercast") / "catalog" / "calibration"


def _parse(text: str, origin: str) -> Calibration:
    """The profile; a ``fit`` record that is the file's last top-level key (as ``to_yaml`` writes it: nine tenths
    of the shipped profile's text) is parsed only when asked for (``fit_record``), not by every estimate."""
    where = f"--calibration {origin}"
    head, sep, tail = text.partition("\nfit:")
    if not sep or any(line[:1] not in ("", " ", "#", "-") for line in tail.splitlines()[1:]):
        return parse_spec(text, where, Calibration)
    profile = parse_spec(head, where, Calibration)
    if len(_LAZY_FIT) > 64:
        _LAZY_FIT.clear()
    _LAZY_FIT[id(profile)] = (profile, "fit:" + tail, where)
    return profile


_LAZY_FIT: dict[int, tuple[Calibration, str, str]] = {}
"""Profiles whose ``fit`` record is still text: (the profile, the text, where it came from), by id."""


def fit_record(profile: Calibration) -> dict[str, Any] | None:
    """The profile's fit record (how it was fitted, its errors), parsed from its file on the first request."""
    if profile.fit is not None:
        return profile.fit
    hit = _LAZY_FIT.get(id(profile))
    if hit is None or hit[0] is not profile:
        return None
    _, text, where = hit
    try:
        record = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["fit"]
    except yaml.YAMLError as exc:
        raise InfercastError(f"{where}: the fit record is not valid YAML ({exc.__class__.__name__})") from None
    if record is not None and not isinstance(record, dict):
        raise InfercastError(f"{where}: fit must be a mapping (the fit's record), got {shown(record)}")
    object.__setattr__(profile, "fit", record)  # the record, kept: the profile is frozen to its callers
    del _LAZY_FIT[id(profile)]
    return record


@cache
def load_calibration(name: str = DEFAULT_PROFILE) -> Calibration:
    """A shipped profile by name ('default') or a profile YAML path."""
    if is_package_file(_PROFILES, f"{name}.yaml"):
        return _parse((_PROFILES / f"{name}.yaml").read_text(encoding="utf-8"), name)
    return _parse(read_text(name, "--calibration"), name)


def resolve(calibration: Calibration | str | None) -> Calibration:
    """The profile in force: ``calibration`` (object or path), else the shipped default."""
    if calibration is None:
        return load_calibration()
    return calibration if isinstance(calibration, Calibration) else load_calibration(str(calibration))


def efficiency_for(chip: Chip, calibration: Calibration | str | None = None, framework: str = GENERIC) -> Efficiency:
    """The ``Efficiency`` of ``chip`` running ``framework`` under ``calibration`` (the shipped profile by
    default): the profile's ``generic`` values, its entries for the chip's vendor and family, for the
    framework and for the pair, the chip YAML's own ``efficiency:`` block (what ``calibrate --local``
    measured), then the profile's entry for the chip."""
    profile = resolve(calibration)
    own = tuple(sorted((chip.efficiency or {}).items()))

    def make() -> Efficiency:
        fields = {**profile.efficiency_fields(chip, framework), **dict(own), **profile.chips.get(chip.id, {})}
        try:
            return Efficiency(**fields)
        except ValidationError as exc:
            raise InfercastError(f"hardware {chip.id}: efficiency.{pydantic_error_line(exc)}") from None

    return keep(_EFFICIENCY, (profile,), make, (chip.id, chip.family, own, framework))


_EFFICIENCY: dict[tuple, tuple] = {}
"""Resolved efficiencies by (profile, chip, framework)."""
_COMM: dict[tuple, tuple] = {}


def comm_for(calibration: Calibration | str | None = None) -> CommOptions:
    """The ``CommOptions`` under ``calibration`` (the shipped profile by default)."""
    profile = resolve(calibration)
    return keep(_COMM, (profile,), lambda: CommOptions(**profile.comm))


default_efficiency = efficiency_for
"""The efficiency of a chip under the shipped profile (or a given one)."""


class NetworkProfile(BaseModel):
    """What networks (encoders, CNNs, diffusion pipelines) run at beside a decoder's fit
    (``catalog/calibration/networks.yaml``, written by ``scripts/vision_report.py`` from
    ``infercast.calibrate_vision``): convolutions as implicit GEMMs, INT8 TensorRT engines and diffusers' eager
    PyTorch are not what the LLM serving data measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    infercast_network_calibration: int = Field(default=1, ge=1, le=1)
    description: str = ""
    scales: dict[str, dict[str, float]] = {}
    """Per chip family (and ``generic`` for the rest), keyed ``KIND.WIDTH``: the factor on the decoder profile's
    tensor-core ceilings for a network kind (cnn, encoder, diffusion) and math width (``wide``: gemm_max and
    attention_max for 16-bit and TF32 math; ``narrow``: gemm_max_narrow for 8-bit). The kinds' kernels differ:
    TensorRT's implicit-GEMM convolutions, its fused BERT attention, diffusers' PyTorch modules."""
    eager_launch_s: float = Field(default=2e-5, gt=0, le=1e-3)
    """Host time to dispatch one kernel from PyTorch eager (Python, the dispatcher, the launch)."""
    mlperf_bert_tokens: float = Field(default=384.0, gt=0, le=512)
    """Mean tokens of an MLPerf BERT sample, as the harness packs them (validate_vision)."""
    fit: dict[str, Any] | None = None
    """How it was fitted, and its in-sample, leave-one-source-out and leave-one-chip-out errors."""

    @model_validator(mode="after")
    def _known(self) -> NetworkProfile:
        families = get_args(Family)
        for family, table in self.scales.items():
            if family != "generic" and family not in families:
                raise ValueError(f"scales.{family}: not a chip family{did_you_mean(family, families)}")
            for key, value in table.items():
                kind, _, width = str(key).partition(".")
                if kind not in NETWORK_KINDS or width not in ("narrow", "wide") or not (
                        isinstance(value, (int, float)) and 0.1 <= value <= 10):
                    raise ValueError(f"scales.{family}.{key}: give KIND.WIDTH ({', '.join(NETWORK_KINDS)}; narrow or "
                                     f"wide) and a factor from 0.1 to 10")
        return self


@cache
def network_profile() -> NetworkProfile:
    """The shipped network profile (defaults where none is shipped)."""
    if not is_package_file(_PROFILES, "networks.yaml"):
        return NetworkProfile()
    return parse_spec((_PROFILES / "networks.yaml").read_text(encoding="utf-8"), "networks.yaml", NetworkProfile)


NETWORK_KINDS = ("cnn", "encoder", "diffusion")


def network_scale(profile: NetworkProfile, family: str, kind: str, narrow: bool) -> float:
    """The profile's factor for a chip family, network kind and math width (the generic one where the family has
    none; 1 where neither has)."""
    key = f"{kind}.{'narrow' if narrow else 'wide'}"
    return profile.scales.get(family, {}).get(key, profile.scales.get("generic", {}).get(key, 1.0))


def scaled_efficiency(eff: Efficiency, scale, narrow: bool) -> Efficiency:
    """``eff`` with its tensor-core ceilings times ``scale`` (at most 1): gemm_max_narrow for 8-bit math, gemm_max
    and attention_max for wider. ``scale`` may be an array (a fit's grid): the fields are then not validated."""
    cap = (lambda v: min(1.0, v)) if isinstance(scale, (int, float)) else (lambda v: np.minimum(1.0, v))
    if narrow:
        update = {"gemm_max_narrow": cap((eff.gemm_max_narrow or eff.gemm_max) * scale)}
    else:
        update = {"gemm_max": cap(eff.gemm_max * scale), "attention_max": cap(eff.attention_max * scale)}
    return eff.model_copy(update=update)


def narrow_math(chip: Chip, math: str) -> bool:
    """Whether ``math`` runs on the chip's 8-bit (or narrower) units (not on wider ones it falls back to)."""
    return math in NARROW_MATH and ChipRates.of(chip).native.get(math, math) in NARROW_MATH


def network_efficiency(eff: Efficiency, chip: Chip, kind: str, math: str) -> Efficiency:
    """A chip's efficiency for a network of ``kind`` whose GEMMs run in ``math``: its decoder fit, scaled by the
    network profile."""
    narrow = narrow_math(chip, math)
    return scaled_efficiency(eff, network_scale(network_profile(), chip.family, kind, narrow), narrow)
