"""The serving simulator: a vLLM-style engine with continuous batching under load.

    from infercast.serving import simulate
    r = simulate("llama-2-7b", "a100-sxm-80gb", request_rate=4, num_prompts=2000, isl=512, osl=128)
    r["ttft_ms"]["p99"], r["request_throughput"], r.to_dict()

Options are keyword-only and take vLLM's flag names: workload fields (``Workload``:
num_prompts, request_rate, burstiness, max_concurrency, isl, osl, isl_dist, osl_dist,
length_spread, prefix_len, seed), engine fields (``EngineConfig``: max_num_seqs,
max_num_batched_tokens, chunked_prefill, enable_prefix_caching, block_size, max_model_len,
num_gpu_blocks_override, watermark), and everything else as for ``estimate()`` (system, num_chips,
tp, pp, dp, dtype, kv_cache_dtype, quantization, memory, efficiency, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infercast.model import ModelSpec
from infercast.serving.engine import EngineConfig, EngineTrace, Routing
from infercast.serving.metrics import SimResult
from infercast.serving.search import RateSearch, find_max_rate, max_rate
from infercast.serving.server import Server, server, split_options, trace_header, workload_header
from infercast.serving.steptime import StepTime, deployment, step_time
from infercast.serving.workload import Requests, Workload, make_workload, requests_for


def simulate(model: str | ModelSpec, hardware=None, *, trace: str | None = None, lengths: str | None = None,
             routing: Routing = "round-robin", goodput: dict[str, float] | None = None,
             progress: Callable[[str], None] | None = None, **options: Any) -> SimResult:
    """Simulate a benchmark run: ``trace`` is a CSV of arrival_s, isl, osl (then the arrival and length
    options are errors: the trace gives them); ``lengths`` a CSV of isl, osl pairs to draw from;
    ``goodput`` maps ttft/tpot/e2el to SLOs in ms; ``progress`` receives a line at every 10% of a run
    of 100,000 requests or more."""
    w_fields, e_fields, dep_options = split_options(dict(options))
    w = make_workload(trace=trace, lengths=lengths, **w_fields)
    srv = server(model, hardware, engine=e_fields, **dep_options)
    requests = requests_for(w, srv.max_model_len, trace=trace, lengths=lengths)
    header = trace_header(trace, w, requests) if trace is not None else workload_header(w, lengths=lengths)
    return srv.run(requests, routing=routing, prefix_len=w.prefix_len, max_concurrency=w.max_concurrency,
                   goodput=goodput, workload=header, progress=progress, beams=w.beam_width, n=w.n)


__all__ = [
    "EngineConfig",
    "EngineTrace",
    "RateSearch",
    "Requests",
    "Server",
    "SimResult",
    "StepTime",
    "Workload",
    "deployment",
    "find_max_rate",
    "max_rate",
    "requests_for",
    "server",
    "simulate",
    "split_options",
    "step_time",
]
