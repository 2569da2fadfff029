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
    # A100, decode QKV of LLaMA-2-7B: [1 x 4096] x [4096 x 12288] FP16: 100.7 MB of weights at
    # 0.826 x 2039 GB/s plus the 6.54 us kernel overhead = 66.3 us (measured 65 us)
    row = next(r for r in read_rows("public") if r["id"] == "vidur-a100-llama2-7b-tp1-t1-qkv-proj")
    predicted, reason, _ = predict_row(row)
    bytes_ = 2 * (4096 + 4096 * 12288 + 12288)
    assert reason is None
    assert predicted == pytest.approx(bytes_ / (0.826 * 2039e9) + 6.54e-6, rel=1e-6)


def test_skip_reasons_name_the_missing_piece(results):
    reasons = {r.skipped_reason for r in results if r.skipped_reason}
    assert any("serving simulator" in x for x in reasons)
    assert not any("quantization" in x for x in reasons)  # q4_0, q4_k_m and gptq4 rows are predicted


def test_bad_data_file(tmp_path):
    from infercast import InfercastError

    with pytest.raises(InfercastError, match="no such file"):
        validate(str(tmp_path / "missing.csv"))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InfercastError, match="missing column"):
        validate(str(tmp_path / "bad.csv"))
