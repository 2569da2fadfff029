"""The engine: a vLLM-style scheduler with continuous batching, and the event loop over replicas.

Scheduling follows vLLM's V1 scheduler (vllm/v1/core/sched/scheduler.py, v0.8-v0.10) with
chunked prefill, or the V0 prefill-first scheduler (vllm/core/scheduler.py,
``_schedule_default``) without it:

* chunked (V1): each step first schedules the running requests in admission order (a decode
  takes one token of the budget, the partially prefilled request the next chunk of its
  prompt), then, unless that preempted anyone, admits waiting requests first come first
  served while the token budget (max-num-batched-tokens), max-num-seqs and free KV blocks
  allow; the last admitted takes what budget is left as a chunk. Prefills and decodes share
  each step.
* prefill-first (V0): a step admits whole prompts while the budget, max-num-seqs and the free
  blocks above a 1% watermark allow, and runs them alone; only when nothing can be admitted
  does it run a decode step of every running request.

The KV cache is paged: a request holds ceil(tokens / block_size) blocks (with ``admission="reserve"``,
TensorRT-LLM's GUARANTEED_NO_EVICT, those of its last step from admission on: it is admitted only when they
fit, and never preempted), and where a sliding window caps some of the layers (gpt-oss), ``window_blocks``
more while it runs, for those layers' last window of tokens (vLLM's hybrid KV-cache manager;
``steptime.window_blocks``). When a running
request needs a block and none is free, the most recently admitted running request is
preempted by recompute: its blocks are freed and it goes to the front of the waiting queue,
to prefill its prompt and the tokens it generated again (a request that finds no other to
preempt is preempted itself and waits). With prefix caching, the prompt prefix every request shares (``prefix_len``) is held
once: the first prefill chunk to cover its full blocks publishes them, later admissions skip
them (V1 computes at least the last prompt token), and unreferenced cached blocks count as
free and are evicted only when an allocation needs them.

The loop does O(1) work per step, never per running request. It rests on what V1 (and V0
in its decode steps) guarantees: every running decode advances exactly one token per decode
step, and at most one request, the last admitted, is partially prefilled. So a replica keeps
the number of decodes D and the sum of their contexts, counts decodes by the phase at which
they cross a block boundary (a decode needs a block when its computed tokens are a multiple
of block_size, every block_size decode steps), and files each decode under the step it will
finish in. Per-request and per-step times come out as arrays for ``metrics``.

Each replica's loop is a coroutine (``_replica``) holding its state in local variables. Without
a concurrency limit and with static routing (one replica, or round-robin) replicas never meet,
and each runs straight through its own arrivals; otherwise ``_route`` merges them over a heap of
(time, replica) events, so that each arrival sees every replica as it is at that instant. A run
of PROGRESS_MIN_REQUESTS or more reports its progress (every 10% of requests finished) to a
``progress`` callable, from outside the step loop: a replica running alone is resumed at
simulated-time horizons sized to take about PROGRESS_EVERY_S of wall time each.

Simplifications (beyond those of the step-time model): the scheduler's own CPU time is not
modelled (it is part of the framework time, ``step_overhead_s``); requests are never
aborted; prefix caching shares one prefix, all its blocks at once, and does not keep other
blocks for a preempted request's recompute; replicas are independent engines (with experts
spread over replicas, ep > tp, a real system's replicas would step together).
"""

from __future__ import annotations

import heapq
import math
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from infercast.errors import InfercastError
from infercast.serving.prefix import PrefixCache
from infercast.serving.workload import Requests, from_flags

StepFn = Callable[[list[tuple[int, int]], int, int], float]
"""(prefill chunks as (new tokens, context after), decodes, sum of decode contexts) -> step seconds."""
Routing = Literal["round-robin", "least-outstanding"]
Admission = Literal["optimistic", "reserve"]

# vLLM v0.8 V1 defaults (vllm/engine/arg_utils.py, EngineArgs._set_default_args_v1): the OpenAI
# server batches 8192 tokens on GPUs with >= 70 GiB (2048 on smaller ones, 16384 for the offline
# LLM class); max_num_seqs 256.
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_CHUNKED_TOKENS = 8192
# V0 without chunked prefill: max(max_model_len, 2048) (vllm/config.py, SchedulerConfig).
MIN_PREFILL_FIRST_TOKENS = 2048


class EngineConfig(BaseModel):
    """How a vLLM engine batches, with vLLM's flag names and defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_num_seqs: int = Field(default=DEFAULT_MAX_NUM_SEQS, gt=0)
    """Most requests running at once (--max-num-seqs)."""
    max_num_batched_tokens: int | None = Field(default=None, gt=0)
    """Token budget of one step (--max-num-batched-tokens) [8192 with chunked prefill, else max(max-model-len, 2048)]."""
    chunked_prefill: bool = True
    """Split prompts over steps and batch them with decodes (V1); False: prefill-first (V0)."""
    admission: Admission = "optimistic"
    """Admit a request on its prompt's blocks, preempting by recompute when the cache runs out (vLLM); or
    ``reserve`` the blocks of its whole prompt and output at admission, never preempting (TensorRT-LLM's
    GUARANTEED_NO_EVICT capacity scheduler)."""
    enable_prefix_caching: bool = False
    """Share the KV blocks of the common prompt prefix (--enable-prefix-caching)."""
    block_size: int = Field(default=16, gt=0)
    """Tokens per KV-cache block (--block-size, vLLM's default 16)."""
    max_model_len: int | None = Field(default=None, gt=0)
    """Longest request, prompt plus output (--max-model-len) [the model's context]."""
    num_gpu_blocks_override: int | None = Field(default=None, gt=0)
    """KV-cache blocks of a replica (--num-gpu-blocks-override) [from the memory model]."""
    watermark: float = Field(default=0.01, ge=0, lt=1)
    """Prefill-first: share of the blocks kept free when admitting (V0 BlockSpaceManager watermark)."""

    def budget(self, max_model_len: int) -> int:
        if self.max_num_batched_tokens is not None:
            return self.max_num_batched_tokens
        return DEFAULT_CHUNKED_TOKENS if self.chunked_prefill else max(max_model_len, MIN_PREFILL_FIRST_TOKENS)


def make_engine_config(**fields) -> EngineConfig:
    return from_flags(EngineConfig, **fields)


@dataclass(frozen=True)
class EngineTrace:
    """What a run did: per-request times, per-step records and the inter-token gaps."""

    sent_s: np.ndarray
    """When each request reached the engine (its arrival, or later under max_concurrency)."""
    first_token_s: np.ndarray
    finish_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    steps: np.ndarray
    """One row per step: STEP_COLUMNS."""
    itl_gap_s: np.ndarray
    """Gaps shared by many decodes: the time between two decode steps ..."""
    itl_gap_count: np.ndarray
    """... and how many decodes had their previous token at the earlier step."""
    itl_other_s: np.ndarray
    """Single gaps: a decode's first (after its prefill) and the token after a recompute."""
    num_blocks: int
    budget: int
    preemptions: int


STEP_COLUMNS = ("replica", "start_s", "end_s", "prefill_tokens", "decode_seqs", "running", "waiting",
                "kv_blocks_used", "preempted")
RECORD_FIELDS = ("start_s", "end_s", "prefill_tokens", "decode_seqs", "running", "waiting", "kv_blocks_used",
                 "new_decodes")
"""What a replica appends per step; ``new_decodes`` are decodes in their first decode step."""
_RECORD = struct.Struct(f"{len(RECORD_FIELDS)}d")  # packed into a bytearray: 64 bytes a step, no objects
PROGRESS_MIN_REQUESTS = 100_000
"""Runs of this many requests or more report progress (about half a second of simulation and up)."""
PROGRESS_EVERY_S = 0.2
"""Wall seconds between the points where a replica running alone returns to check its progress."""

def _preempt(need: int, free: int, last_decode_end: float, ds: int, partial: int, running: dict[int, None],
             waiting: deque, book: dict[str, list], cross: list[int],
             prefix: PrefixCache | None, wb: int = 0) -> tuple[int, int, int, int, int]:
    """Preempt the latest admitted running requests (recompute) until ``need`` blocks are free.

    Returns (need, free, decodes removed, their context, preemptions); ``partial`` is preempted first
    if running (it is the latest admitted). Each frees its ``wb`` window blocks too.
    """
    comp, c0, s0, gen, isl, fin = book["comp"], book["c0"], book["s0"], book["gen"], book["isl"], book["fin"]
    bs = len(cross)
    phase = ds % bs
    removed = context = count = 0
    while need > free:
        v, _ = running.popitem()
        if v == partial:
            tokens = comp[v]
        else:
            tokens = c0[v] + ds - s0[v]  # computed so far
            key = (s0[v] - c0[v]) % bs
            cross[key] -= 1
            if key == phase:
                need -= 1
            removed += 1
            context += tokens + 1
            gen[v] = tokens - isl[v] + 1
            fin[v] = -1
            if s0[v] < ds:  # it has decoded: its latest token came with the latest decode step
                book["last_token"][v] = last_decode_end
        free += (prefix.release(v, tokens) if prefix else -(-tokens // bs)) + wb
        comp[v] = 0
        waiting.appendleft(v)
        count += 1
    return need, free, removed, context, count


def _replica(k: int, book: dict[str, list], step_time: StepFn, config: EngineConfig, *, num_blocks: int,
             window_blocks: int = 0, budget: int, prefix: PrefixCache | None, waiting: deque,
             outstanding: list[int], records: bytearray, preemptions: list[tuple[int, int]], pause_on_finish: bool,
             feed: tuple[list[float], list[int]] | None = None):
    """One engine as a coroutine. ``send((t, horizon))``: at time t, apply the outputs of the step
    ending then (if any) and run steps for as long as each ends before ``horizon`` (when something
    outside may happen: an arrival, another replica's event); returns (time to resume it, or None
    when idle; requests finished). With ``pause_on_finish`` it also returns after a step that finished
    requests, before scheduling the next, so a closed-loop client can send new ones first. With a
    ``feed`` (arrival times, requests) it takes its own arrivals, each before the first step that
    starts at or after it, and runs to the end in one call.

    State lives in locals: the loop body runs once per step. Each step appends RECORD_FIELDS to
    ``records``; a step that preempts also appends (its index, the preemptions) to ``preemptions``."""
    record = _RECORD.pack
    steps = 0
    feed_t, feed_r = feed or ((), ())
    fed, nfeed = 0, len(feed_t)
    isl, osl, comp, gen = book["isl"], book["osl"], book["comp"], book["gen"]
    c0, s0, fin, last_token = book["c0"], book["s0"], book["fin"], book["last_token"]
    first_token_s, finish_s, itl_other = book["first_token_s"], book["finish_s"], book["itl_other"]
    bs, max_seqs, chunked = config.block_size, config.max_num_seqs, config.chunked_prefill
    reserve = config.admission == "reserve"  # blocks for the whole request at admission: none after it
    watermark = int(config.watermark * num_blocks)
    wb = window_blocks  # held by every running request for its windowed layers (hybrid KV cache)
    free = num_blocks
    running: dict[int, None] = {}  # admission order; popitem() takes the latest
    partial = -1  # the partially prefilled request, always the last running one
    D = sum_L = 0  # running decodes, and their contexts at the next decode step (each with its new token)
    ds = 0  # decode steps run: the clock of every decode's progress
    cross = [0] * bs  # decodes by the phase ds % bs at which they need a new block
    finishing: dict[int, list[int]] = {}  # decode step -> requests whose last token it produces
    fresh: list[int] = []  # new decodes: their first gap runs from their own prefill
    last_decode_end = 0.0
    sched: list[tuple[int, int]] = []  # (request, prompt tokens) of the step in flight
    step_decodes = finished = 0
    now, horizon = yield
    while True:
        # --- the outputs of the step ending now (none after a pause or when idle)
        ended = 0
        if step_decodes:
            last_decode_end = now
            done = finishing.pop(ds, None)
            if done:
                for r in done:
                    if fin[r] == ds:
                        tokens = c0[r] + ds - s0[r] + 1  # in its cache after this step
                        cross[(s0[r] - c0[r]) % bs] -= 1
                        D -= 1
                        sum_L -= tokens
                        free += (prefix.release(r, tokens) if prefix else -(-tokens // bs)) + wb
                        del running[r]
                        fin[r] = -1
                        finish_s[r] = now
                        ended += 1
            sum_L += D  # every surviving decode's context grows by its token
            ds += 1
        for r, n in sched:
            c = comp[r] + n
            comp[r] = c
            if c < isl[r] + gen[r]:
                continue  # a chunk of a longer prompt
            g = gen[r] + 1
            gen[r] = g
            if first_token_s[r] < 0:
                first_token_s[r] = now
            else:
                itl_other.append(now - last_token[r])  # the gap a recompute opened
            if r == partial:
                partial = -1
            if g >= osl[r]:
                free += (prefix.release(r, c) if prefix else -(-c // bs)) + wb
                del running[r]
                finish_s[r] = now
                ended += 1
                continue
            c0[r], s0[r] = c, ds
            f = ds + osl[r] - g - 1  # the decode step that produces its last token
            fin[r] = f
            if f in finishing:
                finishing[f].append(r)
            else:
                finishing[f] = [r]
            cross[(ds - c) % bs] += 1
            D += 1
            sum_L += c + 1
            last_token[r] = now
            fresh.append(r)
        sched, step_decodes = (), 0
        if ended:
            outstanding[k] -= ended
            finished += ended
            if pause_on_finish:
                now, horizon = yield now, finished
                finished = 0

        # --- the step starting now
        while fed < nfeed and feed_t[fed] <= now:
            waiting.append(feed_r[fed])
            fed += 1
        if not running and not waiting:
            if fed < nfeed:  # idle until the next arrival
                now = feed_t[fed]
                continue
            now, horizon = yield None, finished
            finished = 0
            continue
        cost: list[tuple[int, int]] = []
        sched = []
        preempted = 0
        if chunked:  # V1: running requests first (decodes, then the partial prefill), then admissions
            need = 0 if reserve else cross[ds % bs]
            if need > free:
                need, free, removed, context, preempted = _preempt(need, free, last_decode_end, ds, partial,
                                                                   running, waiting, book, cross, prefix, wb)
                D -= removed
                sum_L -= context
                if partial not in running:
                    partial = -1
            free = prefix.take(need, free) if prefix else free - need
            left = budget - D
            if partial >= 0:
                have = comp[partial]
                n = isl[partial] + gen[partial] - have
                if n > left:
                    n = left
                blocks = 0 if reserve else -(-(have + n) // bs) + (have // -bs)
                if blocks > free:  # it must preempt itself: it is the last running request
                    del running[partial]
                    free += (prefix.release(partial, have) if prefix else -(-have // bs)) + wb
                    comp[partial] = 0
                    waiting.appendleft(partial)
                    partial = -1
                    preempted += 1
                else:
                    if prefix:
                        free = prefix.take(blocks, free)
                        prefix.publish(partial, have + n)
                    else:
                        free -= blocks
                    cost.append((n, have + n))
                    sched.append((partial, n))
                    left -= n
            if not preempted:
                while waiting and left > 0 and len(running) < max_seqs:
                    w = waiting[0]
                    total = isl[w] + gen[w]
                    hit, touch = prefix.hit() if prefix else (0, 0)
                    n = total - hit
                    if n > left:
                        n = left
                    held = isl[w] + osl[w] - 1 if reserve else hit + n  # tokens it holds blocks for
                    blocks = -(-held // bs) - hit // bs + wb
                    if blocks + touch > free:
                        break
                    waiting.popleft()
                    running[w] = None
                    if hit:
                        free -= blocks + touch
                        prefix.share(w)
                    elif prefix:
                        free = prefix.take(blocks, free)
                        prefix.publish(w, n)
                    else:
                        free -= blocks
                    comp[w] = hit
                    cost.append((n, hit + n))
                    sched.append((w, n))
                    left -= n
                    if n < total - hit:
                        partial = w
            step_decodes = D
            prompt_tokens = budget - D - left
        else:  # V0: whole prompts alone while they fit, else a decode step of every running request
            prompt_tokens, seqs = 0, len(running)
            while waiting:
                w = waiting[0]
                total = isl[w] + gen[w]
                blocks = -(-(isl[w] + osl[w] - 1 if reserve else total) // bs) + wb
                if prompt_tokens + total > budget or seqs >= max_seqs or free - blocks < watermark:
                    break
                waiting.popleft()
                running[w] = None
                free -= blocks
                comp[w] = 0
                cost.append((total, total))
                sched.append((w, total))
                prompt_tokens += total
                seqs += 1
            step_decodes = 0
            if not sched:
                need = 0 if reserve else cross[ds % bs]
                if need > free:
                    need, free, removed, context, preempted = _preempt(need, free, last_decode_end, ds, -1,
                                                                       running, waiting, book, cross, None, wb)
                    D -= removed
                    sum_L -= context
                free -= need
                step_decodes = D
        if not sched and not step_decodes:
            raise RuntimeError("engine step with no work: a scheduling invariant is broken")
        dt = step_time(cost, step_decodes, sum_L if step_decodes else 0)
        n_fresh = 0
        if fresh and step_decodes:  # the first decode of a new decode: its gap runs from its own prefill
            for r in fresh:
                if fin[r] >= 0 and s0[r] == ds:
                    itl_other.append(now + dt - last_token[r])
                    n_fresh += 1
            fresh = []
        if preempted:
            preemptions.append((steps, preempted))
        steps += 1
        end = now + dt
        records += record(now, end, prompt_tokens, step_decodes, len(running), len(waiting), num_blocks - free, n_fresh)
        if end < horizon:  # nothing can happen before it ends: run on
            now = end
            continue
        now, horizon = yield end, finished
        finished = 0


def _check(requests: Requests, config: EngineConfig, num_blocks: int, budget: int, prefix_len: int,
           window_blocks: int = 0) -> None:
    """Reject runs vLLM would reject, or that could never finish (one line naming the flag)."""
    if budget < config.max_num_seqs:
        raise InfercastError(f"--max-num-batched-tokens {budget} is below --max-num-seqs {config.max_num_seqs}; "
                             f"vLLM requires at least one token per sequence")
    longest = int(np.max(requests.isl + requests.osl - 1))  # tokens in the cache at a request's last step
    usable = num_blocks - (0 if config.chunked_prefill else int(config.watermark * num_blocks))
    if -(-longest // config.block_size) + window_blocks > usable:
        raise InfercastError(f"a request of {longest + 1} tokens needs more than the {num_blocks} KV-cache blocks of "
                             f"{config.block_size} tokens a replica has; shorten --isl/--osl or add memory")
    if not config.chunked_prefill and longest > budget:
        raise InfercastError(f"--max-num-batched-tokens {budget}: without chunked prefill a step must hold a whole "
                             f"prompt ({longest} tokens with recomputed output); raise it")
    if config.enable_prefix_caching and not config.chunked_prefill:
        raise InfercastError("--enable-prefix-caching is simulated with chunked prefill only; drop --no-chunked-prefill")
    if prefix_len and prefix_len >= int(np.min(requests.isl)):
        # checked with prefix caching off too, where the prefix changes nothing: a prefix longer than a prompt
        # describes a workload that cannot exist, and a later run with caching on would be refused
        raise InfercastError(f"--prefix-len {prefix_len} must be shorter than every prompt, which starts with it "
                             f"(the shortest has {int(np.min(requests.isl))} tokens); lower it or lengthen --isl")


def _reporter(n: int, progress: Callable[[str], None] | None) -> Callable[[int], None] | None:
    """``tick(finished)``: one line to ``progress`` at every 10% of the n requests finished; None for runs
    below PROGRESS_MIN_REQUESTS."""
    if progress is None or n < PROGRESS_MIN_REQUESTS:
        return None
    start = time.perf_counter()
    done, mark = 0, n // 10

    def tick(finished: int) -> None:
        nonlocal done, mark
        done += finished
        if done >= mark:
            progress(f"simulated {done:,} of {n:,} requests ({100 * done // n}%) in "
                     f"{time.perf_counter() - start:.1f} s")
            mark = (done * 10 // n + 1) * n // 10
    return tick


def _run_alone(engine, tick: Callable[[int], None] | None) -> None:
    """Run a replica that meets no other to its end; with ``tick``, come back every PROGRESS_EVERY_S or so
    to report the requests it finished (resuming at a step's end changes nothing it computes)."""
    if tick is None:
        engine.send((0.0, math.inf))
        return
    t: float | None = 0.0
    span = 1e-3  # simulated seconds per resumption, scaled towards PROGRESS_EVERY_S of wall time
    while t is not None:
        wall = time.perf_counter()
        t, finished = engine.send((t, t + span))
        tick(finished)
        span *= min(4.0, max(0.25, PROGRESS_EVERY_S / max(time.perf_counter() - wall, 1e-6)))


def _route(arrival: list[float], engines: list, waiting: list[deque], outstanding: list[int], routing: Routing,
           limit: int, tick: Callable[[int], None] | None = None) -> list[float]:
    """The event loop that routes each arrival as it comes; returns when each request was sent.

    Events are a heap of (time, replica): when a replica next needs the loop (its step ends at an
    arrival or later, it paused after finishing requests, or it wakes from idle; one entry per
    replica, so ties go to the lower replica), merged with the sorted arrivals. An arrival at the
    same instant as an event goes first, so a step starting then sees it; a replica runs the steps
    in between on its own.
    """
    n, replicas = len(arrival), len(engines)
    busy = [False] * replicas
    sent = [0.0] * n
    heap: list[tuple[float, int]] = []
    i = in_flight = 0
    clock = 0.0
    inf = math.inf
    while True:
        next_arrival = arrival[i] if i < n and in_flight < limit else inf
        if heap and heap[0][0] < next_arrival:
            clock, k = heap[0]
            horizon = next_arrival
            if limit < n and len(heap) > 1:  # a finish elsewhere may send this replica a request
                horizon = min(horizon, heap[1][0], heap[2][0] if len(heap) > 2 else inf)
            resume, done = engines[k].send((clock, horizon))
            if done:
                in_flight -= done
                if tick is not None:
                    tick(done)
                if limit < n:
                    clock = resume  # it paused when they finished: held requests are sent from then
            if resume is None:
                heapq.heappop(heap)
                busy[k] = False
            else:
                heapq.heapreplace(heap, (resume, k))
        elif next_arrival < inf:
            t = next_arrival if next_arrival > clock else clock  # a held request is sent when a slot frees
            if routing == "round-robin":
                k = i % replicas
            else:
                k = min(range(replicas), key=outstanding.__getitem__)
            sent[i] = t
            waiting[k].append(i)
            outstanding[k] += 1
            in_flight += 1
            i += 1
            if not busy[k]:
                busy[k] = True
                heapq.heappush(heap, (t, k))
        else:
            return sent


def run(requests: Requests, step_time: StepFn, config: EngineConfig, *, num_blocks: int, budget: int,
        window_blocks: int = 0, replicas: int = 1, routing: Routing = "round-robin", prefix_len: int = 0,
        max_concurrency: int | None = None, progress: Callable[[str], None] | None = None) -> EngineTrace:
    """Simulate ``replicas`` engines serving ``requests``.

    Each arrival is routed round-robin or to the replica with the fewest outstanding requests (ties
    to the lowest index) and seen by the first step that starts at or after it. With
    ``max_concurrency`` a request is held until fewer are in flight and sent when one finishes (no
    client round trip), before the replica's next step starts. Replicas interact only through
    routing and the concurrency limit; without either, each runs alone on its own arrivals. Each running
    request holds ``window_blocks`` blocks beside its tokens' (``steptime.window_blocks``). ``progress``
    receives a line at every 10% of a run of PROGRESS_MIN_REQUESTS requests or more.
    """
    if routing not in ("round-robin", "least-outstanding"):
        raise InfercastError(f"--routing must be round-robin or least-outstanding, got {routing!r}")
    _check(requests, config, num_blocks, budget, prefix_len, window_blocks)
    n = len(requests)
    book: dict[str, list] = {
        "isl": requests.isl.tolist(), "osl": requests.osl.tolist(), "comp": [0] * n, "gen": [0] * n,
        "c0": [0] * n, "s0": [0] * n, "fin": [-1] * n, "last_token": [0.0] * n,
        "first_token_s": [-1.0] * n, "finish_s": [-1.0] * n, "itl_other": [],
    }
    K = prefix_len // config.block_size if config.enable_prefix_caching else 0
    waiting = [deque() for _ in range(replicas)]
    outstanding = [0] * replicas
    records = [bytearray() for _ in range(replicas)]
    preemptions: list[list[tuple[int, int]]] = [[] for _ in range(replicas)]
    limit = max_concurrency or n
    arrival = requests.arrival_s.tolist()
    # with static routing and no concurrency limit replicas never meet: each takes its own arrivals
    static = limit == n and (replicas == 1 or routing == "round-robin")
    engines = []
    for k in range(replicas):
        engine = _replica(k, book, step_time, config, num_blocks=num_blocks, window_blocks=window_blocks,
                          budget=budget, prefix=PrefixCache(K, config.block_size, n) if K else None, waiting=waiting[k],
                          outstanding=outstanding, records=records[k], preemptions=preemptions[k],
                          pause_on_finish=limit < n,
                          feed=(arrival[k::replicas], list(range(k, n, replicas))) if static else None)
        next(engine)
        engines.append(engine)
    tick = _reporter(n, progress)
    if static:
        for engine in engines:
            _run_alone(engine, tick)
        sent = arrival
    else:
        sent = _route(arrival, engines, waiting, outstanding, routing, limit, tick)

    tables, gaps, gap_counts = [], [], []
    for k in range(replicas):
        rows = np.frombuffer(records[k], dtype=float).reshape(-1, len(RECORD_FIELDS))
        end, decodes, fresh = rows[:, 1], rows[:, 3], rows[:, 7]
        # a decode that is not new had its previous token at the end of the replica's previous decode step
        ran = decodes > 0
        ends = end[ran]
        gaps.append(ends - np.concatenate([[0.0], ends[:-1]]))
        gap_counts.append((decodes - fresh)[ran].astype(np.int64))
        preempted = np.zeros(len(rows))
        for index, count in preemptions[k]:
            preempted[index] = count
        tables.append(np.column_stack([np.full(len(rows), k, float), rows[:, :7], preempted]))
    steps = np.concatenate(tables)
    return EngineTrace(
        sent_s=np.asarray(sent), first_token_s=np.asarray(book["first_token_s"]),
        finish_s=np.asarray(book["finish_s"]), isl=requests.isl, osl=requests.osl, steps=steps,
        itl_gap_s=np.concatenate(gaps), itl_gap_count=np.concatenate(gap_counts),
        itl_other_s=np.asarray(book["itl_other"], float), num_blocks=num_blocks, budget=budget,
        preemptions=int(steps[:, -1].sum()),
    )
