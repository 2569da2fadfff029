"""The page as a person uses it: Chromium (Debian's, driven by Playwright) fills the form, the numbers are the
CLI's for the same inputs, every chart is drawn with its data points, a shared URL gives the same view. A
screenshot of each view goes to the test's tmp folder (and to $INFERCAST_SCREENS when set)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from infercast.cli import cli

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("INFERCAST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium (or set "
                    f"INFERCAST_CHROMIUM to its path)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, web_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.base = web_url
    yield pg
    context.close()
    assert not errors, errors


def cli_doc(*args: str):
    out = CliRunner().invoke(cli, [*args, "--output", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def shown(x: float, scale: float = 1.0) -> str:
    """The page's rounding (3 significant figures, whole numbers with separators from 1,000 up)."""
    v = x / scale
    if abs(v) >= 1000:
        return f"{round(v):,}"
    g = float(f"{v:.3g}")
    return str(int(g)) if g.is_integer() else repr(g)


def value(pg, element_id: str) -> float:
    return float(pg.get_attribute(f"#{element_id}", "data-value"))


def wait(pg) -> None:
    pg.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=120_000)


def screenshot(pg, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    if os.environ.get("INFERCAST_SCREENS"):
        target = Path(os.environ["INFERCAST_SCREENS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


def points(pg, chart: str, kind: str) -> int:
    """Data points Plotly drew in a chart: markers of scatter traces, or bars (a missing value's bar is drawn
    as an empty path)."""
    layer = ".scatterlayer .point" if kind == "markers" else ".barlayer .point path"
    paths = pg.locator(f"#chart-{chart} {layer}")
    if kind == "markers":
        return paths.count()
    drawn = 0
    for d in paths.evaluate_all("els => els.map(e => e.getAttribute('d'))"):
        m = re.fullmatch(r"M([-\d.]+),([-\d.]+)V([-\d.]+)H([-\d.]+)V[-\d.]+Z", d or "")
        drawn += bool(m) and float(m[1]) != float(m[4]) and float(m[2]) != float(m[3])  # a bar of some size
    return drawn


def open_page(pg, query: str = "") -> None:
    pg.goto(pg.base + "/" + query)
    pg.wait_for_selector("body[data-ready=true]")


def run_view(pg, view: str, choose: dict[str, str], fill: dict[str, str]) -> None:
    """Open the page on ``view``, pick from the lists, type into the fields, press Run, wait for the answer."""
    open_page(pg, f"?view={view}" if view != "estimate" else "")
    for element, option in choose.items():
        pg.select_option(f"#{element}", option)
    for element, text in fill.items():
        pg.fill(f"#{element}", text)
    pg.click("#run")
    wait(pg)


LLAMA_70B = ["--model", "llama-3-70b", "--system", "hgx-h100", "--tp", "4", "--batch", "8", "--isl", "1024", "--osl",
             "128"]


def test_the_estimate_view_shows_the_cli_numbers_and_draws_every_chart(page, tmp_path):
    open_page(page)
    page.check("input[name=target][value=system]")  # a named system rather than a chip
    page.select_option("#model", "llama-3-70b")
    page.select_option("#system", "hgx-h100")
    for element, text in (("tp", "4"), ("batch", "8"), ("isl", "1024"), ("osl", "128")):
        page.fill(f"#{element}", text)
    page.click("#run")
    wait(page)
    doc = cli_doc("estimate", *LLAMA_70B)
    assert value(page, "v-ttft") == doc["ttft_s"]
    assert value(page, "v-tpot") == doc["decode"]["tpot_s"]
    assert value(page, "v-throughput") == doc["throughput_tokens_per_s"]
    assert value(page, "v-memory") == doc["memory"]["total_per_chip_bytes"]
    assert value(page, "v-energy") == doc["energy"]["joules_per_token"]
    assert value(page, "v-cost") == doc["cost"]["usd_per_million_tokens"]
    assert page.text_content("#v-ttft") == shown(doc["ttft_s"], 1e-3) + " ms"
    assert page.text_content("#v-tpot") == shown(doc["decode"]["tpot_s"], 1e-3) + " ms"
    assert page.text_content("#v-throughput") == shown(doc["throughput_tokens_per_s"]) + " tokens/s"
    # the roofline: one point per operator that does arithmetic and moves bytes, in both phases
    on_roof = [r for r in doc["breakdown"] if r["flops"] > 0 and r["bytes"] > 0 and r["time_s"] > 0]
    assert points(page, "roofline", "markers") == len(on_roof)
    assert points(page, "memory", "bars") == 4
    assert points(page, "energy", "bars") == 6
    ops = {r["op"] for r in doc["breakdown"]}
    assert points(page, "breakdown", "bars") == 2 * min(len(ops), 13)  # 12 slowest ops and 'other', 2 phases
    screenshot(page, tmp_path, "estimate-llama-3-70b-hgx-h100-tp4")


def test_a_shared_url_reproduces_the_view(page, browser, web_url):
    run_view(page, "estimate", {"model": "mixtral-8x7b", "hardware": "a100-sxm-80gb", "dtype": "fp8", "framework": "vllm"},
             {"num_chips": "2", "tp": "2", "batch": "16"})
    url = page.url
    assert "model=mixtral-8x7b" in url and "tp=2" in url and "dtype=fp8" in url and "framework=vllm" in url
    ttft = page.get_attribute("#v-ttft", "data-value")
    other = browser.new_page()
    other.goto(url)  # a link: nobody touches the form
    wait(other)
    assert other.get_attribute("#v-ttft", "data-value") == ttft
    assert other.input_value("#model") == "mixtral-8x7b" and other.input_value("#dtype") == "fp8"
    assert other.input_value("#framework") == "vllm"
    doc = cli_doc("estimate", "--model", "mixtral-8x7b", "--hardware", "a100-sxm-80gb", "--num-chips", "2", "--tp", "2",
                  "--dtype", "fp8", "--framework", "vllm", "--batch", "16", "--isl", "1024", "--osl", "128")
    assert float(ttft) == doc["ttft_s"]
    other.close()


def test_the_compare_view_puts_three_chips_side_by_side(page, tmp_path):
    run_view(page, "compare", {"model": "llama-3-70b"},
             {"systems": "h100-sxm,b200,mi300x", "compare_num_chips": "4", "tp": "4", "batch": "8", "isl": "1024"})
    rows = cli_doc("compare", "--model", "llama-3-70b", "--systems", "h100-sxm,b200,mi300x", "--num-chips", "4",
                   "--tp", "4", "--batch", "8", "--isl", "1024", "--osl", "128")
    table = page.locator("#compare-table")
    assert table.locator("thead th").all_text_contents() == ["", *[r["system"] for r in rows]]
    ttft_cells = table.locator("tbody tr").nth(4).locator("td")
    assert [float(ttft_cells.nth(i + 1).get_attribute("data-value")) for i in range(3)] == [r["ttft_s"] for r in rows]
    assert points(page, "compare", "bars") == 6 * 3 - sum(r["usd_per_million_tokens"] is None for r in rows)
    screenshot(page, tmp_path, "compare-h100-b200-mi300x")
    # five chips are more than the view puts side by side: refused in one line, no request sent
    page.fill("#systems", "h100-sxm,b200,mi300x,h200-sxm,a100-sxm-80gb")
    page.click("#run")
    wait(page)
    assert page.text_content("#error") == "systems: 5 named; the compare view shows 2 to 4"


def test_the_simulate_view_draws_the_timeline_and_the_distributions(page, tmp_path):
    run_view(page, "simulate", {"model": "llama-3-8b", "hardware": "h100-sxm"},
             {"request_rate": "8", "num_prompts": "400", "isl": "1024", "osl": "128"})
    doc = cli_doc("simulate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--request-rate", "8",
                  "--num-prompts", "400", "--isl", "1024", "--osl", "128")
    assert value(page, "v-completed") == doc["completed"] == 400
    assert value(page, "v-ttft-p50") == doc["ttft_ms"]["p50"]
    assert value(page, "v-tpot-p50") == doc["tpot_ms"]["p50"]
    assert value(page, "v-output-throughput") == doc["output_throughput"]
    assert page.locator("#chart-timeline .scatterlayer .trace").count() == 3  # queue, running, KV cache
    assert page.locator("#chart-timeline .scatterlayer .js-line").count() == 3
    assert points(page, "latency", "bars") > 20
    screenshot(page, tmp_path, "simulate-timeline")


def test_the_pareto_view_shows_the_frontiers_and_the_measured_points(page, tmp_path):
    from infercast.views import measured_points

    run_view(page, "pareto", {"model": "deepseek-v3"},
             {"isl": "1024", "osl": "1024", "chips": "b200,h200-sxm,mi355x,mi300x", "frameworks": "sglang,trtllm,atom"})
    # InferenceX's frameworks, each on the chips it runs on (TensorRT-LLM on NVIDIA's, ATOM on AMD's)
    doc = cli_doc("pareto", "--model", "deepseek-v3", "--isl", "1024", "--osl", "1024", "--hardware",
                  "b200,h200-sxm,mi355x,mi300x", "--framework", "sglang,trtllm,atom")
    assert doc["frameworks"] == ["sglang", "trtllm", "atom"]
    table = page.locator("#pareto-table tbody tr")
    assert table.count() == len(doc["frontiers"])
    measured = measured_points("deepseek-v3", 1024, 1024)
    assert len(measured) > 20  # InferenceX's runs of the model on these chips
    frontier_points = sum(len(f["points"]) for f in doc["frontiers"])
    assert points(page, "pareto", "markers") == frontier_points + len(measured)
    screenshot(page, tmp_path, "pareto-deepseek-v3")


def test_a_bad_value_is_shown_as_the_cli_says_it(page):
    open_page(page, "?view=estimate&model=llama-3-8b&hardware=h100-sxm&tp=3")
    wait(page)
    assert page.get_attribute("body", "data-state") == "error"
    out = CliRunner().invoke(cli, ["estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--tp", "3"])
    assert page.text_content("#error") == f"422: {out.exception}"


def test_a_pasted_config_json_is_estimated(page):
    from infercast.model import preset_config

    open_page(page)
    page.click("#config-box summary")
    page.fill("#config", json.dumps(preset_config("llama-3-8b")))
    page.fill("#config_name", "my-llama")
    page.select_option("#hardware", "h100-sxm")
    page.fill("#batch", "8")
    page.click("#run")
    wait(page)
    doc = cli_doc("estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--batch", "8", "--isl", "1024")
    assert value(page, "v-tpot") == doc["decode"]["tpot_s"]
    assert "config=" in page.url  # the pasted model travels in the link too
