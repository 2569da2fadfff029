"""The figures hold the documents' numbers (bars add up to what the CLI prints, the roofline's points are each
operator's FLOPs over its bytes and time), they are valid Plotly, and ``infercast plot`` writes them as PNG,
SVG and HTML."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from infercast import plots, views
from infercast.cli import COMPARE, cli
from infercast.errors import InfercastError
from infercast.options import AUTO, DEPLOYMENT, NETWORK_WORKLOAD, WORKLOAD

FLAGS = {o.name: o.default for o in (*DEPLOYMENT, *WORKLOAD, *NETWORK_WORKLOAD, AUTO)}
LLAMA_70B = {**FLAGS, "model": "llama-3-70b", "system": "hgx-h100", "tp": 4, "batch": 8, "isl": 1024, "osl": 128}


@pytest.fixture(scope="module")
def view():
    return views.estimate_view(LLAMA_70B)


def valid(fig):
    """Plotly's own schema check (plotly.py raises on a key it does not know)."""
    go = pytest.importorskip("plotly.graph_objects")
    go.Figure(fig)
    return fig


def test_the_view_holds_the_cli_document(view):
    out = CliRunner().invoke(cli, ["estimate", "--model", "llama-3-70b", "--system", "hgx-h100", "--tp", "4", "--batch",
                                   "8", "--isl", "1024", "--osl", "128", "--output", "json"])
    assert view["document"] == json.loads(out.stdout)


def test_memory_bars_add_up_to_the_memory_per_chip(view):
    doc, fig = view["document"], valid(view["figures"]["memory"])
    m = doc["memory"]
    assert [t["name"] for t in fig["data"]] == ["weights", "KV cache", "activations", "runtime"]
    assert sum(t["x"][0] for t in fig["data"]) == pytest.approx(m["total_per_chip_bytes"] / 1e9, rel=1e-12)
    assert fig["data"][0]["x"][0] == m["weights_bytes"] / 1e9 == pytest.approx(35.2788, abs=1e-4)
    # usable (0.9 of it), capacity (H100: 80 GiB = 85.9 GB)
    assert [s["x0"] for s in fig["layout"]["shapes"]] == pytest.approx([0.9 * 85.89934592, 85.89934592])


def test_roofline_points_are_each_operators_intensity_and_rate(view):
    doc, fig = view["document"], valid(view["figures"]["roofline"])
    peak_flops, peak_bw = views.peak_rates(LLAMA_70B)
    assert (peak_flops, peak_bw) == (989.4e12, 3.35e12)  # H100 SXM dense FP16, HBM3
    roof = fig["data"][0]
    assert roof["y"][-1] == pytest.approx(989.4)  # TFLOP/s, flat beyond the ridge
    assert roof["x"][1] == pytest.approx(989.4e12 / 3.35e12)  # the ridge point, FLOP/byte
    for trace in fig["data"][2:]:
        rows = [r for r in doc["breakdown"] if r["phase"] == trace["name"] and r["flops"] > 0 and r["bytes"] > 0
                and r["time_s"] > 0]
        assert trace["x"] == [r["flops"] / r["bytes"] for r in rows]
        assert trace["y"] == [r["flops"] / r["time_s"] / 1e12 for r in rows]
        # nothing runs above the peak roof
        assert all(y <= min(989.4, x * 3.35) * (1 + 1e-9) for x, y in zip(trace["x"], trace["y"], strict=True))
    assert {t["name"] for t in fig["data"][2:]} == {"prefill", "decode"}


def test_breakdown_bars_add_up_to_the_end_to_end_latency(view):
    doc, fig = view["document"], valid(view["figures"]["breakdown"])
    assert len(fig["data"]) == plots.MAX_OPS + 1  # the slowest 12 operators and 'other'
    total_ms = sum(sum(t["y"]) for t in fig["data"])
    assert total_ms == pytest.approx(doc["e2e_latency_s"] * 1e3, rel=1e-9)
    decode = sum(t["y"][1] for t in fig["data"])
    assert decode == pytest.approx(doc["decode"]["latency_s"] * 1e3, rel=1e-9)


def test_energy_split_adds_up_to_the_energy_per_token(view):
    doc, fig = view["document"], valid(view["figures"]["energy"])
    assert [t["name"] for t in fig["data"]] == ["DRAM", "SRAM", "arithmetic", "links", "static", "chip overhead"]
    assert sum(t["x"][0] for t in fig["data"]) == pytest.approx(doc["energy"]["joules_per_token"], rel=1e-9)


def test_an_unpowered_chip_has_no_energy_figure():
    assert plots.energy_figure({"energy": None}) is None


def test_compare_panels_are_the_rows_figures():
    flags = {o.name: o.default for o in (*COMPARE, *WORKLOAD)}
    rows = views.compare_document({**flags, "model": "llama-3-70b", "systems": "h100-sxm,b200,mi300x",
                                   "num_chips": 4, "tp": 4, "batch": 8})
    fig = valid(plots.compare_figure(rows, "llama-3-70b"))
    assert fig["data"][0]["x"] == ["h100-sxm-x4", "b200-x4", "mi300x-x4"]
    assert fig["data"][0]["y"] == [r["ttft_s"] * 1e3 for r in rows]
    assert fig["data"][3]["y"][2] is None  # the MI300X has no price in the catalog: no bar, not a zero
    assert fig["layout"]["grid"] == {"rows": 2, "columns": 3, "pattern": "independent"}


def test_timeline_series_are_time_weighted_means():
    rows = [{"replica": 0, "start_s": 0.0, "end_s": 1.0, "waiting": 4, "running": 2, "kv_usage": 0.5},
            {"replica": 0, "start_s": 1.0, "end_s": 4.0, "waiting": 0, "running": 6, "kv_usage": 0.1},
            {"replica": 1, "start_s": 0.0, "end_s": 2.0, "waiting": 2, "running": 4, "kv_usage": 0.3}]
    one = plots.timeline_series(rows, points=1)
    assert one["time_s"] == [2.0]
    # replicas add up: the mean over the span of each one's steps, weighted by their durations, times two
    assert one["waiting"] == [pytest.approx((4 * 1 + 0 * 3 + 2 * 2) / 6 * 2)]
    assert one["kv_usage"] == [pytest.approx((0.5 * 1 + 0.1 * 3 + 0.3 * 2) / 6)]
    assert len(plots.timeline_series(rows, points=2)["time_s"]) == 2
    assert plots.timeline_series([])["time_s"] == []


def test_the_simulation_figures_count_every_request():
    flags = {"model": "llama-3-8b", "hardware": "h100-sxm", "request_rate": 6.0, "num_prompts": 300, "isl": 512,
             "osl": 64}
    result = views.simulate_view({**flags, "offline": False, "no_chunked_prefill": False}, set(flags))
    doc, figs = result["document"], result["figures"]
    latency = valid(figs["latency"])
    assert sum(latency["data"][0]["y"]) == doc["completed"] == 300
    assert sum(latency["data"][1]["y"]) == 300  # every request has 64 tokens: a TPOT each
    assert [s["x0"] for s in latency["layout"]["shapes"]] == [doc["ttft_ms"]["p50"], doc["ttft_ms"]["p99"],
                                                              doc["tpot_ms"]["p50"], doc["tpot_ms"]["p99"]]
    timeline = valid(figs["timeline"])
    assert [t["name"] for t in timeline["data"]] == ["waiting requests", "running requests", "KV cache used (%)"]
    assert max(timeline["data"][2]["y"]) <= 100 * doc["kv_cache"]["max_usage"] + 1e-9
    assert len(timeline["data"][0]["x"]) <= plots.MAX_POINTS


def test_inferencex_points_are_per_chip_and_per_user():
    points = {p["id"]: p for p in views.measured_points("deepseek-v3", 1024, 1024)}
    p = points["ix-b200-sglang-dsr1-fp4-tp4ep1-1k1k-c4"]
    # measured-public.csv: 409.436 output tokens/s on 4 B200s, median TPOT 9.10566 ms
    assert p["output_tokens_per_s_per_chip"] == 409.436 / 4
    assert p["output_tokens_per_s_per_user"] == 1 / 0.00910566
    assert (p["hardware"], p["concurrency"], p["weight_dtype"]) == ("b200", 4, "fp4")
    assert {q["hardware"] for q in points.values()} == {"b200", "h200-sxm", "mi300x", "mi355x"}
    assert views.measured_points("llama-3-8b", 1024, 1024) == []


def test_the_package_carries_the_inferencex_rows_of_the_shared_data():
    """The Pareto view's measured points are shared/data/measured-public.csv's InferenceX throughput and TPOT rows
    (read from the package's copy of the file)."""
    import csv
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-public.csv"
    if not shared.is_file():
        pytest.skip("no shared/data beside this checkout to compare the package's copy with")
    with shared.open(newline="") as f:
        expected = [{k: r[k] for k in views.INFERENCEX_COLUMNS} for r in csv.DictReader(f)
                    if r["id"].startswith("ix-") and r["metric"] in ("output_tokens_per_s", "tpot_s")]
    assert views.measured_rows() == expected


def test_the_pareto_figure_draws_each_frontier_and_the_measurements():
    flags = {"model": "deepseek-v3", "isl": 1024, "osl": 1024, "hardware": "b200,mi355x", "dtype": None, "tp": None,
             "prices": (), "group_by": "hardware"}
    result = views.pareto_view(flags)
    doc, fig = result["document"], valid(result["figures"]["pareto"])
    lines = [t for t in fig["data"] if t["mode"] == "lines+markers"]
    assert len(lines) == len(doc["frontiers"])
    for trace, f in zip(lines, doc["frontiers"], strict=True):
        assert trace["y"] == [p[f["metric"]] for p in f["points"]]
    measured = [t for t in fig["data"] if t["mode"] == "markers"]
    assert sum(len(t["x"]) for t in measured) == len(result["measured"]) > 10
    assert {p["hardware"] for p in result["measured"]} == {"b200", "mi355x"}


def test_the_validation_figure_plots_each_predicted_row():
    rows = [{"id": "a", "source": "s1", "metric": "tpot_s", "measured": 0.01, "predicted": 0.012,
             "predicted_ideal": 0.008},
            {"id": "b", "source": "s2", "metric": "ttft_s", "measured": 0.2, "predicted": None, "predicted_ideal": None},
            {"id": "c", "source": "s2", "metric": "output_tokens_per_s", "measured": 100.0, "predicted": 90.0,
             "predicted_ideal": math.nan}]
    fig = valid(plots.validation_figure(rows))
    names = [t["name"] for t in fig["data"]]
    assert names == ["ideal roofline", "s1 (1)", "s2 (1)", "predicted = measured"]
    assert fig["data"][0]["y"] == [0.008]
    assert fig["data"][2]["x"] == [100.0] and fig["data"][2]["y"] == [90.0]
    assert fig["layout"]["xaxis"]["type"] == fig["layout"]["yaxis"]["type"] == "log"


@pytest.mark.parametrize("kind, args", [
    ("roofline", ["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--batch", "4"]),
    ("breakdown", ["--model", "llama-2-7b", "--hardware", "a100-sxm-80gb"]),
    ("memory", ["--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--num-chips", "2", "--tp", "2"]),
    ("energy", ["--model", "llama-2-7b", "--hardware", "h100-sxm"]),
    ("compare", ["--model", "llama-2-7b", "--systems", "h100-sxm,l40s"]),
    ("timeline", ["--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-prompts", "100", "--request-rate", "4"]),
    ("latency", ["--model", "llama-2-7b", "--hardware", "h100-sxm", "--num-prompts", "100", "--goodput", "ttft:500",
                 "tpot:50"]),
    ("pareto", ["--model", "llama-2-7b", "--isl", "512", "--osl", "128", "--hardware", "h100-sxm,l40s"]),
])
@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_plot_writes_each_kind(tmp_path, kind, args, suffix):
    out = tmp_path / f"{kind}.{suffix}"
    result = CliRunner().invoke(cli, ["plot", kind, *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    head = out.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in head


def test_plot_writes_html_with_plotly_inside(tmp_path):
    out = tmp_path / "roofline.html"
    result = CliRunner().invoke(cli, ["plot", "roofline", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--out",
                                      str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "arithmetic intensity (FLOP\\u002fbyte)" in html  # plotly escapes the slash
    assert len(html) > 1_000_000 and '<script src="http' not in html  # plotly.js inside: it opens offline


def test_plot_validation_draws_the_public_data(tmp_path):
    out = tmp_path / "validation.png"
    result = CliRunner().invoke(cli, ["plot", "validation", "--data", "public", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 10_000


def test_plot_refuses_what_it_cannot_write(tmp_path):
    existing = tmp_path / "a.png"
    existing.write_bytes(b"keep")
    args = ["plot", "memory", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--out"]
    for out, message in ((str(tmp_path / "a.pdf"), ".pdf: give a .png, .svg or .html file"),
                         (str(existing), "exists")):
        result = CliRunner().invoke(cli, [*args, out])
        assert isinstance(result.exception, InfercastError) and message in str(result.exception)
    assert existing.read_bytes() == b"keep"
    assert CliRunner().invoke(cli, [*args, str(existing), "--force"]).exit_code == 0


def test_plot_kinds_take_their_commands_flags():
    for kind, flag in (("roofline", "--kv-cache-dtype"), ("timeline", "--max-num-seqs"), ("pareto", "--group-by"),
                       ("compare", "--systems"), ("validation", "--calibration")):
        result = CliRunner().invoke(cli, ["plot", kind, "--help"])
        assert result.exit_code == 0 and flag in result.output and "--out" in result.output
    assert "--output" not in CliRunner().invoke(cli, ["plot", "roofline", "--help"]).output


@pytest.mark.parametrize("missing, out, line", [
    ("matplotlib", "memory.png", 'a PNG plot needs matplotlib: pip install "infercast[plots]"'),
    ("plotly", "memory.html", 'an HTML plot needs plotly: pip install "infercast[plots]"'),
])
def test_a_missing_extra_is_named(monkeypatch, tmp_path, missing, out, line):
    import sys

    for name in [m for m in sys.modules if m == missing or m.startswith(f"{missing}.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: importing it fails
    result = CliRunner().invoke(cli, ["plot", "memory", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--out",
                                      str(tmp_path / out)])
    assert isinstance(result.exception, InfercastError) and str(result.exception) == line
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize("lo, hi, at_least", [(1e-7, 1e5, 6), (0.1, 5000, 12)])
def test_a_log_axis_keeps_its_ticks_over_many_decades(lo, hi, at_least):
    """matplotlib draws no tick at all when 1-2-5 ticks over 12 decades would be too many (the validation plot)."""
    from infercast.render import _plain_log_ticks
    from infercast.whatif import pyplot

    plt = pyplot()
    figure, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    _plain_log_ticks(ax.xaxis)
    assert len([t for t in ax.xaxis.get_majorticklocs() if lo <= t <= hi]) >= at_least
    plt.close(figure)
