"""Number formats and quantization schemes: bytes per element by hand, which rate the math runs at,
and the figures issue 4 asks for (FP8 on H100 and A100, q4_0 LLaMA-2-7B)."""

import pytest

from infercast import InfercastError, estimate, load_chip
from infercast.formats import FORMATS, element_bytes, math_dtype
from infercast.ops import Precision
from infercast.calibration import default_efficiency

# Bits per element, each derived by hand from the format's layout.
HAND_BITS = {
    "fp32": 32, "tf32": 32,  # tf32 is stored as fp32
    "bf16": 16, "fp16": 16,
    "fp8": 8, "fp8_e4m3": 8, "fp8_e5m2": 8, "int8": 8,
    "fp6": 6, "int4": 4, "fp4": 4,
    # ggml block_q4_0: one fp16 scale + 32 nibbles = 2 + 16 bytes per 32 weights
    "q4_0": (2 + 16) * 8 / 32,  # 4.5
    # ggml block_q8_0: one fp16 scale + 32 int8 = 2 + 32 bytes per 32 weights
    "q8_0": (2 + 32) * 8 / 32,  # 8.5
    # ggml block_q4_K: fp16 d + fp16 dmin + 12 bytes of 6-bit sub-block scales/mins + 128 bytes of nibbles per 256
    "q4_k": (2 + 2 + 12 + 128) * 8 / 256,  # 4.5
    "q4_k_m": (2 + 2 + 12 + 128) * 8 / 256,  # nominal q4_K; the per-tensor mix is in test_q4_k_m_mix
    # ggml block_q6_K: 128 bytes low nibbles + 64 bytes high 2-bit + 16 int8 scales + fp16 d per 256
    "q6_k": (128 + 64 + 16 + 2) * 8 / 256,  # 6.5625
    # GPTQ/AWQ group 128: per group an fp16 scale and a 4-bit zero point
    "gptq4": 4 + (16 + 4) / 128, "awq": 4 + (16 + 4) / 128,  # 4.15625
    # OCP MX v1.0: 32 elements share an 8-bit E8M0 scale
    "mxfp4": 4 + 8 / 32, "mxfp6": 6 + 8 / 32,
    # NVFP4: 16 E2M1 elements share an FP8 E4M3 scale (the per-tensor fp32 scale is negligible)
    "nvfp4": 4 + 8 / 16,
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_bytes_per_element_by_hand(name):
    assert element_bytes(name) == pytest.approx(HAND_BITS[name] / 8, rel=1e-12)


def test_every_format_is_derived_by_hand():
    assert set(HAND_BITS) == set(FORMATS)


def test_unknown_format_names_the_field():
    with pytest.raises(InfercastError, match="weight dtype: unknown format 'fp5'"):
        Precision("fp5")


@pytest.mark.parametrize(("weight", "act", "math"), [
    ("int4", "fp16", "fp16"),  # W4A16: dequantise, compute at the activations' rate
    ("q4_0", "fp16", "fp16"),
    ("awq", "bf16", "bf16"),
    ("fp8", "fp8", "fp8"),  # FP8 x FP8 on the 8-bit units
    ("int8", "int8", "int8"),  # W8A8
    ("fp8", "fp16", "fp16"),  # the wider operand sets the units
    ("nvfp4", "nvfp4", "fp4"),
    ("mxfp6", "fp8", "fp8"),
])
def test_which_units_the_math_runs_on(weight, act, math):
    assert math_dtype(weight, act) == math


def test_llama2_70b_fp8_weights_are_half_of_fp16():
    fp16 = estimate("llama-2-70b", "h100-sxm", batch=1, isl=128, osl=2).memory.weights_bytes
    fp8 = estimate("llama-2-70b", "h100-sxm", batch=1, isl=128, osl=2, weight_dtype="fp8").memory.weights_bytes
    assert fp16 == 68_976_648_192 * 2  # every weight 2 bytes
    assert fp8 == fp16 / 2


def test_fp8_prefill_on_h100_gains_what_its_units_and_the_fitted_kernels_give():
    # H100 has FP8 tensor cores at 2x the FP16 rate (1978.9 vs 989.4 TFLOPS dense). At equal kernel
    # efficiency a compute-bound prefill of batch 16 x 1024 tokens would gain close to 2x (issue 4: at least
    # 1.5x), but not within 700 W: the chip overhead puts a large FP16 GEMM at its achievable rate at TDP, and
    # an FP8 tensor-core cycle costs what an FP16 one does (energy.flop_energy_j), so twice the FLOPs a second
    # draw more than TDP and the prefill runs at the cap: a 1.7x gain
    kw = dict(batch=16, isl=1024, osl=2)
    eff = default_efficiency(load_chip("h100-sxm"))
    fp16 = estimate("llama-2-70b", "h100-sxm", **kw).ttft_s
    same = estimate("llama-2-70b", "h100-sxm", dtype="fp8", efficiency={"gemm_max_narrow": eff.gemm_max}, **kw)
    assert 1.6 <= fp16 / same.ttft_s <= 1.8 and same.energy.power_capped
    uncapped = estimate("llama-2-70b", "h100-sxm", dtype="fp8", efficiency={"gemm_max_narrow": eff.gemm_max},
                        energy={"chip_overhead": 1.0}, **kw).ttft_s  # the bare datapath: no cap binds
    assert 1.9 <= fp16 / uncapped <= 2.0
    # The shipped calibration measures less: the TensorRT-LLM FP8 rows put FP8 GEMMs at ~57% of the FP8 peak
    # against ~82% for FP16, so the fitted gain is 2 x 0.57 / 0.82 = 1.39x on the GEMMs, 1.42x end to end
    fitted = estimate("llama-2-70b", "h100-sxm", dtype="fp8", **kw).ttft_s
    ratio = 2 * eff.gemm_max_narrow / eff.gemm_max
    assert fp16 / fitted == pytest.approx(ratio, rel=0.05)
    assert 1.3 < fp16 / fitted < 2.0


def test_fp8_on_a100_saves_bytes_but_not_math():
    # A100 has no FP8 units: FP8 math runs at its FP16 rate, while FP8 weights still halve the bytes
    dec16 = estimate("llama-2-70b", "a100-sxm-80gb", batch=1, isl=1024, osl=128)
    dec8 = estimate("llama-2-70b", "a100-sxm-80gb", batch=1, isl=1024, osl=128, weight_dtype="fp8")
    assert dec16.decode.bytes / dec8.decode.bytes > 1.95  # half the bytes per step (the KV cache stays fp16)
    # memory-bound, so the step gains nearly 2x; the per-kernel launches (80 layers of about 11 kernels) do not
    # shrink with the bytes
    assert 1.6 < dec16.tpot_s / dec8.tpot_s < 2.0
    kw = dict(batch=16, isl=1024, osl=2)
    pre16 = estimate("llama-2-70b", "a100-sxm-80gb", **kw)
    pre8 = estimate("llama-2-70b", "a100-sxm-80gb", dtype="fp8", **kw)
    assert pre8.peak_flops == pre16.peak_flops == 312e12  # the FP16 rate
    assert pre16.ttft_s / pre8.ttft_s < 1.05  # compute-bound: only the few memory-bound kernels gain


def test_llama2_7b_q4_0_weights():
    # q4_0 on the layers (6,476,267,520 weights x 18/32 B), the output matrix and final norm at q6_K
    # (131,076,096 x 210/256 B: llama.cpp keeps output.weight at q6_K), the token embedding at q4_0
    # (131,072,000 x 18/32 B) = 3,824,151,840 B; TheBloke's llama-2-7b.Q4_0.gguf is 3.83 GB
    w = estimate("llama-2-7b", "rtx-4090", quantization="q4_0").memory.weights_bytes
    assert w == pytest.approx(6_476_267_520 * 18 / 32 + 131_076_096 * 210 / 256 + 131_072_000 * 18 / 32, rel=1e-12)
    assert w == pytest.approx(6.74e9 * 4.5 / 8, rel=0.01)  # the check: within 1%


def test_q4_k_m_mix():
    # Q4_K_M: q6_K for half of attn_v + ffn_down, q4_K elsewhere: between 4.5 and 6.5625 bits per layer weight
    p = estimate("llama-3-8b", "rtx-4090", quantization="q4_k_m").precision
    assert 4.5 / 8 < p.layer_weight_bytes < 6.5625 / 8
    # LLaMA-3-8B: attn_v (1024 x 4096) + ffn_down (4096 x 14336) per layer, 32 layers, of 6.98e9 layer weights
    v_down = 32 * (4096 * 1024 + 14336 * 4096)
    layers = 8_030_261_248 - 2 * 128256 * 4096 - 4096
    expected = (0.5 * v_down * 6.5625 + (layers - 0.5 * v_down) * 4.5) / layers / 8
    assert p.layer_weight_bytes == pytest.approx(expected, rel=1e-12)


def test_weight_only_schemes_keep_the_activation_format():
    r = estimate("llama-2-7b", "a100-sxm-80gb", quantization="awq")
    assert (r.precision.weight, r.precision.act) == ("awq", "fp16")
    r = estimate("llama-2-7b", "h100-sxm", quantization="fp8")
    assert (r.precision.weight, r.precision.act) == ("fp8", "fp8")
    with pytest.raises(InfercastError, match="--quantization: unknown scheme 'q4'"):
        estimate("llama-2-7b", "h100-sxm", quantization="q4")
    with pytest.raises(InfercastError, match="--act-dtype q4_0: a weight quantization scheme"):
        estimate("llama-2-7b", "h100-sxm", act_dtype="q4_0")


def test_dequantisation_costs_vector_work():
    # W4A16 prefill dequantises every weight once per 128-row tile: on a chip with modest vector FLOPS
    # it is slower than FP16 math on the same shapes would be, but never faster than the FP16 compute bound
    q = estimate("llama-2-7b", "rtx-4090", quantization="q4_0", batch=8, isl=512, osl=2)
    f = estimate("llama-2-7b", "rtx-4090", batch=8, isl=512, osl=2)
    row = next(r for r in q.breakdown if r.op == "mlp_gate_up" and r.phase == "prefill")
    dense = next(r for r in f.breakdown if r.op == "mlp_gate_up" and r.phase == "prefill")
    assert row.time_s > dense.time_s  # compute-bound: same FLOPs plus dequantisation
