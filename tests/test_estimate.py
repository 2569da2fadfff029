"""estimate(): exact decode integration, metric definitions, contract, overrides and bad input."""

import json

import numpy as np
import pytest

import infercast
from infercast import InfercastError, estimate, load_chip, load_model
from infercast.ops import Precision, forward_ops
from infercast.calibration import default_efficiency
from infercast.roofline import ChipRates, op_time


def test_public_api_is_pinned():
    assert set(infercast.__all__) == {
        "Chip", "ChipRates", "Columns", "Efficiency", "Estimate", "InfercastError", "MemoryOptions", "ModelSpec",
        "Scenario", "chip_ids", "estimate", "evaluate", "load_chip", "load_model", "model_ids", "resolve",
    }


def step_time(spec, chip, batch, kv_len):
    eff = default_efficiency(chip)
    return eff.step_overhead_s + sum(float(op_time(op, ChipRates.of(chip), eff).time_s) * op.count
                                     for op in forward_ops(spec, batch, 1, kv_len, Precision()))


def test_decode_is_the_exact_sum_over_steps():
    # Reference: a plain loop over every decode step j = 1 .. osl-1 at KV length isl + j.
    spec, chip = load_model("llama-2-7b"), load_chip("h100-sxm")
    isl, osl, batch = 1000, 50, 16
    loop = sum(step_time(spec, chip, batch, isl + j) for j in range(1, osl))
    r = estimate(spec, chip, batch=batch, isl=isl, osl=osl)
    assert r.decode.latency_s == pytest.approx(loop, rel=1e-12)
    # a midpoint guess differs: attention time is not linear in KV length once overheads floor it
    assert r.tpot_s == pytest.approx(loop / (osl - 1), rel=1e-12)


def test_metric_definitions():
    r = estimate("llama-3-8b", "a100-sxm-80gb", batch=4, isl=512, osl=129)
    assert r.ttft_s == r.prefill.latency_s
    assert r.tpot_s == pytest.approx((r.e2e_latency_s - r.ttft_s) / (129 - 1))
    assert r.decode_tokens_per_s == pytest.approx(4 * 128 / r.decode.latency_s)
    assert r.throughput_tokens_per_s == pytest.approx(4 * 129 / r.e2e_latency_s)
    d = r.to_dict()
    assert sum(row["time_s"] for row in d["breakdown"]) == pytest.approx(d["e2e_latency_s"], rel=1e-12)
    assert {row["phase"] for row in d["breakdown"]} == {"prefill", "decode"}
    json.dumps(d)  # plain data


def test_single_output_token_has_no_decode():
    r = estimate("llama-2-7b", "h100-sxm", isl=128, osl=1)
    assert r.tpot_s is None and r.decode.latency_s == 0 and r.e2e_latency_s == r.ttft_s
    assert all(row["phase"] == "prefill" for row in r.to_dict()["breakdown"])


def test_decode_bound_and_prefill_bound():
    r = estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=2048, osl=128)
    assert r.prefill.bound == "compute" and r.decode.bound == "memory"
    u = r.to_dict()["utilization"]
    assert 0 < u["decode_bandwidth"] <= default_efficiency(load_chip("a100-sxm-80gb")).bandwidth
    assert 0 < u["prefill_compute"] < 1


def test_efficiency_overrides_and_ideal():
    slow = estimate("llama-2-7b", "a100-sxm-80gb", efficiency={"bandwidth": 0.4})
    base = estimate("llama-2-7b", "a100-sxm-80gb")
    assert slow.tpot_s > 1.5 * base.tpot_s
    step = estimate("llama-2-7b", "a100-sxm-80gb", efficiency={"step_overhead_s": 0.001})
    assert step.tpot_s == pytest.approx(base.tpot_s + 0.001 - base.efficiency["step_overhead_s"])
    assert any(row.op == "framework" for row in step.breakdown)
    with pytest.raises(InfercastError, match="bandwidth"):
        estimate("llama-2-7b", "a100-sxm-80gb", efficiency={"bandwidth": 1.5})
    with pytest.raises(InfercastError, match="unknown key"):
        estimate("llama-2-7b", "a100-sxm-80gb", efficiency={"bandwith": 0.5})


def test_fp8_uses_fp8_units_only_where_the_chip_has_them():
    # H100 has FP8 tensor cores (1978.9 TFLOPS dense): a compute-bound prefill gets faster.
    h16 = estimate("llama-2-7b", "h100-sxm", batch=16, isl=2048, osl=1)
    h8 = estimate("llama-2-7b", "h100-sxm", batch=16, isl=2048, osl=1, dtype="fp8")
    assert h8.ttft_s < 0.75 * h16.ttft_s  # fitted FP8 GEMMs reach 0.57 of a 2x peak: about 1.45x
    # A100 has none: FP8 runs at its FP16 rate, only the bytes shrink.
    a16 = estimate("llama-2-7b", "a100-sxm-80gb", batch=16, isl=2048, osl=1)
    a8 = estimate("llama-2-7b", "a100-sxm-80gb", batch=16, isl=2048, osl=1, dtype="fp8")
    assert a8.peak_flops == a16.peak_flops == 312e12
    assert a8.ttft_s > 0.85 * a16.ttft_s


def test_arrays_of_kv_lengths_are_one_vectorised_evaluation():
    spec, chip = load_model("mistral-7b"), load_chip("l40s")
    kv = np.arange(100, 4100, 1000, dtype=float)
    eff = default_efficiency(chip)
    vec = eff.step_overhead_s + sum(np.broadcast_to(op_time(op, ChipRates.of(chip), eff).time_s, kv.shape) * op.count
                                    for op in forward_ops(spec, 8, 1, kv, Precision()))
    for i, L in enumerate(kv):
        assert vec[i] == pytest.approx(step_time(spec, chip, 8, L))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(batch=0), "batch"),
    (dict(isl=-1), "isl"),
    (dict(osl=0), "osl"),
    (dict(batch=1.5), "batch"),
    (dict(isl=4000, osl=200), "exceeds llama-2-7b's context of 4096"),
    (dict(dtype="fp9"), "unknown format 'fp9'"),
    (dict(kv_cache_dtype="q9"), "--kv-cache-dtype"),
    (dict(tp=3), "--tp 3 does not divide"),
    (dict(attention="paged"), "attention"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(InfercastError, match=message):
        estimate("llama-2-7b", "a100-sxm-80gb", **kwargs)


def test_chip_without_a_needed_figure_says_which():
    # an H100 with no 16-bit or wider peak: fp16 math has no rate to run at
    pf = load_chip("h100-sxm").peak_flops.model_copy(update={"fp32": None, "tf32": None, "bf16": None, "fp16": None})
    chip = load_chip("h100-sxm").model_copy(update={"id": "h100-no-16bit", "peak_flops": pf})
    with pytest.raises(InfercastError, match=r"h100-no-16bit: no peak FLOPS known for (fp16|bf16) .*peak_flops\.fp16"):
        estimate("llama-2-7b", chip)


def test_beams_share_the_prompts_kv_cache_and_decode_together():
    # GPT-J, 4 beams: the prompt's K/V is held once and each beam's own tokens after it; a decode step runs
    # 4 x batch sequences; the output is one completion (the best beam) per prompt
    one = estimate("gpt-j-6b", "a100-sxm-80gb", batch=8, isl=1000, osl=65)
    beams = estimate("gpt-j-6b", "a100-sxm-80gb", batch=8, isl=1000, osl=65, beam_width=4)
    per_token = 2 * 28 * 4096 * 2  # K and V, 28 layers, 4096 wide, fp16
    assert one.memory.kv_cache_bytes == 8 * 1072 * per_token  # 1000 + 64 tokens in 16-token blocks
    assert beams.memory.kv_cache_bytes == 8 * 1264 * per_token  # 1000 + 4 x 64 = 1256 -> 1264
    assert beams.ttft_s == one.ttft_s  # one prefill per prompt
    decode_gemm = [r for r in beams.breakdown if r.op == "qkv_proj" and r.phase == "decode"][0]
    assert decode_gemm.flops == 4 * [r for r in one.breakdown if r.op == "qkv_proj" and r.phase == "decode"][0].flops
    assert beams.throughput_tokens_per_s == pytest.approx(8 * 65 / beams.e2e_latency_s)
    sampled = estimate("gpt-j-6b", "a100-sxm-80gb", batch=8, isl=1000, osl=65, n=4)
    assert sampled.throughput_tokens_per_s == pytest.approx(4 * 8 * 65 / sampled.e2e_latency_s)  # 4 completions
    with pytest.raises(InfercastError, match="--beam-width must be a whole number from 1 to 1024"):
        estimate("gpt-j-6b", "a100-sxm-80gb", beam_width=0)
