"""The fast engine against a slow, obviously correct reference simulator, and the laws a queue obeys.

The reference keeps a Python object per request and walks the running list every step the way
vLLM's schedulers do (V1: vllm/v1/core/sched/scheduler.py ``schedule``; V0:
vllm/core/scheduler.py ``_schedule_prefills`` / ``_schedule_running``), allocating and freeing
blocks request by request. The fast engine keeps only totals. They must take the same
decisions and produce the same times on any workload, preemption and prefix caching included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infercast import estimate
from infercast.errors import InfercastError
from infercast.serving import server, simulate
from infercast.serving.engine import EngineConfig, run
from infercast.serving.steptime import deployment, step_time
from infercast.serving.workload import Requests

# -- the reference ------------------------------------------------------------------------


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Req:
    id: int
    arrival: float
    isl: int
    osl: int
    generated: int = 0
    computed: int = 0
    blocks: int = 0  # the length of its block table, shared prefix blocks included
    window: int = 0  # blocks held for its windowed layers while it runs
    target: int = 0  # tokens to prefill since its (re)admission
    prefix: bool = False  # its table starts with the shared cached prefix
    sent: float = -1.0
    token_times: list[float] = field(default_factory=list)
    finish: float = -1.0

    @property
    def tokens(self) -> int:
        return self.isl + self.generated

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target


class RefReplica:
    def __init__(self, cfg: EngineConfig, num_blocks: int, budget: int, step_fn, prefix_len: int,
                 window_blocks: int = 0) -> None:
        self.cfg, self.bs, self.budget, self.step_fn = cfg, cfg.block_size, budget, step_fn
        self.wb, self.reserve = window_blocks, cfg.admission == "reserve"
        self.num_blocks = self.free = num_blocks
        self.waiting: list[Req] = []
        self.running: list[Req] = []
        self.K = prefix_len // self.bs if cfg.enable_prefix_caching else 0
        self.cached, self.ref = False, 0
        self.sched: list[tuple[Req, int]] = []
        self.busy, self.in_step, self.next_t = False, False, math.inf
        self.preemptions = 0
        self.records: list[tuple] = []

    def outstanding(self) -> int:
        return len(self.waiting) + len(self.running)

    # blocks, one request at a time
    def take(self, n: int) -> None:
        if self.K and self.cached and self.ref == 0 and n > self.free - self.K:
            self.cached = False  # the cached prefix goes last
        self.free -= n

    def release(self, req: Req) -> None:
        if req.prefix:
            self.free += req.blocks - self.K
            self.ref -= 1
            if self.ref == 0:
                self.free += self.K  # cached but unreferenced: free for allocation
            req.prefix = False
        else:
            self.free += req.blocks
        self.free += req.window
        req.blocks = req.window = 0

    def maybe_publish(self, req: Req, new: int) -> None:
        if self.K and not self.cached and not req.prefix and req.computed + new >= self.K * self.bs:
            self.cached, req.prefix = True, True
            self.ref += 1

    def preempt(self, req: Req) -> None:
        self.release(req)
        req.computed = 0
        self.waiting.insert(0, req)
        self.preemptions += 1

    def schedule(self, now: float) -> float:
        self.sched = []
        preempted = (self.schedule_v1 if self.cfg.chunked_prefill else self.schedule_v0)()
        chunks = [(n, r.computed + n) for r, n in self.sched if r.prefilling]
        decodes = [r for r, n in self.sched if not r.prefilling]
        dt = self.step_fn(chunks, len(decodes), sum(r.computed + 1 for r in decodes))
        self.records.append((now, now + dt, sum(n for n, _ in chunks), len(decodes), len(self.running),
                             len(self.waiting), self.num_blocks - self.free, preempted))
        return dt

    def schedule_v1(self) -> int:
        budget, preempted = self.budget, 0
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            new = min(req.tokens - req.computed, budget)
            while True:
                need = max(ceil_div(req.computed + new, self.bs) - req.blocks, 0)  # reserved: none
                if need <= self.free:
                    self.take(need)
                    req.blocks += need
                    scheduled = True
                    break
                victim = self.running.pop()
                self.preempt(victim)
                preempted += 1
                if victim is req:
                    scheduled = False
                    break
            if not scheduled:
                break
            if req.prefilling:
                self.maybe_publish(req, new)
            self.sched.append((req, new))
            budget -= new
            i += 1
        if preempted:
            return preempted
        while self.waiting and budget > 0 and len(self.running) < self.cfg.max_num_seqs:
            req = self.waiting[0]
            hit = self.K * self.bs if self.K and self.cached else 0
            new = min(req.tokens - hit, budget)
            touch = self.K if hit and self.ref == 0 else 0
            table = ceil_div(req.isl + req.osl - 1 if self.reserve else hit + new, self.bs)
            need = table - hit // self.bs + self.wb
            if need + touch > self.free:
                break
            self.waiting.pop(0)
            self.running.append(req)
            req.computed, req.target = hit, req.tokens
            req.blocks, req.window = table, self.wb
            if hit:
                self.free -= need + touch
                self.ref += 1
                req.prefix = True
            else:
                self.take(need)
                self.maybe_publish(req, new)
            self.sched.append((req, new))
            budget -= new
        return 0

    def schedule_v0(self) -> int:
        tokens = 0
        watermark = int(self.cfg.watermark * self.num_blocks)
        while self.waiting:
            req = self.waiting[0]
            table = ceil_div(req.isl + req.osl - 1 if self.reserve else req.tokens, self.bs)
            need = table + self.wb
            if (tokens + req.tokens > self.budget or len(self.running) >= self.cfg.max_num_seqs
                    or self.free - need < watermark):
                break
            self.waiting.pop(0)
            self.running.append(req)
            self.free -= need
            req.blocks, req.window, req.computed, req.target = table, self.wb, 0, req.tokens
            self.sched.append((req, req.tokens))
            tokens += req.tokens
        if self.sched:
            return 0
        preempted, i = 0, 0
        while i < len(self.running):
            req = self.running[i]
            scheduled = True
            while max(ceil_div(req.computed + 1, self.bs) - req.blocks, 0) > self.free:
                victim = self.running.pop()
                self.preempt(victim)
                preempted += 1
                if victim is req:
                    scheduled = False
                    break
            if not scheduled:
                break
            need = max(ceil_div(req.computed + 1, self.bs) - req.blocks, 0)
            self.free -= need
            req.blocks += need
            self.sched.append((req, 1))
            i += 1
        return preempted

    def complete(self, end: float) -> list[Req]:
        finished = []
        for req, new in self.sched:
            req.computed += new
            if req.computed == req.tokens:  # everything fed: the step samples a token
                req.generated += 1
                req.token_times.append(end)
                if req.generated == req.osl:
                    self.release(req)
                    self.running.remove(req)
                    req.finish = end
                    finished.append(req)
        return finished


def reference(requests: Requests, step_fn, cfg: EngineConfig, *, num_blocks: int, budget: int, replicas: int = 1,
              routing: str = "round-robin", prefix_len: int = 0, max_concurrency: int | None = None,
              window_blocks: int = 0):
    reqs = [Req(i, float(a), int(x), int(y)) for i, (a, x, y) in
            enumerate(zip(requests.arrival_s, requests.isl, requests.osl))]
    reps = [RefReplica(cfg, num_blocks, budget, step_fn, prefix_len, window_blocks) for _ in range(replicas)]
    pending = list(reqs)
    limit = max_concurrency or len(reqs)
    in_flight = 0
    rr = 0

    def dispatch(t: float) -> None:
        nonlocal in_flight, rr
        req = pending.pop(0)
        if routing == "round-robin":
            rep = reps[rr % replicas]
        else:
            rep = min(reps, key=lambda r: r.outstanding())  # first of the least loaded
        rr += 1
        req.sent = t
        rep.waiting.append(req)
        in_flight += 1
        if not rep.busy:
            rep.busy, rep.in_step, rep.next_t = True, False, t

    while True:
        t_arrival = pending[0].arrival if pending and in_flight < limit else math.inf
        busy = [(r.next_t, k) for k, r in enumerate(reps) if r.busy]
        t_event, k = min(busy) if busy else (math.inf, -1)
        if t_arrival <= t_event and t_arrival < math.inf:
            dispatch(t_arrival)
            continue
        if t_event == math.inf:
            break
        rep = reps[k]
        if rep.in_step:
            finished = rep.complete(t_event)
            in_flight -= len(finished)
            while finished and pending and in_flight < limit and pending[0].arrival <= t_event:
                dispatch(t_event)
        if rep.running or rep.waiting:
            rep.next_t, rep.in_step = t_event + rep.schedule(t_event), True
        else:
            rep.busy, rep.next_t = False, math.inf
    return reqs, reps


# -- agreement ----------------------------------------------------------------------------

DEP = deployment("llama-2-7b", "a100-sxm-80gb")
REAL = step_time(DEP, 1024, 16)


def toy_step(chunks, decodes, context):
    """A cheap step time with every term the real one has (tokens, sequences, context, chunk pairs)."""
    return 0.004 + 1e-4 * decodes + 2e-7 * context + sum(3e-5 * n + 1e-8 * n * kv + 2e-4 for n, kv in chunks)


def compare(requests: Requests, step_fn, cfg: EngineConfig, **kw) -> tuple:
    fast = run(requests, step_fn, cfg, **kw)
    reqs, reps = reference(requests, step_fn, cfg, **kw)
    np.testing.assert_allclose(fast.sent_s, [r.sent for r in reqs], rtol=1e-12)
    np.testing.assert_allclose(fast.first_token_s, [r.token_times[0] for r in reqs], rtol=1e-12)
    np.testing.assert_allclose(fast.finish_s, [r.finish for r in reqs], rtol=1e-12)
    ref_steps = np.concatenate([np.column_stack([np.full(len(r.records), k), np.asarray(r.records, float)])
                                for k, r in enumerate(reps) if r.records])
    fast_steps = fast.steps[np.lexsort((fast.steps[:, 1], fast.steps[:, 0]))]
    np.testing.assert_allclose(fast_steps, ref_steps[np.lexsort((ref_steps[:, 1], ref_steps[:, 0]))], rtol=1e-12)
    assert fast.preemptions == sum(r.preemptions for r in reps)
    ref_itl = np.sort(np.concatenate([np.diff(r.token_times) for r in reqs]))
    fast_itl = np.sort(np.concatenate([np.repeat(fast.itl_gap_s, fast.itl_gap_count), fast.itl_other_s]))
    np.testing.assert_allclose(fast_itl, ref_itl, rtol=1e-9, atol=1e-12)
    return fast, reqs


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 24))
    chunked = draw(st.booleans())
    caching = chunked and draw(st.booleans())
    prefix = draw(st.integers(0, 60)) if caching else 0
    isl = np.array(draw(st.lists(st.integers(prefix + 1, prefix + 90), min_size=n, max_size=n)))
    osl = np.array(draw(st.lists(st.integers(1, 30), min_size=n, max_size=n)))
    if draw(st.booleans()):
        arrival = np.zeros(n)
    else:  # a coarse grid makes simultaneous arrivals common
        arrival = np.sort(np.array(draw(st.lists(st.integers(0, 40), min_size=n, max_size=n)))) * 0.01
    bs = draw(st.sampled_from([1, 2, 4, 16]))
    longest = int((isl + osl - 1).max())
    seqs = draw(st.integers(1, 8))
    budget = draw(st.integers(max(seqs, 1 if chunked else longest), (200 if chunked else longest + 200)))
    watermark = 0.0 if chunked else draw(st.sampled_from([0.0, 0.01, 0.2]))
    window = draw(st.sampled_from([0, 0, 1, 3]))  # blocks a request holds for windowed layers (gpt-oss)
    reserve = draw(st.booleans())  # TensorRT-LLM's admission: whole requests' blocks, no preemption
    least = ceil_div(longest, bs) + window
    blocks = draw(st.integers(least, 2 * least + 2))  # tight: preemption is common
    if watermark and blocks - int(watermark * blocks) < least:
        blocks = ceil_div(least, 1 - watermark) + 1
    cfg = EngineConfig(max_num_seqs=seqs, max_num_batched_tokens=budget, chunked_prefill=chunked,
                       enable_prefix_caching=caching, block_size=bs, watermark=watermark,
                       admission="reserve" if reserve else "optimistic")
    kw = dict(num_blocks=blocks, budget=budget, window_blocks=window, replicas=draw(st.integers(1, 3)),
              routing=draw(st.sampled_from(["round-robin", "least-outstanding"])), prefix_len=prefix,
              max_concurrency=draw(st.one_of(st.none(), st.integers(1, 6))))
    return Requests(arrival, isl, osl), cfg, kw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from([toy_step, REAL]))
def test_fast_engine_agrees_with_reference(scenario, step_fn):
    requests, cfg, kw = scenario
    compare(requests, step_fn, cfg, **kw)


@pytest.mark.parametrize("chunked", [True, False])
def test_agreement_under_heavy_preemption(chunked):
    # 30 requests of 100 + 60 tokens in 40 blocks of 16 (4 whole requests' worth): admission fills the
    # cache with prompts, the decodes then cross block boundaries with no block free, and the latest
    # admitted are preempted (9 times chunked, 8 prefill-first)
    requests = Requests(np.zeros(30), np.full(30, 100), np.full(30, 60))
    cfg = EngineConfig(max_num_seqs=16, max_num_batched_tokens=256 if chunked else 512, chunked_prefill=chunked,
                       watermark=0.0)
    fast, _ = compare(requests, REAL, cfg, num_blocks=40, budget=cfg.max_num_batched_tokens)
    assert fast.preemptions >= 8
    assert (fast.finish_s > 0).all()


def test_agreement_with_prefix_caching_and_eviction():
    # a shared 64-token prefix (4 blocks): hits skip it; with few blocks it is evicted and published again
    rng = np.random.default_rng(3)
    requests = Requests(np.sort(rng.uniform(0, 0.5, 40)), rng.integers(70, 120, 40), rng.integers(1, 40, 40))
    cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=300, enable_prefix_caching=True)
    fast, _ = compare(requests, REAL, cfg, num_blocks=30, budget=300, prefix_len=64)
    uncached = run(requests, REAL, cfg.model_copy(update={"enable_prefix_caching": False}), num_blocks=30,
                   budget=300, prefix_len=64)
    assert fast.steps[:, 3].sum() < uncached.steps[:, 3].sum()  # fewer prompt tokens computed


def test_prefix_hits_skip_the_shared_prompt():
    # 10 requests of 512 tokens sharing 256 (16 blocks), one at a time: the first computes 512, the
    # other nine 256 each, as vLLM's hits do.
    srv = server("llama-2-7b", "a100-sxm-80gb", engine=EngineConfig(enable_prefix_caching=True))
    requests = Requests(np.arange(10) * 10.0, np.full(10, 512), np.full(10, 2))
    trace = run(requests, srv.step_time, srv.config, num_blocks=srv.num_blocks, budget=srv.budget, prefix_len=256)
    assert trace.steps[:, 3].sum() == 512 + 9 * 256
    ttft = trace.first_token_s - trace.sent_s
    assert ttft[0] == pytest.approx(srv.step_time([(512, 512)], 0, 0))
    assert ttft[1:] == pytest.approx(srv.step_time([(256, 512)], 0, 0))


# -- queueing laws ------------------------------------------------------------------------


def test_littles_law_on_a_long_run():
    # Little's law: mean requests in the system L = throughput x mean latency W. L is measured from
    # the engine's own queue counts at every step (weighted by step time, zero when idle), W from
    # the per-request times: they agree when the bookkeeping loses or double-counts nothing.
    r = simulate("llama-2-7b", "a100-sxm-80gb", request_rate=8, num_prompts=20000, isl=512, osl=128,
                 osl_dist="uniform", length_spread=0.5, seed=1)
    steps = r.trace.steps
    dt = steps[:, 2] - steps[:, 1]
    in_system = steps[:, 5] + steps[:, 6]
    L = float(in_system @ dt) / r["duration_s"]
    W = r["e2el_ms"]["mean"] / 1e3
    assert r["completed"] == 20000 and L > 5
    assert L == pytest.approx(r["request_throughput"] * W, rel=0.02)


def test_low_load_ttft_is_one_prefill():
    # requests 20 s apart on average, each served in well under a second: almost every request finds
    # the engine idle, so its TTFT is one prefill step, estimate()'s ttft for that prompt.
    r = simulate("llama-2-7b", "a100-sxm-80gb", request_rate=0.05, num_prompts=200, isl=512, osl=32)
    prefill = estimate("llama-2-7b", "a100-sxm-80gb", isl=512, osl=1).ttft_s
    assert r["ttft_ms"]["p50"] / 1e3 == pytest.approx(prefill, rel=1e-9)
    assert r["ttft_ms"]["mean"] / 1e3 == pytest.approx(prefill, rel=0.01)
    tpot = estimate("llama-2-7b", "a100-sxm-80gb", isl=512, osl=32).tpot_s
    assert r["tpot_ms"]["p50"] / 1e3 == pytest.approx(tpot, rel=1e-9)  # alone, every step is estimate()'s


def test_offline_throughput_rises_with_the_batch_limit():
    # LLaMA-2-7B keeps K/V for all 32 heads (0.5 MB a token): 108,624 tokens of cache hold about 170
    # requests of 640 tokens, and at that batch reading the cache takes longer than the weights, so
    # the larger batch limit roughly doubles throughput rather than multiplying it by 16.
    kw = dict(num_prompts=600, isl=512, osl=128)
    small = simulate("llama-2-7b", "a100-sxm-80gb", max_num_seqs=16, **kw)
    large = simulate("llama-2-7b", "a100-sxm-80gb", max_num_seqs=256, **kw)
    assert large["output_throughput"] > 1.5 * small["output_throughput"]
    assert small["queue"]["mean_running"] == pytest.approx(16, rel=0.05)
    assert large["kv_cache"]["max_usage"] > 0.9 > small["kv_cache"]["max_usage"]


def test_chunked_prefill_smooths_inter_token_latency():
    # Sarathi-Serve's point: prefill-first stalls every decode while a prompt runs; chunked prefill
    # bounds the stall, so p99 ITL falls.
    kw = dict(request_rate=6, num_prompts=800, isl=2048, osl=128, seed=2)
    chunked = simulate("llama-2-7b", "a100-sxm-80gb", max_num_batched_tokens=512, **kw)
    first = simulate("llama-2-7b", "a100-sxm-80gb", chunked_prefill=False, **kw)
    assert chunked["itl_ms"]["p99"] < first["itl_ms"]["p99"]


def test_replicas_share_the_load():
    kw = dict(request_rate=20, num_prompts=3000, isl=512, osl=128, seed=4)
    one = simulate("llama-2-7b", "a100-sxm-80gb", **kw)
    four = simulate("llama-2-7b", "a100-sxm-80gb", num_chips=4, dp=4, **kw)
    lor = simulate("llama-2-7b", "a100-sxm-80gb", num_chips=4, dp=4, routing="least-outstanding", **kw)
    assert four["ttft_ms"]["p99"] < one["ttft_ms"]["p99"]
    assert lor["e2el_ms"]["p99"] <= four["e2el_ms"]["p99"] * 1.05
    assert set(four.trace.steps[:, 0]) == {0, 1, 2, 3}


def test_closed_loop_keeps_the_concurrency():
    r = simulate("llama-2-7b", "a100-sxm-80gb", max_concurrency=8, num_prompts=400, isl=256, osl=64)
    running = r.trace.steps[:, 5] + r.trace.steps[:, 6]
    assert running.max() == 8
    assert np.median(running) == 8


def test_runs_that_cannot_finish_are_refused():
    requests = Requests(np.zeros(2), np.array([100, 100]), np.array([100, 100]))
    with pytest.raises(InfercastError, match="KV-cache blocks"):
        run(requests, toy_step, EngineConfig(), num_blocks=5, budget=8192)
    with pytest.raises(InfercastError, match="max-num-seqs"):
        run(requests, toy_step, EngineConfig(max_num_seqs=300), num_blocks=50, budget=256)
    with pytest.raises(InfercastError, match="whole prompt"):
        run(requests, toy_step, EngineConfig(max_num_seqs=4, chunked_prefill=False), num_blocks=50, budget=150)
    with pytest.raises(InfercastError, match="prefix-len"):
        run(requests, toy_step, EngineConfig(enable_prefix_caching=True), num_blocks=50, budget=256, prefix_len=100)


@pytest.mark.parametrize("chunked", [True, False])
def test_reserving_admission_never_preempts(chunked):
    """The workload that preempts at least 8 times above, under TensorRT-LLM's GUARANTEED_NO_EVICT: a request of
    100 + 60 tokens holds ceil(159 / 16) = 10 blocks from admission, so 40 blocks run 4 at once, and none is
    ever preempted; with 2 window blocks a request (gpt-oss-like windowed layers), 40 // 12 = 3."""
    requests = Requests(np.zeros(30), np.full(30, 100), np.full(30, 60))
    for window, most in ((0, 4), (2, 3)):
        cfg = EngineConfig(max_num_seqs=16, max_num_batched_tokens=256 if chunked else 512, chunked_prefill=chunked,
                           watermark=0.0, admission="reserve")
        fast, _ = compare(requests, REAL, cfg, num_blocks=40, budget=cfg.max_num_batched_tokens, window_blocks=window)
        assert fast.preemptions == 0 and (fast.finish_s > 0).all()
        assert fast.steps[:, 5].max() == most  # running requests (STEP_COLUMNS: ..., running, waiting, ...)
