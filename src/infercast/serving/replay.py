"""A simulated run re-priced at other efficiencies without simulating it again.

In a closed loop (a client keeping c requests in flight, sending the next the moment one finishes) or
an offline run (every request at t = 0), what the scheduler puts in each step does not depend on how
long the steps take: admissions, chunks, preemptions and completions follow from token counts and
KV blocks alone. So a run recorded once (``record``: each step's chunks, decodes and their context, and
the step at which each request was sent, got its first token and finished) can be replayed under
another calibration by pricing its steps anew (``StepTime.many``) and summing them (``replay``). The
calibration fitter does this thousands of times; ``tests/test_serving_replay.py`` holds a replay equal
to a fresh simulation.

Exact for one replica, and for several replicas run offline (they never meet); with several replicas in a
closed loop, requests sent at one replica's step end join another's, whose idle gaps the replay leaves
out (an approximation; ``Recording.exact`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from infercast.serving.metrics import PERCENTILES
from infercast.serving.server import Server
from infercast.serving.steptime import StepTime
from infercast.serving.workload import Requests


@dataclass(frozen=True)
class Recording:
    """The steps of a run and where each request's events fell among them."""

    replica: np.ndarray
    decodes: np.ndarray
    context: np.ndarray
    chunk_step: np.ndarray
    chunk_n: np.ndarray
    chunk_kv: np.ndarray
    sent: np.ndarray
    """Step whose end sent each request (-1: sent at t = 0)."""
    first: np.ndarray
    finish: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    seqs: int
    """Sequences a request decodes (beams x n)."""
    n: int
    """Completions a request returns."""
    exact: bool


def record(srv: Server, requests: Requests, *, max_concurrency: int | None = None, beams: int = 1,
           n: int = 1) -> tuple[Any, Recording]:
    """Run ``requests`` on ``srv`` and record the run (the SimResult and its Recording)."""
    steps: list[tuple[tuple, int, int]] = []
    result = srv.run(requests, max_concurrency=max_concurrency, beams=beams, n=n,
                     tap=lambda c, d, x: steps.append((tuple(c), d, x)))
    trace = result.trace
    rows = trace.steps
    end = rows[:, 2]
    overhead = srv.deployment.efficiency.request_overhead_s
    order = np.argsort(end, kind="stable")

    def at(times: np.ndarray) -> np.ndarray:
        """The step whose end each time is (the nearest end; -1 for a time before any step ends)."""
        pos = np.clip(np.searchsorted(end[order], times), 0, len(end) - 1)
        before = np.clip(pos - 1, 0, len(end) - 1)
        pick = np.where(np.abs(end[order][before] - times) < np.abs(end[order][pos] - times), before, pos)
        return np.where(times <= 0, -1, order[pick])

    flat = [(i, c_n, c_kv) for i, (chunks, _, _) in enumerate(steps) for c_n, c_kv in chunks]
    chunk = np.array(flat, dtype=np.int64).reshape(-1, 3)
    return result, Recording(
        replica=rows[:, 0].astype(np.int64), decodes=np.array([d for _, d, _ in steps], dtype=np.int64),
        context=np.array([x for _, _, x in steps], dtype=float), chunk_step=chunk[:, 0], chunk_n=chunk[:, 1],
        chunk_kv=chunk[:, 2], sent=at(trace.sent_s), first=at(trace.first_token_s - overhead),
        finish=at(trace.finish_s - overhead), isl=trace.isl, osl=trace.osl, seqs=beams * n, n=n,
        exact=srv.replicas == 1 or max_concurrency is None)


def replay(rec: Recording, st: StepTime, request_overhead_s: float = 0.0) -> dict[str, Any]:
    """The run's throughput and latency statistics with its steps priced by ``st`` (a ``StepTime`` of the same
    deployment at other efficiencies; for beams or parallel sampling, one whose tables hold the sequences)."""
    dt = st.many(rec.decodes * rec.seqs, rec.context * rec.seqs, rec.chunk_step, rec.chunk_n, rec.chunk_kv)
    end = np.empty(len(dt))
    for r in np.unique(rec.replica):
        mine = rec.replica == r
        end[mine] = np.cumsum(dt[mine])
    at = np.concatenate([end, [0.0]])  # index -1: t = 0
    sent, first, finish = at[rec.sent], at[rec.first] + request_overhead_s, at[rec.finish] + request_overhead_s
    duration = float(finish.max() - sent.min())
    ttft, e2el = first - sent, finish - sent
    multi = rec.osl > 1
    tpot = (finish[multi] - first[multi]) / (rec.osl[multi] - 1)
    out_tokens = rec.n * float(rec.osl.sum())
    return {"duration_s": duration, "request_throughput": len(sent) / duration,
            "output_throughput": out_tokens / duration,
            "total_token_throughput": (float(rec.isl.sum()) + out_tokens) / duration,
            "ttft_ms": _stats(ttft), "tpot_ms": _stats(tpot), "e2el_ms": _stats(e2el)}


def _stats(values_s: np.ndarray) -> dict[str, float | None]:
    if not len(values_s):
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    pct = np.percentile(values_s, PERCENTILES)
    return {"mean": float(values_s.mean()) * 1e3, **{f"p{q}": float(v) * 1e3 for q, v in zip(PERCENTILES, pct)}}


__all__ = ["Recording", "record", "replay"]
