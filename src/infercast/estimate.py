"""``estimate()``: memory, prefill and decode latency, throughput and the per-operator breakdown.

Prefill runs once over ``batch x isl`` tokens and produces the first output token (TTFT).
Each of the ``osl - 1`` decode steps then produces one token per sequence; step j
(j = 1 .. osl - 1) attends over ``isl + j`` keys. The decode total is the exact sum over
those steps, evaluated as one vectorised call over the array of KV lengths.

A plan of tp x pp x dp chips splits the work: each chip of a pipeline stage runs its
TP-sharded share of the stage's layers plus its collectives. The batch is split over dp
replicas (throughput, not latency) and, with pp > 1, into micro-batches that flow through
the stages: a pass takes the sum of the stage times for one micro-batch plus (m - 1) times
the slowest stage; a decode step, for all m micro-batches, the longer of m x the slowest
stage and one micro-batch's trip through every stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from infercast.calibration import Calibration, comm_for
from infercast.cost import Cost, CostOptions, estimate_cost
from infercast.cost import merge_options as cost_options
from infercast.energy import Energy, EnergyOptions, estimate_energy
from infercast.energy import merge_options as energy_options
from infercast.errors import InfercastError, did_you_mean, with_overrides
from infercast.formats import SCHEMES, element_bytes, get_format
from infercast.hardware import Chip, load_chip
from infercast.memory import MemoryOptions, MemoryPlan, binding_load, min_chips_plan, plan_loads, plan_memory
from infercast.model import ModelSpec, load_model
from infercast.ops import Attention, Op, Precision, forward_ops
from infercast.parallel import CommOptions, Plan, Stage, candidate_plans, comm_ops, make_plan, stages_of
from infercast.roofline import Efficiency, default_efficiency, op_time
from infercast.sparsity import DENSE, Sparsity, SparsityEffect, effect_on, make_sparsity
from infercast.system import System, default_system, load_system


@dataclass(frozen=True)
class PhaseTotals:
    latency_s: float
    flops: float
    bytes: float
    bound: str
    weight_bytes: float = 0.0
    """Of ``bytes``, the weights read (per chip, over all steps and micro-batches)."""


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
    """The operator's kind (gemm, attention, vector, comm); None for framework and pipeline-wait time."""


@dataclass(frozen=True)
class Estimate:
    """The result of one estimate; ``to_dict()`` is the JSON contract of DESIGN.md."""

    model: str
    hardware: str
    system: str
    plan: Plan
    micro_batches: int
    batch: int
    isl: int
    osl: int
    precision: Precision
    params_total: int
    params_active: int
    memory: MemoryPlan
    prefill: PhaseTotals
    decode: PhaseTotals
    breakdown: list[OpRow]
    efficiency: Efficiency
    comm: CommOptions
    peak_flops: float
    peak_bandwidth: float
    sparsity: Sparsity = DENSE
    sparsity_effect: SparsityEffect | None = None
    moe_imbalance: float = 1.0
    energy: Energy | None = None
    cost: Cost | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Notes beside the result, e.g. why energy or cost is unknown ('energy_unavailable')."""

    @property
    def ttft_s(self) -> float:
        return self.prefill.latency_s

    @property
    def e2e_latency_s(self) -> float:
        return self.prefill.latency_s + self.decode.latency_s

    @property
    def tpot_s(self) -> float | None:
        return self.decode.latency_s / (self.osl - 1) if self.osl > 1 else None

    @property
    def decode_tokens_per_s(self) -> float | None:
        return self.batch * (self.osl - 1) / self.decode.latency_s if self.osl > 1 else None

    @property
    def throughput_tokens_per_s(self) -> float:
        return self.batch * self.osl / self.e2e_latency_s

    @property
    def communication_share(self) -> dict[str, float]:
        """Fraction of each phase's time (on the binding chip) spent in collectives."""
        out = {}
        for phase, total in (("prefill", self.prefill.latency_s), ("decode", self.decode.latency_s)):
            comm = sum(r.time_s for r in self.breakdown if r.phase == phase and r.bound == "communication")
            out[phase] = comm / total if total > 0 else 0.0
        return out

    def to_dict(self) -> dict[str, Any]:
        def util(flops: float, t: float, peak: float) -> float | None:
            return flops / (t * peak) if t > 0 else None

        p, plan = self.precision, self.plan
        return {
            "model": self.model,
            "hardware": self.hardware,
            "system": self.system,
            "parallel": {"tp": plan.tp, "pp": plan.pp, "ep": plan.ep, "dp": plan.dp, "num_chips": plan.num_chips,
                         "pp_stages": list(plan.stages), "micro_batches": self.micro_batches,
                         "sequence_parallel": plan.sequence_parallel},
            "workload": {"batch": self.batch, "isl": self.isl, "osl": self.osl, "weight_dtype": p.weight,
                         "act_dtype": p.act, "kv_dtype": p.kv, "weight_sparsity": self.sparsity.weight,
                         "sparsity_pattern": self.sparsity.pattern, "activation_sparsity": self.sparsity.activation,
                         "moe_imbalance": self.moe_imbalance},
            "sparsity": (self.sparsity_effect.to_dict(self.sparsity, p.dense_layer_bits)
                         if self.sparsity_effect is not None else None),
            "params": {"total": self.params_total, "active": self.params_active},
            "memory": self.memory.to_dict(),
            "prefill": vars(self.prefill).copy(),
            "decode": {"tpot_s": self.tpot_s, "tokens_per_s": self.decode_tokens_per_s, **vars(self.decode)},
            "ttft_s": self.ttft_s,
            "e2e_latency_s": self.e2e_latency_s,
            "throughput_tokens_per_s": self.throughput_tokens_per_s,
            "utilization": {
                "prefill_compute": util(self.prefill.flops, self.prefill.latency_s, self.peak_flops),
                "decode_compute": util(self.decode.flops, self.decode.latency_s, self.peak_flops),
                "decode_bandwidth": util(self.decode.bytes, self.decode.latency_s, self.peak_bandwidth),
            },
            "communication_share": self.communication_share,
            "efficiency": self.efficiency.model_dump(),
            "comm": self.comm.model_dump(),
            "energy": self.energy.to_dict() if self.energy else None,
            "cost": self.cost.to_dict() if self.cost else None,
            **{k: v for k, v in self.extra.items() if k in ("energy_unavailable", "cost_unavailable")},
            "breakdown": [{k: v for k, v in vars(row).items() if k != "kind"} for row in self.breakdown],
        }


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InfercastError(f"{name} (--{name.replace('_', '-')}) must be a whole number of at least 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _StagePhase:
    """One stage's work for one micro-batch: per-op totals and the time of each step."""

    rows: list[OpRow]
    step_s: np.ndarray
    """Time of each step: shape (steps,)."""


def _stage_phase(ops: list[Op], phase: str, steps: int, chip: Chip, eff: Efficiency,
                 framework: bool = True) -> _StagePhase:
    """Sum each operator over its layers and, for decode, over every step's KV length; ``framework``: this
    stage pays the per-pass framework overhead (the last one, where the token is sampled: once a pass)."""
    rows, step = [], np.zeros(steps)
    for op in ops:
        t = op_time(op, chip, eff)
        step = step + t.time_s * op.count  # broadcasts a step-independent time over every step

        def total(x, count=op.count) -> float:
            """Sum over the layers and every step (x is per step, or the same for all steps)."""
            return (float(x.sum()) if np.ndim(x) else float(x) * steps) * count

        if op.kind == "comm":
            bound = "communication"
        else:
            parts = (("compute", total(t.compute_s)), ("memory", total(t.memory_s)),
                     ("overhead", t.overhead_s * steps * op.count))
            bound = max(parts, key=lambda kv: kv[1])[0]
        rows.append(OpRow(op.name, phase, total(op.flops), total(op.bytes), total(t.time_s), bound, op.tier,
                          total(op.weight_bytes), op.kind))
    if eff.step_overhead_s and framework:
        step = step + eff.step_overhead_s
        rows.append(OpRow("framework", phase, 0.0, 0.0, eff.step_overhead_s * steps, "overhead"))
    return _StagePhase(rows, step)


def _pipeline(stage_phases: list[_StagePhase], m: int) -> tuple[float, int]:
    """(phase latency, index of the busiest stage) for m micro-batches flowing through the stages."""
    times = np.stack([sp.step_s for sp in stage_phases])  # [stages, steps]
    slowest = times.max(axis=0)
    trip = times.sum(axis=0)
    busiest = int(np.argmax(times.sum(axis=1)))
    if stage_phases[0].rows and stage_phases[0].rows[0].phase == "prefill":
        return float(trip.sum() + (m - 1) * slowest.sum()), busiest
    return float(np.maximum(m * slowest, trip).sum()), busiest


def _totals(rows: list[OpRow], latency: float, m: int, phase: str) -> tuple[PhaseTotals, list[OpRow]]:
    """The busiest chip's rows (m micro-batches), a row for its idle time, and the phase totals."""
    rows = [OpRow(r.op, r.phase, r.flops * m, r.bytes * m, r.time_s * m, r.bound, r.tier, r.weight_bytes * m,
                  r.kind) for r in rows]
    idle = latency - sum(r.time_s for r in rows)
    if idle > 1e-12 * max(latency, 1e-30):
        rows.append(OpRow("pipeline_wait", phase, 0.0, 0.0, idle, "communication"))
    by_bound: dict[str, float] = {}
    for r in rows:
        by_bound[r.bound] = by_bound.get(r.bound, 0.0) + r.time_s
    bound = max(by_bound, key=by_bound.get) if by_bound else "memory"
    return PhaseTotals(latency, sum(r.flops for r in rows), sum(r.bytes for r in rows), bound,
                       sum(r.weight_bytes for r in rows)), rows


def resolve_precision(spec: ModelSpec, dtype: str | None, weight_dtype: str | None, act_dtype: str | None,
                      kv_cache_dtype: str | None, quantization: str | None = None) -> Precision:
    """``dtype`` sets all three tensor classes, a ``quantization`` scheme the weights (and, for W8A8
    or W4A4 schemes, the activations); the specific flags override both (default fp16)."""
    base = dtype or "fp16"
    weight, act = base, base
    if quantization is not None:
        if quantization not in SCHEMES:
            raise InfercastError(f"--quantization: unknown scheme '{quantization}'{did_you_mean(quantization, SCHEMES)}"
                                 f"; use one of {', '.join(SCHEMES)}")
        weight, scheme_act = SCHEMES[quantization]
        act = scheme_act or act
    weight, act = weight_dtype or weight, act_dtype or act
    kv = kv_cache_dtype or (base if dtype else "fp16")
    element_bytes(act, "act dtype")
    if get_format(act).math is None:
        raise InfercastError(f"--act-dtype {act}: a weight quantization scheme, not an activation format")
    return Precision.for_model(spec, get_format(weight, "weight dtype").name, act, kv)


def resolve_system(hardware: str | Chip | None, system: str | System | None, num_chips: int | None,
                   nodes: int | None, plan_chips: int) -> tuple[Chip, System]:
    """The chip and the system: a named system (scaled to ``nodes``), or a default one for the chip."""
    if system is not None:
        sys_ = system if isinstance(system, System) else load_system(system)
        if nodes is not None:
            sys_ = sys_.with_nodes(_positive("nodes", nodes))
        chip = load_chip(sys_.chip)
        if hardware is not None:
            other = hardware if isinstance(hardware, Chip) else load_chip(hardware)
            if other.id != chip.id:
                raise InfercastError(f"--hardware {other.id} conflicts with --system {sys_.id}, which holds {chip.id}")
        if num_chips is not None and _positive("num_chips", num_chips) > sys_.num_chips:
            raise InfercastError(f"--num-chips {num_chips}: system {sys_.id} has {sys_.num_chips}; add --nodes")
        return chip, sys_
    if hardware is None:
        raise InfercastError("give --hardware CHIP (with --num-chips N) or --system NAME")
    chip = hardware if isinstance(hardware, Chip) else load_chip(hardware)
    n = _positive("num_chips", num_chips) if num_chips is not None else plan_chips
    if nodes is not None:
        n = max(n, 8 * _positive("nodes", nodes))
    return chip, default_system(chip, n)


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
    attention: Attention = "flash",
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
) -> Estimate:
    """Estimate one model serving one static batch on a chip or a system of chips.

    ``efficiency``, ``memory`` and ``comm`` override fields of their defaults (a full object or
    a dict of some fields); the efficiency and collective defaults come from ``calibration`` (a
    profile or its path; the shipped fit by default). ``auto`` picks the fastest valid (tp, pp) plan on ``num_chips``
    chips (or all of ``system``'s). ``weight_sparsity`` (with ``sparsity_pattern`` 'unstructured'
    or N:M, and ``sparse_storage``) and ``activation_sparsity`` declare zeros in the decoder's
    linear layers; ``moe_imbalance`` is the busiest expert's tokens over the mean. ``energy`` and
    ``cost`` override fields of ``EnergyOptions`` and ``CostOptions``; ``usd_per_chip_hour`` prices
    chips at a cloud rate instead of as owned hardware.
    """
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    batch, isl, osl = _positive("batch", batch), _positive("isl", isl), _positive("osl", osl)
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep), ("dp", dp)):
        _positive(name, value)
    # the last output token is sampled, never fed back: isl + osl - 1 positions are processed
    if isl + osl - 1 > spec.max_position_embeddings:
        raise InfercastError(
            f"isl + osl = {isl + osl} exceeds {spec.name}'s context of {spec.max_position_embeddings} tokens "
            f"(+1 for the last token, which is never fed back); shorten --isl or --osl"
        )
    if attention not in ("flash", "materialized"):
        raise InfercastError(f"attention must be 'flash' or 'materialized' (got {attention!r})")
    if not (isinstance(moe_imbalance, (int, float)) and moe_imbalance >= 1):
        raise InfercastError(f"--moe-imbalance must be at least 1 (the busiest expert's tokens over the mean), "
                             f"got {moe_imbalance!r}")
    sparsity = make_sparsity(weight_sparsity, sparsity_pattern, activation_sparsity, sparse_storage)
    chip, sys_ = resolve_system(hardware, system, num_chips, nodes, tp * pp * dp)
    p = resolve_precision(spec, dtype, weight_dtype, act_dtype, kv_cache_dtype, quantization)
    effect = None if sparsity.is_dense else effect_on(chip, sparsity, p.dense_layer_bits)
    if effect is not None:  # the linear layers' math and weight bytes as the chip makes of the sparsity
        p = replace(p, layer_weight_bytes=effect.weight_bits / 8, layer_math_density=effect.math_density,
                    dense_layer_weight_bytes=p.layer_weight_bytes)
    eff = with_overrides(default_efficiency(chip, calibration), efficiency, "efficiency.")
    mem_opts = with_overrides(MemoryOptions(), memory, "memory.")
    comm_opts = with_overrides(comm_for(calibration), comm, "comm.")
    common = dict(p=p, attention=attention, eff=eff, mem_opts=mem_opts, comm_opts=comm_opts, batch=batch, isl=isl,
                  osl=osl, chip=chip, system=sys_, sparsity=sparsity, effect=effect, moe_imbalance=float(moe_imbalance))
    if auto:
        chips = num_chips or sys_.num_chips
        results = [_evaluate(spec, plan, micro_batches=None, **common)
                   for plan in candidate_plans(spec, chips, sys_.chips_per_node)]
        fitting = [r for r in results if r.memory.fits]
        if not fitting:
            raise InfercastError(f"--auto: no tensor/pipeline plan of {chips} {chip.id} chips holds {spec.name} at "
                                 f"batch {batch}; at least {results[0].memory.min_chips if results else '?'} chips "
                                 f"are needed")
        return _priced(min(fitting, key=lambda r: r.e2e_latency_s), chip, sys_, energy, cost, usd_per_chip_hour)
    plan = make_plan(spec, tp=tp, pp=pp, ep=ep, dp=dp, stages=tuple(pp_stages) if pp_stages else None,
                     sequence_parallel=sequence_parallel)
    if plan.num_chips > sys_.num_chips:
        raise InfercastError(f"the plan needs tp x pp x dp = {plan.num_chips} chips but system {sys_.id} has "
                             f"{sys_.num_chips}; use --nodes or a larger system")
    return _priced(_evaluate(spec, plan, micro_batches=micro_batches, **common), chip, sys_, energy, cost,
                   usd_per_chip_hour)


def _priced(result: Estimate, chip: Chip, system: System, energy, cost, usd_per_chip_hour) -> Estimate:
    """The estimate with its energy and cost (``infercast.energy``, ``infercast.cost``); a figure the
    catalog lacks (TDP, process node, price) leaves that part None with the reason in ``extra``."""
    e_opts = energy_options(energy)
    if usd_per_chip_hour is not None:
        cost = {**(cost.model_dump() if isinstance(cost, CostOptions) else cost or {}),
                "usd_per_chip_hour": usd_per_chip_hour}
    c_opts = cost_options(cost)
    extra, e, c = dict(result.extra), None, None
    try:
        e = estimate_energy(result, chip, system, e_opts)
    except InfercastError as exc:
        extra["energy_unavailable"] = str(exc)
    try:
        c = estimate_cost(result, e, chip, system, c_opts)
    except InfercastError as exc:
        extra["cost_unavailable"] = str(exc)
    return replace(result, energy=e, cost=c, extra=extra)


def _evaluate(spec: ModelSpec, plan: Plan, *, micro_batches: int | None, p: Precision, attention: Attention,
              eff: Efficiency, mem_opts: MemoryOptions, comm_opts: CommOptions, batch: int, isl: int, osl: int,
              chip: Chip, system: System, sparsity: Sparsity, effect: SparsityEffect | None,
              moe_imbalance: float) -> Estimate:
    replica_batch = math.ceil(batch / plan.dp)
    if plan.pp == 1:
        m = 1
    elif micro_batches is None:
        m = min(plan.pp, replica_batch)
    else:
        m = _positive("micro_batches", micro_batches)
        if m > replica_batch:
            raise InfercastError(f"--micro-batches {m} exceeds the {replica_batch} sequences of a replica")
    mb = replica_batch / m  # sequences per micro-batch
    stages = stages_of(spec, plan, moe_imbalance=moe_imbalance)

    def run(stage: Stage, q_len, kv_len, phase: str, steps: int) -> _StagePhase:
        ops = forward_ops(stage.spec, mb, q_len, kv_len, p, attention, moe=stage.moe, first=stage.first,
                          last=stage.last, norm_tokens_divisor=plan.tp if plan.sequence_parallel else 1)
        ops += comm_ops(spec, plan, stage, system, mb, q_len, p, comm_opts)
        return _stage_phase(ops, phase, steps, chip, eff, framework=stage.last)

    pre = [run(s, isl, isl, "prefill", 1) for s in stages]
    pre_latency, pre_busy = _pipeline(pre, m)
    prefill, prefill_rows = _totals(pre[pre_busy].rows, pre_latency, m, "prefill")
    steps = osl - 1
    if steps:
        kv_len = isl + np.arange(1, osl, dtype=float)
        dec = [run(s, 1, kv_len, "decode", steps) for s in stages]
        dec_latency, dec_busy = _pipeline(dec, m)
        decode, decode_rows = _totals(dec[dec_busy].rows, dec_latency, m, "decode")
    else:
        decode, decode_rows = PhaseTotals(0.0, 0.0, 0.0, "memory"), []

    loads = plan_loads(spec, plan, isl=isl, osl=osl, p=p, attention=attention)
    load = binding_load(loads, replica_batch)
    need, min_plan = min_chips_plan(spec, chip, batch=replica_batch, isl=isl, osl=osl, p=p, attention=attention,
                                    options=mem_opts, max_tp=system.chips_per_node if system.chips_per_node > 1 else 8)
    mem = plan_memory(load, chip, batch=replica_batch, replicas=plan.dp, options=mem_opts,
                      min_chips=need * plan.dp if need else 0, min_plan=min_plan)
    total, active = spec.params()
    return Estimate(
        model=spec.name, hardware=chip.id, system=system.id, plan=plan, micro_batches=m, batch=batch, isl=isl,
        osl=osl, precision=p, params_total=total, params_active=active, memory=mem, prefill=prefill, decode=decode,
        breakdown=prefill_rows + decode_rows, efficiency=eff, comm=comm_opts, peak_flops=chip.peak(p.gemm_math),
        peak_bandwidth=chip.figure("memory.bandwidth_bytes_per_s"), sparsity=sparsity, sparsity_effect=effect,
        moe_imbalance=moe_imbalance,
    )
