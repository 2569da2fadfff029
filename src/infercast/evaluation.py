"""``evaluate(scenario, batch=, isl=, osl=)``: a resolved deployment over arrays of workloads, in one call.

The numeric axes (batch, prompt and output lengths, and any chip rate, efficiency or price
given as an array) broadcast through operators, roofline, memory, energy and cost; the result
is columns, a mapping from the estimate's flattened JSON keys (``ttft_s``, ``decode.tpot_s``,
``memory.fits``, ``energy.joules_per_token``, ``cost.usd_per_million_tokens``, ...) to arrays.
Row i of the columns is ``estimate()`` for configuration i (``estimate`` is this on scalars).

Prefill runs once over ``batch x isl`` tokens and produces the first output token (TTFT).
Each of the ``osl - 1`` decode steps then produces one token per sequence; step j attends over
L = isl + j keys. A step's time is a maximum of lines in L (each attention kernel's compute or
memory term, a pipeline's slowest stage or whole trip, the power cap) within a regime (the
kernels' shapes saturate at L = min(group, head_dim); a sliding window caps L), so the decode
total is summed in closed form (``infercast.series``); contexts shorter than the saturation
length are summed step by step.

A plan of tp x pp x dp chips splits the work: each chip of a pipeline stage runs its TP-sharded
share of the stage's layers plus its collectives. The batch is split over dp replicas and, with
pp > 1, into m micro-batches that flow through the stages: a pass takes the sum of the stage
times for one micro-batch plus (m - 1) times the slowest stage; a decode step, for all m
micro-batches, the longer of m x the slowest stage and one micro-batch's trip through every
stage. No chip draws more than its TDP: a pass or step whose dynamic energy over its time would
exceed TDP - idle takes (dynamic energy) / (TDP - idle) instead.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.arrays import all_, any_, maximum, minimum, ndim
from infercast.cost import HOURS_PER_YEAR, capex_per_chip_usd, owned_chip_hour
from infercast.energy import EnergyRates, OpEnergy, energy_rates, op_energy, op_energy_coefficients
from infercast.errors import InfercastError
from infercast.keep import keep
from infercast.memory import kept_tokens, max_sequences, min_chips, need
from infercast.ops import Kernel, Op, attention_kernels, forward_ops
from infercast.parallel import comm_ops
from infercast.roofline import ChipRates, Efficiency, OpTable, Times, times
from infercast.scenario import Scenario, StageGroup
from infercast.series import count, max_lines_at, sum_line, sum_max, sum_max2
from infercast.tiling import activations_on_chip, dram_traffic

BOUNDS = ("compute", "memory", "overhead", "communication", "power")
"""What bounds a phase or an operator: the largest share of its time. 'power': the chip throttled to TDP."""
_ENERGY_PARTS = ("compute_j", "sram_j", "dram_j", "interconnect_j", "overhead_j")
_FAR = float(2**20)
"""A KV length offset inside any affine regime, for reading a kernel's line off two evaluations."""


# --- inputs -------------------------------------------------------------------------------------------


def _axis(flag: str, value) -> Any:
    """A workload axis as a float (or float array) of whole numbers of at least 1."""
    if type(value) is int and 1 <= value <= 2**40:
        return float(value)
    a = np.asarray(value)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
        raise InfercastError(f"{flag} must be a whole number of at least 1, got {value!r}")
    f = a.astype(float)
    if not np.all(np.isfinite(f)) or np.any(f < 1) or np.any(f != np.floor(f)):
        bad = f[~(np.isfinite(f) & (f >= 1) & (f == np.floor(f)))].ravel()[0] if f.ndim else value
        raise InfercastError(f"{flag} must be a whole number of at least 1, got {bad!r}")
    if np.any(f > 2**40):
        raise InfercastError(f"{flag} of {f.max():.3g} is beyond any deployment; use at most 2^40")
    return float(f) if f.ndim == 0 else f


def _values(where: str, values: Mapping[str, Any] | None, allowed) -> dict[str, Any]:
    """What-if values (floats or arrays): finite and positive, else one line naming the field."""
    out = {}
    for key, value in (values or {}).items():
        if key not in allowed:
            raise InfercastError(f"{where} {key}: unknown field; use one of {', '.join(sorted(allowed))}")
        a = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise InfercastError(f"{where} {key}: values must be finite and not negative")
        out[key] = float(a) if a.ndim == 0 else a
    return out


_EFF_RANGES = {"gemm_max": (0, 1), "gemm_max_narrow": (0, 1), "gemm_max_fp4": (0, 1), "attention_max": (0, 1),
               "bandwidth": (0, 1), "moe_gemm_efficiency": (0, 1)}


def _efficiency(base: Efficiency, values: Mapping[str, Any] | None) -> Efficiency:
    """``base`` with fields replaced by what-if arrays (ranges as ``Efficiency`` checks them)."""
    fields = _values("efficiency", values, set(Efficiency.model_fields) - {"wave_quantization"})
    for key, value in fields.items():
        lo, hi = _EFF_RANGES.get(key, (-1.0, math.inf))
        if np.any(np.asarray(value) <= lo) or np.any(np.asarray(value) > hi):
            raise InfercastError(f"efficiency {key}: values must be in ({lo}, {hi}]")
    return Efficiency.model_construct(**{**dict(base), **fields}) if fields else base


# --- one pass of one stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassCost:
    """One chip's operators in one pass (one micro-batch): times and dynamic energy per execution."""

    table: OpTable
    times: Times
    energy: OpEnergy | None

    @property
    def time_s(self):
        return self.table.per_pass(self.times.time_s)

    @property
    def energy_j(self):
        return None if self.energy is None else self.table.per_pass(self.energy.total_j)

    def head(self, n: int) -> PassCost:
        """The first ``n`` operators' costs (a pass priced together with other operators in one table)."""
        tb, t, e = self.table, self.times, self.energy
        sram = tb.sram_bytes if type(tb.sram_bytes) is float else tb.sram_bytes[:n]
        table = replace(tb, ops=tb.ops[:n], count=tb.count[:n], kind=tb.kind[:n], flops=tb.flops[:n],
                        weight_bytes=tb.weight_bytes[:n], bytes=tb.bytes[:n], min_dim=tb.min_dim[:n],
                        vector_flops=tb.vector_flops[:n], compute_factor=tb.compute_factor[:n], tiles=tb.tiles[:n],
                        seq_len=tb.seq_len[:n], comm_s=tb.comm_s[:n], maths=tb.maths[:n], key=tb.key[:n],
                        sram_bytes=sram)
        times_ = Times(t.compute_s[:n], t.memory_s[:n], t.overhead_s[:n], t.time_s[:n], t.comm[:n])
        energy = None if e is None else OpEnergy(e.compute_j[:n], e.sram_j[:n], e.dram_j[:n], e.interconnect_j[:n],
                                                 e.overhead_j[:n])
        return PassCost(table, times_, energy)


_COEFFICIENTS: dict[tuple, tuple] = {}
"""Energy coefficients by operator-list structure; the rates and system are kept so that ids stay theirs."""


class Pricer:
    """Prices operators of a scenario's stages: times on the roofline and dynamic energy, at the rates in force."""

    def __init__(self, sc: Scenario, rates: ChipRates | None = None, eff: Efficiency | None = None,
                 er: EnergyRates | None = None):
        self.sc = sc
        self.rates = rates if rates is not None else sc.rates
        self.eff = eff if eff is not None else sc.efficiency
        self.er = er if rates is not None or eff is not None else sc.energy_rates
        self.power = None if self.er is None else self.er.tdp_w - self.er.idle_w  # W a chip can spend above idle
        self.coefs: dict[tuple, Any] = {}
        self.ndim = 1  # of an operator table: 1 + the workload's dimensions (``_Run`` sets it)
        # per chip: SRAM-resident if they fit (a network's pricer is told its own: infercast.passes)
        self.weights_bytes = max(load.weights_bytes for load in sc.loads) if sc.spec is not None else None
        self.activations_on_chip = False
        """A network's kernels hand their activations to the next through the SRAM where they fit (passes)."""

    def stage_ops(self, g: StageGroup, batch, q_len, kv_len, *, with_attention: bool = True,
                  decode: bool = False) -> list[Op]:
        """Every kernel one chip of the group runs in a pass of ``batch`` sequences, collectives included; a
        prefill pass unless ``decode``."""
        sc, s = self.sc, g.stage
        ops = forward_ops(s.spec, batch, q_len, kv_len, sc.precision, sc.attention, moe=s.moe, first=s.first,
                          last=s.last, norm_tokens_divisor=sc.plan.tp if sc.plan.sequence_parallel else 1,
                          with_attention=with_attention, decode=decode)
        return ops + comm_ops(sc.spec, sc.plan, s, sc.system, batch, q_len, sc.precision, sc.comm)

    def cost(self, ops: list[Op], key: tuple) -> PassCost:
        """Times and energies of ``ops``; ``key`` names the op list's structure (energy coefficients are kept)."""
        table = dram_traffic(OpTable.of(ops, self.ndim), self.rates, self.weights_bytes)  # DRAM bytes behind the SRAM
        if self.activations_on_chip:
            table = activations_on_chip(table, self.rates)
        t = times(table, self.rates, self.eff, self.sc.chip.id)
        if self.er is None:
            return PassCost(table, t, None)
        coef = self.coefs.get((key, table.kind.ndim))
        if coef is None:
            coef = self.coefs[(key, table.kind.ndim)] = self.coefs[key] = self._coefficients(table)
        return PassCost(table, t, op_energy(table, coef, self.er))

    def _coefficients(self, table: OpTable):
        """The energy coefficients of an operator list: kept per structure (names, kinds, links, formats, chip,
        system, options), which the workload's sizes do not change."""
        sc = self.sc
        key = (tuple((op.name, op.kind, op.tier) for op in table.ops), table.kind.ndim, sc.precision.gemm_math,
               sc.precision.attention_math, sc.precision.expert, sc.energy, sc.plan.tp, sc.plan.ep_across_dp,
               sc.comm.host_staging)
        return keep(_COEFFICIENTS, (self.rates, sc.system),
                    lambda: op_energy_coefficients(table, sc.precision, self.rates, sc.system, sc.energy, sc.plan.tp,
                                                   max(sc.plan.ep_across_dp, 1), sc.comm.host_staging), key)

    def kernels(self, g: StageGroup) -> list[Kernel]:
        """The group's decode attention kernels (their ``count`` is the stage's layers)."""
        s = self.sc
        return attention_kernels(g.stage.spec, s.precision, s.attention, decode=True)

    def framework_s(self, g: StageGroup):
        """Per-pass framework time: once a pass, at the last stage (where the token is sampled)."""
        return self.eff.step_overhead_s if g.stage.last else 0.0


class _Run(Pricer):
    """One evaluation: a pricer and the workload's derived sizes."""

    def __init__(self, sc: Scenario, batch, isl, osl, rates: ChipRates, eff: Efficiency, er: EnergyRates | None,
                 beam_width: int = 1, n: int = 1):
        super().__init__(sc, rates, eff, er)
        self.er = er
        self.power = None if er is None else er.tdp_w - er.idle_w
        self.batch, self.isl, self.osl = batch, isl, osl
        self.seqs, self.n = beam_width * n, n
        """Sequences each prompt decodes (beam search, parallel sampling), and the completions it returns."""
        plan = sc.plan
        self.replica_batch = np.ceil(batch / plan.dp) if ndim(batch) else float(math.ceil(batch / plan.dp))
        if plan.pp == 1:
            self.m = 1.0
        elif sc.micro_batches is None:
            self.m = np.minimum(float(plan.pp), self.replica_batch)
        else:
            if any_(sc.micro_batches > self.replica_batch):
                raise InfercastError(f"--micro-batches {sc.micro_batches} exceeds the "
                                     f"{int(np.min(self.replica_batch))} sequences of a replica")
            self.m = float(sc.micro_batches)
        self.mb = self.replica_batch / self.m  # sequences per micro-batch

    def ops(self, g: StageGroup, q_len, kv_len, *, with_attention: bool = True, decode: bool = False) -> list[Op]:
        return self.stage_ops(g, self.mb, q_len, kv_len, with_attention=with_attention, decode=decode)

    def for_phase(self, *, decode: bool) -> _Run:
        """This run at the efficiencies of a prefill pass or a decode step (``Scenario.phase_efficiency``); a
        decode step runs every sequence of every prompt (beams, parallel samples)."""
        eff = self.sc.phase_efficiency(self.eff, decode)
        seqs = self.seqs if decode else 1
        if eff is self.eff and seqs == 1:
            return self
        run = copy.copy(self)
        run.eff = eff
        run.mb = self.mb * seqs
        return run


# --- rows -----------------------------------------------------------------------------------------------


_SPLIT_WHOLE = 1 << 20
"""Elements of an [ops, *shape] product of ``Rows.of`` made in one piece; a larger one is made row by row."""
_ROW_FIELDS = ("flops", "bytes", "weight_bytes", "time_s", "compute_s", "memory_s", "overhead_s")


@dataclass
class Rows:
    """One chip's operators over a phase (one micro-batch, every step): totals per row, each a float or an
    array of the workload's shape (or one that broadcasts to it: rows are never stacked at full size)."""

    names: list[str]
    kinds: list[str]
    tiers: list[str | None]
    flops: list
    bytes: list
    weight_bytes: list
    time_s: list
    compute_s: list
    memory_s: list
    overhead_s: list
    energy: dict[str, list] | None

    @classmethod
    def of(cls, pc: PassCost, steps=1.0, framework_s=0.0) -> Rows:
        """Rows of a pass repeated ``steps`` times, with a framework row if ``framework_s``."""
        t, tb = pc.times, pc.table
        n = tb.count * steps
        count = len(tb.ops)

        def split(x) -> list:
            x = np.asarray(x)
            if n.ndim <= 1 and x.ndim <= 1:  # one configuration: Python floats, cheaper downstream
                a = x * n
                return (a if a.shape == (count,) else np.broadcast_to(a, (count,))).tolist()
            if x.ndim != n.ndim or math.prod(max(a, b) for a, b in zip(x.shape, n.shape)) <= _SPLIT_WHOLE:
                return list(x * n)
            # a grid: row by row, never the [ops, *grid] product (hundreds of MB of fresh pages on every call)
            xs, ns = np.broadcast_to(x, (count,) + x.shape[1:]), np.broadcast_to(n, (count,) + n.shape[1:])
            return [xs[i] * ns[i] for i in range(count)]

        fields = [tb.flops, tb.bytes, tb.weight_bytes, t.time_s, t.compute_s, t.memory_s, t.overhead_s]
        if pc.energy is not None:
            fields += [getattr(pc.energy, k) for k in _ENERGY_PARTS]
        if n.shape == (count,) and all(type(x) is np.ndarray and x.shape == (count,) for x in fields):
            values = (np.array(fields) * n).tolist()  # one configuration: every field in one product
        else:
            values = [split(x) for x in fields]
        energy = None if pc.energy is None else dict(zip(_ENERGY_PARTS, values[7:], strict=True))
        rows = cls([op.name for op in tb.ops], [op.kind for op in tb.ops], [op.tier for op in tb.ops],
                   *values[:7], energy)
        if any_(framework_s):
            rows.add_row("framework", "framework", framework_s * steps, "overhead")
        return rows

    def add_row(self, name: str, kind: str, time_s, bound: str) -> None:
        """A row of time alone (framework, pipeline wait, power throttle)."""
        self.names.append(name)
        self.kinds.append(kind)
        self.tiers.append(None)
        for f in ("flops", "bytes", "weight_bytes"):
            getattr(self, f).append(0.0)
        self.time_s.append(time_s)
        for term in ("compute", "memory", "overhead"):
            getattr(self, f"{term}_s").append(time_s if term == bound else 0.0)
        if self.energy is not None:
            for v in self.energy.values():
                v.append(0.0)

    def insert(self, at: int, other: dict[str, dict[str, Any]], with_energy: bool) -> None:
        """Rows given as {name: {kind, field: value}} inserted before row ``at``."""
        for name, row in reversed(list(other.items())):
            self.names.insert(at, name)
            self.kinds.insert(at, row["kind"])
            self.tiers.insert(at, None)
            for f in _ROW_FIELDS:
                getattr(self, f).insert(at, row[f])
            if with_energy:
                for k in _ENERGY_PARTS:
                    self.energy[k].insert(at, row[f"e_{k}"])

    def scaled(self, m) -> Rows:
        if ndim(m) == 0 and m == 1:
            return Rows(list(self.names), list(self.kinds), list(self.tiers),
                        *(list(getattr(self, f)) for f in _ROW_FIELDS),
                        None if self.energy is None else {k: list(v) for k, v in self.energy.items()})

        def sc(xs: list) -> list:
            return [x * m for x in xs]

        energy = None if self.energy is None else {k: sc(v) for k, v in self.energy.items()}
        return Rows(list(self.names), list(self.kinds), list(self.tiers),
                    *(sc(getattr(self, f)) for f in _ROW_FIELDS), energy)

    def bound(self, i: int):
        """Row i's bound: communication for collectives and waits, power for a throttle, else its largest term."""
        kind = self.kinds[i]
        if kind in ("comm", "wait"):
            return "communication"
        if kind == "power":
            return "power"
        c, m, o = self.compute_s[i], self.memory_s[i], self.overhead_s[i]
        if ndim(c) == 0 and ndim(m) == 0 and ndim(o) == 0:
            return "overhead" if o > max(c, m) else ("compute" if c >= m else "memory")
        return np.where(o > np.maximum(c, m), "overhead", np.where(c >= m, "compute", "memory"))

    def bounds(self) -> list:
        """Every row's ``bound``."""
        out = []
        for i, (c, m, o) in enumerate(zip(self.compute_s, self.memory_s, self.overhead_s, strict=True)):
            if type(c) is float and type(m) is float and type(o) is float and self.kinds[i] not in _OWN_BOUND:
                out.append("overhead" if o > max(c, m) else ("compute" if c >= m else "memory"))
            else:
                out.append(self.bound(i))
        return out

    def total(self, name: str):
        return _sum(getattr(self, name))

    def energy_total(self) -> dict[str, Any]:
        return {k: _sum(v) for k, v in self.energy.items()}


_OWN_BOUND = ("comm", "wait", "power")
"""Kinds of row whose bound is their kind's (``Rows.bound``)."""


def _sum(xs: list):
    out = 0.0
    for x in xs:
        out = out + x
    return float(out) if ndim(out) == 0 else out


def _select(per_group: list, index):
    """Per configuration, the entry of the group ``index`` names (index: int array or int)."""
    if len(per_group) == 1:
        return per_group[0]
    if ndim(index) == 0:
        return per_group[int(index)]
    out = per_group[0]
    for g in range(1, len(per_group)):
        out = np.where(index == g, per_group[g], out)
    return out


def _group_rows(rows: list[Rows], busiest) -> Rows:
    """The busiest group's rows (per configuration); groups align on the union of their rows' names (zero
    where a group has no such row: the embedding, the head, a p2p send)."""
    if ndim(busiest) and len(rows) > 1 and (busiest == busiest.flat[0]).all():
        busiest = int(busiest.flat[0])  # one group is the busiest everywhere: its rows as they are
    if len(rows) == 1 or ndim(busiest) == 0:
        return rows[int(busiest) if ndim(busiest) == 0 else 0]
    names = []
    for r in rows:
        names += [n for n in r.names if n not in names]
    index = [{n: i for i, n in enumerate(r.names)} for r in rows]

    def pick(get) -> list:
        return [_select([get(r, ix[n]) if n in ix else 0.0 for r, ix in zip(rows, index, strict=True)], busiest)
                for n in names]

    kinds = {n: k for r in rows for n, k in zip(r.names, r.kinds, strict=True)}
    tiers = {n: t for r in rows for n, t in zip(r.names, r.tiers, strict=True)}
    fields = {f: pick(lambda r, i, f=f: getattr(r, f)[i]) for f in _ROW_FIELDS}
    energy = None
    if rows[0].energy is not None:
        energy = {k: pick(lambda r, i, k=k: r.energy[k][i]) for k in _ENERGY_PARTS}
    return Rows(names, [kinds[n] for n in names], [tiers[n] for n in names], energy=energy, **fields)


# --- prefill ----------------------------------------------------------------------------------------------


@dataclass
class Phase:
    latency_s: Any
    rows: Rows
    """The busiest chip's rows, all micro-batches, with its power throttle and pipeline wait."""
    energy_j: dict[str, Any] | None
    """Dynamic energy of every chip of the deployment, by part."""
    throttled: Any
    """Whether a chip's work was slowed to its TDP."""


def _phase(run: _Run, groups: list[StageGroup], rows: list[Rows], capped: list, roof: list, latency) -> Phase:
    """Assemble a phase: each group's rows (one micro-batch, summed over the steps), its time at TDP
    (``capped``) and at the roofline's pace (``roof``), and the phase's latency."""
    sc = run.sc
    busiest = np.argmax(np.stack(np.broadcast_arrays(*capped)), axis=0) if len(capped) > 1 else 0
    top = _group_rows(rows, busiest).scaled(run.m)
    throttle = run.m * (_select(capped, busiest) - _select(roof, busiest))
    if ndim(throttle) == 0 and ndim(latency) == 0:
        throttled_any = float(throttle) > 1e-15 * abs(float(latency))
    else:
        throttled_any = any_(throttle > 1e-15 * np.abs(latency))
    if throttled_any:
        top.add_row("power_throttle", "power", np.maximum(throttle, 0.0), "power")
    if sc.plan.pp > 1:
        wait = latency - top.total("time_s")
        # below the rounding of the sum, a stage waits for nothing
        top.add_row("pipeline_wait", "wait", np.where(wait > 1e-12 * latency, wait, 0.0), "communication")
    energy = None
    if run.er is not None:
        chips_per_stage = sc.plan.tp * sc.plan.dp
        totals = [(g.count * chips_per_stage * run.m, r.energy_total()) for g, r in zip(groups, rows, strict=True)]
        energy = {k: sum(n * t[k] for n, t in totals) for k in _ENERGY_PARTS}
    throttled = _any([c > r * (1 + 1e-12) for c, r in zip(capped, roof, strict=True)])
    return Phase(float(latency) if ndim(latency) == 0 else latency, top, energy, throttled)


def _any(conds: list):
    out = conds[0]
    for c in conds[1:]:
        out = out | c
    return out


def _at_tdp(run: _Run, time_s, energy_j):
    """A stage's work slowed, where it would draw more than TDP, to (dynamic energy) / (TDP - idle)."""
    if energy_j is None:
        return time_s
    capped = energy_j / run.power
    if type(time_s) is float and type(capped) is float:  # np.maximum's answer, NaN included, without numpy
        return time_s if time_s >= capped or time_s != time_s else capped
    return np.maximum(time_s, capped)


def _pipeline_pass(run: _Run, groups: list[StageGroup], pass_s: list):
    """A pass of m micro-batches: one trip through every stage, then (m - 1) x the slowest stage."""
    trip = sum(g.count * t for g, t in zip(groups, pass_s, strict=True))
    return trip + (run.m - 1) * _max(pass_s)


def prefill(run: _Run) -> Phase:
    groups = run.sc.groups
    costs = [run.cost(run.ops(g, run.isl, run.isl), ("prefill", i)) for i, g in enumerate(groups)]
    roof = [c.time_s + run.framework_s(g) for c, g in zip(costs, groups, strict=True)]
    capped = [_at_tdp(run, t, c.energy_j) for t, c in zip(roof, costs, strict=True)]
    rows = [Rows.of(c, 1.0, run.framework_s(g)) for c, g in zip(costs, groups, strict=True)]
    return _phase(run, groups, rows, capped, roof, _pipeline_pass(run, groups, capped))


def _max(xs: list):
    return xs[0] if len(xs) == 1 else np.maximum.reduce(np.broadcast_arrays(*xs))


# --- decode ------------------------------------------------------------------------------------------------


@dataclass
class KernelLines:
    """An attention kernel over one regime of KV lengths, per execution: compute and memory seconds, FLOPs and
    bytes as lines (a, b) meaning a + b L, its overhead, and where its energy coefficients sit (``index`` into
    the group's kernel energy coefficients)."""

    name: str
    kind: str
    count: float
    compute: tuple
    memory: tuple
    overhead: Any
    flops: tuple
    bytes: tuple
    weight_bytes: tuple
    index: int
    coef: Any = None
    """The energy coefficients of the table the kernel was priced in (``index`` is its row there)."""


def _line(x1, x2, L1: float, L2: float) -> tuple:
    b = (x2 - x1) / (L2 - L1)
    return (x1 - b * L1, b)


def _one_configuration(run: _Run) -> bool:
    return run.ndim == 1 and ndim(run.mb) == 0


def _line_ops(run: _Run, kernels: list[Kernel], lengths: list[tuple[float, float]]) -> list[Op]:
    """One configuration's kernels at each regime's L1, then at its L2, as rows of a table."""
    return [k.op(run.mb, 1.0, L) for L1, L2 in lengths for L in (L1, L2) for k in kernels]


def _rows_lines(run: _Run, c: PassCost, key: tuple, kernels: list[Kernel], L1: float, L2: float,
                at: int) -> list[KernelLines]:
    """The lines of ``kernels`` priced at L1 in rows ``at`` .. and at L2 in the next ``len(kernels)`` rows of ``c``."""
    n = len(kernels)
    t, b = c.times, c.table
    coef = run.coefs.get(key)

    def row_line(x: np.ndarray, i: int) -> tuple:
        return _line(float(x[at + i]), float(x[at + n + i]), L1, L2)

    return [KernelLines(k.name, k.kind, float(k.count), row_line(t.compute_s, i), row_line(t.memory_s, i),
                        row_line(t.overhead_s, i)[0], row_line(b.flops, i), row_line(b.bytes, i),
                        row_line(b.weight_bytes, i), at + i, coef)
            for i, k in enumerate(kernels)]


def _kernel_lines(run: _Run, g: StageGroup, kernels: list[Kernel], L1: float, L2: float) -> list[KernelLines]:
    """Each kernel's lines on a regime of KV lengths holding L1 < L2: one evaluation at both, on a leading
    axis of two, exact since the kernel's cost and time are affine in L there (``ops.Kernel``)."""
    key = ("kernel_lines", g.indices)
    if _one_configuration(run):
        return _rows_lines(run, run.cost(_line_ops(run, kernels, [(L1, L2)]), key), key, kernels, L1, L2, 0)
    L = np.array([L1, L2]).reshape((2,) + (1,) * (run.ndim - 1))  # before the workload's axes
    c = run.cost([k.op(run.mb, 1.0, L) for k in kernels], key)
    t, b = c.times, c.table
    coef = run.coefs.get(key)

    def line(x: np.ndarray, i: int) -> tuple:
        xi = x[i]
        if xi.ndim and xi.shape[0] == 2:
            x1, x2 = xi[0], xi[1]
        else:
            x1 = x2 = xi[0] if xi.ndim else xi
        if ndim(x1) == 0:
            x1, x2 = float(x1), float(x2)
        return _line(x1, x2, L1, L2)

    return [KernelLines(k.name, k.kind, float(k.count), line(t.compute_s, i), line(t.memory_s, i),
                        line(t.overhead_s, i)[0], line(b.flops, i), line(b.bytes, i), line(b.weight_bytes, i), i,
                        coef)
            for i, k in enumerate(kernels)]


def _at(line: tuple, L):
    return line[0] + line[1] * L


class _KernelEnergy:
    """A kernel's dynamic energy per execution from its FLOPs f and DRAM bytes d (``energy.SramTerms``):

        compute = s e_f f;  sram = s (lf f + ld d + w1 max(d, k1 f) + w2 max(d, k2 f));  dram = r d;
        overhead = (k - 1) (compute + sram)
    """

    def __init__(self, run: _Run, kl: KernelLines):
        er, coef, i = run.er, kl.coef, kl.index
        scale = er.node_scale
        sr = coef.sram
        self.scale, self.k, self.dram = scale, er.chip_overhead, er.dram_j_per_byte
        self.e_f, self.lf, self.ld = _flat(coef.flop_j, i), _flat(sr.lin_f, i), _flat(sr.lin_d, i)
        self.maxes = [(_flat(sr.w1, i), _flat(sr.k1, i)), (_flat(sr.w2, i), _flat(sr.k2, i))]

    def parts(self, f, d, max_terms: list) -> dict[str, Any]:
        """Energy parts given sums of f and d, and the sums of max(d, k f) for each of the two maxima."""
        compute = self.scale * self.e_f * f
        sram = self.scale * (self.lf * f + self.ld * d + sum(w * m for (w, _), m in zip(self.maxes, max_terms,
                                                                                       strict=True)))
        return {"compute_j": compute, "sram_j": sram, "dram_j": self.dram * d, "interconnect_j": 0.0 * f,
                "overhead_j": (self.k - 1) * (compute + sram)}

    def lines(self, f: tuple, d: tuple) -> list[tuple]:
        """The dynamic energy as the maximum of four lines in L (each maximum taking one side)."""
        kk = self.k * self.scale
        base = (kk * (self.e_f + self.lf) * f[0] + (kk * self.ld + self.dram) * d[0],
                kk * (self.e_f + self.lf) * f[1] + (kk * self.ld + self.dram) * d[1])
        out = []
        for pick1 in (False, True):
            for pick2 in (False, True):
                a, b = base
                for (w, kf), pick in zip(self.maxes, (pick1, pick2), strict=True):
                    a = a + kk * w * (kf * f[0] if pick else d[0])
                    b = b + kk * w * (kf * f[1] if pick else d[1])
                out.append((a, b))
        return out


def _flat(x: np.ndarray, i: int):
    v = x[i]
    return float(v) if ndim(v) == 0 else float(np.ravel(v)[0])


@dataclass
class _GroupDecode:
    """One stage group's decode step: the step-independent operators, and the attention kernels."""

    group: StageGroup
    token: PassCost
    base_s: Any
    """Per step: the token operators' time plus the framework's (one micro-batch)."""
    base_j: Any
    """Per step: the token operators' dynamic energy."""
    kernels: list[Kernel]


def _regimes(kernels: list[Kernel]) -> tuple[int, list[tuple[float, float]]]:
    """(saturation length, regimes [from, to]) over which every kernel is affine in L: from the saturation
    length to each window, and beyond it."""
    start = max(k.saturation_len for k in kernels)
    cuts = sorted({k.window for k in kernels if k.window is not None and k.window >= start})
    regimes, lo = [], float(start)
    for w in cuts:
        regimes.append((lo, float(w)))
        lo = float(w + 1)
    regimes.append((lo, math.inf))
    return start, regimes


def decode(run: _Run) -> Phase | None:
    """The osl - 1 decode steps at KV lengths isl + 1 .. isl + osl - 1, summed in closed form."""
    sc = run.sc
    lo, hi = run.isl + 1.0, run.isl + run.osl - 1.0
    if all_(hi < lo):
        return None
    groups = sc.groups
    kernels = [run.kernels(g) for g in groups]
    start, regimes = _regimes([k for ks in kernels for k in ks])  # every stage's windows
    active = []  # (range, L1, L2) of each regime some configuration's steps reach
    for a, b in regimes:
        r_lo, r_hi = maximum(lo, a), minimum(hi, b)
        if not all_(r_hi < r_lo):
            active.append((r_lo, r_hi, a, b if math.isfinite(b) and b > a else a + _FAR))
    # one configuration: each group's token operators and its kernels at every regime's ends priced in one table
    merged = _one_configuration(run)
    parts, lines = [], []
    for i, g in enumerate(groups):
        token_ops = run.ops(g, 1.0, 1.0, with_attention=False, decode=True)
        if merged and kernels[i] and active:
            lengths = [(L1, L2) for _, _, L1, L2 in active]
            key = ("decode_lines", i, tuple(lengths))
            c = run.cost(token_ops + _line_ops(run, kernels[i], lengths), key)
            token = c.head(len(token_ops))
            n, k2 = len(token_ops), 2 * len(kernels[i])
            lines.append([_rows_lines(run, c, key, kernels[i], L1, L2, n + r * k2)
                          for r, (L1, L2) in enumerate(lengths)])
        else:
            token = run.cost(token_ops, ("decode", i))
            lines.append(None)
        parts.append(_GroupDecode(g, token, token.time_s + run.framework_s(g), token.energy_j, kernels[i]))
    steps = count(lo, hi)
    acc = _DecodeTotals(run, parts, steps)
    # contexts shorter than the saturation length: the kernels' shape still changes with L, step by step
    first = float(lo) if ndim(lo) == 0 else float(np.min(lo))
    for L in np.arange(first, float(start)):
        inside = (lo <= L) & (L <= hi)
        if any_(inside):
            acc.add_step(L, inside)
    for r, (r_lo, r_hi, L1, L2) in enumerate(active):
        acc.add_regime([ls[r] if ls is not None else _kernel_lines(run, p.group, p.kernels, L1, L2)
                        for p, ls in zip(parts, lines, strict=True)], r_lo, r_hi)
    return acc.phase()


_STEP_BLOCK = 1 << 20
"""Elements (KV lengths x configurations) of one block of step-by-step decode evaluation."""


class _DecodeTotals:
    """Accumulates the decode: each group's time at TDP and at the roofline's pace, its rows, and the latency.

    Per step, a group's time is t_g(L) at the roofline's pace, max(t_g, E_g / (TDP - idle)) at TDP; the step
    takes max(m x the slowest group, one trip through every stage). In closed form on each regime: with one
    stage, the group's sum; with m >= pp micro-batches, m x the sum of the slowest (the trip can never be
    longer); with one micro-batch, the trip; between the two (pp > 2 and fewer sequences than stages), step
    by step.
    """

    def __init__(self, run: _Run, parts: list[_GroupDecode], steps):
        self.run, self.parts, self.steps = run, parts, steps
        self.latency = 0.0
        self.kernel_rows: list[dict[str, dict[str, Any]]] = [{} for _ in parts]
        self.capped = [p.base_s * 0.0 for p in parts]  # sum over steps of each group's time at TDP
        self.roof = [p.base_s * 0.0 for p in parts]
        self.stepwise: list[tuple[Any, Any, Any]] = []  # (mask, lo, hi) left to sum step by step

    def _group_step(self, p: _GroupDecode, L):
        """(roofline time, time at TDP, kernel cost) of one group's step at KV length L."""
        run = self.run
        c = run.cost([k.op(run.mb, 1.0, L) for k in p.kernels], ("kernels", p.group.indices))
        t = p.base_s + c.time_s
        return t, _at_tdp(run, t, None if c.energy is None else p.base_j + c.energy_j), c

    def _latency_step(self, capped: list):
        run = self.run
        trip = sum(p.group.count * t for p, t in zip(self.parts, capped, strict=True))
        return np.maximum(run.m * _max(capped), trip) if run.sc.plan.pp > 1 else trip

    def add_step(self, L: float, inside):
        """One step at KV length L for the configurations ``inside``: rows, group times and latency."""
        capped = []
        for gi, p in enumerate(self.parts):
            t, tc, c = self._group_step(p, L)
            capped.append(tc)
            self.roof[gi] = self.roof[gi] + inside * t
            self.capped[gi] = self.capped[gi] + inside * tc
            rows = self.kernel_rows[gi]
            for i, k in enumerate(p.kernels):
                n = k.count * inside
                vals = {"flops": c.table.flops[i], "bytes": c.table.bytes[i], "weight_bytes": c.table.weight_bytes[i],
                        "time_s": c.times.time_s[i], "compute_s": c.times.compute_s[i],
                        "memory_s": c.times.memory_s[i], "overhead_s": c.times.overhead_s[i]}
                if c.energy is not None:
                    vals.update({f"e_{k_}": getattr(c.energy, k_)[i] for k_ in _ENERGY_PARTS})
                row = rows.setdefault(k.name, {"kind": k.kind})
                for key, v in vals.items():
                    row[key] = row.get(key, 0.0) + n * v
        self.latency = self.latency + np.where(inside, self._latency_step(capped), 0.0)

    def add_regime(self, lines: list[list[KernelLines]], lo, hi):
        """A regime of KV lengths [lo, hi] on which every kernel is affine in L, in closed form."""
        run = self.run
        n = count(lo, hi)
        roof_lines, cap_lines, group_capped = [], [], []
        for gi, (p, kls) in enumerate(zip(self.parts, lines, strict=True)):
            # t_g(L) = base + sum_k count_k (max(c_k, m_k) + o_k): one line per choice of term for each kernel
            combos = [(p.base_s + sum(kl.count * kl.overhead for kl in kls), 0.0)]
            for kl in kls:
                combos = [(a + kl.count * t[0], b + kl.count * t[1]) for a, b in combos for t in (kl.compute, kl.memory)]
            caps = []
            kes = [_KernelEnergy(run, kl) for kl in kls] if run.er is not None else []
            if run.er is not None:
                e_combos = [(p.base_j, 0.0)]
                for kl, ke in zip(kls, kes, strict=True):
                    e_combos = [(a + kl.count * x[0], b + kl.count * x[1]) for a, b in e_combos
                                for x in ke.lines(kl.flops, kl.bytes)]
                caps = [(a / run.power, b / run.power) for a, b in e_combos]
            roof_lines.append(combos)
            cap_lines.append(caps)
            roof_sum = sum_max([a for a, _ in combos], [b for _, b in combos], lo, hi)
            capped_sum = _sum_with_cap(combos, caps, lo, hi, roof_sum) if caps else roof_sum
            self.roof[gi] = self.roof[gi] + roof_sum
            self.capped[gi] = self.capped[gi] + capped_sum
            group_capped.append(capped_sum)
            rows = self.kernel_rows[gi]
            for j, kl in enumerate(kls):
                c, m = kl.compute, kl.memory
                time = sum_max2(c[0], c[1], m[0], m[1], lo, hi) + kl.overhead * n
                vals = {"flops": sum_line(*kl.flops, lo, hi), "bytes": sum_line(*kl.bytes, lo, hi),
                        "weight_bytes": sum_line(*kl.weight_bytes, lo, hi), "time_s": time,
                        "compute_s": sum_line(*c, lo, hi), "memory_s": sum_line(*m, lo, hi),
                        "overhead_s": kl.overhead * n}
                if run.er is not None:
                    ke = kes[j]
                    f, d = kl.flops, kl.bytes
                    maxes = [sum_max2(d[0], d[1], kf * f[0], kf * f[1], lo, hi) for _, kf in ke.maxes]
                    vals.update({f"e_{k}": v for k, v in ke.parts(vals["flops"], vals["bytes"], maxes).items()})
                row = rows.setdefault(kl.name, {"kind": kl.kind})
                for key, v in vals.items():
                    row[key] = row.get(key, 0.0) + kl.count * v
        if run.sc.plan.pp == 1:
            self.latency = self.latency + group_capped[0]
            return
        trip = sum(p.group.count * s for p, s in zip(self.parts, group_capped, strict=True))
        union = [x for g in range(len(self.parts)) for x in roof_lines[g] + cap_lines[g]]
        slowest = run.m * sum_max([a for a, _ in union], [b for _, b in union], lo, hi)
        full = run.m >= run.sc.plan.pp
        one = run.m == 1
        self.latency = self.latency + np.where(full, slowest, np.where(one, trip, 0.0))
        between = ~(full | one) & (hi >= lo)
        if any_(between):
            self.stepwise.append((between, lo, hi))

    def _stepwise_latency(self, mask, lo, hi):
        """The latency of the steps at KV lengths [lo, hi] where ``mask``, one step at a time (pipelines with
        1 < m < pp micro-batches): the lengths go on a leading axis, in blocks of at most ``_STEP_BLOCK``
        elements, so each block is one evaluation."""
        first = float(np.min(np.where(mask, lo, np.inf)))
        last = float(np.max(np.where(mask, hi, -1.0)))
        size = max(int(np.size(mask)), 1)
        block = max(1, _STEP_BLOCK // size)
        total = 0.0
        for start in np.arange(first, last + 1, block):
            L = np.arange(start, min(start + block, last + 1)).reshape((-1,) + (1,) * (self.run.ndim - 1))
            inside = mask & (lo <= L) & (L <= hi)
            if any_(inside):
                capped = [self._group_step(p, L)[1] for p in self.parts]
                total = total + np.where(inside, self._latency_step(capped), 0.0).sum(axis=0)
        return total

    def phase(self) -> Phase:
        run = self.run
        for mask, lo, hi in self.stepwise:
            self.latency = self.latency + self._stepwise_latency(mask, lo, hi)
        rows = []
        for gi, p in enumerate(self.parts):
            r = Rows.of(p.token, self.steps, run.framework_s(p.group))
            kr = self.kernel_rows[gi]
            if kr:
                r = _with_kernel_rows(r, kr, run.er is not None)
            rows.append(r)
        return _phase(run, [p.group for p in self.parts], rows, self.capped, self.roof, self.latency)


def _sum_with_cap(roof: list[tuple], cap: list[tuple], lo, hi, roof_only):
    """sum over [lo, hi] of max(roofline, cap); the cap's lines join only where they can exceed the roofline.

    Both are convex; if for some roofline line every cap line lies below it at both ends of the range, the
    cap (a maximum of lines) lies below the roofline throughout, and the roofline's sum ``roof_only`` stands.
    """
    ra, rb = [a for a, _ in roof], [b for _, b in roof]
    below = None
    for a_r, b_r in roof:
        ok = True
        for a_c, b_c in cap:
            ok = ok & (a_c + b_c * lo <= a_r + b_r * lo) & (a_c + b_c * hi <= a_r + b_r * hi)
        below = ok if below is None else (below | ok)
    if all_(below):
        return roof_only
    both = sum_max(ra + [a for a, _ in cap], rb + [b for _, b in cap], lo, hi)
    return np.where(below, roof_only, both)


def _with_kernel_rows(r: Rows, kernel_rows: dict[str, dict[str, Any]], with_energy: bool) -> Rows:
    """The token rows with the kernels' rows inserted where attention runs (before the output projection)."""
    at = next((i for i, n in enumerate(r.names) if n in ("mla_absorb_o", "out_proj")), len(r.names))
    r.insert(at, kernel_rows, with_energy)
    return r


def decode_step_s(run: _Run, L) -> tuple[Any, Any]:
    """(roofline, at TDP) time of one decode step at KV length ``L`` (arrays broadcast), from the whole
    operator list: the step-by-step reference of the closed form."""
    roof, capped = [], []
    for g in run.sc.groups:
        c = run.cost(run.ops(g, 1.0, L, decode=True), ("step", g.indices))
        t = c.time_s + run.framework_s(g)
        roof.append(t)
        capped.append(_at_tdp(run, t, c.energy_j))

    def step(ts: list):
        trip = sum(g.count * t for g, t in zip(run.sc.groups, ts, strict=True))
        return np.maximum(run.m * _max(ts), trip) if run.sc.plan.pp > 1 else trip

    return step(roof), step(capped)


# --- memory, energy, cost ------------------------------------------------------------------------------------


def memory_columns(run: _Run) -> dict[str, Any]:
    """The memory of the fullest chip of the plan, the largest batch, the fewest chips, and what binds."""
    sc, opts = run.sc, run.sc.memory
    usable = run.rates.mem_capacity_bytes * opts.gpu_memory_utilization
    # the sequences of a prompt share its K/V: the prompt once, each sequence's own tokens after it
    kept = kept_tokens(sc.spec, run.isl, run.seqs * (run.osl - 1) + 1, opts.block_size)
    needs = [need(load, run.replica_batch, run.isl, kept, opts) for load in sc.loads]
    totals = [n.total_bytes for n in needs]
    worst = np.argmax(np.stack(np.broadcast_arrays(*totals)), axis=0) if len(needs) > 1 else 0

    def pick(field: str):
        values = [getattr(n, field) for n in needs]
        return values[0] if len(values) == 1 else _select(values, worst)

    n = {f: pick(f) for f in ("weights_bytes", "kv_cache_bytes", "kv_cache_bytes_if_mha", "activation_bytes",
                              "comm_buffer_bytes")}
    total = pick("total_bytes") if len(needs) > 1 else needs[0].total_bytes
    fixed = n["weights_bytes"] + opts.runtime_overhead_bytes
    step = fixed + n["activation_bytes"] + n["comm_buffer_bytes"]
    if ndim(fixed) == 0 and ndim(step) == 0 and ndim(usable) == 0:
        binding = "weights" if fixed > usable else ("activations" if step > usable else "kv_cache")
    else:
        binding = np.where(fixed > usable, "weights", np.where(step > usable, "activations", "kv_cache"))
    per_replica = _max_min([max_sequences(load, run.isl, kept, usable, opts) for load in sc.loads])
    mc = min_chips(sc.plan_table, run.batch, run.isl, kept, usable, opts)
    fits = _all([t <= usable for t in totals])
    return {
        "memory.weights_bytes": n["weights_bytes"], "memory.kv_cache_bytes": n["kv_cache_bytes"],
        "memory.kv_cache_bytes_if_mha": n["kv_cache_bytes_if_mha"], "memory.activation_bytes": n["activation_bytes"],
        "memory.overhead_bytes": opts.runtime_overhead_bytes, "memory.total_per_chip_bytes": total,
        "memory.capacity_per_chip_bytes": run.rates.mem_capacity_bytes, "memory.usable_per_chip_bytes": usable,
        "memory.comm_buffer_bytes": n["comm_buffer_bytes"], "memory.fits": fits,
        "memory.binding": binding if ndim(binding) else str(binding),
        "memory.min_chips": mc.chips, "memory.min_plan.tp": mc.tp, "memory.min_plan.pp": mc.pp,
        "memory.min_plan.dp": mc.dp, "memory.max_batch": sc.plan.dp * per_replica,
    }


def _max_min(values: list):
    return values[0] if len(values) == 1 else np.minimum.reduce(np.broadcast_arrays(*values))


def _all(conds: list):
    out = conds[0]
    for c in conds[1:]:
        out = out & c
    return bool(out) if ndim(out) == 0 else out


def energy_columns(run: _Run, pre: Phase, dec: Phase | None, e2e, flops_per_chip) -> dict[str, Any]:
    sc, er = run.sc, run.er
    n = sc.plan.num_chips
    dec_latency = dec.latency_s if dec is not None else 0.0
    static_pre, static_dec = n * er.idle_w * pre.latency_s, n * er.idle_w * dec_latency
    dyn_pre = sum(pre.energy_j.values())
    dyn_dec = sum(dec.energy_j.values()) if dec is not None else 0.0
    prefill_j, decode_j = dyn_pre + static_pre, dyn_dec + static_dec
    total = prefill_j + decode_j
    tokens = run.batch * run.n * run.osl
    split = {k: pre.energy_j[k] + (dec.energy_j[k] if dec is not None else 0.0) for k in _ENERGY_PARTS}
    # at most TDP: a throttled chip draws exactly TDP, up to the rounding of energy / time
    scalars = (total, e2e, decode_j, dec_latency, flops_per_chip, prefill_j, pre.latency_s, er.tdp_w)
    if all(type(x) is float or (type(x) is np.float64) for x in scalars):  # one configuration: on floats
        total_, e2e_, dec_j, dec_s, flops_, pre_j, pre_s, tdp = (float(x) for x in scalars)
        avg = _minimum(total_ / (n * e2e_), tdp)
        dec_w = _minimum(dec_j / (n * dec_s), tdp) if dec_s > 0 else math.nan
        delivered = flops_ / e2e_ / 1e15
        w_per_pflops = avg / delivered if delivered > 0 else math.nan
        prefill_w = _minimum(pre_j / (n * pre_s), tdp)
    else:
        avg = np.minimum(total / (n * e2e), er.tdp_w)
        with np.errstate(divide="ignore", invalid="ignore"):
            dec_w = np.where(dec_latency > 0, np.minimum(decode_j / (n * np.where(dec_latency > 0, dec_latency, 1.0)),
                                                         er.tdp_w), np.nan)
            delivered = flops_per_chip / e2e / 1e15
            w_per_pflops = np.where(delivered > 0, avg / np.where(delivered > 0, delivered, 1.0), np.nan)
        prefill_w = np.minimum(prefill_j / (n * pre.latency_s), er.tdp_w)
    throttle = pre.throttled if dec is None else (pre.throttled | dec.throttled)
    return {
        "energy.joules_per_token": total / tokens, "energy.tokens_per_joule": tokens / total, "energy.total_j": total,
        "energy.prefill_j": prefill_j, "energy.decode_j": decode_j, "energy.output_tokens": tokens,
        "energy.average_power_w": avg, "energy.prefill_power_w": prefill_w,
        "energy.decode_power_w": dec_w, "energy.power_capped": throttle,
        "energy.split.compute_j": split["compute_j"], "energy.split.memory_j": split["dram_j"] + split["sram_j"],
        "energy.split.interconnect_j": split["interconnect_j"], "energy.split.static_j": static_pre + static_dec,
        "energy.split.dram_j": split["dram_j"], "energy.split.sram_j": split["sram_j"],
        "energy.split.overhead_j": split["overhead_j"], "energy.w_per_delivered_pflops": w_per_pflops,
        "energy.idle_w": er.idle_w, "energy.tdp_w": er.tdp_w, "energy.node_scale": er.node_scale,
        "energy.chip_overhead": er.chip_overhead,
    }


def _minimum(a: float, b: float) -> float:
    """``np.minimum`` of two floats (NaN if either is)."""
    return a if a <= b or a != a else b


_COST_FIELDS = ("usd_per_chip_hour", "chip_price_usd", "server_usd_per_chip", "network_usd_per_chip", "years",
                "electricity_usd_per_kwh", "pue", "hosting_usd_per_kw_month", "host_power_w_per_chip")


def cost_columns(run: _Run, o, e2e, throughput, average_power_w) -> dict[str, Any]:
    """Cloud or owned chip-hours, per hour, per million output tokens and per query (``infercast.cost``)."""
    sc = run.sc
    n = sc.plan.num_chips
    if o.usd_per_chip_hour is not None:
        per_chip_hour, capex, hour = o.usd_per_chip_hour, None, None
        mode = "cloud"
    else:
        if average_power_w is None:
            raise InfercastError(sc.extra.get("energy_unavailable", "the chip's power is unknown")
                                 + "; owned-hardware cost needs it: give --usd-per-chip-hour")
        capex = capex_per_chip_usd(run.rates, sc.system, o, sc.chip.id)
        hour = owned_chip_hour(capex, average_power_w, run.er.tdp_w, o)
        per_chip_hour, mode = hour.total_usd, "owned"
    per_hour = n * per_chip_hour
    out = {"cost.mode": mode, "cost.usd_per_chip_hour": per_chip_hour, "cost.usd_per_hour": per_hour,
           "cost.usd_per_million_tokens": per_hour / 3600 / throughput * 1e6,
           "cost.usd_per_query": per_hour / 3600 * e2e / run.batch,
           "cost.capex_usd": None if capex is None else n * capex}
    if hour is not None:
        out.update({"cost.chip_hour.capital_usd": hour.capital_usd, "cost.chip_hour.electricity_usd":
                    hour.electricity_usd, "cost.chip_hour.hosting_usd": hour.hosting_usd})
    out.update({f"cost.assumptions.{k}": getattr(o, k) for k in _COST_FIELDS})
    return out


# --- the call ----------------------------------------------------------------------------------------------------


class Columns(dict):
    """The estimate's flattened JSON keys mapped to values (floats, or arrays of the workload's shape), with
    the busiest chip's operator rows of each phase (``rows``) and why a part is unknown (``unavailable``)."""

    rows: dict[str, Rows]
    unavailable: dict[str, str]
    shape: tuple[int, ...]


def _promote(values: dict[str, Any], shape: tuple[int, ...]) -> dict[str, Any]:
    """Arrays reshaped to the full dimensionality (leading ones), so they broadcast the same everywhere."""
    out = {}
    for k, v in values.items():
        if ndim(v) and ndim(v) < len(shape):
            v = np.asarray(v).reshape((1,) * (len(shape) - ndim(v)) + np.shape(v))
        out[k] = v
    return out


def evaluate(scenario: Scenario, *, batch=1, isl=128, osl=128, rates: Mapping[str, Any] | None = None,
             efficiency: Mapping[str, Any] | None = None, cost: Mapping[str, Any] | None = None,
             beam_width: int = 1, n: int = 1) -> Columns:
    """Evaluate ``scenario`` at every configuration of the broadcast axes: ``batch`` (sequences, all replicas),
    ``isl`` and ``osl`` (prompt and output tokens), ``rates`` (``ChipRates`` fields, e.g. mem_bw_bytes_per_s,
    or peak_scale), ``efficiency`` (``Efficiency`` fields) and ``cost`` (``CostOptions`` fields), each a
    number or an array. ``beam_width`` (beam search) and ``n`` (parallel sampling) decode beam_width x n
    sequences per prompt, sharing its KV cache; the prompt returns n completions (the best beam each).
    Returns ``Columns``; a bad value is one ``InfercastError`` line naming it.
    """
    sc = scenario
    for flag, value in (("--beam-width", beam_width), ("--n", n)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 1024:
            raise InfercastError(f"{flag} must be a whole number from 1 to 1024, got {value!r}")
    axes = {"batch": _axis("--batch", batch), "isl": _axis("--isl", isl), "osl": _axis("--osl", osl)}
    rate_values = _values("chip rate", rates, {"mem_bw_bytes_per_s", "mem_capacity_bytes", "vector_flops_per_s",
                                               "compute_units", "sram_bytes", "tdp_w", "idle_w", "price_usd",
                                               "process_nm", "dram_j_per_bit", "link_j_per_bit",
                                               "node_energy_scale", "peak_scale", "sram_bw_bytes_per_s"})
    if np.any(np.asarray(rate_values.get("mem_bw_bytes_per_s", 1.0)) <= 0) or np.any(
            np.asarray(rate_values.get("peak_scale", 1.0)) <= 0):
        raise InfercastError("chip rate: bandwidth and compute must be positive")
    eff_values = _values("efficiency", efficiency, set(Efficiency.model_fields) - {"wave_quantization"})
    cost_values = _values("cost", cost, set(_COST_FIELDS))
    shape = np.broadcast_shapes(*(np.shape(v) for d in (axes, rate_values, eff_values, cost_values)
                                  for v in d.values()))
    axes, rate_values = _promote(axes, shape), _promote(rate_values, shape)
    eff_values, cost_values = _promote(eff_values, shape), _promote(cost_values, shape)
    context = sc.spec.max_position_embeddings
    if any_(axes["isl"] + axes["osl"] - 1 > context):
        bad = np.max(axes["isl"] + axes["osl"])
        raise InfercastError(f"isl + osl = {bad:.0f} exceeds {sc.spec.name}'s context of {context} tokens "
                             f"(+1 for the last token, which is never fed back); shorten --isl or --osl")
    r = sc.rates.with_values(**rate_values) if rate_values else sc.rates
    eff = _efficiency(sc.efficiency, eff_values)
    er = sc.energy_rates
    if er is not None and rate_values.keys() & {"tdp_w", "idle_w", "process_nm", "dram_j_per_bit",
                                                 "node_energy_scale"}:
        # the chip overhead is the base chip's (a what-if changes the chip, not how its logic spends energy)
        opts = sc.energy.model_copy(update={"chip_overhead": er.chip_overhead})
        er = energy_rates(r, opts, sc.chip.id, sc.gemm_max_16bit)
    run = _Run(sc, axes["batch"], axes["isl"], axes["osl"], r, eff, er, int(beam_width), int(n))
    run.ndim = 1 + len(shape)
    pre = prefill(run.for_phase(decode=False))
    dec = decode(run.for_phase(decode=True))
    cols = Columns()
    cols.shape = shape
    cols.unavailable = {}
    ttft = pre.latency_s
    dec_latency = dec.latency_s if dec is not None else 0.0
    if dec is not None and any_(run.osl == 1):
        dec_latency = np.where(run.osl > 1, dec_latency, 0.0)
    e2e = ttft + dec_latency
    steps = run.osl - 1
    one = not shape  # one configuration: the same arithmetic on floats
    if one:
        dec_latency = float(dec_latency)
        tpot = dec_latency / steps if steps > 0 else math.nan
        dec_tps = run.batch * run.n * steps / (dec_latency if dec_latency > 0 else 1.0) if steps > 0 else math.nan
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = np.where(steps > 0, dec_latency / np.where(steps > 0, steps, 1.0), np.nan)
            dec_tps = np.where(steps > 0, run.batch * run.n * steps / np.where(dec_latency > 0, dec_latency, 1.0),
                               np.nan)
    throughput = run.batch * run.n * run.osl / e2e
    peak = r.peak(sc.precision.gemm_math, sc.chip.id)
    p, plan, spec = sc.precision, sc.plan, sc.spec
    total, active = spec.params()
    cols.update({"model": spec.name, "hardware": sc.chip.id, "system": sc.system.id,
                 "parallel.tp": plan.tp, "parallel.pp": plan.pp, "parallel.ep": plan.ep, "parallel.dp": plan.dp,
                 "parallel.num_chips": plan.num_chips, "parallel.micro_batches": run.m,
                 "parallel.sequence_parallel": plan.sequence_parallel,
                 "workload.batch": run.batch, "workload.isl": run.isl, "workload.osl": run.osl,
                 "workload.beam_width": beam_width, "workload.n": n,
                 "workload.weight_dtype": p.weight, "workload.act_dtype": p.act, "workload.kv_dtype": p.kv,
                 "workload.weight_sparsity": sc.sparsity.weight, "workload.sparsity_pattern": sc.sparsity.pattern,
                 "workload.activation_sparsity": sc.sparsity.activation, "workload.moe_imbalance": sc.moe_imbalance,
                 "params.total": total, "params.active": active})
    cols.update(memory_columns(run))
    phases = {"prefill": pre, "decode": dec}
    for name, ph in phases.items():
        if ph is None:
            cols.update({f"{name}.latency_s": 0.0, f"{name}.flops": 0.0, f"{name}.bytes": 0.0,
                         f"{name}.bound": "memory", f"{name}.weight_bytes": 0.0})
            continue
        rows = ph.rows
        bound = _phase_bound(rows)
        if name == "decode" and any_(run.osl == 1):  # no decode step: as for a scalar osl of 1
            bound = np.where(run.osl == 1, "memory", bound)
        cols.update({f"{name}.latency_s": ph.latency_s if name == "prefill" else dec_latency,
                     f"{name}.flops": rows.total("flops"), f"{name}.bytes": rows.total("bytes"),
                     f"{name}.weight_bytes": rows.total("weight_bytes"), f"{name}.bound": bound})
    cols["decode.tpot_s"] = tpot
    cols["decode.tokens_per_s"] = dec_tps
    cols.update({"ttft_s": ttft, "e2e_latency_s": e2e, "throughput_tokens_per_s": throughput})
    if one and ndim(ttft) == 0 and ndim(peak) == 0 and ndim(r.mem_bw_bytes_per_s) == 0:
        dl = dec_latency if dec_latency > 0 else math.nan
        cols.update({"utilization.prefill_compute": float(cols["prefill.flops"] / (ttft * peak)),
                     "utilization.decode_compute": float(cols["decode.flops"] / (dl * peak)),
                     "utilization.decode_bandwidth": float(cols["decode.bytes"] / (dl * r.mem_bw_bytes_per_s))})
        for name, ph in phases.items():
            comm = 0.0 if ph is None else _comm_time(ph.rows)
            lat = float(cols[f"{name}.latency_s"])
            cols[f"communication_share.{name}"] = float(comm / lat) if lat > 0 else 0.0
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            dl = np.where(dec_latency > 0, dec_latency, np.nan)
            cols.update({"utilization.prefill_compute": cols["prefill.flops"] / (ttft * peak),
                         "utilization.decode_compute": cols["decode.flops"] / (dl * peak),
                         "utilization.decode_bandwidth": cols["decode.bytes"] / (dl * r.mem_bw_bytes_per_s)})
            for name, ph in phases.items():
                comm = 0.0 if ph is None else _comm_time(ph.rows)
                lat = cols[f"{name}.latency_s"]
                cols[f"communication_share.{name}"] = np.where(lat > 0, comm / np.where(lat > 0, lat, 1.0), 0.0)
    # the scenario's efficiency is frozen and kept; a what-if's (arrays) is this call's own
    cols.update(_prefixed("efficiency.", eff) if eff is sc.efficiency else {f"efficiency.{k}": v
                                                                            for k, v in dict(eff).items()})
    cols.update(_prefixed("comm.", sc.comm))
    average_power = None
    if er is not None:
        cols.update(energy_columns(run, pre, dec, e2e, cols["prefill.flops"] + cols["decode.flops"]))
        average_power = cols["energy.average_power_w"]
    else:
        cols.unavailable["energy"] = sc.extra.get("energy_unavailable", "energy is unknown")
    o = sc.cost.model_construct(**{**dict(sc.cost), **cost_values}) if cost_values else sc.cost
    try:
        cols.update(cost_columns(run, o, e2e, throughput, average_power))
    except InfercastError as exc:
        cols.unavailable["cost"] = str(exc)
    cols.rows = {k: v.rows for k, v in phases.items() if v is not None}
    for k, v in list(cols.items()):
        if isinstance(v, np.ndarray) and v.ndim == 0:
            cols[k] = v.item()
    return cols


def _prefixed(prefix: str, spec) -> dict[str, Any]:
    """A frozen spec's fields as columns under ``prefix``, kept per spec object."""
    return keep(_PREFIXED, (spec,), lambda: {f"{prefix}{k}": v for k, v in dict(spec).items()}, (prefix,))


_PREFIXED: dict[tuple, tuple] = {}


def _comm_time(rows: Rows):
    return _sum([t for t, k in zip(rows.time_s, rows.kinds, strict=True) if k in ("comm", "wait")])


def _phase_bound(rows: Rows):
    """The bound that takes the largest share of the phase's time."""
    sums = [0.0] * len(BOUNDS)
    for i, t in enumerate(rows.time_s):
        kind = rows.kinds[i]
        if kind in ("comm", "wait"):
            sums[3] = sums[3] + t
        elif kind == "power":
            sums[4] = sums[4] + t
        else:
            c, m, o = rows.compute_s[i], rows.memory_s[i], rows.overhead_s[i]
            if ndim(c) == 0 and ndim(m) == 0 and ndim(o) == 0:
                k = 2 if o > max(c, m) else (0 if c >= m else 1)
                sums[k] = sums[k] + t
            else:
                over = o > np.maximum(c, m)
                comp = ~over & (c >= m)
                for k, mask in ((0, comp), (2, over), (1, ~(over | comp))):
                    sums[k] = _add_where(sums[k], t, mask)
    if all(ndim(v) == 0 for v in sums):
        return BOUNDS[max(range(len(BOUNDS)), key=lambda k: (sums[k], -k))]
    # the first largest, as argmax over the stacked sums, without stacking them: a later bound takes a
    # configuration only with a strictly larger share (shares are never negative, so an empty one never does)
    shape = np.broadcast_shapes(*(np.shape(v) for v in sums))
    best = np.zeros(shape, dtype=np.intp)
    top = np.array(np.broadcast_to(sums[0], shape))
    for k in range(1, len(BOUNDS)):
        v = sums[k]
        if type(v) is float and v == 0.0:
            continue
        np.copyto(best, k, where=v > top)
        np.maximum(top, v, out=top)
    return np.array(BOUNDS)[best]


def _add_where(total, x, mask):
    """total + where(mask, x, 0), added in place where ``total`` is an array of the full shape (it is always
    one of ours: a sum this function or an addition made)."""
    if isinstance(total, np.ndarray) and (total.shape == mask.shape == np.shape(x) or total.shape == np.broadcast_shapes(
            total.shape, np.shape(x), mask.shape)):
        np.add(total, x, out=total, where=mask)
        return total
    return total + np.where(mask, x, 0.0)
