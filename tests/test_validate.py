"""validate: every measured row is predicted or skipped with a reason; error arithmetic; summary."""

import csv
from importlib import resources

import pytest

from infercast.validate import predict_row, read_rows, summarize, validate


@pytest.fixture(scope="module")
def results():
    return validate("public")


def test_no_row_is_dropped(results):
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    ids = [row["id"] for row in csv.DictReader(text.splitlines())]
    assert [r.id for r in results] == ids
    for r in results:
        assert (r.predicted is None) != (r.skipped_reason is None)


def test_errors_and_summary(results):
    done = [r for r in results if r.predicted is not None]
    assert len(done) >= 80
    for r in done:
        assert r.error == pytest.approx((r.predicted - r.measured) / r.measured)
    s = summarize(results)
    assert s["rows"] == len(results) and s["predicted"] == len(done)
    assert set(s["by_source"]) >= {"trtllm", "vidur", "llmcompass", "llamacpp", "llamabench"}
    # the efficiency model must beat the ideal roofline overall (measured: ~8% vs ~27% median)
    assert s["all"]["median_ape"] < s["all_ideal"]["median_ape"]
    assert s["all"]["median_ape"] < 0.15


def test_vidur_gemm_row_by_hand():
    # A100, decode QKV of LLaMA-2-7B: [1 x 4096] x [4096 x 12288] FP16, 100.7 MB of weights, read at the
    # fitted fraction of 2039 GB/s, plus the fitted kernel overhead of the row's framework (measured: 65 us)
    from infercast import load_chip
    from infercast.calibration import efficiency_for
    from infercast.serving.scenarios import row_deployment

    row = next(r for r in read_rows("public") if r["id"] == "vidur-a100-llama2-7b-tp1-t1-qkv-proj")
    eff = efficiency_for(load_chip("a100-sxm-80gb"), None, row_deployment(row)[0]["framework"].name)
    predicted, reason, _ = predict_row(row)
    bytes_ = 2 * (4096 + 4096 * 12288 + 12288)
    assert reason is None
    assert predicted == pytest.approx(bytes_ / (eff.bandwidth * 2039e9) + eff.kernel_overhead_s, rel=1e-6)
    assert predicted == pytest.approx(65e-6, rel=0.2)  # +18% under the shipped fit of the 770 rows


SCENARIOS = ("single_stream", "static", "offline", "server", "interactive", "concurrency", "op")
METRICS = ("prefill_latency_s ttft_s tpot_s itl_s e2e_latency_s decode_tokens_per_s prefill_tokens_per_s "
           "output_tokens_per_s samples_per_s op_latency_s").split()


def test_every_scenario_and_metric_is_predicted_or_explained(tmp_path):
    # DESIGN.md's CSV schema: every scenario x metric pair, each row predicted or skipped with a reason
    columns = ("id,source,model,hardware,num_chips,tp,pp,weight_dtype,act_dtype,kv_dtype,framework,scenario,batch,"
               "isl,osl,op,gemm_m,gemm_n,gemm_k,metric,value,constraint,notes").split(",")
    path = tmp_path / "all.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for s in SCENARIOS:
            for m in METRICS:
                op = {"op": "gemm", "gemm_m": 64, "gemm_n": 4096, "gemm_k": 4096} if s == "op" else {}
                w.writerow({c: "" for c in columns} | {"id": f"x-{s}-{m}", "model": "llama-2-7b",
                           "hardware": "a100-sxm-80gb", "num_chips": 1, "tp": 1, "pp": 1, "scenario": s,
                           "batch": 4, "isl": 256, "osl": 64, "metric": m, "value": 1.0, **op})
    results = validate(str(path))
    assert len(results) == len(SCENARIOS) * len(METRICS)
    for r in results:
        assert (r.predicted is None) != (r.skipped_reason is None), r.id
        if r.predicted is not None:
            assert r.predicted > 0
        else:
            assert len(r.skipped_reason) > 10, r.id
    by_id = {r.id: r for r in results}
    # an operator row answers only op_latency_s; a static batch's samples/s is its batch over its E2E
    assert by_id["x-op-ttft_s"].skipped_reason and by_id["x-op-op_latency_s"].predicted
    e2e = by_id["x-static-e2e_latency_s"].predicted
    assert by_id["x-static-samples_per_s"].predicted == pytest.approx(4 / e2e)



def test_skip_reasons_name_the_missing_piece(results):
    reasons = [r.skipped_reason for r in results if r.skipped_reason]
    # every row is predicted (offline rows by the serving simulator, q4_0/q4_k_m/gptq4 rows with their
    # formats) but one GPT-J throughput row whose 2048 + 128 tokens exceed the model's 2048-token context
    assert len(reasons) == 1 and "exceeds gpt-j-6b's context of 2048" in reasons[0]


def test_bad_data_file(tmp_path):
    from infercast import InfercastError

    with pytest.raises(InfercastError, match="no such file"):
        validate(str(tmp_path / "missing.csv"))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InfercastError, match="missing column"):
        validate(str(tmp_path / "bad.csv"))
