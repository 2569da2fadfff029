"""Operators: FLOPs and bytes against hand counts; causal attention; MoE; MLA; broadcasting."""

import numpy as np
import pytest

from infercast import load_model
from infercast.ops import Precision, causal_pairs, experts_touched, forward_ops

FP16 = Precision("fp16", "fp16", "fp16")


def by_name(ops):
    out = {}
    for op in ops:
        out.setdefault(op.name, []).append(op)
    return out


def total(ops, field):
    return sum(float(np.sum(getattr(op, field))) * op.count for op in ops)


def test_llama2_7b_decode_step_reads_every_weight_once():
    # Linear weights per layer: 4 x 4096^2 (q, k, v, o; MHA) + 3 x 4096 x 11008 = 202,375,168;
    # norms 2 x 4096; 32 layers; plus final norm 4096, LM head 32000 x 4096 and the one
    # embedding row the token looks up (4096): 6,607,347,712 elements x 2 bytes.
    ops = forward_ops(load_model("llama-2-7b"), 1, 1, 129, FP16)
    assert total(ops, "weight_bytes") == 2 * ((202_375_168 + 8192) * 32 + 4096 + 131_072_000 + 4096)


def test_llama2_7b_decode_linear_flops_are_two_per_weight():
    ops = by_name(forward_ops(load_model("llama-2-7b"), 1, 1, 129, FP16))
    gemm = sum(total(v, "flops") for k, v in ops.items() if k.endswith(("proj", "gate_up", "down", "head")))
    assert gemm == 2 * (202_375_168 * 32 + 131_072_000)


def test_decode_attention_reads_the_whole_cache():
    # kv_len 129 = 128 cached tokens + the current one. Per layer the kernel reads the cache of
    # the 128 earlier tokens: 128 x 2 (K,V) x 32 heads x 128 x 2 bytes, for each of 4 sequences.
    spec = load_model("llama-2-7b")
    (attn,) = by_name(forward_ops(spec, 4, 1, 129, FP16))["attention"]
    assert float(attn.kv_bytes) == 4 * 128 * 2 * 4096 * 2
    # scores + weighted sum: 2 x 2 FLOPs x 32 heads x 129 keys x 128 dims, plus 5 softmax FLOPs per score
    assert float(attn.flops) == 4 * (4 * 32 * 129 * 128 + 5 * 32 * 129)
    assert attn.count == 32


def test_prefill_attention_is_causal():
    # S tokens attend to S (S + 1) / 2 (query, key) pairs: about half the full score matrix.
    assert causal_pairs(4096, 4096) == 4096 * 4097 / 2
    assert causal_pairs(1, 300) == 300
    spec = load_model("llama-2-7b")
    (attn,) = by_name(forward_ops(spec, 2, 1000, 1000, FP16))["attention"]
    pairs = 2 * 32 * 1000 * 1001 / 2
    assert float(attn.flops) == pytest.approx(pairs * (2 * 128 + 5 + 2 * 128))
    assert float(attn.kv_bytes) == 0  # nothing cached before the prompt


def test_materialized_attention_writes_and_reads_scores():
    spec = load_model("llama-2-7b")
    flash = by_name(forward_ops(spec, 1, 2048, 2048, FP16, "flash"))
    mat = by_name(forward_ops(spec, 1, 2048, 2048, FP16, "materialized"))
    assert set(mat) >= {"attn_score", "attn_softmax", "attn_value"} and "attention" not in mat
    scores = 32 * 2048 * 2049 / 2 * 2  # causal score elements x 2 bytes
    assert float(mat["attn_softmax"][0].bytes) == pytest.approx(2 * scores)
    mat_flops = sum(total(mat[k], "flops") for k in ("attn_score", "attn_softmax", "attn_value"))
    assert mat_flops == pytest.approx(total(flash["attention"], "flops"))
    new_kv = 2048 * 2 * 4096 * 2  # the prompt's K and V appended to the cache, 2 bytes each
    assert float(mat["attn_score"][0].write_bytes) == pytest.approx(scores + new_kv)
    assert float(flash["attention"][0].write_bytes) == pytest.approx(2048 * 4096 * 2 + new_kv)  # O, no scores


def test_gqa_shrinks_kv_traffic_not_query_flops():
    s70 = load_model("llama-2-70b")
    (attn,) = by_name(forward_ops(s70, 1, 1, 1001, FP16))["attention"]
    # 8 KV heads x 128 x 2 (K,V) x 1000 cached tokens x 2 bytes per layer
    assert float(attn.kv_bytes) == 8 * 128 * 2 * 1000 * 2
    assert float(attn.flops) == 4 * 64 * 1001 * 128 + 5 * 64 * 1001  # all 64 query heads do the math


def test_experts_touched():
    assert experts_touched(8, 2, 1) == pytest.approx(2.0)
    assert experts_touched(8, 2, 2) == pytest.approx(8 * (1 - 0.75**2))  # 3.5
    assert experts_touched(256, 8, 10_000) == pytest.approx(256)
    assert np.all(np.diff(experts_touched(8, 2, np.arange(1, 64))) >= 0)


def test_moe_decode_reads_only_touched_experts():
    s = load_model("mixtral-8x7b")
    expert = 3 * 4096 * 14336 * 2  # bytes of one expert's three matrices
    one = by_name(forward_ops(s, 1, 1, 100, FP16))
    read = total(one["moe_up"], "weight_bytes") + total(one["moe_down"], "weight_bytes")
    assert read == pytest.approx(32 * 2 * expert)  # batch 1: k = 2 experts per layer
    big = by_name(forward_ops(s, 256, 1, 100, FP16))
    read = total(big["moe_up"], "weight_bytes") + total(big["moe_down"], "weight_bytes")
    assert read == pytest.approx(32 * 8 * expert, rel=1e-6)  # batch 256 touches all 8


def test_mla_decode_reads_the_latent_cache():
    s = load_model("deepseek-v3")
    ops = by_name(forward_ops(s, 2, 1, 1001, FP16))
    (attn,) = ops["attention"]
    assert float(attn.kv_bytes) == 2 * 1000 * 576 * 2  # 2 sequences x 1000 tokens x 576 x 2 B per layer
    assert "mla_absorb_q" in ops and "kv_b_proj" not in ops  # absorbed weights in decode
    assert "kv_b_proj" in by_name(forward_ops(s, 1, 64, 64, FP16))  # up-projection in prefill


def test_lm_head_only_on_last_token_in_prefill():
    s = load_model("llama-2-7b")
    (head,) = by_name(forward_ops(s, 3, 500, 500, FP16))["lm_head"]
    assert float(head.flops) == 2 * 3 * 32000 * 4096


def test_one_call_over_an_array_equals_scalar_calls():
    s = load_model("llama-3-8b")
    kv = np.array([10.0, 500.0, 4000.0])
    batch = np.array([[1.0], [8.0]])  # [2, 1] x [3] broadcasts to [2, 3]
    vec = forward_ops(s, batch, 1, kv, FP16)
    for i, b in enumerate((1, 8)):
        for j, L in enumerate(kv):
            scalar = forward_ops(s, b, 1, L, FP16)
            for v, sc in zip(vec, scalar, strict=True):
                assert np.broadcast_to(v.flops, (2, 3))[i, j] == pytest.approx(float(sc.flops))
                assert np.broadcast_to(v.bytes, (2, 3))[i, j] == pytest.approx(float(sc.bytes))


def test_precision_changes_bytes_and_math():
    s = load_model("llama-2-7b")
    w4 = Precision("int4", "fp16", "fp16")
    assert w4.gemm_math == "fp16"  # weight-only quantisation computes at the activation rate
    assert Precision("fp8", "fp8", "fp8").gemm_math == "fp8"
    half = total(forward_ops(s, 1, 1, 10, w4), "weight_bytes")
    full = total(forward_ops(s, 1, 1, 10, FP16), "weight_bytes")
    assert half == pytest.approx(full / 4, rel=1e-3)


def test_sliding_window_caps_attention_and_cache():
    # Mistral-7B v0.1 attends to at most 4096 keys; its cache is a rolling buffer of 4096.
    assert causal_pairs(1, 10_000, 4096) == 4096
    assert causal_pairs(5000, 5000, 4096) == 4096 * 4097 / 2 + (5000 - 4096) * 4096
    assert causal_pairs(100, 100, 4096) == causal_pairs(100, 100)
    brute = sum(min(i + 1, 64) for i in range(300))  # prefill of 300 tokens with window 64
    assert causal_pairs(300, 300, 64) == brute
    s = load_model("mistral-7b")
    assert s.sliding_window == 4096 and load_model("qwen2.5-7b").sliding_window is None  # use_sliding_window false
    (attn,) = by_name(forward_ops(s, 1, 1, 10_001, FP16))["attention"]
    assert float(attn.kv_bytes) == 4096 * 2 * 1024 * 2  # 4096 cached tokens x (K,V) x 8 heads x 128 x 2 B


def test_gpt_oss_windowed_and_full_layers_attend_apart():
    # gpt-oss-120b: 18 layers attend within 128 keys, 18 to the whole context; 8 KV heads x 64 dims, so a
    # cached token is 2 x 8 x 64 x 2 B = 2048 B per layer in fp16. One decode step at L = 1000: the windowed
    # layers read 128 cached tokens, the full ones 999.
    s = load_model("gpt-oss-120b")
    ops = by_name(forward_ops(s, 1, 1, 1000, FP16))
    (win,), (full,) = ops["attention_sliding"], ops["attention"]
    assert (win.count, full.count) == (18, 18)
    assert float(win.kv_bytes) == 128 * 2048 and float(full.kv_bytes) == 999 * 2048
    # routed experts in MXFP4 (4.25 bits), the rest in bf16: the experts' GEMMs read 4.25 / 8 bytes a weight
    p = Precision.for_model(s, "bf16", "bf16", "bf16", expert="mxfp4")
    (up,) = by_name(forward_ops(s, 1, 1, 1000, p))["moe_up"]
    (qkv,) = by_name(forward_ops(s, 1, 1, 1000, p))["qkv_proj"]
    assert float(up.weight_bytes) == pytest.approx(4 * 2 * 2880 * 2880 * 4.25 / 8)  # 4 experts touched by 1 token
    assert float(qkv.weight_bytes) == 2880 * (4096 + 2 * 512) * 2 + (4096 + 2 * 512) * 2
    assert up.math == "bf16" and p.expert_math == "bf16"
