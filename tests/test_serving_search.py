"""The rate search (MLPerf Server style) and the predictions of measured serving rows."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from infercast.serving import find_max_rate, max_rate, server, simulate
from infercast.serving.scenarios import predict_serving_row
from infercast.serving.search import MLPERF_LLAMA2_70B_SERVER_SLO_MS
from infercast.serving.workload import Workload, synthetic

SLO = {"ttft_p99": 300.0, "tpot_p99": 40.0}
WORKLOAD = Workload(num_prompts=1500, isl=512, osl=128, osl_dist="uniform", seed=5)


@pytest.fixture(scope="module")
def llama_a100():
    return server("llama-2-7b", "a100-sxm-80gb")


def p99s(srv, rate):
    r = srv.run(synthetic(WORKLOAD.model_copy(update={"request_rate": rate}), srv.max_model_len))
    return r["ttft_ms"]["p99"], r["tpot_ms"]["p99"]


def test_the_answer_meets_the_slos_and_a_little_more_does_not(llama_a100):
    found = max_rate(llama_a100, WORKLOAD, SLO, tolerance=0.01)
    rate = found.max_request_rate
    assert found.reason is None and 0 < rate < found.offline["request_throughput"] * 1.25
    ttft, tpot = p99s(llama_a100, rate)
    assert ttft <= SLO["ttft_p99"] and tpot <= SLO["tpot_p99"]
    # the bisection stops within 1% of a failing rate: some probe just above the answer failed
    failing = [p["request_rate"] for p in found.probes if not p["meets"]]
    assert min(failing) <= rate * 1.011
    ttft, tpot = p99s(llama_a100, min(failing))
    assert ttft > SLO["ttft_p99"] or tpot > SLO["tpot_p99"]
    assert found.at_max["request_throughput"] == pytest.approx(rate, rel=0.1)


def test_looser_slos_allow_more(llama_a100):
    tight = max_rate(llama_a100, WORKLOAD, {"ttft_p99": 200.0}, tolerance=0.02).max_request_rate
    loose = max_rate(llama_a100, WORKLOAD, {"ttft_p99": 2000.0}, tolerance=0.02).max_request_rate
    assert loose > tight


def test_an_slo_below_one_prefill_is_never_met(llama_a100):
    # a 512-token prefill alone takes about 41 ms on one A100: a 10 ms TTFT bound cannot be met
    found = max_rate(llama_a100, WORKLOAD, {"ttft_p99": 10.0})
    assert found.max_request_rate == 0 and found.at_max is None and "missed even" in found.reason


def test_find_max_rate_takes_simulate_options():
    found = find_max_rate("llama-2-7b", "a100-sxm-80gb", num_prompts=800, isl=256, osl=64, tolerance=0.05)
    assert found.slo_ms == MLPERF_LLAMA2_70B_SERVER_SLO_MS
    assert found.to_dict()["max_request_rate"] == found.max_request_rate > 0


# -- measured rows --------------------------------------------------------------------------


def bundled_rows(scenario: str) -> list[dict[str, str]]:
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    return [r for r in csv.DictReader(text.splitlines()) if r["scenario"] == scenario]


def test_offline_rows_are_simulated_runs_of_the_stated_requests():
    row = next(r for r in bundled_rows("offline") if r["id"] == "trtllm-v1.0-h100-llama3.1-8b-tp1-1000-1000-tput")
    value, reason, note = predict_serving_row(row)
    assert reason is None and note.endswith("; 3000 requests at t = 0") and note.startswith("framework trtllm@1.0")
    again = simulate("llama-3.1-8b", "h100-sxm", weight_dtype="fp8", act_dtype="fp8", kv_cache_dtype="fp8",
                     num_prompts=3000, isl=1000, osl=1000, framework="trtllm@1.0")
    assert again.header["engine"]["max_num_seqs"] == 8192  # the profile's, as trtllm-bench pads its graphs
    assert value == again["output_throughput"]
    # measured 15,220 tokens/s (TensorRT-LLM v1.0, FP8); under the shipped calibration the simulator gives
    # 13,007 (-14.5%): its FP8 GEMM efficiency is fitted to TensorRT-LLM v0.5-v1.0 rows together
    assert value == pytest.approx(float(row["value"]), rel=0.2)


def test_every_bundled_offline_row_is_predicted():
    for row in bundled_rows("offline"):
        value, reason, _ = predict_serving_row(row)
        assert reason is None and value > 0, row["id"]


def test_concurrency_rows_follow_the_closed_loop():
    # a client keeping c requests in flight completes c requests per mean E2E latency: output
    # throughput = c x osl / E2EL, up to the ramp at the start and the drain at the end
    row = {"scenario": "concurrency", "metric": "output_tokens_per_s", "model": "llama-2-7b",
           "hardware": "a100-sxm-80gb", "num_chips": "1", "tp": "1", "pp": "1", "batch": "16", "isl": "512",
           "osl": "128", "weight_dtype": "fp16", "act_dtype": "fp16", "kv_dtype": "fp16", "framework": "vLLM"}
    value, reason, note = predict_serving_row(row)
    r = simulate("llama-2-7b", "a100-sxm-80gb", num_prompts=200, max_concurrency=16, isl=512, osl=128,
                 framework="vllm@0.6")
    assert note.endswith("; 200 requests, 16 in flight")
    assert reason is None and value == r["output_throughput"]
    assert value == pytest.approx(16 * 128 / (r["e2el_ms"]["mean"] / 1e3), rel=0.05)
    ttft, _, _ = predict_serving_row({**row, "metric": "ttft_s"})
    assert ttft == pytest.approx(r["ttft_ms"]["mean"] / 1e3)


def test_server_rows_bisect_their_constraint():
    row = {"scenario": "server", "metric": "samples_per_s", "model": "llama-2-7b", "hardware": "a100-sxm-80gb",
           "num_chips": "2", "tp": "1", "pp": "1", "isl": "256", "osl": "64",
           "constraint": "p99_ttft_s<=0.4;p99_tpot_s<=0.06"}
    value, reason, note = predict_serving_row(row)
    assert reason is None and value > 0 and "Poisson arrivals" in note and "requests/s" in note


def test_rows_the_simulator_cannot_take_say_why():
    row = {"scenario": "offline", "metric": "output_tokens_per_s", "model": "llama-2-7b",
           "hardware": "a100-sxm-80gb", "num_chips": "1", "tp": "1", "pp": "1", "isl": "", "osl": ""}
    assert "isl and osl" in predict_serving_row(row)[1]
    assert "latency constraint" in predict_serving_row({**row, "scenario": "server", "isl": "8", "osl": "8"})[1]
    assert "not a multiple" in predict_serving_row({**row, "num_chips": "3", "tp": "2", "isl": "8", "osl": "8"})[1]
    assert "not predicted" in predict_serving_row({**row, "metric": "tpot_s", "isl": "8", "osl": "8"})[1]
    assert "no memory left" in predict_serving_row({**row, "model": "llama-2-70b", "isl": "8", "osl": "8"})[1]
