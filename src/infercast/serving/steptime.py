"""The time of one engine step of a deployment, from the operator model, at O(1) cost per step.

A continuous-batching step runs one forward pass over a mix of work: prefill chunks (chunk i
adds n_i prompt tokens to its sequence, whose cache then holds kv_i tokens, the new ones
included) and D decode sequences (one token each, sequence j attending over L_j keys).
Its time is what ``infercast.evaluate`` charges for those operators, split in parts that are
cheap to evaluate:

* token operators (embedding, norms, projections, MLP or experts, residual adds, TP all-reduces,
  PP transfers) depend on the step's tokens T = sum n_i + D only: tabulated for every T up to
  the engine's token budget;
* sequence operators (LM head, sampling, the logits all-gather) depend on the scheduled
  sequences B = chunks + D (vLLM V1 computes logits at the last position of every scheduled
  request): tabulated up to max-num-seqs;
* multi-head latent attention (DeepSeek-V3) runs other operators in decode and in prefill: the
  absorbed projections of the decode tokens (tabulated over D), and the up-projection of every
  prefill chunk's cached latent (over the chunks' context tokens, priced when first met);
* attention runs as one kernel per layer over every sequence of the step (vLLM V1's unified
  variable-length attention): time = max(sum of compute, sum of memory) + kernel overhead.
  Its FLOPs and bytes are the kernel's coefficients (``ops.Kernel``) times each sequence's
  (query, key) pairs, new tokens and cached tokens, with the compute efficiency of the
  sequence's smallest matrix dimension and keys per query; decodes enter through the running
  totals D and sum L_j. MLA's decode and prefill kernels differ (absorbed MQA over the latent,
  MHA over up-projected K/V): a step with both runs both.

No chip draws more than its TDP: a step whose dynamic energy (the same parts) over its time
exceeds TDP - idle takes energy / (TDP - idle), as ``evaluate`` charges a pass or step. A pipeline of pp
stages runs a step's sequences as min(pp, sequences) micro-batches in flight together, as ``evaluate``'s
default micro-batching: its step is the longer of the busiest stage's work on every micro-batch and one
micro-batch's trip through every stage, each stage capped at its own chips' TDP (``PipelineStepTime``).
``tests/test_serving_steptime.py`` checks the result against ``estimate()`` for pure decode and
single-prompt prefill steps.

Simplifications: a pipeline's micro-batches share a step's sequences as evenly as whole sequences
allow, decodes with their context in proportion (a real engine's batches differ as its requests
do), and each advances one token per step; a sliding window's decodes are charged
min(sum L_j, D x W) keys (exact when every context is on the same side of the window, as in a
step of requests of similar lengths); a decode whose context is shorter than the query heads
sharing a KV head is charged the attention efficiency at min(group, head_dim) (``estimate`` at
its context: a difference only for contexts of a few tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.evaluation import Pricer
from infercast.memory import need
from infercast.model import ModelSpec
from infercast.ops import Kernel, attention_kernels, causal_pairs, make_op
from infercast.roofline import OpTable, times
from infercast.scenario import Scenario, resolve

SEQUENCE_OPS = frozenset({"lm_head", "sampling", "all_gather_logits"})
"""Kernels that run once per scheduled sequence (the last position's logits)."""
DECODE_OPS = frozenset({"mla_absorb_q", "mla_absorb_o"})
"""Kernels only a decode token runs (MLA's absorbed projections)."""
CONTEXT_OPS = frozenset({"kv_b_proj"})
"""Kernels a prefill chunk runs over its whole context (MLA's up-projection of the cached latent)."""


def deployment(model: str | ModelSpec, hardware=None, **options: Any) -> Scenario:
    """The scenario the simulator runs: ``resolve``'s. Each of the ``dp`` replicas is a tp x pp group."""
    return resolve(model, hardware, **options)


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
    group: int
    """Query heads sharing a K/V head (stacked into the GEMMs' rows)."""
    dim: int
    window: int | None


def _sum3(*cs: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(sum(c[i] for c in cs) for i in range(3))


def _attention_terms(pr: Pricer, decode: bool, groups: list | None = None) -> list[_AttentionTerm]:
    """The step's attention kernels (of decodes, or of prefill chunks), from their coefficients
    (``ops.Kernel``) and the roofline: over every stage, or one chip of each of ``groups``."""
    sc, eff = pr.sc, pr.eff
    kernels = _kernels(pr, (groups or sc.groups)[0], decode)
    layers = {k.name: 0 for k in kernels}
    for g, count in _counted(sc, groups):
        for k in _kernels(pr, g, decode):
            layers[k.name] = layers.get(k.name, 0) + k.count * count
    out = []
    for k in kernels:
        m = np.arange(1, k.dim + 1, dtype=float)
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
            key = ("steptime", k.name, decode)
            pr.cost([k.op(1.0, 1.0, 2.0)], key)  # resolves the kernel's energy coefficients
            coef = pr.coefs[key]
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
                                  e_max, k.group, k.dim, k.window))
    return out


def _counted(sc: Scenario, groups: list | None) -> list[tuple[Any, int]]:
    """(stage group, chips of the pipeline it stands for): every group and its stage count, or one of each of
    ``groups``."""
    return [(g, g.count) for g in sc.groups] if groups is None else [(g, 1) for g in groups]


def _kernels(pr: Pricer, g, decode: bool) -> list[Kernel]:
    sc = pr.sc
    return attention_kernels(g.stage.spec, sc.precision, sc.attention, decode=decode)


def _chunk_arrays(term: _AttentionTerm, n: np.ndarray, kv: np.ndarray):
    """(compute, memory, FLOPs, bytes) of a prefill kernel for each chunk of n new tokens over kv keys."""
    (fp, fn, fc), (bp, bn, bc), h, W = term.flops, term.bytes, term.half_len, term.window
    n, kv = n.astype(float), kv.astype(float)
    pairs = causal_pairs(n, kv, W)
    cached = kv - n if W is None else np.minimum(kv - n, W)
    keys = kv if W is None else np.minimum(kv, W)
    dim = np.minimum(np.minimum(n * term.group, keys), term.dim).astype(np.int64)
    spf = np.asarray(term.s_per_flop)[dim]
    flops = fp * pairs + fn * n + fc * cached
    nbytes = bp * pairs + bn * n + bc * cached
    return (fp * (pairs + h * n) + fn * n + fc * cached) * spf, nbytes * term.s_per_byte, flops, nbytes


def _kernel_j_arrays(term: _AttentionTerm, flops, nbytes):
    e = term.e_flop * flops + term.e_byte * nbytes
    for w, k in term.e_max:
        e = e + w * np.maximum(nbytes, k * flops)
    return term.layers * e


def _kernel_j(layers, flops, nbytes, energy):
    e_f, e_b, maxes = energy
    e = e_f * flops + e_b * nbytes
    for w, k in maxes:
        kf = k * flops
        e += w * (nbytes if nbytes > kf else kf)
    return layers * e


class StepTime:
    """``step_time(chunks, decodes, decode_context)`` -> seconds of one step of one replica.

    ``chunks``: (new tokens n, context kv after the chunk) of each prefill chunk, in schedule
    order; ``decodes``: decode sequences D; ``decode_context``: sum of their context lengths L_j
    (each counts its new token). Build with ``step_time(deployment, max_tokens, max_seqs)``;
    ``fn`` is the same function as a plain closure, the form the engine calls once per step.
    """

    def __init__(self, token_s: list[float], seq_s: list[float], fixed_s: float, terms: list[_AttentionTerm],
                 group: int, head_dim: int, token_j: list[float] | None = None, seq_j: list[float] | None = None,
                 power_w: float | None = None, *, prefill_terms: list[_AttentionTerm] | None = None,
                 decode_s: list[float] | None = None, decode_j: list[float] | None = None,
                 context=None, launch_s: tuple[float, float] = (0.0, 0.0)) -> None:
        self.token_s, self.seq_s, self.fixed_s, self.terms = token_s, seq_s, fixed_s, terms
        self.prefill_terms = prefill_terms
        """The prefill chunks' kernels where they differ from the decodes' (MLA); None: the same kernels."""
        self.group, self.head_dim = group, head_dim
        self.token_j, self.seq_j, self.power_w = token_j, seq_j, power_w
        self.decode_s, self.decode_j, self.context = decode_s, decode_j, context
        """Decode-only operators by D (MLA), and a function of the chunks' context tokens -> (s, J)."""
        self.launch_s = launch_s
        """What a step with prefill chunks adds for launching its kernels where decode steps replay a CUDA
        graph: (for the kernels every such step runs, for the decodes' own kernels when it has decodes)."""
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

    def many(self, decodes: np.ndarray, context: np.ndarray, chunk_step: np.ndarray, chunk_n: np.ndarray,
             chunk_kv: np.ndarray) -> np.ndarray:
        """The seconds of many steps at once: step i has ``decodes[i]`` decodes of total context ``context[i]``
        and the chunks j with ``chunk_step[j] == i`` (``chunk_n`` new tokens over ``chunk_kv`` keys each);
        equal to calling the step function on each (a replayed run re-prices its steps so)."""
        D, C = np.asarray(decodes, np.int64), np.asarray(context, float)
        cs, cn, ckv = np.asarray(chunk_step, np.int64), np.asarray(chunk_n, np.int64), np.asarray(chunk_kv, np.int64)
        steps = len(D)

        def per_step(x):
            out = np.zeros(steps)
            np.add.at(out, cs, x)
            return out

        chunk_tokens = per_step(cn).astype(np.int64)
        n_chunks = per_step(np.ones(len(cs))).astype(np.int64)
        has_chunk, has_decode = n_chunks > 0, D > 0
        T, B = D + chunk_tokens, D + n_chunks
        capped = self.power_w is not None
        t = np.asarray(self.token_s)[T] + np.asarray(self.seq_s)[B] + self.fixed_s
        e = np.asarray(self.token_j)[T] + np.asarray(self.seq_j)[B] if capped else 0.0
        if self.decode_s is not None:
            t = t + np.asarray(self.decode_s)[D]
            if capped:
                e = e + np.asarray(self.decode_j)[D]
        launch_chunk, launch_decodes = self.launch_s
        t = t + has_chunk * (launch_chunk + has_decode * launch_decodes)
        if self.context is not None:
            cs_, cj_ = self.context.many(per_step(ckv).astype(np.int64))
            t = t + cs_
            if capped:
                e = e + cj_
        split = self.prefill_terms is not None
        decode = [self._decode_arrays(term, D, C) for term in self.terms]
        chunk_terms = self.prefill_terms if split else self.terms
        for i, term in enumerate(chunk_terms):
            compute, memory, flops, nbytes = (per_step(x) for x in _chunk_arrays(term, cn, ckv))
            if not split:  # one kernel runs the decodes and the chunks
                dc, dm, df, db = decode[i]
                compute, memory, flops, nbytes = compute + dc, memory + dm, flops + df, nbytes + db
            runs = has_chunk if split else (has_chunk | has_decode)
            t = t + term.layers * (np.maximum(compute, memory) + term.overhead_s) * runs
            if capped:
                e = e + runs * _kernel_j_arrays(term, flops, nbytes)
        if split:
            for term, (dc, dm, df, db) in zip(self.terms, decode, strict=True):
                t = t + term.layers * (np.maximum(dc, dm) + term.overhead_s) * has_decode
                if capped:
                    e = e + has_decode * _kernel_j_arrays(term, df, db)
        if capped:
            t = np.maximum(t, e / self.power_w)
        return t

    @staticmethod
    def _decode_arrays(term: _AttentionTerm, D: np.ndarray, C: np.ndarray):
        """(compute, memory, FLOPs, bytes) of a decode kernel over each step's D decodes of total context C."""
        (fp, fn, fc), (bp, bn, bc), h = term.flops, term.bytes, term.half_len
        spf, spb = term.s_per_flop[min(term.group, term.dim)], term.s_per_byte
        if term.window is None:
            P, extra = C, 0.0
        else:
            beyond = C > D * term.window
            P, extra = np.where(beyond, D * term.window, C), np.where(beyond, D, 0)
        flops = (fp + fc) * P + (fn - fc) * D + fc * extra
        nbytes = (bp + bc) * P + (bn - bc) * D + bc * extra
        compute = spf * (flops + h * (fp + fc) * D)
        return compute, spb * nbytes, flops, nbytes

    def _compile(self):
        token_s, seq_s, fixed_s = self.token_s, self.seq_s, self.fixed_s
        capped = self.power_w is not None
        token_j, seq_j, power = self.token_j, self.seq_j, self.power_w
        n_base = min(len(seq_s), len(token_s))
        dec_s = self.decode_s or [0.0] * n_base
        dec_j = self.decode_j or [0.0] * n_base
        context = self.context
        split = self.prefill_terms is not None  # MLA: decodes and chunks run different kernels
        launch_chunk, launch_decodes = self.launch_s

        def decode_term(t: _AttentionTerm):
            (fp, fn, fc), (bp, bn, bc), spf, spb, h = t.flops, t.bytes, t.s_per_flop, t.s_per_byte, t.half_len
            m = min(t.group, t.dim)
            # a decode's compute and memory seconds, per key of context and per sequence (cached = L - 1);
            # its key-length factor (L + h) / L on FLOPs (fp + fc) L adds (fp + fc) h per sequence. Beyond
            # the window W, pairs and cached are W each: fc, bc more per sequence than at L = W.
            per_L = (spf[m] * (fp + fc), spb * (bp + bc))
            per_seq = (spf[m] * (fn - fc + h * (fp + fc)), spb * (bn - bc))
            beyond = (spf[m] * fc, spb * bc)
            work = ((fp + fc), (bp + bc), (fn - fc), (bn - bc), fc, bc)
            return (t.layers, t.window, *per_L, *per_seq, *beyond, work, (t.e_flop, t.e_byte, t.e_max))

        def chunk_term(t: _AttentionTerm):
            return (t.layers, t.flops, t.bytes, t.s_per_flop, t.half_len, t.s_per_byte, t.overhead_s, t.group,
                    t.dim, t.window, (t.e_flop, t.e_byte, t.e_max))

        decode_terms = tuple(decode_term(t) for t in self.terms)
        chunk_terms = tuple(chunk_term(t) for t in (self.prefill_terms if split else self.terms))
        # a decode-only step (the common one under load): all but the attention max, by D
        overheads = sum(t.layers * t.overhead_s for t in self.terms)
        decode_base = [token_s[D] + seq_s[D] + dec_s[D] + fixed_s + (overheads if D else 0.0) for D in range(n_base)]
        decode_base_j = [token_j[D] + seq_j[D] + dec_j[D] for D in range(n_base)] if capped else None

        def decode_parts(D: int, ctx: int):
            """(compute, memory, FLOPs, bytes) of each decode kernel over D decodes of total context ctx."""
            for (layers, window, cL, mL, cD, mD, cB, mB, work, energy) in decode_terms:
                if window is None or ctx <= D * window:
                    P, extra = ctx, 0
                else:
                    P, extra = D * window, D
                wf, wb, wfd, wbd, wfb, wbb = work
                yield (layers, cL * P + cD * D + cB * extra, mL * P + mD * D + mB * extra,
                       wf * P + wfd * D + wfb * extra, wb * P + wbd * D + wbb * extra, energy)

        def step(chunks: list[tuple[int, int]], decodes: int, decode_context: int) -> float:
            if not chunks:
                t = decode_base[decodes]
                e = decode_base_j[decodes] if capped else 0.0
                for layers, compute, memory, flops, nbytes, energy in decode_parts(decodes, decode_context):
                    t += layers * (compute if compute > memory else memory)
                    if capped:
                        e += _kernel_j(layers, flops, nbytes, energy)
                if capped and e > t * power:
                    return e / power
                return t
            tokens = decodes
            ctx_tokens = 0
            for n, kv in chunks:
                tokens += n
                ctx_tokens += kv
            seqs = decodes + len(chunks)
            t = token_s[tokens] + seq_s[seqs] + fixed_s + dec_s[decodes] + launch_chunk
            if decodes:
                t += launch_decodes
            e = token_j[tokens] + seq_j[seqs] + dec_j[decodes] if capped else 0.0
            if context is not None:
                cs, cj = context(ctx_tokens)
                t += cs
                e += cj
            shared = {}  # a unified kernel's decode share, by term, for the chunks to add to
            if decodes:
                for i, (layers, compute, memory, flops, nbytes, energy) in enumerate(decode_parts(decodes,
                                                                                                   decode_context)):
                    if split:
                        t += layers * ((compute if compute > memory else memory) + self.terms[i].overhead_s)
                        if capped:
                            e += _kernel_j(layers, flops, nbytes, energy)
                    else:
                        shared[i] = (compute, memory, flops, nbytes)
            for i, (layers, (fp, fn, fc), (bp, bn, bc), spf, h, spb, overhead, group, d, window,
                    energy) in enumerate(chunk_terms):
                compute, memory, flops, nbytes = shared.get(i, (0.0, 0.0, 0.0, 0.0))
                for n, kv in chunks:
                    pairs = causal_pairs(n, kv, window)  # query i of the chunk sees kv - n + 1 + i keys (<= W)
                    cached = kv - n if window is None or kv - n < window else window
                    keys = kv if window is None or kv < window else window
                    dim = n * group  # the kernel's smallest matrix dimension, as ops stacks GQA heads
                    if keys < dim:
                        dim = keys
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
                    e += _kernel_j(layers, flops, nbytes, energy)
            if capped and e > t * power:
                return e / power
            return t

        return step


class PipelineStepTime(StepTime):
    """A pipeline's step: its batch split into m = min(pp, sequences) micro-batches that flow through the stages
    together (vLLM runs pp scheduled batches at once, TensorRT-LLM pp micro-batches). Each chip of stage group g
    runs its step of every micro-batch j, t_gj (capped at its own TDP, as ``evaluate`` caps each stage), and a
    micro-batch's next token needs its trip through every stage, so a step takes

        max(max_g sum_j t_gj, max_j sum_g (stages in g) x t_gj),

    ``evaluate``'s max(m x the slowest stage, one trip) when the micro-batches are equal. The decodes are dealt
    as evenly as whole sequences allow (the first D mod m micro-batches one more), with their context in
    proportion; the prefill chunks one each in schedule order, from the first micro-batch with fewer decodes."""

    def __init__(self, parts: list[tuple[int, StepTime]], pp: int) -> None:
        self.parts, self.pp = parts, pp
        first = parts[0][1]
        self.group, self.head_dim = first.group, first.head_dim
        self.token_s, self.seq_s, self.power_w = first.token_s, first.seq_s, first.power_w
        self.fn = self._compile()

    def many(self, decodes, context, chunk_step, chunk_n, chunk_kv) -> np.ndarray:
        D, C = np.asarray(decodes, np.int64), np.asarray(context, float)
        cs, cn, ckv = np.asarray(chunk_step, np.int64), np.asarray(chunk_n, np.int64), np.asarray(chunk_kv, np.int64)
        m = np.maximum(np.minimum(self.pp, D + np.bincount(cs, minlength=len(D))), 1)
        order = np.argsort(cs, kind="stable")  # a chunk's rank among its step's, in schedule order
        rank = np.empty(len(cs), np.int64)
        rank[order] = np.arange(len(cs)) - np.searchsorted(cs[order], cs[order])
        slot = (D % m)[cs] + rank
        slot = slot % m[cs]
        busy = [np.zeros(len(D)) for _ in self.parts]
        trip = np.zeros(len(D))
        for j in range(self.pp):
            dj = D // m + (j < D % m)
            cj = np.where(D > 0, C * dj / np.maximum(D, 1), 0.0)
            mine = slot == j
            runs = j < m
            tr = 0.0
            for g, (count, st_) in enumerate(self.parts):
                x = np.where(runs, st_.many(dj, cj, cs[mine], cn[mine], ckv[mine]), 0.0)
                busy[g] = busy[g] + x
                tr = tr + count * x
            trip = np.maximum(trip, tr)
        return np.maximum(np.maximum.reduce(busy), trip)

    def _compile(self):
        parts = [(count, st_.fn) for count, st_ in self.parts]
        pp = self.pp

        def trip(chunks: list[tuple[int, int]], decodes: int, decode_context) -> float:
            t = 0.0
            for count, fn in parts:
                t += count * fn(chunks, decodes, decode_context)
            return t

        def step(chunks: list[tuple[int, int]], decodes: int, decode_context) -> float:
            m = decodes + len(chunks)
            if m > pp:
                m = pp
            if m <= 1:
                return trip(chunks, decodes, decode_context)
            share, extra = divmod(decodes, m)
            dealt = [[] for _ in range(m)]
            for c, chunk in enumerate(chunks):
                dealt[(extra + c) % m].append(chunk)
            busy = [0.0] * len(parts)
            longest = 0.0
            for j in range(m):
                dj = share + 1 if j < extra else share
                cj = decode_context * dj / decodes if decodes else 0.0
                tr = 0.0
                for g, (count, fn) in enumerate(parts):
                    x = fn(dealt[j], dj, cj)
                    busy[g] += x
                    tr += count * x
                if tr > longest:
                    longest = tr
            slowest = max(busy)
            return slowest if slowest > longest else longest

        return step


def step_time(sc: Scenario, max_tokens: int, max_seqs: int) -> StepTime:
    """The step-time function of one replica for steps of up to ``max_tokens`` tokens and ``max_seqs`` sequences.

    Its tables are priced at a decode step's efficiencies; a step with prefill chunks pays the difference
    of the prefill's per-kernel time for each kernel it runs (the framework launches those steps' kernels
    where it replays decode steps from CUDA graphs). A pipeline whose chips' power is known sums a step
    function per stage group, each capped at its own TDP (``PipelineStepTime``)."""
    decode_eff = sc.phase_efficiency(sc.efficiency, True)
    pr = Pricer(sc, sc.rates, decode_eff, sc.energy_rates)
    if sc.plan.pp > 1:
        return PipelineStepTime([(g.count, _step_time(sc, pr, max_tokens, max_seqs, [g])) for g in sc.groups],
                                sc.plan.pp)
    return _step_time(sc, pr, max_tokens, max_seqs, None)


def _step_time(sc: Scenario, pr: Pricer, max_tokens: int, max_seqs: int, groups: list | None) -> StepTime:
    """``step_time`` over every stage (``groups`` None), or over one chip of each of ``groups``."""
    decode_eff = pr.eff
    extra_per_kernel = sc.phase_efficiency(sc.efficiency, False).kernel_overhead_s - decode_eff.kernel_overhead_s
    kernel = _kernels(pr, (groups or sc.groups)[0], True)[0]
    group, head_dim = kernel.group, kernel.dim
    T = np.arange(1, max_tokens + 1, dtype=float)
    B = np.arange(1, max_seqs + 1, dtype=float)
    token_s, seq_s = np.zeros(max_tokens + 1), np.zeros(max_seqs + 1)
    token_j, seq_j = np.zeros(max_tokens + 1), np.zeros(max_seqs + 1)
    mla = sc.spec.is_mla
    dec_s, dec_j = np.zeros(max_seqs + 1), np.zeros(max_seqs + 1)
    for g, count in _counted(sc, groups):
        i = g.indices
        ops = pr.stage_ops(g, 1.0, T, T, with_attention=False, decode=False)
        token = pr.cost([op for op in ops if op.name not in SEQUENCE_OPS | CONTEXT_OPS], ("token", i))
        token_s[1:] += count * token.time_s
        per_seq = pr.stage_ops(g, B, 1.0, 1.0, with_attention=False, decode=True)
        seq = pr.cost([op for op in per_seq if op.name in SEQUENCE_OPS], ("seq", i))
        if seq.table.ops:
            seq_s[1:] += count * seq.time_s
        if mla:
            dec = pr.cost([op for op in per_seq if op.name in DECODE_OPS], ("decode_only", i))
            dec_s[1:] += count * dec.time_s
            if pr.er is not None:
                dec_j[1:] += count * dec.energy_j
        if pr.er is not None:
            token_j[1:] += count * token.energy_j
            if seq.table.ops:
                seq_j[1:] += count * seq.energy_j
    # once a pass (at the last stage, where the token is sampled), as estimate()
    last = groups is None or any(g.stage.last for g in groups)
    fixed = sc.efficiency.step_overhead_s if last else 0.0
    power = None if pr.power is None else float(pr.power)
    extra: dict[str, Any] = {}
    terms = _attention_terms(pr, True, groups)
    if mla:
        extra = dict(prefill_terms=_attention_terms(pr, False, groups), decode_s=dec_s.tolist(),
                     decode_j=dec_j.tolist() if power else None, context=_context_ops(pr, groups))
    if extra_per_kernel:
        extra["launch_s"] = _launches(pr, extra.get("prefill_terms"), terms, extra_per_kernel, groups)
    return StepTime(token_s.tolist(), seq_s.tolist(), fixed, terms, group, head_dim,
                    token_j.tolist() if power else None, seq_j.tolist() if power else None, power, **extra)


def _launches(pr: Pricer, prefill_terms, decode_terms, per_kernel: float,
              groups: list | None = None) -> tuple[float, float]:
    """(seconds, seconds) a step with prefill chunks adds at ``per_kernel`` a kernel: for the kernels every such
    step runs (token and sequence operators, the chunks' attention and context operators), and, when it has
    decodes, for theirs (MLA's absorbed projections and decode attention)."""
    sc = pr.sc
    kernels = decoding = 0
    for g, count in _counted(sc, groups):
        for op in pr.stage_ops(g, 1.0, 1.0, 1.0, with_attention=False, decode=False):
            if op.kind != "comm":
                kernels += count * op.count
        if prefill_terms is not None:
            decoding += count * sum(op.count for op in pr.stage_ops(g, 1.0, 1.0, 1.0, with_attention=False,
                                                                        decode=True) if op.name in DECODE_OPS)
    kernels += sum(t.layers for t in (prefill_terms if prefill_terms is not None else decode_terms))
    if prefill_terms is not None:
        decoding += sum(t.layers for t in decode_terms)
    return kernels * per_kernel, decoding * per_kernel


class _ContextOps:
    """(seconds, J) of the operators a step's prefill chunks run over their context tokens, by the total of
    those tokens: priced when a total is first met (``__call__``), or for many totals at once (``many``)."""

    def __init__(self, pr: Pricer, groups: list | None = None):
        self.pr, self.groups = pr, groups
        self.memo: dict[int, tuple[float, float]] = {0: (0.0, 0.0)}

    def _price(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pr, s, j = self.pr, np.zeros(len(tokens)), np.zeros(len(tokens))
        T = tokens.astype(float)
        for g, count in _counted(pr.sc, self.groups):
            ops = [op for op in pr.stage_ops(g, 1.0, T, T, with_attention=False, decode=False)
                   if op.name in CONTEXT_OPS]
            c = pr.cost(ops, ("context", g.indices))
            s = s + count * c.time_s
            if c.energy is not None:
                j = j + count * c.energy_j
        return s, j

    def __call__(self, tokens: int) -> tuple[float, float]:
        hit = self.memo.get(tokens)
        if hit is None:
            s, j = self._price(np.array([tokens]))
            hit = self.memo[tokens] = (float(s[0]), float(j[0]))
        return hit

    def many(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, where = np.unique(tokens, return_inverse=True)
        s, j = self._price(np.maximum(values, 1))
        zero = values == 0
        s, j = np.where(zero, 0.0, s), np.where(zero, 0.0, j)
        return s[where], j[where]


def _context_ops(pr: Pricer, groups: list | None = None) -> _ContextOps:
    return _ContextOps(pr, groups)


def _windowed_layers(sc: Scenario) -> int:
    """Layers whose K/V a sliding window caps, where full-attention layers hold the rest (gpt-oss: 18 of 36);
    0 with no window, or with every layer windowed (whose cache the engine charges token by token)."""
    windowed = sc.spec.windowed_layers
    return windowed if windowed < sc.spec.num_layers else 0


def kv_cache_blocks(sc: Scenario, *, block_size: int, max_tokens: int, max_seqs: int | None = None) -> int:
    """KV-cache blocks of one replica, as vLLM sizes its cache at start-up and ``estimate`` its max batch.

    Per chip: capacity x gpu_memory_utilization, less the runtime overhead, the weights, the
    activations and collective buffers of a profiling pass of ``max_tokens`` tokens (vLLM's
    profile run uses max-num-batched-tokens) and the logits of ``max_seqs`` sampled sequences (the
    scenario's max_num_seqs by default); what is left holds blocks of ``block_size``
    tokens at the chip's KV bytes per token (``infercast.memory``). The replica takes the
    smallest count over its pipeline stages (vLLM takes the minimum over workers). Where a sliding window
    caps some of the layers (gpt-oss: half), a block holds ``block_size`` tokens of the full-attention layers
    and each running request also holds ``window_blocks`` of them for its windowed layers, as vLLM's hybrid
    KV-cache manager and TensorRT-LLM's per-layer windows keep them, and as ``estimate``'s memory does.
    """
    opts = sc.memory.model_copy(update={"max_num_batched_tokens": max_tokens, "block_size": block_size,
                                        **({"max_num_seqs": max_seqs} if max_seqs is not None else {})})
    usable = sc.rates.mem_capacity_bytes * opts.gpu_memory_utilization
    full = 1.0 - _windowed_layers(sc) / sc.spec.num_layers  # share of a token's K/V a block slot holds
    blocks = []
    for load in sc.loads:
        profile = need(load, 1.0, float(max_tokens), 0.0, opts)  # one pass of max_tokens tokens, one sequence
        free = usable - profile.total_bytes
        blocks.append(math.floor(free / (block_size * load.kv_bytes_per_token * full)) if free > 0 else 0)
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


def window_blocks(sc: Scenario, *, block_size: int) -> int:
    """Blocks (of ``kv_cache_blocks``) a running request holds for its windowed layers: the window's
    ceil(W / block_size) blocks of those layers, in blocks of the full-attention layers' size (gpt-oss-120b,
    half its layers within 128 tokens: 8 of 16 tokens); 0 unless a window caps some layers but not all."""
    windowed = _windowed_layers(sc)
    if not windowed:
        return 0
    window = -(-sc.spec.sliding_window // block_size)  # blocks of the windowed layers
    return -(-window * windowed // (sc.spec.num_layers - windowed))  # in blocks of the full-attention layers


__all__ = ["PipelineStepTime", "StepTime", "deployment", "kv_cache_blocks", "step_time", "window_blocks"]
