"""Cost model: cloud and owned chip-hours, per token and per query, bad input, claim C9."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infercast import InfercastError, estimate, load_chip
from infercast.claims import c9_fleet_cost
from infercast.cli import cli
from infercast.cost import CostOptions, capex_per_chip_usd, merge_options
from infercast.system import default_system, load_system


def test_cloud_price_per_million_tokens():
    """With USD 2 per chip-hour, USD per million tokens = 2 x chips / 3600 / tokens_per_s x 1e6."""
    r = estimate("llama-2-13b", "h100-sxm", tp=2, batch=8, isl=512, osl=128, usd_per_chip_hour=2)
    c = r.cost
    assert c.mode == "cloud" and r.plan.num_chips == 2
    assert c.usd_per_million_tokens == pytest.approx(2 * 2 / 3600 / r.throughput_tokens_per_s * 1e6, rel=1e-12)
    assert c.usd_per_hour == 4
    # one query holds 1/batch of the deployment for the whole E2E
    assert c.usd_per_query == pytest.approx(4 / 3600 * r.e2e_latency_s / 8, rel=1e-12)
    assert c.capex_usd is None and c.chip_hour is None


def test_owned_chip_hour_by_hand():
    r = estimate("llama-2-7b", system="hgx-h100", batch=8, isl=512, osl=128)
    c, p = r.cost, r.energy.average_power_w
    capex = 300_000 / 8 + 5_000  # HGX H100 price per GPU slot (C6), plus the network share
    assert c.capex_usd == capex
    assert c.chip_hour.capital_usd == pytest.approx(capex / (5 * 8760))  # 5 years: USD 0.970 an hour
    assert c.chip_hour.electricity_usd == pytest.approx((p + 575) * 1.2 / 1000 * 0.08)  # host 575 W, PUE 1.2
    assert c.chip_hour.hosting_usd == pytest.approx((700 + 575) / 1000 * 150 * 12 / 8760)  # per kW of TDP + host
    assert c.usd_per_chip_hour == pytest.approx(c.chip_hour.capital_usd + c.chip_hour.electricity_usd
                                                + c.chip_hour.hosting_usd)
    assert c.usd_per_million_tokens == pytest.approx(c.usd_per_hour / 3600 / r.throughput_tokens_per_s * 1e6)


def test_capex_per_chip_sources():
    o = CostOptions()
    a100 = load_chip("a100-sxm-80gb")
    # no system price: the chip's USD 15,000 + server share 7,500 + network 5,000
    assert capex_per_chip_usd(a100, default_system(a100, 8), o) == 27_500
    # a named system's price per chip (DGX A100 launched at USD 199,000) + network
    assert capex_per_chip_usd(a100, load_system("dgx-a100"), o) == 199_000 / 8 + 5_000
    # the chip price given replaces both
    assert capex_per_chip_usd(a100, load_system("dgx-a100"), CostOptions(chip_price_usd=10_000)) == 22_500


def test_more_expensive_power_costs_more():
    cheap = estimate("llama-2-7b", "h100-sxm", batch=8, isl=512, osl=128).cost
    dear = estimate("llama-2-7b", "h100-sxm", batch=8, isl=512, osl=128,
                    cost={"electricity_usd_per_kwh": 0.30, "pue": 1.5}).cost
    assert dear.chip_hour.electricity_usd == pytest.approx(cheap.chip_hour.electricity_usd * 0.30 / 0.08 * 1.5 / 1.2)
    assert dear.chip_hour.capital_usd == cheap.chip_hour.capital_usd


def test_chip_without_price_needs_a_cloud_rate():
    d = estimate("llama-2-7b", "mi300x", batch=1, isl=128, osl=16).to_dict()
    assert d["cost"] is None and "no price" in d["cost_unavailable"]
    priced = estimate("llama-2-7b", "mi300x", batch=1, isl=128, osl=16, usd_per_chip_hour=3).cost
    assert priced.usd_per_hour == 3


@pytest.mark.parametrize("overrides, flag", [
    ({"usd_per_chip_hour": -2}, "--usd-per-chip-hour"),
    ({"chip_price_usd": -1}, "chip_price_usd"),
    ({"pue": 0.9}, "--pue"),
    ({"years": 0}, "--years"),
    ({"electricity_usd_per_kwh": -0.1}, "--electricity-usd-per-kwh"),
    ({"dollars": 1}, "unknown key"),
])
def test_bad_cost_options_name_the_flag(overrides, flag):
    with pytest.raises(InfercastError, match=flag):
        merge_options(overrides)


@pytest.mark.parametrize("args, flag", [
    (["--usd-per-chip-hour", "-2"], "--usd-per-chip-hour"),
    (["--pue", "0.5"], "--pue"),
    (["--years", "-1"], "--years"),
    (["--cost", "server_usd_per_chip=-5"], "server_usd_per_chip"),
])
def test_cli_bad_cost_input_is_one_line_exit_2(args, flag):
    out = subprocess.run([sys.executable, "-m", "infercast", "estimate", "--model", "llama-2-7b", "--hardware",
                          "h100-sxm", *args], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and flag in out.stderr and out.stderr.count("\n") == 1


def test_estimate_json_cost_keys():
    result = CliRunner().invoke(cli, ["estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--output",
                                      "json", "--usd-per-chip-hour", "2"])
    c = json.loads(result.output)["cost"]
    assert {"usd_per_million_tokens", "usd_per_query", "usd_per_hour", "assumptions"} <= set(c)
    assert c["assumptions"]["usd_per_chip_hour"] == 2


def test_c9_servers_and_chips():
    c = c9_fleet_cost()
    f = c.figures
    assert f["systems"] == 2750  # 22,000 / 8
    assert f["chips_usd"] == 22_000 * 30_000  # catalog H100 price
    assert f["servers_usd"] == 2750 * 300_000  # USD 825M, against the claim's ~800M
    assert f["with_network_usd"] == 22_000 * (37_500 + 5_000)
    assert c.verdict == "reproduced"
