"""Mixture-of-experts at batch B: weight bytes read per decode step grow from the active experts
toward all of them as E [1 - (1 - k/E)^B]; the imbalance factor slows the straggler expert."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import InfercastError, estimate, load_model


def step_weight_bytes(model, batch, **kw):
    r = estimate(model, "h100-sxm", batch=batch, isl=128, osl=3, **kw)
    return r.decode.weight_bytes / 2  # two decode steps


def test_mixtral_batch_1_reads_the_active_parameters():
    # Mixtral card: 12.9B active of 46.7B. A decode step reads every active weight once, except the
    # embedding table, of which it gathers one row per token (32000 x 4096 = 131,072,000 not read)
    s = load_model("mixtral-8x7b")
    total, active = s.params()
    V, h = s.vocab_size, s.hidden_size
    assert step_weight_bytes("mixtral-8x7b", 1) == pytest.approx(2 * (active - V * h + h), rel=1e-12)
    assert step_weight_bytes("mixtral-8x7b", 1) == pytest.approx(2 * 12.9e9, rel=0.02)


def test_mixtral_approaches_all_experts_by_batch_64():
    s = load_model("mixtral-8x7b")
    total, active = s.params()
    V, h = s.vocab_size, s.hidden_size
    expert_bytes = 2 * s.expert_params()
    everything = 2 * (total - V * h)  # all 8 experts of all 32 layers (embedding rows aside)
    for batch in (2, 8, 64):
        touched = 8 * (1 - (1 - 2 / 8) ** batch)  # experts per layer, uniform routing
        expected = 2 * (active - V * h) + 32 * (touched - 2) * expert_bytes + 2 * batch * h
        assert step_weight_bytes("mixtral-8x7b", batch) == pytest.approx(expected, rel=1e-9)
    assert step_weight_bytes("mixtral-8x7b", 64) == pytest.approx(everything, rel=1e-4)
    assert step_weight_bytes("mixtral-8x7b", 64) == pytest.approx(2 * 46.7e9, rel=0.01)


def test_deepseek_v3_touches_experts_by_the_same_law():
    # 256 routed experts, 8 per token, 1 shared expert always; 58 MoE layers after 3 dense ones
    s = load_model("deepseek-v3")
    expert_bytes = 2 * s.expert_params()
    b1, b32 = step_weight_bytes("deepseek-v3", 1), step_weight_bytes("deepseek-v3", 32)
    extra = 58 * (256 * (1 - (1 - 8 / 256) ** 32) - 8) * expert_bytes  # 163.3 experts touched vs 8
    # batch 32's extra embedding rows (31 x 7168 x 2 B) are the only other difference
    assert b32 - b1 == pytest.approx(extra + 31 * 7168 * 2, rel=1e-9)
    _, active = s.params()
    # not read as operators: the MLA latent norms (kv_a 512 + q_a 1536 per layer, 61 layers) and the
    # router's score-correction bias (256 per MoE layer): 139,776 parameters
    unread = 61 * (512 + 1536) + 58 * 256
    assert b1 == pytest.approx(2 * (active - s.vocab_size * s.hidden_size + s.hidden_size - unread), rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(b1=st.integers(1, 256), b2=st.integers(1, 256))
def test_expert_bytes_never_fall_with_batch(b1, b2):
    lo, hi = sorted((b1, b2))
    assert step_weight_bytes("mixtral-8x7b", lo) <= step_weight_bytes("mixtral-8x7b", hi)


def test_imbalance_slows_compute_bound_moe_prefill():
    kw = dict(batch=8, isl=1024, osl=2)
    even = estimate("mixtral-8x7b", "h100-sxm", **kw)
    skew = estimate("mixtral-8x7b", "h100-sxm", moe_imbalance=1.5, **kw)
    up = [next(r for r in x.breakdown if r.op == "moe_up" and r.phase == "prefill") for x in (even, skew)]
    assert up[1].time_s > 1.3 * up[0].time_s  # the grouped GEMM waits for the expert with 1.5x the tokens
    assert skew.memory.weights_bytes == even.memory.weights_bytes
    with pytest.raises(InfercastError, match="--moe-imbalance must be at least 1"):
        estimate("mixtral-8x7b", "h100-sxm", moe_imbalance=0.5)
