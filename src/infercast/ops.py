"""Operators: FLOPs and bytes of every kernel of a forward pass, for prefill and decode.

One pass is described by ``batch`` sequences each adding ``q_len`` new tokens on top of a
context, attending causally to ``kv_len`` keys (the new tokens included):

* prefill of a prompt of S tokens: ``q_len = kv_len = S``;
* one decode step at KV length L: ``q_len = 1, kv_len = L``.

Every size may be a numpy array; all arithmetic broadcasts, so one call describes a whole
sweep of batches or every step of a decode (``kv_len = isl + arange(1, osl)``).

Conventions: a multiply-add is 2 FLOPs; GEMM ``[M, K] x [K, N]`` costs ``2 M N K``
(Kaplan et al. 2020, sec. 2.1). Bytes are what the kernel moves to or from device memory:
weights and activations are read once and outputs written once (a kernel whose working set
exceeds on-chip memory re-reads some of it; the efficiency model accounts for that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np

from infercast.arrays import ceil, clip, minimum, num
from infercast.formats import element_bytes, get_format, math_dtype, weight_bits
from infercast.keep import keep
from infercast.model import ModelSpec

Attention = Literal["flash", "flash-per-head", "materialized"]
Kind = Literal["gemm", "attention", "vector", "comm"]


@dataclass(frozen=True)
class MoeShard:
    """How one chip's MoE layers are split: experts over ``ep`` chips, tokens of ``token_groups``
    data-parallel replicas meeting in each layer, shared experts of ``shared_width`` columns."""

    ep: int = 1
    token_groups: int = 1
    shared_width: int | None = None
    imbalance: float = 1.0
    """Tokens of the busiest expert over the mean: the grouped GEMM waits for it (1 = uniform routing)."""

GEMM_TILE = 128
"""Edge of a GEMM output tile: 128 x 128 is the threadblock tile cuBLAS and CUTLASS pick for large
16-bit GEMMs on A100/H100 (NVIDIA, "Matrix Multiplication Background User's Guide")."""


def gemm_tiles(M, N, experts=1):
    """Output tiles of ``experts`` GEMMs of ``M x N`` each."""
    return experts * ceil(M / GEMM_TILE) * ceil(N / GEMM_TILE)


# FLOPs per element of the elementwise kernels, counted as the arithmetic of the formula.
RMSNORM_FLOPS = 4  # square, accumulate, scale by rsqrt(mean), multiply by weight
LAYERNORM_FLOPS = 7  # mean, centre, square, accumulate, scale, multiply, add bias
ROPE_FLOPS = 3  # x*cos + rotate(x)*sin per element
SOFTMAX_FLOPS = 5  # max, subtract, exp, sum, divide
SILU_MUL_FLOPS = 5  # x * sigmoid(x) * up (exp, add, divide, two multiplies)
GELU_FLOPS = 8  # tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
SAMPLING_FLOPS = 5  # softmax over the vocabulary, then top-k/top-p selection


@dataclass(frozen=True)
class Precision:
    """Storage format of each tensor class, and the bytes per weight of each part of the model.

    Quantization schemes may store parts of the model differently (llama.cpp keeps the output
    matrix at q6_K); ``for_model`` resolves that, a bare ``Precision(...)`` uses the nominal bits.
    """

    weight: str = "fp16"
    act: str = "fp16"
    kv: str = "fp16"
    layer_weight_bytes: float | None = None
    """Bytes per weight of the decoder layers' linear layers (sparse and compressed: per dense weight)."""
    head_weight_bytes: float | None = None
    embedding_weight_bytes: float | None = None
    layer_math_density: float = 1.0
    """Share of the linear layers' dense math the matrix units execute (below 1 with accelerated sparsity)."""
    dense_layer_weight_bytes: float | None = None
    """Bytes per weight of the linear layers before sparse compression (default: layer_weight_bytes);
    the MoE router, which sparsity leaves dense, is stored so."""
    expert: str | None = None
    """Storage format of the routed experts' weights, where it differs from ``weight`` (gpt-oss's checkpoint
    keeps its experts in MXFP4 and the rest in bf16)."""

    def __post_init__(self) -> None:
        nominal = element_bytes(self.weight, "weight dtype")
        element_bytes(self.act, "act dtype")
        element_bytes(self.kv, "kv-cache dtype")
        for name in ("layer_weight_bytes", "head_weight_bytes", "embedding_weight_bytes"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, nominal)
        if self.dense_layer_weight_bytes is None:
            object.__setattr__(self, "dense_layer_weight_bytes", self.layer_weight_bytes)
        if self.expert is not None:
            element_bytes(self.expert, "expert dtype")

    @property
    def expert_weight_bytes(self) -> float:
        """Bytes per weight of the routed experts: their own format's, else the layers' (sparsity included)."""
        return self.layer_weight_bytes if self.expert is None else element_bytes(self.expert)

    @cached_property
    def expert_math(self) -> str:
        """The format the routed experts' GEMMs run in."""
        return self.gemm_math if self.expert is None else math_dtype(self.expert, self.act)

    @cached_property
    def expert_dequant_ops(self) -> float:
        return self.dequant_ops if self.expert is None else _dequant(self.expert)

    @classmethod
    def for_model(cls, spec: ModelSpec, weight: str, act: str, kv: str, expert: str | None = None) -> Precision:
        parts = spec.param_parts()
        total, _ = spec.params()
        layer_params = total - parts["embedding"] - parts["head"] - parts["final_norm"]
        v_and_down = spec.num_layers * spec.hidden_size * spec.kv_dim if not spec.is_mla else 0
        v_and_down += spec.num_dense_layers * spec.intermediate_size * spec.hidden_size
        v_and_down += spec.num_moe_layers * (spec.num_experts + spec.num_shared_experts) * (
            spec.moe_intermediate_size * spec.hidden_size)
        bits = weight_bits(weight, layer_params=layer_params, more_bits_params=v_and_down)
        return cls(weight, act, kv, bits["layers"] / 8, bits["head"] / 8, bits["embedding"] / 8,
                   expert=expert if spec.is_moe else None)

    @property
    def dense_layer_bits(self) -> float:
        """Bits per weight of the linear layers before any sparse compression."""
        return self.dense_layer_weight_bytes * 8

    @cached_property
    def gemm_math(self) -> str:
        return math_dtype(self.weight, self.act)

    @cached_property
    def attention_math(self) -> str:
        return math_dtype(self.kv, self.act)

    @cached_property
    def dequant_ops(self) -> float:
        """Operations to dequantise one weight (0 for formats the math consumes directly)."""
        return _dequant(self.weight)

    @cached_property
    def act_bytes(self) -> float:
        """Bytes of one activation element."""
        return element_bytes(self.act)

    @cached_property
    def kv_bytes(self) -> float:
        """Bytes of one KV-cache element."""
        return element_bytes(self.kv)


def _dequant(name: str) -> float:
    """Operations to dequantise one weight of format ``name`` (0 for formats the math consumes directly)."""
    fmt = get_format(name)
    return fmt.dequant_ops if fmt.math is None else 0.0


@dataclass(frozen=True)
class Op:
    """One kernel, executed ``count`` times per pass (once per layer it appears in)."""

    name: str
    kind: Kind
    count: int
    flops: np.ndarray
    weight_bytes: np.ndarray
    act_bytes: np.ndarray
    """Activations read."""
    kv_bytes: np.ndarray
    """KV cache read."""
    write_bytes: np.ndarray
    min_dim: np.ndarray
    """Smallest matrix dimension (GEMM efficiency); inf for elementwise kernels."""
    math: str
    """Format the math runs in."""
    comm_s: np.ndarray | None = None
    """For a collective (kind 'comm'): its time from the alpha-beta model."""
    vector_flops: np.ndarray | float = 0.0
    """Elementwise work on the vector units beside the matrix math (dequantising weights)."""
    compute_factor: np.ndarray | float = 1.0
    """Multiplier on the compute time: above 1 for the straggler expert of an imbalanced MoE layer."""
    tier: str | None = None
    """For a collective: the interconnect tier it runs over."""
    tiles: np.ndarray | None = None
    """Output tiles of a GEMM (GEMM_TILE x GEMM_TILE each), for wave quantization."""
    seq_len: np.ndarray | None = None
    """Keys each query attends to (attention kernels): their efficiency grows with it."""
    gemm_shape: tuple | None = None
    """(M, N, K, groups) of a GEMM: ``groups`` weight matrices of K x N, each multiplied by M rows (the touched
    experts of a MoE layer, the heads of MLA's absorbed projections); how it tiles an on-chip buffer
    (``infercast.tiling``)."""
    query_bytes: np.ndarray | float | None = None
    """Attention: on-chip bytes of one sequence's queries that share a K/V head, with their output accumulators;
    the kernel streams K/V once per buffer-full of them (``infercast.tiling``)."""

    @property
    def bytes(self) -> np.ndarray:
        return self.weight_bytes + self.act_bytes + self.kv_bytes + self.write_bytes


def make_op(name, kind, count, *, flops, weight=0.0, act=0.0, kv=0.0, write=0.0, min_dim=math.inf, math="fp32",
            vector_flops=0.0, compute_factor=1.0, tiles=None, seq_len=None, gemm_shape=None, query_bytes=None) -> Op:
    # the hot constructor (tens of operators per pass): the frozen dataclass's fields filled in one update of its
    # __dict__, as its __init__ would set them one object.__setattr__ at a time at several times the cost
    op = _new_op(Op)
    op.__dict__.update(
        name=name, kind=kind, count=count, flops=_num(flops), weight_bytes=_num(weight), act_bytes=_num(act),
        kv_bytes=_num(kv), write_bytes=_num(write), min_dim=_num(min_dim), math=math, comm_s=None,
        vector_flops=_num(vector_flops), compute_factor=compute_factor, tier=None,
        tiles=None if tiles is None else _num(tiles), seq_len=None if seq_len is None else _num(seq_len),
        gemm_shape=gemm_shape, query_bytes=None if query_bytes is None else _num(query_bytes))
    return op


_new_op = object.__new__


def _num(x):
    """``num``, answering a Python float without a call."""
    return x if type(x) is float else num(x)


def gemm_op(name: str, count: int, M, N: int, K: int, p: Precision, *, weight_elems=None, bias: bool = False,
            wbytes: float | None = None, sparse: bool = True, out_bytes: float | None = None) -> Op:
    """``[M, K] x [K, N]``: activations ``M x K`` in, weights ``K x N``, output ``M x N``.

    Weight-only quantised weights are dequantised on the vector units once per 128-row tile of M
    (the M-tile of the usual W4A16 kernels: Marlin, AWQ GEMM, llama.cpp's MMQ). ``sparse``: a
    decoder linear layer, whose FLOPs are those the units execute when sparsity thins them
    (``p.layer_math_density`` of the dense 2MNK); the LM head and the router pass False. ``out_bytes``:
    bytes per output element (default: the activations').
    """
    a = p.act_bytes
    w = p.layer_weight_bytes if wbytes is None else wbytes
    groups = 1 if weight_elems is None else weight_elems / (N * K)  # MLA's absorbed projections: one per head
    weight_elems = N * K if weight_elems is None else weight_elems
    density = p.layer_math_density if sparse else 1.0
    return make_op(
        name, "gemm", count,
        flops=2 * M * N * K * density,
        weight=weight_elems * w + (N * a if bias else 0),
        act=M * K * a,
        write=M * N * (a if out_bytes is None else out_bytes),
        min_dim=minimum(minimum(M, N), K),
        math=p.gemm_math,
        vector_flops=p.dequant_ops * weight_elems * ceil(M / 128) if p.dequant_ops else 0.0,
        tiles=gemm_tiles(M, N),
        gemm_shape=(M / groups, N, K, groups),
    )


def vector_op(name: str, count: int, elems, flops_per_elem: float, p: Precision, *, reads: float = 1,
            writes: float = 1, weight_elems: float = 0) -> Op:
    a = p.act_bytes
    # norm weights stay in 16-bit (or fp32) whatever the quantization: stored like activations
    return make_op(name, "vector", count, flops=flops_per_elem * elems, weight=weight_elems * a,
                   act=reads * elems * a, write=writes * elems * a)


def causal_pairs(q_len, kv_len, window=None):
    """(query, key) pairs per sequence and head when the ``q_len`` newest tokens attend causally.

    Query i (0-based among the new ones) sees ``a + i`` keys, ``a = kv_len - q_len + 1``, so the
    sum is ``q_len * kv_len - q_len * (q_len - 1) / 2``: S (S + 1) / 2 for a prefill of S tokens
    (about half the full S^2 score matrix), and L for one decode step. With a sliding window
    W a query sees min(a + i, W) keys: the n queries with a + i <= W contribute n a + n (n - 1) / 2,
    the rest W each.
    """
    if window is None:
        return q_len * kv_len - q_len * (q_len - 1) / 2
    a = kv_len - q_len + 1
    n = clip(window - a + 1, 0, q_len)
    return n * a + n * (n - 1) / 2 + (q_len - n) * window


def cached_tokens(kv_len, q_len, window=None):
    """Earlier tokens whose K/V a pass reads from the cache (a rolling buffer of W with a window)."""
    earlier = kv_len - q_len
    return earlier if window is None else minimum(earlier, window)


def layer_ops(spec: ModelSpec, batch, q_len, kv_len, p: Precision, attention: Attention = "flash",
              moe: MoeShard = MoeShard(), norm_tokens_divisor: int = 1, with_attention: bool = True,
              decode: bool | None = None) -> list[Op]:
    """Operators of all decoder layers for one pass (each op's ``count`` is its number of layers).

    ``norm_tokens_divisor``: with sequence parallelism, norms and residual adds run on 1/tp of
    the tokens of each chip. ``with_attention`` False leaves out the attention kernels, whose cost
    depends on each sequence's context (``attention_kernels``): what is left depends on the pass's
    tokens and sequences only. ``decode``: a decode step (MLA runs its absorbed kernels), rather than a
    prefill; None: one new token per sequence is a decode.
    """
    T = batch * q_len  # tokens in the pass
    Tn = T / norm_tokens_divisor
    L = spec.num_layers
    decode = _is_decode(q_len) if decode is None else decode
    kernels = attention_kernels(spec, p, attention, decode=decode) if with_attention else []
    core = [k.op(batch, q_len, kv_len) for k in kernels]
    ops = [norm_op("attn_norm", spec, L, Tn, p)]
    if spec.is_mla:
        ops += _mla_ops(spec, batch, q_len, kv_len, p, core, decode)
    else:
        ops += _attention_ops(spec, batch, q_len, kv_len, p, core)
    if spec.norms_per_layer == 2:
        ops.append(norm_op("mlp_norm", spec, L, Tn, p))
    if spec.num_dense_layers:
        ops += _mlp_ops(spec, spec.num_dense_layers, T, spec.intermediate_size, p, prefix="mlp")
    if spec.num_moe_layers:
        ops += _moe_ops(spec, T, p, moe)
    # A sequential block adds to the residual twice (after attention, after the MLP); a
    # parallel block (GPT-J, NeoX, Falcon) adds both outputs to it in one kernel.
    if spec.parallel_block:
        ops.append(vector_op("residual_add", L, Tn * spec.hidden_size, 2, p, reads=3))
    else:
        ops.append(vector_op("residual_add", 2 * L, Tn * spec.hidden_size, 1, p, reads=2))
    return ops


def _is_decode(q_len) -> bool:
    """A pass of one new token per sequence (MLA then runs its absorbed decode kernels)."""
    return bool(np.all(np.asarray(q_len) == 1))


def norm_op(name: str, spec: ModelSpec, count: int, T, p: Precision) -> Op:
    per = RMSNORM_FLOPS if spec.norm == "rmsnorm" else LAYERNORM_FLOPS
    weights = spec.norm_params
    return vector_op(name, count, T * spec.hidden_size, per, p, weight_elems=weights)


def _attention_ops(spec: ModelSpec, batch, q_len, kv_len, p: Precision, core: list[Op]) -> list[Op]:
    T, L, h = batch * q_len, spec.num_layers, spec.hidden_size
    q, kv = spec.q_dim, spec.kv_dim
    ops = [gemm_op("qkv_proj", L, T, q + 2 * kv, h, p, bias=spec.qkv_bias)]
    if spec.position_embedding == "rope":
        ops.append(vector_op("rope", L, T * (q + kv), ROPE_FLOPS, p))
    ops += core
    ops.append(gemm_op("out_proj", L, T, h, spec.attn_out_dim, p, bias=spec.out_bias))
    return ops


Coefficients = tuple[float, float, float]
"""Per sequence: (per (query, key) pair, per new token, per cached token)."""


@dataclass(frozen=True)
class Kernel:
    """An attention kernel of one layer: its FLOPs and bytes are affine in each sequence's
    (query, key) pairs P, new tokens n and cached tokens c, ``coef . (P, n, c)``.

    For one decode step at KV length L that is P = min(L, W), n = 1, c = min(L - 1, W): affine in
    L up to the window and constant beyond it. The compute efficiency depends on the kernel's
    smallest matrix dimension, min(n x group, min(kv, W), dim), which stops changing once the
    context reaches min(group, dim), and on the keys per query P / n (``roofline``).
    """

    name: str
    kind: Kind
    count: int
    """Executions per pass: the layers it runs in."""
    flops: Coefficients
    act: Coefficients
    """Activation bytes read (queries, the new tokens' K/V, materialised scores)."""
    kv: Coefficients
    """KV-cache bytes read."""
    write: Coefficients
    group: int
    """Query heads sharing one K/V head, stacked into the M dimension as FlashAttention's decode kernels do."""
    dim: int
    """Smallest head dimension of the kernel's two batched GEMMs."""
    window: int | None
    math: str
    query_row_bytes: float = 0.0
    """On-chip bytes of one query position of a K/V head's group: its queries and FP32 output accumulators."""

    def op(self, batch, q_len, kv_len) -> Op:
        """The kernel for ``batch`` sequences each adding ``q_len`` tokens over ``kv_len`` keys."""
        W = self.window
        pairs, cached = causal_pairs(q_len, kv_len, W), cached_tokens(kv_len, q_len, W)

        def cost(c: Coefficients):
            return batch * (c[0] * pairs + c[1] * q_len + c[2] * cached)

        keys = kv_len if W is None else minimum(kv_len, W)
        min_dim = minimum(minimum(q_len * self.group, keys), self.dim)
        matrix = self.kind == "attention"
        return make_op(self.name, self.kind, self.count, flops=cost(self.flops), act=cost(self.act), kv=cost(self.kv),
                       write=cost(self.write), min_dim=min_dim if matrix else math.inf,
                       math=self.math if matrix else "fp32", seq_len=pairs / q_len if matrix else None,
                       query_bytes=q_len * self.query_row_bytes if matrix else None)

    @property
    def saturation_len(self) -> int:
        """KV length from which the smallest matrix dimension, and so the efficiency's shape, is fixed."""
        return min(self.group, self.dim, self.window or self.dim)


def attention_kernels(spec: ModelSpec, p: Precision, attention: Attention = "flash", *,
                      decode: bool = False) -> list[Kernel]:
    """Scores, softmax and weighted sum over the cache for all heads of one layer.

    The cache holds ``kv_len - q_len`` earlier tokens; the new tokens' K and V come from the
    projection in this pass and are appended. FlashAttention-style (Dao et al. 2022) keeps
    scores on chip: one kernel reads Q and K/V once and writes O. The materialised variant
    writes the score matrix (act format) and reads it back, three kernels. MLA attends over the
    latent in decode (absorbed, MQA-style) and over up-projected per-head K/V in prefill.
    """
    # kept per (model, precision) object (both frozen)
    return list(keep(_KERNELS, (spec, p), lambda: tuple(_attention_kernels(spec, p, attention, decode)),
                     (attention, decode)))


_KERNELS: dict[tuple, tuple] = {}


def _attention_kernels(spec: ModelSpec, p: Precision, attention: Attention, decode: bool) -> list[Kernel]:
    H = spec.num_heads
    if not spec.is_mla:
        d_qk = d_v = spec.head_dim
        kv_elems, kv_heads = 2 * spec.kv_dim, spec.num_kv_heads  # K and V of one layer, per token
    elif decode:
        d_qk, d_v = spec.kv_lora_rank + spec.qk_rope_head_dim, spec.kv_lora_rank
        kv_elems, kv_heads = spec.kv_lora_rank + spec.qk_rope_head_dim, 1
    else:
        d_qk, d_v = spec.qk_nope_head_dim + spec.qk_rope_head_dim, spec.v_head_dim
        kv_elems, kv_heads = spec.kv_lora_rank + spec.qk_rope_head_dim, H
    a, c = p.act_bytes, p.kv_bytes
    # TensorRT-LLM's generation kernel before XQA ran each query head on its own: every query head reads
    # its K/V head again, one row per GEMM
    reads = kv_group = H // kv_heads
    if not (attention == "flash-per-head" and decode and not spec.is_mla):
        reads = 1
    q_b, o_b, new_kv, cached = H * d_qk * a, H * d_v * a, kv_elems * c, kv_elems * c * reads  # bytes per token
    math_ = p.attention_math
    out = []
    # layers attending within the window, and the others (gpt-oss alternates them): one kernel set each,
    # the windowed ones named *_sliding where both kinds are present
    mixed = 0 < spec.windowed_layers < spec.num_layers
    for suffix, layers, window in (("_sliding" if mixed else "", spec.windowed_layers, spec.sliding_window),
                                   ("", spec.num_layers - spec.windowed_layers, None)):
        if not layers:
            continue
        # FP32 output accumulators (4 bytes) beside each query sharing a K/V read, as FlashAttention keeps
        # them on chip
        group = kv_group // reads
        shape = dict(group=group, dim=min(d_qk, d_v), window=window, query_row_bytes=group * (d_qk * a + d_v * 4.0))
        if attention != "materialized":
            out.append(Kernel("attention" + suffix, "attention", layers,
                              flops=(H * (2 * d_qk + SOFTMAX_FLOPS + 2 * d_v), 0.0, 0.0),
                              act=(0.0, q_b + new_kv, 0.0), kv=(0.0, 0.0, cached), write=(0.0, o_b + new_kv, 0.0),
                              math=math_, **shape))
            continue
        score = H * a  # bytes of one pair's score for every head
        share = d_v / (d_qk + d_v)  # of the cache and the new K/V: the V half the value kernel reads
        out += [
            Kernel("attn_score" + suffix, "attention", layers, flops=(2 * H * d_qk, 0.0, 0.0),
                   act=(0.0, q_b + new_kv, 0.0), kv=(0.0, 0.0, cached), write=(score, new_kv, 0.0), math=math_,
                   **shape),
            Kernel("attn_softmax" + suffix, "vector", layers, flops=(SOFTMAX_FLOPS * H, 0.0, 0.0),
                   act=(score, 0.0, 0.0), kv=(0.0, 0.0, 0.0), write=(score, 0.0, 0.0), math=math_, **shape),
            Kernel("attn_value" + suffix, "attention", layers, flops=(2 * H * d_v, 0.0, 0.0),
                   act=(score, new_kv * share, 0.0), kv=(0.0, 0.0, cached * share), write=(0.0, o_b, 0.0),
                   math=math_, **shape),
        ]
    return out


def _mla_ops(spec: ModelSpec, batch, q_len, kv_len, p: Precision, core: list[Op], decode: bool) -> list[Op]:
    """Multi-head latent attention (DeepSeek-V2/V3).

    The cache holds one latent of ``kv_lora_rank + qk_rope_head_dim`` per token and layer.
    Prefill up-projects the latent to per-head K and V (kv_b_proj) and runs ordinary
    attention; decode absorbs W_UK into the query and W_UV into the output (DeepSeek-V2
    paper, sec. 2.1.2) and attends over the latent directly, MQA-style.
    """
    T, L, h, H = batch * q_len, spec.num_layers, spec.hidden_size, spec.num_heads
    r, rope, nope, v = spec.kv_lora_rank, spec.qk_rope_head_dim, spec.qk_nope_head_dim, spec.v_head_dim
    ops = []
    if spec.q_lora_rank:
        ops.append(gemm_op("q_a_proj", L, T, spec.q_lora_rank, h, p))
        ops.append(gemm_op("q_b_proj", L, T, H * (nope + rope), spec.q_lora_rank, p))
    else:
        ops.append(gemm_op("q_proj", L, T, H * (nope + rope), h, p))
    ops.append(gemm_op("kv_a_proj", L, T, r + rope, h, p))
    ops.append(vector_op("rope", L, T * (H + 1) * rope, ROPE_FLOPS, p))
    if decode:
        ops.append(gemm_op("mla_absorb_q", L, T * H, r, nope, p, weight_elems=H * nope * r))
        ops += core
        ops.append(gemm_op("mla_absorb_o", L, T * H, v, r, p, weight_elems=H * r * v))
    else:
        ops.append(gemm_op("kv_b_proj", L, batch * kv_len, H * (nope + v), r, p))
        ops += core
    ops.append(gemm_op("out_proj", L, T, h, H * v, p))
    return ops


def _mlp_ops(spec: ModelSpec, count: int, T, width: int, p: Precision, *, prefix: str) -> list[Op]:
    h = spec.hidden_size
    if spec.gated_mlp:
        return [
            gemm_op(f"{prefix}_gate_up", count, T, 2 * width, h, p, bias=spec.mlp_bias),
            vector_op(f"{prefix}_act", count, T * width, SILU_MUL_FLOPS, p, reads=2),
            gemm_op(f"{prefix}_down", count, T, h, width, p, bias=spec.mlp_bias),
        ]
    return [
        gemm_op(f"{prefix}_up", count, T, width, h, p, bias=spec.mlp_bias),
        vector_op(f"{prefix}_act", count, T * width, GELU_FLOPS, p),
        gemm_op(f"{prefix}_down", count, T, h, width, p, bias=spec.mlp_bias),
    ]


def experts_touched(num_experts: int, k: int, tokens):
    """Expected distinct experts a layer routes ``tokens`` tokens to, under uniform top-k routing.

    Each expert is missed by one token with probability 1 - k/E, so by all T tokens with
    (1 - k/E)^T: E [1 - (1 - k/E)^T] experts are touched (weights read) in expectation.
    """
    return num_experts * (1 - (1 - k / num_experts) ** num(tokens))


def _moe_ops(spec: ModelSpec, T, p: Precision, moe: MoeShard) -> list[Op]:
    """Router, token dispatch, routed experts (grouped GEMM) and shared experts of the MoE layers.

    With expert parallelism the E experts are spread over ``ep`` chips and the tokens of
    ``token_groups`` replicas meet in each layer: a chip holds E/ep experts, receives
    T x groups x k / ep token-expert rows, and touches E/ep x [1 - (1 - k/E)^(T groups)] of them.
    """
    n, h, f = spec.num_moe_layers, spec.hidden_size, spec.moe_intermediate_size
    E, k = spec.num_experts, spec.experts_per_token
    group_tokens = T * moe.token_groups
    touched = experts_touched(E, k, group_tokens) / moe.ep  # experts whose weights this chip reads
    rows = group_tokens * k / moe.ep  # token-expert assignments this chip computes
    per_expert = rows / touched  # tokens each touched expert processes: the GEMM's M
    a, w, dq = p.act_bytes, p.expert_weight_bytes, p.expert_dequant_ops
    up = (2 if spec.gated_mlp else 1) * f
    ops = [
        gemm_op("moe_router", n, T, E, h, p, wbytes=p.dense_layer_weight_bytes, sparse=False),
        # permute tokens to their experts and back: read and write the rows twice
        vector_op("moe_dispatch", n, rows * h, 0, p, reads=2, writes=2),
        make_op("moe_up", "gemm", n, flops=2 * rows * up * h * p.layer_math_density,
                weight=touched * up * h * w, act=rows * h * a, write=rows * up * a,
                min_dim=minimum(per_expert, h), math=p.expert_math,
                vector_flops=dq * touched * up * h * ceil(per_expert / 128),
                compute_factor=moe.imbalance, tiles=gemm_tiles(per_expert, up, touched),
                gemm_shape=(per_expert, up, h, touched)),
        vector_op("moe_act", n, rows * f, SILU_MUL_FLOPS if spec.gated_mlp else GELU_FLOPS, p,
                  reads=2 if spec.gated_mlp else 1),
        make_op("moe_down", "gemm", n, flops=2 * rows * h * f * p.layer_math_density,
                weight=touched * h * f * w, act=rows * f * a, write=rows * h * a,
                min_dim=minimum(per_expert, f), math=p.expert_math,
                vector_flops=dq * touched * h * f * ceil(per_expert / 128),
                compute_factor=moe.imbalance, tiles=gemm_tiles(per_expert, h, touched),
                gemm_shape=(per_expert, h, f, touched)),
    ]
    if spec.num_shared_experts:
        width = moe.shared_width if moe.shared_width is not None else spec.num_shared_experts * f
        ops += _mlp_ops(spec, n, T, width, p, prefix="shared")
    return ops


def embedding_ops(spec: ModelSpec, batch, q_len, p: Precision) -> list[Op]:
    """Token (and learned position) embedding lookup, and BLOOM's embedding norm."""
    T, h = batch * q_len, spec.hidden_size
    rows = 2 if spec.position_embedding == "learned" else 1  # token and position rows gathered
    ops = [make_op("embedding", "vector", 1, flops=(rows - 1) * T * h, weight=rows * T * h * p.embedding_weight_bytes,
                   write=T * h * p.act_bytes)]
    if spec.embedding_norm:
        ops.append(norm_op("embedding_norm", spec, 1, T, p))
    return ops


def output_ops(spec: ModelSpec, batch, q_len, p: Precision) -> list[Op]:
    """Final norm, LM head and sampling.

    Only the last position of each sequence needs logits, so the LM head runs on ``batch``
    rows in prefill as in decode (vLLM and TensorRT-LLM gather the last token first).
    Logits are written and read in fp32.
    """
    T, V = batch * q_len, spec.vocab_size
    return [
        norm_op("final_norm", spec, 1, T, p),
        gemm_op("lm_head", 1, batch, V, spec.hidden_size, p, bias=spec.lm_head_bias, wbytes=p.head_weight_bytes,
                sparse=False, out_bytes=4.0),
        make_op("sampling", "vector", 1, flops=SAMPLING_FLOPS * batch * V, act=batch * V * 4.0, write=batch * 4.0),
    ]


def forward_ops(spec: ModelSpec, batch, q_len, kv_len, p: Precision, attention: Attention = "flash", *,
                moe: MoeShard = MoeShard(), first: bool = True, last: bool = True,
                norm_tokens_divisor: int = 1, with_attention: bool = True, decode: bool | None = None) -> list[Op]:
    """All operators of one forward pass in execution order; ``first``/``last`` say whether
    this chip's stage holds the embedding and the output head; ``with_attention`` and ``decode``
    (see ``layer_ops``)."""
    ops = embedding_ops(spec, batch, q_len, p) if first else []
    ops += layer_ops(spec, batch, q_len, kv_len, p, attention, moe, norm_tokens_divisor, with_attention, decode)
    return ops + (output_ops(spec, batch, q_len, p) if last else [])
