"""Issue 12: the simulator never rewrites the workload without a word.

A run either refuses its input with one line naming the flag and the fix (exit 2), or simulates it
and reports what it did: the lengths it realised (mean, min, max) and the requests clipping touched.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import cli_run
from infercast import serving
from infercast.errors import InfercastError
from infercast.serving import scenarios
from infercast.serving.metrics import check_finite
from infercast.serving.workload import MAX_CLIPPED_SHARE, Workload, synthetic

BASE = ("simulate", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb")  # context 4096


def run_main(*args: str) -> tuple[int, str, str]:
    """``infercast`` in-process, as a user runs it: (exit code, stdout, stderr); no exception escapes."""
    code, out, err, escaped = cli_run.run_main(list(args))
    if escaped:
        pytest.fail(escaped)
    return code, out, err


def no_constants(name: str):
    raise ValueError(f"{name} in the JSON")


def strict_json(text: str) -> dict:
    return json.loads(text, parse_constant=no_constants)


def ok_json(*args: str) -> dict:
    code, out, err = run_main(*BASE, *args, "--output", "json")
    assert code == 0, err
    return strict_json(out)


def refused(*args: str) -> str:
    """The one error line of a refused run."""
    code, out, err = run_main(*BASE, *args)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    return lines[0]


def test_a_trace_row_longer_than_the_context_is_refused_not_clipped(tmp_path):
    # it used to become 4,095 input tokens and 1 output token (the clip to max-model-len), without a word
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,isl,osl\n0,100,10\n0.5,9000,100\n1,5000,5\n")
    line = refused("--trace", str(trace))
    assert "line 3: isl 9000 + osl 100 = 9100 tokens exceeds max-model-len 4096 (2 of 3 rows do)" in line
    lengths = tmp_path / "lengths.csv"
    lengths.write_text("isl,osl\n100,10\n4000,200\n")
    assert "line 3: isl 4000 + osl 200" in refused("--lengths", str(lengths))


def test_a_wide_lognormal_spread_is_refused_with_a_spread_that_fits():
    # sigma 5 around 1024 tokens: the median prompt was 1 token and the mean 28, reported as isl 1024
    line = refused("--isl-dist", "lognormal", "--length-spread", "5", "--num-prompts", "2000")
    assert "--length-spread 5: 82.5% of the requests (1,651 of 2,000) draw a length below 1 token or beyond " \
           "max-model-len 4096" in line
    suggested = line.split("use --length-spread ")[1].split()[0]
    r = ok_json("--isl-dist", "lognormal", "--length-spread", suggested, "--num-prompts", "2000")
    w = r["workload"]
    assert w["clipped"] <= MAX_CLIPPED_SHARE * 2000
    assert w["realised"]["isl_mean"] == pytest.approx(1024, rel=0.05)
    assert w["realised"]["isl_mean"] == r["total_input_tokens"] / 2000


def test_a_normal_spread_reports_its_realised_mean_and_what_it_clipped():
    r = ok_json("--osl-dist", "normal", "--length-spread", "0.4", "--num-prompts", "2000", "--isl", "256")
    w = r["workload"]
    assert 0 < w["clipped"] <= 20  # 0.6% of the draws fall below half a token
    assert w["realised"]["osl_min"] == 1 and w["realised"]["osl_mean"] == r["total_output_tokens"] / 2000
    assert w["realised"]["osl_mean"] == pytest.approx(128, abs=3)
    # at the context's edge the clip cut every long output: the mean fell to ~115 and was reported as 128
    line = refused("--isl", "3968", "--osl", "128", "--osl-dist", "normal")
    assert "--length-spread 0.25: 5" in line and "or shorter --isl/--osl" in line


def test_a_trace_refuses_the_flags_it_replaces_and_the_header_describes_it(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,isl,osl\n0,100,10\n1,300,30\n2,200,20\n")
    for flag, value in (("--request-rate", "5"), ("--num-prompts", "50"), ("--isl", "512"), ("--seed", "1")):
        assert f"so {flag} would be ignored; drop {flag}" in refused("--trace", str(trace), flag, value)
    assert "drop --request-rate (or --offline)" in refused("--trace", str(trace), "--offline")
    w = ok_json("--trace", str(trace))["workload"]
    assert w["trace"] == str(trace) and w["num_prompts"] == 3 and w["request_rate"] == 1.0
    assert w["arrival_span_s"] == 2.0 and "isl" not in w and "isl_dist" not in w
    assert w["realised"] == {"isl_mean": 200.0, "isl_min": 100, "isl_max": 300,
                             "osl_mean": 20.0, "osl_min": 10, "osl_max": 30}
    code, out, _ = run_main(*BASE, "--trace", str(trace))
    assert code == 0 and ": 3 prompts over 2.0 s, mean 1 req/s, isl mean 200.0 (100-300), osl mean 20.0 (10-30)" \
        in " ".join(out.split())


@pytest.mark.parametrize("caching", [(), ("--enable-prefix-caching",)])
def test_a_prefix_longer_than_the_prompt_is_refused(caching):
    line = refused("--prefix-len", "5000", "--isl", "1024", *caching)
    assert "--prefix-len 5000 must be shorter than every prompt" in line


def test_request_rate_inf_is_offline_as_in_vllm():
    inf = ok_json("--request-rate", "inf", "--num-prompts", "50", "--isl", "128", "--osl", "16")
    plain = ok_json("--num-prompts", "50", "--isl", "128", "--osl", "16")
    assert inf["workload"]["request_rate"] is None and inf == plain
    assert "--request-rate: must be a positive number" in refused("--request-rate", "nan")


@pytest.mark.parametrize("args,expected", [
    (("--num-prompts", "1000000000000"), "--num-prompts: at most 10,000,000 requests a run"),
    (("--seed", "-1"), "--seed: "),
    (("--request-rate", "1e-300", "--num-prompts", "10"), "beyond the 1e+09 s the simulator takes"),
    (("--length-spread", "inf"), "--length-spread: "),
    (("--burstiness", "inf", "--request-rate", "2"), "--burstiness: "),
    (("--find-max-rate", "--request-rate", "3"), "drop --request-rate"),
    (("--lengths", "any.csv", "--osl", "64"), "--lengths gives every length, so --osl would be ignored"),
])
def test_bounds_are_one_line(args, expected):
    assert expected in refused(*args)


def test_a_trace_arriving_beyond_1e9_seconds_is_refused(tmp_path):
    trace = tmp_path / "far.csv"
    trace.write_text("arrival_s,isl,osl\n0,100,10\n1e300,100,10\n")
    assert "line 3: arrival_s must be seconds from the start of the run, from 0 to 1e+09" in refused(
        "--trace", str(trace))


def test_timeline_csv_is_checked_before_the_run(tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the simulation ran before --timeline-csv was checked")

    monkeypatch.setattr(serving, "simulate", never)
    monkeypatch.setattr("infercast.serving.search.find_max_rate", never)
    (tmp_path / "taken.csv").write_text("mine\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for path, expected in ((str(tmp_path), "is a folder"), (str(tmp_path / "taken.csv"), "--force"),
                               (str(locked / "t.csv"), "is not writable"), ("", "the path is empty")):
            assert expected in refused("--timeline-csv", path)
            assert expected in refused("--timeline-csv", path, "--find-max-rate")
    finally:
        locked.chmod(0o755)
    assert (tmp_path / "taken.csv").read_text() == "mine\n"


def test_long_runs_and_rate_searches_report_progress_on_stderr():
    code, out, err = run_main(*BASE, "--num-prompts", "100000", "--isl", "16", "--osl", "2", "--output", "json")
    assert code == 0 and strict_json(out)["completed"] == 100_000
    lines = err.splitlines()
    assert lines[-1].startswith("simulated 100,000 of 100,000 requests (100%)") and len(lines) <= 10
    code, out, err = run_main(*BASE, "--find-max-rate", "--num-prompts", "200", "--isl", "128", "--osl", "16",
                              "--tolerance", "0.2", "--output", "json")
    search = strict_json(out)
    lines = err.splitlines()
    assert code == 0 and lines[0].startswith("offline run: capacity ")
    assert len(lines) == 1 + len(search["probes"]) and lines[1].startswith("probe 1: ")


@pytest.mark.parametrize("kw", [{}, {"max_concurrency": 64}, {"dp": 2, "num_chips": 2}])
def test_reporting_progress_changes_nothing(monkeypatch, kw):
    # a replica running alone is resumed at horizons to report; a routed run reports from the event loop
    monkeypatch.setattr("infercast.serving.engine.PROGRESS_MIN_REQUESTS", 100)
    options = dict(num_prompts=3000, request_rate=40.0, isl=64, osl=8, **kw)
    lines: list[str] = []
    quiet = serving.simulate("llama-2-7b", "a100-sxm-80gb", **options)
    told = serving.simulate("llama-2-7b", "a100-sxm-80gb", progress=lines.append, **options)
    assert told.to_dict() == quiet.to_dict() and np.array_equal(told.trace.steps, quiet.trace.steps)
    assert len(lines) >= 2 and lines[-1].startswith("simulated 3,000 of 3,000 requests (100%)")


def test_scenario_rows_cap_the_requests_they_simulate():
    row = {"scenario": "offline", "metric": "output_tokens_per_s", "model": "llama-2-7b", "hardware": "h100-sxm",
           "isl": "128", "osl": "128", "notes": "num_requests=50000000"}
    run, said = scenarios.row_run(row)
    assert run.requests == scenarios.MAX_ROW_REQUESTS
    assert said[-1] == "1000000 requests at t = 0 (capped from the 50000000 stated)"


def test_a_non_finite_figure_never_reaches_the_json():
    with pytest.raises(InfercastError, match=r"^the simulation gave ttft_ms.p99 = inf"):
        check_finite({"ttft_ms": {"p50": 1.0, "p99": math.inf}})


PREPARED = serving.server("llama-2-7b", "a100-sxm-80gb")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(isl_dist=st.sampled_from(["fixed", "uniform", "normal", "lognormal"]),
       osl_dist=st.sampled_from(["fixed", "uniform", "normal", "lognormal"]),
       spread=st.floats(0, 3), isl=st.integers(1, 3000), osl=st.integers(1, 1000),
       num=st.integers(1, 150), seed=st.integers(0, 2**32), rate=st.sampled_from([math.inf, 0.5, 50.0]))
def test_the_header_reports_the_lengths_actually_simulated(isl_dist, osl_dist, spread, isl, osl, num, seed, rate):
    w = Workload(num_prompts=num, request_rate=rate, isl=isl, osl=osl, isl_dist=isl_dist, osl_dist=osl_dist,
                 length_spread=spread, seed=seed)
    try:
        requests = synthetic(w, PREPARED.max_model_len)
    except InfercastError as exc:  # a refusal is one line that names the flag to change
        assert len(str(exc).splitlines()) == 1
        assert str(exc).startswith("--length-spread ")
        event("refused")
        return
    event("simulated")
    assert requests.clipped <= MAX_CLIPPED_SHARE * num
    r = PREPARED.run(requests, workload=serving.workload_header(w))
    doc = strict_json(json.dumps(r.to_dict()))
    x, trace = doc["workload"]["realised"], r.trace
    assert x["isl_mean"] == pytest.approx(float(np.mean(trace.isl)), rel=1e-12)
    assert x["osl_mean"] == pytest.approx(float(np.mean(trace.osl)), rel=1e-12)
    assert (x["isl_min"], x["isl_max"]) == (int(trace.isl.min()), int(trace.isl.max()))
    assert (x["osl_min"], x["osl_max"]) == (int(trace.osl.min()), int(trace.osl.max()))
    assert x["isl_mean"] * num == pytest.approx(doc["total_input_tokens"])
    assert doc["workload"]["clipped"] == requests.clipped
