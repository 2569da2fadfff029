"""On-chip SRAM and DRAM traffic: what a kernel moves from DRAM given the buffer in front of it.

An operator's bytes (``infercast.ops``) are its compulsory traffic: every operand read once, every
output written once. A kernel whose operands do not fit the chip's last-level SRAM (L2, global
buffer) re-reads some of them; a chip whose SRAM holds all its weights reads them from SRAM
instead of DRAM. Both are closed forms of an operator's shape and the buffer's bytes, in the spirit
of LLMCompass (Zhang et al., ISCA 2024) and Timeloop (Parashar et al., ISPASS 2019), without their
mapping search.

GEMM ``[M, K] x [K, N] -> [M, N]`` (each of ``groups``; A, B, C its operand bytes, a and w bytes per
element). A share ``BUFFER_SHARE`` of the buffer's S bytes holds an output tile of m x n FP32
accumulators, s = share S / 4 elements, while A's rows and B's columns stream past it
(output-stationary blocking; Hong & Kung, STOC 1981; Irony, Toledo & Tiskin, JPDC 2004)::

    traffic = A max(1, N / n) + B max(1, M / m) + C           bytes
    m n = s, m = sqrt(s w / a), each clamped to M and N        the least traffic for that buffer

With square tiles (a = w = b, both sides above sqrt(s)) the re-reads are the classic
2 M N K b / sqrt(s). An operand of one group that fits the buffer whole is held while the other
streams: compulsory traffic only.

Attention (FlashAttention; Dao et al., NeurIPS 2022, Theorem 2: Theta(N^2 d^2 / M) HBM accesses
for a buffer of M): the kernel holds a block of the queries that share a K/V head, with their FP32
output accumulators, and streams K and V past it once per block::

    K/V traffic = K/V bytes x max(1, query bytes / (share S))

A decode step's query block is one token (a few KB): its K/V are read once, whatever the buffer.
A sequence's K/V are its own, so a batch shares none of them (a shared prefix would); what a batch
shares is the weights, the GEMM's M.

Resident weights: where all of a chip's weights fit ``RESIDENT_SHARE`` of its SRAM and the SRAM's
bandwidth is known (a scratchpad design: Groq's LPU, Cerebras's wafer), every pass reads them from
SRAM; their bytes leave the DRAM column for ``OpTable.sram_bytes``, which the roofline prices at the
SRAM bandwidth. A GPU's L2 is a cache shared with the streaming K/V and activations, and the
catalog states no bandwidth for it: no catalog chip holds its weights.

Activations on chip: a network's kernel hands its output to the next kernel through the last-level SRAM (an L2
is a write-back cache, and the runtime's allocator reuses the same buffers, so a tensor written and read
while it fits is neither fetched from nor written back to DRAM). An operator whose input and output together
fit ``BUFFER_SHARE`` of the SRAM moves neither through DRAM (``activations_on_chip``); above it, both go to
DRAM. This is why ResNet-50 on an L4 (300 GB/s, 48 MB of L2) runs at 13,000 images/s, which at the 28 MB of
INT8 activations an image moves through DRAM would need 370 GB/s.

A larger buffer never moves more bytes (``tests/test_design.py`` checks it with hypothesis).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from infercast.arrays import ndim
from infercast.roofline import ChipRates, OpTable

BUFFER_SHARE = 0.5
"""Share of the last-level SRAM one kernel's tiles may use; the rest holds the next tiles in flight (double
buffering, as CUTLASS's multistage pipelines keep two or more stages) and other kernels' data. Assumed."""
RESIDENT_SHARE = 0.8
"""Share of the SRAM that may hold resident weights; the rest holds activations and K/V blocks in flight.
Assumed."""
ACCUMULATOR_BYTES = 4.0
"""Bytes of one output element while it accumulates: FP32 partial sums whatever the input format."""


def gemm_rereads(M, N, K, a_bytes, b_bytes, buffer_bytes):
    """Bytes one GEMM [M, K] x [K, N] re-reads beyond its compulsory traffic, with ``buffer_bytes`` of
    on-chip buffer for its tiles; ``a_bytes`` and ``b_bytes`` are the bytes of A and B (arrays broadcast)."""
    extra_a, extra_b = _rereads(M, N, K, a_bytes, b_bytes, buffer_bytes)
    return extra_a + extra_b


def _rereads(M, N, K, A, B, buffer_bytes):
    """(A's, B's) bytes re-read beyond once (``gemm_rereads``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a, w = A / (M * K), B / (K * N)  # bytes per element of A and of B
        s = np.maximum(buffer_bytes / ACCUMULATOR_BYTES, 1.0)  # output elements a tile holds
        m = np.minimum(np.sqrt(s * w / a), M)
        n = np.minimum(np.maximum(s / m, 1.0), N)
        m = np.minimum(np.maximum(s / n, 1.0), M)  # a tile as wide as N grows along M
        extra_a, extra_b = A * np.maximum(N / n - 1, 0.0), B * np.maximum(M / m - 1, 0.0)
    one_fits = np.minimum(A, B) <= buffer_bytes  # held whole while the other streams
    return np.where(one_fits, 0.0, extra_a), np.where(one_fits, 0.0, extra_b)


def gemm_dram_bytes(M, N, K, sram_bytes, *, a=2.0, w=2.0, c=2.0, groups=1.0):
    """DRAM bytes of ``groups`` GEMMs [M, K] x [K, N] (a, w, c bytes per element of A, B and the output) on a
    chip with ``sram_bytes`` of last-level SRAM: compulsory traffic plus the tiling's re-reads."""
    A, B, C = M * K * a, K * N * w, M * N * c
    return groups * (A + B + C + gemm_rereads(M, N, K, A, B, BUFFER_SHARE * sram_bytes))


def attention_rereads(kv_bytes, query_bytes, buffer_bytes):
    """K/V bytes an attention kernel re-reads beyond once: one pass over K/V per buffer-full of queries."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return kv_bytes * np.maximum(query_bytes / np.maximum(buffer_bytes, 1.0) - 1, 0.0)


def weights_resident(weights_bytes, rates: ChipRates):
    """Whether a chip holding ``weights_bytes`` of weights keeps them all in SRAM (False where its SRAM or the
    SRAM's bandwidth is unknown)."""
    if rates.sram_bytes is None or rates.sram_bw_bytes_per_s is None or weights_bytes is None:
        return False
    return weights_bytes <= RESIDENT_SHARE * rates.sram_bytes


def dram_traffic(table: OpTable, rates: ChipRates, weights_bytes: float | None = None) -> OpTable:
    """``table`` with its bytes the DRAM traffic on ``rates``' chip: compulsory plus tiling re-reads, less the
    weights a chip holding ``weights_bytes`` of them keeps resident (moved to ``sram_bytes``). Unchanged where
    the chip's SRAM is unknown."""
    if rates.sram_bytes is None:
        return table
    nd = max(table.bytes.ndim, 1 + ndim(rates.sram_bytes))
    buffer = BUFFER_SHARE * _lead(rates.sram_bytes)
    resident = _lead(weights_resident(weights_bytes, rates))
    any_resident = bool(resident) if ndim(resident) == 0 else bool(resident.any())
    extra = 0.0
    # one configuration whose operands fit the buffer re-reads nothing: skip it without numpy
    fits = type(buffer) is float and not any_resident
    gemms = [i for i, op in enumerate(table.ops) if op.gemm_shape is not None
             and not (fits and _at_most(op.act_bytes, buffer * op.gemm_shape[3]))
             and not (fits and _at_most(op.weight_bytes, buffer * op.gemm_shape[3]))]
    if gemms:
        ops = [table.ops[i] for i in gemms]
        M, N, K, G = (_column([op.gemm_shape[j] for op in ops], nd) for j in range(4))
        A = _column([op.act_bytes for op in ops], nd) / G
        B = _column([op.weight_bytes for op in ops], nd) / G
        extra_a, extra_b = _rereads(M, N, K, A, B, buffer)
        extra_b = np.where(resident, 0.0, extra_b)  # resident weights are re-read from SRAM, not DRAM
        extra = extra + _scatter(G * (extra_a + extra_b), gemms, len(table.ops))
    blocks = [i for i, op in enumerate(table.ops) if op.query_bytes is not None
              and not (fits and _at_most(op.query_bytes, buffer))]
    if blocks:
        ops = [table.ops[i] for i in blocks]
        kv, q = _column([op.kv_bytes for op in ops], nd), _column([op.query_bytes for op in ops], nd)
        extra = extra + _scatter(attention_rereads(kv, q, buffer), blocks, len(table.ops))
    if not any_resident:
        return table if type(extra) is float else replace(table, bytes=table.bytes + extra)
    held = np.where(resident, table.weight_bytes, 0.0)
    return replace(table, bytes=table.bytes + extra - held, sram_bytes=held)


def _at_most(x, limit) -> bool:
    """``x <= limit`` for floats; False for an array (which then goes through the formulas)."""
    return type(x) is float and type(limit) in (float, int) and x <= limit


def _lead(x):
    """A chip figure (a float, or an array of the workload's shape) against [ops, *shape]."""
    return x if ndim(x) == 0 else np.asarray(x)[None]


def _column(values: list, nd: int) -> np.ndarray:
    """[ops, ...] with ``nd`` dimensions: one row per operator, broadcast to a common shape."""
    if all(type(v) is float or type(v) is int for v in values):  # one configuration: no broadcasting to do
        out = np.array(values, dtype=float)
    else:
        out = np.stack(np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values]))
    return out.reshape(out.shape + (1,) * (nd - out.ndim))


def _scatter(rows: np.ndarray, index: list[int], n: int) -> np.ndarray:
    """[n, ...]: ``rows`` at ``index``, zero elsewhere."""
    out = np.zeros((n,) + rows.shape[1:])
    out[index] = rows
    return out


def activations_on_chip(table: OpTable, rates: ChipRates) -> OpTable:
    """``table`` with the activation bytes (input read, output written) of every operator whose input and output
    fit ``BUFFER_SHARE`` of the chip's SRAM taken out of its DRAM traffic; unchanged where the SRAM is unknown."""
    if rates.sram_bytes is None:
        return table
    nd = table.bytes.ndim
    moved = np.stack(np.broadcast_arrays(*[np.asarray(op.act_bytes + op.write_bytes, dtype=float)
                                          for op in table.ops]))
    moved = moved.reshape((moved.shape[0],) + (1,) * (nd - moved.ndim) + moved.shape[1:])  # as OpTable.of aligns
    held = np.where(moved <= BUFFER_SHARE * _lead(rates.sram_bytes), moved, 0.0)
    return replace(table, bytes=np.maximum(table.bytes - held, 0.0))
