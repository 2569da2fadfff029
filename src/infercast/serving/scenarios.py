"""Predict measured rows of the serving scenarios (offline, server, concurrency) with the simulator.

``predict_serving_row(row)`` takes a row of the measured-data CSV (DESIGN.md's columns, as
strings) and returns (prediction or None, skipped_reason or None, note or None), the shape
``infercast.validate`` uses:

* offline (MLPerf Offline, trtllm-bench throughput): every request at t = 0; ``num_requests=N``
  in the notes gives the count (else OFFLINE_REQUESTS; at most MAX_ROW_REQUESTS, the note says
  when it was capped); metrics output_tokens_per_s,
  samples_per_s (requests per second) or total_tokens_per_s.
* server (MLPerf Server): the highest Poisson rate meeting the row's ``constraint`` (SLOs in
  the ``--slo`` syntax, e.g. ``ttft_p99:2000,tpot_p99:200``), and its output_tokens_per_s or
  samples_per_s.
* concurrency: a closed-loop client keeping ``batch`` requests in flight; throughput, or the
  mean of ttft_s, tpot_s, itl_s, e2e_latency_s.

Lengths are the row's isl and osl, the same for every request (the rows in the bundled data
come from fixed-length synthetic sets); a row without them is skipped, since a dataset's
lengths cannot be guessed. The engine is vLLM's defaults except where the framework is
known to batch differently (ENGINE_BY_FRAMEWORK). The whole system is num_chips chips:
dp = num_chips / (tp x pp) replicas.
"""

from __future__ import annotations

import math
import re
from typing import Any

from infercast.errors import InfercastError
from infercast.serving import simulate
from infercast.serving.metrics import parse_slo
from infercast.serving.search import find_max_rate

OFFLINE_REQUESTS = 2000
"""Requests of an offline run when the row does not say (enough for the batch to fill and drain)."""
MAX_ROW_REQUESTS = 1_000_000
"""Most requests simulated for a row: a steady offline throughput is reached long before (a million take
about 5 s); a row's notes may state a count that would take minutes and gigabytes."""
CONCURRENCY_ROUNDS = 10
"""A concurrency run sends this many requests per slot of concurrency (at least 200)."""
SERVER_REQUESTS = 5000
"""Requests per probe of a server row's rate search."""

# trtllm-bench throughput runs with in-flight batching and CUDA graphs padded up to batch 8192
# (measured-public.csv notes of the TensorRT-LLM v1.0 rows); its token budget is taken as 8192.
# Its default capacity scheduler (GUARANTEED_NO_EVICT) admits a request only when its whole
# prompt-plus-output KV fits, where the simulated engine admits greedily and preempts (vLLM): at
# 1000/1000 tokens on 2 x H100 that recomputes 80% more prefill tokens than the prompts hold.
ENGINE_BY_FRAMEWORK = {"TensorRT-LLM": {"max_num_seqs": 8192, "max_num_batched_tokens": 8192}}

THROUGHPUT = {"output_tokens_per_s": "output_throughput", "samples_per_s": "request_throughput",
              "total_tokens_per_s": "total_token_throughput"}
LATENCY = {"ttft_s": "ttft_ms", "tpot_s": "tpot_ms", "itl_s": "itl_ms", "e2e_latency_s": "e2el_ms"}


def _int(row: dict[str, str], key: str) -> int | None:
    value = (row.get(key) or "").strip()
    return int(float(value)) if value else None


def _deployment(row: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    """simulate() options for the row's system, or a reason it cannot be simulated."""
    chips, tp, pp = _int(row, "num_chips") or 1, _int(row, "tp") or 1, _int(row, "pp") or 1
    if chips % (tp * pp):
        return {}, f"num_chips {chips} is not a multiple of tp x pp = {tp * pp}"
    engine = next((cfg for name, cfg in ENGINE_BY_FRAMEWORK.items() if name in (row.get("framework") or "")), {})
    dtypes = {k: row.get(c) or None for k, c in (("weight_dtype", "weight_dtype"), ("act_dtype", "act_dtype"),
                                                 ("kv_cache_dtype", "kv_dtype"))}
    return dict(model=row["model"], hardware=row["hardware"], num_chips=chips, tp=tp, pp=pp, dp=chips // (tp * pp),
                **{k: v for k, v in dtypes.items() if v}, **engine), None


def predict_serving_row(row: dict[str, str], **estimate_kw: Any) -> tuple[float | None, str | None, str | None]:
    """(prediction, skipped_reason, note) for a measured row of scenario offline, server (or interactive,
    MLPerf's server with tighter constraints) or concurrency; ``estimate_kw`` (efficiency, comm,
    calibration...) reach the deployment's estimate."""
    scenario, metric = row["scenario"], row["metric"]
    if scenario not in ("offline", "server", "interactive", "concurrency"):
        return None, f"scenario {scenario} is not a serving scenario", None
    isl, osl = _int(row, "isl"), _int(row, "osl")
    if isl is None or osl is None:
        return None, "serving rows need isl and osl (the dataset's lengths are not stated)", None
    options, reason = _deployment(row)
    if reason:
        return None, reason, None
    options.update(isl=isl, osl=osl, **estimate_kw)
    try:
        if scenario == "offline":
            if metric not in THROUGHPUT:
                return None, f"metric {metric} is not predicted for offline rows", None
            match = re.search(r"num_requests=(\d+)", row.get("notes") or "")
            stated = int(match.group(1)) if match else None
            n = min(stated, MAX_ROW_REQUESTS) if stated is not None else OFFLINE_REQUESTS
            r = simulate(num_prompts=n, request_rate=math.inf, **options)
            note = f"{n} requests at t = 0" + (" (count not stated)" if stated is None else
                                               f" (capped from the {stated} stated)" if stated > n else "")
            return r[THROUGHPUT[metric]], None, note
        if scenario in ("server", "interactive"):
            if metric not in ("output_tokens_per_s", "samples_per_s"):
                return None, f"metric {metric} is not predicted for {scenario} rows", None
            if not (row.get("constraint") or "").strip():
                return None, f"{scenario} rows need a latency constraint, e.g. ttft_p99:2000,tpot_p99:200", None
            search = find_max_rate(slo_ms=parse_slo(row["constraint"], "constraint", percentiles=True),
                                   num_prompts=SERVER_REQUESTS, **options)
            if search.at_max is None:
                return 0.0, None, search.reason
            value = search.at_max[THROUGHPUT[metric]]
            return value, None, f"at {search.max_request_rate:.4g} requests/s, Poisson, {SERVER_REQUESTS} requests"
        batch = _int(row, "batch")
        if batch is None:
            return None, "concurrency rows need the concurrency in batch", None
        if metric not in THROUGHPUT and metric not in LATENCY:
            return None, f"metric {metric} is not predicted for concurrency rows", None
        n = max(200, CONCURRENCY_ROUNDS * batch)
        r = simulate(num_prompts=n, max_concurrency=batch, **options)
        value = r[THROUGHPUT[metric]] if metric in THROUGHPUT else r[LATENCY[metric]]["mean"] / 1e3
        return value, None, f"{n} requests, {batch} in flight" + ("" if metric in THROUGHPUT else ", mean")
    except InfercastError as exc:
        return None, str(exc), None
