"""The command line for systems and parallel plans: estimate --system/--tp, compare, hardware systems, errors."""

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infercast.cli import cli
from infercast.system import load_system

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SYSTEMS = ["dgx-a100", "gaudi2-8", "gaudi3-8", "gb200-nvl72", "hgx-b200", "hgx-h100", "hgx-h200", "mi300x-8",
           "server-8x-l40s", "server-8x-rtx-4090", "tpu-v5e-256",
           "hgx-b300", "gb300-nvl72", "mi355x-8", "tpu-v6e-256", "trn2-16"]
COMPARE_FIELDS = {"system", "chip", "plan", "fits", "per_chip_gb", "ttft_s", "tpot_s", "e2e_latency_s",
                  "throughput_tokens_per_s", "prefill_bound", "decode_bound", "decode_comm_share",
                  "prefill_comm_share", "usd_per_million_tokens", "joules_per_token"}
# LLaMA-2-70B in FP8 (69 GB of weights, 8.6 GB per chip at tp 8) fits eight 24 GB RTX 4090s and eight H100s
COMPARE = ("compare", "--model", "llama-2-70b", "--systems", "hgx-h100,server-8x-rtx-4090", "--tp", "8",
           "--batch", "64", "--isl", "512", "--osl", "128", "--dtype", "fp8", "--weight-dtype", "fp8")


def run(*args: str) -> str:
    """In-process; a wide terminal so rich never wraps a cell; stdout without colour codes."""
    result = CliRunner(env={"COLUMNS": "300"}).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout)


def run_json(*args: str):
    return json.loads(run(*args, "--output", "json"))


def test_estimate_on_a_named_system_json():
    d = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "4")
    assert d["system"] == "hgx-h100" and d["hardware"] == "h100-sxm"
    par = d["parallel"]
    assert par["tp"] == 4 and par["pp"] == 1 and par["dp"] == 1 and par["ep"] == 1 and par["num_chips"] == 4
    assert par["pp_stages"] == [80] and par["sequence_parallel"] is False
    rows = [r for r in d["breakdown"] if r["op"] == "allreduce"]
    assert {r["phase"] for r in rows} == {"prefill", "decode"}
    nvlink = load_system("hgx-h100").intra_node.name
    assert all(r["bound"] == "communication" and r["tier"] == nvlink for r in rows)
    assert 0 < d["communication_share"]["decode"] < 1
    from infercast.calibration import comm_for

    assert d["comm"] == comm_for().model_dump()  # the shipped calibration's fitted collective parameters
    # rows add up to the end-to-end latency (nothing overlaps by default)
    assert sum(r["time_s"] for r in d["breakdown"]) == pytest.approx(d["e2e_latency_s"], rel=1e-12)


def test_estimate_on_a_named_system_table():
    out = run("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "4", "--output", "table",
              "--breakdown")
    assert "system hgx-h100: tp 4 x pp 1 x dp 1 = 4 chips" in out
    assert "allreduce" in out and "communication" in out
    assert "NVLink 4 via 4 NVSwitch" in out
    assert re.search(r"communication\s+[\d.]+% of prefill, [\d.]+% of decode", out)


def test_estimate_pipeline_flags():
    d = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h200", "--pp", "2", "--pp-stages", "41,39",
                 "--batch", "8", "--micro-batches", "2")
    assert d["parallel"]["pp"] == 2 and d["parallel"]["pp_stages"] == [41, 39]
    assert d["parallel"]["micro_batches"] == 2 and d["parallel"]["num_chips"] == 2
    assert any(r["op"] == "p2p" for r in d["breakdown"])
    sp = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "4", "--sequence-parallel")
    assert sp["parallel"]["sequence_parallel"] is True
    assert {"reduce_scatter", "all_gather"} <= {r["op"] for r in sp["breakdown"]}
    hidden = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "4",
                      "--comm", "overlap=1")
    assert hidden["comm"]["overlap"] == 1.0
    assert all(r["time_s"] == 0 for r in hidden["breakdown"] if r["bound"] == "communication")
    two = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--nodes", "2", "--tp", "16")
    assert two["parallel"]["num_chips"] == 16
    assert any("InfiniBand" in (r["tier"] or "") for r in two["breakdown"])


def test_estimate_auto():
    d = run_json("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--auto", "--batch", "8",
                 "--isl", "1024")
    assert d["parallel"]["num_chips"] == 8 and d["memory"]["fits"]


def test_estimate_on_a_default_system():
    d = run_json("estimate", "--model", "llama-2-70b", "--hardware", "h100-sxm", "--num-chips", "8", "--tp", "8")
    assert d["system"] == "h100-sxm-x8" and d["hardware"] == "h100-sxm"
    assert d["parallel"]["tp"] == 8 and d["parallel"]["num_chips"] == 8
    assert d["memory"]["fits"]
    assert any(r["op"] == "allreduce" and "NVLink" in r["tier"] for r in d["breakdown"])


def test_compare_json():
    rows = json.loads(run(*COMPARE, "--output", "json"))
    assert len(rows) == 2
    h100, rtx = rows
    for row in rows:
        assert set(row) == COMPARE_FIELDS
        assert row["plan"] == "tp8 pp1 ep1 dp1" and row["fits"] is True
        assert 0 < row["per_chip_gb"] < 24 * 0.9
        assert 0 <= row["decode_comm_share"] < 1 and 0 <= row["prefill_comm_share"] < 1
        assert row["e2e_latency_s"] == pytest.approx(row["ttft_s"] + 127 * row["tpot_s"], rel=1e-9)
        assert row["throughput_tokens_per_s"] == pytest.approx(64 * 128 / row["e2e_latency_s"], rel=1e-9)
    assert (h100["system"], h100["chip"]) == ("hgx-h100", "h100-sxm")
    assert (rtx["system"], rtx["chip"]) == ("server-8x-rtx-4090", "rtx-4090")
    assert h100["per_chip_gb"] == pytest.approx(rtx["per_chip_gb"])  # same plan, same bytes per chip
    assert h100["throughput_tokens_per_s"] > rtx["throughput_tokens_per_s"]
    # host-staged PCIe makes the 4090 server's all-reduces a larger part of decode than NVLink's
    assert rtx["decode_comm_share"] > h100["decode_comm_share"]
    assert rtx["decode_bound"] == "communication"


def test_compare_table():
    out = run(*COMPARE, "--output", "table")
    for text in ("hgx-h100", "server-8x-rtx-4090", "rtx-4090", "tp8 pp1 ep1 dp1", "decode_comm_share", "True"):
        assert text in out


def test_compare_accepts_chip_ids_with_num_chips():
    rows = json.loads(run("compare", "--model", "llama-2-7b", "--systems", "h100-sxm,a100-sxm-80gb", "--num-chips",
                          "2", "--tp", "2", "--output", "json"))
    assert [(r["system"], r["chip"]) for r in rows] == [("h100-sxm-x2", "h100-sxm"), ("a100-sxm-80gb-x2",
                                                                                       "a100-sxm-80gb")]


def test_hardware_systems():
    rows = run_json("hardware", "systems")
    assert [r["id"] for r in rows] == sorted(SYSTEMS)
    by_id = {r["id"]: r for r in rows}
    assert by_id["hgx-h100"]["chip"] == "h100-sxm" and by_id["hgx-h100"]["chips_per_node"] == 8
    assert by_id["hgx-h100"]["intra_node"].endswith(": 450 GB/s")
    assert by_id["hgx-h100"]["inter_node"].endswith(": 50 GB/s")
    assert by_id["tpu-v5e-256"]["inter_node"] == "-"
    assert by_id["gb200-nvl72"]["chips_per_node"] == 72
    table = run("hardware", "systems")
    for sid in SYSTEMS:
        assert sid in table


def process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infercast.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize(("args", "expected"), [
    (("compare", "--model", "llama-2-70b", "--systems", "hgx-h100"), ["--systems", "at least two"]),
    (("estimate", "--model", "llama-2-70b", "--system", "nope"), ["unknown system 'nope'", "hardware systems"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h10"), ["did you mean hgx-h100"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--pp", "81"), ["--pp 81", "80 layers"]),
    (("estimate", "--model", "llama-2-7b", "--system", "hgx-h100", "--ep", "2"), ["--ep 2", "dense model"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "16"), ["16 chips", "--nodes"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--pp", "2", "--pp-stages", "1,2"),
     ["--pp-stages 1,2", "summing to 80"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--pp", "2", "--pp-stages", "40,x"),
     ["--pp-stages '40,x'"]),
    (("estimate", "--model", "llama-2-70b", "--system", "tpu-v5e-256", "--nodes", "2"),
     ["--nodes 2", "no inter-node link"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--hardware", "a100-sxm-80gb"),
     ["--hardware a100-sxm-80gb conflicts with --system hgx-h100"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--sequence-parallel"),
     ["--sequence-parallel"]),
    (("estimate", "--model", "llama-2-70b", "--system", "hgx-h100", "--tp", "4", "--comm", "overlap=2"),
     ["--comm overlap"]),
])
def test_bad_input_is_one_line_and_exit_2(args, expected):
    done = process(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:")
    for text in expected:
        assert text in lines[0]
