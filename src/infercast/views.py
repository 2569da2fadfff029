"""From a command's flag values to its document and figures: what ``infercast plot`` draws and the web page shows.

Each ``*_document`` function takes the values a command's flags parse to (click's keyword arguments, or a web
request's fields, which have the same names) and builds the document exactly as the command does for
``--output json``; each ``*_view`` adds the figures (``infercast.plots``) and what they need beside the
document (the chip's peak rates, the simulator's steps, measured points).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

from infercast.errors import InfercastError

INFERENCEX_COLUMNS = ("id", "source", "model", "hardware", "num_chips", "tp", "weight_dtype", "framework", "batch",
                      "isl", "osl", "metric", "value")
"""The columns a frontier's measured point needs, of the InferenceX runs (ids ``ix-``) in the package's copy of
measured-public.csv (catalog/measured/public.csv): the page and ``infercast plot pareto`` draw them wherever
infercast is installed."""


# --- infercast estimate and compare ------------------------------------------------------------------


def estimate_document(flags: dict[str, Any]) -> dict[str, Any]:
    """``infercast estimate --output json``: ``flags`` are its flags' values (the deployment, workload, image
    and --auto flags)."""
    from infercast.documents import estimate_document as build
    from infercast.options import resolve_kwargs

    kw = dict(flags)
    return build(**resolve_kwargs(kw), **kw)


def peak_rates(flags: dict[str, Any]) -> tuple[float, float]:
    """The chip's dense peak FLOP/s for the deployment's math format and its memory bandwidth (bytes/s): the
    roofs of the roofline."""
    from infercast.options import AUTO, NETWORK_WORKLOAD, WORKLOAD, resolve_kwargs
    from infercast.scenario import resolve

    workload = {o.name for o in (*WORKLOAD, *NETWORK_WORKLOAD, AUTO)}  # the deployment is what is left
    kw = {k: v for k, v in flags.items() if k not in workload}
    sc = resolve(**resolve_kwargs(kw), **kw)
    return float(sc.rates.peak(sc.precision.gemm_math, sc.chip.id)), float(sc.rates.mem_bw_bytes_per_s)


def estimate_view(flags: dict[str, Any]) -> dict[str, Any]:
    """The estimate's document and its figures: memory, roofline, breakdown, energy."""
    from infercast import plots

    doc = estimate_document(flags)
    peak_flops, peak_bw = peak_rates(flags)
    figures = {"memory": plots.memory_figure(doc), "roofline": plots.roofline_figure(doc, peak_flops, peak_bw),
               "breakdown": plots.breakdown_figure(doc), "energy": plots.energy_figure(doc)}
    return {"document": doc, "figures": {k: v for k, v in figures.items() if v is not None}}


def compare_document(flags: dict[str, Any]) -> list[dict[str, Any]]:
    """``infercast compare --output json``: ``flags`` are its flags' values (systems, num_chips and the
    deployment and workload flags)."""
    from infercast.cli import COMPARE
    from infercast.documents import compare_document as build
    from infercast.options import resolve_kwargs

    kw = dict(flags)
    systems, num_chips = kw.pop("systems"), kw.pop("num_chips", None)
    return build(systems.split(","), num_chips=num_chips, **resolve_kwargs(kw, COMPARE), **kw)


def compare_view(flags: dict[str, Any]) -> dict[str, Any]:
    from infercast.plots import compare_figure

    rows = compare_document(flags)
    model = flags["model"] if isinstance(flags["model"], str) else flags["model"].name
    return {"document": rows, "figures": {"compare": compare_figure(rows, model)}}


# --- infercast simulate ------------------------------------------------------------------------------

SIMULATE_RUN = ("goodput", "find_max_rate", "slo", "tolerance")
"""simulate's flags that choose what is run rather than what is simulated."""


def simulation(flags: dict[str, Any], given: set[str]):
    """``infercast simulate``'s result (a ``SimResult``, or a ``RateSearch`` with --find-max-rate) from its
    flags' values; ``given``: the flags the user set (the others keep the library's defaults)."""
    from infercast.serving.cli import run_simulation

    kw = dict(flags)
    run = {k: kw.pop(k) for k in SIMULATE_RUN if k in kw}
    run["goodput"] = tuple(run.get("goodput") or ())
    return run_simulation(kw, given, **run)


def request_latencies(result) -> tuple[list[float], list[float]]:
    """Each completed request's TTFT and TPOT in seconds (TPOT of requests of two tokens or more), as
    ``serving.metrics.summarize`` defines them."""
    import numpy as np

    t = result.trace
    done = t.finish_s >= 0
    ttft = t.first_token_s[done] - t.sent_s[done]
    e2el, osl = t.finish_s[done] - t.sent_s[done], t.osl[done]
    multi = osl > 1
    tpot = (e2el[multi] - ttft[multi]) / (osl[multi] - 1)
    return np.asarray(ttft).tolist(), np.asarray(tpot).tolist()


def simulate_view(flags: dict[str, Any], given: set[str]) -> dict[str, Any]:
    """The run's document and its figures: the timeline (queue, running batch, KV cache) and the latency
    distributions; with --find-max-rate, those of the run at the highest rate meeting the SLOs."""
    from infercast import plots

    result = simulation(flags, given)
    doc = result.to_dict()
    run = getattr(result, "at_max", result)
    figures = {}
    if run is not None:
        run_doc = run.to_dict()
        figures["timeline"] = plots.timeline_figure(run_doc, plots.timeline_series(run.timeline()))
        figures["latency"] = plots.latency_figure(run_doc, *request_latencies(run))
    return {"document": doc, "figures": figures}


# --- infercast search and pareto ---------------------------------------------------------------------


def search_document(flags: dict[str, Any]) -> dict[str, Any]:
    """``infercast search --output json`` from its flags' values (``prices``: --usd-per-chip-hour's items)."""
    from infercast.documents import search_document as build

    kw = {k: v for k, v in flags.items() if k not in ("show_pareto", "prices")}
    return build(**kw, usd_per_chip_hour=tuple(flags.get("prices") or ()) or None)


def pareto_document(flags: dict[str, Any]) -> dict[str, Any]:
    """``infercast pareto --output json`` from its flags' values."""
    from infercast.documents import pareto_document as build

    kw = {k: v for k, v in flags.items() if k not in ("out", "force", "prices")}
    if kw.get("tp"):
        from infercast.sweep import parse_values

        kw["tp"] = list(parse_values("--tp", kw["tp"], int))
    else:
        kw["tp"] = None
    return build(**kw, usd_per_chip_hour=tuple(flags.get("prices") or ()) or None)


def pareto_view(flags: dict[str, Any]) -> dict[str, Any]:
    """The frontiers and their figure, with the InferenceX measurements of the same model, lengths and chips."""
    from infercast.plots import pareto_figure

    doc = pareto_document(flags)
    chips = {p["hardware"] for f in doc["frontiers"] for p in f["points"]}
    measured = [p for p in measured_points(doc["model"], doc["workload"]["isl"], doc["workload"]["osl"])
                if p["hardware"] in chips]
    return {"document": doc, "measured": measured, "figures": {"pareto": pareto_figure(doc, measured)}}


def measured_rows() -> list[dict[str, str]]:
    """InferenceX's output tokens/s and TPOT rows of the bundled public data (``INFERENCEX_COLUMNS``)."""
    from importlib import resources

    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text(encoding="utf-8")
    return [{k: r[k] for k in INFERENCEX_COLUMNS} for r in csv.DictReader(io.StringIO(text, newline=""))
            if r["id"].startswith("ix-") and r["metric"] in ("output_tokens_per_s", "tpot_s")]


def measured_points(model: str, isl: int, osl: int) -> list[dict[str, Any]]:
    """InferenceX's measured runs of ``model`` at ``isl``/``osl`` as frontier points: output tokens/s per chip
    (the system's over its chips) and per user (1 / median TPOT, InferenceX's interactivity)."""
    runs: dict[str, dict[str, Any]] = {}
    for r in measured_rows():
        if not r["id"].startswith("ix-") or r["model"] != model or int(r["isl"]) != isl or int(r["osl"]) != osl:
            continue
        run = runs.setdefault(r["id"].rsplit("-", 1)[0], {
            "id": r["id"].rsplit("-", 1)[0], "hardware": r["hardware"], "num_chips": int(r["num_chips"]),
            "tp": int(r["tp"] or 1), "weight_dtype": r["weight_dtype"], "framework": r["framework"],
            "concurrency": int(r["batch"])})
        run[r["metric"]] = float(r["value"])
    points = []
    for run in runs.values():
        tput, tpot = run.pop("output_tokens_per_s", None), run.pop("tpot_s", None)
        if tput and tpot:
            points.append({**run, "output_tokens_per_s_per_chip": tput / run["num_chips"],
                           "output_tokens_per_s_per_user": 1 / tpot})
    return sorted(points, key=lambda p: (p["hardware"], p["output_tokens_per_s_per_user"]))


# --- infercast validate ------------------------------------------------------------------------------


def validation_view(flags: dict[str, Any]) -> dict[str, Any]:
    """Every row of a serving measurements CSV predicted (``infercast validate``'s rows) and the figure of
    predicted against measured."""
    from infercast.options import EFFICIENCY, resolve_kwargs
    from infercast.plots import validation_figure
    from infercast.validate import BUNDLED, summarize, validate
    from infercast.validate_training import is_training_data

    data = flags.get("data") or BUNDLED
    if is_training_data(data):
        raise InfercastError(f"--data {data}: plot validation draws a serving CSV (measured-public.csv's format)")
    overrides = resolve_kwargs({"efficiency": flags.get("efficiency")}, EFFICIENCY)["efficiency"]
    results = validate(data, overrides, flags.get("calibration"))
    rows = [r.to_dict() for r in results]
    summary = summarize(results)
    median = summary["all"]["median_ape"]
    title = f"{'the public data' if data == BUNDLED else data}" + (
        f", median |error| {100 * median:.0f}%" if median is not None and math.isfinite(median) else "")
    return {"document": {"rows": rows, "summary": summary}, "figures": {"validation": validation_figure(rows, title)}}

