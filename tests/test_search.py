"""``infercast search`` and ``pareto``: the document's contract, a result's numbers equal to estimate() and the
simulator for the same deployment, the closest constraint when nothing qualifies, Pareto frontiers that are
non-dominated, and bad input as one line naming the flag."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import estimate
from infercast.cli import cli
from infercast.search import KEYS, NO_BACKEND, NO_PRICE, non_dominated, pareto, search

SMALL = dict(model="llama-3-8b", isl=512, osl=128, slo="ttft_p99:1000,tpot_p99:30", hardware="h100-sxm,b200",
             dtype="bf16,fp8", top_k=2, num_prompts=300)


@pytest.fixture(scope="module")
def qps_doc():
    return search(qps=6.0, **SMALL)


def test_document_has_the_contract_keys(qps_doc):
    doc = qps_doc
    assert list(doc)[:9] == ["model", "workload", "slo", "objective", "candidates_evaluated", "ranked", "pareto",
                             "rejected", "closest"]
    assert doc["slo"] == {"ttft_p99_s": 1.0, "tpot_p99_s": 0.03}
    assert len(doc["ranked"]) == 2 and all(list(r) == list(KEYS) for r in doc["ranked"] + doc["pareto"])
    assert all(r["simulated"] for r in doc["ranked"])
    assert doc["candidates_evaluated"] == 2 * 2 * 7  # 2 chips x 2 precisions x (tp 1, 2, 4, 8; 8 x pp 2, 4, 8)
    assert sum(doc["rejected"].values()) <= doc["candidates_evaluated"]
    json.dumps(doc, allow_nan=False)
    for r in doc["ranked"]:
        assert r["ttft_p99_s"] <= 1.0 and r["tpot_p99_s"] <= 0.03
        assert r["num_chips"] == r["tp"] * r["pp"] * r["dp"]
    costs = [r["usd_per_million_tokens"] for r in doc["ranked"]]
    assert costs == sorted(costs)


def test_a_result_equals_estimate_and_the_simulator_for_its_deployment(qps_doc):
    from infercast.serving import EngineConfig, Workload, server
    from infercast.serving.workload import synthetic

    r = qps_doc["ranked"][0]
    dtype = {"dtype": r["weight_dtype"]}
    B, isl, osl = r["concurrency"], SMALL["isl"], SMALL["osl"]
    est = estimate("llama-3-8b", r["hardware"], tp=r["tp"], pp=r["pp"], batch=B, isl=isl, osl=osl, **dtype)
    assert r["joules_per_token"] == pytest.approx(est.energy.joules_per_token, rel=1e-12)
    srv = server("llama-3-8b", r["hardware"], engine=EngineConfig(max_num_seqs=256), tp=r["tp"], pp=r["pp"], **dtype)
    sim = srv.run(synthetic(Workload(num_prompts=300, request_rate=6.0 / r["dp"], isl=isl, osl=osl, seed=0),
                            srv.max_model_len))
    m = sim.metrics
    assert r["ttft_p99_s"] == pytest.approx(m["ttft_ms"]["p99"] / 1e3, rel=1e-12)
    assert r["tpot_p99_s"] == pytest.approx(m["tpot_ms"]["p99"] / 1e3, rel=1e-12)
    assert r["output_tokens_per_s_per_user"] == pytest.approx(1e3 / m["tpot_ms"]["p50"], rel=1e-12)
    tokens_per_s = m["output_throughput"] * r["dp"]
    assert r["output_tokens_per_s_per_chip"] == pytest.approx(tokens_per_s / r["num_chips"], rel=1e-12)
    per_hour = r["num_chips"] * est.cost.usd_per_chip_hour
    assert r["usd_per_million_tokens"] == pytest.approx(per_hour / 3600 / tokens_per_s * 1e6, rel=1e-9)
    assert r["tco_usd"] == pytest.approx(per_hour * 8760 * est.cost.assumptions["years"], rel=1e-9)


def test_analytic_figures_are_the_static_batch_estimates_in_steady_state():
    doc = search(qps=6.0, simulate=False, **SMALL)
    r = doc["ranked"][0]
    assert not r["simulated"]
    B, isl, osl = r["concurrency"], SMALL["isl"], SMALL["osl"]
    kw = dict(tp=r["tp"], pp=r["pp"], dtype=r["weight_dtype"], isl=isl, osl=osl)
    at_b, at_1 = estimate("llama-3-8b", r["hardware"], batch=B, **kw), estimate("llama-3-8b", r["hardware"], **kw)
    tpot = at_b.tpot_s + (B - 1) / B * at_b.ttft_s / (osl - 1)
    assert r["tpot_p99_s"] == pytest.approx(tpot, rel=1e-12)
    assert r["ttft_p99_s"] == pytest.approx(at_1.ttft_s + tpot, rel=1e-12)
    # the load: each of dp replicas carries qps / dp at this concurrency, B / E2E at least
    rate = B / (r["ttft_p99_s"] + (osl - 1) * tpot)
    assert rate * r["dp"] >= 6.0 * (1 - 1e-9)
    assert r["output_tokens_per_s_per_chip"] == pytest.approx(6.0 * osl / r["num_chips"], rel=1e-12)


def test_closed_loop_concurrency():
    doc = search(concurrency=300, **SMALL)
    assert doc["workload"]["concurrency"] == 300 and doc["ranked"]
    for r in doc["ranked"]:
        assert r["dp"] * r["concurrency"] >= 300 and (r["dp"] - 1) * r["concurrency"] < 300
        assert r["concurrency"] <= 256


def test_nothing_qualifies_names_the_closest_constraint():
    doc = search(qps=1.0, **{**SMALL, "slo": "ttft_p99:1000,tpot_p99:2"})
    assert doc["ranked"] == []
    c = doc["closest"]
    assert c["constraint"] == "tpot_p99" and c["limit"] == 0.002 and c["over_by"] > 0
    assert c["value"] == pytest.approx(c["limit"] * (1 + c["over_by"]))
    assert any(n.startswith("nothing meets the SLOs; closest: tpot_p99 on ") for n in doc["notes"])
    r = CliRunner().invoke(cli, ["search", "--model", "llama-3-8b", "--isl", "512", "--osl", "128", "--qps", "1",
                                 "--slo", "tpot_p99:2", "--hardware", "h100-sxm", "--dtype", "fp8"])
    assert r.exit_code == 0 and "nothing meets the SLOs; closest: tpot_p99 on h100-sxm tp8" in r.stdout


def test_chips_without_a_price_need_one():
    doc = search(qps=2.0, **{**SMALL, "hardware": "h100-sxm,mi300x", "dtype": "fp8"})
    assert doc["rejected"][NO_PRICE] == 7 and {r["hardware"] for r in doc["ranked"]} == {"h100-sxm"}
    priced = search(qps=2.0, usd_per_chip_hour="mi300x=0.5", **{**SMALL, "hardware": "h100-sxm,mi300x",
                                                                 "dtype": "fp8"})
    assert NO_PRICE not in priced["rejected"] and priced["ranked"][0]["hardware"] == "mi300x"
    chips = search(qps=2.0, objective="chips", **{**SMALL, "hardware": "mi300x", "dtype": "fp8"})
    assert chips["ranked"] and chips["ranked"][0]["usd_per_million_tokens"] is None


def test_mla_models_are_analytic_only():
    doc = search(model="deepseek-v3", isl=1024, osl=1024, concurrency=64, slo="ttft_p99:5000,tpot_p99:100",
                 hardware="b200", dtype="fp8", objective="chips", top_k=1)
    assert doc["ranked"] and not doc["ranked"][0]["simulated"]
    assert any("multi-head latent attention" in n for n in doc["notes"])


def test_search_json_from_the_command_line():
    r = CliRunner().invoke(cli, ["search", "--model", "llama-3-8b", "--isl", "512", "--osl", "128", "--qps", "4",
                                 "--slo", "ttft_p99:1000,tpot_p99:30", "--hardware", "h100-sxm", "--dtype", "fp8",
                                 "--top-k", "1", "--num-prompts", "200", "--output", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ranked"][0]["hardware"] == "h100-sxm" and doc["objective"] == "usd_per_mtok"



# --- the framework axis ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def framework_doc():
    return search(qps=6.0, framework="vllm,sglang,trtllm,atom", usd_per_chip_hour="mi300x=2",
                  **{**SMALL, "hardware": "h100-sxm,mi300x", "dtype": "fp8", "top_k": 3})


def test_frameworks_are_an_axis_on_the_chips_they_run_on(framework_doc):
    doc = framework_doc
    assert doc["frameworks"] == ["vllm", "sglang", "trtllm", "atom"]
    # 2 chips x 4 frameworks x 1 precision x 7 plans (tp 1, 2, 4, 8; 8 x pp 2, 4, 8)
    assert doc["candidates_evaluated"] == 2 * 4 * 7
    # TensorRT-LLM has no AMD backend and ATOM no NVIDIA one: each pairing's 7 plans are counted, not run
    assert doc["rejected"][NO_BACKEND] == 7 + 7
    pairs = {(r["hardware"], r["framework"]) for r in doc["ranked"] + doc["pareto"]}
    assert pairs and pairs.isdisjoint({("mi300x", "trtllm"), ("h100-sxm", "atom")})
    assert {f for _, f in pairs} <= {"vllm", "sglang", "trtllm", "atom"}
    assert not any("generic framework profile" in n for n in doc["notes"])


def test_a_framework_result_equals_estimate_and_simulate_under_that_framework(framework_doc):
    """One answer per quantity: search's figures for a deployment are estimate()'s and the simulator's for the same
    deployment under the same framework (its profile's engine defaults: max-num-seqs, chunked prefill)."""
    from infercast.serving import Workload, server
    from infercast.serving.workload import synthetic

    r = framework_doc["ranked"][0]
    kw = dict(tp=r["tp"], pp=r["pp"], dtype=r["weight_dtype"], framework=r["framework"])
    est = estimate("llama-3-8b", r["hardware"], batch=r["concurrency"], isl=512, osl=128, **kw)
    assert r["joules_per_token"] == pytest.approx(est.energy.joules_per_token, rel=1e-12)
    srv = server("llama-3-8b", r["hardware"], **kw)
    m = srv.run(synthetic(Workload(num_prompts=300, request_rate=6.0 / r["dp"], isl=512, osl=128, seed=0),
                          srv.max_model_len)).metrics
    assert r["ttft_p99_s"] == pytest.approx(m["ttft_ms"]["p99"] / 1e3, rel=1e-12)
    assert r["tpot_p99_s"] == pytest.approx(m["tpot_ms"]["p99"] / 1e3, rel=1e-12)


def test_a_framework_sets_the_concurrency_a_replica_runs():
    """Concurrency per replica goes up to the framework's max-num-seqs: vLLM's 256, TensorRT-LLM's 8,192."""
    doc = pareto("llama-3-8b", isl=512, osl=128, hardware="h100-sxm", dtype="fp8", tp=[1], framework="vllm,trtllm",
                 group_by="framework")
    top = {f["group"]: max(p["concurrency"] for p in f["points"]) for f in doc["frontiers"]}
    assert top["h100-sxm vllm"] <= 256 < top["h100-sxm trtllm"]
    # the default is the generic profile's, which is vLLM's scheduler
    assert pareto("llama-3-8b", isl=512, osl=128, hardware="h100-sxm", dtype="fp8", tp=[1])["frameworks"] == \
        ["generic"]


def test_frameworks_all_and_bad_names():
    from infercast.framework import framework_names
    from infercast.search import parse_frameworks

    assert parse_frameworks("all") == [n for n in framework_names() if n != "generic"]
    assert parse_frameworks("trtllm@0.6, vllm") == ["trtllm@0.6", "vllm"]
    with pytest.raises(Exception, match="--framework: unknown framework 'vlm'.*did you mean vllm"):
        parse_frameworks("vlm")
    with pytest.raises(Exception, match="--framework: vllm is named twice"):
        parse_frameworks("vllm,vllm")

@pytest.mark.parametrize("args, words", [
    (["--qps", "2", "--concurrency", "4"], "give exactly one of --qps"),
    ([], "give exactly one of --qps"),
    (["--qps", "0"], "--qps must be a positive number"),
    (["--qps", "2", "--hardware", "h100-sxm,h1000"], "--hardware: unknown hardware 'h1000'"),
    (["--qps", "2", "--slo", "ttft:2000"], "--slo 'ttft:2000': expected METRIC:MILLISECONDS"),
    (["--qps", "2", "--dtype", "q4_0"], "--dtype q4_0: a weight quantization scheme"),
    (["--qps", "2", "--usd-per-chip-hour", "h100-sxm=-1"], "--usd-per-chip-hour h100-sxm: the price must be"),
    (["--qps", "2", "--usd-per-chip-hour", "h100=2,foo=1"], "--usd-per-chip-hour: unknown hardware 'foo'"),
    (["--qps", "2", "--isl", "8000", "--osl", "1000"], "exceeds llama-3-8b's context of 8192 tokens"),
    (["--qps", "2", "--max-chips", "0"], "--max-chips must be a whole number of at least 1"),
    (["--qps", "2", "--framework", "tensorrt"], "--framework: unknown framework 'tensorrt'"),
])
def test_bad_input_is_one_line_naming_the_flag(args, words):
    from test_sweep import main

    base = ["search", "--model", "llama-3-8b", "--slo", "ttft_p99:1000", "--hardware", "h100-sxm"]
    if "--isl" not in args:
        base += ["--isl", "512", "--osl", "128"]
    slo = "--slo" in args
    code, _, err = main(*(base[:3] + base[5:] if slo else base), *args)
    assert code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, err


# --- Pareto ------------------------------------------------------------------------------------------------


def dominates(a, b, x, y, minimize_y):
    better_y = a[y] <= b[y] if minimize_y else a[y] >= b[y]
    strictly = a[x] > b[x] or (a[y] < b[y] if minimize_y else a[y] > b[y])
    return a[x] >= b[x] and better_y and strictly


points = st.lists(st.fixed_dictionaries({"x": st.floats(0, 1e3, allow_nan=False),
                                         "y": st.floats(-1e3, 1e3, allow_nan=False)}), max_size=40)


@settings(max_examples=200, deadline=None)
@given(points, st.booleans())
def test_the_frontier_is_non_dominated_and_covers_every_point(pts, minimize_y):
    front = non_dominated(pts, "x", "y", minimize_y=minimize_y)
    for f in front:
        assert not any(dominates(p, f, "x", "y", minimize_y) for p in pts)
    for p in pts:  # every point is on the frontier or weakly beaten by a frontier point
        assert any(f["x"] >= p["x"] and (f["y"] <= p["y"] if minimize_y else f["y"] >= p["y"]) for f in front)
    assert [f["x"] for f in front] == sorted(f["x"] for f in front)


def test_pareto_frontiers_per_chip_are_non_dominated_and_from_every_plan():
    doc = pareto("llama-3-8b", isl=1024, osl=256, hardware="h100-sxm,b200", dtype="bf16,fp8")
    assert {(f["group"], f["metric"]) for f in doc["frontiers"]} == {
        (c, m) for c in ("h100-sxm", "b200") for m in ("output_tokens_per_s_per_chip", "usd_per_million_tokens")}
    for f in doc["frontiers"]:
        pts = f["points"]
        minimize = f["metric"] == "usd_per_million_tokens"
        assert all(list(p)[:11] == list(KEYS)[:11] for p in pts)
        for a in pts:
            assert not any(dominates(b, a, "output_tokens_per_s_per_user", f["metric"], minimize) for b in pts)
        if not minimize:  # throughput per chip falls as interactivity rises along the frontier
            ys = [p[f["metric"]] for p in pts]
            assert ys == sorted(ys, reverse=True)
    tps = {p["tp"] for f in doc["frontiers"] for p in f["points"]}
    assert len(tps) > 1


def test_pareto_points_equal_estimate():
    doc = pareto("llama-3-8b", isl=1024, osl=256, hardware="h100-sxm", dtype="fp8", group_by="deployment")
    p = doc["frontiers"][0]["points"][-1]
    B = p["concurrency"]
    kw = dict(tp=p["tp"], dtype="fp8", isl=1024, osl=256)
    at_b, at_1 = estimate("llama-3-8b", "h100-sxm", batch=B, **kw), estimate("llama-3-8b", "h100-sxm", **kw)
    tpot = at_b.tpot_s + (B - 1) / B * at_b.ttft_s / 255
    assert p["output_tokens_per_s_per_user"] == pytest.approx(1 / tpot, rel=1e-12)
    e2e = at_1.ttft_s + tpot + 255 * tpot
    assert p["output_tokens_per_s_per_chip"] == pytest.approx(B * 256 / e2e / p["tp"], rel=1e-12)


def test_pareto_writes_parquet_csv_and_json(tmp_path):
    pa = pytest.importorskip("pyarrow.parquet")
    args = ["pareto", "--model", "llama-3-8b", "--isl", "1024", "--osl", "256", "--hardware", "h100-sxm", "--dtype",
            "fp8"]
    for name in ("p.parquet", "p.csv", "p.json"):
        r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    table = pa.read_table(tmp_path / "p.parquet")
    assert table.num_rows == len((tmp_path / "p.csv").read_text().splitlines()) - 1
    assert set(table.column("metric").to_pylist()) == {"output_tokens_per_s_per_chip", "usd_per_million_tokens"}
    doc = json.loads((tmp_path / "p.json").read_text())
    assert sum(len(f["points"]) for f in doc["frontiers"]) == table.num_rows
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "p.csv")])
    assert r.exit_code != 0 or "exists" in r.output


def test_frontier_interpolation():
    from infercast.search import interpolate

    front = [{"u": 10.0, "c": 100.0}, {"u": 20.0, "c": 50.0}]
    assert interpolate(front, "u", "c", 15.0) == 75.0
    assert interpolate(front, "u", "c", 25.0) is None and interpolate(front, "u", "c", 5.0) is None
    assert math.isclose(interpolate(front, "u", "c", 10.0), 100.0)
    assert np.isfinite(interpolate(front, "u", "c", 20.0))



def test_search_csv_and_table_with_the_frontier():
    args = ["search", "--model", "llama-3-8b", "--isl", "512", "--osl", "128", "--qps", "4", "--slo",
            "ttft_p99:1000,tpot_p99:30", "--hardware", "h100-sxm,b200", "--dtype", "fp8", "--top-k", "2",
            "--num-prompts", "200"]
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli, [*args, "--output", "csv"])
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and lines[0].split(",") == list(KEYS) and len(lines) == 3
    r = CliRunner(env={"COLUMNS": "250"}).invoke(cli, [*args, "--pareto"])
    assert r.exit_code == 0 and "frontier: usd_per_mtok against tokens/s per user" in r.stdout
    assert "rejected" in r.stdout and "TPOT p99 ms" in r.stdout
