"""Systems: chips in nodes joined by interconnect tiers; the catalog of named systems.

A system is ``chips_per_node`` chips of one kind per node, joined inside the node by the
``intra_node`` tier (NVLink through NVSwitch, PCIe through a switch or through host memory,
Infinity Fabric, RoCE ports, ICI) and across nodes by the ``inter_node`` tier (InfiniBand,
RoCE/Ethernet). Each tier is a bandwidth per direction per chip and a per-hop latency.

Named systems are YAML files in ``infercast/catalog/systems/``; ``--hardware CHIP
--num-chips N`` builds a default one from the chip's own links (``default_system``).
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import Field, model_validator

from infercast.errors import InfercastError, UnknownName, did_you_mean
from infercast.files import exists, read_text
from infercast.hardware import Chip, Sourced, Spec, load_chip, parse_spec

Topology = Literal["switch", "ring", "torus", "host"]


class Tier(Spec):
    """One level of the interconnect: what one chip can send to its peers at this level."""

    name: str
    """E.g. 'NVLink 4 via NVSwitch', 'InfiniBand NDR 400 Gb/s, one NIC per GPU'."""
    topology: Topology
    """switch: any pair at full bandwidth; ring/torus: neighbours only; host: staged through host memory."""
    bandwidth_bytes_per_s_per_direction: Sourced
    """Bandwidth one chip can send (and at the same time receive) on this tier."""
    latency_s: Sourced
    """Time of one hop of a small message on this tier (the alpha of the alpha-beta model)."""

class System(Spec):
    id: str
    name: str
    chip: str
    """Catalog id of the chip every slot holds."""
    chips_per_node: int = Field(gt=0)
    nodes: int = Field(default=1, gt=0)
    """Nodes in the system as shipped (``--nodes`` scales it)."""
    intra_node: Tier | None
    """Link between chips of one node; null for a node of one chip."""
    inter_node: Tier | None
    """Link between nodes; null where the system cannot be scaled out (or is one domain)."""
    price_usd: Sourced | None = None
    """Price of one node, where published."""
    notes: str | None = None

    @model_validator(mode="after")
    def _tiers_move_data(self) -> System:
        # a tier of zero bandwidth would make every collective take forever (or divide by zero);
        # a level without a link is a null tier
        for level in ("intra_node", "inter_node"):
            tier = getattr(self, level)
            if tier is not None and tier.bandwidth_bytes_per_s_per_direction.value == 0:
                raise ValueError(f"{level}.bandwidth_bytes_per_s_per_direction.value: must be above zero, got 0; "
                                 f"for no link at this level write {level}: null")
        return self

    @property
    def num_chips(self) -> int:
        return self.chips_per_node * self.nodes

    def with_nodes(self, nodes: int) -> System:
        if nodes > 1 and self.inter_node is None:
            raise InfercastError(f"--nodes {nodes}: system {self.id} has no inter-node link to scale out over")
        return self.model_copy(update={"nodes": nodes})

    def tier_for(self, chips: int) -> Tier:
        """The slowest tier a group of ``chips`` consecutive chips spans (placed node-first)."""
        if chips <= self.chips_per_node:
            if self.intra_node is None:
                raise InfercastError(f"system {self.id}: a node holds one chip; a group of {chips} needs nodes")
            return self.intra_node
        if self.inter_node is None:
            raise InfercastError(f"system {self.id}: {chips} chips span nodes but it has no inter-node link")
        return self.inter_node


_CATALOG = resources.files("infercast") / "catalog" / "systems"


def system_ids() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _CATALOG.iterdir() if p.name.endswith(".yaml"))


def _parse(text: str, where: str) -> System:
    system = parse_spec(text, where, System)
    try:
        load_chip(system.chip)  # the chip must exist
    except InfercastError as exc:
        raise InfercastError(f"{where}: chip: {exc}") from None
    return system


@cache
def load_system(name: str) -> System:
    """A named system, or one from a path to a system YAML file."""
    if name.endswith((".yaml", ".yml")) or exists(name):
        return _parse(read_text(name, "--system"), f"--system {name}")
    if name not in system_ids():
        raise UnknownName(f"unknown system '{name}'{did_you_mean(name, system_ids())}; "
                             f"see 'infercast hardware systems'")
    return _parse((_CATALOG / f"{name}.yaml").read_text(encoding="utf-8"), f"system file {name}.yaml")


# Alpha (one hop of a small message) of the default tiers: NCCL's own cost model, the hwLat
# table of src/graph/tuning.cc for the low-latency (LL) protocol on a ring: NVLink 0.47 us,
# PCIe 1.0 us, network 2.7 us per hop.
NCCL_LL_HOP_S = {"nvlink": 0.47e-6, "pcie": 1.0e-6, "net": 2.7e-6}
NCCL_SOURCE = "NCCL src/graph/tuning.cc, hwLat table (LL protocol, ring), per hop"


@cache
def default_system(chip: Chip, num_chips: int) -> System:
    """``--hardware CHIP --num-chips N``: one node of up to 8 chips joined by the chip's own link.

    Chips with a scale-up link (NVLink, Infinity Fabric, ICI, RoCE ports) use it within a node
    as a switch; cards without one (``interconnect: null``) talk over PCIe through the host
    (``topology: host``). A link whose bandwidth the catalog does not know (``value: null``) is
    not guessed at: the chips use the host path too, and the tier's name says why. A link of
    zero bandwidth is not a chip: the chip YAML is refused (hardware.Chip).
    Beyond 8 chips, nodes are joined by one 400 Gb/s NIC per chip (InfiniBand NDR, the
    common choice for 8-GPU servers since 2023).
    """
    per_node = min(num_chips, 8)
    link = chip.interconnect
    if per_node == 1:  # one chip per node talks to no peer inside it: no link figure needed
        intra = None
    elif link is not None and link.bandwidth_bytes_per_s_per_direction.value:
        kind = "nvlink"
        intra = Tier(name=link.name, topology="switch",
                     bandwidth_bytes_per_s_per_direction=link.bandwidth_bytes_per_s_per_direction,
                     latency_s=Sourced(value=NCCL_LL_HOP_S[kind], source=NCCL_SOURCE,
                                       note="NVLink figure used for every scale-up link"))
    else:
        host = chip.host_link
        bw = host.bandwidth_bytes_per_s_per_direction
        if bw.value is None:
            raise InfercastError(f"hardware {chip.id}: no chip-to-chip or host link bandwidth in the catalog; "
                                 f"use --system with a system YAML")
        why = f" ({link.name}: bandwidth unknown)" if link is not None else ""
        intra = Tier(name=f"{host.name} through host memory{why}", topology="host",
                     bandwidth_bytes_per_s_per_direction=bw,
                     latency_s=Sourced(value=NCCL_LL_HOP_S["pcie"], source=NCCL_SOURCE))
    inter = Tier(name="InfiniBand NDR 400 Gb/s, one NIC per chip", topology="switch",
                 bandwidth_bytes_per_s_per_direction=Sourced(
                     value=50e9, source="NVIDIA ConnectX-7 / Quantum-2 NDR: 400 Gb/s per port per direction"),
                 latency_s=Sourced(value=NCCL_LL_HOP_S["net"], source=NCCL_SOURCE))
    return System(id=f"{chip.id}-x{num_chips}", name=f"{num_chips} x {chip.name}", chip=chip.id,
                  chips_per_node=per_node, nodes=math.ceil(num_chips / per_node),
                  intra_node=intra, inter_node=inter)
