"""Chip designs (infercast.design), on-chip tiling (infercast.tiling) and what-ifs (infercast.whatif)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import InfercastError, estimate, evaluate, resolve
from infercast.design import (
    Knobs,
    area_mm2,
    cost_usd,
    derive_chip,
    design_ids,
    die_yield,
    dies_per_wafer,
    harvested_yield,
    load_design,
    load_hardware,
    microarch_table,
    modify,
)
from infercast.hardware import load_chip
from infercast.roofline import ChipRates, OpTable
from infercast.tiling import BUFFER_SHARE, attention_rereads, dram_traffic, gemm_dram_bytes, gemm_rereads
from infercast.whatif import parse_axis, s30_bert_comparison, s30_comparison, whatif

H100 = "src/infercast/catalog/designs/h100-sxm-design.yaml"


# --- the spec ----------------------------------------------------------------------------------------------------


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "design.yaml"
    path.write_text(text)
    return str(path)


def _h100_text() -> str:
    from importlib import resources

    return (resources.files("infercast") / "catalog" / "designs" / "h100-sxm-design.yaml").read_text()


@pytest.mark.parametrize("change, named", [
    (("clock_hz: 1.83e+9", "clok_hz: 1.83e+9"), "compute.clok_hz: unknown key"),
    (("die_area_mm2: 814", "die_area_mm: 814"), "die_area_mm: unknown key"),
    (("clock_hz: 1.83e+9", "clock_hz: -1"), "compute.clock_hz"),
    (("    fp16: 512\n", "    fp15: 512\n"), "macs_per_core_per_clock.fp15: unknown format"),
    (("type: HBM3\n", "type: HBM9\n"), "type: unknown memory 'HBM9'"),
    (("units_physical: 144", "units_physical: 100"), "units_physical: 100 is below the 132 units"),
    (("{name: l2, bytes: 50.0e+6}", "{name: l2, bytes: 50.0e+6, bytes_per_unit: 10}"),
     "give exactly one of bytes_per_unit or bytes"),
    (("process_nm: 4 ", "process_nm: 1 "), "process_nm"),
])
def test_a_bad_design_is_one_line_naming_the_key(tmp_path, change, named):
    text = _h100_text()
    assert change[0] in text
    path = _write(tmp_path, text.replace(change[0], change[1], 1))
    with pytest.raises(InfercastError) as exc:
        load_hardware(path)
    message = str(exc.value)
    assert named in message and "\n" not in message and message.startswith(f"--hardware {path}")


def test_a_bad_design_on_the_command_line_exits_2_with_one_line(tmp_path):
    path = _write(tmp_path, _h100_text().replace("clock_hz: 1.83e+9", "clok_hz: 1.83e+9"))
    r = subprocess.run([sys.executable, "-m", "infercast", "estimate", "--model", "llama-3-8b", "--hardware", path],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "compute.clok_hz: unknown key" in r.stderr


def test_every_shipped_design_derives_a_valid_chip():
    for name in design_ids():
        chip = derive_chip(load_design(name))
        assert chip.id == name and chip.tdp_w.value and chip.price_usd.value and chip.peak_flops


# --- peaks from the microarchitecture ------------------------------------------------------------------------------


@pytest.mark.parametrize("chip, design, formats", [
    ("h100-sxm", "h100-sxm-design", ("bf16", "fp16", "fp8", "int8", "tf32")),
    ("b200", "b200-design", ("bf16", "fp8", "fp4")),
    ("mi355x", "mi355x-design", ("bf16", "fp8", "fp4")),
])
def test_design_peaks_reproduce_the_catalog_within_1_percent(chip, design, formats):
    derived, catalog = derive_chip(load_design(design)), load_chip(chip)
    for fmt in formats:
        assert getattr(derived.peak_flops, fmt).value == pytest.approx(catalog.peak(fmt), rel=0.01)


def test_microarch_table_covers_every_row():
    rows = {r["chip"]: r for r in microarch_table()}
    assert set(rows) == {"h100-sxm", "h200-sxm", "b200", "b300", "gb300", "mi300x", "mi325x", "mi350x", "mi355x",
                         "rtx-5090"}
    for r in rows.values():
        assert abs(r["error_vs_catalog"]) < 0.01
    # H100: 132 SMs x 4 tensor cores x 512 FMA x 2 x 1.83 GHz = 989.4 TF, the CSV's own clock
    assert rows["h100-sxm"]["design_tflops"] == pytest.approx(132 * 4 * 512 * 2 * 1.83e9 / 1e12)
    assert rows["h100-sxm"]["clock_from_csv"]
    # B200 at the CSV's 1.965 GHz overshoots the 2,250 TF spec by 5.9%: its design takes the spec's clock
    assert not rows["b200"]["clock_from_csv"] and rows["b200"]["at_csv_clock_tflops"] == pytest.approx(2382.4, rel=1e-3)
    # the RTX 5090's CSV check is the FP16-accumulate rate, twice the catalog's FP32-accumulate peak
    assert rows["rtx-5090"]["error_vs_csv_check"] == pytest.approx(-0.5, abs=1e-3)


# --- a design and a catalog chip are interchangeable ------------------------------------------------------------------


@pytest.mark.parametrize("kw", [dict(model="llama-3-8b", batch=8, isl=512, osl=128),
                                dict(model="llama-3-70b", tp=4, batch=32, isl=1024, osl=256, dtype="fp8")])
def test_the_h100_design_estimates_as_the_catalog_h100(kw):
    # same figures (the catalog's street price too): the same estimate, to the rounding of 989.43 vs 989.4 TF
    a = estimate(hardware="h100-sxm", **kw)
    b = estimate(hardware="h100-sxm-design", chip={"price": 30000}, **kw)
    for get in (lambda r: r.ttft_s, lambda r: r.tpot_s, lambda r: r.energy.joules_per_token,
                lambda r: r.cost.usd_per_million_tokens, lambda r: r.memory.total_per_chip_bytes):
        assert get(b) == pytest.approx(get(a), rel=1e-3)
    assert b.hardware == "h100-sxm-design"


def test_chip_changes_on_a_catalog_chip():
    base = load_chip("h100-sxm")
    fast = load_hardware("h100-sxm", {"clock": "2x", "dram_bandwidth": "4e12", "fp4_units": "2"})
    assert fast.peak("bf16") == pytest.approx(2 * base.peak("bf16"))
    assert fast.memory.bandwidth_bytes_per_s.value == 4e12
    assert fast.peak_flops.fp4.value == pytest.approx(2 * fast.peak("fp8"))
    assert load_hardware("h100-sxm", {"peak_flops.fp8": "3e15"}).peak("fp8") == 3e15
    for bad, named in ((("clok", "2x"), "--chip clok: unknown key"), (("clock", "fast"), "--chip clock='fast'"),
                       (("sram_bandwidth", "2x"), "is unknown, so a ratio has nothing to scale"),
                       (("tdp", "-5"), "--chip tdp=-5: must be a positive")):
        with pytest.raises(InfercastError, match=named.replace("(", r"\(")):
            load_hardware("h100-sxm", {bad[0]: bad[1]})


def test_chip_changes_on_a_design_rederive_area_cost_and_power():
    d = load_design("h100-sxm-design")
    bigger = modify(d, {"sram_bytes": "4x"})
    assert area_mm2(bigger) > area_mm2(d) and cost_usd(bigger).total_usd > cost_usd(d).total_usd
    assert derive_chip(bigger).on_chip_sram_bytes.value == 200e6
    node = modify(modify(d, {"tdp": "1"}), {"process_nm": "7"})  # a smaller TDP does not change the area
    assert area_mm2(node) > area_mm2(d)  # 7 nm is less dense than 4 nm


# --- the die cost and yield models, by hand -------------------------------------------------------------------------


def test_dies_per_wafer_by_hand():
    # 300 mm wafer less 3 mm edge: d = 294 mm; a 10 mm die plus a 0.1 mm scribe lane: A = 10.1^2 = 102.01 mm^2;
    # pi 294^2 / (4 x 102.01) - pi 294 / sqrt(2 x 102.01) = 665.47 - 64.66 = 600.8 -> 600
    assert dies_per_wafer(100.0) == 600.0


def test_yield_models_by_hand():
    # 1 cm^2 at 0.1 defects/cm^2: negative binomial (1 + 0.1 / 3)^-3 = 0.906314; Murphy ((1 - e^-0.1) / 0.1)^2
    assert die_yield(100.0, 0.1) == pytest.approx(1.0333333333**-3, rel=1e-9)
    assert die_yield(100.0, 0.1) == pytest.approx(0.906314, abs=1e-6)
    assert die_yield(100.0, 0.1, "murphy") == pytest.approx(0.905592, abs=1e-6)
    assert die_yield(100.0, 0.0) == 1.0 and die_yield(100.0, 0.0, "murphy") == 1.0
    # a die of two 40 mm^2 units and 20 mm^2 of the rest, one unit spare (Poisson-like alpha huge):
    # rest e^-0.02; a unit good with y = e^-0.04; P(at most one of two hit) = y^2 + 2 y (1 - y)
    y, rest = math.exp(-0.04), math.exp(-0.02)
    got = harvested_yield(100.0, 40.0, 2, 1, 0.1, alpha=1e9)
    assert got == pytest.approx(rest * (y**2 + 2 * y * (1 - y)), rel=1e-6)
    assert harvested_yield(100.0, 40.0, 2, 0, 0.1, alpha=1e9) == pytest.approx(math.exp(-0.1), rel=1e-6)


def test_design_cost_parts_add_up():
    c = cost_usd(load_design("h100-sxm-design"))
    assert c.area_mm2 == pytest.approx(814.0)
    assert c.die_usd == pytest.approx(16988.0 / (c.dies_per_wafer * c.yield_))
    assert c.dram_usd == pytest.approx(80 * 15.0)  # 5 x 16 GB of HBM3 at USD 15/GB
    assert c.total_usd == pytest.approx(c.die_usd + c.dram_usd + c.packaging_usd + c.board_usd)
    # the area model is fitted to GH100 and checked on GA100 (826 mm^2, A100 whitepaper)
    assert area_mm2(load_design("a100-sxm-80gb-design")) == pytest.approx(826, rel=0.15)


# --- SRAM and DRAM traffic ---------------------------------------------------------------------------------------------


def test_a_gemm_whose_operands_fit_pays_compulsory_traffic_only():
    M, N, K = 2048.0, 4096.0, 4096.0  # A 16 MB, B 32 MB, C 16 MB in FP16
    compulsory = 2 * (M * K + K * N + M * N)
    assert gemm_dram_bytes(M, N, K, 1e9) == compulsory  # every operand fits the buffer
    assert gemm_dram_bytes(M, N, K, 2 * 16.8e6 / BUFFER_SHARE) == compulsory  # A alone fits: B streams once
    assert gemm_dram_bytes(1.0, 28672.0, 8192.0, 1e6) == 2 * (8192 + 8192 * 28672 + 28672)  # a decode GEMV


def test_the_classic_blocked_gemm_rereads():
    # square tiles of s = share x S / 4 accumulators: m = n = sqrt(s); A re-read N/n times, B M/m times
    M = N = K = 16384.0
    S = 8e6
    s = BUFFER_SHARE * S / 4
    t = math.sqrt(s)
    extra = 2 * M * K * (N / t - 1) + 2 * K * N * (M / t - 1)  # FP16 operands
    assert gemm_rereads(M, N, K, 2 * M * K, 2 * K * N, BUFFER_SHARE * S) == pytest.approx(extra)
    # = 2 M N K b / sqrt(s) beyond one read of each
    assert extra == pytest.approx(2 * M * N * K * 2 / t - 2 * (2 * M * K), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(M=st.floats(1, 1e6), N=st.floats(1, 1e6), K=st.floats(1, 1e5), a=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
       w=st.sampled_from([0.5, 1.0, 2.0]), S=st.floats(1e3, 1e11), q=st.floats(1e2, 1e9))
def test_halving_the_sram_never_reduces_traffic(M, N, K, a, w, S, q):
    big = gemm_dram_bytes(M, N, K, S, a=a, w=w)
    small = gemm_dram_bytes(M, N, K, S / 2, a=a, w=w)
    assert small >= big * (1 - 1e-12)
    assert big >= (M * K * a + K * N * w + M * N * 2.0) * (1 - 1e-12)  # never below compulsory
    assert attention_rereads(1e6, q, S / 2) >= attention_rereads(1e6, q, S)


def test_a_chip_without_sram_keeps_its_table():
    sc = resolve("llama-3-8b", "moffett-s30")  # its SRAM is unknown in the catalog
    from infercast.evaluation import Pricer

    pr = Pricer(sc)
    ops = pr.stage_ops(sc.groups[0], 16.0, 2048.0, 2048.0)
    table = OpTable.of(ops)
    assert dram_traffic(table, pr.rates, pr.weights_bytes) is table


def test_prefill_rereads_grow_as_the_sram_shrinks_and_the_roofline_sees_them():
    sc = resolve("llama-3-8b", "h100-sxm")
    sram = np.array([1e6, 50e6, 1e9])
    cols = evaluate(sc, batch=np.full(3, 16.0), isl=2048, osl=2, rates={"sram_bytes": sram})
    b = cols["prefill.bytes"]
    assert b[0] > b[1] >= b[2]


def test_resident_weights_leave_dram():
    # GPT-2-XL's 3.2 GB of FP16 weights fit 80% of 5 GB of SRAM at 100 TB/s: decode reads them from SRAM
    base = load_hardware("h100-sxm-design")
    resident = load_hardware("h100-sxm-design", {"sram_bytes": "5e9", "sram_bandwidth": "100e12"})
    a = estimate("gpt-2-xl", base, batch=1, isl=128, osl=64)
    b = estimate("gpt-2-xl", resident, batch=1, isl=128, osl=64)
    assert b.decode.bytes < 0.2 * a.decode.bytes and b.tpot_s < a.tpot_s


# --- what-ifs ----------------------------------------------------------------------------------------------------------


def test_parse_axis_forms():
    hw = load_design("h100-sxm-design")
    bw = Knobs.of(hw).dram_bw
    a = parse_axis("dram_bandwidth=0.5x..4x", hw)
    assert a.values == pytest.approx((0.5 * bw, bw, 2 * bw, 4 * bw)) and a.labels == ("0.5x", "1x", "2x", "4x")
    assert len(parse_axis("sram_bytes=1e6..1e9:4", hw).values) == 4
    assert parse_axis("batch=1,64", hw).values == (1.0, 64.0)


WHATIF = ["whatif", "--model", "llama-3-8b", "--hardware", "h100-sxm-design"]


@pytest.mark.parametrize("args, named", [
    (["--vary", "dram_bandwith=2x"], "--vary dram_bandwith: unknown axis (did you mean dram_bandwidth"),
    (["--vary", "dram_bandwidth"], "expected KEY=VALUES"),
    (["--vary", "dram_bandwidth=4x..1x"], "the range must run from a positive low end"),
    (["--vary", "clock=0.5x..2x:1"], "take 2 to 1000 steps"),
    (["--vary", "batch=0.5"], "--vary batch=0.5: expected a whole number"),
    (["--vary", "clock=2x", "--vary", "clock=3x"], "--vary clock: given twice"),
    (["--vary", "sram_bytes=1x,1x"], "a value is given twice"),
    ([], "give at least one --vary"),
    (["--vary", "clock=2x", "--chip", "clok=2"], "--chip clok: unknown key"),
])
def test_whatif_bad_input_is_one_line_and_exit_2(args, named):
    r = subprocess.run([sys.executable, "-m", "infercast", *WHATIF, *args], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert named in r.stderr


def test_whatif_needs_a_base_chip():
    r = subprocess.run([sys.executable, "-m", "infercast", "whatif", "--model", "llama-3-8b", "--vary", "clock=2x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "give --hardware" in r.stderr


def test_whatif_command_runs_with_every_flag_at_its_default_and_takes_beam_search():
    # the command passes every workload flag to whatif(), beam width and parallel sampling included (they reach
    # evaluate(), not resolve()); a JSON document equal to the library's, and beams priced as estimate prices them
    import json

    from click.testing import CliRunner

    from infercast.cli import cli

    args = [*WHATIF, "--batch", "8", "--isl", "512", "--osl", "64", "--vary", "dram_bandwidth=1x,2x"]
    r = CliRunner().invoke(cli, [*args, "--output", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc == json.loads(json.dumps(whatif("llama-3-8b", "h100-sxm-design", ["dram_bandwidth=1x,2x"], batch=8,
                                                isl=512, osl=64)))
    r = CliRunner().invoke(cli, [*args, "--beam-width", "4", "--output", "json"])
    assert r.exit_code == 0, r.output
    beams = json.loads(r.output)["base"]
    e = estimate("llama-3-8b", "h100-sxm-design", batch=8, isl=512, osl=64, beam_width=4)
    assert beams["tpot_s"] == pytest.approx(e.tpot_s, rel=1e-9) and beams["tpot_s"] > doc["base"]["tpot_s"]


def test_whatif_points_equal_the_estimate_of_the_changed_design():
    doc = whatif("llama-3-8b", "h100-sxm-design", ["sram_bytes=0.5x,4x", "dram_bandwidth=2x"], batch=8, isl=512,
                 osl=64)
    assert len(doc["points"]) == 2
    for p in doc["points"]:
        r = estimate("llama-3-8b", "h100-sxm-design", batch=8, isl=512, osl=64,
                     chip={"sram_bytes": p["sram_bytes"], "dram_bandwidth": "2x"})
        assert p["tpot_s"] == pytest.approx(r.tpot_s, rel=1e-9)
        assert p["ttft_s"] == pytest.approx(r.ttft_s, rel=1e-9)
        assert p["usd_per_million_tokens"] == pytest.approx(r.cost.usd_per_million_tokens, rel=1e-9)
        assert p["joules_per_token"] == pytest.approx(r.energy.joules_per_token, rel=1e-9)


def test_whatif_tornado_and_bindings():
    doc = whatif("llama-3-8b", "h100-sxm", ["dram_bandwidth=0.5x..4x", "clock=1x,2x", "batch=1,64"], isl=512, osl=64)
    assert len(doc["points"]) == 4 * 2 * 2
    assert {p["binding"] for p in doc["points"]} <= {"compute", "memory", "overhead", "communication", "power",
                                                     "capacity"}
    t = {r["axis"]: r for r in doc["tornado"]}
    assert t["dram_bandwidth"]["tpot_s_change_high"] < 0 < t["dram_bandwidth"]["tpot_s_change_low"]
    assert t["clock"]["ttft_s_change_high"] < 0  # a compute-bound prefill
    swings = [r["swing"] for r in doc["tornado"]]
    assert swings == sorted(swings, reverse=True)


def test_whatif_fp4_units_are_their_own_scenario():
    doc = whatif("llama-3-8b", "h100-sxm", ["fp4_units=0,2"], batch=64, isl=1024, osl=16, weight_dtype="fp4",
                 act_dtype="fp4")
    off, on = doc["points"]
    assert on["ttft_s"] < off["ttft_s"]  # the compute-bound prefill runs on the FP4 units


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_matplotlib(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    from infercast.whatif import plot_tornado

    with pytest.raises(InfercastError, match=r'pip install "infercast\[plots\]"'):
        plot_tornado({"tornado": []}, str(tmp_path / "t.png"))


def test_s30_against_h100_on_bloom_decode():
    rows = s30_comparison(batches=(1,), sparsities=(0.0, 0.75))
    s30 = {r["sparsity"]: r for r in rows if r["chip"] == "moffett-s30-design"}
    h100 = {r["sparsity"]: r for r in rows if r["chip"] == "h100-sxm-design"}
    assert s30[0.75]["tokens_per_s_per_stream"] > s30[0.0]["tokens_per_s_per_stream"]
    assert h100[0.0]["tokens_per_s_per_stream"] > s30[0.75]["tokens_per_s_per_stream"]  # bandwidth-bound decode
    assert all(r["decode_bound"] == "memory" for r in rows)


def test_design_rates_on_arrays_match_one_design():
    from infercast.whatif import knob_rates

    d = load_design("h100-sxm-design")
    arrays = knob_rates(d, {"sram_bytes": np.array([25e6, 100e6]), "process_nm": np.array([4.0, 3.0])})
    one = derive_chip(modify(d, {"sram_bytes": "100e6", "process_nm": "3"}))
    assert arrays["price_usd"][1] == pytest.approx(one.price_usd.value, rel=1e-9)
    assert arrays["sram_bytes"][1] == ChipRates.of(one).sram_bytes


def test_hardware_designs_and_show_a_design():
    from infercast.documents import chip_document, designs_document

    rows = {r["id"]: r for r in designs_document()}
    assert set(rows) == set(design_ids()) and rows["h100-sxm-design"]["area_mm2"] == pytest.approx(814)
    assert chip_document("h100-sxm-design")["peak_flops"]["bf16"]["value"] == pytest.approx(989.43e12, rel=1e-4)


def test_plot_tornado_writes_a_chart(tmp_path):
    pytest.importorskip("matplotlib")
    from infercast.whatif import plot_tornado

    doc = whatif("llama-3-8b", "h100-sxm", ["dram_bandwidth=0.5x,2x"], batch=4, isl=256, osl=32)
    path = tmp_path / "tornado.png"
    plot_tornado(doc, str(path))
    assert path.stat().st_size > 1000


def test_s30_against_h100_on_bert_large():
    """BERT-Large is compute-bound on both: the S30's sparse units raise its rate with sparsity (until its
    300 GB/s binds), and the dense H100 design equals the catalog H100 (C14's figure: the same engine)."""
    from infercast.passes import MLPERF_BERT_TOKENS, best_batch

    rows = s30_bert_comparison(sparsities=(0.0, 0.75))
    s30 = {r["sparsity"]: r for r in rows if r["chip"] == "moffett-s30-design"}
    h100 = {r["sparsity"]: r for r in rows if r["chip"] == "h100-sxm-design"}
    assert s30[0.75]["samples_per_s"] > 2 * s30[0.0]["samples_per_s"]
    assert s30[0.0]["bound"] == "compute" and h100[0.0]["bound"] == "compute"
    assert h100[0.5]["samples_per_s"] > h100[0.0]["samples_per_s"] > s30[0.75]["samples_per_s"]
    _, catalog = best_batch(resolve("bert-large", "h100-sxm", dtype="int8"), seq_len=round(MLPERF_BERT_TOKENS))
    assert h100[0.0]["samples_per_s"] == pytest.approx(catalog["samples_per_s"], rel=1e-3)
