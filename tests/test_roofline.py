"""Roofline invariants (hypothesis), the efficiency curve and wave quantization."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import Efficiency, estimate, load_chip, load_model
from infercast.hardware import Sourced
from infercast.ops import Precision, forward_ops, gemm_op
from infercast.calibration import default_efficiency
from infercast.roofline import IDEAL, op_time, wave_efficiency

FP16 = Precision()
A100 = load_chip("a100-sxm-80gb")


def scaled(chip, bw: float = 1.0, flops: float = 1.0):
    """The chip with its bandwidth and every peak FLOPS multiplied."""
    mem = chip.memory.model_copy(update={"bandwidth_bytes_per_s": Sourced(
        value=chip.memory.bandwidth_bytes_per_s.value * bw, source="test")})
    peaks = {k: (Sourced(value=v.value * flops, source="test") if v is not None and v.value else v)
             for k, v in chip.peak_flops}
    return chip.model_copy(update={"memory": mem, "peak_flops": chip.peak_flops.model_copy(update=peaks)})


dims = st.integers(min_value=1, max_value=65536)


@settings(max_examples=200, deadline=None)
@given(M=dims, N=dims, K=dims, bw=st.floats(1.0, 10.0), fl=st.floats(1.0, 10.0))
def test_more_bandwidth_or_flops_is_never_slower(M, N, K, bw, fl):
    op = gemm_op("g", 1, M, N, K, FP16)
    eff = default_efficiency(A100)
    base = float(op_time(op, A100, eff).time_s)
    assert float(op_time(op, scaled(A100, bw=bw), eff).time_s) <= base * (1 + 1e-12)
    assert float(op_time(op, scaled(A100, flops=fl), eff).time_s) <= base * (1 + 1e-12)


@settings(max_examples=200, deadline=None)
@given(M=dims, N=dims, K=dims)
def test_time_is_at_least_each_roofline_bound(M, N, K):
    op = gemm_op("g", 1, M, N, K, FP16)
    t = float(op_time(op, A100, default_efficiency(A100)).time_s)
    assert t >= float(op.flops) / A100.peak("fp16")
    assert t >= float(op.bytes) / A100.memory.bandwidth_bytes_per_s.value
    ideal = op_time(op, A100, IDEAL)
    assert float(ideal.time_s) == max(float(op.flops) / A100.peak("fp16"),
                                      float(op.bytes) / A100.memory.bandwidth_bytes_per_s.value)
    assert t >= float(ideal.time_s)


@settings(max_examples=30, deadline=None)
@given(isl=st.integers(1, 3000), extra=st.integers(1, 900), batch=st.integers(1, 64))
def test_decode_step_time_grows_with_kv_length(isl, extra, batch):
    short = estimate("llama-2-7b", "h100-sxm", batch=batch, isl=isl, osl=2)
    long = estimate("llama-2-7b", "h100-sxm", batch=batch, isl=isl + extra, osl=2)
    assert long.tpot_s >= short.tpot_s


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 256), bw=st.floats(1.0, 4.0), fl=st.floats(1.0, 4.0))
def test_whole_estimate_never_slower_on_a_faster_chip(batch, bw, fl):
    base = estimate("mixtral-8x7b", A100, batch=batch, isl=256, osl=16, efficiency=default_efficiency(A100))
    fast = estimate("mixtral-8x7b", scaled(A100, bw, fl), batch=batch, isl=256, osl=16,
                    efficiency=default_efficiency(A100))
    assert fast.e2e_latency_s <= base.e2e_latency_s * (1 + 1e-12)


def test_gemm_efficiency_curve():
    eff = Efficiency(gemm_max=0.8, gemm_half_dim=25, attention_max=0.7, bandwidth=0.8, kernel_overhead_s=0)
    small, half, big = (gemm_op("g", 1, m, 8192, 8192, FP16) for m in (1, 25, 8192))
    assert float(eff.compute_fraction(half)) == pytest.approx(0.4)  # half of gemm_max at d = d_half
    assert float(eff.compute_fraction(small)) < 0.04
    assert float(eff.compute_fraction(big)) == pytest.approx(0.8 * 8192 / 8217)


def test_decode_is_memory_bound_and_large_prefill_compute_bound():
    spec = load_model("llama-2-7b")
    eff = default_efficiency(A100)
    for op in forward_ops(spec, 1, 1, 512, FP16):
        if op.name in ("qkv_proj", "mlp_gate_up", "mlp_down", "out_proj"):
            t = op_time(op, A100, eff)
            # one token: the weights' bytes take over 10x the math; the smallest GEMM (out_proj, 33.5 MB in
            # 19 us) may be as short as a launch of the generic engine (the fit's 20 us)
            assert t.memory_s > 10 * t.compute_s and t.bound in ("memory", "overhead")
    for op in forward_ops(spec, 4, 2048, 2048, FP16):
        if op.name in ("qkv_proj", "mlp_gate_up", "mlp_down"):
            assert op_time(op, A100, eff).bound == "compute"


def test_wave_quantization_by_hand():
    # 320 tiles on 132 SMs run 3 waves, the last 56 of 132 busy: 320 / 396 = 0.808
    assert float(wave_efficiency(320, 132)) == pytest.approx(320 / 396)
    assert float(wave_efficiency(264, 132)) == 1.0  # two full waves
    assert float(wave_efficiency(96, 108)) == 1.0  # under one wave: split-K fills the SMs
    # LLaMA-2-70B TP8 fused QKV at 4096 tokens: N = (64 + 2 x 8) x 128 / 8 = 1280 -> 32 x 10 = 320 tiles
    op = gemm_op("qkv_proj", 1, 4096, 1280, 8192, FP16)
    assert float(op.tiles) == 320
    eff = default_efficiency(load_chip("h100-sxm"))
    assert float(eff.compute_fraction(op, 132)) == pytest.approx(
        float(eff.compute_fraction(op, None)) * 320 / 396)



def test_a_routed_experts_gemm_keeps_its_own_ceiling_in_the_kept_rates():
    """Two operator lists alike in kinds, formats and executions, one of them a routed expert's GEMM: the roofline
    keeps its per-structure rates by a key that tells them apart, so the expert's ceiling carries
    moe_gemm_efficiency and the dense GEMM's does not, whichever is priced first. A 4096^3 FP16 GEMM, compute
    bound on the H100: at gemm_max 0.8 it takes 2 x 4096^3 / (989.4e12 x 0.8 x d/(d + half_dim)); with
    moe_gemm_efficiency 0.5 the expert's takes exactly twice as long."""
    from infercast.hardware import load_chip as chip_of
    from infercast.ops import make_op
    from infercast.roofline import OpTable, times
    from infercast.scenario import ChipRates

    chip = chip_of("h100-sxm")
    rates = ChipRates.of(chip)
    eff = default_efficiency(chip).model_copy(update={"gemm_max": 0.8, "moe_gemm_efficiency": 0.5,
                                                      "kernel_overhead_s": 0.0, "wave_quantization": False})
    n = 4096.0

    def gemm(name):
        return make_op(name, "gemm", 1, flops=2 * n**3, weight=2 * n * n, act=4 * n * n, min_dim=n, math="fp16")

    dense, expert = OpTable.of([gemm("mlp_up")]), OpTable.of([gemm("moe_up")])
    t_dense = float(times(dense, rates, eff, chip.id).compute_s.ravel()[0])
    t_expert = float(times(expert, rates, eff, chip.id).compute_s.ravel()[0])
    assert t_expert == pytest.approx(2 * t_dense, rel=1e-12)
    # and in the other order, with fresh tables
    t_expert2 = float(times(OpTable.of([gemm("moe_up")]), rates, eff, chip.id).compute_s.ravel()[0])
    t_dense2 = float(times(OpTable.of([gemm("mlp_up")]), rates, eff, chip.id).compute_s.ravel()[0])
    assert (t_expert2, t_dense2) == (t_expert, t_dense)
