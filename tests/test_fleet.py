"""Fleet sizing: replicas, chips, capex, opex, TCO, energy, cost per query; Google scale; C16 and C18."""

import json
import math

import pytest
from click.testing import CliRunner

from infercast import InfercastError, estimate, load_chip
from infercast.claims import c16_efficiency, c18_cost_per_query
from infercast.cli import cli
from infercast.fleet import GOOGLE_CASES, GOOGLE_QPS, SECONDS_PER_YEAR, google_scale, size_fleet


@pytest.fixture(scope="module")
def deployment():
    return estimate("llama-2-70b", system="hgx-h100", tp=8, batch=32, isl=1000, osl=250)


def test_replicas_and_chips_by_hand(deployment):
    r = deployment
    qps = 50.0
    f = size_fleet(r, qps)
    replica_qps = 32 / r.e2e_latency_s  # a replica completes its batch once per E2E
    assert f.replica_qps == pytest.approx(replica_qps)
    assert f.replicas == math.ceil(qps / replica_qps)
    assert f.chips == 8 * f.replicas
    assert f.load == pytest.approx(qps / (f.replicas * replica_qps))
    e = r.energy
    assert f.average_power_w_per_chip == pytest.approx(f.load * e.average_power_w + (1 - f.load) * e.idle_w)


def test_owned_fleet_costs_by_hand(deployment):
    f = size_fleet(deployment, 50.0)
    p = f.average_power_w_per_chip
    assert f.capex_usd == f.chips * (300_000 / 8 + 5_000)
    per_chip_hour = (p + 575) * 1.2 / 1000 * 0.08 + (700 + 575) / 1000 * 150 * 12 / 8760  # power + hosting
    assert f.opex_usd_per_year == pytest.approx(f.chips * 8760 * per_chip_hour)
    assert f.tco_usd == pytest.approx(f.capex_usd + 5 * f.opex_usd_per_year)
    assert f.energy_kwh_per_year == pytest.approx(f.chips * (p + 575) * 1.2 * 8760 / 1000)
    assert f.usd_per_query == pytest.approx(f.tco_usd / (50 * 5 * 8760 * 3600))
    assert SECONDS_PER_YEAR == 31_536_000


def test_cloud_fleet_has_no_capex():
    r = estimate("llama-2-70b", system="hgx-h100", tp=8, batch=32, isl=1000, osl=250, usd_per_chip_hour=2.5)
    f = size_fleet(r, 50.0)
    assert f.mode == "cloud" and f.capex_usd == 0
    assert f.opex_usd_per_year == pytest.approx(f.chips * 8760 * 2.5)


def test_headroom_needs_more_replicas(deployment):
    full, half = size_fleet(deployment, 500.0), size_fleet(deployment, 500.0, target_utilization=0.5)
    assert half.replicas >= 2 * full.replicas - 1
    assert half.load <= 0.5 + 1e-12
    assert half.usd_per_query > full.usd_per_query


@pytest.mark.parametrize("qps, util, match", [
    (0, 1.0, "--qps"), (-5, 1.0, "--qps"), (float("nan"), 1.0, "--qps"),
    (10, 0, "--target-utilization"), (10, 1.5, "--target-utilization"),
])
def test_bad_load_is_a_one_line_error(deployment, qps, util, match):
    with pytest.raises(InfercastError, match=match):
        size_fleet(deployment, qps, target_utilization=util)


def test_a_deployment_that_does_not_fit_is_refused():
    r = estimate("llama-2-70b", "h100-sxm", batch=1, isl=128, osl=16)
    with pytest.raises(InfercastError, match="does not fit"):
        size_fleet(r, 10)


def test_fleet_cli_json_and_errors():
    runner = CliRunner()
    args = ["fleet", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "8", "--batch", "32", "--isl",
            "1000", "--osl", "250", "--qps", "50"]
    d = json.loads(runner.invoke(cli, [*args, "--output", "json"]).output)
    assert {"replicas", "chips", "capex_usd", "opex_usd_per_year", "tco_usd", "energy_kwh_per_year",
            "usd_per_query", "assumptions"} <= set(d)
    assert d["chips"] == 8 * d["replicas"]
    table = runner.invoke(cli, args).output
    assert "TCO over 5 years" in table and "assumptions:" in table
    bad = runner.invoke(cli, [*args[:-1], "0"])
    assert bad.exit_code != 0 and "--qps" in str(bad.exception)


def test_google_scale_four_cases():
    rows = google_scale()
    assert [(r["model"], r["system"]) for r in rows] == [c[:2] for c in GOOGLE_CASES]
    by = {(r["model"], r["system"]): r for r in rows}
    for r in rows:
        assert r["qps"] == GOOGLE_QPS and r["chips"] == r["replicas"] * r["chips_per_replica"]
        assert r["load"] <= 1
    for model in ("gpt-3-175b", "gpt-4-class-moe"):
        assert by[(model, "hgx-b200")]["chips"] < by[(model, "hgx-h100")]["chips"]
    # the MoE reads ~280B active parameters per token against GPT-3's 175B, and H100 holds it on 64 chips
    assert by[("gpt-4-class-moe", "hgx-h100")]["tco_usd"] > by[("gpt-3-175b", "hgx-h100")]["tco_usd"]


def test_c16_chips_per_delivered_pflops():
    f = c16_efficiency().figures
    peak = load_chip("h100-sxm").peak("fp16") / 1e15
    assert f["chips_per_pflops_at_5pct"] == pytest.approx(1 / (0.05 * peak))  # ~20
    assert f["chips_per_pflops_at_50pct"] == pytest.approx(1 / (0.5 * peak))  # ~2
    assert f["gpt4_class_decode_utilization_batch_1"] < f["gpt4_class_decode_utilization_batch_96"] < 0.03


def test_c18_batching_decides_the_cost_per_query():
    c = c18_cost_per_query()
    f = c.figures
    assert f["gpt3_usd_per_query_batch_1"] > 10 * f["gpt3_usd_per_query_batched"]
    tco = [f[f"gpt4_class_h100_tco_usd_batch_{b}"] for b in (1, 2, 4, 8, 16, 32)]
    assert tco == sorted(tco, reverse=True)  # bigger batches, smaller fleets
    b = f["largest_batch_reaching_1t"]
    assert f[f"gpt4_class_h100_tco_usd_batch_{b}"] >= 1e12 > f[f"gpt4_class_h100_tco_usd_batch_{2 * b}"]


def test_fleet_sized_by_the_simulator_within_slos():
    # with SLOs, a replica's rate is the simulator's MLPerf-style rate search, not the static batch / E2E
    from infercast.fleet import replica_rate_within
    from infercast.serving.search import find_max_rate

    kw = dict(model="llama-2-7b", hardware="a100-sxm-80gb", isl=512, osl=128)
    rate, basis = replica_rate_within("ttft_p99:2000,tpot_p99:200", num_prompts=400, **kw)
    search = find_max_rate("llama-2-7b", "a100-sxm-80gb", isl=512, osl=128, num_prompts=400,
                           slo_ms={"ttft_p99": 2000, "tpot_p99": 200})
    assert rate == search.max_request_rate > 0 and "simulated at SLOs" in basis
    from infercast import estimate
    from infercast.fleet import size_fleet

    f = size_fleet(estimate(**kw), 100, replica_rate=rate, basis=basis)
    assert f.replicas == math.ceil(100 / rate) and f.basis == basis
