"""``infercast simulate`` end to end: the JSON contract, the table, the flags, one-line errors."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from infercast import serving
from infercast.cli import cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BASE = ("simulate", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb")


def run(*args: str) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout)


def process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from infercast.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def issue_run():
    # the run of issue 7: LLaMA-2-7B on one A100 80GB, 4 requests/s, 2000 prompts of 512 + 128 tokens
    return json.loads(run(*BASE, "--request-rate", "4", "--num-prompts", "2000", "--isl", "512", "--osl", "128",
                          "--goodput", "ttft:500", "tpot:50", "--output", "json"))


def test_json_has_every_metric(issue_run):
    r = issue_run
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
        assert set(r[key]) == {"mean", "p50", "p90", "p99"}
        assert 0 < r[key]["p50"] <= r[key]["p90"] <= r[key]["p99"]
    for key in ("request_throughput", "output_throughput", "total_token_throughput", "duration_s", "completed",
                "preemptions", "steps"):
        assert key in r
    assert r["completed"] == 2000
    # an open loop below capacity delivers what is offered: 4 requests/s, 512 output tokens/s
    assert r["request_throughput"] == pytest.approx(4, rel=0.05)
    assert r["output_throughput"] == pytest.approx(4 * 128, rel=0.05)
    assert r["goodput"]["slo_ms"] == {"ttft": 500, "tpot": 50}
    assert set(r["kv_cache"]) == {"num_blocks", "mean_usage", "max_usage"}
    assert set(r["queue"]) == {"mean_waiting", "max_waiting", "mean_running"}
    assert r["engine"]["num_gpu_blocks"] == 7418 and r["engine"]["max_num_batched_tokens"] == 8192
    assert r["workload"]["request_rate"] == 4 and r["parallel"]["dp"] == 1


def test_the_python_api_gives_the_same_document(issue_run):
    r = serving.simulate("llama-2-7b", "a100-sxm-80gb", request_rate=4, num_prompts=2000, isl=512, osl=128,
                         goodput={"ttft": 500, "tpot": 50})
    assert json.loads(json.dumps(r.to_dict())) == issue_run


def test_the_public_api_is_small():
    assert set(serving.__all__) == {"EngineConfig", "EngineTrace", "RateSearch", "Requests", "Server",
                                    "SimResult", "StepTime", "Workload", "deployment", "find_max_rate", "max_rate",
                                    "requests_for", "server", "simulate", "split_options", "step_time"}


def test_table_output():
    out = run(*BASE, "--num-prompts", "100", "--isl", "256", "--osl", "32", "--goodput", "ttft:300")
    for label in ("TTFT ms", "TPOT ms", "ITL ms", "E2EL ms", "goodput", "KV cache", "offline (all at t = 0)"):
        assert label in out


def test_flags_reach_the_engine_and_the_workload():
    r = json.loads(run(*BASE, "--num-prompts", "300", "--request-rate", "8", "--burstiness", "0.5", "--isl", "300",
                       "--osl", "50", "--isl-dist", "uniform", "--osl-dist", "lognormal", "--length-spread", "0.4",
                       "--max-num-seqs", "32", "--max-num-batched-tokens", "1024", "--num-chips", "2", "--dp", "2",
                       "--routing", "least-outstanding", "--seed", "3", "--dtype", "fp16", "--output", "json"))
    assert r["engine"]["max_num_seqs"] == 32 and r["engine"]["max_num_batched_tokens"] == 1024
    assert r["workload"]["routing"] == "least-outstanding" and r["workload"]["isl_dist"] == "uniform"
    assert r["parallel"]["dp"] == 2 and r["queue"]["mean_running"] <= 64
    first = json.loads(run(*BASE, "--num-prompts", "100", "--no-chunked-prefill", "--output", "json"))
    assert first["engine"]["chunked_prefill"] is False and first["engine"]["max_num_batched_tokens"] == 4096


def test_prefix_caching_lowers_ttft():
    kw = ("--num-prompts", "300", "--request-rate", "10", "--isl", "1024", "--osl", "32", "--prefix-len", "768",
          "--output", "json")
    plain = json.loads(run(*BASE, *kw))
    cached = json.loads(run(*BASE, *kw, "--enable-prefix-caching"))
    assert cached["ttft_ms"]["mean"] < 0.6 * plain["ttft_ms"]["mean"]


def test_trace_and_timeline(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,isl,osl\n0,100,10\n0.05,200,20\n0.5,50,5\n")
    timeline = tmp_path / "steps.csv"
    r = json.loads(run(*BASE, "--trace", str(trace), "--timeline-csv", str(timeline), "--output", "json"))
    assert r["completed"] == 3 and r["workload"]["num_prompts"] == 3
    rows = list(csv.DictReader(timeline.read_text().splitlines()))
    assert len(rows) == r["steps"] and {"waiting", "running", "kv_usage", "preempted"} <= set(rows[0])
    done = process(*BASE, "--trace", str(trace), "--timeline-csv", str(timeline))
    assert done.returncode == 2 and "--force" in done.stderr
    run(*BASE, "--trace", str(trace), "--timeline-csv", str(timeline), "--force")


def test_find_max_rate_json():
    r = json.loads(run(*BASE, "--find-max-rate", "--slo", "ttft_p99:500,tpot_p99:50", "--num-prompts", "600",
                       "--isl", "256", "--osl", "64", "--tolerance", "0.05", "--output", "json"))
    assert r["max_request_rate"] > 0 and r["slo_ms"] == {"ttft_p99": 500, "tpot_p99": 50}
    assert r["at_max"]["ttft_ms"]["p99"] <= 500 and all("meets" in p for p in r["probes"])
    out = run(*BASE, "--find-max-rate", "--num-prompts", "300", "--isl", "256", "--osl", "64", "--tolerance", "0.1")
    assert "max request rate meeting ttft_p99 <= 2000 ms, tpot_p99 <= 200 ms" in out


@pytest.mark.parametrize("args,expected", [
    (("--request-rate", "-1"), "--request-rate: must be a positive number"),
    (("--request-rate", "0"), "--request-rate: must be a positive number"),
    (("--num-prompts", "0"), "--num-prompts: "),
    (("--request-rate", "2", "--offline"), "drop --request-rate"),
    (("--isl", "4000", "--osl", "200"), "max-model-len 4096"),
    (("--goodput", "ttft=500"), "--goodput 'ttft=500'"),
    (("--slo", "p99:5", "--find-max-rate"), "--slo 'p99:5'"),
    (("--max-num-seqs", "512", "--max-num-batched-tokens", "256"), "below --max-num-seqs"),
    (("--enable-prefix-caching", "--prefix-len", "2000", "--isl", "512"), "--prefix-len 2000"),
    (("--trace", "nowhere.csv"), "--trace: no such file"),
    (("--num-chips", "2", "--dp", "3"), "needs tp x pp x dp = 3 chips"),
    (("tpot:50",), "unexpected argument 'tpot:50'"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected):
    done = process(*BASE, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr


def test_a_trace_with_a_bad_column_names_it(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,isl,osl\n0,10,10\n")
    done = process(*BASE, "--trace", str(bad))
    assert done.returncode == 2 and "missing column(s) arrival_s" in done.stderr
