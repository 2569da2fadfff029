"""A resolved deployment: ``resolve(model, hardware, **options) -> Scenario``, the one place inputs are read.

A ``Scenario`` holds everything categorical about a deployment, validated: the model, the chip
and the system around it, the parallel plan, the precision of each tensor class, what the
chip makes of the declared sparsity, and the resolved efficiency, collective, memory, energy
and cost options. ``infercast.evaluate`` runs it over arrays of the numeric axes (batch and
sequence lengths, chip rates, efficiencies, prices); every front end (estimate, compare,
simulate, fleet, validate, calibrate, claims, sweep, search, the web API) builds its scenarios
here and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cache, cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from infercast.calibration import Calibration, comm_for, efficiency_for, network_efficiency
from infercast.cost import CostOptions
from infercast.cost import merge_options as cost_options
from infercast.energy import EnergyOptions, EnergyRates, energy_rates
from infercast.energy import merge_options as energy_options
from infercast.errors import InfercastError, did_you_mean, with_overrides
from infercast.formats import SCHEMES, element_bytes, get_format
from infercast.framework import FrameworkRef, check_runs, resolve_framework
from infercast.hardware import Chip, is_catalog_id, load_chip
from infercast.keep import keep
from infercast.memory import MemoryOptions, PlanTable, StageLoad, plan_table, share_of_free, stage_loads
from infercast.model import ModelSpec, is_network_preset, is_preset, load_model
from infercast.ops import Attention, Precision
from infercast.parallel import CommOptions, Plan, Stage, make_plan, p2p_tier, stages_of
from infercast.roofline import ChipRates, Efficiency
from infercast.sparsity import Sparsity, SparsityEffect, effect_on, make_sparsity
from infercast.system import System, default_system, load_system
from infercast.tiers import Offload, parse_offload

if TYPE_CHECKING:
    from infercast.design import Design
    from infercast.networks import Network

ATTENTION_KINDS = ("flash", "flash-per-head", "materialized")


@dataclass(frozen=True)
class StageGroup:
    """Pipeline stages whose chips do the same work: one representative and how many there are."""

    stage: Stage
    count: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Scenario:
    """One deployment, resolved: built by ``resolve`` only, read by ``evaluate`` (a decoder) or
    ``infercast.passes`` (a non-decoder model, whose ``network`` is set and ``spec`` None)."""

    spec: ModelSpec
    chip: Chip
    system: System
    plan: Plan
    precision: Precision
    sparsity: Sparsity
    sparsity_effect: SparsityEffect | None
    efficiency: Efficiency
    comm: CommOptions
    memory: MemoryOptions
    energy: EnergyOptions
    cost: CostOptions
    attention: Attention
    moe_imbalance: float
    micro_batches: int | None
    """Micro-batches in flight with pp > 1; None: min(pp, sequences per replica)."""
    rates: ChipRates
    warnings: tuple[str, ...] = ()
    """What the inputs imply that the user may not have meant (one line each)."""
    framework: FrameworkRef = field(default_factory=lambda: resolve_framework(None))
    """The inference framework (``--framework NAME[@VERSION]``): its profile set the defaults above."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    network: Network | None = None
    """A non-decoder model (encoder, CNN, diffusion pipeline) run as passes."""
    offload: Offload | None = None
    """Tensors placed on memory tiers beyond the chip's own (``infercast.tiers``)."""

    @cached_property
    def stages(self) -> list[Stage]:
        return _stages(self.spec, self.plan, self.moe_imbalance)

    @cached_property
    def groups(self) -> list[StageGroup]:
        """Stages grouped by the work of their chips (layers, dense layers, embedding, head, p2p link)."""
        keys: dict[tuple, list[Stage]] = {}
        for s in self.stages:
            link = None if s.last else p2p_tier(self.plan, self.system, s.index).name
            keys.setdefault((s.layers, s.spec.first_dense_layers, s.first, s.last, link), []).append(s)
        return [StageGroup(v[0], len(v), tuple(x.index for x in v)) for v in keys.values()]

    @cached_property
    def loads(self) -> tuple[StageLoad, ...]:
        return stage_loads(self.spec, self.plan, self.precision, self.attention)

    @cached_property
    def plan_table(self) -> PlanTable:
        """Every tp x pp replica plan of this model on this chip kind (for min_chips)."""
        max_tp = self.system.chips_per_node if self.system.chips_per_node > 1 else 8
        return plan_table(self.spec, self.precision, self.attention, max_tp)

    @cached_property
    def energy_rates(self) -> EnergyRates | None:
        """The chip's energy coefficients, or None where a figure is unknown (``extra['energy_unavailable']``)."""
        basis = self.power_basis

        def make() -> tuple[EnergyRates | None, str | None]:
            try:
                return energy_rates(self.rates, self.energy, self.chip.id, self.gemm_max_16bit, basis), None
            except InfercastError as exc:
                return None, str(exc)

        rates, why = keep(_ENERGY_RATES, (self.rates,), make, (self.energy, self.chip.id, self.gemm_max_16bit,
                                                              basis and basis[1:]))
        if why is not None:
            self.extra["energy_unavailable"] = why
        return rates

    def phase_efficiency(self, eff: Efficiency, decode: bool) -> Efficiency:
        """``eff`` for a prefill pass or a decode step: a kernel of a step the framework replays from CUDA
        graphs costs the graph's per-kernel time (``Efficiency.for_steps``)."""
        p = self.framework.profile
        return eff.for_steps(p.cuda_graphs.value if decode else p.prefill_graphs.value)

    @property
    def power_basis(self) -> tuple[ChipRates, float, str] | None:
        """(rates, calibrated 16-bit GEMM efficiency, id) of the chip whose energy per operation this chip shares
        (``hardware.PowerBasis``); None for a chip whose own TDP is what its best GEMM draws."""
        pb = self.chip.energy.power_basis if self.chip.energy is not None else None
        if pb is None:
            return None
        basis = load_chip(pb.chip)
        return ChipRates.of(basis), efficiency_for(basis, self.extra.get("calibration")).gemm_max, basis.id

    @property
    def gemm_max_16bit(self) -> float:
        """The calibrated efficiency of a large 16-bit GEMM on this chip (the default chip overhead's basis):
        the family's fit, before any user override of this scenario."""
        return efficiency_for(self.chip, self.extra.get("calibration")).gemm_max

    @property
    def num_chips(self) -> int:
        return self.plan.num_chips


_ENERGY_RATES: dict[tuple, tuple] = {}
"""Energy rates by (chip rates, options, chip, GEMM efficiency); the rates are kept so that ids stay theirs."""


@cache
def _stages(spec: ModelSpec, plan: Plan, moe_imbalance: float) -> list[Stage]:
    return stages_of(spec, plan, moe_imbalance=moe_imbalance)


@cache
def _precision(spec: ModelSpec, weight: str, act: str, kv: str, expert: str | None = None) -> Precision:
    return Precision.for_model(spec, weight, act, kv, expert)


def resolve_precision(spec: ModelSpec, dtype: str | None = None, weight_dtype: str | None = None,
                      act_dtype: str | None = None, kv_cache_dtype: str | None = None,
                      quantization: str | None = None, expert_dtype: str | None = None) -> Precision:
    """``dtype`` sets all three tensor classes, a ``quantization`` scheme the weights (and, for W8A8
    or W4A4 schemes, the activations); the specific flags override ``dtype`` (default fp16). A weight
    format that contradicts the scheme is an error, not a silent choice. ``expert_dtype`` stores an MoE
    model's routed experts in their own format."""
    base = get_format(dtype, "--dtype").name if dtype else "fp16"
    weight, act = base, base
    if quantization is not None:
        scheme = quantization.lower()
        if scheme not in SCHEMES:
            raise InfercastError(f"--quantization: unknown scheme '{quantization}'{did_you_mean(scheme, SCHEMES)}"
                                 f"; use one of {', '.join(SCHEMES)}")
        weight, scheme_act = SCHEMES[scheme]
        act = scheme_act or act
        if weight_dtype is not None and get_format(weight_dtype, "--weight-dtype").name != weight:
            raise InfercastError(f"--weight-dtype {weight_dtype} contradicts --quantization {quantization}, which "
                                 f"stores weights as {weight}; drop one of the two")
    if weight_dtype is not None:
        weight = get_format(weight_dtype, "--weight-dtype").name
    if act_dtype is not None:
        act = get_format(act_dtype, "--act-dtype").name
    kv = get_format(kv_cache_dtype, "--kv-cache-dtype").name if kv_cache_dtype else base
    if get_format(act).math is None:
        raise InfercastError(f"--act-dtype {act}: a weight quantization scheme, not an activation format; use "
                             f"fp16, bf16, fp8, int8 or fp4")
    if get_format(kv).math is None:
        raise InfercastError(f"--kv-cache-dtype {kv}: a weight quantization scheme, not a cache format; use "
                             f"fp16, bf16, fp8 or int8")
    element_bytes(weight, "--weight-dtype")
    expert = None
    if expert_dtype is not None:
        if not spec.is_moe:
            raise InfercastError(f"--expert-dtype {expert_dtype}: {spec.name} is a dense model; it has no experts "
                                 f"(use --weight-dtype)")
        expert = get_format(expert_dtype, "--expert-dtype").name
    return _precision(spec, weight, act, kv, expert)


def positive_int(flag: str, value) -> int:
    """``value`` as an int of at least 1, or a one-line error naming ``flag``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InfercastError(f"{flag} must be a whole number of at least 1, got {value!r}")
    return int(value)


def load_hardware(hardware: str | Chip | Design, changes: dict[str, Any] | None = None) -> Chip:
    """A catalog chip by id, or through ``infercast.design`` anything else: an alias, a chip YAML, a design (id,
    YAML or object), with the figures ``changes`` names changed (--chip)."""
    if not changes and isinstance(hardware, Chip):
        return hardware
    if not changes and isinstance(hardware, str) and is_catalog_id(hardware):
        return load_chip(hardware)
    from infercast.design import load_hardware as load  # designs and what-ifs: imported when asked for

    return load(hardware, changes)


def resolve_system(hardware: str | Chip | Design | None, system: str | System | None, num_chips: int | None,
                   nodes: int | None, plan_chips: int, changes: dict[str, Any] | None = None) -> tuple[Chip, System]:
    """The chip (a catalog chip, a chip YAML or a design, with the figures ``changes`` names changed: --chip)
    and the system: a named system (scaled to ``nodes``), or a default one of ``num_chips`` chips (the plan's
    count when not given) for the chip."""
    if system is not None:
        sys_ = system if isinstance(system, System) else load_system(system)
        if nodes is not None:
            sys_ = sys_.with_nodes(positive_int("--nodes", nodes))
        held = load_hardware(sys_.chip)
        if hardware is not None:
            other = load_hardware(hardware)
            if other.id != held.id:
                raise InfercastError(f"--hardware {other.id} conflicts with --system {sys_.id}, which holds {held.id}")
        if changes:
            held = load_hardware(held, changes)
        if num_chips is not None and positive_int("--num-chips", num_chips) > sys_.num_chips:
            raise InfercastError(f"--num-chips {num_chips}: system {sys_.id} has {sys_.num_chips}; add --nodes")
        return held, sys_
    if hardware is None:
        raise InfercastError("give --hardware CHIP (with --num-chips N) or --system NAME")
    if nodes is not None:
        raise InfercastError("--nodes scales a named --system; with --hardware give --num-chips")
    chip = load_hardware(hardware, changes)
    n = positive_int("--num-chips", num_chips) if num_chips is not None else plan_chips
    return chip, default_system(chip, n)


def resolve(
    model: str | ModelSpec,
    hardware: str | Chip | Design | None = None,
    *,
    chip: dict[str, Any] | None = None,
    system: str | System | None = None,
    num_chips: int | None = None,
    nodes: int | None = None,
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
    weight_sparsity: float | None = None,
    sparsity_pattern: str | None = None,
    activation_sparsity: float | None = None,
    sparse_storage: str | None = None,
    moe_imbalance: float = 1.0,
    energy: EnergyOptions | dict[str, float] | None = None,
    cost: CostOptions | dict[str, float] | None = None,
    usd_per_chip_hour: float | None = None,
    calibration: Calibration | str | None = None,
    offload: Offload | str | dict | None = None,
    framework: str | FrameworkRef | None = None,
) -> Scenario:
    """Resolve and validate a deployment; every bad input is one ``InfercastError`` line naming the flag.

    ``efficiency``, ``memory``, ``comm``, ``energy`` and ``cost`` override fields of their defaults (a
    full object or a dict of some fields); the efficiency and collective defaults come from
    ``calibration`` (a profile or its path; the shipped fit by default) for the chip under ``framework``
    (``NAME[@VERSION]``, generic by default), whose profile also gives the attention kernel, the
    all-reduce's floor and the engine's memory defaults. ``usd_per_chip_hour`` prices chips at a cloud rate
    instead of as owned hardware. ``offload`` places tensors on memory tiers (``infercast.tiers.parse_offload``).
    A non-decoder model (``infercast.networks``) runs data-parallel: one replica per chip, ``dp`` (or
    ``num_chips``) of them, its kernels as the network profile and ``--eager`` say (no framework profile).

    A deployment named by catalog ids and plain values alone is kept: asked again, the same frozen Scenario
    comes back (with what evaluating it keeps per scenario), as a loop over workloads asks for it.
    """
    args = locals()
    if not _keepable(args):
        return _resolve(**args)
    # each value with its type: True and 1, or 1 and 1.0, are equal keys but not the same argument
    return _resolve_kept(tuple((k, type(v), v) for k, v in args.items()))


@lru_cache(maxsize=1024)
def _resolve_kept(items: tuple) -> Scenario:
    return _resolve(**{k: v for k, _, v in items})


_PLAIN = (str, int, float, bool, type(None))


def _keepable(args: dict[str, Any]) -> bool:
    """Whether ``resolve``'s arguments may be kept: the model and chip are catalog ids (files of the package, which
    do not change while it runs), no system, calibration file or chip change is named, and every other argument is
    a plain value (not a dict or object the caller could change)."""
    if not (is_preset(args["model"]) and isinstance(args["hardware"], str) and is_catalog_id(args["hardware"])):
        return False
    if args["system"] is not None or args["calibration"] is not None or args["chip"] is not None:
        return False
    return all(type(v) in _PLAIN or (type(v) is tuple and all(type(x) is int for x in v)) for v in args.values())


def _resolve(model, hardware, *, chip, system, num_chips, nodes, dtype, weight_dtype, act_dtype, kv_cache_dtype,
             quantization, expert_dtype, attention, efficiency, memory, comm, tp, pp, ep, dp, pp_stages,
             sequence_parallel, micro_batches, weight_sparsity, sparsity_pattern, activation_sparsity,
             sparse_storage, moe_imbalance, energy, cost, usd_per_chip_hour, calibration, offload,
             framework) -> Scenario:
    if not isinstance(model, (str, ModelSpec)) or is_network_preset(model):
        from infercast.networks import load_network  # imported when a network is asked for: a fast CLI

        net = model if not isinstance(model, str) else load_network(model)
        if tp != 1 or pp != 1 or ep != 1 or pp_stages or sequence_parallel or micro_batches is not None:
            raise InfercastError(f"{net.id} is {'an' if net.kind == 'encoder' else 'a'} {net.kind} model: it runs "
                                 f"one replica per chip; drop --tp/--pp/--ep and give --dp or --num-chips")
        if quantization is not None or kv_cache_dtype is not None:
            raise InfercastError(f"{'--quantization' if quantization else '--kv-cache-dtype'} applies to decoders; "
                                 f"{net.id} takes --dtype, --weight-dtype and --act-dtype")
        if num_chips is not None and dp == 1 and system is None:
            dp = positive_int("--num-chips", num_chips)
        spec, plan_chips = None, positive_int("--dp", dp)
    else:
        net, spec = None, model if isinstance(model, ModelSpec) else load_model(model)
        plan_chips = tp * pp * dp
    if net is not None:
        if framework is not None:
            raise InfercastError(f"--framework applies to decoders' serving engines; {net.id} runs as the network "
                                 f"profile says (add --eager for PyTorch eager): drop --framework")
        attention = attention or "flash"
        if attention not in ("flash", "materialized"):
            raise InfercastError(f"--attention must be 'flash' or 'materialized' (got {attention!r})")
        return _resolve_network(net, hardware, system, num_chips, nodes, plan_chips, dtype, weight_dtype, act_dtype,
                                weight_sparsity, sparsity_pattern, activation_sparsity, sparse_storage, efficiency,
                                memory, energy, cost, usd_per_chip_hour, calibration, offload, chip, attention)
    for flag, value in (("--tp", tp), ("--pp", pp), ("--ep", ep), ("--dp", dp)):
        positive_int(flag, value)
    fw = resolve_framework(framework)
    if attention is None:
        attention = fw.profile.attention.value
    if attention not in ATTENTION_KINDS:
        raise InfercastError(f"--attention must be one of {', '.join(ATTENTION_KINDS)} (got {attention!r})")
    imbalance = _moe_imbalance(spec, moe_imbalance)
    sparsity = make_sparsity(weight_sparsity, sparsity_pattern, activation_sparsity, sparse_storage)
    chip, sys_ = resolve_system(hardware, system, num_chips, nodes, plan_chips, chip)
    check_runs(fw, chip.id, chip.vendor)
    p = resolve_precision(spec, dtype, weight_dtype, act_dtype, kv_cache_dtype, quantization, expert_dtype)
    for fmt in (p.gemm_math, p.attention_math, p.expert_math):
        chip.native_format(fmt)  # the chip runs the formats (or a wider one): else one line naming the key
    rates = ChipRates.of(chip)
    effect = None if sparsity.is_dense else effect_on(chip, sparsity, p.dense_layer_bits)
    if effect is not None:  # the linear layers' math and weight bytes as the chip makes of the sparsity
        p = replace(p, layer_weight_bytes=effect.weight_bits / 8, layer_math_density=effect.math_density,
                    dense_layer_weight_bytes=p.layer_weight_bytes)
    plan = make_plan(spec, tp=tp, pp=pp, ep=ep, dp=dp, stages=tuple(pp_stages) if pp_stages else None,
                     sequence_parallel=sequence_parallel)
    warnings = []
    if plan.num_chips > sys_.num_chips:
        raise InfercastError(f"the plan needs tp x pp x dp = {plan.num_chips} chips but system {sys_.id} has "
                             f"{sys_.num_chips}; use --nodes or a larger system")
    if num_chips is not None and plan.num_chips != num_chips:
        raise InfercastError(f"--num-chips {num_chips} but the plan tp x pp x dp = {plan.num_chips} uses "
                             f"{plan.num_chips}; set --tp/--pp/--dp so their product is {num_chips}, or drop "
                             f"--num-chips")
    if system is not None and num_chips is None and plan.num_chips < sys_.num_chips:
        warnings.append(f"the plan uses {plan.num_chips} of system {sys_.id}'s {sys_.num_chips} chips; energy and "
                        f"cost count those {plan.num_chips}")
    if micro_batches is not None:
        positive_int("--micro-batches", micro_batches)
        if plan.pp == 1 and micro_batches > 1:
            raise InfercastError("--micro-batches splits a batch over pipeline stages; it needs --pp above 1")
    eff = with_overrides(efficiency_for(chip, calibration, fw.name), efficiency, "--efficiency ")
    floor = fw.profile.allreduce.floor_s(plan.tp)
    base_comm = comm_for(calibration)
    if floor is not None:
        base_comm = base_comm.model_copy(update={"allreduce_floor_s": floor})
    comm_opts = with_overrides(base_comm, comm, "--comm ")
    engine = fw.profile.engine
    mem_opts = with_overrides(_memory_defaults(engine), memory, "memory ")
    given = memory.model_fields_set if isinstance(memory, MemoryOptions) else set(memory or {})
    if engine.kv_free_fraction is not None and "gpu_memory_utilization" not in given:
        share = share_of_free(stage_loads(spec, plan, p, attention), rates.mem_capacity_bytes,
                              engine.kv_free_fraction.value, mem_opts)
        if share is not None:
            mem_opts = mem_opts.model_copy(update={"gpu_memory_utilization": share})
    e_opts = energy_options(energy)
    if usd_per_chip_hour is not None:
        cost = {**(cost.model_dump() if isinstance(cost, CostOptions) else cost or {}),
                "usd_per_chip_hour": usd_per_chip_hour}
    c_opts = cost_options(cost)
    return Scenario(spec=spec, chip=chip, system=sys_, plan=plan, precision=p, sparsity=sparsity, sparsity_effect=effect,
                    efficiency=eff, comm=comm_opts, memory=mem_opts, energy=e_opts, cost=c_opts, attention=attention,
                    moe_imbalance=imbalance, micro_batches=micro_batches, rates=rates, warnings=tuple(warnings),
                    framework=fw, extra={"calibration": calibration}, offload=parse_offload(offload))


def _resolve_network(net: Network, hardware, system, num_chips, nodes, dp: int, dtype, weight_dtype, act_dtype,
                     weight_sparsity, sparsity_pattern, activation_sparsity, sparse_storage, efficiency, memory,
                     energy, cost, usd_per_chip_hour, calibration, offload, changes, attention="flash") -> Scenario:
    """A non-decoder model's deployment: ``dp`` replicas of one chip each, the formats of its weights and
    activations, its attention kernels, and the same efficiency, memory, energy and cost options as a decoder's;
    the tensor-core ceilings are the network profile's for the chip's family (``calibration.network_efficiency``)."""
    chip, sys_ = resolve_system(hardware, system, num_chips, nodes, dp, changes)
    if dp > sys_.num_chips:
        raise InfercastError(f"--dp {dp} exceeds system {sys_.id}'s {sys_.num_chips} chips")
    base = get_format(dtype, "--dtype").name if dtype else "fp16"
    weight = get_format(weight_dtype, "--weight-dtype").name if weight_dtype else base
    act = get_format(act_dtype, "--act-dtype").name if act_dtype else base
    for fmt, flag in ((weight, "--weight-dtype"), (act, "--act-dtype")):
        if get_format(fmt).math is None:
            raise InfercastError(f"{flag} {fmt}: a quantization scheme; {net.id} takes plain formats (fp32, bf16, "
                                 f"fp16, fp8, int8, fp4)")
    p = Precision(weight, act, act)
    chip.native_format(p.gemm_math)
    sparsity = make_sparsity(weight_sparsity, sparsity_pattern, activation_sparsity, sparse_storage)
    effect = None if sparsity.is_dense else effect_on(chip, sparsity, p.dense_layer_bits)
    if effect is not None:
        p = replace(p, layer_weight_bytes=effect.weight_bits / 8, layer_math_density=effect.math_density,
                    dense_layer_weight_bytes=p.layer_weight_bytes)
    if usd_per_chip_hour is not None:
        cost = {**(cost.model_dump() if isinstance(cost, CostOptions) else cost or {}),
                "usd_per_chip_hour": usd_per_chip_hour}
    return Scenario(spec=None, chip=chip, system=sys_, plan=Plan(dp=dp), precision=p, sparsity=sparsity,
                    sparsity_effect=effect, efficiency=with_overrides(
                        network_efficiency(efficiency_for(chip, calibration), chip, net.kind, p.gemm_math), efficiency,
                        "--efficiency "),
                    comm=comm_for(calibration), memory=with_overrides(MemoryOptions(), memory, "memory "),
                    energy=energy_options(energy), cost=cost_options(cost), attention=attention, moe_imbalance=1.0,
                    micro_batches=None, rates=ChipRates.of(chip), extra={"calibration": calibration}, network=net,
                    offload=parse_offload(offload))


def _memory_defaults(engine) -> MemoryOptions:
    """The engine's defaults of the memory model (its memory share, token budget and sequences), kept per engine
    profile (frozen, loaded once)."""
    return keep(_MEMORY_DEFAULTS, (engine,), lambda: MemoryOptions(
        gpu_memory_utilization=engine.gpu_memory_utilization.value,
        max_num_batched_tokens=int(engine.max_num_batched_tokens.value), max_num_seqs=int(engine.max_num_seqs.value)))


_MEMORY_DEFAULTS: dict[int, tuple[Any, MemoryOptions]] = {}


def _moe_imbalance(spec: ModelSpec, value) -> float:
    """The busiest expert's tokens over the mean: at least 1, at most E / k (every token routed to it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 1:
        raise InfercastError(f"--moe-imbalance must be at least 1 (the busiest expert's tokens over the mean) and "
                             f"finite, got {value!r}")
    if spec.is_moe and value > spec.num_experts / spec.experts_per_token:
        top = spec.num_experts / spec.experts_per_token
        raise InfercastError(f"--moe-imbalance {value:g} exceeds {spec.name}'s {spec.num_experts} experts / "
                             f"{spec.experts_per_token} per token = {top:g}, where every token reaches the busiest "
                             f"expert")
    return float(value)

