"""Serving metrics with the names and definitions of vLLM's benchmark_serving.py.

* TTFT: from when a request is sent to its first token (the end of the step that completes its
  prompt); E2EL: from sent to the last token.
* TPOT = (E2EL - TTFT) / (output tokens - 1), per request with more than one output token.
* ITL: every gap between two streamed tokens of a request, pooled over requests (a recompute
  after preemption shows as one long gap).
* request / output / total-token throughput: completed requests, output tokens, prompt plus
  output tokens, over the duration (first request sent to last token).
* goodput: requests per second meeting every SLO of ``--goodput`` (ttft, tpot, e2el in ms; a
  single-token request counts TPOT 0, as vLLM does).

Percentiles are numpy's default (linear interpolation), computed exactly on the gaps the
engine stores as (value, count) pairs without expanding them.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.files import check_writable, write_new
from infercast.serving.engine import STEP_COLUMNS, EngineTrace

PERCENTILES = (50, 90, 99)
LATENCY_METRICS = ("ttft", "tpot", "itl", "e2el")
GOODPUT_METRICS = ("ttft", "tpot", "e2el")


def weighted_percentiles(values: np.ndarray, counts: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(np.repeat(values, counts), qs)`` (linear interpolation) without the repeat."""
    order = np.argsort(values)
    v, c = values[order], np.cumsum(counts[order])
    rank = (c[-1] - 1) * np.asarray(qs, float) / 100
    lo = np.floor(rank)
    at_lo = np.searchsorted(c, lo, side="right")  # element j of the expanded array lies where cumsum > j
    at_hi = np.searchsorted(c, np.minimum(lo + 1, c[-1] - 1), side="right")
    return (v[at_lo] + (rank - lo) * (v[at_hi] - v[at_lo])).tolist()


def stats_ms(values_s: np.ndarray, counts: np.ndarray | None = None) -> dict[str, float | None]:
    """{mean, p50, p90, p99} in milliseconds (None for no samples)."""
    counts = np.ones(len(values_s), np.int64) if counts is None else counts
    keep = counts > 0
    values_s, counts = values_s[keep], counts[keep]
    if not len(values_s):
        return {"mean": None, **{f"p{q}": None for q in PERCENTILES}}
    out = {"mean": float(np.sum(values_s * counts) / np.sum(counts)) * 1e3}
    for q, v in zip(PERCENTILES, weighted_percentiles(values_s, counts, PERCENTILES)):
        out[f"p{q}"] = v * 1e3
    return out


def parse_slo(text: str | tuple[str, ...], flag: str, *, percentiles: bool) -> dict[str, float]:
    """'ttft:500 tpot:50' (goodput) or 'ttft_p99:2000,tpot_p99:200' (search): metric -> milliseconds."""
    items = text if isinstance(text, tuple) else (text,)
    pairs = [p for item in items for p in item.replace(",", " ").split()]
    known = ([f"{m}_{s}" for m in LATENCY_METRICS for s in ("mean", *(f"p{q}" for q in PERCENTILES))]
             if percentiles else list(GOODPUT_METRICS))
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        try:
            ms = float(value)
        except ValueError:
            sep = ""
        if not sep or key not in known or not ms > 0:
            raise InfercastError(f"{flag} {pair!r}: expected METRIC:MILLISECONDS with METRIC one of "
                                 f"{', '.join(known)} and a positive number, e.g. {known[0]}:2000")
        out[key] = ms
    if not out:
        raise InfercastError(f"{flag}: give at least one METRIC:MILLISECONDS")
    return out


@dataclass(frozen=True)
class SimResult:
    """One simulated benchmark run; ``to_dict()`` is the JSON of ``infercast simulate``."""

    header: dict[str, Any]
    """model, hardware, system, parallel, engine, workload: what was simulated."""
    metrics: dict[str, Any]
    trace: EngineTrace = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        """A key of the JSON document: a metric, or a part of the header."""
        return self.metrics[key] if key in self.metrics else self.header[key]

    def to_dict(self) -> dict[str, Any]:
        return {**self.header, **self.metrics}

    def timeline(self) -> list[dict[str, float]]:
        """One row per engine step: STEP_COLUMNS plus the KV-cache usage."""
        rows = []
        for row in self.trace.steps:
            d = dict(zip(STEP_COLUMNS, row.tolist()))
            for key in ("replica", "prefill_tokens", "decode_seqs", "running", "waiting", "kv_blocks_used",
                        "preempted"):
                d[key] = int(d[key])
            d["kv_usage"] = d["kv_blocks_used"] / self.trace.num_blocks
            rows.append(d)
        return rows

    def write_timeline(self, path: str, *, force: bool = False) -> None:
        """Write the timeline CSV atomically (a temporary file, then a rename); never over a file unless ``force``."""
        check_writable(path, force, "--timeline-csv")  # before building the rows
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[*STEP_COLUMNS, "kv_usage"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.timeline())
        write_new(path, buf.getvalue(), force=force, flag="--timeline-csv")


def summarize(trace: EngineTrace, goodput: dict[str, float] | None = None) -> dict[str, Any]:
    """Every metric of a run (vLLM names; latencies as {mean, p50, p90, p99} in ms)."""
    done = trace.finish_s >= 0
    sent, first, finish = trace.sent_s[done], trace.first_token_s[done], trace.finish_s[done]
    isl, osl = trace.isl[done], trace.osl[done]
    duration = float(finish.max() - trace.sent_s.min()) if done.any() else 0.0
    ttft, e2el = first - sent, finish - sent
    multi = osl > 1
    tpot = np.zeros(len(osl))
    tpot[multi] = (e2el[multi] - ttft[multi]) / (osl[multi] - 1)
    itl = np.concatenate([trace.itl_gap_s, trace.itl_other_s])
    itl_counts = np.concatenate([trace.itl_gap_count, np.ones(len(trace.itl_other_s), np.int64)])
    steps = trace.steps
    dt = steps[:, 2] - steps[:, 1]
    busy = float(dt.sum())
    usage = steps[:, 7] / trace.num_blocks
    out: dict[str, Any] = {
        "num_prompts": len(trace.sent_s),
        "completed": int(done.sum()),
        "duration_s": duration,
        "total_input_tokens": int(isl.sum()),
        "total_output_tokens": int(osl.sum()),
        "request_throughput": done.sum() / duration if duration else None,
        "output_throughput": osl.sum() / duration if duration else None,
        "total_token_throughput": (isl.sum() + osl.sum()) / duration if duration else None,
        "ttft_ms": stats_ms(ttft),
        "tpot_ms": stats_ms(tpot[multi]),
        "itl_ms": stats_ms(itl, itl_counts),
        "e2el_ms": stats_ms(e2el),
        "goodput": None,
        "kv_cache": {"num_blocks": trace.num_blocks, "mean_usage": float(usage @ dt / busy) if busy else 0.0,
                     "max_usage": float(usage.max()) if len(usage) else 0.0},
        "preemptions": trace.preemptions,
        "queue": {"mean_waiting": float(steps[:, 6] @ dt / busy) if busy else 0.0,
                  "max_waiting": int(steps[:, 6].max()) if len(steps) else 0,
                  "mean_running": float(steps[:, 5] @ dt / busy) if busy else 0.0},
        "steps": len(steps),
    }
    if goodput:
        values = {"ttft": ttft, "tpot": tpot, "e2el": e2el}
        good = np.ones(len(ttft), bool)
        for metric, ms in goodput.items():
            good &= values[metric] * 1e3 <= ms
        out["goodput"] = {"slo_ms": dict(goodput), "request_goodput": good.sum() / duration if duration else None,
                          "fraction_good": float(good.mean()) if len(good) else None}
    return out


def check_finite(doc: Any, where: str = "") -> None:
    """A one-line error naming the first NaN or infinite number in a result document: JSON has neither, and
    such a figure would mean the inputs overflowed the simulator (finite inputs far beyond any deployment)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            check_finite(value, f"{where}.{key}" if where else str(key))
    elif isinstance(doc, (list, tuple)):
        for i, value in enumerate(doc):
            check_finite(value, f"{where}[{i}]")
    elif isinstance(doc, float) and not math.isfinite(doc):
        raise InfercastError(f"the simulation gave {where} = {doc}: the inputs overflow its arithmetic "
                             f"(step times or arrivals too large); check them")


def slo_value(metrics: dict[str, Any], key: str) -> float | None:
    """The value of an SLO key such as 'ttft_p99' (ms) in a summary."""
    metric, _, stat = key.partition("_")
    return metrics[f"{metric}_ms"][stat]
