"""Parallel plans (TP, PP, EP, DP), collectives (alpha-beta), and each chip's share of the work.

Collectives follow the alpha-beta model (Hockney 1994; Thakur, Rabenseifner & Gropp 2005,
"Optimization of Collective Communication Operations in MPICH"): a message of S bytes among
n chips costs a latency term (hops x alpha) plus a bandwidth term (bytes each chip sends / B):

    ring all-reduce     2 (n-1) alpha + 2 (n-1)/n S / B
    tree all-reduce     2 ceil(log2 n) alpha + 2 S / B        (double binary tree, as NCCL)
    all-gather, reduce-scatter (S = the full result)   (n-1) alpha + (n-1)/n S / B
    all-to-all (S = what each chip holds)              (n-1) alpha + (n-1)/n S / B
    point-to-point      alpha + S / B

plus a fixed launch cost per collective. All-reduce picks the faster of ring and tree for the
message size, as NCCL's tuner does (it predicts each algorithm's time with a model of this
shape and takes the minimum). A group spanning nodes runs hierarchically: reduce-scatter in
the node, all-reduce across nodes on 1/n_local of the data, all-gather in the node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from infercast.arrays import minimum, num
from infercast.errors import InfercastError
from infercast.formats import element_bytes
from infercast.model import ModelSpec
from infercast.ops import MoeShard, Op, Precision
from infercast.system import System, Tier


class CommOptions(BaseModel):
    """Achievable fractions and fixed costs of collectives; every field a documented assumption. The fitted
    fields have no default here: they come from the calibration profile (``infercast.calibration``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bandwidth: float = Field(gt=0, le=1)
    """Fraction of a tier's per-direction bandwidth a collective reaches. Fitted (the calibration
    profile's ``comm``); its prior: nccl-tests all_reduce_perf reports bus bandwidth of about
    230 GB/s on DGX A100 (300 GB/s NVLink per direction) and about 350-370 GB/s on DGX H100
    (450 GB/s), 0.77-0.82 of the link."""
    launch_s: float = Field(ge=0, le=1.0)
    """Fixed cost of one collective. Fitted (the profile's ``comm``); its prior: NCCL's baseLat for
    ring with the LL protocol (6.6 us, src/graph/tuning.cc)."""
    host_staging: float = Field(default=2.0, ge=1)
    """Cost multiplier where a tier stages through host memory (GPUs without peer-to-peer, such as
    the RTX 4090): every byte crosses PCIe twice (device to host, host to device) and every hop
    pays two PCIe latencies."""
    allreduce_floor_s: float | None = Field(default=None, ge=0, le=1.0)
    """Time of a small all-reduce within a node under the framework's implementation (a custom one-shot
    kernel measures 4-10 us on H100, framework-overheads.md): it replaces the launch and per-hop latency
    terms, the bandwidth term stays (two-shot: 2 (n-1)/n S / B). None: NCCL's ring or tree."""
    overlap: float = Field(default=0.0, ge=0, le=1)
    """Fraction of collective time hidden behind compute. 0 by default: vLLM and TensorRT-LLM run
    the tensor-parallel all-reduces of decode in series with the GEMMs; overlapping them needs
    kernels such as Flux or TRT-LLM's UserBuffers."""


def _beta(tier: Tier, opts: CommOptions) -> tuple[float, float]:
    """(alpha seconds per hop, achievable bytes/s per direction) of a tier."""
    bw, lat = tier.bandwidth_bytes_per_s_per_direction.value, tier.latency_s.value
    if bw is None or lat is None:
        raise InfercastError(f"tier '{tier.name}': bandwidth and latency must be known for collectives")
    stage = opts.host_staging if tier.topology == "host" else 1.0
    return lat * stage, bw * opts.bandwidth / stage


def allreduce_s(size_bytes, n: int, tier: Tier, opts: CommOptions):
    """Time of an all-reduce of ``size_bytes`` among ``n`` chips on one tier (faster of ring and tree)."""
    if n <= 1:
        return 0.0 * size_bytes
    alpha, B = _beta(tier, opts)
    if opts.allreduce_floor_s is not None and tier.topology != "host":
        return opts.allreduce_floor_s + 2 * (n - 1) / n * size_bytes / B
    ring = 2 * (n - 1) * alpha + 2 * (n - 1) / n * size_bytes / B
    tree = 2 * math.ceil(math.log2(n)) * alpha + 2 * size_bytes / B
    return opts.launch_s + minimum(ring, tree)


def allgather_s(size_bytes, n: int, tier: Tier, opts: CommOptions):
    """All-gather (or reduce-scatter) whose full result is ``size_bytes``."""
    if n <= 1:
        return 0.0 * size_bytes
    alpha, B = _beta(tier, opts)
    return opts.launch_s + (n - 1) * alpha + (n - 1) / n * size_bytes / B


def all_to_all_s(size_bytes, n: int, tier: Tier, opts: CommOptions):
    """All-to-all where each chip holds ``size_bytes`` and keeps 1/n of it."""
    return allgather_s(size_bytes, n, tier, opts)


def p2p_s(size_bytes, tier: Tier, opts: CommOptions):
    alpha, B = _beta(tier, opts)
    return opts.launch_s + alpha + size_bytes / B


def group_allreduce_s(size_bytes, n: int, system: System, opts: CommOptions):
    """All-reduce among ``n`` consecutive chips of ``system``: one tier, or hierarchical across nodes."""
    local = system.chips_per_node
    if n <= local:
        return allreduce_s(size_bytes, n, system.tier_for(n), opts)
    if n % local:
        raise InfercastError(f"a group of {n} chips spanning nodes must be a multiple of {local} chips per node")
    intra, inter = system.tier_for(local), system.tier_for(n)
    across = opts if opts.allreduce_floor_s is None else opts.model_copy(update={"allreduce_floor_s": None})
    return (2 * allgather_s(size_bytes, local, intra, opts)
            + allreduce_s(size_bytes / local, n // local, inter, across))  # a custom all-reduce stays in a node


def group_allgather_s(size_bytes, n: int, system: System, opts: CommOptions):
    """All-gather (or reduce-scatter) of a ``size_bytes`` result among ``n`` consecutive chips: one tier,
    or hierarchical across nodes (across nodes on 1/n_local of the result, then within each node)."""
    local = system.chips_per_node
    if n <= local:
        return allgather_s(size_bytes, n, system.tier_for(n), opts)
    if n % local:
        raise InfercastError(f"a group of {n} chips spanning nodes must be a multiple of {local} chips per node")
    return (allgather_s(size_bytes / local, n // local, system.tier_for(n), opts)
            + allgather_s(size_bytes, local, system.tier_for(local), opts))


# --- plans -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1
    stages: tuple[int, ...] = ()
    """Layers per pipeline stage (sums to the model's layers)."""
    sequence_parallel: bool = False

    @property
    def num_chips(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def ep_in_tp(self) -> int:
        """Expert-parallel chips inside the tensor-parallel group."""
        return min(self.ep, self.tp)

    @property
    def ep_across_dp(self) -> int:
        """Data-parallel replicas whose tokens meet in each MoE layer."""
        return self.ep // self.ep_in_tp


def make_plan(spec: ModelSpec, *, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1,
              stages: tuple[int, ...] | None = None, sequence_parallel: bool = False) -> Plan:
    """Validate a plan against the model; every violation is one clear line naming the flag."""
    H, kv, L = spec.num_heads, spec.num_kv_heads, spec.num_layers
    if H % tp:
        raise InfercastError(f"--tp {tp} does not divide {spec.name}'s {H} attention heads")
    if not spec.is_mla and kv % tp and tp % kv:
        raise InfercastError(f"--tp {tp}: {spec.name}'s {kv} KV heads can be neither split nor replicated "
                             f"evenly; use a divisor or a multiple of {kv}")
    if spec.num_dense_layers and spec.intermediate_size % tp:
        raise InfercastError(f"--tp {tp} does not divide {spec.name}'s intermediate_size {spec.intermediate_size}")
    if pp > L:
        raise InfercastError(f"--pp {pp} exceeds {spec.name}'s {L} layers")
    if stages:
        if len(stages) != pp or sum(stages) != L or min(stages) < 1:
            raise InfercastError(f"--pp-stages {','.join(map(str, stages))}: need {pp} positive layer counts "
                                 f"summing to {L}")
        stages = tuple(stages)
    else:
        base, extra = divmod(L, pp)
        stages = tuple(base + (1 if s < extra else 0) for s in range(pp))
    if ep > 1:
        if not spec.is_moe:
            raise InfercastError(f"--ep {ep}: {spec.name} is a dense model; expert parallelism needs experts")
        if spec.num_experts % ep:
            raise InfercastError(f"--ep {ep} does not divide {spec.name}'s {spec.num_experts} experts")
        fits_tp = ep <= tp and tp % ep == 0
        fits_dp = ep > tp and ep % tp == 0 and dp % (ep // tp) == 0
        if not (fits_tp or fits_dp):
            raise InfercastError(f"--ep {ep}: experts are spread over the tensor- and data-parallel chips of a "
                                 f"stage; ep must divide tp ({tp}) or be tp times a divisor of dp ({dp})")
    moe_width = spec.moe_intermediate_size
    expert_tp = tp // min(ep, tp)
    if spec.is_moe and moe_width % expert_tp:
        raise InfercastError(f"--tp {tp} --ep {ep}: experts split {expert_tp} ways do not divide "
                             f"moe_intermediate_size {moe_width}")
    if sequence_parallel and tp == 1:
        raise InfercastError("--sequence-parallel needs --tp greater than 1")
    return Plan(tp, pp, ep, dp, stages, sequence_parallel)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: the spec one of its chips runs, and what it holds."""

    index: int
    spec: ModelSpec
    """TP-sharded spec with this stage's layers."""
    moe: MoeShard
    first: bool
    last: bool
    layers: int
    weight_params: float
    """Parameters one chip of this stage holds."""


def tp_shard(spec: ModelSpec, plan: Plan) -> ModelSpec:
    """The spec one chip of the tensor-parallel group runs: heads, KV heads (replicated when tp
    exceeds them), MLP columns, expert columns (split tp/ep ways) and vocabulary split."""
    tp = plan.tp
    if tp == 1:
        return spec
    return spec.model_copy(update=dict(
        num_heads=spec.num_heads // tp,
        num_kv_heads=spec.num_heads // tp if spec.is_mla else max(1, spec.num_kv_heads // tp),
        intermediate_size=max(1, spec.intermediate_size // tp),
        moe_intermediate_size=spec.moe_intermediate_size // (tp // plan.ep_in_tp) if spec.is_moe else 0,
        vocab_size=math.ceil(spec.vocab_size / tp),
    ))


def stage_layers(spec: ModelSpec, plan: Plan) -> list[tuple[int, int, int]]:
    """(first layer, layers, dense-MLP layers) of each pipeline stage."""
    out, start = [], 0
    for layers in plan.stages:
        end = start + layers
        dense = max(0, min(end, spec.first_dense_layers) - start) if spec.is_moe else layers
        out.append((start, layers, dense))
        start = end
    return out


def stage_weight_params(spec: ModelSpec, local: ModelSpec, plan: Plan, index: int, layers: int,
                        dense: int, lp: dict[str, float] | None = None) -> dict[str, float]:
    """Parameters one chip of stage ``index`` holds, by part: ``embedding`` (first stage), ``head``
    (last stage: LM head and final norm), ``layers`` (its share of the layers; norms and routers
    replicated) and ``experts`` (its routed experts). ``lp``: ``local.param_parts()`` when the caller has it."""
    lp = lp if lp is not None else local.param_parts()
    out = {"embedding": lp["embedding"] if index == 0 else 0.0,
           "head": lp["final_norm"] + lp["head"] if index == plan.pp - 1 else 0.0,
           "layers": dense * lp["dense_layer"], "experts": 0.0}
    if spec.is_moe:
        moe_layers = layers - dense
        shared_tp = spec.num_shared_experts * spec.expert_params() / plan.tp  # shared experts split tp ways
        shared_local = spec.num_shared_experts * local.expert_params()
        out["layers"] += moe_layers * (lp["moe_layer"] - shared_local + shared_tp)
        out["experts"] = moe_layers * spec.num_experts / plan.ep * lp["expert"]
    return out


def stage_weight_bytes(parts: dict[str, float], p: Precision) -> float:
    return (parts["embedding"] * p.embedding_weight_bytes + parts["head"] * p.head_weight_bytes
            + parts["layers"] * p.layer_weight_bytes + parts["experts"] * p.expert_weight_bytes)


def stages_of(spec: ModelSpec, plan: Plan, *, moe_imbalance: float = 1.0) -> list[Stage]:
    """Each pipeline stage: its per-chip spec and the parameters one of its chips holds.

    ``moe_imbalance``: tokens of an MoE layer's busiest expert over the mean (1 = uniform routing).
    """
    local = tp_shard(spec, plan)
    moe = MoeShard(ep=plan.ep, token_groups=plan.ep_across_dp,
                   shared_width=spec.num_shared_experts * spec.moe_intermediate_size // plan.tp,
                   imbalance=moe_imbalance)
    out = []
    for s, (start, layers, dense) in enumerate(stage_layers(spec, plan)):
        update = dict(num_layers=layers, first_dense_layers=dense if spec.is_moe else 0)
        if spec.sliding_window_layers is not None:
            update["sliding_window_layers"] = spec.windowed_layers_in(start, start + layers)
        stage_spec = local.model_copy(update=update)
        weights = sum(stage_weight_params(spec, local, plan, s, layers, dense).values())
        out.append(Stage(s, stage_spec, moe, s == 0, s == plan.pp - 1, layers, weights))
    return out


def layer_message_bytes(spec: ModelSpec, tokens, p: Precision) -> float:
    """Bytes of one layer's output for ``tokens`` tokens: the TP all-reduce and PP transfer size."""
    return tokens * spec.hidden_size * element_bytes(p.act)


def candidate_plans(spec: ModelSpec, chips: int, max_tp: int) -> list[Plan]:
    """Valid (tp, pp) plans on exactly ``chips`` chips with tp at most ``max_tp``."""
    plans = []
    for tp in range(1, min(chips, max_tp) + 1):
        if chips % tp:
            continue
        try:
            plans.append(make_plan(spec, tp=tp, pp=chips // tp))
        except InfercastError:
            continue
    return plans


def comm_ops(spec: ModelSpec, plan: Plan, stage: Stage, system: System, batch, q_len, p: Precision,
             opts: CommOptions) -> list[Op]:
    """The collectives one chip of ``stage`` takes part in during one pass.

    TP: one all-reduce of the layer's output after attention and one after the MLP (one per
    layer for parallel blocks, whose two branches are summed first), one after the vocabulary-
    parallel embedding, and an all-gather of the logits; with sequence parallelism each
    all-reduce becomes a reduce-scatter and an all-gather of the same bytes. EP across replicas:
    all-to-all dispatch and combine per MoE layer. PP: the activations sent to the next stage.
    """
    T = batch * q_len
    a = element_bytes(p.act)
    h = spec.hidden_size
    tp, ops = plan.tp, []
    layer_msg = T * h * a
    tier_tp = (system.tier_for(tp).name if tp <= system.chips_per_node
               else f"{system.tier_for(system.chips_per_node).name} + {system.tier_for(tp).name}") if tp > 1 else ""
    per_layer = 1 if spec.parallel_block else 2

    def comm(name: str, count: int, size, time, tier: str) -> Op:
        return Op(name, "comm", count, 0.0, 0.0, 0.0, 0.0, num(size), math.inf, "fp32",
                  comm_s=num(time * (1 - opts.overlap)), tier=tier)

    if tp > 1:
        n = per_layer * stage.layers + (1 if stage.first else 0)
        if plan.sequence_parallel:
            half = group_allgather_s(layer_msg, tp, system, opts)
            ops.append(comm("reduce_scatter", n, layer_msg, half, tier_tp))
            ops.append(comm("all_gather", n, layer_msg, half, tier_tp))
        else:
            ops.append(comm("allreduce", n, layer_msg, group_allreduce_s(layer_msg, tp, system, opts), tier_tp))
        if stage.last:
            logits = batch * spec.vocab_size * 4.0  # fp32 logits of the last positions
            t = group_allgather_s(logits, tp, system, opts)
            ops.append(comm("all_gather_logits", 1, logits, t, tier_tp))
    if spec.is_moe and plan.ep_across_dp > 1:
        n_ep = plan.ep_across_dp
        link = system.tier_for(plan.tp * plan.pp * n_ep)  # replicas sit after a replica's tp x pp chips
        held = T * spec.experts_per_token * h * a  # this chip's token-expert rows
        t = all_to_all_s(held, n_ep, link, opts)
        ops.append(comm("all_to_all", 2 * stage.spec.num_moe_layers, held, t, link.name))
    if not stage.last:
        link = p2p_tier(plan, system, stage.index)
        send = layer_msg / (tp if plan.sequence_parallel else 1)
        ops.append(comm("p2p", 1, send, p2p_s(send, link, opts), link.name))
    return ops


def p2p_tier(plan: Plan, system: System, index: int) -> Tier:
    """The link stage ``index`` sends its activations to the next stage over (stages placed node-first)."""
    boundary = (index + 1) * plan.tp  # first chip of the next stage
    same_node = (boundary - 1) // system.chips_per_node == boundary // system.chips_per_node
    return system.tier_for(2 if same_node else system.chips_per_node + 1)
