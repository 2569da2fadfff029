"""A deployment behind a vLLM-style engine, prepared once and run on any number of workloads.

Preparing resolves the deployment, tabulates its step time and sizes its KV cache; a run
then costs only the event loop, so a rate search or a sweep of workloads pays the setup once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.model import ModelSpec, is_network_preset
from infercast.serving.engine import EngineConfig, EngineTrace, Routing, make_engine_config, run
from infercast.serving.metrics import SimResult, check_finite, summarize
from infercast.scenario import Scenario
from infercast.serving.steptime import StepTime, deployment, kv_cache_blocks, step_time, window_blocks
from infercast.serving.workload import LENGTHS_REPLACE, Requests, Workload


@dataclass(frozen=True)
class Server:
    """dp replicas of one deployment, each an engine with ``config``."""

    deployment: Scenario
    config: EngineConfig
    step_time: StepTime
    num_blocks: int
    """KV-cache blocks per replica."""
    budget: int
    """Token budget of a step (max-num-batched-tokens as resolved)."""
    max_model_len: int
    window_blocks: int = 0
    """Blocks each running request holds for its windowed layers (``steptime.window_blocks``)."""

    @property
    def replicas(self) -> int:
        return self.deployment.plan.dp

    def run(self, requests: Requests, *, routing: Routing = "round-robin", prefix_len: int = 0,
            max_concurrency: int | None = None, goodput: dict[str, float] | None = None,
            workload: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None,
            beams: int = 1, n: int = 1, tap: Callable[[list, int, int], None] | None = None) -> SimResult:
        """Serve ``requests``; ``workload`` describes them in the result's header, to which the requests'
        realised lengths and the number clipping touched are added; ``progress`` receives a line at every
        10% of a long run. ``beams`` (beam search) and ``n`` (parallel sampling): each request decodes
        beams x n sequences sharing its prompt's KV cache; n also multiplies its output tokens. ``tap`` sees
        every step the engine schedules (its chunks, decodes and their context) before it is priced."""
        step, config, blocks = self.step_time.fn, self.config, self.num_blocks
        seqs = beams * n
        if seqs > 1:  # a step of D decodes runs D x seqs sequences: tables that long
            wide = step_time(self.deployment, self.budget * seqs, self.config.max_num_seqs).fn
            step, config, blocks = _shared_prompt(wide, config, blocks, requests, seqs)
        if tap is not None:
            priced = step

            def step(chunks, decodes, context):
                tap(chunks, decodes, context)
                return priced(chunks, decodes, context)

        trace = run(requests, step, config, num_blocks=blocks, window_blocks=self.window_blocks, budget=self.budget,
                    replicas=self.replicas, routing=routing, prefix_len=prefix_len, max_concurrency=max_concurrency,
                    progress=progress)
        trace = with_request_overhead(trace, self.deployment.efficiency.request_overhead_s)
        header = self.header()
        header["workload"] = {**(workload or {}), "routing": routing, "clipped": requests.clipped,
                              "realised": requests.realised()}
        metrics = summarize(trace, goodput)
        if n > 1:
            metrics = _n_outputs(metrics, n)
        result = SimResult(header, metrics, trace)
        check_finite(result.to_dict())
        return result

    def header(self) -> dict[str, Any]:
        d, c = self.deployment, self.config
        plan, p = d.plan, d.precision
        return {
            "model": d.spec.name, "hardware": d.chip.id, "system": d.system.id,
            "parallel": {"tp": plan.tp, "pp": plan.pp, "ep": plan.ep, "dp": plan.dp, "num_chips": plan.num_chips},
            "precision": {"weight_dtype": p.weight, "act_dtype": p.act, "kv_dtype": p.kv},
            "engine": {"max_num_seqs": c.max_num_seqs, "max_num_batched_tokens": self.budget,
                       "chunked_prefill": c.chunked_prefill, "admission": c.admission,
                       "enable_prefix_caching": c.enable_prefix_caching,
                       "block_size": c.block_size, "max_model_len": self.max_model_len,
                       "gpu_memory_utilization": d.memory.gpu_memory_utilization, "num_gpu_blocks": self.num_blocks,
                       "kv_cache_tokens": self.num_blocks * c.block_size, "window_blocks": self.window_blocks},
        }


def server(model: str | ModelSpec, hardware=None, *, engine: EngineConfig | dict[str, Any] | None = None,
           **deployment_options: Any) -> Server:
    """Prepare ``model`` on ``hardware`` (or ``system=``) behind an engine; ``deployment_options`` as
    ``infercast.serving.steptime.deployment`` (tp, pp, dp, dtypes, memory, framework, ...). ``engine``: a
    whole config, or the fields set (flags), over the framework's defaults (its profile's ``engine``)."""
    if is_network_preset(model):
        raise InfercastError(f"simulate: {model} is not a decoder; the serving simulator runs language models (their "
                             f"prompts and tokens): use infercast estimate for its seconds per sample or image")
    dep = deployment(model, hardware, **deployment_options)
    if isinstance(engine, EngineConfig):
        config = engine
    else:
        defaults = engine_defaults(dep)
        if (engine or {}).get("chunked_prefill") is False:  # prefill-first: its own budget, max(model len, 2048)
            defaults.pop("max_num_batched_tokens", None)
        config = make_engine_config(**{**defaults, **(engine or {})})
    context = dep.spec.max_position_embeddings
    max_model_len = config.max_model_len or context
    if max_model_len > context:
        raise InfercastError(f"--max-model-len {max_model_len} exceeds {dep.spec.name}'s context of {context} tokens")
    budget = config.budget(max_model_len)
    blocks = config.num_gpu_blocks_override or kv_cache_blocks(dep, block_size=config.block_size, max_tokens=budget,
                                                               max_seqs=config.max_num_seqs)
    return Server(dep, config, step_time(dep, budget, config.max_num_seqs), blocks, budget, max_model_len,
                  window_blocks(dep, block_size=config.block_size))


def _shared_prompt(step, config: EngineConfig, blocks: int, requests: Requests, seqs: int):
    """A request decoding ``seqs`` sequences from one prompt (beam search, parallel sampling), as the engine's
    one: each decode step computes ``seqs`` sequences over ``seqs`` contexts, max-num-seqs counts them, and
    the cache holds the prompt once and each sequence's own tokens (its blocks scaled by the mean (isl + osl)
    / (isl + seqs x osl): the engine keeps one block list a request)."""
    def many(chunks, decodes, context):
        return step(chunks, decodes * seqs, context * seqs)

    isl, osl = float(np.mean(requests.isl)), float(np.mean(requests.osl))
    shared = max(1, math.floor(blocks * (isl + osl) / (isl + seqs * osl)))
    return many, config.model_copy(update={"max_num_seqs": max(1, config.max_num_seqs // seqs)}), shared


def _n_outputs(metrics: dict[str, Any], n: int) -> dict[str, Any]:
    """A run's metrics with ``n`` completions a request: n times the output tokens."""
    out = dict(metrics)
    out["total_output_tokens"] = metrics["total_output_tokens"] * n
    for key in ("output_throughput", "total_token_throughput"):
        if metrics[key] is not None:
            extra = metrics["output_throughput"] * (n - 1)
            out[key] = metrics[key] + extra
    return out


def with_request_overhead(trace: EngineTrace, overhead_s: float) -> EngineTrace:
    """The trace as the client sees it: each request's first token and last token ``overhead_s`` later than
    the engine produced them (the framework's API server, tokenization and streaming; the engine's steps
    and the closed loop's sends are the engine's own times)."""
    if not overhead_s:
        return trace
    done = trace.finish_s >= 0
    return replace(trace, first_token_s=np.where(trace.first_token_s >= 0, trace.first_token_s + overhead_s,
                                                 trace.first_token_s),
                   finish_s=np.where(done, trace.finish_s + overhead_s, trace.finish_s))


def engine_defaults(dep: Scenario) -> dict[str, Any]:
    """The engine fields the deployment's framework sets by default (chunked prefill, its token budget, the
    sequences it runs at once, how it admits against the KV cache)."""
    e = dep.framework.profile.engine
    chunked = e.chunked_prefill.value
    return {"max_num_seqs": int(e.max_num_seqs.value), "chunked_prefill": chunked,
            **({"max_num_batched_tokens": int(e.max_num_batched_tokens.value)} if chunked else {}),
            **({"admission": e.admission.value} if e.admission is not None else {})}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(workload fields, engine fields, deployment options) of simulate()'s keyword options."""
    workload = {k: options.pop(k) for k in list(options) if k in Workload.model_fields}
    engine = {k: options.pop(k) for k in list(options) if k in EngineConfig.model_fields}
    return workload, engine, options


def workload_header(w: Workload, *, lengths: str | None = None) -> dict[str, Any]:
    """The workload as the result's header shows it (an offline run has request_rate null); lengths drawn
    from a file replace isl, osl and their distributions."""
    out = w.model_dump(exclude=set(LENGTHS_REPLACE) if lengths is not None else None)
    out["request_rate"] = None if math.isinf(w.request_rate) else w.request_rate
    return {**out, "lengths": lengths}


def trace_header(path: str, w: Workload, requests: Requests) -> dict[str, Any]:
    """A replayed trace as the result's header shows it: its file, request count, span and mean rate ((n - 1)
    gaps over the span; null when every request arrives at once); the client settings a trace keeps."""
    span = float(requests.arrival_s[-1] - requests.arrival_s[0])
    return {"trace": path, "num_prompts": len(requests),
            "request_rate": (len(requests) - 1) / span if span > 0 else None, "arrival_span_s": span,
            "max_concurrency": w.max_concurrency, "prefix_len": w.prefix_len}
