"""FlexGen's offloading schedule (Sheng et al., ICML 2023, sec. 4-5) as its cost model states it.

FlexGen runs a block of ``bls = gbs x nb`` sequences (``nb`` GPU batches of ``gbs``) layer by layer in a
zig-zag order: a layer's weights are brought to the GPU once per block and serve all ``nb`` GPU batches, and
while one GPU batch computes, the next one's KV cache and activations load and the previous one's store
(six overlapped streams, Algorithm 1). Each tensor class sits in fractions on the GPU, host DRAM and disk:
weights ``wg, wc, wn``, KV cache ``cg, cc, cn``, activations ``hg, hc``. A cache kept off the GPU is attended
to on the CPU (``cpu_cache_compute``): only a token's query and output cross PCIe, and the CPU's rate over
the cache bounds the step. Per layer (the shipped cost model, flexgen 0.1.8 ``experimental/cost_model.py``)::

    T_pre = max(ctog_p + dtoc_p, gtoc_p + ctod_p, comp_p)         prefill of the block
    T_gen = ctog_g + max(gtoc_g, dtoc_g, ctod_g, comp_g)           one decode step of the block
    T     = l (T_pre + (n - 1) T_gen),   throughput = bls n / T

with ``ctog`` host-to-GPU, ``gtoc`` GPU-to-host, ``dtoc`` disk-to-host, ``ctod`` host-to-disk bytes over each
measured rate (``Host``) and ``comp`` the GPU's time for the block (the engine's roofline for one GPU batch,
times ``nb``; a prefill no faster than the machine's measured GEMM and attention rates where FlexGen's authors
measured them: the T4 holds a third of its datasheet peak at 70 W) plus the CPU's attention over the cache off
the GPU. Group-wise 4-bit compression (group 64, a
16-bit minimum and scale per group: 4.5 bits) shrinks what crosses and what is held, and the GPU pays its
decompression (compressed bytes read, 16-bit written) before each use.

FlexGen picks the policy by a linear program over these terms under the GPU's, host's and disk's capacity;
``best_policy`` searches the same space on a grid (every axis broadcast in one numpy evaluation). A pipeline
over ``pp`` machines gives each ``l / pp`` layers and keeps ``pp`` blocks in flight (``dist_flex_opt.py``'s inner
iterations), one per stage: each stage holds the cache of every block for its layers and works through each
block's layers in turn, so a token step of the ``pp x bls`` sequences takes ``l`` layer-times of one block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

from infercast.errors import InfercastError
from infercast.evaluation import evaluate
from infercast.scenario import resolve

COMPRESSED_BITS = 4 + 2 * 16 / 64
"""Bits per element of FlexGen's compression: 4-bit values, a 16-bit minimum and scale per group of 64."""
DECOMPRESS_BYTES = 14.0
"""GPU memory traffic per fp16 element decompressed, counted from flexgen 0.1.8 ``compression.decompress``:
two passes over the packed bytes (shift, mask: 0.5 B read, 0.5 B written each), two strided uint8 -> fp16
scatters (0.5 B read, 2 B of cache lines written each), an in-place divide and add (4 B each)."""
ATTENTION_COPY = 3.0
"""FlexGen's GPU attention (``pytorch_backend.mha_gen``) over its cache per byte a fused kernel reads: K and V
are permuted into the bmm layouts first (a copy: read and write), then read by the bmm."""
CAPACITY_SHARE = 0.8
"""Share of each memory FlexGen's policy search lets the block fill (its alpha_g, alpha_c, alpha_n)."""
RESERVED_GPU_BYTES = 1e9
"""GPU memory outside FlexGen's tensors: its cost model takes 15 GB of the T4's 16."""
RESERVED_HOST_BYTES = 4e9
"""Host DRAM outside FlexGen's tensors: its cost model takes 204 GB of the machine's 208."""
GPU_BATCHES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 384, 512)
BLOCKS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
SHARES = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True)
class Host:
    """The machine around one GPU as FlexGen's cost model sees it (``catalog/hosts.yaml``)."""

    name: str
    ctog_bytes_per_s: float
    gtoc_cache_bytes_per_s: float
    gtoc_hidden_bytes_per_s: float
    dtoc_bytes_per_s: float
    ctod_cache_prefill_bytes_per_s: float
    ctod_hidden_prefill_bytes_per_s: float
    ctod_decode_bytes_per_s: float
    cpu_attention_flops: float
    cpu_c1: float
    cpu_c2: float
    cpu_c3: float
    storage_read_bytes_per_s: float
    host_link_bytes_per_s: float
    dram_bytes: float = 208e9
    disk_bytes: float = 1.5e12
    prefill_matmul_flops: float | None = None
    """The GPU's measured rate on the prefill's GEMMs in this machine (FlexGen's mm_flops_p); None: the engine's."""
    prefill_attention_flops: float | None = None
    """The same for the prefill's attention (bmm_flops_p)."""

    def scaled(self, *, host_link_bytes_per_s: float, storage_read_bytes_per_s: float | None, dram_bytes: float,
               disk_bytes: float, name: str) -> Host:
        """This machine's measured rates carried to another: the PCIe rates in proportion to the host link's line
        rate, the disk's in proportion to the drive's stated read rate (FlexGen's own I/O path, 0.24 of the
        drive here); the CPU's attention rate as it is (an assumption where the CPU differs)."""
        link = host_link_bytes_per_s / self.host_link_bytes_per_s
        disk = 1.0 if storage_read_bytes_per_s is None else storage_read_bytes_per_s / self.storage_read_bytes_per_s
        return replace(self, name=name, ctog_bytes_per_s=self.ctog_bytes_per_s * link,
                       gtoc_cache_bytes_per_s=self.gtoc_cache_bytes_per_s * link,
                       gtoc_hidden_bytes_per_s=self.gtoc_hidden_bytes_per_s * link,
                       dtoc_bytes_per_s=self.dtoc_bytes_per_s * disk,
                       ctod_cache_prefill_bytes_per_s=self.ctod_cache_prefill_bytes_per_s * disk,
                       ctod_hidden_prefill_bytes_per_s=self.ctod_hidden_prefill_bytes_per_s * disk,
                       ctod_decode_bytes_per_s=self.ctod_decode_bytes_per_s * disk,
                       storage_read_bytes_per_s=self.storage_read_bytes_per_s * disk,
                       host_link_bytes_per_s=host_link_bytes_per_s, dram_bytes=dram_bytes, disk_bytes=disk_bytes,
                       prefill_matmul_flops=None, prefill_attention_flops=None)  # another GPU: the engine's


@cache
def load_host(name: str) -> Host:
    data = yaml.safe_load((resources.files("infercast") / "catalog" / "hosts.yaml").read_text(encoding="utf-8"))
    if name not in data:
        raise InfercastError(f"unknown host '{name}'; the catalog has {', '.join(sorted(data))}")
    fields = {k: float(v) for k, v in data[name].items() if k not in ("description", "source")}
    return Host(name=name, **fields)


@dataclass(frozen=True)
class Result:
    """The best policy found and its times."""

    throughput_tokens_per_s: float
    decode_tokens_per_s: float
    policy: dict[str, float]
    prefill_s: float
    decode_s: float


def _gpu_times(model: str, chip: str, gbs: np.ndarray, s: int, n: int) -> dict[str, np.ndarray]:
    """One GPU batch's GPU time per layer from the engine's roofline (16-bit math: FlexGen decompresses to fp16):
    its prefill, and per decode step the linear layers and the attention over a cache on the GPU."""
    sc = resolve(model, chip, dtype="fp16")
    c = evaluate(sc, batch=gbs, isl=s, osl=n)
    layers = sc.spec.num_layers
    steps = max(n - 1, 1)
    rows = c.rows["decode"]
    attn = sum(np.asarray(t) for t, k in zip(rows.time_s, rows.kinds, strict=True) if k == "attention")
    rest = sum(np.asarray(t) for t, k in zip(rows.time_s, rows.kinds, strict=True) if k != "attention")
    return {"prefill": np.asarray(c["prefill.latency_s"]) / layers, "linear": rest / steps / layers,
            "attention": attn / steps / layers, "bandwidth": sc.rates.mem_bw_bytes_per_s * sc.efficiency.bandwidth}


def schedule(model: str, chip: str, host: Host, *, s: int, n: int, compress_weights: bool = False,
             compress_cache: bool = False, pp: int = 1, gpu_batch=None, block=None, sequences: int | None = None,
             weights: str | None = None, cache: str | None = None) -> Result | None:
    """The throughput-optimal FlexGen policy for ``model`` on ``chip`` in ``host`` (prompt ``s``, ``n`` generated
    tokens), over a pipeline of ``pp`` such machines. Where the source states them, ``sequences`` fixes the block
    (gbs x nb), ``gpu_batch`` and ``block`` its factors, and ``weights`` / ``cache`` ('gpu', 'cpu' or 'disk')
    place the whole tensor class. None where no policy fits."""
    sc = resolve(model, chip, dtype="fp16")
    spec = sc.spec
    l_all, h1, h2, nh = spec.num_layers, spec.hidden_size, spec.intermediate_size, spec.num_heads
    l = l_all / pp  # layers a stage holds; it holds them for ``pp`` blocks
    wbits = COMPRESSED_BITS if compress_weights else 16.0
    cbits = COMPRESSED_BITS if compress_cache else 16.0
    W16 = 8 * h1**2 + 4 * h1 * h2  # bytes of one layer's weights in fp16 (FlexGen's wi)
    W = W16 * wbits / 16
    kv = 4 * h1 * cbits / 16  # bytes of K and V per token, sequence and layer
    gbs_grid = np.array(GPU_BATCHES if gpu_batch is None else (gpu_batch,), dtype=float)
    nb_grid = np.array(BLOCKS if block is None else (block,), dtype=float)
    if sequences is not None:  # the source's batch: GPU batches that divide it
        gbs_grid = np.array([g for g in range(1, min(sequences, 512) + 1) if sequences % g == 0], dtype=float)
        nb_grid = np.array(sorted({sequences // int(g) for g in gbs_grid}), dtype=float)
    gpu = _gpu_times(model, chip, gbs_grid, s, n)
    # axes: [gbs, nb, wg, wc, cg, cc]
    gbs = gbs_grid[:, None, None, None, None, None]
    nb = nb_grid[None, :, None, None, None, None]
    wg = SHARES[None, None, :, None, None, None]
    wc = SHARES[None, None, None, :, None, None]
    cg = SHARES[None, None, None, None, :, None]
    cc = SHARES[None, None, None, None, None, :]
    wn, cn = 1 - wg - wc, 1 - cg - cc
    ok = (wn > -1e-9) & (cn > -1e-9) & np.isclose(gbs * nb, sequences if sequences is not None else gbs * nb)
    for where, (g, c) in ((weights, (wg, wc)), (cache, (cg, cc))):
        if where is not None:
            ok = ok & np.isclose(g, where == "gpu") & np.isclose(c, where == "cpu")
    if compress_cache:  # a compressed cache lives whole on one device (flex_opt.py: not on the mixed device)
        ok = ok & (np.isclose(cg, 1) | np.isclose(cc, 1) | (np.isclose(cg, 0) & np.isclose(cc, 0)))
    wn, cn = np.maximum(wn, 0.0), np.maximum(cn, 0.0)
    bls = gbs * nb
    mid = s + n / 2  # the cache's mean length over the decode
    pre = {k: v[:, None, None, None, None, None] for k, v in gpu.items() if k != "bandwidth"}
    bw = gpu["bandwidth"]
    # per GPU batch and layer: every use decompresses the layer's weights, and the cache it attends to
    decompress_w = DECOMPRESS_BYTES * W16 / 2 / bw if compress_weights else 0.0
    decompress_c = lambda length: (DECOMPRESS_BYTES * gbs * length * 2 * h1 / bw * cg) if compress_cache else 0.0  # noqa: E731
    hs = host
    # prefill, per layer (activations stay on the GPU: FlexGen's hidden states are small)
    ctog_p = W * (wc + wn) / hs.ctog_bytes_per_s
    gtoc_p = kv * (s + 1) * bls * (cc + cn) / hs.gtoc_cache_bytes_per_s
    dtoc_p = W * wn / hs.dtoc_bytes_per_s
    ctod_p = kv * (s + 1) * bls * cn / hs.ctod_cache_prefill_bytes_per_s
    prefill = pre["prefill"]
    if hs.prefill_matmul_flops:  # the machine's measured GEMM and attention rates, where slower than the engine's
        measured = gbs * (2 * s * W16 / 2 / hs.prefill_matmul_flops + 4 * s**2 * h1 / hs.prefill_attention_flops)
        prefill = np.maximum(prefill, measured)
    comp_p = nb * (prefill + decompress_w + decompress_c(s))
    t_pre = np.maximum(np.maximum(ctog_p + dtoc_p, gtoc_p + ctod_p), comp_p)
    # one decode step, per layer
    cpu_rate = hs.cpu_attention_flops * np.maximum(
        0.1, 1 + hs.cpu_c1 * np.maximum(0, np.log2(64 / gbs)) * max(0.0, math.log2(4096 / h1))
        - hs.cpu_c2 * np.maximum(0, np.log2(64 / gbs)) - hs.cpu_c3 * max(0.0, math.log2(4096 / h1)))
    ctog_g = W * (wc + wn) / hs.ctog_bytes_per_s
    gtoc_g = 0.0 * ctog_g
    dtoc_g = kv * bls * mid * cn / hs.dtoc_bytes_per_s + W * wn / (0.95 * hs.dtoc_bytes_per_s)
    ctod_g = kv * bls * cn / hs.ctod_decode_bytes_per_s
    comp_g = nb * (pre["linear"] + ATTENTION_COPY * cg * pre["attention"] + decompress_w + decompress_c(mid)) \
        + 4 * h1 * bls * mid * (cc + cn) / cpu_rate
    t_gen = ctog_g + np.maximum(np.maximum(gtoc_g, dtoc_g), np.maximum(ctod_g, comp_g))
    T = l_all * (t_pre + (n - 1) * t_gen)  # pp blocks, each through its l / pp layers on every stage
    # memory (FlexGen's peak terms; hidden states on the GPU)
    # a search keeps FlexGen's margin; a stated policy ran, so it had the whole memory (cost_model.py's advice)
    share = 1.0 if sequences is not None else CAPACITY_SHARE
    gmem = share * (sc.rates.mem_capacity_bytes - RESERVED_GPU_BYTES)
    cmem = share * (hs.dram_bytes - RESERVED_HOST_BYTES)
    nmem = share * hs.disk_bytes
    inter_p = gbs * (8 * s * h1 + 2 * s * h1 + 2 * nh * s**2 + 2 * s * h1 + 4 * s * h1 + 2 * s * h2 + 2 * s * h1)
    kept = bls * pp  # sequences whose cache a stage keeps
    gpu_p = W * l * wg + 2 * s * h1 * kept + kv * (s + n) * kept * l * cg + 2 * W * (1 - wg) + inter_p
    inter_g = gbs * (8 * h1 + (2 * h1 + 2 * (s + n) * h1 + 2 * nh * (s + n)) * cg + (2 * (s + n) * h1 + 2 * h1) * cg
                     + 4 * h1 + 2 * h2 + 2 * h1)
    gpu_g = W * l * wg + 2 * h1 * kept + kv * (s + n) * kept * l * cg + 2 * W * (1 - wg) + 2 * kv * gbs * (s + n) * cg \
        + inter_g
    cpu_p = W * l * wc + kv * s * kept * l * cc + W * (1 - wg)
    cpu_g = W * l * wc + kv * (s + n) * kept * l * cc + W * wn + 2 * kv * (s + n) * gbs * cn + 2 * nh * (s + n) * gbs \
        + 2 * h1 * gbs
    disk = W * l * wn + kv * (s + n) * kept * l * cn
    fits = ok & (np.maximum(gpu_p, gpu_g) <= gmem) & (np.maximum(cpu_p, cpu_g) <= cmem) & (disk <= nmem)
    rate = np.where(fits, kept * n / T, -1.0)
    if not np.any(fits):
        return None
    i = np.unravel_index(int(np.argmax(rate)), rate.shape)
    pick = lambda a: float(np.broadcast_to(a, rate.shape)[i])  # noqa: E731
    dec = pick(l_all * (n - 1) * t_gen)
    return Result(throughput_tokens_per_s=pick(rate), decode_tokens_per_s=pick(kept) * (n - 1) / dec if n > 1 else 0.0,
                  policy={"gpu_batch": pick(gbs), "gpu_batches": pick(nb), "wg": pick(wg), "wc": pick(wc),
                          "wn": pick(wn), "cg": pick(cg), "cc": pick(cc), "cn": pick(cn)},
                  prefill_s=pick(l_all * t_pre), decode_s=dec)


def describe(r: Result) -> str:
    p = r.policy
    return (f"FlexGen policy: {p['gpu_batch']:.0f} x {p['gpu_batches']:.0f} sequences, weights "
            f"{100 * p['wg']:.0f}/{100 * p['wc']:.0f}/{100 * p['wn']:.0f}% GPU/CPU/disk, KV cache "
            f"{100 * p['cg']:.0f}/{100 * p['cc']:.0f}/{100 * p['cn']:.0f}%")


def summary(r: Result) -> dict[str, Any]:
    return {"throughput_tokens_per_s": r.throughput_tokens_per_s, "decode_tokens_per_s": r.decode_tokens_per_s,
            **r.policy}
