"""The step-time model against estimate(), and the KV-cache size against a hand derivation.

Tolerance: the step model is estimate()'s own operators regrouped (token, sequence and attention
terms), so a pure decode step and a single-prompt prefill agree to rounding (rel 1e-9). The one
known departure is a decode whose context is shorter than the query heads sharing a KV head
(L < group): the model charges it the attention efficiency at min(group, head_dim), estimate()
at L. That is a context of under 8 tokens for LLaMA-2-70B; the test below bounds it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import estimate
from infercast.errors import InfercastError
from infercast.serving.steptime import deployment, kv_cache_blocks, step_time

CASES = {
    # (deployment options, estimate options beyond them)
    "llama-2-7b a100": dict(model="llama-2-7b", hardware="a100-sxm-80gb"),
    "llama-2-70b hgx-h100 fp8 tp2 dp4": dict(model="llama-2-70b", system="hgx-h100", tp=2, dp=4, dtype="fp8"),
    "mixtral-8x7b h100 tp2": dict(model="mixtral-8x7b", hardware="h100-sxm", num_chips=2, tp=2),
    "llama-2-13b a100 pp2": dict(model="llama-2-13b", hardware="a100-sxm-80gb", num_chips=2, pp=2),
    "gpt-j-6b materialized": dict(model="gpt-j-6b", hardware="a100-sxm-80gb", attention="materialized"),
    "llama-3-8b h100 int4 awq": dict(model="llama-3-8b", hardware="h100-sxm", quantization="awq"),
    "llama-3-8b h100 step overhead": dict(model="llama-3-8b", hardware="h100-sxm",
                                          efficiency={"step_overhead_s": 0.002}),
    # attention efficiency falling at short key lengths (the calibration prior's 128 keys)
    "llama-3-8b h100 short-key attention": dict(model="llama-3-8b", hardware="h100-sxm",
                                                efficiency={"attention_half_len": 128.0}),
    "gpt-j-6b materialized short-key": dict(model="gpt-j-6b", hardware="a100-sxm-80gb", attention="materialized",
                                            efficiency={"attention_half_len": 64.0}),
    # MLA: absorbed decode kernels and projections, prefill up-projects the latent (DeepSeek-V3, TP8 EP8)
    "deepseek-v3 hgx-b200 fp8 tp8 ep8": dict(model="deepseek-v3", system="hgx-b200", tp=8, ep=8, dtype="fp8",
                                             efficiency={"attention_half_len": 64.0}),
    # 128-token windows on half the layers (gpt-oss-120b; contexts beyond and within the window)
    "gpt-oss-120b b200 mxfp4 experts": dict(model="gpt-oss-120b", hardware="b200", weight_dtype="bf16",
                                            expert_dtype="mxfp4"),
    "gpt-oss-120b b200 materialized": dict(model="gpt-oss-120b", hardware="b200", dtype="fp8",
                                           attention="materialized"),
    # a framework replaying decode steps from CUDA graphs and launching the prefill's kernels (SGLang 0.5.5),
    # with its custom all-reduce, and a chip throttled to its TDP (60x the chip overhead)
    "llama-2-70b hgx-h100 sglang tp4": dict(model="llama-2-70b", system="hgx-h100", tp=4, dp=2, dtype="fp8",
                                            framework="sglang@0.5.5",
                                            efficiency={"graph_kernel_overhead_s": 1e-6, "kernel_overhead_s": 2e-5}),
    "deepseek-v3 b200 sglang tdp": dict(model="deepseek-v3", system="hgx-b200", tp=8, ep=8, dtype="fp8",
                                        framework="sglang@0.5.5", energy={"chip_overhead": 60},
                                        efficiency={"graph_kernel_overhead_s": 1e-6, "kernel_overhead_s": 2e-5}),
}
STEPS = {name: step_time(deployment(**kw), 4096, 256) for name, kw in CASES.items()}


def _estimate(kw: dict, **workload):
    kw = dict(kw)
    model, hardware = kw.pop("model"), kw.pop("hardware", None)
    dp = kw.get("dp", 1)
    # estimate() splits its batch over dp replicas; one replica's step is the simulator's
    workload["batch"] = workload.get("batch", 1) * dp
    return estimate(model, hardware, **kw, **workload)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("batch,context", [(1, 128), (8, 1000), (64, 1000), (256, 2000)])
def test_decode_step_is_estimates_tpot(name, batch, context):
    # estimate(isl = L - 1, osl = 2) has one decode step, at KV length L: its tpot is that step
    e = _estimate(CASES[name], batch=batch, isl=context - 1, osl=2)
    assert STEPS[name]([], batch, batch * context) == pytest.approx(e.tpot_s, rel=1e-9)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("prompt", [1, 16, 100, 512, 2000])
def test_prefill_step_is_estimates_ttft(name, prompt):
    e = _estimate(CASES[name], isl=prompt, osl=1)
    assert STEPS[name]([(prompt, prompt)], 0, 0) == pytest.approx(e.ttft_s, rel=1e-9)


def test_short_contexts_are_the_only_departure():
    # LLaMA-2-70B at tp 2: 32 query heads over 4 KV heads, group 8; below L = 8 the decode's attention
    # efficiency is charged at 8 rows instead of L. Even at L = 2 the step differs by under 1%.
    st_ = STEPS["llama-2-70b hgx-h100 fp8 tp2 dp4"]
    assert st_.group == 8
    for L in (2, 4, 7):
        e = _estimate(CASES["llama-2-70b hgx-h100 fp8 tp2 dp4"], batch=16, isl=L - 1, osl=2)
        assert st_([], 16, 16 * L) == pytest.approx(e.tpot_s, rel=0.01)
    e = _estimate(CASES["llama-2-70b hgx-h100 fp8 tp2 dp4"], batch=16, isl=7, osl=2)
    assert st_([], 16, 16 * 8) == pytest.approx(e.tpot_s, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 600), st.integers(0, 2000)), min_size=1, max_size=4),
       st.integers(0, 64), st.integers(2, 3000))
def test_a_mixed_step_costs_less_than_its_parts_apart(chunks, decodes, context):
    # batching shares the weight reads: one step of everything is not slower than a step each, up to
    # wave quantization's rounding (a GEMM's last wave of tiles may fill worse when the rows are added
    # up: 99 + 286 rows together took 0.008% longer than apart). For the same reason step time is not
    # monotone in tokens: a GEMM of 257 rows can be faster than one of 256.
    st_ = STEPS["llama-2-7b a100"]
    cost = [(n, n + cached) for n, cached in chunks]
    if sum(n for n, _ in cost) + decodes > st_.max_tokens:
        return
    t = st_(cost, decodes, decodes * context)
    apart = sum(st_([c], 0, 0) for c in cost) + (st_([], decodes, decodes * context) if decodes else 0)
    assert 0 < t <= apart * 1.01


@pytest.mark.parametrize("name", ["deepseek-v3 hgx-b200 fp8 tp8 ep8", "gpt-oss-120b b200 mxfp4 experts"])
@settings(max_examples=25, deadline=None)
@given(chunk=st.tuples(st.integers(1, 2000), st.integers(0, 3000)), decodes=st.integers(1, 64),
       context=st.integers(200, 3000))
def test_mla_and_windowed_mixed_steps_lie_between_their_parts(name, chunk, decodes, context):
    # MLA runs its prefill and decode kernels side by side, gpt-oss caps half its layers at the window: a
    # mixed step is slower than either part alone (or equal, where a tiny part rounds away) and not
    # slower than both apart
    st_ = STEPS[name]
    cost = [(chunk[0], chunk[0] + chunk[1])]
    t = st_(cost, decodes, decodes * context)
    alone = (st_(cost, 0, 0), st_([], decodes, decodes * context))
    assert max(alone) * (1 - 1e-9) <= t <= sum(alone) * 1.01


def test_chunked_prefill_costs_more_than_one_pass():
    # a 2048-token prompt in four chunks of 512 re-reads the earlier chunks' K/V and pays four
    # weight passes: more than one 2048-token pass, less than four 2048-token passes
    st_ = STEPS["llama-2-7b a100"]
    whole = st_([(2048, 2048)], 0, 0)
    chunks = sum(st_([(512, 512 * (i + 1))], 0, 0) for i in range(4))
    assert whole < chunks < 4 * whole


def test_kv_blocks_of_llama_2_7b_on_a100_80gb():
    # 80 GiB = 85,899,345,920 B x 0.9 = 77,309,411,328 B usable; less 1 GiB runtime (1,073,741,824), weights
    # 6,738,415,616 x 2 B = 13,476,831,232, and the activations of an 8192-token profile pass: (2 x 4096 hidden
    # + 22,016 gate/up) x 2 B = 60,416 B a token x 8192 = 494,927,872, plus the fp32 logits of max-num-seqs 256
    # sampled sequences: 256 x 32,000 x 4 = 32,768,000. Left: 62,231,142,400 B. A block is 16 tokens x 2
    # (K, V) x 32 layers x 4096 x 2 B = 8,388,608 B: 7,418 blocks (118,688 tokens).
    dep = deployment("llama-2-7b", "a100-sxm-80gb")
    assert kv_cache_blocks(dep, block_size=16, max_tokens=8192) == 7418
    assert kv_cache_blocks(dep, block_size=16, max_tokens=2048) > 7418  # a smaller profile pass leaves more


def test_kv_blocks_shrink_with_tp_shards_and_grow_with_fp8():
    fp16 = kv_cache_blocks(deployment("llama-2-70b", system="hgx-h100", tp=2), block_size=16, max_tokens=8192)
    fp8 = kv_cache_blocks(deployment("llama-2-70b", system="hgx-h100", tp=2, dtype="fp8"), block_size=16,
                          max_tokens=8192)
    # fp8 halves both the weights (more room) and the bytes of a block (twice the blocks in a room)
    assert fp8 > 2 * fp16
    # per chip at tp 2: weights 68.98e9 x 2 B / 2 = 68.98 GB of 77.3 GB usable (0.9 x 80 GiB), little room for
    # the cache: under 8.3 GB, blocks of 16 x 2 x 80 layers x 1024 / 2 x 2 B = 2.6 MB, so under 3,200
    assert fp16 < 3200


def test_windowed_layers_hold_their_window_only():
    """gpt-oss-120b: 18 of 36 layers attend within 128 tokens. A block holds 16 tokens of the 18 full-attention
    layers (half a token's K/V bytes), so the cache has twice the blocks of a cache that kept every layer's tokens;
    each running request also holds ceil(128 / 16) = 8 blocks of its windowed layers, the same size. A request of
    33,791 tokens then holds 2,112 + 8 blocks where it held 2,112 blocks of twice the size: about 1.99x the
    requests fit, as estimate's max batch counts them."""
    from infercast import estimate
    from infercast.serving.steptime import window_blocks

    dep = deployment("gpt-oss-120b", "h200-sxm", dtype="fp8", kv_cache_dtype="bf16")
    blocks = kv_cache_blocks(dep, block_size=16, max_tokens=8192)
    assert window_blocks(dep, block_size=16) == 8
    load = dep.loads[0]
    usable = dep.rates.mem_capacity_bytes * dep.memory.gpu_memory_utilization
    assert blocks * 16 * load.kv_bytes_per_token / 2 <= usable - load.weights_bytes  # half a token's bytes a slot
    assert window_blocks(deployment("llama-2-7b", "a100-sxm-80gb"), block_size=16) == 0
    assert window_blocks(deployment("mistral-7b", "a100-sxm-80gb"), block_size=16) == 0  # every layer windowed
    # requests of 32,768 + 1,024 tokens at once: the cache's count, and estimate's max batch at the same memory
    per_request = -(-(32768 + 1024 - 1) // 16) + 8
    e = estimate("gpt-oss-120b", "h200-sxm", dtype="fp8", kv_cache_dtype="bf16", batch=1, isl=32768, osl=1024)
    assert blocks // per_request == pytest.approx(e.memory.max_batch, abs=1)


def test_a_model_that_does_not_fit_is_one_clear_line():
    with pytest.raises(InfercastError, match="no memory left for the KV cache"):
        kv_cache_blocks(deployment("llama-2-70b", "a100-sxm-80gb"), block_size=16, max_tokens=8192)


def test_tables_cover_every_step_size():
    st_ = STEPS["llama-2-7b a100"]
    assert st_.max_tokens == 4096 and st_.max_seqs == 256
    assert math.isfinite(st_([(4096 - 255, 4096)], 255, 255 * 3000))  # a full budget and max-num-seqs
    times = np.array([st_([(n, n)], 0, 0) for n in (1, 2, 4, 64, 512, 4096)])
    assert (np.diff(times) > 0).all()


@pytest.mark.parametrize("name", list(CASES))
@settings(max_examples=15, deadline=None)
@given(steps=st.lists(st.tuples(st.lists(st.tuples(st.integers(1, 700), st.integers(0, 2500)), max_size=3),
                                st.integers(0, 200), st.integers(1, 3000)), min_size=1, max_size=6))
def test_many_steps_at_once_equal_one_by_one(name, steps):
    # the vectorised step time (a replayed run re-prices its steps with it) is the step function, step by step
    st_ = STEPS[name]
    rows = []
    for chunks, decodes, context in steps:
        cost = [(n, n + c) for n, c in chunks]
        if not cost and not decodes:
            decodes = 1
        if sum(n for n, _ in cost) + decodes > st_.max_tokens or len(cost) + decodes > st_.max_seqs:
            continue
        rows.append((cost, decodes, decodes * context))
    if not rows:
        return
    one = [st_(c, d, x) for c, d, x in rows]
    flat = [(i, n, kv) for i, (c, _, _) in enumerate(rows) for n, kv in c]
    got = st_.many(np.array([d for _, d, _ in rows]), np.array([x for _, _, x in rows]),
                   np.array([f[0] for f in flat], dtype=np.int64), np.array([f[1] for f in flat], dtype=np.int64),
                   np.array([f[2] for f in flat], dtype=np.int64))
    np.testing.assert_allclose(got, one, rtol=1e-9)


def test_a_pipeline_deals_its_step_into_micro_batches():
    """pp 3: a step of 7 decodes (context 1,000 each) and two prefill chunks runs as 3 micro-batches: decodes dealt
    3, 2, 2 (the first 7 mod 3 take one more), the chunks one each from the first with fewer decodes (1, then 2).
    The step is the longer of the busiest stage's work on all three and the longest trip through the stages."""
    st_ = step_time(deployment("llama-3-8b", "h100-sxm", num_chips=3, pp=3), 2048, 64)
    chunks = [(300, 300), (50, 1050)]
    dealt = [([], 3, 3000.0), ([(300, 300)], 2, 2000.0), ([(50, 1050)], 2, 2000.0)]
    t = [[s.fn(*mb) for mb in dealt] for _, s in st_.parts]
    busiest = max(sum(row) for row in t)
    trip = max(sum(c * t[g][j] for g, (c, _) in enumerate(st_.parts)) for j in range(3))
    assert st_(chunks, 7, 7000) == pytest.approx(max(busiest, trip), rel=1e-12)
    got = st_.many(np.array([7, 1]), np.array([7000.0, 900.0]), np.array([0, 0, 1]), np.array([300, 50, 20]),
                   np.array([300, 1050, 20]))
    np.testing.assert_allclose(got, [st_(chunks, 7, 7000), st_([(20, 20)], 1, 900)], rtol=1e-9)
    # one sequence: one micro-batch, its trip through the three stages
    assert st_([], 1, 1000) == pytest.approx(sum(c * s.fn([], 1, 1000) for c, s in st_.parts), rel=1e-12)


def test_a_pipeline_decodes_faster_than_one_chip_with_the_same_batch():
    """llama-2-13b, 64 sequences at 1,000 tokens: each of two A100s in a pipeline reads its half of the weights
    for each of two micro-batches of 32, and the K/V of its half of the layers for 64: the bytes one chip reads
    for 32 sequences. Both stages work at once, so the step takes about one chip's step at 32 (not one chip's at
    64, as a pipeline running one batch at a time would: 55 ms against 40 here)."""
    one = step_time(deployment("llama-2-13b", "a100-sxm-80gb"), 4096, 256)
    two = step_time(deployment("llama-2-13b", "a100-sxm-80gb", num_chips=2, pp=2), 4096, 256)
    assert two([], 64, 64_000) == pytest.approx(one([], 32, 32_000), rel=0.02)
    assert two([], 64, 64_000) < 0.75 * one([], 64, 64_000)
