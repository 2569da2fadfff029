"""Figures (``infercast.plots``: Plotly figures as plain data) written to files: HTML through Plotly, PNG and
SVG through matplotlib, which draws the part of Plotly's schema the figures use (bars, stacked or not, lines
and markers, log axes, a grid of subplots, vertical lines)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from infercast.errors import InfercastError

FORMATS = ("png", "svg", "html")
DASH = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-."}
SYMBOL = {"x": "x", "circle": "o", "circle-open": "o", "square": "s", "diamond": "D"}
DPI = 150


def write_figure(fig: dict[str, Any], out: str, *, force: bool = False) -> None:
    """Write ``fig`` to ``out``, a .png, .svg or .html file (never over a file unless ``force``)."""
    from infercast.files import check_writable

    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InfercastError(f"--out {out}: give a .png, .svg or .html file")
    check_writable(out, force, "--out")
    if suffix == "html":
        _html(fig, out)
    else:
        _matplotlib(fig, out, suffix)


def _html(fig: dict[str, Any], out: str) -> None:
    try:
        import plotly.io as pio
    except ImportError:
        raise InfercastError('an HTML plot needs plotly: pip install "infercast[plots]"') from None
    # the figure as it is, with plotly.js inside the file: it opens offline
    pio.write_html(fig, out, include_plotlyjs=True, full_html=True, validate=True)


def _cell(ref: str | None) -> int:
    """'x' -> 0, 'x3' -> 2, 'y2 domain' -> 1."""
    m = re.fullmatch(r"[xy](\d*)(?: domain)?", ref or "x")
    return int(m.group(1)) - 1 if m and m.group(1) else 0


def _text(title: Any) -> str:
    return (title or {}).get("text", "") if isinstance(title, dict) else str(title or "")


def _matplotlib(fig: dict[str, Any], out: str, fmt: str) -> None:
    from infercast.whatif import pyplot  # matplotlib on a file backend

    try:
        plt = pyplot()
    except InfercastError:
        raise InfercastError(f'a {fmt.upper()} plot needs matplotlib: pip install "infercast[plots]"') from None
    layout = fig.get("layout", {})
    g = layout.get("grid") or {"rows": 1, "columns": 1}
    rows, cols = g["rows"], g["columns"]
    height = layout.get("height", 480) / 100
    figure, axes = plt.subplots(rows, cols, figsize=(max(7.0, 4.2 * cols), max(2.6, height)), squeeze=False)
    flat = [ax for row in axes for ax in row]
    stacks: dict[tuple[int, str], Any] = {}
    for trace in fig.get("data", []):
        ax = flat[_cell(trace.get("xaxis"))]
        label = trace.get("name") if trace.get("showlegend", True) else None
        if trace.get("type") == "bar":
            _bar(ax, trace, label, layout.get("barmode"), stacks)
        else:
            _scatter(ax, trace, label)
    for shape in layout.get("shapes", []):
        ax = flat[_cell(shape.get("xref"))]
        line = shape.get("line", {})
        ax.axvline(shape["x0"], color=line.get("color", "#222222"), linestyle=DASH.get(line.get("dash"), "-"),
                   linewidth=line.get("width", 1.5), label=shape.get("name") if shape.get("showlegend") else None)
    for i, ax in enumerate(flat):
        n = "" if i == 0 else str(i + 1)
        for name, setter, scale in (("xaxis", ax.set_xlabel, ax.set_xscale), ("yaxis", ax.set_ylabel, ax.set_yscale)):
            spec = layout.get(f"{name}{n}", {})
            setter(_text(spec.get("title")))
            if spec.get("type") == "log":
                scale("log")
                _plain_log_ticks(ax.xaxis if name == "xaxis" else ax.yaxis)
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0] and layout.get("showlegend", True):
            below = len(flat) == 1 and layout.get("height", 480) < 300  # a single bar: the legend under it
            legend = ax.legend(fontsize=7, **({"loc": "upper center", "bbox_to_anchor": (0.5, -0.3), "ncol": 6}
                                              if below else {"loc": "best"}))
            for handle in legend.legend_handles:  # markers sized by data keep one size in the legend
                if hasattr(handle, "set_sizes"):
                    handle.set_sizes([30])
        for tick in ax.get_xticklabels():
            if len(tick.get_text()) > 12:
                tick.set_rotation(20)
                tick.set_horizontalalignment("right")
    figure.suptitle(_text(layout.get("title")), fontsize=10)
    figure.tight_layout()
    figure.savefig(out, format=fmt, dpi=DPI)
    plt.close(figure)


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2 and 5 times the powers of ten, written as plain numbers (0.01, 20, 5000); over more than
    five decades at the powers alone (matplotlib's locator draws no tick at all when 1-2-5 would be too many)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = sorted(axis.get_view_interval())
    wide = lo <= 0 or math.log10(hi / lo) > 5
    axis.set_major_locator(LogLocator(subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _colors(trace: dict[str, Any], n: int) -> list[Any] | Any:
    """A trace's marker colour: one, or one per point (a list of another length: matplotlib's own)."""
    color = (trace.get("marker") or {}).get("color")
    return color if not isinstance(color, list) or len(color) == n else None


def _bar(ax, trace: dict[str, Any], label: str | None, mode: str | None, stacks: dict) -> None:
    horizontal = trace.get("orientation") == "h"
    cats, values = (trace["y"], trace["x"]) if horizontal else (trace["x"], trace["y"])
    values = [0.0 if v is None else v for v in values]
    color = _colors(trace, len(values))
    key = (_cell(trace.get("xaxis")), "h" if horizontal else "v")
    numeric = all(isinstance(c, (int, float)) for c in cats)
    positions = cats if numeric else list(range(len(cats)))
    if mode == "stack":
        base = stacks.get(key, [0.0] * len(values))
        stacks[key] = [b + v for b, v in zip(base, values, strict=True)]
    else:
        base = None
    if horizontal:
        ax.barh(positions, values, left=base, color=color, label=label)
        if not numeric:
            ax.set_yticks(positions, cats)
    else:
        width = trace.get("width", 0.8)
        ax.bar(positions, values, bottom=base, color=color, label=label, width=width)
        if not numeric:
            ax.set_xticks(positions, cats)


def _scatter(ax, trace: dict[str, Any], label: str | None) -> None:
    mode = trace.get("mode", "lines+markers")
    marker, line = trace.get("marker") or {}, trace.get("line") or {}
    x, y = trace["x"], trace["y"]
    if "lines" in mode:
        ax.plot(x, y, color=line.get("color", marker.get("color")), linestyle=DASH.get(line.get("dash"), "-"),
                linewidth=line.get("width", 1.5), label=label, marker="o" if "markers" in mode else None,
                markersize=3)
    elif "markers" in mode:
        sizes = marker.get("size", 6)
        sizes = [s * s / 2 for s in sizes] if isinstance(sizes, list) else sizes * sizes / 2
        symbol = marker.get("symbol", "circle")
        color = _colors(trace, len(x))
        if symbol == "x":  # a line-only marker: its colour is its lines'
            edges = {"c": color}
        elif symbol.endswith("-open"):
            edges = {"facecolors": "none", "edgecolors": color, "linewidths": 1.0}
        else:
            edges = {"facecolors": color, "edgecolors": "#333333", "linewidths": 0.5}
        ax.scatter(x, y, s=sizes, marker=SYMBOL.get(symbol, "o"), label=label, alpha=marker.get("opacity", 0.9),
                   **edges)
