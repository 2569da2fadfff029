"""Memory per chip: weights, KV cache, activations and runtime overhead; fit, max batch, min chips.

One model serves ``estimate`` and the serving simulator, as vLLM sizes its cache at start-up:

    usable = capacity x gpu_memory_utilization
    fixed  = runtime overhead + weights + activations and collective buffers of one forward pass
    KV     = what is left, in blocks of ``block_size`` tokens

A forward pass processes at most ``max_num_batched_tokens`` tokens (vLLM V1's and TensorRT-LLM's
token budget, 8192 by default): a prefill larger than that runs in chunks, so the transient
activations are those of one pass of min(batch x isl, budget) tokens, not of the whole batch's
prompts. A sequence holds the K/V of isl + osl - 1 tokens (the last output token is never fed
back), at most the window with a sliding window, rounded up to whole blocks (the paged cache).
With a pipeline, each stage's chip holds its layers; the replica is bound by its fullest chip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.arrays import ceil, floor, maximum, minimum, where
from infercast.errors import InfercastError
from infercast.formats import element_bytes
from infercast.keep import keep
from infercast.model import ModelSpec
from infercast.ops import Attention, Precision
from infercast.parallel import Plan, make_plan, stage_layers, stage_weight_bytes, stage_weight_params, tp_shard

DEFAULT_BATCHED_TOKENS = 8192
"""vLLM V1's max-num-batched-tokens for the OpenAI server on GPUs of 70 GiB or more
(vllm/engine/arg_utils.py, EngineArgs._set_default_args_v1), and TensorRT-LLM's default max_num_tokens."""


class MemoryOptions(BaseModel):
    """How much of a chip's memory an engine may use, and how it lays it out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    """Fraction of device memory the engine may use (vLLM's --gpu-memory-utilization default)."""
    runtime_overhead_bytes: float = Field(default=2**30, ge=0, allow_inf_nan=False)
    """Memory the runtime holds outside weights, KV and activations: CUDA context, cuBLAS and
    NCCL workspaces, CUDA-graph pools. 1 GiB, the order vLLM's startup memory profile reports
    as non-torch plus graph memory on one GPU."""
    max_num_batched_tokens: int = Field(default=DEFAULT_BATCHED_TOKENS, gt=0, le=2**31)
    """Tokens one forward pass processes at most (vLLM --max-num-batched-tokens): the activations
    reserved are those of one such pass."""
    block_size: int = Field(default=16, gt=0, le=2**16)
    """Tokens per KV-cache block (vLLM --block-size, default 16): a sequence holds whole blocks."""
    max_num_seqs: int = Field(default=256, gt=0, le=2**20)
    """Sequences a step samples at most (vLLM --max-num-seqs, default 256; TensorRT-LLM's max_batch_size):
    the engine keeps their fp32 logits' buffer, whatever the load."""


@dataclass(frozen=True)
class StageLoad:
    """What one chip of a pipeline stage holds: fixed bytes, and rates per token and per sequence."""

    weights_bytes: float
    kv_bytes_per_token: float
    """K/V bytes one token of context costs on this chip (all its layers)."""
    kv_bytes_per_token_if_mha: float
    act_bytes_per_token: float
    """Transient activations of a forward pass per token: residual stream, normalised input and the
    widest intermediate (fused QKV or MLP up/gate output) of one layer at a time."""
    act_bytes_per_seq: float
    """Per sequence a step samples: its fp32 logits (the engine holds max_num_seqs of them)."""
    scores_bytes_per_pair: float
    """Materialised attention: one layer's score matrix, per (query, key) pair of every head."""
    comm_bytes_per_token: float
    """Send and receive buffers of the collectives, per token of the pass."""


def _layer_elements(local: ModelSpec) -> tuple[float, float, float]:
    """(K/V elements per token per layer, the same if MHA, a pass's transient elements per token: residual
    stream, normalised input and the widest intermediate, fused QKV or MLP up/gate output)."""
    h = local.hidden_size
    mlp_width = 2 * local.intermediate_size if local.gated_mlp else local.intermediate_size
    if local.is_moe:
        moe_width = local.experts_per_token * local.moe_intermediate_size * (2 if local.gated_mlp else 1)
        mlp_width = max(mlp_width if local.num_dense_layers else 0, moe_width)
    widest = max(local.q_dim + 2 * local.num_kv_heads * local.head_dim, mlp_width)
    L = local.num_layers
    return local.kv_elements_per_token() / L, local.kv_elements_per_token_if_mha() / L, 2 * h + widest


def _layer_rates(local: ModelSpec, p: Precision, attention: Attention) -> tuple[float, float, float, float, float]:
    """(kv per token per layer, the same if MHA, act per token, logits per sequence, score bytes per pair)."""
    a, c = element_bytes(p.act), element_bytes(p.kv)
    kv, mha, act = _layer_elements(local)
    scores = local.num_heads * a if attention == "materialized" else 0.0
    return kv * c, mha * c, act * a, local.vocab_size * 4.0, scores


@cache
def stage_loads(spec: ModelSpec, plan: Plan, p: Precision, attention: Attention) -> tuple[StageLoad, ...]:
    """The load of one chip of each pipeline stage of ``plan``."""
    local = tp_shard(spec, plan)
    kv_layer, mha_layer, act_tok, act_seq, scores = _layer_rates(local, p, attention)
    comm = 2 * spec.hidden_size * element_bytes(p.act) if plan.tp > 1 or plan.pp > 1 else 0.0
    lp = local.param_parts()
    loads: dict[tuple, StageLoad] = {}  # stages alike (not first, not last, same layers) load alike

    def load(s: int, layers: int, dense: int) -> StageLoad:
        key = (s == 0, s == plan.pp - 1, layers, dense)
        if key not in loads:
            weights = stage_weight_bytes(stage_weight_params(spec, local, plan, s, layers, dense, lp), p)
            loads[key] = StageLoad(weights_bytes=weights, kv_bytes_per_token=layers * kv_layer,
                                   kv_bytes_per_token_if_mha=layers * mha_layer, act_bytes_per_token=act_tok,
                                   act_bytes_per_seq=act_seq, scores_bytes_per_pair=scores, comm_bytes_per_token=comm)
        return loads[key]

    return tuple(load(s, layers, dense) for s, (_, layers, dense) in enumerate(stage_layers(spec, plan)))


def kept_tokens(spec: ModelSpec, isl, osl, block_size: int):
    """Tokens of K/V one sequence holds at its last step, in whole blocks: isl + osl - 1 (the last
    output token is never fed back), at most the sliding window. Where only some layers attend within
    the window (gpt-oss), the layers' mean: the windowed ones hold at most the window (as vLLM's hybrid
    KV-cache manager and TensorRT-LLM's per-layer attention windows keep them)."""
    kept = isl + osl - 1
    if spec.sliding_window is None:
        return ceil(kept / block_size) * block_size
    windowed = ceil(minimum(kept, spec.sliding_window) / block_size) * block_size
    share = spec.windowed_layers / spec.num_layers
    return share * windowed + (1 - share) * ceil(kept / block_size) * block_size


@dataclass(frozen=True)
class Need:
    """Bytes one chip holds, by part (floats or arrays of the workload's shape)."""

    weights_bytes: float | np.ndarray
    kv_cache_bytes: float | np.ndarray
    kv_cache_bytes_if_mha: float | np.ndarray
    activation_bytes: float | np.ndarray
    comm_buffer_bytes: float | np.ndarray
    overhead_bytes: float

    @property
    def total_bytes(self):
        return (self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.comm_buffer_bytes
                + self.overhead_bytes)


def prompts_per_pass(batch, isl, budget: int):
    """Prompts one pass of ``budget`` tokens holds whole (at least one prompt's chunk)."""
    return minimum(batch, maximum(floor(budget / isl), 1.0))


def need(load: StageLoad, batch, isl, kept, opts: MemoryOptions) -> Need:
    """What one chip of a stage holds for ``batch`` sequences of ``kept`` cached tokens each (``kept_tokens``)
    whose prompts have ``isl`` tokens. The activations are the engine's reservation for its largest step,
    whatever the batch: a pass of ``max_num_batched_tokens`` tokens (vLLM and TensorRT-LLM size them so at
    start-up) and the logits of ``max_num_seqs`` sampled sequences; materialised attention adds the scores
    of the prompts one pass holds."""
    budget = float(opts.max_num_batched_tokens)
    act = budget * load.act_bytes_per_token + opts.max_num_seqs * load.act_bytes_per_seq
    if load.scores_bytes_per_pair:
        act = act + prompts_per_pass(batch, isl, opts.max_num_batched_tokens) * minimum(isl, budget) * isl \
            * load.scores_bytes_per_pair
    return Need(weights_bytes=load.weights_bytes, kv_cache_bytes=batch * kept * load.kv_bytes_per_token,
                kv_cache_bytes_if_mha=batch * kept * load.kv_bytes_per_token_if_mha, activation_bytes=act,
                comm_buffer_bytes=budget * load.comm_bytes_per_token, overhead_bytes=opts.runtime_overhead_bytes)


def share_of_free(loads, capacity_bytes: float, fraction: float, opts: MemoryOptions) -> float | None:
    """The share of the device an engine takes that gives its KV cache ``fraction`` of the memory left free
    after the weights, the runtime and the reservation of one step (TensorRT-LLM's free_gpu_memory_fraction),
    on its fullest chip: (fixed + fraction x (capacity - fixed)) / capacity; None where nothing is free."""
    fixed = max(float(need(load, 1.0, float(opts.max_num_batched_tokens), 0.0, opts).total_bytes) for load in loads)
    if fixed >= capacity_bytes:
        return None
    return (fixed + fraction * (capacity_bytes - fixed)) / capacity_bytes


def max_sequences(load: StageLoad, isl, kept, usable, opts: MemoryOptions, fixed=None):
    """The most sequences one chip of a stage holds: the largest b with need(b) <= usable (0 if none).

    The reservation for a step is fixed; only materialised attention's scores grow with the prompts a pass
    holds (b while b <= b1 = budget / isl, then b1): the saturated solution if it lies beyond b1, else
    the linear one.
    """
    budget = float(opts.max_num_batched_tokens)
    b1 = maximum(floor(budget / isl), 1.0)
    kv_seq = kept * load.kv_bytes_per_token
    if fixed is None:
        fixed = _fixed_bytes(load, opts)
    scores = load.scores_bytes_per_pair * minimum(isl, budget) * isl  # one prompt's (materialised attention)
    linear = minimum(floor((usable - fixed) / (scores + kv_seq)), b1)
    saturated = floor((usable - fixed - b1 * scores) / kv_seq) if _any_positive(kv_seq) else _inf_like(kv_seq)
    best = where(saturated > b1, saturated, linear)
    return maximum(best, 0.0)


def _fixed_bytes(load: StageLoad, opts: MemoryOptions):
    """What a chip of the stage holds whatever the batch: weights, runtime, the reservation of one step."""
    budget = float(opts.max_num_batched_tokens)
    return (load.weights_bytes + opts.runtime_overhead_bytes + opts.max_num_seqs * load.act_bytes_per_seq
            + budget * (load.act_bytes_per_token + load.comm_bytes_per_token))


def _any_positive(x) -> bool:
    return x > 0 if type(x) is float else bool(np.all(np.asarray(x) > 0))


def _inf_like(x):
    return math.inf if np.ndim(x) == 0 else np.full(np.shape(x), math.inf)


# --- the fewest chips that hold a batch ------------------------------------------------------------


@dataclass(frozen=True)
class PlanTable:
    """Every (tp, pp) replica plan of a model on one chip kind, as arrays over the plans: the fullest
    chip of each is one of its first, last or largest middle stage."""

    tp: np.ndarray
    pp: np.ndarray
    chips: np.ndarray
    weights: np.ndarray
    """[plans, 3] weights of the first, last and largest middle stage (repeated where fewer)."""
    kv_tok: np.ndarray
    act_tok: np.ndarray
    act_seq: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class _PlanElements:
    """The plans of a model as counts, whatever the formats: parameters by part and elements per token of the
    first, last and largest middle stage ([plans, 3]), and per plan the activation elements of a token."""

    tp: np.ndarray
    pp: np.ndarray
    embedding: np.ndarray
    head: np.ndarray
    layers: np.ndarray
    experts: np.ndarray
    """Routed experts' parameters (priced in the experts' format)."""
    kv: np.ndarray
    """K/V elements per token of context (all the stage's layers)."""
    act: np.ndarray
    """[plans] a pass's transient elements per token (``_layer_rates``) and the collectives' buffers."""
    heads: np.ndarray
    """[plans] query heads per chip (one materialised score per head and (query, key) pair)."""
    vocab: np.ndarray
    """[plans] the vocabulary's share of a chip (its fp32 logits per sequence)."""


@cache
def _plan_elements(spec: ModelSpec, max_tp: int) -> _PlanElements:
    """The valid (tp <= max_tp, pp <= layers) replica plans of ``spec``, sorted by chips (then the wider
    tensor-parallel group), in counts: ``plan_table`` prices them in a precision's bytes."""
    rows = []
    for tp in range(1, max_tp + 1):
        try:
            local = tp_shard(spec, make_plan(spec, tp=tp))
        except InfercastError:
            continue
        lp = local.param_parts()
        kv_layer, _, act = _layer_elements(local)
        for pp in range(1, spec.num_layers + 1):
            plan = make_plan(spec, tp=tp, pp=pp)
            stages = [(stage_weight_params(spec, local, plan, i, layers, dense, lp), layers)
                      for i, (_, layers, dense) in enumerate(stage_layers(spec, plan))]
            middle = max(stages[1:-1], key=lambda x: x[0]["layers"] + x[0]["experts"], default=stages[-1])
            comm = 2 * spec.hidden_size if tp > 1 or pp > 1 else 0.0
            rows.append((tp * pp, tp, pp, (stages[0], stages[-1], middle), act + comm, local.num_heads, kv_layer,
                         local.vocab_size))
    rows.sort(key=lambda r: (r[0], -r[1]))
    three = [r[3] for r in rows]

    def part(name: str) -> np.ndarray:
        return np.array([[parts[name] for parts, _ in r] for r in three], dtype=float)

    return _PlanElements(tp=np.array([r[1] for r in rows]), pp=np.array([r[2] for r in rows]),
                         embedding=part("embedding"), head=part("head"), layers=part("layers"),
                         experts=part("experts"),
                         kv=np.array([[layers * r[6] for _, layers in r[3]] for r in rows], dtype=float),
                         act=np.array([r[4] for r in rows], dtype=float),
                         heads=np.array([r[5] for r in rows], dtype=float),
                         vocab=np.array([r[7] for r in rows], dtype=float))


@cache
def plan_table(spec: ModelSpec, p: Precision, attention: Attention, max_tp: int) -> PlanTable:
    """The valid (tp <= max_tp, pp <= layers) replica plans of ``spec``, sorted by chips, in ``p``'s bytes."""
    e = _plan_elements(spec, max_tp)
    a, c = element_bytes(p.act), element_bytes(p.kv)
    col = (slice(None), None)
    return PlanTable(tp=e.tp, pp=e.pp, chips=(e.tp * e.pp).astype(float),
                     weights=(e.embedding * p.embedding_weight_bytes + e.head * p.head_weight_bytes
                              + e.layers * p.layer_weight_bytes + e.experts * p.expert_weight_bytes),
                     kv_tok=e.kv * c, act_tok=np.broadcast_to((e.act * a)[col], e.kv.shape),
                     act_seq=np.broadcast_to((e.vocab * 4.0)[col], e.kv.shape),
                     scores=np.broadcast_to((e.heads * a if attention == "materialized" else 0.0 * e.heads)[col],
                                            e.kv.shape))


def plan_capacity(table: PlanTable, isl, kept, usable, opts: MemoryOptions) -> np.ndarray:
    """Sequences each plan's replica holds: [plans, *shape] (the min over its candidate stages)."""
    shape = np.broadcast_shapes(np.shape(isl), np.shape(kept), np.shape(usable))
    if not shape:  # one configuration: the table's arrays as they are (their fixed bytes kept), the workload as floats
        load, fixed = keep(_FIXED, (table,), lambda: _array_load(table, opts), (opts,))
        return max_sequences(load, float(isl), float(kept), float(usable), opts, fixed).min(axis=1)
    ex = (slice(None), slice(None)) + (None,) * len(shape)
    load = _ArrayLoad(table.weights[ex], table.kv_tok[ex], table.act_tok[ex], table.act_seq[ex], table.scores[ex])
    return max_sequences(load, np.asarray(isl, float), np.asarray(kept, float), np.asarray(usable, float),
                         opts).min(axis=1)


_FIXED: dict[tuple, tuple] = {}
"""A plan table's (loads, fixed bytes) by (table, memory options)."""


def _array_load(table: PlanTable, opts: MemoryOptions) -> tuple:
    load = _ArrayLoad(table.weights, table.kv_tok, table.act_tok, table.act_seq, table.scores)
    return load, _fixed_bytes(load, opts)


@dataclass(frozen=True)
class _ArrayLoad:
    """A ``StageLoad`` whose fields are arrays over plans and stages (communication folded into act)."""

    weights_bytes: np.ndarray
    kv_bytes_per_token: np.ndarray
    act_bytes_per_token: np.ndarray
    act_bytes_per_seq: np.ndarray
    scores_bytes_per_pair: np.ndarray
    comm_bytes_per_token: float = 0.0


@dataclass(frozen=True)
class MinChips:
    chips: np.ndarray | float
    """Fewest chips holding the batch (0 where no plan holds even one sequence)."""
    tp: np.ndarray | float
    pp: np.ndarray | float
    dp: np.ndarray | float


def _min_chips_one(table: PlanTable, cap: np.ndarray, b: float) -> MinChips:
    """``min_chips`` of one configuration, from its plans' capacities ``cap`` [plans]: the same search on one row."""
    top = float(2**40)
    best = np.minimum(np.maximum.accumulate(cap), top - 1)
    first = int(np.searchsorted(best, min(b, top - 1), side="left"))
    if first < len(cap):
        return MinChips(float(table.chips[first]), float(table.tp[first]), float(table.pp[first]), 1.0)
    with np.errstate(divide="ignore"):
        replicas = np.where(cap > 0, np.ceil(b / np.where(cap > 0, cap, 1.0)), np.inf)
    total = table.chips * replicas
    k = int(np.argmin(total))
    if not math.isfinite(total[k]):
        return MinChips(0.0, 0.0, 0.0, 0.0)
    return MinChips(float(total[k]), float(table.tp[k]), float(table.pp[k]), float(replicas[k]))


def min_chips(table: PlanTable, batch, isl, kept, usable, opts: MemoryOptions) -> MinChips:
    """The fewest chips of this kind that hold ``batch`` sequences, and the plan.

    A replica plan whose chips hold the whole batch comes first (tensor and pipeline parallelism
    divide the weights, data parallelism copies them, so splitting the batch over replicas never
    needs fewer chips while a larger tp x pp replica holds it). When no replica holds it, the batch
    is split over the data-parallel replicas of the plan that needs the fewest chips in all:
    tp x pp x ceil(batch / sequences per replica).
    """
    scalar = not any(isinstance(x, np.ndarray) and x.ndim for x in (batch, isl, kept, usable))
    cap = plan_capacity(table, isl, kept, usable, opts)  # [plans, *ctx]
    if scalar:
        return _min_chips_one(table, cap, float(batch))
    n_plans, ctx_shape = cap.shape[0], cap.shape[1:]
    b = np.asarray(batch, float).reshape(-1) if scalar else np.asarray(batch, float)  # [1] for one configuration
    shape = np.broadcast_shapes(b.shape, ctx_shape)
    b = np.broadcast_to(b, shape)
    # the first plan (fewest chips) holding b: where the running maximum of the capacities first reaches b,
    # found for every configuration at once by one search over the rows laid end to end
    top = float(2**40)
    best = np.minimum(np.maximum.accumulate(cap, axis=0), top - 1).reshape(n_plans, -1).T  # [contexts, plans]
    offsets = np.arange(best.shape[0], dtype=float)[:, None] * top
    ctx = np.broadcast_to(np.arange(best.shape[0]).reshape(ctx_shape), shape)
    first = np.searchsorted((best + offsets).ravel(), (ctx * top + np.minimum(b, top - 1)).ravel(), side="left")
    first = first.reshape(shape) - ctx * n_plans
    holds = first < n_plans
    first = np.minimum(first, n_plans - 1)
    chips = np.where(holds, table.chips[first], 0.0)
    tp, pp, dp = np.where(holds, table.tp[first], 0.0), np.where(holds, table.pp[first], 0.0), np.where(holds, 1.0, 0.0)
    if not holds.all():  # split over data-parallel replicas, for the configurations no replica holds
        idx = np.nonzero(~holds)
        c_sub = cap.reshape(n_plans, -1)[:, ctx[idx]]  # [plans, subset]
        with np.errstate(divide="ignore"):
            replicas = np.where(c_sub > 0, np.ceil(b[idx][None] / np.where(c_sub > 0, c_sub, 1.0)), np.inf)
        total = table.chips[:, None] * replicas
        k = np.argmin(total, axis=0)
        split = total[k, np.arange(len(k))]
        ok = np.isfinite(split)
        chips[idx] = np.where(ok, split, 0.0)
        dp[idx] = np.where(ok, replicas[k, np.arange(len(k))], 0.0)
        tp[idx] = np.where(ok, table.tp[k], 0.0)
        pp[idx] = np.where(ok, table.pp[k], 0.0)
    if scalar:
        return MinChips(float(chips[0]), float(tp[0]), float(pp[0]), float(dp[0]))
    return MinChips(chips, tp, pp, dp)
