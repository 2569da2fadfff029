"""``estimate()``: one configuration, as the JSON document of DESIGN.md (``Estimate.to_dict()``).

A thin wrapper: ``resolve`` the deployment, ``evaluate`` it at one batch and pair of lengths, and
lay the columns out as the document, with the busiest chip's per-operator breakdown. Results
are plain data: ``json.dumps(dataclasses.asdict(estimate(...)))`` works, and ``to_dict()`` is the
same with the fields that are not part of the document (the resolved plan and precision) left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from infercast.calibration import Calibration
from infercast.cost import CostOptions
from infercast.energy import EnergyOptions
from infercast.errors import InfercastError
from infercast.evaluation import Columns, Rows, evaluate
from infercast.hardware import Chip
from infercast.memory import MemoryOptions
from infercast.model import ModelSpec, load_model
from infercast.ops import Attention, Precision
from infercast.parallel import CommOptions, Plan, candidate_plans
from infercast.roofline import Efficiency
from infercast.scenario import Scenario, resolve, resolve_system
from infercast.sparsity import SparsityEffect
from infercast.system import System


@dataclass(frozen=True)
class Parallel:
    tp: int
    pp: int
    ep: int
    dp: int
    num_chips: int
    pp_stages: list[int]
    micro_batches: int
    sequence_parallel: bool


@dataclass(frozen=True)
class Workload:
    batch: int
    isl: int
    osl: int
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    weight_sparsity: float
    sparsity_pattern: str
    activation_sparsity: float
    moe_imbalance: float
    beam_width: int = 1
    n: int = 1


@dataclass(frozen=True)
class Params:
    total: int
    active: int


@dataclass(frozen=True)
class Memory:
    """One chip's memory (the fullest of the plan), the largest batch and the fewest chips."""

    weights_bytes: float
    kv_cache_bytes: float
    kv_cache_bytes_if_mha: float
    activation_bytes: float
    overhead_bytes: float
    total_per_chip_bytes: float
    capacity_per_chip_bytes: float
    usable_per_chip_bytes: float
    comm_buffer_bytes: float
    fits: bool
    reason: str
    min_chips: int
    """Fewest chips of this kind holding the batch (0: not even one sequence fits any plan)."""
    min_plan: dict | None
    """The plan behind ``min_chips``: tp, pp and dp (dp > 1 when no single replica holds the batch)."""
    max_batch: int
    binding: str
    """What limits the chip: 'weights' (they do not fit), 'activations' (a forward pass's do not fit
    beside them) or 'kv_cache' (the cache fills what is left: it bounds the batch)."""


@dataclass(frozen=True)
class PhaseTotals:
    latency_s: float
    flops: float
    bytes: float
    bound: str
    weight_bytes: float = 0.0
    """Of ``bytes``, the weights read (per chip, over all steps and micro-batches)."""


@dataclass(frozen=True)
class DecodeTotals(PhaseTotals):
    tpot_s: float | None = None
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class Utilization:
    prefill_compute: float | None
    decode_compute: float | None
    decode_bandwidth: float | None


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
    """Energy and power of the deployment: every chip of the plan, the whole batch."""

    joules_per_token: float
    tokens_per_joule: float
    total_j: float
    prefill_j: float
    decode_j: float
    output_tokens: int
    average_power_w: float
    """Per chip over the run: at least idle, at most TDP."""
    prefill_power_w: float
    decode_power_w: float | None
    power_capped: bool
    """A pass or step would have drawn more than TDP at the roofline's pace: it ran slower, at TDP."""
    split: EnergySplit
    w_per_delivered_pflops: float | None
    """Average power per PFLOP/s a chip delivers over the run (C17)."""
    idle_w: float
    tdp_w: float
    node_scale: float
    chip_overhead: float


@dataclass(frozen=True)
class ChipHour:
    capital_usd: float
    electricity_usd: float
    hosting_usd: float


@dataclass(frozen=True)
class Cost:
    mode: str
    """'cloud' (a price per chip-hour) or 'owned' (capital plus running costs)."""
    usd_per_chip_hour: float
    usd_per_hour: float
    usd_per_million_tokens: float
    """Per million output tokens."""
    usd_per_query: float
    """One sequence of the batch: isl input and osl output tokens."""
    chip_hour: ChipHour | None
    capex_usd: float | None
    assumptions: dict[str, Any]


@dataclass(frozen=True)
class OpRow:
    op: str
    phase: str
    flops: float
    bytes: float
    time_s: float
    bound: str
    tier: str | None = None
    weight_bytes: float = 0.0
    """Of ``bytes``, the weights read."""
    kind: str | None = None
    """gemm, attention, vector, comm; framework, wait (pipeline) or power (throttle) for time alone."""


_INTERNAL = ("plan", "precision", "sparsity_effect", "peak_flops", "peak_bandwidth")


@dataclass(frozen=True)
class Estimate:
    """The result of one estimate; ``to_dict()`` is the JSON contract of DESIGN.md."""

    model: str
    hardware: str
    system: str
    parallel: Parallel
    workload: Workload
    sparsity: dict[str, Any] | None
    params: Params
    memory: Memory
    prefill: PhaseTotals
    decode: DecodeTotals
    ttft_s: float
    e2e_latency_s: float
    throughput_tokens_per_s: float
    utilization: Utilization
    communication_share: dict[str, float]
    """Fraction of each phase's time (on the busiest chip) spent in collectives and pipeline waits."""
    efficiency: dict[str, Any]
    comm: dict[str, Any]
    energy: Energy | None
    cost: Cost | None
    breakdown: list[OpRow]
    warnings: list[str] = field(default_factory=list)
    energy_unavailable: str | None = None
    cost_unavailable: str | None = None
    offload: dict[str, Any] | None = None
    """Tensors on memory tiers beyond the chip's (``--offload``): placement, bytes per tier, transfer times."""
    plan: Plan | None = None
    precision: Precision | None = None
    sparsity_effect: SparsityEffect | None = None
    peak_flops: float | None = None
    """Dense peak FLOP/s of the units the GEMMs run on (the utilisations' denominator)."""
    peak_bandwidth: float | None = None
    framework: str = "generic"
    """The framework profile and version the deployment runs (``--framework``)."""

    @property
    def batch(self) -> int:
        return self.workload.batch

    @property
    def isl(self) -> int:
        return self.workload.isl

    @property
    def osl(self) -> int:
        return self.workload.osl

    @property
    def micro_batches(self) -> int:
        return self.parallel.micro_batches

    @property
    def tpot_s(self) -> float | None:
        return self.decode.tpot_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        return self.decode.tokens_per_s

    @property
    def extra(self) -> dict[str, str]:
        return {k: v for k, v in (("energy_unavailable", self.energy_unavailable),
                                  ("cost_unavailable", self.cost_unavailable)) if v}

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in _INTERNAL}
        d["breakdown"] = [{k: v for k, v in row.items() if k != "kind"} for row in d["breakdown"]]
        for key in ("energy_unavailable", "cost_unavailable", "offload"):
            if d[key] is None:
                del d[key]
        return d


# --- from columns ------------------------------------------------------------------------------------------


def plain(x):
    """A JSON value: numpy scalars to Python, NaN and infinity to None."""
    t = type(x)
    if t is float:
        return x if math.isfinite(x) else None
    if t is np.float64:
        x = float(x)
        return x if math.isfinite(x) else None
    if t is str or t is bool or t is int or x is None:
        return x
    if isinstance(x, (np.generic, np.ndarray)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _int(x) -> int:
    return int(round(float(x)))


def _rows(cols: Columns) -> list[OpRow]:
    out = []
    for phase, rows in cols.rows.items():
        bounds = rows.bounds()
        for i, name in enumerate(rows.names):
            # the frozen dataclass's fields in one update of its __dict__ (its __init__ sets them one at a time)
            row = _new_row(OpRow)
            row.__dict__.update(op=name, phase=phase, flops=float(rows.flops[i]), bytes=float(rows.bytes[i]),
                                time_s=float(rows.time_s[i]), bound=str(bounds[i]), tier=rows.tiers[i],
                                weight_bytes=float(rows.weight_bytes[i]), kind=rows.kinds[i])
            out.append(row)
    return out


_new_row = object.__new__


def _reason(m: dict[str, Any], fits: bool) -> str:
    gb = 1e9
    if fits:
        return f"needs {m['total_per_chip_bytes'] / gb:.1f} GB of {m['usable_per_chip_bytes'] / gb:.1f} GB usable per chip"
    need = (f"needs {m['total_per_chip_bytes'] / gb:.1f} GB (weights {m['weights_bytes'] / gb:.1f}, KV cache "
            f"{m['kv_cache_bytes'] / gb:.1f}, activations {m['activation_bytes'] / gb:.1f}, runtime "
            f"{m['overhead_bytes'] / gb:.1f}) per chip but a chip has {m['usable_per_chip_bytes'] / gb:.1f} GB usable")
    n = _int(m["min_chips"])
    if n == 0:
        return f"{need}; no plan of this chip holds even one sequence of this length"
    dp = _int(m["min_plan.dp"])
    split = f" ({dp} replicas of tp {_int(m['min_plan.tp'])} x pp {_int(m['min_plan.pp'])})" if dp > 1 else ""
    return f"{need}; at least {n} chips by memory{split}"


def _grouped(cols: Columns) -> dict[str, dict[str, Any]]:
    """The columns by their first key part ('' for top-level keys), values made plain."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in cols.items():
        parts = _PARTS.get(key)
        if parts is None:
            head, dot, rest = key.partition(".")
            parts = _PARTS[key] = (head, rest) if dot else ("", key)
        group = out.get(parts[0])
        if group is None:
            group = out[parts[0]] = {}
        group[parts[1]] = plain(value)
    return out


_PARTS: dict[str, tuple[str, str]] = {}
"""Column keys split at their first dot (the columns' keys are a fixed set)."""


def from_columns(sc: Scenario, cols: Columns) -> Estimate:
    """The document of one configuration (scalar columns)."""
    g = _grouped(cols)
    top, plan, p = g[""], sc.plan, sc.precision
    mem = g["memory"]
    fits = bool(mem["fits"])
    min_plan = ({"tp": _int(mem["min_plan.tp"]), "pp": _int(mem["min_plan.pp"]), "dp": _int(mem["min_plan.dp"])}
                if _int(mem["min_chips"]) else None)
    memory = Memory(weights_bytes=mem["weights_bytes"], kv_cache_bytes=mem["kv_cache_bytes"],
                    kv_cache_bytes_if_mha=mem["kv_cache_bytes_if_mha"], activation_bytes=mem["activation_bytes"],
                    overhead_bytes=mem["overhead_bytes"], total_per_chip_bytes=mem["total_per_chip_bytes"],
                    capacity_per_chip_bytes=mem["capacity_per_chip_bytes"],
                    usable_per_chip_bytes=mem["usable_per_chip_bytes"], comm_buffer_bytes=mem["comm_buffer_bytes"],
                    fits=fits, reason=_reason(mem, fits), min_chips=_int(mem["min_chips"]), min_plan=min_plan,
                    max_batch=_int(mem["max_batch"]), binding=mem["binding"])
    energy = None
    if "energy" in g:
        e = g["energy"]
        split = EnergySplit(e.pop("split.compute_j"), e.pop("split.memory_j"), e.pop("split.interconnect_j"),
                            e.pop("split.static_j"), e.pop("split.dram_j"), e.pop("split.sram_j"),
                            e.pop("split.overhead_j"))
        e["output_tokens"], e["power_capped"] = _int(e["output_tokens"]), bool(e["power_capped"])
        energy = Energy(split=split, **e)
    cost = None
    if "cost" in g:
        k = g["cost"]
        hour = (ChipHour(k["chip_hour.capital_usd"], k["chip_hour.electricity_usd"], k["chip_hour.hosting_usd"])
                if "chip_hour.capital_usd" in k else None)
        cost = Cost(mode=k["mode"], usd_per_chip_hour=k["usd_per_chip_hour"], usd_per_hour=k["usd_per_hour"],
                    usd_per_million_tokens=k["usd_per_million_tokens"], usd_per_query=k["usd_per_query"],
                    chip_hour=hour, capex_usd=k["capex_usd"],
                    assumptions={a[12:]: v for a, v in k.items() if a.startswith("assumptions.")})
    warnings = list(sc.warnings)
    w = g["workload"]
    batch = _int(w["batch"])
    if batch < plan.dp:
        warnings.append(f"batch {batch} leaves {plan.dp - batch} of the {plan.dp} data-parallel replicas idle; "
                        f"their chips are still counted in energy and cost")
    effect = sc.sparsity_effect
    pre, dec, u = g["prefill"], g["decode"], g["utilization"]
    return Estimate(
        model=top["model"], hardware=top["hardware"], system=top["system"],
        parallel=Parallel(plan.tp, plan.pp, plan.ep, plan.dp, plan.num_chips, list(plan.stages),
                          _int(g["parallel"]["micro_batches"]), plan.sequence_parallel),
        workload=Workload(batch, _int(w["isl"]), _int(w["osl"]), p.weight, p.act, p.kv,
                          sc.sparsity.weight, sc.sparsity.pattern, sc.sparsity.activation, sc.moe_imbalance,
                          _int(w["beam_width"]), _int(w["n"])),
        sparsity=effect.to_dict(sc.sparsity, p.dense_layer_bits) if effect is not None else None,
        params=Params(_int(g["params"]["total"]), _int(g["params"]["active"])), memory=memory,
        prefill=PhaseTotals(pre["latency_s"], pre["flops"], pre["bytes"], pre["bound"], pre["weight_bytes"]),
        decode=DecodeTotals(dec["latency_s"], dec["flops"], dec["bytes"], dec["bound"], dec["weight_bytes"],
                            dec["tpot_s"], dec["tokens_per_s"]),
        ttft_s=top["ttft_s"], e2e_latency_s=top["e2e_latency_s"],
        throughput_tokens_per_s=top["throughput_tokens_per_s"],
        utilization=Utilization(u["prefill_compute"], u["decode_compute"], u["decode_bandwidth"]),
        communication_share=g["communication_share"], efficiency=g["efficiency"], comm=g["comm"],
        energy=energy, cost=cost, breakdown=_rows(cols), warnings=warnings,
        energy_unavailable=cols.unavailable.get("energy"), cost_unavailable=cols.unavailable.get("cost"),
        offload={k: v if not isinstance(v, dict) else {n: plain(x) for n, x in v.items()}
                 for k, v in g.get("offload", {}).items()} or None,
        plan=plan, precision=p, sparsity_effect=effect, peak_flops=plain(sc.rates.peak(p.gemm_math, sc.chip.id)),
        peak_bandwidth=plain(sc.rates.mem_bw_bytes_per_s), framework=sc.framework.label,
    )


def estimate(
    model: str | ModelSpec,
    hardware: str | Chip | None = None,
    *,
    system: str | System | None = None,
    num_chips: int | None = None,
    nodes: int | None = None,
    batch: int = 1,
    isl: int = 128,
    osl: int = 128,
    dtype: str | None = None,
    weight_dtype: str | None = None,
    act_dtype: str | None = None,
    kv_cache_dtype: str | None = None,
    quantization: str | None = None,
    expert_dtype: str | None = None,
    attention: Attention | None = None,
    efficiency: Efficiency | dict[str, float] | None = None,
    memory: MemoryOptions | dict[str, float] | None = None,
    comm: CommOptions | dict[str, float] | None = None,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp: int = 1,
    pp_stages: tuple[int, ...] | None = None,
    sequence_parallel: bool = False,
    micro_batches: int | None = None,
    auto: bool = False,
    weight_sparsity: float | None = None,
    sparsity_pattern: str | None = None,
    activation_sparsity: float | None = None,
    sparse_storage: str | None = None,
    moe_imbalance: float = 1.0,
    energy: EnergyOptions | dict[str, float] | None = None,
    cost: CostOptions | dict[str, float] | None = None,
    usd_per_chip_hour: float | None = None,
    calibration: Calibration | str | None = None,
    offload: str | dict | None = None,
    chip: dict[str, Any] | None = None,
    framework: str | None = None,
    beam_width: int = 1,
    n: int = 1,
) -> Estimate:
    """Estimate one model serving one static batch on a chip or a system of chips.

    The options are ``infercast.scenario.resolve``'s. ``auto`` picks the fastest valid (tp, pp) plan on
    ``num_chips`` chips (or all of ``system``'s) that holds the batch.
    """
    options = dict(system=system, num_chips=num_chips, nodes=nodes, dtype=dtype, weight_dtype=weight_dtype,
                   act_dtype=act_dtype, kv_cache_dtype=kv_cache_dtype, quantization=quantization,
                   expert_dtype=expert_dtype, attention=attention,
                   efficiency=efficiency, memory=memory, comm=comm, ep=ep, dp=dp, pp_stages=pp_stages,
                   sequence_parallel=sequence_parallel, micro_batches=micro_batches,
                   weight_sparsity=weight_sparsity, sparsity_pattern=sparsity_pattern,
                   activation_sparsity=activation_sparsity, sparse_storage=sparse_storage,
                   moe_imbalance=moe_imbalance, energy=energy, cost=cost, usd_per_chip_hour=usd_per_chip_hour,
                   calibration=calibration, offload=offload, chip=chip, framework=framework)
    sampling = {"beam_width": beam_width, "n": n}
    if auto:
        return _auto(model, hardware, batch=batch, isl=isl, osl=osl, sampling=sampling, **options)
    sc = resolve(model, hardware, tp=tp, pp=pp, **options)
    return _estimate(sc, batch, isl, osl, sampling)


def _estimate(sc: Scenario, batch: int, isl: int, osl: int, sampling: dict[str, int]) -> Estimate:
    """One resolved deployment's estimate, its offloaded tensors' transfers included."""
    cols = evaluate(sc, batch=batch, isl=isl, osl=osl, **sampling)
    if sc.offload is not None:
        from infercast.offload import offloaded

        cols = offloaded(sc, cols)
    return from_columns(sc, cols)


def _auto(model, hardware, *, batch, isl, osl, sampling, **options) -> Estimate:
    """The fastest (end to end) tensor x pipeline plan on the system's chips that holds the batch."""
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    if options["dp"] != 1 or options["ep"] != 1 or options["pp_stages"]:
        raise InfercastError("--auto chooses --tp and --pp on every chip; drop --dp, --ep and --pp-stages")
    chip, sys_ = resolve_system(hardware, options["system"], options["num_chips"], options["nodes"], 1, options["chip"])
    chips = options["num_chips"] or sys_.num_chips
    results = []
    for plan in candidate_plans(spec, chips, sys_.chips_per_node):
        sc = resolve(spec, hardware, tp=plan.tp, pp=plan.pp, **options)
        results.append(_estimate(sc, batch, isl, osl, sampling))
    fitting = [r for r in results if r.memory.fits]
    if not fitting:
        need = results[0].memory.min_chips if results else 0
        raise InfercastError(f"--auto: no tensor/pipeline plan of {chips} {chip.id} chips holds {spec.name} at "
                             f"batch {batch}; " + (f"at least {need} chips are needed" if need else
                                                   "no plan of this chip holds even one sequence"))
    return min(fitting, key=lambda r: r.e2e_latency_s)


__all__ = ["Estimate", "OpRow", "Rows", "estimate", "from_columns", "plain"]
