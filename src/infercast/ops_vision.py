"""Operators beyond the decoder: convolutions, group norm, resampling, attention over any query and key
lengths, and the transformer blocks of encoders, UNets and diffusion transformers.

Every operator is an ``ops.Op`` priced by the same roofline, energy and cost as a decoder's:

* convolution as implicit GEMM (cuDNN's and CUTLASS's IMPLICIT_GEMM algorithm): the output is
  ``M = batch x H_out x W_out`` rows of ``N = C_out`` columns, each a dot product over
  ``K = C_in x k x k`` im2col elements, so FLOPs are 2 M N K (2 x MACs). The im2col matrix is never
  written: the input is read once (``batch x H x W x C_in`` elements), the weights once, the output
  written once;
* group norm and its SiLU (fused, as TensorRT and torch.compile run them), nearest 2x upsampling,
  residual adds, pooling: elementwise kernels on the vector units;
* attention fused FlashAttention-style over ``q_len`` queries and ``kv_len`` keys per sequence and
  head: 4 d FLOPs and 5 softmax FLOPs per (query, key) pair, Q, K, V read and O written once;
  ``causal`` halves the pairs (CLIP's text encoder); cross-attention reads keys of the text tokens.

Shapes follow the sources the networks cite (``infercast.networks``); sizes may be numpy arrays of
batches (every formula broadcasts).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from infercast.arrays import minimum, num
from infercast.ops import (GELU_FLOPS, LAYERNORM_FLOPS, RMSNORM_FLOPS, SILU_MUL_FLOPS, SOFTMAX_FLOPS, Op, Precision,
                           gemm_op, make_op, vector_op)

SILU_FLOPS = 4  # x * sigmoid(x): exp, add, divide, multiply
GEGLU_FLOPS = GELU_FLOPS + 1  # gelu(gate) x up
MODULATE_FLOPS = 2  # x (1 + scale) + shift


@dataclass(frozen=True)
class Execution:
    """How a framework runs the operators: fused as TensorRT, torch.compile, OneFlow and AITemplate run them, or
    eagerly as PyTorch runs a module's code, and with fused or materialised attention."""

    eager: bool = False
    """PyTorch eager: a norm and its SiLU, and adaLN's norm and modulation, are kernels apart (each reads and
    writes the whole tensor), and every kernel is dispatched from Python (``passes``: the host's floor)."""
    materialized: bool = False
    """Attention writes its score matrix and reads it back (diffusers' AttnProcessor before SDPA or xFormers:
    baddbmm, softmax, bmm), instead of a fused FlashAttention-style kernel."""


FUSED = Execution()


def out_size(size: int, k: int, stride: int) -> int:
    """Output side of a convolution or pooling with padding k // 2 (every conv of the networks here)."""
    return (size + 2 * (k // 2) - k) // stride + 1


def conv2d(name: str, count: int, batch, H: int, W: int, cin: int, cout: int, k: int, p: Precision, *,
           stride: int = 1, bias: bool = True) -> Op:
    """A k x k convolution of ``batch`` images of H x W x cin as an implicit GEMM (module docstring)."""
    Ho, Wo = out_size(H, k, stride), out_size(W, k, stride)
    op = gemm_op(name, count, batch * Ho * Wo, cout, cin * k * k, p, bias=bias)
    return replace(op, act_bytes=num(batch * H * W * cin * p.act_bytes))  # the input once, not im2col


def linear(name: str, count: int, rows, n_in: int, n_out: int, p: Precision, *, bias: bool = True) -> Op:
    """``rows`` tokens (or images) through an n_in -> n_out linear layer."""
    return gemm_op(name, count, rows, n_out, n_in, p, bias=bias)


def norm_act(name: str, count: int, elems, channels: int, p: Precision, *, act: bool = True,
             x: Execution = FUSED) -> list[Op]:
    """Group (or layer) norm of ``channels`` channels with its affine weights (2 per channel), and SiLU after it
    where ``act``: fused into the norm's kernel, or its own kernel when eager."""
    if act and x.eager:
        return [vector_op(name, count, elems, LAYERNORM_FLOPS, p, weight_elems=2 * channels),
                vector_op(f"{name}_silu", count, elems, SILU_FLOPS, p)]
    return [vector_op(name, count, elems, LAYERNORM_FLOPS + (SILU_FLOPS if act else 0), p, weight_elems=2 * channels)]


def norm_modulate(name: str, count: int, elems, p: Precision, *, x: Execution = FUSED) -> list[Op]:
    """adaLN: a layer norm without affine weights, then x (1 + scale) + shift from the conditioning: one fused
    kernel, or the norm, the multiply and the add apart when eager."""
    if x.eager:
        return [vector_op(name, count, elems, LAYERNORM_FLOPS, p),
                vector_op(f"{name}_scale", count, elems, 1, p, reads=1), vector_op(f"{name}_shift", count, elems, 1, p)]
    return [vector_op(name, count, elems, LAYERNORM_FLOPS + MODULATE_FLOPS, p)]


def norm(name: str, count: int, elems, channels: int, p: Precision, *, rms: bool = False) -> Op:
    """Layer norm (weight and bias) or RMS norm (weight only) over ``channels``."""
    return vector_op(name, count, elems, RMSNORM_FLOPS if rms else LAYERNORM_FLOPS, p,
                     weight_elems=(1 if rms else 2) * channels)


def add(name: str, count: int, elems, p: Precision) -> Op:
    """Residual add: two inputs read, one output written."""
    return vector_op(name, count, elems, 1, p, reads=2)


def upsample2x(name: str, count: int, batch, H: int, W: int, C: int, p: Precision) -> Op:
    """Nearest-neighbour 2x upsampling of H x W x C to 2H x 2W x C: a copy, a quarter read."""
    return vector_op(name, count, batch * 4 * H * W * C, 0, p, reads=0.25)


def pool(name: str, count: int, batch, H: int, W: int, C: int, k: int, stride: int, p: Precision) -> Op:
    """Max or average pooling: k x k comparisons (or adds) per output, the input read once."""
    Ho, Wo = out_size(H, k, stride), out_size(W, k, stride)
    out = batch * Ho * Wo * C
    return vector_op(name, count, out, k * k, p, reads=batch * H * W * C / out)


def attention(name: str, count: int, batch, heads: int, q_len, kv_len, d: int, p: Precision, *,
              causal: bool = False, x: Execution = FUSED) -> list[Op]:
    """Attention of ``batch`` sequences: ``heads`` heads of width d, q_len queries over kv_len keys; one fused
    kernel, or (``x.materialized``) the scores' GEMM writing them, a softmax reading and writing them, and the
    weighted sum's GEMM reading them, as the decoder's materialised attention (``ops.attention_kernels``)."""
    pairs = q_len * (kv_len + 1) / 2 if causal else q_len * kv_len  # per sequence and head
    a = p.act_bytes
    q, kv, o = batch * heads * d * q_len * a, batch * heads * d * kv_len * a, batch * heads * d * q_len * a
    shape = dict(min_dim=minimum(minimum(q_len, kv_len), d), math=p.gemm_math, seq_len=pairs / q_len)
    if not x.materialized:
        return [make_op(name, "attention", count, flops=batch * heads * pairs * (4 * d + SOFTMAX_FLOPS),
                        act=q + 2 * kv, write=o, **shape)]
    scores = batch * heads * pairs * a
    return [make_op(f"{name}_score", "attention", count, flops=batch * heads * pairs * 2 * d, act=q + kv,
                    write=scores, **shape),
            vector_op(f"{name}_softmax", count, batch * heads * pairs, SOFTMAX_FLOPS, p),
            make_op(f"{name}_value", "attention", count, flops=batch * heads * pairs * 2 * d, act=scores + kv,
                    write=o, **shape)]


def feed_forward(prefix: str, count: int, T, d: int, inner: int, p: Precision, *, kind: str = "gelu",
                 bias: bool = True) -> list[Op]:
    """An MLP of ``T`` tokens: plain (gelu: d -> inner -> d) or gated (geglu, swiglu, gated-gelu: two
    d -> inner projections fused into one GEMM, the activation times the gate, inner -> d)."""
    gated = kind in ("geglu", "swiglu", "gated-gelu")
    per = {"gelu": GELU_FLOPS, "geglu": GEGLU_FLOPS, "gated-gelu": GEGLU_FLOPS, "swiglu": SILU_MUL_FLOPS}[kind]
    return [linear(f"{prefix}_up", count, T, d, (2 if gated else 1) * inner, p, bias=bias),
            vector_op(f"{prefix}_act", count, T * inner, per, p, reads=2 if gated else 1),
            linear(f"{prefix}_down", count, T, inner, d, p, bias=bias)]


def self_attention(prefix: str, count: int, batch, S, d: int, heads: int, p: Precision, *, bias: bool = True,
                   out_bias: bool | None = None, causal: bool = False, x: Execution = FUSED) -> list[Op]:
    """Q, K, V projections (one fused GEMM), attention and the output projection, for ``batch`` sequences
    of S tokens; ``bias`` on Q, K, V and ``out_bias`` (default: the same) on the output."""
    T = batch * S
    return [linear(f"{prefix}_qkv", count, T, d, 3 * d, p, bias=bias),
            *attention(f"{prefix}_attention", count, batch, heads, S, S, d // heads, p, causal=causal, x=x),
            linear(f"{prefix}_out", count, T, d, d, p, bias=bias if out_bias is None else out_bias)]


def cross_attention(prefix: str, count: int, batch, S, d: int, heads: int, ctx_len: int, ctx_dim: int,
                    p: Precision, x: Execution = FUSED) -> list[Op]:
    """Queries of S image tokens over ``ctx_len`` text tokens of width ``ctx_dim`` (diffusers' Attention
    with encoder_hidden_states: to_q, to_k, to_v without bias, to_out with bias)."""
    return [linear(f"{prefix}_q", count, batch * S, d, d, p, bias=False),
            linear(f"{prefix}_kv", count, batch * ctx_len, ctx_dim, 2 * d, p, bias=False),
            *attention(f"{prefix}_attention", count, batch, heads, S, ctx_len, d // heads, p, x=x),
            linear(f"{prefix}_out", count, batch * S, d, d, p)]


def encoder_layers(prefix: str, layers: int, batch, S, d: int, heads: int, ffn: int, p: Precision, *,
                   ff: str = "gelu", bias: bool = True, causal: bool = False, rms: bool = False,
                   x: Execution = FUSED) -> list[Op]:
    """``layers`` transformer encoder layers (BERT, CLIP's and T5's text encoders): self-attention with
    its norm and residual, then the MLP with its norm and residual; bidirectional unless ``causal``."""
    T = batch * S
    return [norm(f"{prefix}_attn_norm", layers, T * d, d, p, rms=rms),
            *self_attention(prefix, layers, batch, S, d, heads, p, bias=bias, causal=causal, x=x),
            add(f"{prefix}_attn_residual", layers, T * d, p),
            norm(f"{prefix}_mlp_norm", layers, T * d, d, p, rms=rms),
            *feed_forward(f"{prefix}_mlp", layers, T, d, ffn, p, kind=ff, bias=bias),
            add(f"{prefix}_mlp_residual", layers, T * d, p)]
