"""The highest request rate a deployment sustains within latency SLOs (MLPerf Server style).

MLPerf Inference's Server scenario sends Poisson queries at a target rate and the run is valid
when the 99th percentiles of its latencies meet the benchmark's bounds (Llama-2-70B: TTFT
2 s, TPOT 200 ms); the submitted figure is the highest rate that passes. ``max_rate`` does
the same on the simulator:

1. an offline run (every request at t = 0) gives the capacity C in requests per second;
2. a probe at rate r simulates the workload's ``num_prompts`` Poisson requests at r, with the
   workload's seed at every rate (common random numbers: the gaps scale as 1 / r, so probes
   differ only in rate);
3. it brackets the answer between a passing low rate (C x tolerance) and a failing high one
   (1.25 C, doubled while it passes, at most 8 times), then bisects until the bracket is within
   ``tolerance`` (relative, default 1%) of the high end.

Each probe can be reported as it finishes, one line to a ``progress`` callable (the CLI writes
them to stderr), and a probe of 100,000 requests or more reports its own progress too.

Run length matters near saturation: a queue that grows without bound shows in p99 TTFT only
once the run is long enough. MLPerf's runs last at least 10 minutes (loadgen's min_duration);
pass a ``num_prompts`` of at least rate x 600 for the like.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infercast.errors import InfercastError
from infercast.model import ModelSpec
from infercast.serving.engine import Routing
from infercast.serving.metrics import SimResult, slo_value
from infercast.serving.server import Server, server, split_options, workload_header
from infercast.serving.workload import Workload, make_workload, read_lengths, synthetic

# MLPerf Inference Llama-2-70B Server latency bounds (mlcommons/inference, language/llama2-70b README:
# TTFT p99 2 s, TPOT p99 200 ms).
MLPERF_LLAMA2_70B_SERVER_SLO_MS = {"ttft_p99": 2000.0, "tpot_p99": 200.0}
MAX_DOUBLINGS = 8


@dataclass(frozen=True)
class RateSearch:
    """The answer of a rate search and every probe behind it."""

    max_request_rate: float
    """Highest rate meeting every SLO (0 if even a light load misses one)."""
    slo_ms: dict[str, float]
    tolerance: float
    offline: SimResult
    at_max: SimResult | None
    probes: list[dict[str, Any]] = field(default_factory=list)
    """Each probe: rate, meets, and the SLO metrics it saw (ms)."""
    reason: str | None = None
    """Why the answer is not a bracketed maximum, where it is not."""

    def to_dict(self) -> dict[str, Any]:
        at = self.at_max.to_dict() if self.at_max is not None else None
        return {"max_request_rate": self.max_request_rate,
                "max_output_throughput": at["output_throughput"] if at else 0.0,
                "slo_ms": self.slo_ms, "tolerance": self.tolerance, "reason": self.reason,
                "offline": {k: self.offline.metrics[k] for k in ("request_throughput", "output_throughput",
                                                                 "total_token_throughput", "ttft_ms", "tpot_ms")},
                "probes": self.probes, "at_max": at}


def max_rate(srv: Server, workload: Workload, slo_ms: dict[str, float], *, routing: Routing = "round-robin",
             tolerance: float = 0.01, lengths: str | None = None,
             progress: Callable[[str], None] | None = None) -> RateSearch:
    """Bisect the highest Poisson (or gamma, with the workload's burstiness) rate meeting ``slo_ms``
    (keys such as 'ttft_p99', 'tpot_p99'; milliseconds) on ``srv``; ``progress`` receives a line per probe."""
    if not 0 < tolerance < 1:
        raise InfercastError(f"tolerance must be between 0 and 1, got {tolerance!r}")
    pairs = read_lengths(lengths, srv.max_model_len) if lengths is not None else None
    probes: list[dict[str, Any]] = []

    def probe(rate: float) -> tuple[bool, SimResult]:
        w = workload.model_copy(update={"request_rate": rate})
        result = srv.run(synthetic(w, srv.max_model_len, pairs), routing=routing, prefix_len=w.prefix_len,
                         max_concurrency=w.max_concurrency, workload=workload_header(w, lengths=lengths),
                         progress=progress, beams=w.beam_width, n=w.n)
        seen = {key: slo_value(result.metrics, key) for key in slo_ms}
        ok = all(v is not None and v <= slo_ms[key] for key, v in seen.items())
        if not math.isinf(rate):
            probes.append({"request_rate": rate, "meets": ok, **{f"{k}_ms": v for k, v in seen.items()}})
        if progress is not None:
            figures = ", ".join(f"{k} {v:,.1f} ms" if v is not None else f"{k} -" for k, v in seen.items())
            if math.isinf(rate):
                capacity = result.metrics["request_throughput"] or 0.0
                progress(f"offline run: capacity {capacity:.4g} requests/s; {figures}")
            else:
                progress(f"probe {len(probes)}: {rate:.4g} requests/s: {figures}: {'meets' if ok else 'misses'}")
        return ok, result

    _, offline = probe(math.inf)
    capacity = offline.metrics["request_throughput"]
    lo = capacity * tolerance
    ok, at_lo = probe(lo)
    if not ok:
        return RateSearch(0.0, dict(slo_ms), tolerance, offline, None, probes,
                          f"the SLOs are missed even at {lo:.3g} requests/s ({tolerance:g} of capacity)")
    hi = 1.25 * capacity
    for _ in range(MAX_DOUBLINGS):
        ok, result = probe(hi)
        if not ok:
            break
        lo, at_lo, hi = hi, result, 2 * hi
    else:
        return RateSearch(lo, dict(slo_ms), tolerance, offline, at_lo, probes,
                          f"the SLOs hold at every rate tried, up to {lo:.3g} requests/s: the run of "
                          f"{workload.num_prompts} requests is too short for a queue to build")
    while hi - lo > tolerance * hi:
        mid = (lo + hi) / 2
        ok, result = probe(mid)
        if ok:
            lo, at_lo = mid, result
        else:
            hi = mid
    return RateSearch(lo, dict(slo_ms), tolerance, offline, at_lo, probes)


def find_max_rate(model: str | ModelSpec, hardware=None, *, slo_ms: dict[str, float] | None = None,
                  tolerance: float = 0.01, routing: Routing = "round-robin", lengths: str | None = None,
                  progress: Callable[[str], None] | None = None, **options: Any) -> RateSearch:
    """``max_rate`` on a server built from simulate()-style options (workload, engine and deployment
    fields, but no request_rate: the search sets it); ``slo_ms`` defaults to MLPerf's Llama-2-70B Server
    bounds."""
    w_fields, e_fields, dep_options = split_options(dict(options))
    if "request_rate" in w_fields:
        raise InfercastError("--find-max-rate searches the request rate, so --request-rate would be ignored; "
                             "drop --request-rate (or --offline)")
    w = make_workload(lengths=lengths, **w_fields)
    srv = server(model, hardware, engine=e_fields, **dep_options)
    return max_rate(srv, w, slo_ms or MLPERF_LLAMA2_70B_SERVER_SLO_MS, routing=routing,
                    tolerance=tolerance, lengths=lengths, progress=progress)
