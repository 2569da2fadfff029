"""Figures of the documents: where the time, the memory, the energy and the money go.

Each function takes a command's JSON document (``infercast.documents``, the simulator's, the search's) and
returns a Plotly figure as plain data (``{"data": [...], "layout": {...}}``): the web page draws it with the
bundled plotly.js, ``infercast plot`` writes it as HTML (Plotly) or PNG/SVG (``infercast.render``, matplotlib).
Nothing here imports Plotly or matplotlib. Axes are in display units (ms, GB, TFLOP/s), said in their titles.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
"""Plotly's qualitative colours (D3's category10) and some more: both renderers colour alike."""
PHASE_COLORS = {"prefill": COLORS[0], "decode": COLORS[1]}
MAX_OPS = 12
"""Operators a breakdown shows by name (the slowest); the rest are summed as 'other'."""
MAX_POINTS = 1500
"""Points a timeline series keeps: steps are averaged over that many equal spans of time."""
BINS = 40
"""Bars of a latency histogram."""


def figure(traces: list[dict[str, Any]], title: str, **layout: Any) -> dict[str, Any]:
    return {"data": traces, "layout": {"title": {"text": title}, "template": "plotly_white",
                                       "margin": {"t": 60, "l": 70, "r": 20, "b": 60}, **layout}}


def axis(title: str, log: bool = False, **more: Any) -> dict[str, Any]:
    return {"title": {"text": title}, **({"type": "log"} if log else {}), **more}


def grid(rows: int, columns: int, axes: list[tuple[str, str]], **more: Any) -> dict[str, Any]:
    """Layout keys of a rows x columns grid of subplots, one (x title, y title) per cell, row by row."""
    out: dict[str, Any] = {"grid": {"rows": rows, "columns": columns, "pattern": "independent"}, **more}
    for i, (x, y) in enumerate(axes):
        n = "" if i == 0 else str(i + 1)
        out[f"xaxis{n}"] = axis(x)
        out[f"yaxis{n}"] = axis(y)
    return out


def on(cell: int) -> dict[str, str]:
    """The axis references of a trace on subplot ``cell`` (0-based)."""
    return {} if cell == 0 else {"xaxis": f"x{cell + 1}", "yaxis": f"y{cell + 1}"}


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


# --- one deployment: infercast estimate ---------------------------------------------------------------


def memory_figure(doc: dict[str, Any]) -> dict[str, Any]:
    """Memory per chip against its capacity: weights, KV cache, activations and the runtime's own (stacked)."""
    m = doc["memory"]
    parts = (("weights", m.get("weights_bytes", 0.0)), ("KV cache", m.get("kv_cache_bytes", 0.0)),
             ("activations", m.get("activation_bytes", 0.0)),
             ("runtime", m.get("overhead_bytes", 0.0) + m.get("comm_buffer_bytes", 0.0)))
    traces = [{"type": "bar", "orientation": "h", "name": name, "x": [value / 1e9], "y": ["per chip"],
               "marker": {"color": COLORS[i]}, "hovertemplate": f"{name}: %{{x:.3f}} GB<extra></extra>"}
              for i, (name, value) in enumerate(parts)]
    shapes = []
    for name, key, dash in (("usable", "usable_per_chip_bytes", "dash"), ("capacity", "capacity_per_chip_bytes",
                                                                          "solid")):
        if m.get(key):
            x = m[key] / 1e9
            shapes.append({"type": "line", "name": f"{name} {x:.4g} GB", "showlegend": True, "xref": "x",
                           "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                           "line": {"color": "#222222", "dash": dash, "width": 2}})
    fits = "fits" if m["fits"] else "does not fit"
    return figure(traces, f"{doc['model']} on {doc['hardware']}: memory per chip ({fits}, "
                          f"{m['total_per_chip_bytes'] / 1e9:.3g} GB)",
                  barmode="stack", shapes=shapes, height=260, xaxis=axis("GB per chip"), yaxis=axis(""))


def roofline_figure(doc: dict[str, Any], peak_flops_per_s: float, peak_bytes_per_s: float) -> dict[str, Any]:
    """The chip's roofline with every operator of each phase as a point: arithmetic intensity (FLOPs per byte
    of memory) against achieved FLOP/s per chip, sized by its time; the achievable roof under it."""
    rows = [r for r in doc["breakdown"] if r["flops"] > 0 and r["bytes"] > 0 and r["time_s"] > 0]
    total = sum(r["time_s"] for r in rows) or 1.0
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    traces = []
    for i, phase in enumerate(phases):
        mine = [r for r in rows if r["phase"] == phase]
        traces.append({
            "type": "scatter", "mode": "markers", "name": phase,
            "x": [r["flops"] / r["bytes"] for r in mine], "y": [r["flops"] / r["time_s"] / 1e12 for r in mine],
            "text": [f"{r['op']} ({phase}): {r['time_s'] * 1e3:.4g} ms, {r['bound']}-bound" for r in mine],
            "hovertemplate": "%{text}<br>%{x:.3g} FLOP/byte, %{y:.4g} TFLOP/s<extra></extra>",
            "marker": {"size": [6 + 40 * math.sqrt(r["time_s"] / total) for r in mine],
                       "color": PHASE_COLORS.get(phase, COLORS[(i + 2) % len(COLORS)]), "opacity": 0.75,
                       "line": {"width": 1, "color": "#333333"}}})
    intensities = [r["flops"] / r["bytes"] for r in rows] or [1.0]
    lo, hi = min(intensities + [1.0]) / 2, max(intensities + [peak_flops_per_s / peak_bytes_per_s]) * 4
    ridge = peak_flops_per_s / peak_bytes_per_s
    xs = [lo, ridge, hi]
    roof = {"type": "scatter", "mode": "lines", "name": f"peak: {peak_flops_per_s / 1e12:,.0f} TFLOP/s, "
                                                      f"{peak_bytes_per_s / 1e12:.3g} TB/s",
            "x": xs, "y": [min(peak_flops_per_s, x * peak_bytes_per_s) / 1e12 for x in xs],
            "line": {"color": "#222222", "width": 2}, "hoverinfo": "skip"}
    eff = doc.get("efficiency") or {}
    gemm, bw = eff.get("gemm_max"), eff.get("bandwidth")
    extra = []
    if gemm and bw:
        f, b = peak_flops_per_s * gemm, peak_bytes_per_s * bw
        xa = [lo, f / b, hi]
        extra.append({"type": "scatter", "mode": "lines", "name": f"achievable: {100 * gemm:.0f}% of compute, "
                                                                    f"{100 * bw:.0f}% of bandwidth",
                      "x": xa, "y": [min(f, x * b) / 1e12 for x in xa],
                      "line": {"color": "#777777", "dash": "dash", "width": 1.5}, "hoverinfo": "skip"})
    return figure([roof, *extra, *traces], f"{doc['model']} on {doc['hardware']}: roofline per chip (points sized "
                                           f"by time)",
                  xaxis=axis("arithmetic intensity (FLOP/byte)", log=True),
                  yaxis=axis("achieved TFLOP/s per chip", log=True), height=480)


def breakdown_figure(doc: dict[str, Any]) -> dict[str, Any]:
    """Time per chip by operator and phase (stacked bars); the slowest MAX_OPS operators by name."""
    rows = doc["breakdown"]
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    by_op: dict[str, dict[str, float]] = {}
    for r in rows:
        by_op.setdefault(r["op"], dict.fromkeys(phases, 0.0))[r["phase"]] += r["time_s"]
    ranked = sorted(by_op, key=lambda op: -sum(by_op[op].values()))
    shown, rest = ranked[:MAX_OPS], ranked[MAX_OPS:]
    if rest:
        by_op["other"] = {p: sum(by_op[op][p] for op in rest) for p in phases}
        shown.append("other")
    traces = [{"type": "bar", "name": op, "x": phases, "y": [by_op[op][p] * 1e3 for p in phases],
               "marker": {"color": COLORS[i % len(COLORS)]},
               "hovertemplate": f"{op}: %{{y:.4g}} ms<extra>%{{x}}</extra>"} for i, op in enumerate(shown)]
    total = sum(r["time_s"] for r in rows)
    return figure(traces, f"{doc['model']} on {doc['hardware']}: time per chip by operator ({total * 1e3:,.4g} ms)",
                  barmode="stack", xaxis=axis("phase"), yaxis=axis("time (ms)"), height=480)


ENERGY_PARTS = (("DRAM", "dram_j"), ("SRAM", "sram_j"), ("arithmetic", "compute_j"), ("links", "interconnect_j"),
                ("static", "static_j"), ("chip overhead", "overhead_j"))


def energy_figure(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Energy per output token split by where it goes (stacked); None when the chip's power is unknown."""
    e = doc.get("energy")
    if not e or "split" not in e or not e.get("output_tokens"):
        return None
    n = e["output_tokens"]
    traces = [{"type": "bar", "orientation": "h", "name": name, "x": [e["split"][key] / n], "y": ["per token"],
               "marker": {"color": COLORS[i]}, "hovertemplate": f"{name}: %{{x:.4g}} J<extra></extra>"}
              for i, (name, key) in enumerate(ENERGY_PARTS)]
    return figure(traces, f"energy per output token: {e['joules_per_token']:.4g} J "
                          f"({e['average_power_w']:,.0f} W per chip)",
                  barmode="stack", height=240, xaxis=axis("J per output token"), yaxis=axis(""))


# --- several deployments: infercast compare ------------------------------------------------------------

COMPARE_PANELS = (("ttft_s", "TTFT (ms)", 1e3), ("tpot_s", "TPOT (ms)", 1e3),
                  ("throughput_tokens_per_s", "throughput (tokens/s)", 1.0),
                  ("usd_per_million_tokens", "USD per million tokens", 1.0), ("joules_per_token", "J per token", 1.0),
                  ("per_chip_gb", "memory per chip (GB)", 1.0))


def compare_figure(rows: list[dict[str, Any]], model: str = "") -> dict[str, Any]:
    """One model on two or more systems, side by side: a panel per figure of merit."""
    plans = {r["plan"] for r in rows}
    names = [f"{r['system']} ({r['plan']})" if len(plans) > 1 else r["system"] for r in rows]
    traces = []
    for cell, (key, _, scale) in enumerate(COMPARE_PANELS):
        traces.append({"type": "bar", "name": key, "showlegend": False, "x": names,
                       "y": [None if r[key] is None else r[key] * scale for r in rows],
                       "marker": {"color": [COLORS[i % len(COLORS)] for i in range(len(rows))]},
                       "hovertemplate": "%{x}: %{y:.4g}<extra></extra>", **on(cell)})
    layout = grid(2, 3, [("", title) for _, title, _ in COMPARE_PANELS], height=620)
    return figure(traces, f"{model or 'the model'} compared: {', '.join(r['system'] for r in rows)}", **layout)


# --- a serving run: infercast simulate -----------------------------------------------------------------


def timeline_series(rows: list[dict[str, float]], points: int = MAX_POINTS) -> dict[str, list[float]]:
    """The steps of a run (``SimResult.timeline()``; replicas summed) as time-weighted means over ``points``
    equal spans of time: waiting and running requests, KV-cache use."""
    if not rows:
        return {"time_s": [], "waiting": [], "running": [], "kv_usage": []}
    start = np.array([r["start_s"] for r in rows])
    end = np.array([r["end_s"] for r in rows])
    dt = np.maximum(end - start, 1e-12)
    t0, t1 = float(start.min()), float(end.max())
    n = max(1, min(points, len(rows)))
    edges = np.linspace(t0, t1, n + 1)
    which = np.clip(np.searchsorted(edges, (start + end) / 2, side="right") - 1, 0, n - 1)
    weight = np.bincount(which, weights=dt, minlength=n)
    replicas = max(int(r["replica"]) for r in rows) + 1
    keep = weight > 0
    out = {"time_s": ((edges[:-1] + edges[1:]) / 2)[keep].tolist()}
    for key, scale in (("waiting", replicas), ("running", replicas), ("kv_usage", 1)):
        v = np.array([r[key] for r in rows], dtype=float)
        # a span's mean over the steps in it; replicas run side by side, so their counts add up
        out[key] = (np.bincount(which, weights=v * dt, minlength=n)[keep] / weight[keep] * scale).tolist()
    return out


def timeline_figure(doc: dict[str, Any], series: dict[str, list[float]]) -> dict[str, Any]:
    """Queue length, running batch and KV-cache use over the run."""
    panels = (("waiting", "waiting requests", 1.0), ("running", "running requests", 1.0),
              ("kv_usage", "KV cache used (%)", 100.0))
    traces = [{"type": "scatter", "mode": "lines", "name": title, "x": series["time_s"],
               "y": [v * scale for v in series[key]], "line": {"color": COLORS[cell], "width": 1.5},
               **on(cell)} for cell, (key, title, scale) in enumerate(panels)]
    layout = grid(3, 1, [("time (s)", title) for _, title, _ in panels], height=640, showlegend=False)
    return figure(traces, f"{doc['model']} on {doc['system']}: {doc['completed']:,} requests in "
                          f"{doc['duration_s']:,.4g} s", **layout)


def latency_figure(doc: dict[str, Any], ttft_s: list[float], tpot_s: list[float]) -> dict[str, Any]:
    """The distributions of TTFT and TPOT over the requests (histograms), with the p50 and p99 marked."""
    traces, shapes = [], []
    for cell, (name, values, key) in enumerate((("TTFT", ttft_s, "ttft_ms"), ("TPOT", tpot_s, "tpot_ms"))):
        ms = np.asarray(values, dtype=float) * 1e3
        counts, edges = np.histogram(ms, bins=BINS) if len(ms) else (np.zeros(0), np.zeros(1))
        traces.append({"type": "bar", "name": name, "x": ((edges[:-1] + edges[1:]) / 2).tolist(),
                       "y": counts.tolist(), "width": float(edges[1] - edges[0]) if len(ms) else 1.0,
                       "marker": {"color": COLORS[cell]}, "showlegend": False,
                       "hovertemplate": f"{name} %{{x:.4g}} ms: %{{y}} requests<extra></extra>", **on(cell)})
        ref = "x" if cell == 0 else f"x{cell + 1}"
        for stat, dash in (("p50", "dash"), ("p99", "dot")):
            value = (doc.get(key) or {}).get(stat)
            if value is not None:
                shapes.append({"type": "line", "name": f"{name} {stat} {value:.4g} ms", "showlegend": True,
                               "xref": ref, "yref": f"{'y' if cell == 0 else f'y{cell + 1}'} domain",
                               "x0": value, "x1": value, "y0": 0, "y1": 1,
                               "line": {"color": "#222222", "dash": dash, "width": 1.5}})
    layout = grid(1, 2, [("TTFT (ms)", "requests"), ("TPOT (ms)", "requests")], height=380, shapes=shapes)
    return figure(traces, f"latency over {len(ttft_s):,} requests", **layout)


# --- many deployments: infercast pareto ----------------------------------------------------------------


def pareto_figure(doc: dict[str, Any], measured: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The frontiers of tokens/s per chip and of USD per million tokens against tokens/s per user, one line per
    group, with measured points (InferenceX) beside them."""
    groups = list(dict.fromkeys(f["group"] for f in doc["frontiers"]))
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}
    traces = []
    for f in doc["frontiers"]:
        cell = 0 if f["metric"] == "output_tokens_per_s_per_chip" else 1
        pts = f["points"]
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": f["group"], "legendgroup": f["group"],
            "showlegend": cell == 0, "x": [p["output_tokens_per_s_per_user"] for p in pts],
            "y": [p[f["metric"]] for p in pts],
            "text": [f"{p['hardware']} tp{p['tp']} pp{p['pp']} ep{p['ep']} {p['weight_dtype']}, concurrency "
                     f"{p['concurrency']}" for p in pts],
            "hovertemplate": "%{text}<br>%{x:.4g} tok/s/user, %{y:.4g}<extra></extra>",
            "line": {"color": color[f["group"]], "width": 2}, "marker": {"size": 5}, **on(cell)})
    for i, hw in enumerate(dict.fromkeys(p["hardware"] for p in measured or [])):
        mine = [p for p in measured or [] if p["hardware"] == hw]
        traces.append({
            "type": "scatter", "mode": "markers", "name": f"{hw} measured (InferenceX)", "legendgroup": hw,
            "x": [p["output_tokens_per_s_per_user"] for p in mine], "y": [p["output_tokens_per_s_per_chip"] for p in mine],
            "text": [f"{p['id']}: {p['framework']}, {p['weight_dtype']}, tp{p['tp']}, concurrency {p['concurrency']}"
                     for p in mine],
            "hovertemplate": "%{text}<br>%{x:.4g} tok/s/user, %{y:.4g} tok/s/chip<extra></extra>",
            "marker": {"symbol": "x", "size": 8, "color": color.get(hw, COLORS[(len(groups) + i) % len(COLORS)])}})
    layout = grid(1, 2, [("output tokens/s per user", "output tokens/s per chip"),
                         ("output tokens/s per user", "USD per million output tokens")], height=520)
    layout["xaxis"]["type"] = layout["xaxis2"]["type"] = "log"
    layout["yaxis2"]["type"] = "log"
    w = doc["workload"]
    return figure(traces, f"{doc['model']}, isl {w['isl']}, osl {w['osl']}: frontiers per {doc['group_by']}"
                  + (f" and {len(measured)} measured points" if measured else ""), **layout)


# --- the model against measurements: infercast validate ------------------------------------------------


def validation_figure(rows: list[dict[str, Any]], title: str = "predicted against measured") -> dict[str, Any]:
    """Predicted against measured (log-log), coloured by source, with the ideal roofline's predictions
    (peak rates, no overheads) beside them in grey and the line of perfect agreement."""
    done = [r for r in rows if _finite(r.get("predicted")) and _finite(r.get("measured")) and r["predicted"] > 0
            and r["measured"] > 0]
    traces = []
    ideal = [r for r in done if _finite(r.get("predicted_ideal")) and r["predicted_ideal"] > 0]
    if ideal:
        traces.append({"type": "scatter", "mode": "markers", "name": "ideal roofline", "x": [r["measured"] for r in ideal],
                       "y": [r["predicted_ideal"] for r in ideal], "text": [r["id"] for r in ideal],
                       "marker": {"color": "#bbbbbb", "size": 5, "symbol": "circle-open"},
                       "hovertemplate": "%{text}: measured %{x:.4g}, ideal %{y:.4g}<extra></extra>"})
    for i, source in enumerate(sorted({r["source"] for r in done})):
        mine = [r for r in done if r["source"] == source]
        traces.append({"type": "scatter", "mode": "markers", "name": f"{source} ({len(mine)})",
                       "x": [r["measured"] for r in mine], "y": [r["predicted"] for r in mine],
                       "text": [f"{r['id']} ({r['metric']})" for r in mine],
                       "marker": {"color": COLORS[i % len(COLORS)], "size": 6},
                       "hovertemplate": "%{text}: measured %{x:.4g}, predicted %{y:.4g}<extra></extra>"})
    values = [v for r in done for v in (r["measured"], r["predicted"])] or [1.0]
    lo, hi = min(values) / 2, max(values) * 2
    traces.append({"type": "scatter", "mode": "lines", "name": "predicted = measured", "x": [lo, hi], "y": [lo, hi],
                   "line": {"color": "#222222", "dash": "dash", "width": 1}, "hoverinfo": "skip"})
    return figure(traces, f"{title}: {len(done)} rows (seconds and tokens/s, each in SI units)",
                  xaxis=axis("measured", log=True), yaxis=axis("predicted", log=True), height=560)
