"""Memory tiers beyond a chip's own memory, and where a deployment places its tensors on them.

A chip reaches three kinds of tier, each a capacity and the bandwidth at which the chip can pull from it:

* ``cpu``: host DRAM, over the chip's host link (``Chip.host_link``: PCIe, or NVLink-C2C on GH200 and
  GB200, whose Grace CPU holds LPDDR5X);
* ``cxl``: CXL-attached memory expanders behind the host, reached over the host link too, so the slower
  of the two;
* ``nvme``: SSDs, read through a host bounce buffer (or GPUDirect Storage), the slower of the drives'
  read bandwidth and the host link.

Capacities and drive bandwidths are the catalog's (``catalog/tiers.yaml``, every figure sourced); a
placement ``--offload weights=cpu:0.5,kv=cpu`` puts a fraction of the weights, the KV cache or the
activations on a tier (``Offload``). What placement costs in time is ``infercast.offload``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from infercast.errors import InfercastError
from infercast.hardware import Chip, Sourced, Spec

TIER_NAMES = ("cpu", "cxl", "nvme")
PCIE_COPY_EFFICIENCY = 12.89 / 15.75
"""Share of a PCIe link's per-direction line rate that a host-to-GPU copy reaches: 12.89 GB/s of PCIe 3.0 x16's
15.75 on the FlexGen paper's T4 machine (flexgen 0.1.8 ``experimental/cost_model.py``, ``ctog_bdw``, fitted to
real runs), 0.82; carried to every PCIe generation (the same 128b/130b encoding and packet framing). An
NVLink-C2C host link keeps its line rate (no measurement here)."""
PAGEABLE_COPY_SHARE = 0.56
"""Share of the pinned rate (``PCIE_COPY_EFFICIENCY`` of the line rate) that a host-to-GPU copy from pageable,
not page-locked, memory reaches. The GPU's DMA engine cannot read pageable memory: the CUDA driver first copies
the data on the CPU into a page-locked staging buffer and DMAs it from there, and the call returns only once
the staging copy is done (CUDA C++ Best Practices Guide, "Pinned Memory"; CUDA Runtime API, "API synchronization
behavior": "for transfers from pageable host memory to device memory, a stream sync is performed before the
copy is initiated"). How much slower depends on the host's memcpy rate, which no datasheet gives; 0.56 is fitted
(``python scripts/offload_fit.py``) to the 31 rows of measured-offload.csv whose copies are pageable (Accelerate,
diffusers' sequential offload, DeepSpeed ZeRO-Inference with weights in DRAM): 0.54 to 0.60 with any one source
left out (T4 PCIe 3.0 and RTX A6000 / A100 PCIe 4.0 hosts), median |error| of the 74 rows 16.3% in sample,
17.0% leaving each source out; 27.3% leaving each system out (``--by system``: Accelerate's and diffusers' rows
alone give 0.34, so the share is mostly DeepSpeed's). A drive's reads land in a pinned bounce buffer (DeepSpeed's aio, GPUDirect) and
keep the pinned rate."""
TENSORS = ("weights", "kv", "act")


class TierSpec(Spec):
    """One tier of the catalog: how much it holds and how fast its own side reads."""

    name: str
    capacity_bytes: Sourced
    """What one chip can place there by default (``--offload TIER_gb=N`` overrides it)."""
    bandwidth_bytes_per_s: Sourced | None = None
    """The tier's own read bandwidth per chip; None: bound by the chip's host link alone (host DRAM)."""
    link: str
    """What carries the data to the chip."""


@cache
def tier_catalog() -> dict[str, TierSpec]:
    text = (resources.files("infercast") / "catalog" / "tiers.yaml").read_text(encoding="utf-8")
    return {k: TierSpec(name=k, **v) for k, v in yaml.safe_load(text).items()}


@dataclass(frozen=True)
class Tier:
    """A tier as one chip sees it."""

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    """min(the tier's own bandwidth, what a copy reaches over the chip's host link per direction)."""


def chip_tier(chip: Chip, name: str, capacity_bytes: float | None = None, bandwidth: float | None = None,
              pinned: bool = True) -> Tier:
    """Tier ``name`` behind ``chip``; host-memory tiers (cpu, cxl) copied from pinned or pageable memory."""
    spec = tier_catalog()[name]
    link = chip.host_link.bandwidth_bytes_per_s_per_direction.value
    if link is None:
        raise InfercastError(f"hardware {chip.id}: host_link bandwidth unknown; offloading to {name} needs it")
    own = spec.bandwidth_bytes_per_s.value if spec.bandwidth_bytes_per_s is not None else math.inf
    own = bandwidth if bandwidth is not None else own
    cap = capacity_bytes if capacity_bytes is not None else spec.capacity_bytes.value
    if "pcie" in chip.host_link.name.lower():
        link *= PCIE_COPY_EFFICIENCY
    if not pinned and name != "nvme":  # a drive is read into a pinned bounce buffer (or straight to the GPU)
        link *= PAGEABLE_COPY_SHARE
    return Tier(name, cap, min(own, link))


@dataclass(frozen=True)
class Offload:
    """Where tensors live off the chip: tensor class -> (tier, fraction), and how transfers overlap compute."""

    place: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    """Tensor class -> the (tier, fraction) parts it has off the chip (``weights=cpu:0.5+nvme:0.5``)."""
    overlap: float = 1.0
    """Share of the transfer time hidden behind compute: 1 as FlexGen and ZeRO-Inference prefetch the next
    layer's weights while one computes, 0 as Accelerate's hooks copy each layer before running it."""
    capacity_bytes: dict[str, float] = field(default_factory=dict)
    """Tier capacities per chip that replace the catalog's."""
    bandwidth_bytes_per_s: dict[str, float] = field(default_factory=dict)
    """Tier read bandwidths that replace the catalog's (a RAID of drives); the host link still bounds them."""
    pinned: bool = True
    """Whether host-memory copies come from page-locked memory (FlexGen pins its weights; Accelerate's hooks and
    DeepSpeed's ``offload_param`` before 0.19 keep them pageable: ``tiers.PAGEABLE_COPY_SHARE``)."""

    def fraction(self, tensor: str) -> float:
        """Share of ``tensor`` off the chip, on every tier together."""
        return sum(f for _, f in self.place.get(tensor, ()))

    def tier(self, chip: Chip, name: str) -> Tier:
        return chip_tier(chip, name, self.capacity_bytes.get(name), self.bandwidth_bytes_per_s.get(name), self.pinned)

    def transfer_s(self, chip: Chip, tensor: str, size_bytes):
        """Time to bring ``size_bytes`` of ``tensor`` (its whole size) to the chip: each tier's part over its
        link, one after the other (every tier reaches the chip over the same host link)."""
        return sum(f * size_bytes / self.tier(chip, n).bandwidth_bytes_per_s for n, f in self.place.get(tensor, ()))

    def tier_bytes(self, sizes: dict[str, float]) -> dict[str, float]:
        """Bytes each tier holds, given each tensor class's whole size."""
        out: dict[str, float] = {}
        for tensor, parts in self.place.items():
            for name, f in parts:
                out[name] = out.get(name, 0.0) + f * sizes.get(tensor, 0.0)
        return out

    def fits(self, chip: Chip, sizes: dict[str, float]) -> bool:
        return all(b <= self.tier(chip, n).capacity_bytes for n, b in self.tier_bytes(sizes).items())

    def describe(self) -> str:
        parts = [f"{t}=" + "+".join(f"{n}:{f:g}" for n, f in ps) for t, ps in self.place.items()]
        return ",".join(parts + [f"overlap={self.overlap:g}"] + ([] if self.pinned else ["pinned=0"]))


def parse_offload(value: str | dict | Offload | None) -> Offload | None:
    """``weights=cpu:0.5,kv=cpu,overlap=1,cpu_gb=208,nvme_gbps=12`` (or the same as a mapping); a bad key is one
    line naming it."""
    if value is None or value == "" or isinstance(value, Offload):
        return value or None
    items = value.items() if isinstance(value, dict) else [p.partition("=")[::2] for p in str(value).split(",")]
    place, caps, bws, overlap, pinned = {}, {}, {}, 1.0, True
    for key, raw in items:
        key, raw = str(key).strip(), str(raw).strip()
        if key in TENSORS:
            parts = []
            for part in raw.split("+"):
                tier, _, frac = part.partition(":")
                if tier not in TIER_NAMES:
                    raise InfercastError(f"--offload {key}={raw}: unknown tier {tier!r}; use one of "
                                         f"{', '.join(TIER_NAMES)}, e.g. {key}=cpu:0.5")
                share = _number(f"--offload {key}={raw}", frac or "1")
                if not 0 < share <= 1:
                    raise InfercastError(f"--offload {key}={raw}: the fraction must be above 0 and at most 1, e.g. "
                                         f"{key}={tier}:0.5")
                parts.append((tier, share))
            if sum(f for _, f in parts) > 1 + 1e-9:
                raise InfercastError(f"--offload {key}={raw}: the fractions add up to more than 1")
            place[key] = tuple(parts)
        elif key == "overlap":
            overlap = _number(f"--offload overlap={raw}", raw)
            if not 0 <= overlap <= 1:
                raise InfercastError(f"--offload overlap={raw}: must be from 0 (no overlap) to 1 (transfers hidden "
                                     f"behind compute)")
        elif key == "pinned":
            if raw not in ("0", "1"):
                raise InfercastError(f"--offload pinned={raw}: 1 (page-locked host memory) or 0 (pageable)")
            pinned = raw == "1"
        elif key.endswith("_gb") and key[:-3] in TIER_NAMES:
            gb = _number(f"--offload {key}={raw}", raw)
            if not 0 < gb <= 1e6:
                raise InfercastError(f"--offload {key}={raw}: give the tier's capacity per chip in GB, above 0")
            caps[key[:-3]] = gb * 1e9
        elif key.endswith("_gbps") and key[:-5] in TIER_NAMES:
            rate = _number(f"--offload {key}={raw}", raw)
            if not 0 < rate <= 1e5:
                raise InfercastError(f"--offload {key}={raw}: give the tier's read bandwidth in GB/s, above 0")
            bws[key[:-5]] = rate * 1e9
        else:
            raise InfercastError(f"--offload {key!r}: unknown key; use weights=, kv= or act= TIER[:FRACTION] "
                                 f"(tiers {', '.join(TIER_NAMES)}), overlap=0..1, pinned=0|1, TIER_gb=N or TIER_gbps=N")
    if not place:
        raise InfercastError("--offload: place at least one of weights, kv or act on a tier, e.g. weights=cpu:0.5")
    return Offload(place, overlap, caps, bws, pinned)


def _number(where: str, raw: str) -> float:
    try:
        x = float(raw)
    except ValueError:
        raise InfercastError(f"{where}: expected a number") from None
    if not math.isfinite(x):
        raise InfercastError(f"{where}: must be finite")
    return x
