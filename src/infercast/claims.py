"""The seed claims (../shared/SEED-CLAIMS.md), each recomputed by the engine with a verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from infercast.estimate import estimate
from infercast.hardware import chip_ids, load_chip
from infercast.model import load_model
from infercast.parallel import CommOptions, p2p_s
from infercast.system import load_system

Verdict = Literal["reproduced", "corrected", "refuted", "not_yet"]
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
    stage boundary once (one decode step of a batch of ``tokens``)."""
    s, sys_ = load_model(model), load_system(system).with_nodes(nodes)
    size = tokens * s.hidden_size * 2.0  # fp16 activations
    opts, total, intra, inter = CommOptions(), 0.0, 0, 0
    for boundary in range(1, pp):
        chip = boundary * tp
        same = (chip - 1) // sys_.chips_per_node == chip // sys_.chips_per_node
        tier = sys_.intra_node if same else sys_.inter_node
        total += float(p2p_s(size, tier, opts))
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


def c17_watts_per_pflops() -> Claim:
    """W per dense PFLOPS at TDP for every chip with both figures, at its narrowest native format."""
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
    return Claim(
        "C17", "An inference accelerator should offer 50 W per PFLOPS at over 50% efficiency", "refuted",
        f"No catalog chip meets 50 W/PFLOPS even at its peak: the best is {best} at {table[best][1]:.0f} W per dense "
        f"{table[best][0].upper()} PFLOPS; at BF16, H100 is {bf16['h100-sxm']:.0f} and B200 {bf16['b200']:.0f} "
        f"W/PFLOPS. "
        f"Delivered, an H100 in a LLaMA-2-70B TP=8 prefill reaches {delivered:.2f} PFLOP/s, "
        f"{700 / delivered:.0f} W per delivered PFLOPS at TDP. A requirement, not yet met.",
        {**{f"w_per_pflops_{k}": v[1] for k, v in table.items()}, "best_chip": best,
         "h100_delivered_pflops_prefill": delivered, "h100_w_per_delivered_pflops": 700 / delivered},
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


_PENDING = {
    "C5": ("Training needs far more memory than inference", "needs the training-memory model"),
    "C9": ("22,000 H100s cost about USD 800M", "needs the cost model"),
    "C10": ("FP8/FP6/FP4 roughly double throughput per step", "needs quantization schemes and per-format rates"),
    "C11": ("HBM bounds capacity and decode speed; CXL extends capacity", "needs memory tiers"),
    "C12": ("2:4 sparsity (2x) and 32x sparse accelerators", "needs the sparsity model"),
    "C13": ("BLOOM-176B: 8xA100 ~20 tok/s, 4xS30 ~25 tok/s", "needs multi-chip plans and sparsity"),
    "C14": ("MLPerf 2.1: S30 vs H100/A100 on ResNet-50 and BERT", "needs the sparsity model; not decoders"),
    "C15": ("Data movement, not arithmetic, dominates energy", "needs the energy model"),
    "C16": ("Efficiency decides chips per delivered PFLOPS", "needs the energy and fleet models"),
    "C18": ("Cost per query; Google-scale fleet near USD 1T", "needs the cost and fleet models"),
    "C20": ("Diffusion models: few B params, ~20 TFLOPs per image", "needs a diffusion workload"),
}

_COMPUTED: dict[str, Callable[[], Claim]] = {
    "C1": c1_kv_cache, "C2": c2_kv_savings, "C3": c3_memory_to_run, "C4": c4_phases,
    "C6": c6_consumer_vs_datacenter, "C7": c7_interconnect, "C8": c8_layer_per_chip, "C17": c17_watts_per_pflops,
    "C19": c19_model_scale,
}


def all_claims() -> list[Claim]:
    """C1-C20 in order: computed where the engine can, ``not_yet`` with the missing piece otherwise."""
    out = []
    for i in range(1, 21):
        cid = f"C{i}"
        if cid in _COMPUTED:
            out.append(_COMPUTED[cid]())
        else:
            title, missing = _PENDING[cid]
            out.append(Claim(cid, title, "not_yet", f"Not computed in this version: {missing}."))
    return out
