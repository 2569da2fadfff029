"""The seed claims (../shared/SEED-CLAIMS.md), each recomputed by the engine with a verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from infercast.cost import HOURS_PER_YEAR, CostOptions, capex_per_chip_usd, owned_chip_hour
from infercast.energy import EnergyOptions, node_scale, pJ
from infercast.estimate import estimate
from infercast.fleet import GOOGLE_QPS, QUERY_ISL, QUERY_OSL, google_scale, size_fleet
from infercast.hardware import chip_ids, load_chip
from infercast.model import load_model
from infercast.formats import element_bytes
from infercast.parallel import p2p_s, p2p_tier
from infercast.passes import MLPERF_BERT_TOKENS
from infercast.scenario import resolve
from infercast.system import load_system

Verdict = Literal["reproduced", "corrected", "refuted", "partial", "not_yet"]
"""partial: the part the engine models is computed; the rest is said to be outside it."""
GiB = 2**30


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    verdict: Verdict
    explanation: str
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "verdict": self.verdict, "explanation": self.explanation,
                "figures": self.figures}


def c1_kv_cache() -> Claim:
    """LLaMA-2-70B, batch 8, 4096 tokens, FP16: the articles' 80 GiB vs the GQA-correct 10 GiB."""
    r = estimate("llama-2-70b", "h100-sxm", batch=8, isl=4095, osl=1).memory
    return Claim(
        "C1", "KV cache of LLaMA-2-70B at batch 8, 4096 tokens, FP16", "corrected",
        f"The articles' 2 x 80 x 8192 x 4096 x 8 x 2 B = {r.kv_cache_bytes_if_mha / GiB:.0f} GiB assumes every one "
        f"of the 64 heads has its own K/V; LLaMA-2-70B has 8 KV heads (GQA), so the cache is "
        f"{r.kv_cache_bytes / GiB:.0f} GiB.",
        {"kv_cache_bytes_if_mha": r.kv_cache_bytes_if_mha, "kv_cache_bytes": r.kv_cache_bytes,
         "kv_cache_gib_if_mha": r.kv_cache_bytes_if_mha / GiB, "kv_cache_gib": r.kv_cache_bytes / GiB},
    )


def recompute_figures(model: str, tokens: int, batch: int, kv_bytes_per_element: float = 2.0) -> dict[str, float]:
    """What a KV cache saves at one decode step over ``tokens`` cached tokens per sequence.

    Without a cache, every step would recompute K and V of all earlier tokens: per token and
    layer 2 projections x 2 FLOPs x hidden x kv_dim. (Strictly, layer l's K/V depend on layer
    l-1's output, so a cache-less engine re-runs the whole forward pass over the prefix:
    2 x params FLOPs per token, given as ``full_recompute_flops``.)
    """
    s = load_model(model)
    h, L = s.hidden_size, s.num_layers
    kv_dim = s.num_kv_heads * s.head_dim
    mha_flops = tokens * L * batch * 4 * h * (s.num_heads * s.head_dim)
    gqa_flops = tokens * L * batch * 4 * h * kv_dim
    cached = tokens * batch * s.kv_elements_per_token() * kv_bytes_per_element
    return {
        "kv_recompute_flops_as_mha": float(mha_flops),
        "kv_recompute_flops": float(gqa_flops),
        "full_recompute_flops": float(2 * s.params()[0] * tokens * batch),
        "kv_cache_bytes": float(cached),
        "flops_saved_per_cached_byte": gqa_flops / cached,
        "flops_saved_per_cached_element": gqa_flops / (cached / kv_bytes_per_element),
    }


def c2_kv_savings() -> Claim:
    f = recompute_figures("llama-2-70b", 4096, 8)
    return Claim(
        "C2", "FLOPs a KV cache saves, and per byte stored", "corrected",
        f"Recomputing K/V projections of 4096 tokens x 8 sequences costs {f['kv_recompute_flops_as_mha']:.2e} FLOPs "
        f"if every head had K/V (the quoted ~7.0e14), but {f['kv_recompute_flops']:.2e} with LLaMA-2-70B's 8 KV "
        f"heads; either way the saving is hidden = {f['flops_saved_per_cached_byte']:.0f} FLOPs per cached byte "
        f"({f['flops_saved_per_cached_element']:.0f} per FP16 element, the quoted '16K'), and a cache-less engine "
        f"would in fact rerun the whole prefix ({f['full_recompute_flops']:.2e} FLOPs per step).",
        f,
    )


def c3_memory_to_run() -> Claim:
    sizes = {m: estimate(m, "rtx-4090", batch=1, isl=2048, osl=2048).memory
             for m in ("llama-2-7b", "llama-2-13b", "llama-2-70b")}
    w = {m: p.weights_bytes / 1e9 for m, p in sizes.items()}
    n = sizes["llama-2-70b"].min_chips
    return Claim(
        "C3", "FP16 memory of LLaMA-2 7B/13B/70B; 4090s needed for 70B", "reproduced",
        f"FP16 weights are {w['llama-2-7b']:.1f} GB (7B), {w['llama-2-13b']:.1f} GB (13B) and "
        f"{w['llama-2-70b']:.0f} GB (70B); with a 4096-token KV cache and runtime memory the 70B needs at "
        f"least {n} RTX 4090s (24 GB, 90% usable) by memory alone.",
        {"weights_gb_7b": w["llama-2-7b"], "weights_gb_13b": w["llama-2-13b"], "weights_gb_70b": w["llama-2-70b"],
         "total_gb_13b": sizes["llama-2-13b"].total_per_chip_bytes / 1e9,
         "fits_13b_on_4090": sizes["llama-2-13b"].fits, "fits_70b_on_4090": sizes["llama-2-70b"].fits,
         "rtx_4090_min_chips_70b": n},
    )


def c4_phases() -> Claim:
    r = estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=2048, osl=256)
    step_bytes = r.decode.bytes / (r.osl - 1)
    mean_kv = r.memory.kv_cache_bytes * (r.isl + r.osl / 2) / (r.isl + r.osl)
    read_ratio = step_bytes / (r.memory.weights_bytes + mean_kv)
    return Claim(
        "C4", "Prefill is one pass over the prompt; each decode step reads all weights and the KV cache",
        "reproduced",
        f"LLaMA-2-7B FP16 on an A100, 2048-token prompt: prefill is {r.prefill.bound}-bound "
        f"({r.prefill.flops / r.prefill.bytes:.0f} FLOPs/byte); a decode step is {r.decode.bound}-bound "
        f"({r.decode.flops / r.decode.bytes:.1f} FLOPs/byte) and moves {read_ratio:.2f}x the weights plus the "
        f"KV cache.",
        {"prefill_bound": r.prefill.bound, "decode_bound": r.decode.bound,
         "prefill_flops_per_byte": r.prefill.flops / r.prefill.bytes,
         "decode_flops_per_byte": r.decode.flops / r.decode.bytes,
         "decode_step_bytes": step_bytes, "decode_bytes_over_weights_plus_kv": read_ratio},
    )


def c6_consumer_vs_datacenter() -> Claim:
    """8 x RTX 4090 (PCIe through host memory) vs 8 x H100 (NVLink), LLaMA-2-70B FP16, TP=8."""
    kw = dict(tp=8, isl=512, osl=512)
    ratios, shares = {}, {}
    for b in (1, 8, 32):
        h = estimate("llama-2-70b", system="hgx-h100", batch=b, **kw)
        g = estimate("llama-2-70b", system="server-8x-rtx-4090", batch=b, **kw)
        ratios[b] = h.throughput_tokens_per_s / g.throughput_tokens_per_s
        shares[b] = (h.communication_share["decode"], g.communication_share["decode"])
    g_max = estimate("llama-2-70b", system="server-8x-rtx-4090", batch=1, **kw).memory.max_batch
    h_max = estimate("llama-2-70b", system="hgx-h100", batch=1, **kw).memory.max_batch
    big_b = min(256, h_max)
    h_big = estimate("llama-2-70b", system="hgx-h100", batch=big_b, **kw)
    g_big = estimate("llama-2-70b", system="server-8x-rtx-4090", batch=g_max, **kw)
    big_ratio = h_big.throughput_tokens_per_s / g_big.throughput_tokens_per_s
    h_usd, g_usd = (load_system(x).price_usd.value for x in ("hgx-h100", "server-8x-rtx-4090"))
    small_h = estimate("llama-3-8b", system="hgx-h100", dp=8, batch=8, isl=512, osl=512)
    small_g = estimate("llama-3-8b", system="server-8x-rtx-4090", dp=8, batch=8, isl=512, osl=512)
    h100, r4090 = load_chip("h100-sxm"), load_chip("rtx-4090")
    return Claim(
        "C6", "8x RTX 4090 vs 8x H100: ~10x throughput at large batch; 4090 wins small models per dollar",
        "corrected",
        f"H100 has {h100.peak('fp16') / r4090.peak('fp16'):.1f}x the 4090's FP16 compute and "
        f"{h100.memory.bandwidth_bytes_per_s.value / r4090.memory.bandwidth_bytes_per_s.value:.2f}x its bandwidth. "
        f"LLaMA-2-70B FP16 at TP=8: the H100 server is {ratios[1]:.1f}x faster at batch 1 and {ratios[32]:.1f}x at "
        f"batch 32, where PCIe all-reduces take {100 * shares[32][1]:.0f}% of the 4090's decode time "
        f"(NVLink: {100 * shares[32][0]:.0f}%); each at its largest batch ({big_b} vs {g_max}, the 4090s run out "
        f"of memory) the ratio is {big_ratio:.1f}x, so '~10x' needs the H100's memory as much as its links. Per "
        f"dollar the H100 server wins on the 70B ({h_big.throughput_tokens_per_s / h_usd * 1e3:.1f} vs "
        f"{g_big.throughput_tokens_per_s / g_usd * 1e3:.1f} tokens/s per $1000) and the 4090 server on an 8B model "
        f"at batch 1 per GPU ({small_g.throughput_tokens_per_s / g_usd * 1e3:.1f} vs "
        f"{small_h.throughput_tokens_per_s / h_usd * 1e3:.1f}).",
        {"compute_ratio": h100.peak("fp16") / r4090.peak("fp16"),
         "bandwidth_ratio": h100.memory.bandwidth_bytes_per_s.value / r4090.memory.bandwidth_bytes_per_s.value,
         **{f"throughput_ratio_batch_{b}": r for b, r in ratios.items()},
         **{f"decode_comm_share_h100_batch_{b}": s[0] for b, s in shares.items()},
         **{f"decode_comm_share_4090_batch_{b}": s[1] for b, s in shares.items()},
         "max_batch_h100": h_max, "max_batch_4090": g_max, "throughput_ratio_at_max_batch": big_ratio,
         "h100_tokens_per_s_per_kusd_70b": h_big.throughput_tokens_per_s / h_usd * 1e3,
         "rtx4090_tokens_per_s_per_kusd_70b": g_big.throughput_tokens_per_s / g_usd * 1e3,
         "h100_tokens_per_s_per_kusd_8b": small_h.throughput_tokens_per_s / h_usd * 1e3,
         "rtx4090_tokens_per_s_per_kusd_8b": small_g.throughput_tokens_per_s / g_usd * 1e3},
    )


def c7_interconnect() -> Claim:
    """NVLink figures from the catalog; how much of a 100B+ model's step the links take."""
    h100, b200 = load_chip("h100-sxm"), load_chip("b200")
    nv4 = 2 * h100.interconnect.bandwidth_bytes_per_s_per_direction.value
    nv5 = 2 * b200.interconnect.bandwidth_bytes_per_s_per_direction.value
    kw = dict(model="gpt-3-175b", batch=64, isl=1024, osl=256)
    node = estimate(system="hgx-h100", tp=8, **kw)
    two = estimate(system="hgx-h100", nodes=2, tp=16, **kw)
    pcie = estimate(system="server-8x-l40s", tp=8, **{**kw, "model": "llama-2-70b", "weight_dtype": "fp8"})
    return Claim(
        "C7", "NVLink 4 900 GB/s, NVLink 5 1800 GB/s; the interconnect bounds 100B+ models", "corrected",
        f"NVLink 4 gives {nv4 / 1e9:.0f} GB/s and NVLink 5 {nv5 / 1e9:.0f} GB/s per GPU (both directions). Inside "
        f"an NVLink node the links are not the bottleneck: GPT-3-175B at TP=8 on HGX H100 spends "
        f"{100 * node.communication_share['decode']:.0f}% of decode and {100 * node.communication_share['prefill']:.0f}"
        f"% of prefill in all-reduces; stretched to TP=16 over InfiniBand it is "
        f"{100 * two.communication_share['decode']:.0f}% / {100 * two.communication_share['prefill']:.0f}%, and "
        f"LLaMA-2-70B at TP=8 over PCIe (8x L40S) {100 * pcie.communication_share['decode']:.0f}% / "
        f"{100 * pcie.communication_share['prefill']:.0f}%: the claim holds across nodes and on PCIe, not within an "
        f"NVLink domain. The 576-GPU NVLink domain is not in the catalog (GB200 NVL72 is).",
        {"nvlink4_bytes_per_s_bidirectional": nv4, "nvlink5_bytes_per_s_bidirectional": nv5,
         "gpt3_tp8_nvlink_decode_comm_share": node.communication_share["decode"],
         "gpt3_tp8_nvlink_prefill_comm_share": node.communication_share["prefill"],
         "gpt3_tp16_2nodes_decode_comm_share": two.communication_share["decode"],
         "gpt3_tp16_2nodes_prefill_comm_share": two.communication_share["prefill"],
         "llama70b_tp8_pcie_decode_comm_share": pcie.communication_share["decode"],
         "llama70b_tp8_pcie_prefill_comm_share": pcie.communication_share["prefill"]},
    )


def pipeline_hops_s(model: str, system: str, nodes: int, pp: int, tp: int, tokens: int) -> tuple[float, int, int]:
    """(seconds, intra-node hops, inter-node hops) of passing ``tokens`` tokens' activations through every
    stage boundary once (one decode step of a batch of ``tokens``), with the collective parameters of the
    shipped calibration."""
    sc = resolve(model, system=system, nodes=nodes, pp=pp, tp=tp)
    size = tokens * sc.spec.hidden_size * element_bytes(sc.precision.act)
    total, intra, inter = 0.0, 0, 0
    for stage in range(pp - 1):
        tier = p2p_tier(sc.plan, sc.system, stage)
        same = tier is sc.system.intra_node
        total += float(p2p_s(size, tier, sc.comm))
        intra, inter = intra + same, inter + (not same)
    return total, intra, inter


def c8_layer_per_chip() -> Claim:
    """A 96-layer (GPT-3-sized) model, one layer per chip: 96 H100s = 12 HGX nodes."""
    kw = dict(model="gpt-3-175b", system="hgx-h100", batch=1, isl=512, osl=128)
    per_layer = estimate(nodes=12, pp=96, **kw)
    tp_pp = estimate(nodes=12, tp=8, pp=12, **kw)
    hops, intra, inter = pipeline_hops_s("gpt-3-175b", "hgx-h100", 12, 96, 1, 1)
    return Claim(
        "C8", "One layer per chip: 96 chips = 12 HGX H100 systems; hops add latency to every token", "corrected",
        f"96 layers on 96 H100s in 12 nodes: each token crosses {intra} NVLink and {inter} InfiniBand stage "
        f"boundaries, {hops * 1e3:.2f} ms per token, only {100 * hops / per_layer.tpot_s:.1f}% of its "
        f"{per_layer.tpot_s * 1e3:.0f} ms TPOT at batch 1. The real cost is that one chip works at a time: the same "
        f"96 chips as TP=8 x PP=12 give {tp_pp.tpot_s * 1e3:.1f} ms.",
        {"chips": 96, "nodes": 12, "intra_node_hops": intra, "inter_node_hops": inter, "hops_s_per_token": hops,
         "tpot_s_pp96": per_layer.tpot_s, "tpot_s_tp8_pp12": tp_pp.tpot_s,
         "hops_share_of_tpot": hops / per_layer.tpot_s},
    )


def c10_number_formats() -> Claim:
    """FP8 vs FP16 where FP8 units exist (H100) and where they do not (A100); FP4 on Blackwell."""
    from infercast.calibration import default_efficiency

    b200 = load_chip("b200")
    rates = {f: b200.peak(f) / b200.peak("fp16") for f in ("fp8", "fp6", "fp4")}
    kw = dict(model="llama-2-70b", tp=4, batch=64, isl=1024, osl=256)
    h16, h8 = estimate(system="hgx-h100", **kw), estimate(system="hgx-h100", dtype="fp8", **kw)
    eff = default_efficiency(load_chip("h100-sxm"))
    h8_same = estimate(system="hgx-h100", dtype="fp8", efficiency={"gemm_max_narrow": eff.gemm_max}, **kw)
    a16, a8 = estimate(system="dgx-a100", **kw), estimate(system="dgx-a100", dtype="fp8", **kw)
    b8 = estimate(system="hgx-b200", dtype="fp8", **kw)
    b4 = estimate(system="hgx-b200", quantization="nvfp4", kv_cache_dtype="fp8", **kw)
    ratio = {
        "h100_fp8_over_fp16_prefill": h16.ttft_s / h8.ttft_s, "h100_fp8_over_fp16_tpot": h16.tpot_s / h8.tpot_s,
        "h100_fp8_over_fp16_throughput": h8.throughput_tokens_per_s / h16.throughput_tokens_per_s,
        "h100_fp8_over_fp16_prefill_equal_efficiency": h16.ttft_s / h8_same.ttft_s,
        "h100_fp8_gemm_efficiency": eff.gemm_max_narrow, "h100_fp16_gemm_efficiency": eff.gemm_max,
        "a100_fp8_over_fp16_prefill": a16.ttft_s / a8.ttft_s, "a100_fp8_over_fp16_tpot": a16.tpot_s / a8.tpot_s,
        "a100_fp8_over_fp16_throughput": a8.throughput_tokens_per_s / a16.throughput_tokens_per_s,
        "b200_nvfp4_over_fp8_prefill": b8.ttft_s / b4.ttft_s, "b200_nvfp4_over_fp8_tpot": b8.tpot_s / b4.tpot_s,
        "b200_nvfp4_over_fp8_throughput": b4.throughput_tokens_per_s / b8.throughput_tokens_per_s,
    }
    r = ratio
    return Claim(
        "C10", "Blackwell adds FP6/FP4; FP8 roughly doubles throughput over FP16 where the chip has it",
        "corrected",
        f"B200's dense peaks are {rates['fp8']:.0f}x (FP8), {rates['fp6']:.0f}x (FP6) and {rates['fp4']:.0f}x (FP4) "
        f"its FP16 rate. LLaMA-2-70B at TP=4, batch 64, 1024/256 tokens on H100: if FP8 GEMMs reached the FP16 "
        f"kernels' {100 * r['h100_fp16_gemm_efficiency']:.0f}% of peak, the compute-bound prefill would be "
        f"{r['h100_fp8_over_fp16_prefill_equal_efficiency']:.2f}x faster; the calibration to measured TensorRT-LLM "
        f"FP8 runs puts them at {100 * r['h100_fp8_gemm_efficiency']:.0f}% of the FP8 peak, so the prefill gains "
        f"{r['h100_fp8_over_fp16_prefill']:.2f}x, the decode step {r['h100_fp8_over_fp16_tpot']:.2f}x (bytes; "
        f"all-reduce latency, norms and the fp32 logits do not shrink) and end-to-end throughput "
        f"{r['h100_fp8_over_fp16_throughput']:.2f}x: 'roughly double' is the peak, about 1.4-1.5x what FP8 kernels "
        f"deliver. On A100, which has no FP8 units, FP8 math runs on the FP16 units: the prefill gains only "
        f"{r['a100_fp8_over_fp16_prefill']:.2f}x (from halved all-reduce and memory traffic) and the batch-64 decode "
        f"{r['a100_fp8_over_fp16_tpot']:.2f}x (halved bytes, but compute-bound on the FP16 units). NVFP4 over FP8 "
        f"on B200: prefill {r['b200_nvfp4_over_fp8_prefill']:.2f}x, decode {r['b200_nvfp4_over_fp8_tpot']:.2f}x "
        f"(4.5 bits per weight with its block scales, and an FP8 KV cache).",
        {**{f"b200_{f}_rate_over_fp16": v for f, v in rates.items()}, **ratio},
    )


def c12_sparsity() -> Claim:
    """2:4 on H100 (at most 2x on the math) against the S30's 32x, as the engine models them."""
    pre = dict(model="llama-2-70b", tp=2, batch=16, isl=1024, osl=2)
    dec = dict(model="llama-2-70b", tp=2, batch=1, isl=1024, osl=128)
    h = {k: estimate(system="hgx-h100", sparsity_pattern=k, **pre) if k else estimate(system="hgx-h100", **pre)
         for k in (None, "2:4")}
    d_dense = estimate(system="hgx-h100", **dec)
    d_24 = estimate(system="hgx-h100", sparsity_pattern="2:4", **dec)
    d_packed = estimate(system="hgx-h100", sparsity_pattern="2:4", sparse_storage="compressed", **dec)
    d_unstr = estimate(system="hgx-h100", weight_sparsity=0.9, **dec)
    s30 = load_chip("moffett-s30")
    s30_dense = s30.peak("bf16")
    from infercast.sparsity import Sparsity, effect_on

    at32 = effect_on(s30, Sparsity(weight=1 - 1 / 32), 16)
    f = {
        "h100_2_4_prefill_speedup": h[None].ttft_s / h["2:4"].ttft_s,
        "h100_2_4_decode_speedup_dense_storage": d_dense.tpot_s / d_24.tpot_s,
        "h100_2_4_decode_speedup_compressed": d_dense.tpot_s / d_packed.tpot_s,
        "h100_unstructured_90pct_decode_speedup": d_dense.tpot_s / d_unstr.tpot_s,
        "s30_math_speedup_at_32x": at32.math_speedup,
        "s30_weight_bytes_ratio_at_32x": at32.weight_bits / 16,
        "s30_bf16_dense_tflops": s30_dense / 1e12,
        "s30_bf16_sparse_equivalent_tflops": s30_dense * at32.math_speedup / 1e12,
    }
    return Claim(
        "C12", "2:4 sparsity gives NVIDIA at most 2x; a sparse accelerator claims 32x", "corrected",
        f"On H100, 2:4 halves the linear layers' math: a compute-bound LLaMA-2-70B prefill is "
        f"{f['h100_2_4_prefill_speedup']:.2f}x faster (attention and the LM head stay dense), a batch-1 decode "
        f"{f['h100_2_4_decode_speedup_dense_storage']:.2f}x with the zeros stored and "
        f"{f['h100_2_4_decode_speedup_compressed']:.2f}x with compressed weights (9 bits per fp16 weight with the "
        f"2-bit indices); unstructured 90% sparsity gives {f['h100_unstructured_90pct_decode_speedup']:.2f}x "
        f"(Hopper does not accelerate it). The S30's 32x is a math figure: {f['s30_bf16_dense_tflops']:.0f} dense "
        f"BF16 TFLOPS (assumed) become {f['s30_bf16_sparse_equivalent_tflops']:.0f} sparse-equivalent, but its "
        f"weight bytes shrink only to {f['s30_weight_bytes_ratio_at_32x']:.3f} of dense with a 16-bit index "
        f"(about {1 / f['s30_weight_bytes_ratio_at_32x']:.0f}x), and the KV cache, embeddings and attention do not "
        f"shrink at all: '1-2 orders of magnitude' holds for the multiplications, not for a decoder's tokens/s.",
        f,
    )


def _decode_tokens_per_s(chip, weight_sparsity: float, *, weight_dtype: str = "int8") -> float:
    r = estimate("bloom-176b", chip, num_chips=4, tp=4, batch=1, isl=128, osl=128, weight_dtype=weight_dtype,
                 act_dtype=weight_dtype if weight_dtype == "int8" else "bf16", kv_cache_dtype="bf16",
                 weight_sparsity=weight_sparsity)
    return 1 / r.tpot_s


def _sparsity_for(target: float, chip, weight_dtype: str, top: float = 0.995) -> float | None:
    """The least unstructured weight sparsity giving ``target`` tokens/s (bisection), None if beyond ``top``."""
    if _decode_tokens_per_s(chip, top, weight_dtype=weight_dtype) < target:
        return None
    lo, hi = 0.0, top
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _decode_tokens_per_s(chip, mid, weight_dtype=weight_dtype) >= target else (mid, hi)
    return hi


def c13_bloom_generation() -> Claim:
    """BLOOM-176B, one stream: 8 x A100 (FP16, TP=8) against 4 x S30 at stated sparsities."""
    a100 = estimate("bloom-176b", system="dgx-a100", tp=8, batch=1, isl=128, osl=128)
    s30 = load_chip("moffett-s30")
    int8 = {s: _decode_tokens_per_s(s30, s) for s in (0, 0.5, 0.75, 0.875)}
    bf16 = {s: _decode_tokens_per_s(s30, s, weight_dtype="bf16") for s in (0.5, 0.75, 0.875)}
    table = {f"s30_int8_sparsity_{s:g}_tokens_per_s": v for s, v in int8.items()}
    table |= {f"s30_bf16_sparsity_{s:g}_tokens_per_s": v for s, v in bf16.items()}
    dense_bf16 = estimate("bloom-176b", s30, num_chips=4, tp=4, batch=1, isl=128, osl=128, dtype="bf16")
    need = {t: _sparsity_for(t, s30, "int8") for t in (25, 40, 50)}
    # what the claim's 25 tokens/s at "medium" (75%) sparsity would need of the memory, decode being bandwidth-bound
    bw = s30.memory.bandwidth_bytes_per_s.value
    scale = 25 / int8[0.75]

    def pct(x):
        return "beyond 99.5%" if x is None else f"{100 * x:.1f}%"

    return Claim(
        "C13", "BLOOM-176B: 8xA100 about 20 tokens/s; 4xS30 about 25 at low-to-medium sparsity; target 40-50",
        "corrected",
        f"8 x A100 (FP16, TP=8, NVLink) decode BLOOM-176B at {1 / a100.tpot_s:.0f} tokens/s for one stream in an "
        f"efficient engine (the claim's 20 tokens/s is 50 ms a token: about {1e3 * (0.05 - a100.tpot_s):.0f} ms of "
        f"framework time per step beyond the roofline). 4 x S30 (TP=4 over PCIe; every S30 figure but its 60 GB is "
        f"assumed, bandwidth {bw / 1e9:.0f} GB/s): dense BF16 does not fit (needs "
        f"{dense_bf16.memory.weights_bytes / 1e9:.0f} GB of weights per card), INT8 dense fits at "
        f"{int8[0]:.1f} tokens/s, and unstructured sparsity with compressed weights gives {int8[0.5]:.1f} (50%), "
        f"{int8[0.75]:.1f} (75%) and {int8[0.875]:.1f} (87.5%); BF16 {bf16[0.5]:.1f}, {bf16[0.75]:.1f} and "
        f"{bf16[0.875]:.1f}. Decode is bandwidth-bound: 25 tokens/s needs "
        f"{pct(need[25])} sparsity, 40 needs {pct(need[40])} and 50 needs {pct(need[50])} (INT8), or, at 75% "
        f"sparsity, about {bw * scale / 1e9:.0f} GB/s of memory per card instead of {bw / 1e9:.0f}. The "
        f"claimed 25 tokens/s at low-to-medium sparsity needs more bandwidth than assumed here.",
        {"a100x8_tokens_per_s": 1 / a100.tpot_s, "a100x8_tpot_s": a100.tpot_s, **table,
         "s30_bf16_dense_fits": dense_bf16.memory.fits,
         **{f"s30_int8_sparsity_for_{t}_tokens_per_s": v for t, v in need.items()},
         "s30_bandwidth_assumed_bytes_per_s": bw,
         "s30_bandwidth_for_25_tokens_per_s_at_75pct_bytes_per_s": bw * scale},
    )


def bert_large_flops(seq: int = 384) -> float:
    """FLOPs of one BERT-Large sample of ``seq`` tokens, from the engine's operators (``infercast.networks``):
    the 24 layers' GEMMs and bidirectional attention (about 24 x (24 h^2 S + 4 S^2 h)), norms, the span head."""
    from infercast.networks import flops_per_sample, load_network

    net = load_network("bert-large")
    return flops_per_sample(net, net.workload(seq_len=seq))["encoder"]


def _offline(model: str, chip: str, **kw) -> float:
    """Samples per second of one chip at the throughput-optimal batch that fits (MLPerf Offline)."""
    from infercast.passes import best_batch

    # the harness's concurrent streams hide each kernel's launch and tail (validate_vision.overrides)
    sc = resolve(model, chip, dtype="int8", efficiency={"kernel_overhead_s": 0.0},
                 **{k: v for k, v in kw.items() if k.endswith("sparsity")})
    return float(best_batch(sc, **{k: v for k, v in kw.items() if not k.endswith("sparsity")})[1]["samples_per_s"])


def _sparsity_for_rate(model: str, target: float, **kw) -> float | None:
    """The least unstructured weight sparsity at which an S30 reaches ``target`` samples/s (bisection)."""
    if _offline(model, "moffett-s30", weight_sparsity=0.97, **kw) < target:
        return None
    lo, hi = 0.0, 0.97
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _offline(model, "moffett-s30", weight_sparsity=mid, **kw) >= target else (mid, hi)
    return hi


def c14_mlperf() -> Claim:
    """BERT-Large and ResNet-50 on S30, A100 and H100 as the engine runs them (MLPerf Offline, INT8), and the
    weight sparsity the S30's published results imply."""
    from infercast.calibration import network_profile

    tokens = round(network_profile().mlperf_bert_tokens)
    chips = ("a100-sxm-80gb", "h100-sxm", "moffett-s30")
    bert = {c: _offline("bert-large", c, seq_len=tokens) for c in chips}
    resnet = {c: _offline("resnet-50", c) for c in chips}
    s30_bert, s30_resnet = 3836.89, 95784.3  # MLPerf v2.1 open, Moffett_S30_DELL (measured-vision-encoder.csv)
    need_bert = _sparsity_for_rate("bert-large", s30_bert, seq_len=tokens)
    need_resnet = _sparsity_for_rate("resnet-50", s30_resnet)

    def pct(x):
        return "beyond 97%" if x is None else f"{100 * x:.0f}%"

    return Claim(
        "C14", "MLPerf 2.1: S30 at 1.2x an H100 on ResNet-50; BERT above 3,800/s, about 2x an A100", "corrected",
        f"The engine runs both networks (MLPerf Offline, INT8, the best batch that fits; BERT at "
        f"{tokens:.0f} tokens a sample, the SQuAD mean the network profile fits to the closed-division rows, "
        f"{bert_large_flops(round(tokens)) / 1e9:.0f} GFLOPs). Dense, an A100 does {bert['a100-sxm-80gb']:,.0f} BERT "
        f"and {resnet['a100-sxm-80gb']:,.0f} ResNet-50 samples/s, an H100 {bert['h100-sxm']:,.0f} and "
        f"{resnet['h100-sxm']:,.0f}, a dense S30 (assumed 92 INT8 TOPS) {bert['moffett-s30']:,.0f} and "
        f"{resnet['moffett-s30']:,.0f}. The S30's published {s30_bert:,.0f} BERT and {s30_resnet:,.0f} ResNet-50 "
        f"samples/s need {pct(need_bert)} and {pct(need_resnet)} unstructured weight sparsity on its sparse units "
        f"(beyond 97%: in the engine the card's assumed 300 GB/s LPDDR4X and its dense attention and vector work "
        f"bound it first, so the vendor's bandwidth or the data path must differ from the catalog's assumptions); "
        f"then it is {s30_bert / bert['a100-sxm-80gb']:.1f}x the modelled A100 on BERT (the claim's 'about 2x'), "
        f"below the H100 ({s30_bert / bert['h100-sxm']:.2f}x), and {s30_resnet / resnet['h100-sxm']:.2f}x the "
        f"modelled H100 on ResNet-50 (the claim's 1.2x). The comparison is sparse-pruned models against dense "
        f"ones: it says nothing of equal accuracy.",
        {"bert_large_flops_per_sample_384": bert_large_flops(384), "mlperf_bert_tokens": tokens,
         **{f"bert_samples_per_s_{c}": v for c, v in bert.items()},
         **{f"resnet50_samples_per_s_{c}": v for c, v in resnet.items()},
         "s30_bert_sparsity_implied": need_bert, "s30_resnet50_sparsity_implied": need_resnet,
         "s30_over_a100_bert": s30_bert / bert["a100-sxm-80gb"], "s30_over_h100_resnet50": s30_resnet / resnet["h100-sxm"]},
    )


def c20_diffusion() -> Claim:
    """SD-1.5, SDXL and Flux: parameters, FLOPs and seconds per image on an H100, and what a video second costs."""
    from infercast.networks import flops_per_sample, load_network
    from infercast.passes import evaluate_network

    cases = {"sd-1.5": {}, "sdxl-base-1.0": {}, "flux.1-dev": {}}
    figures: dict[str, Any] = {}
    for m in cases:
        net = load_network(m)
        wl = net.workload()
        per = flops_per_sample(net, wl)
        c = evaluate_network(resolve(m, "h100-sxm"), batch=1)
        figures[f"{m}_params"] = float(sum(net.params().values()))
        figures[f"{m}_weights_gb_fp16"] = float(c["memory.weights_bytes"]) / 1e9
        figures[f"{m}_tflops_per_image"] = sum(per.values()) / 1e12
        figures[f"{m}_denoiser_tflops_per_step"] = per["denoiser"] / wl.steps / 1e12
        figures[f"{m}_h100_s_per_image"] = float(c["latency_s"])
    sdxl = load_network("sdxl-base-1.0")
    big = flops_per_sample(sdxl, sdxl.workload(resolution="2048x2048", steps=50))
    figures["sdxl_2048_tflops_per_image"] = sum(big.values()) / 1e12
    frame = figures["sdxl-base-1.0_tflops_per_image"]
    fps = 24
    video = {t: t * fps / frame for t in (100, 1000)}
    h100_s_per_frame = figures["sdxl-base-1.0_h100_s_per_image"]
    figures.update({"video_frames_per_s": fps, "video_second_pflops_at_100_tflops_per_frame": 100 * fps / 1e3,
                    "video_second_pflops_at_1000_tflops_per_frame": 1000 * fps / 1e3,
                    "h100_s_per_video_second_at_1000_tflops_per_frame": 1000 / frame * h100_s_per_frame * fps})
    f = figures
    return Claim(
        "C20", "Diffusion models: a few B parameters (~20 GB) but ~20 TFLOPs per image, 100-1,000 as resolution and video grow",
        "corrected",
        f"From the shipped configs, at each pipeline's default (50 steps with classifier-free guidance for SD; 28 "
        f"guidance-distilled steps for Flux): SD-1.5 has {f['sd-1.5_params'] / 1e9:.2f}B parameters "
        f"({f['sd-1.5_weights_gb_fp16']:.1f} GB at FP16) and needs {f['sd-1.5_tflops_per_image']:.0f} TFLOPs per "
        f"512x512 image ({f['sd-1.5_denoiser_tflops_per_step']:.2f} per UNet step on the doubled batch); SDXL "
        f"{f['sdxl-base-1.0_params'] / 1e9:.2f}B ({f['sdxl-base-1.0_weights_gb_fp16']:.1f} GB), "
        f"{f['sdxl-base-1.0_tflops_per_image']:.0f} TFLOPs per 1024x1024 image; Flux.1-dev "
        f"{f['flux.1-dev_params'] / 1e9:.1f}B ({f['flux.1-dev_weights_gb_fp16']:.0f} GB: 20 GB is Flux-sized, SD "
        f"fits in a few), {f['flux.1-dev_tflops_per_image']:,.0f} TFLOPs per image. On one H100 (FP16) that is "
        f"{f['sd-1.5_h100_s_per_image']:.2f} s, {f['sdxl-base-1.0_h100_s_per_image']:.2f} s and "
        f"{f['flux.1-dev_h100_s_per_image']:.1f} s per image. So '20 TFLOPs' is SD-1.5 at about "
        f"{20 / f['sd-1.5_denoiser_tflops_per_step']:.0f} steps; at "
        f"default settings today's models need 80-2,000, and SDXL at 2048x2048 "
        f"{f['sdxl_2048_tflops_per_image']:,.0f} (attention grows with the square of the pixels). A second of "
        f"24 fps video at 100-1,000 TFLOPs a frame is {f['video_second_pflops_at_100_tflops_per_frame']:.1f}-"
        f"{f['video_second_pflops_at_1000_tflops_per_frame']:.0f} PFLOPs, {video[1000]:.0f}x an SDXL image at the "
        f"top: {f['h100_s_per_video_second_at_1000_tflops_per_frame']:.0f} s of an H100 per second of video.",
        figures,
    )


def c11_memory_tiers() -> Claim:
    """LLaMA-2-70B FP16 (140 GB) on one H100 (80 GB): more chips, or its weights on host DRAM (PCIe or
    NVLink-C2C on GH200) or CXL memory; capacity gained and decode speed lost."""
    kw = dict(batch=8, isl=1024, osl=128)
    two = estimate("llama-2-70b", system="hgx-h100", tp=2, **kw)
    one = estimate("llama-2-70b", "h100-sxm", **kw)
    share = 1 - 0.9 * (one.memory.usable_per_chip_bytes - one.memory.activation_bytes - one.memory.overhead_bytes
                       - one.memory.kv_cache_bytes) / one.memory.weights_bytes  # what must leave the chip
    share = round(min(max(share, 0.05), 1.0), 2)
    runs = {t: estimate("llama-2-70b", "h100-sxm", offload=f"weights={t}:{share}", **kw) for t in ("cpu", "cxl")}
    gh = estimate("llama-2-70b", "gh200", offload=f"weights=cpu:{max(share - 0.45, 0.05):.2f}", **kw)
    hbm_bound = one.decode.bytes / (one.osl - 1) / 3.35e12  # the step's bytes at the H100's HBM bandwidth
    f = {"weights_gb": one.memory.weights_bytes / 1e9, "h100_fits": one.memory.fits, "offloaded_share": share,
         "tp2_tpot_s": two.tpot_s, "hbm_only_tpot_s_if_it_fit": one.tpot_s, "hbm_bandwidth_bound_tpot_s": hbm_bound,
         "pcie_host_tpot_s": runs["cpu"].tpot_s, "cxl_tpot_s": runs["cxl"].tpot_s, "gh200_c2c_tpot_s": gh.tpot_s,
         "pcie_host_fits": runs["cpu"].memory.fits, "cxl_fits": runs["cxl"].memory.fits, "gh200_fits": gh.memory.fits,
         "pcie_slowdown": runs["cpu"].tpot_s / one.tpot_s, "gh200_slowdown": gh.tpot_s / one.tpot_s}
    return Claim(
        "C11", "HBM bounds capacity and decode speed; CXL-attached memory extends capacity at lower bandwidth",
        "reproduced",
        f"LLaMA-2-70B in FP16 is {f['weights_gb']:.0f} GB of weights: one 80 GB H100 cannot hold it (two at TP=2 decode "
        f"at {1e3 * two.tpot_s:.1f} ms a token at batch 8). If it fit, HBM would bound a step near "
        f"{1e3 * one.tpot_s:.0f} ms. With {100 * share:.0f}% of the weights in host DRAM over PCIe 5 "
        f"({runs['cpu'].offload['tier_bytes_per_s']['cpu'] / 1e9:.0f} GB/s) the model fits one H100 "
        f"({runs['cpu'].memory.fits}) but every step pulls them across: {1e3 * runs['cpu'].tpot_s:,.0f} ms a token, "
        f"{f['pcie_slowdown']:.0f}x slower; CXL memory behind the same link is no faster "
        f"({1e3 * runs['cxl'].tpot_s:,.0f} ms); a GH200 (144 GB HBM, Grace memory over 450 GB/s NVLink-C2C) "
        f"needs to spill less and decodes at {1e3 * gh.tpot_s:.0f} ms. Capacity extends; bandwidth does not.",
        f,
    )


def c17_watts_per_pflops() -> Claim:
    """W per dense PFLOPS at TDP for every chip with both figures, at its narrowest native format; and a design
    search (``infercast.whatif.target_search``) for a chip that meets the target on LLaMA-3-70B."""
    table = {}
    for cid in chip_ids():
        c = load_chip(cid)
        if c.tdp_w.value is None:
            continue
        for fmt in ("fp4", "fp8", "int8", "bf16", "fp16"):
            figure = getattr(c.peak_flops, fmt)
            if figure is not None and figure.value:
                table[cid] = (fmt, c.tdp_w.value / (figure.value / 1e15))
                break
    best = min(table, key=lambda k: table[k][1])
    bf16 = {k: load_chip(k).tdp_w.value / (load_chip(k).peak("bf16") / 1e15) for k in ("h100-sxm", "b200")}
    r = estimate("llama-2-70b", system="hgx-h100", tp=8, batch=32, isl=2048, osl=1)
    delivered = r.prefill.flops / r.prefill.latency_s / 1e15  # PFLOP/s one chip delivers in this prefill
    decode = estimate("llama-2-7b", "h100-sxm", batch=1, isl=128, osl=128).energy
    s = _seed003_search()
    today, bare = s["best_by_overhead"]["reference"], s["best_by_overhead"]["1"]
    skipped = s["closest_counting_skipped_flops"]
    k_met = sorted(float(k) for k, v in skipped.items() if k != "reference" and v is not None
                   and v["score_counting_skipped_flops"] <= 1)

    def design(x) -> str:
        return (f"{x['format'].upper()}, {x['sparsity']}, {x['plan']}, {x['process_nm']:g} nm, "
                f"{x['sram_bytes'] / 1e9:g} GB SRAM, {x['dram_bandwidth'] / 1e12:g} TB/s, batch {x['batch']:g}, "
                f"{'dataflow' if x['dataflow'] else 'GPU-like'} scheduling")

    return Claim(
        "C17", "An inference accelerator should offer 50 W per PFLOPS at over 50% efficiency", "refuted",
        f"No catalog chip meets 50 W/PFLOPS even at its peak: the best is {best} at {table[best][1]:.0f} W per dense "
        f"{table[best][0].upper()} PFLOPS; at BF16, H100 is {bf16['h100-sxm']:.0f} and B200 {bf16['b200']:.0f} "
        f"W/PFLOPS. "
        f"Delivered, an H100 in a LLaMA-2-70B TP=8 prefill reaches {delivered:.2f} PFLOP/s, "
        f"{700 / delivered:.0f} W per delivered PFLOPS at TDP and {r.energy.w_per_delivered_pflops:.0f} W at the "
        f"{r.energy.average_power_w:.0f} W the energy model puts it at; in LLaMA-2-7B batch-1 decode it is "
        f"{decode.w_per_delivered_pflops:,.0f} W per delivered PFLOPS. A design search over {s['evaluated']:,} "
        f"H100-like designs serving LLaMA-3-70B ({s['isl']} + {s['osl']} tokens, within {s['max_e2e_s']:g} s; "
        f"docs/design.md) finds {s['met_count']} meeting both: with today's chip overhead (the catalog's median, "
        f"{today['chip_overhead']:.1f}x the bare datapath's energy) the closest is {design(today)} at "
        f"{100 * today['efficiency']:.0f}% efficiency and {today['w_per_pflops']:.0f} W/PFLOPS, "
        f"{100 * today['share_overhead_j']:.0f}% of its energy that overhead; even with no overhead at all the closest "
        f"({design(bare)}) reaches {100 * bare['efficiency']:.0f}% and {bare['w_per_pflops']:.0f} W/PFLOPS, its "
        f"decode {bare['decode_bound']}-bound and its energy DRAM {100 * bare['share_dram_j']:.0f}% and SRAM "
        f"{100 * bare['share_sram_j']:.0f}%. Counting the FLOPs that sparsity skips as delivered (vendors' "
        f"'effective' FLOPS), "
        + (f"75% sparsity meets it at a chip overhead of {k_met[-1]:g} or less. " if k_met else "nothing meets it. ")
        + "A requirement, not yet met: it needs a near-bare datapath as well as FP4, SRAM and bandwidth.",
        {**{f"w_per_pflops_{k}": v[1] for k, v in table.items()}, "best_chip": best,
         "h100_delivered_pflops_prefill": delivered, "h100_w_per_delivered_pflops": 700 / delivered,
         "h100_prefill_power_w": r.energy.average_power_w,
         "h100_w_per_delivered_pflops_modelled": r.energy.w_per_delivered_pflops,
         "h100_w_per_delivered_pflops_decode_batch_1": decode.w_per_delivered_pflops,
         "search_designs_evaluated": s["evaluated"], "search_designs_meeting_target": s["met_count"],
         "search_closest_today_efficiency": today["efficiency"], "search_closest_today_w_per_pflops":
             today["w_per_pflops"], "search_closest_bare_efficiency": bare["efficiency"],
         "search_closest_bare_w_per_pflops": bare["w_per_pflops"],
         "search_largest_overhead_meeting_target_counting_skipped_flops": k_met[-1] if k_met else None},
    )


@cache
def _seed003_search() -> dict[str, Any]:
    from infercast.whatif import target_search

    return target_search()


def c9_fleet_cost() -> Claim:
    """22,000 H100s: chips, HGX servers, the network share, and a year of power and hosting."""
    n, h100, hgx = 22_000, load_chip("h100-sxm"), load_system("hgx-h100")
    systems = n // hgx.chips_per_node
    chips_usd = n * h100.price_usd.value
    servers_usd = systems * hgx.price_usd.value
    o = CostOptions()
    with_network = n * capex_per_chip_usd(h100, hgx, o)
    hour = owned_chip_hour(capex_per_chip_usd(h100, hgx, o), h100.tdp_w.value, h100.tdp_w.value, o)
    running = n * HOURS_PER_YEAR * (hour.electricity_usd + hour.hosting_usd)  # at TDP all year: an upper bound
    return Claim(
        "C9", "22,000 H100s cost about USD 800M and form 2,750 8-GPU systems", "reproduced",
        f"22,000 H100s are {systems:,} HGX nodes of 8. At the catalog's USD {h100.price_usd.value:,.0f} per GPU the "
        f"chips alone are USD {chips_usd / 1e6:,.0f}M; as HGX H100 servers at USD {hgx.price_usd.value:,.0f} each, "
        f"USD {servers_usd / 1e6:,.0f}M (USD {servers_usd / n:,.0f} per GPU, against the claim's ~36k); with the "
        f"network share (USD {o.network_usd_per_chip:,.0f} per GPU, assumed) USD {with_network / 1e6:,.0f}M. Power, "
        f"cooling and hosting at full load then add USD {running / 1e6:,.0f}M a year (PUE {o.pue:g}, USD "
        f"{o.electricity_usd_per_kwh:g}/kWh, USD {o.hosting_usd_per_kw_month:g} per kW-month).",
        {"gpus": n, "systems": systems, "chips_usd": chips_usd, "servers_usd": servers_usd,
         "usd_per_gpu_in_servers": servers_usd / n, "with_network_usd": with_network,
         "power_and_hosting_usd_per_year": running},
    )


def c15_energy_split() -> Claim:
    """Horowitz's per-operation energies, and the energy split of a decode step vs a large prefill."""
    o = EnergyOptions()
    h100 = load_chip("h100-sxm")
    decode = estimate("llama-2-7b", h100, batch=1, isl=128, osl=128).energy.split
    prefill = estimate("llama-2-7b", h100, batch=16, isl=2048, osl=1).energy.split

    def movement(s) -> float:
        return s.memory_j + s.interconnect_j

    dec_ratio, pre_ratio = movement(decode) / decode.compute_j, movement(prefill) / prefill.compute_j
    total_dec = decode.compute_j + movement(decode) + decode.static_j + decode.overhead_j
    bare = estimate("llama-2-7b", h100, batch=16, isl=2048, osl=1, energy={"chip_overhead": 1.0}).energy
    overhead_share = prefill.overhead_j / (movement(prefill) + prefill.compute_j + prefill.static_j
                                           + prefill.overhead_j)
    return Claim(
        "C15", "Data movement, not arithmetic, dominates the energy of generative inference", "reproduced",
        f"Horowitz at 45 nm: 8-bit add {o.int8_add_j / pJ:g} pJ, multiply {o.int8_mul_j / pJ:g}; FP16 add "
        f"{o.fp16_add_j / pJ:g}, multiply {o.fp16_mul_j / pJ:g}; FP32 {o.fp32_add_j / pJ:g} and {o.fp32_mul_j / pJ:g}; "
        f"a 64-bit SRAM read 10-100 pJ (8 KB to 1 MB); DRAM {64 * o.other_dram_j_per_bit / pJ:,.0f} pJ per 64 bits "
        f"(HBM {64 * o.hbm_j_per_bit / pJ:.0f}). LLaMA-2-7B FP16 on an H100 (the per-op figures scaled to 4 nm by "
        f"{node_scale(h100):.3f}): a batch-1 decode moves data for {dec_ratio:,.0f}x the energy of its arithmetic "
        f"(DRAM {100 * decode.dram_j / total_dec:.0f}% of the run, arithmetic {100 * decode.compute_j / total_dec:.2f}%"
        f", static {100 * decode.static_j / total_dec:.0f}%); a batch-16 prefill of 2048 tokens only "
        f"{pre_ratio:.1f}x. The bare figures put that prefill at {bare.prefill_power_w:.0f} W of the H100's 700 W: "
        f"most of a busy chip's energy is clocks, control and wires ({100 * overhead_share:.0f}% "
        f"here, the chip_overhead), which Horowitz's table does not price.",
        {"decode_movement_over_arithmetic": dec_ratio, "prefill_movement_over_arithmetic": pre_ratio,
         "decode_dram_share": decode.dram_j / total_dec, "decode_compute_share": decode.compute_j / total_dec,
         "decode_static_share": decode.static_j / total_dec, "h100_node_scale": node_scale(h100),
         "prefill_power_w_bare": bare.prefill_power_w},
    )


def c16_efficiency() -> Claim:
    """Chips per delivered PFLOP/s at 5% and 50% efficiency; the tool's own efficiency for GPT-4-class decode."""
    h100 = load_chip("h100-sxm")
    peak_pflops = h100.peak("fp16") / 1e15
    chips = {eff: 1 / (eff * peak_pflops) for eff in (0.05, 0.5)}
    kw = dict(system="hgx-h100", nodes=8, tp=8, pp=8, isl=1000, osl=500)
    one = estimate("gpt-4-class-moe", batch=1, **kw)
    big = estimate("gpt-4-class-moe", batch=96, **kw)

    def overall(r) -> float:  # FLOPs of the whole request over the chips' peak for its duration
        return (r.prefill.flops + r.decode.flops) / (r.e2e_latency_s * r.peak_flops)

    util = {b: r.to_dict()["utilization"]["decode_compute"] for b, r in ((1, one), (96, big))}
    return Claim(
        "C16", "Efficiency decides chips per delivered PFLOPS; GPT-4 inference runs at about 3% of peak",
        "corrected",
        f"One delivered PFLOP/s needs 1 / (efficiency x peak) chips: {chips[0.05]:.1f} H100s (FP16 dense "
        f"{peak_pflops:.3f} PFLOPS) at 5% and {chips[0.5]:.1f} at 50%, the claim's 20 and 2. For the unofficial "
        f"1.78T-parameter GPT-4-class MoE on 64 H100s (TP=8 x PP=8, FP16, 1000 + 500 tokens) the tool predicts "
        f"{100 * util[1]:.3f}% of peak in batch-1 decode ({100 * overall(one):.2f}% over the whole request) and "
        f"{100 * util[96]:.2f}% at batch 96 ({100 * overall(big):.2f}%): '3%' needs large batches and long prompts, "
        f"batch-1 decode is far below it.",
        {"chips_per_pflops_at_5pct": chips[0.05], "chips_per_pflops_at_50pct": chips[0.5],
         "gpt4_class_decode_utilization_batch_1": util[1], "gpt4_class_decode_utilization_batch_96": util[96],
         "gpt4_class_request_utilization_batch_1": overall(one), "gpt4_class_request_utilization_batch_96": overall(big)},
    )


def c18_cost_per_query() -> Claim:
    """A GPT-3-175B answer's cost against a search's 0.2 cents; the Google-scale fleets; what USD 1T needs."""
    kw = dict(system="hgx-h100", tp=8, isl=QUERY_ISL, osl=QUERY_OSL)
    batched = estimate("gpt-3-175b", batch=estimate("gpt-3-175b", batch=1, **kw).memory.max_batch, **kw)
    single = estimate("gpt-3-175b", batch=1, **kw)
    fleets = google_scale()
    worst = max(fleets, key=lambda f: f["tco_usd"])
    big = {k: worst[k] for k in ("system", "nodes", "tp", "pp", "isl", "osl")}
    tco_by_batch = {b: size_fleet(estimate(worst["model"], batch=b, **big), GOOGLE_QPS).tco_usd
                    for b in (1, 2, 4, 8, 16, 32)}
    trillion_batch = max((b for b, t in tco_by_batch.items() if t >= 1e12), default=None)
    years = (1e12 - worst["capex_usd"]) / worst["opex_usd_per_year"]
    table = "; ".join(f"{f['model']} on {f['system']} (batch {f['batch']}): {f['chips']:,} chips, TCO USD "
                      f"{f['tco_usd'] / 1e9:,.0f}B, {100 * f['usd_per_query']:.2f} cents/query" for f in fleets)
    o = CostOptions()
    return Claim(
        "C18", "A ChatGPT-class query costs 15-70x a search (0.2 cents); Google-scale serving near USD 1T",
        "corrected",
        f"A GPT-3-175B answer ({QUERY_ISL} + {QUERY_OSL} tokens, FP16, owned HGX H100, TP=8) costs "
        f"{100 * batched.cost.usd_per_query:.2f} cents at batch {batched.batch} ({batched.cost.usd_per_query / 0.002:.1f}x"
        f" a search's 0.2 cents) and {100 * single.cost.usd_per_query:.1f} cents unbatched: the quoted 3-14 cents is "
        f"batch-1 serving. At {GOOGLE_QPS:,.0f} queries/s over {o.years:g} years (fully loaded, USD "
        f"{o.electricity_usd_per_kwh:g}/kWh, PUE {o.pue:g}): {table}. USD 1T needs the GPT-4-class model on H100 at "
        f"batch {trillion_batch} or less (USD {tco_by_batch[1] / 1e12:.1f}T at batch 1), or "
        f"{years:,.0f} years at batch {worst['batch']}; the other cases stay far below it.",
        {"gpt3_usd_per_query_batched": batched.cost.usd_per_query, "gpt3_batch": batched.batch,
         "gpt3_usd_per_query_batch_1": single.cost.usd_per_query,
         "gpt3_batched_over_search": batched.cost.usd_per_query / 0.002,
         **{f"tco_usd_{f['model']}_{f['system']}": f["tco_usd"] for f in fleets},
         **{f"chips_{f['model']}_{f['system']}": f["chips"] for f in fleets},
         **{f"gpt4_class_h100_tco_usd_batch_{b}": t for b, t in tco_by_batch.items()},
         "largest_batch_reaching_1t": trillion_batch, "years_to_1t_at_scenario_batch": years},
    )


def c5_training_memory() -> Claim:
    """LLaMA-2-70B on 24 GB cards: serving needs a handful, training (Adam, mixed precision) about eighty; and a
    pipeline's first stage holds the activations of every micro-batch in flight."""
    from infercast.train import min_chips_to_train
    from infercast.training import resolve_training, stage_memory
    from infercast.training_memory import StateBytes

    model, card, seq = "llama-2-70b", "rtx-4090", 4096
    params = load_model(model).params()[0]
    serve = estimate(model, card, batch=1, isl=seq // 2, osl=seq // 2).memory
    plan = serve.min_plan or {"tp": serve.min_chips, "pp": 1}
    served = estimate(model, card, batch=1, isl=seq // 2, osl=seq // 2, tp=plan["tp"], pp=plan["pp"],
                      num_chips=plan["tp"] * plan["pp"]).memory
    int4 = estimate(model, card, batch=1, isl=seq // 2, osl=seq // 2, quantization="q4_k_m").memory
    adam = StateBytes(gradients=2.0)  # bf16 weights, FP32 master and moments, bf16 gradients: 16 bytes
    fsdp = min_chips_to_train(model, card, seq_len=seq)  # ZeRO-3 (FSDP), full recomputation, micro-batch 1
    mega = min_chips_to_train(model, card, seq_len=seq, zero_stage=1, framework="megatron")
    states = params * adam.total
    # the pipeline point: 1F1B on 8 stages of 10 layers, 16 micro-batches of one 4096-token sequence, no
    # recomputation, on 80 GB chips so that the activations are what is compared
    pipe = resolve_training(model, "h100-sxm", seq_len=seq, global_batch=16, micro_batch=1, tp=1, pp=8, dp=1,
                            recompute="none", zero_stage=1, framework="megatron", num_chips=8)
    first, last = stage_memory(pipe, 0, 1e15), stage_memory(pipe, 7, 1e15)
    gpipe = pipe.cfg.micro_batches * 10 * first.layer_activation_bytes  # GPipe: all m micro-batches before backward
    return Claim(
        "C5", "Training needs far more memory than inference; pipelines hold in-flight micro-batches", "reproduced",
        f"LLaMA-2-70B ({params / 1e9:.1f} B parameters) on 24 GB RTX 4090s: serving in FP16 needs "
        f"{serve.min_chips} cards ({served.total_per_chip_bytes / 1e9:.1f} GB each: "
        f"{served.weights_bytes / 1e9:.1f} GB of weights and a {seq}-token cache), {int4.min_chips} at 4 bits "
        f"(q4_k_m). Training with Adam in mixed precision keeps {adam.total:.0f} bytes per parameter (2 weights + 4 "
        f"master + 4 + 4 moments + 2 gradients), {states / 1e12:.2f} TB of model states before any activation, "
        f"so it needs at least {fsdp.chips} cards (the fewest of any plan: tp {fsdp.tp} x pp {fsdp.pp} x dp {fsdp.dp}, "
        f"full recomputation, one {seq}-token sequence per micro-batch, {fsdp.memory.total_bytes / 1e9:.1f} GB on "
        f"the fullest card), {fsdp.chips / serve.min_chips:.0f}x the cards of serving. With 1F1B on 8 stages the "
        f"first stage holds the activations of {first.in_flight:g} micro-batches in flight "
        f"({first.activation_bytes / 1e9:.1f} GB), the last of {last.in_flight:g} ({last.activation_bytes / 1e9:.1f} "
        f"GB); GPipe would hold all {pipe.cfg.micro_batches} ({gpipe / 1e9:.1f} GB).",
        {"params": params, "inference_min_chips_fp16": serve.min_chips,
         "inference_per_chip_bytes": served.total_per_chip_bytes, "inference_weights_per_chip_bytes":
         served.weights_bytes, "inference_min_chips_q4_k_m": int4.min_chips,
         "training_bytes_per_param": adam.total, "training_states_bytes": states,
         "training_min_chips": fsdp.chips, "training_min_plan": f"tp{fsdp.tp} pp{fsdp.pp} dp{fsdp.dp}",
         "training_per_chip_bytes": fsdp.memory.total_bytes,
         "training_min_chips_megatron_zero1": mega.chips,
         "training_over_inference_chips": fsdp.chips / serve.min_chips,
         "pipeline_first_stage_in_flight": first.in_flight, "pipeline_last_stage_in_flight": last.in_flight,
         "pipeline_first_stage_activation_bytes": first.activation_bytes,
         "pipeline_last_stage_activation_bytes": last.activation_bytes, "gpipe_first_stage_activation_bytes": gpipe},
    )


def c19_model_scale() -> Claim:
    counts = {m: load_model(m).params()[0] for m in ("gpt-2-xl", "gpt-3-175b", "gpt-4-class-moe")}
    return Claim(
        "C19", "GPT-2 1.5B, GPT-3 175B, GPT-4 about 1.7T parameters", "reproduced",
        f"From the configs: GPT-2-XL {counts['gpt-2-xl'] / 1e9:.2f} B, GPT-3 {counts['gpt-3-175b'] / 1e9:.1f} B, "
        f"and the unofficial GPT-4-class MoE preset {counts['gpt-4-class-moe'] / 1e12:.2f} T (an assumption built "
        f"from public descriptions); the growth-rate remark is history, not something to compute.",
        {"gpt2_xl_params": counts["gpt-2-xl"], "gpt3_params": counts["gpt-3-175b"],
         "gpt4_class_params": counts["gpt-4-class-moe"]},
    )


_COMPUTED: dict[str, Callable[[], Claim]] = {
    "C1": c1_kv_cache, "C2": c2_kv_savings, "C3": c3_memory_to_run, "C4": c4_phases, "C5": c5_training_memory,
    "C6": c6_consumer_vs_datacenter, "C7": c7_interconnect, "C8": c8_layer_per_chip, "C17": c17_watts_per_pflops,
    "C19": c19_model_scale,
    "C10": c10_number_formats, "C12": c12_sparsity, "C13": c13_bloom_generation, "C14": c14_mlperf,
    "C9": c9_fleet_cost, "C15": c15_energy_split, "C16": c16_efficiency, "C18": c18_cost_per_query,
    "C11": c11_memory_tiers, "C20": c20_diffusion,
}


def all_claims() -> list[Claim]:
    """C1-C20 in order, each computed by the engine."""
    return [_COMPUTED[f"C{i}"]() for i in range(1, 21)]
