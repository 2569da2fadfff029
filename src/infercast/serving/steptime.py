"""The time of one engine step of a deployment, from the operator model, at O(1) cost per step.

A continuous-batching step runs one forward pass over a mix of work: prefill chunks (chunk i
adds n_i prompt tokens to its sequence, whose cache then holds kv_i tokens, the new ones
included) and D decode sequences (one token each, sequence j attending over L_j keys).
Its time is what ``infercast.evaluate`` charges for those operators, split in three parts
that are cheap to evaluate:

* token operators (embedding, norms, QKV and output projections, MLP or experts, residual
  adds, TP all-reduces, PP transfers) depend on the step's tokens T = sum n_i + D only:
  tabulated for every T up to the engine's token budget;
* sequence operators (LM head, sampling, the logits all-gather) depend on the scheduled
  sequences B = chunks + D (vLLM V1 computes logits at the last position of every scheduled
  request): tabulated up to max-num-seqs;
* attention runs as one kernel per layer over every sequence of the step (vLLM V1's unified
  variable-length attention): time = max(sum of compute, sum of memory) + kernel overhead.
  Its FLOPs and bytes are the kernel's coefficients (``ops.Kernel``) times each sequence's
  (query, key) pairs, new tokens and cached tokens, with the compute efficiency of the
  sequence's smallest matrix dimension and keys per query; decodes enter through the running
  totals D and sum L_j.

No chip draws more than its TDP: a step whose dynamic energy (the same three parts) over its
time exceeds TDP - idle takes energy / (TDP - idle), as ``evaluate`` charges a pass or step.
``tests/test_serving_steptime.py`` checks the result against ``estimate()`` for pure decode and
single-prompt prefill steps.

Simplifications: a pipeline of pp stages runs one batch at a time (a step is one trip
through every stage, as ``estimate(micro_batches=1)``); sliding windows are not applied
(exact while every context is within the window); a decode whose context is shorter than the
query heads sharing a KV head is charged the attention efficiency at min(group, head_dim)
(``estimate`` at its context: a difference only for contexts of a few tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.evaluation import Pricer
from infercast.memory import need
from infercast.model import ModelSpec
from infercast.ops import make_op
from infercast.roofline import OpTable, times
from infercast.scenario import Scenario, resolve

SEQUENCE_OPS = frozenset({"lm_head", "sampling", "all_gather_logits"})
"""Kernels that run once per scheduled sequence (the last position's logits)."""


def deployment(model: str | ModelSpec, hardware=None, **options: Any) -> Scenario:
    """The scenario the simulator runs: ``resolve``'s, with the sliding window dropped (see the module
    docstring). Each of the ``dp`` replicas is a tp x pp group."""
    sc = resolve(model, hardware, **options)
    if sc.spec.is_mla:
        raise InfercastError(f"simulate: {sc.spec.name} uses multi-head latent attention, whose prefill and decode "
                             f"run different kernels; the serving simulator does not model it yet")
    if sc.spec.sliding_window is None:
        return sc
    return replace(sc, spec=sc.spec.model_copy(update={"sliding_window": None}), extra={})


@dataclass(frozen=True)
class _AttentionTerm:
    """One attention kernel: FLOPs and bytes as (pairs, new tokens, cached tokens) . coefficients."""

    layers: int
    """Executions per step: its layers summed over the stages."""
    flops: tuple[float, float, float]
    bytes: tuple[float, float, float]
    s_per_flop: list[float]
    """Compute seconds per FLOP at long key lengths, by the kernel's smallest matrix dimension (0 .. dim)."""
    half_len: float
    """Keys per query at which the kernel's efficiency halves: a sequence's compute is scaled by
    (s + half_len) / s at s = pairs / new tokens keys per query."""
    s_per_byte: float
    overhead_s: float
    e_flop: float
    """Dynamic J per FLOP (arithmetic and the linear SRAM term, with the chip overhead)."""
    e_byte: float
    """Dynamic J per byte (DRAM, and the linear SRAM term of a vector kernel)."""
    e_max: tuple[tuple[float, float], ...]
    """SRAM terms w max(bytes, k FLOPs), J (with the chip overhead)."""


def _sum3(*cs: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(sum(c[i] for c in cs) for i in range(3))


def _attention_terms(pr: Pricer, dim: int) -> list[_AttentionTerm]:
    """The step's attention kernels, from their coefficients (``ops.Kernel``) and the roofline."""
    sc, eff = pr.sc, pr.eff
    first = sc.groups[0]
    kernels = pr.kernels(first)
    layers = {k.name: 0 for k in kernels}
    for g in sc.groups:
        for k in pr.kernels(g):
            layers[k.name] += k.count * g.count
    out = []
    m = np.arange(1, dim + 1, dtype=float)
    for k in kernels:
        # compute seconds per FLOP at each smallest dimension, keys per query far beyond half_len (factor 1)
        unit = make_op(k.name, k.kind, 1, flops=np.ones_like(m), min_dim=m if k.kind == "attention" else math.inf,
                       math=k.math if k.kind == "attention" else "fp32")
        t = times(OpTable.of([unit]), pr.rates, eff.model_copy(update={"attention_half_len": 0.0}), sc.chip.id)
        spf = np.broadcast_to(t.compute_s[0], m.shape)
        byte = make_op(k.name, k.kind, 1, flops=0.0, act=1.0, math=k.math if k.kind == "attention" else "fp32")
        tb = times(OpTable.of([byte]), pr.rates, eff, sc.chip.id)
        e_flop = e_byte = 0.0
        e_max: tuple = ()
        if pr.er is not None:
            pr.cost([k.op(1.0, 1.0, 2.0)], ("steptime", k.name))  # resolves the kernel's energy coefficients
            coef = pr.coefs[("steptime", k.name)]
            er = pr.er
            kk = er.chip_overhead * er.node_scale
            sram = coef.sram
            e_flop = kk * float(coef.flop_j.ravel()[0] + sram.lin_f.ravel()[0])
            e_byte = kk * float(sram.lin_d.ravel()[0]) + er.dram_j_per_byte
            e_max = ((kk * float(sram.w1.ravel()[0]), float(sram.k1.ravel()[0])),
                     (kk * float(sram.w2.ravel()[0]), float(sram.k2.ravel()[0])))
        out.append(_AttentionTerm(layers[k.name], k.flops, _sum3(k.act, k.kv, k.write), [math.inf] + spf.tolist(),
                                  eff.attention_half_len if k.kind == "attention" else 0.0,
                                  float(np.ravel(tb.memory_s)[0]), float(np.ravel(tb.overhead_s)[0]), e_flop, e_byte,
                                  e_max))
    return out


class StepTime:
    """``step_time(chunks, decodes, decode_context)`` -> seconds of one step of one replica.

    ``chunks``: (new tokens n, context kv after the chunk) of each prefill chunk, in schedule
    order; ``decodes``: decode sequences D; ``decode_context``: sum of their context lengths L_j
    (each counts its new token). Build with ``step_time(deployment, max_tokens, max_seqs)``;
    ``fn`` is the same function as a plain closure, the form the engine calls once per step.
    """

    def __init__(self, token_s: list[float], seq_s: list[float], fixed_s: float, terms: list[_AttentionTerm],
                 group: int, head_dim: int, token_j: list[float] | None = None, seq_j: list[float] | None = None,
                 power_w: float | None = None) -> None:
        self.token_s, self.seq_s, self.fixed_s, self.terms = token_s, seq_s, fixed_s, terms
        self.group, self.head_dim = group, head_dim
        self.token_j, self.seq_j, self.power_w = token_j, seq_j, power_w
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
        capped = self.power_w is not None
        token_j, seq_j, power = self.token_j, self.seq_j, self.power_w
        terms, decode_terms = [], []
        for t in self.terms:
            (fp, fn, fc), (bp, bn, bc), spf, spb, h = t.flops, t.bytes, t.s_per_flop, t.s_per_byte, t.half_len
            # a decode's compute and memory seconds, per key of context and per sequence; its key-length
            # factor (L + h) / L on FLOPs (fp + fc) L adds (fp + fc) h per sequence
            per_L = (spf[m] * (fp + fc), spb * (bp + bc))
            per_seq = (spf[m] * (fn - fc + h * (fp + fc)), spb * (bn - bc))
            # its FLOPs and bytes, per key of context and per sequence (for the energy)
            work = ((fp + fc), (bp + bc), (fn - fc), (bn - bc))
            energy = (t.e_flop, t.e_byte, t.e_max)
            decode_terms.append((t.layers, *per_L, *per_seq, *work, energy))
            terms.append((t.layers, *per_L, *per_seq, fp, fn, fc, bp, bn, bc, spf, h, spb, t.overhead_s, work,
                          energy))
        terms, decode_terms = tuple(terms), tuple(decode_terms)
        # a decode-only step (the common one under load): all but the attention max, by D
        overheads = sum(t.layers * t.overhead_s for t in self.terms)
        decode_base = [token_s[D] + seq_s[D] + fixed_s + overheads for D in range(min(len(seq_s), len(token_s)))]
        decode_base_j = ([token_j[D] + seq_j[D] for D in range(min(len(seq_s), len(token_s)))] if capped else None)

        def kernel_j(layers, flops, nbytes, energy):
            e_f, e_b, maxes = energy
            e = e_f * flops + e_b * nbytes
            for w, k in maxes:
                kf = k * flops
                e += w * (nbytes if nbytes > kf else kf)
            return layers * e

        def step(chunks: list[tuple[int, int]], decodes: int, decode_context: int) -> float:
            if not chunks:
                t = decode_base[decodes]
                e = decode_base_j[decodes] if capped else 0.0
                for layers, compute_L, memory_L, compute_D, memory_D, wf, wb, wfd, wbd, energy in decode_terms:
                    compute = compute_L * decode_context + compute_D * decodes
                    memory = memory_L * decode_context + memory_D * decodes
                    t += layers * (compute if compute > memory else memory)
                    if capped:
                        e += kernel_j(layers, wf * decode_context + wfd * decodes,
                                      wb * decode_context + wbd * decodes, energy)
                if capped and e > t * power:
                    return e / power
                return t
            tokens = decodes
            for n, _ in chunks:
                tokens += n
            seqs = decodes + len(chunks)
            t = token_s[tokens] + seq_s[seqs] + fixed_s
            e = token_j[tokens] + seq_j[seqs] if capped else 0.0
            for (layers, compute_L, memory_L, compute_D, memory_D, fp, fn, fc, bp, bn, bc, spf, h, spb,
                 overhead, work, energy) in terms:
                compute = compute_L * decode_context + compute_D * decodes
                memory = memory_L * decode_context + memory_D * decodes
                wf, wb, wfd, wbd = work
                flops = wf * decode_context + wfd * decodes
                nbytes = wb * decode_context + wbd * decodes
                for n, kv in chunks:
                    pairs = n * kv - n * (n - 1) / 2  # causal: query i of the chunk sees kv - n + 1 + i keys
                    cached = kv - n
                    dim = n * group  # the kernel's smallest matrix dimension, as ops stacks GQA heads
                    if kv < dim:
                        dim = kv
                    if d < dim:
                        dim = d
                    # FLOPs are fp x pairs when h > 0; at pairs / n keys per query they take (pairs + h n) / pairs
                    compute += (fp * (pairs + h * n) + fn * n + fc * cached) * spf[dim]
                    b = bp * pairs + bn * n + bc * cached
                    memory += b * spb
                    flops += fp * pairs + fn * n + fc * cached
                    nbytes += b
                t += layers * ((compute if compute > memory else memory) + overhead)
                if capped:
                    e += kernel_j(layers, flops, nbytes, energy)
            if capped and e > t * power:
                return e / power
            return t

        return step


def step_time(sc: Scenario, max_tokens: int, max_seqs: int) -> StepTime:
    """The step-time function of one replica for steps of up to ``max_tokens`` tokens and ``max_seqs`` sequences."""
    pr = Pricer(sc)
    kernel = pr.kernels(sc.groups[0])[0]
    group, head_dim = kernel.group, kernel.dim
    T = np.arange(1, max_tokens + 1, dtype=float)
    B = np.arange(1, max_seqs + 1, dtype=float)
    token_s, seq_s = np.zeros(max_tokens + 1), np.zeros(max_seqs + 1)
    token_j, seq_j = np.zeros(max_tokens + 1), np.zeros(max_seqs + 1)
    for i, g in enumerate(sc.groups):
        ops = pr.stage_ops(g, 1.0, T, T, with_attention=False, decode=False)
        token = pr.cost([op for op in ops if op.name not in SEQUENCE_OPS], ("token", i))
        token_s[1:] += g.count * token.time_s
        seq = pr.cost([op for op in pr.stage_ops(g, B, 1.0, 1.0, with_attention=False, decode=True)
                       if op.name in SEQUENCE_OPS],
                      ("seq", i))
        if seq.table.ops:
            seq_s[1:] += g.count * seq.time_s
        if pr.er is not None:
            token_j[1:] += g.count * token.energy_j
            if seq.table.ops:
                seq_j[1:] += g.count * seq.energy_j
    fixed = sc.efficiency.step_overhead_s  # once a pass (at the last stage, where the token is sampled), as estimate()
    power = None if pr.power is None else float(pr.power)
    return StepTime(token_s.tolist(), seq_s.tolist(), fixed, _attention_terms(pr, head_dim), group, head_dim,
                    token_j.tolist() if power else None, seq_j.tolist() if power else None, power)


def kv_cache_blocks(sc: Scenario, *, block_size: int, max_tokens: int, max_seqs: int | None = None) -> int:
    """KV-cache blocks of one replica, as vLLM sizes its cache at start-up and ``estimate`` its max batch.

    Per chip: capacity x gpu_memory_utilization, less the runtime overhead, the weights, the
    activations and collective buffers of a profiling pass of ``max_tokens`` tokens (vLLM's
    profile run uses max-num-batched-tokens) and the logits of ``max_seqs`` sampled sequences (the
    scenario's max_num_seqs by default); what is left holds blocks of ``block_size``
    tokens at the chip's KV bytes per token (``infercast.memory``). The replica takes the
    smallest count over its pipeline stages (vLLM takes the minimum over workers).
    """
    opts = sc.memory.model_copy(update={"max_num_batched_tokens": max_tokens, "block_size": block_size,
                                        **({"max_num_seqs": max_seqs} if max_seqs is not None else {})})
    usable = sc.rates.mem_capacity_bytes * opts.gpu_memory_utilization
    blocks = []
    for load in sc.loads:
        profile = need(load, 1.0, float(max_tokens), 0.0, opts)  # one pass of max_tokens tokens, one sequence
        free = usable - profile.total_bytes
        blocks.append(math.floor(free / (block_size * load.kv_bytes_per_token)) if free > 0 else 0)
    n = min(blocks)
    if n < 1:
        binding = min(range(len(blocks)), key=blocks.__getitem__)
        load = sc.loads[binding]
        act = need(load, 1.0, float(max_tokens), 0.0, opts).activation_bytes
        raise InfercastError(
            f"no memory left for the KV cache: a chip holds {load.weights_bytes / 1e9:.1f} GB of weights and "
            f"{act / 1e9:.2f} GB of activations for {max_tokens} batched tokens in "
            f"{usable / 1e9:.1f} GB usable; add chips (--tp/--pp), lower the precision or --max-num-batched-tokens")
    return n


__all__ = ["StepTime", "deployment", "kv_cache_blocks", "step_time"]
