"""A deployment behind a vLLM-style engine, prepared once and run on any number of workloads.

Preparing resolves the deployment, tabulates its step time and sizes its KV cache; a run
then costs only the event loop, so a rate search or a sweep of workloads pays the setup once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infercast.errors import InfercastError
from infercast.model import ModelSpec, is_network_preset
from infercast.serving.engine import EngineConfig, Routing, run
from infercast.serving.metrics import SimResult, check_finite, summarize
from infercast.scenario import Scenario
from infercast.serving.steptime import StepTime, deployment, kv_cache_blocks, step_time
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

    @property
    def replicas(self) -> int:
        return self.deployment.plan.dp

    def run(self, requests: Requests, *, routing: Routing = "round-robin", prefix_len: int = 0,
            max_concurrency: int | None = None, goodput: dict[str, float] | None = None,
            workload: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None) -> SimResult:
        """Serve ``requests``; ``workload`` describes them in the result's header, to which the requests'
        realised lengths and the number clipping touched are added; ``progress`` receives a line at every
        10% of a long run."""
        trace = run(requests, self.step_time.fn, self.config, num_blocks=self.num_blocks, budget=self.budget,
                    replicas=self.replicas, routing=routing, prefix_len=prefix_len, max_concurrency=max_concurrency,
                    progress=progress)
        header = self.header()
        header["workload"] = {**(workload or {}), "routing": routing, "clipped": requests.clipped,
                              "realised": requests.realised()}
        result = SimResult(header, summarize(trace, goodput), trace)
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
                       "chunked_prefill": c.chunked_prefill, "enable_prefix_caching": c.enable_prefix_caching,
                       "block_size": c.block_size, "max_model_len": self.max_model_len,
                       "gpu_memory_utilization": d.memory.gpu_memory_utilization, "num_gpu_blocks": self.num_blocks,
                       "kv_cache_tokens": self.num_blocks * c.block_size},
        }


def server(model: str | ModelSpec, hardware=None, *, engine: EngineConfig | None = None,
           **deployment_options: Any) -> Server:
    """Prepare ``model`` on ``hardware`` (or ``system=``) behind an engine; ``deployment_options`` as
    ``infercast.serving.steptime.deployment`` (tp, pp, dp, dtypes, memory, ...)."""
    config = engine or EngineConfig()
    if is_network_preset(model):
        raise InfercastError(f"simulate: {model} is not a decoder; the serving simulator runs language models (their "
                             f"prompts and tokens): use infercast estimate for its seconds per sample or image")
    dep = deployment(model, hardware, **deployment_options)
    context = dep.spec.max_position_embeddings
    max_model_len = config.max_model_len or context
    if max_model_len > context:
        raise InfercastError(f"--max-model-len {max_model_len} exceeds {dep.spec.name}'s context of {context} tokens")
    budget = config.budget(max_model_len)
    blocks = config.num_gpu_blocks_override or kv_cache_blocks(dep, block_size=config.block_size, max_tokens=budget,
                                                               max_seqs=config.max_num_seqs)
    return Server(dep, config, step_time(dep, budget, config.max_num_seqs), blocks, budget, max_model_len)


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
