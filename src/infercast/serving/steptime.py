"""The time of one engine step of a deployment, from the operator model, at O(1) cost per step.

A continuous-batching step runs one forward pass over a mix of work: prefill chunks (chunk i
adds n_i prompt tokens to its sequence, whose cache then holds kv_i tokens, the new ones
included) and D decode sequences (one token each, sequence j attending over L_j keys).
Its time is what ``infercast.estimate`` charges for those operators, split in three parts
that are cheap to evaluate:

* token operators (embedding, norms, QKV and output projections, MLP or experts, residual
  adds, TP all-reduces, PP transfers) depend on the step's tokens T = sum n_i + D only:
  tabulated for every T up to the engine's token budget;
* sequence operators (LM head, sampling, the logits all-gather) depend on the scheduled
  sequences B = chunks + D (vLLM V1 computes logits at the last position of every scheduled
  request): tabulated up to max-num-seqs;
* attention runs as one kernel per layer over every sequence of the step (vLLM V1's unified
  variable-length attention): time = max(sum of compute, sum of memory) + kernel overhead.
  Its FLOPs and bytes are linear in each sequence's (query, key) pairs, new tokens and
  cached tokens (``infercast.ops``), with the compute efficiency of the sequence's smallest
  matrix dimension; decodes enter through the running totals D and sum L_j.

The coefficients are read off the operators themselves (``forward_ops``, ``comm_ops``,
``op_time``), so the formulas live in one place; ``tests/test_serving_steptime.py`` checks
the result against ``estimate()`` for pure decode and single-prompt prefill steps.

Simplifications: a pipeline of pp stages runs one batch at a time (a step is one trip
through every stage, as ``estimate(micro_batches=1)``); sliding windows are not applied
(exact while every context is within the window); multi-head latent attention, whose
prefill and decode run different kernels, is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.errors import InfercastError, pydantic_error_line
from infercast.estimate import estimate, resolve_system
from infercast.hardware import Chip
from infercast.memory import MemoryOptions, plan_loads
from infercast.model import ModelSpec, load_model
from infercast.ops import Attention, Op, Precision, cached_tokens, causal_pairs, forward_ops
from infercast.parallel import CommOptions, Plan, Stage, comm_ops, stages_of
from infercast.roofline import Efficiency, op_time
from infercast.system import System

ATTENTION_OPS = frozenset({"attention", "attn_score", "attn_softmax", "attn_value"})
"""Kernels whose cost depends on each sequence's context: costed per sequence."""
SEQUENCE_OPS = frozenset({"lm_head", "sampling", "all_gather_logits"})
"""Kernels that run once per scheduled sequence (the last position's logits)."""


@dataclass(frozen=True)
class Deployment:
    """One replica's hardware, plan and formats, resolved the way ``estimate()`` resolves them."""

    spec: ModelSpec
    """The model as the simulator runs it (sliding window dropped, see the module docstring)."""
    chip: Chip
    system: System
    plan: Plan
    precision: Precision
    efficiency: Efficiency
    comm: CommOptions
    memory: MemoryOptions
    attention: Attention
    moe_imbalance: float

    @property
    def stages(self) -> list[Stage]:
        return stages_of(self.spec, self.plan, moe_imbalance=self.moe_imbalance)


def deployment(model: str | ModelSpec, hardware: str | Chip | None = None, *, system: str | System | None = None,
               num_chips: int | None = None, nodes: int | None = None, tp: int = 1, pp: int = 1, ep: int = 1,
               dp: int = 1, memory: MemoryOptions | dict[str, float] | None = None, attention: Attention = "flash",
               **options: Any) -> Deployment:
    """Resolve a deployment; ``options`` are passed to ``estimate()`` unchanged (dtypes, quantization,
    sparsity, efficiency, comm, pp_stages, sequence_parallel, moe_imbalance, ...), so every flag it
    learns reaches the simulator. Each of the ``dp`` replicas is a tp x pp group."""
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    if spec.is_mla:
        raise InfercastError(f"simulate: {spec.name} uses multi-head latent attention, whose prefill and decode "
                             f"run different kernels; the serving simulator does not model it yet")
    # one static pass resolves and validates everything the way estimate() does (plan, formats,
    # sparsity, efficiency and comm overrides) and checks that a replica holds the weights
    est = estimate(spec, hardware, system=system, num_chips=num_chips, nodes=nodes, tp=tp, pp=pp, ep=ep, dp=dp,
                   memory=memory, attention=attention, batch=dp, isl=1, osl=1, **options)
    chip, sys_ = resolve_system(hardware, system, num_chips, nodes, est.plan.num_chips)
    return Deployment(spec=spec.model_copy(update={"sliding_window": None}), chip=chip, system=sys_, plan=est.plan,
                      precision=est.precision, efficiency=est.efficiency, comm=est.comm,
                      memory=_memory_options(memory), attention=attention, moe_imbalance=est.moe_imbalance)


def _memory_options(memory: MemoryOptions | dict[str, float] | None) -> MemoryOptions:
    if memory is None or isinstance(memory, MemoryOptions):
        return memory or MemoryOptions()
    from pydantic import ValidationError

    try:
        return MemoryOptions(**memory)
    except ValidationError as exc:
        raise InfercastError(f"memory.{pydantic_error_line(exc)}") from None


def _ops(dep: Deployment, stage: Stage, batch, q_len, kv_len) -> list[Op]:
    """Every kernel one chip of ``stage`` runs in a pass, collectives included (as estimate's passes)."""
    p, plan = dep.precision, dep.plan
    ops = forward_ops(stage.spec, batch, q_len, kv_len, p, dep.attention, moe=stage.moe, first=stage.first,
                      last=stage.last, norm_tokens_divisor=plan.tp if plan.sequence_parallel else 1)
    return ops + comm_ops(dep.spec, plan, stage, dep.system, batch, q_len, p, dep.comm)


def _summed_time(ops: list[Op], dep: Deployment, size: int) -> np.ndarray:
    total = np.zeros(size)
    for op in ops:
        total = total + np.broadcast_to(op_time(op, dep.chip, dep.efficiency).time_s, (size,)) * op.count
    return total


@dataclass(frozen=True)
class _AttentionTerm:
    """One attention kernel: FLOPs and bytes as (pairs, new tokens, cached tokens, 1) . coefficients."""

    layers: int
    """Executions per step: its layers summed over the stages."""
    flops: tuple[float, float, float, float]
    bytes: tuple[float, float, float, float]
    s_per_flop: list[float]
    """Compute seconds per FLOP at long key lengths, by the kernel's smallest matrix dimension (0 .. head_dim)."""
    half_len: float
    """Keys per query at which the kernel's efficiency halves: a sequence's compute is scaled by
    (s + half_len) / s at s = pairs / new tokens keys per query."""
    s_per_byte: float
    overhead_s: float


# (query tokens, context) points the attention coefficients are fitted on and checked against
_FIT_POINTS = ((1, 1000), (1, 3000), (64, 64), (512, 2048), (100, 900), (7, 7), (3000, 5000))
_PROBE_KEYS = (1000.0, 4000.0)  # keys per query at which the key-length factor is read off op_time


def _features(q, kv) -> np.ndarray:
    q, kv = np.asarray(q, float), np.asarray(kv, float)
    return np.stack([causal_pairs(q, kv), q, cached_tokens(kv, q), np.ones_like(q)], axis=-1)


def _s_per_flop(dep: Deployment, op: Op, head_dim: int, keys: float) -> np.ndarray:
    """Compute seconds per FLOP of ``op`` at each smallest dimension 1 .. head_dim, at ``keys`` keys per query."""
    m = np.arange(1, head_dim + 1, dtype=float)
    unit = replace(op, flops=np.ones_like(m), min_dim=m if op.kind != "vector" else np.full_like(m, np.inf),
                   weight_bytes=np.zeros(1), act_bytes=np.zeros(1), kv_bytes=np.zeros(1), write_bytes=np.ones(1),
                   vector_flops=0.0, seq_len=np.full_like(m, keys) if op.seq_len is not None else None)
    return np.broadcast_to(op_time(unit, dep.chip, dep.efficiency).compute_s, m.shape)


def _attention_terms(dep: Deployment, group: int, head_dim: int) -> list[_AttentionTerm]:
    q, kv = (np.array(x, float) for x in zip(*_FIT_POINTS))
    X = _features(q, kv)
    first = dep.stages[0]
    layers = {name: 0 for name in ATTENTION_OPS}
    for stage in dep.stages:
        for op in _ops(dep, stage, 1, 1, 1):
            if op.name in ATTENTION_OPS:
                layers[op.name] += op.count
    terms = []
    for op in _ops(dep, first, 1, q, kv):
        if op.name not in ATTENTION_OPS:
            continue
        coef = []
        for y in (np.broadcast_to(op.flops, q.shape), np.broadcast_to(op.bytes, q.shape)):
            c = np.linalg.lstsq(X, y, rcond=None)[0]
            if not np.allclose(X @ c, y, rtol=1e-9, atol=1e-6):
                raise RuntimeError(f"{op.name}: cost not linear in (pairs, new, cached) tokens; update steptime.py")
            coef.append(tuple(float(v) for v in c))
        want = np.minimum(np.minimum(q * group, kv), head_dim)
        if not np.array_equal(np.broadcast_to(op.min_dim, q.shape), want) and op.kind != "vector":
            raise RuntimeError(f"{op.name}: smallest matrix dimension is not min(q x group, kv, head_dim)")
        # roofline: compute per FLOP at s keys per query is c (s + h) / s; two probes give c and h
        (s1, s2), (y1, y2) = _PROBE_KEYS, (_s_per_flop(dep, op, head_dim, k) for k in _PROBE_KEYS)
        c = (y1 * s1 - y2 * s2) / (s1 - s2)
        h = y1 * s1 / c - s1
        if np.ptp(h) > 1e-6 * max(1.0, float(np.max(np.abs(h)))):
            raise RuntimeError(f"{op.name}: the key-length factor of the efficiency is not (s + h) / s")
        half_len = max(0.0, float(np.mean(h)))
        if half_len and (abs(coef[0][1]) + abs(coef[0][2]) + abs(coef[0][3])) > 1e-9 * abs(coef[0][0]):
            raise RuntimeError(f"{op.name}: FLOPs beyond the (query, key) pairs with a key-length efficiency")
        unit = replace(op, flops=np.ones(1), weight_bytes=np.zeros(1), act_bytes=np.zeros(1), kv_bytes=np.zeros(1),
                       write_bytes=np.ones(1), vector_flops=0.0, min_dim=np.ones(1), seq_len=None)
        t = op_time(unit, dep.chip, dep.efficiency)
        spf = [math.inf] + c.tolist()  # index 0 unused: a kernel has a row
        terms.append(_AttentionTerm(layers[op.name], coef[0], coef[1], spf, half_len, float(np.ravel(t.memory_s)[0]),
                                    t.overhead_s))
    return terms


class StepTime:
    """``step_time(chunks, decodes, decode_context)`` -> seconds of one step of one replica.

    ``chunks``: (new tokens n, context kv after the chunk) of each prefill chunk, in schedule
    order; ``decodes``: decode sequences D; ``decode_context``: sum of their context lengths L_j
    (each counts its new token). Build with ``step_time(deployment, max_tokens, max_seqs)``;
    ``fn`` is the same function as a plain closure, the form the engine calls once per step.
    """

    def __init__(self, token_s: list[float], seq_s: list[float], fixed_s: float, terms: list[_AttentionTerm],
                 group: int, head_dim: int) -> None:
        self.token_s, self.seq_s, self.fixed_s, self.terms = token_s, seq_s, fixed_s, terms
        self.group, self.head_dim = group, head_dim
        # a decode is a chunk of one token over L keys (pairs L, new 1, cached L - 1) whose smallest
        # dimension min(group, L, head_dim) is min(group, head_dim) once L reaches it
        self.decode_dim = min(group, head_dim)
        self.fn = self._compile()

    @property
    def max_tokens(self) -> int:
        return len(self.token_s) - 1

    @property
    def max_seqs(self) -> int:
        return len(self.seq_s) - 1

    def __call__(self, chunks: list[tuple[int, int]], decodes: int, decode_context: int) -> float:
        return self.fn(chunks, decodes, decode_context)

    def _compile(self):
        token_s, seq_s, fixed_s, group, d, m = (self.token_s, self.seq_s, self.fixed_s, self.group, self.head_dim,
                                                self.decode_dim)
        terms, decode_terms = [], []
        for t in self.terms:
            (fp, fn, fc, f0), (bp, bn, bc, b0), spf, spb, h = t.flops, t.bytes, t.s_per_flop, t.s_per_byte, t.half_len
            # a decode's compute and memory seconds, per key of context and per sequence; its key-length
            # factor (L + h) / L on FLOPs (fp + fc) L adds (fp + fc) h per sequence
            per_L = (spf[m] * (fp + fc), spb * (bp + bc))
            per_seq = (spf[m] * (fn - fc + f0 + h * (fp + fc)), spb * (bn - bc + b0))
            decode_terms.append((t.layers, *per_L, *per_seq))
            terms.append((t.layers, *per_L, *per_seq, fp, fn, fc, f0, bp, bn, bc, b0, spf, h, spb, t.overhead_s))
        terms, decode_terms = tuple(terms), tuple(decode_terms)
        # a decode-only step (the common one under load): all but the attention max, by D
        overheads = sum(t.layers * t.overhead_s for t in self.terms)
        decode_base = [token_s[D] + seq_s[D] + fixed_s + overheads for D in range(min(len(seq_s), len(token_s)))]

        def step(chunks: list[tuple[int, int]], decodes: int, decode_context: int) -> float:
            if not chunks:
                t = decode_base[decodes]
                for layers, compute_L, memory_L, compute_D, memory_D in decode_terms:
                    compute = compute_L * decode_context + compute_D * decodes
                    memory = memory_L * decode_context + memory_D * decodes
                    t += layers * (compute if compute > memory else memory)
                return t
            tokens = decodes
            for n, _ in chunks:
                tokens += n
            t = token_s[tokens] + seq_s[decodes + len(chunks)] + fixed_s
            for (layers, compute_L, memory_L, compute_D, memory_D, fp, fn, fc, f0, bp, bn, bc, b0, spf, h, spb,
                 overhead) in terms:
                compute = compute_L * decode_context + compute_D * decodes
                memory = memory_L * decode_context + memory_D * decodes
                for n, kv in chunks:
                    pairs = n * kv - n * (n - 1) / 2  # causal: query i of the chunk sees kv - n + 1 + i keys
                    cached = kv - n
                    dim = n * group  # the kernel's smallest matrix dimension, as ops stacks GQA heads
                    if kv < dim:
                        dim = kv
                    if d < dim:
                        dim = d
                    # FLOPs are fp x pairs when h > 0; at pairs / n keys per query they take (pairs + h n) / pairs
                    compute += (fp * (pairs + h * n) + fn * n + fc * cached + f0) * spf[dim]
                    memory += (bp * pairs + bn * n + bc * cached + b0) * spb
                t += layers * ((compute if compute > memory else memory) + overhead)
            return t

        return step


def step_time(dep: Deployment, max_tokens: int, max_seqs: int) -> StepTime:
    """The step-time function of one replica for steps of up to ``max_tokens`` tokens and ``max_seqs`` sequences."""
    local = dep.stages[0].spec
    group, head_dim = local.num_heads // local.num_kv_heads, local.head_dim
    T = np.arange(1, max_tokens + 1, dtype=float)
    B = np.arange(1, max_seqs + 1, dtype=float)
    token_s, seq_s = np.zeros(max_tokens + 1), np.zeros(max_seqs + 1)
    for stage in dep.stages:
        token_ops = [op for op in _ops(dep, stage, 1, T, T) if op.name not in ATTENTION_OPS | SEQUENCE_OPS]
        token_s[1:] += _summed_time(token_ops, dep, max_tokens)
        seq_ops = [op for op in _ops(dep, stage, B, 1, 1) if op.name in SEQUENCE_OPS]
        seq_s[1:] += _summed_time(seq_ops, dep, max_seqs)
    fixed = dep.efficiency.step_overhead_s  # once a pass (at the last stage, where the token is sampled), as estimate()
    return StepTime(token_s.tolist(), seq_s.tolist(), fixed, _attention_terms(dep, group, head_dim), group, head_dim)


def kv_cache_blocks(dep: Deployment, *, block_size: int, max_tokens: int) -> int:
    """KV-cache blocks of one replica, as vLLM sizes its cache at start-up.

    Per chip: capacity x gpu_memory_utilization, less the runtime overhead, the weights, the
    activations of a profiling pass of ``max_tokens`` tokens (vLLM's profile run uses
    max-num-batched-tokens) and the collective buffers; what is left holds blocks of
    ``block_size`` tokens at the chip's KV bytes per token. The replica takes the smallest
    count over its pipeline stages (vLLM takes the minimum over workers).
    """
    spec, plan, p, opts = dep.spec, dep.plan, dep.precision, dep.memory
    usable = dep.chip.figure("memory.capacity_bytes") * opts.gpu_memory_utilization
    per_token = plan_loads(spec, plan, isl=1, osl=0, p=p, attention=dep.attention)  # kv bytes of one token
    peak = plan_loads(spec, plan, isl=max_tokens, osl=0, p=p, attention=dep.attention)
    blocks = []
    for one, full in zip(per_token, peak):
        free = usable - opts.runtime_overhead_bytes - full.weights_bytes - full.act_bytes_per_seq - full.comm_buffer_bytes
        blocks.append(math.floor(free / (block_size * one.kv_bytes_per_seq)) if free > 0 else 0)
    n = min(blocks)
    if n < 1:
        binding = min(range(len(blocks)), key=blocks.__getitem__)
        full = peak[binding]
        raise InfercastError(
            f"no memory left for the KV cache: a chip holds {full.weights_bytes / 1e9:.1f} GB of weights and "
            f"{full.act_bytes_per_seq / 1e9:.2f} GB of activations for {max_tokens} batched tokens in "
            f"{usable / 1e9:.1f} GB usable; add chips (--tp/--pp), lower the precision or --max-num-batched-tokens")
    return n
