"""Sparsity: storage bits by hand, what each chip accelerates, the issue's 2:4 figures, and the
invariants (more sparsity never slower where supported, never faster where not)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast import InfercastError, estimate, load_chip
from infercast.sparsity import Sparsity, compressed_bits, effect_on, make_sparsity

PREFILL = dict(batch=16, isl=1024, osl=2)  # compute-bound on an H100
DECODE = dict(batch=1, isl=1024, osl=128)  # memory-bound


def test_compressed_bits_by_hand():
    # 2:4 fp16 as the sparse tensor cores read it: 2 values x 16 bits + 2 x 2-bit positions per 4 weights
    assert compressed_bits(Sparsity(pattern="2:4"), 16) == (2 * 16 + 2 * 2) / 4  # 9 bits, 0.5625 of dense
    # 1:4 int8: one 8-bit value and one 2-bit position per 4 weights
    assert compressed_bits(Sparsity(pattern="1:4"), 8) == (8 + 2) / 4
    # unstructured 50% fp16: 8 bits of values plus the bitmap (1 bit), cheaper than 16-bit indices (8 bits)
    assert compressed_bits(Sparsity(weight=0.5), 16) == 0.5 * 16 + 1
    # unstructured 97% fp16: 0.48 bits of values plus 0.48 bits of 16-bit indices, cheaper than the bitmap
    assert compressed_bits(Sparsity(weight=0.97), 16) == pytest.approx(0.03 * 16 + 0.03 * 16)


def test_pattern_sets_the_sparsity_and_must_agree_with_it():
    assert Sparsity(pattern="2:4").weight == 0.5
    assert make_sparsity(0.5, "2:4").weight == 0.5
    with pytest.raises(InfercastError, match="--sparsity-pattern: pattern 2:4 keeps 2 of 4 weights"):
        make_sparsity(0.3, "2:4")
    with pytest.raises(InfercastError, match="--sparsity-pattern: .*expected N:M"):
        make_sparsity(None, "4:2")
    with pytest.raises(InfercastError, match="--weight-sparsity: must be a fraction"):
        make_sparsity(1.0)
    with pytest.raises(InfercastError, match="--activation-sparsity: must be a fraction"):
        make_sparsity(activation=-0.1)
    with pytest.raises(InfercastError, match="--sparse-storage"):
        make_sparsity(0.5, storage="zip")


def test_2_4_on_h100_speeds_compute_bound_prefill_by_at_most_2x():
    dense = estimate("llama-2-70b", "h100-sxm", **PREFILL)
    sparse = estimate("llama-2-70b", "h100-sxm", sparsity_pattern="2:4", **PREFILL)
    speedup = dense.ttft_s / sparse.ttft_s
    # the linear layers' math halves; attention, norms and the LM head do not: a little under 2x
    assert 1.5 < speedup <= 2.0
    assert sparse.sparsity_effect.math_speedup == 2.0
    assert sparse.memory.weights_bytes == dense.memory.weights_bytes  # stored dense by default


def test_2_4_on_h100_leaves_batch_1_decode_alone_unless_compressed():
    dense = estimate("llama-2-70b", "h100-sxm", **DECODE)
    sparse = estimate("llama-2-70b", "h100-sxm", sparsity_pattern="2:4", **DECODE)
    assert sparse.tpot_s == pytest.approx(dense.tpot_s, rel=1e-9)  # memory-bound: the bytes did not change
    packed = estimate("llama-2-70b", "h100-sxm", sparsity_pattern="2:4", sparse_storage="compressed", **DECODE)
    assert packed.sparsity_effect.storage == "compressed"
    # the linear layers' weights shrink to 9/16; embeddings, LM head and KV do not
    assert packed.precision.layer_weight_bytes == 2 * 9 / 16
    assert 1.5 < dense.tpot_s / packed.tpot_s < 16 / 9
    assert packed.memory.weights_bytes < 0.6 * dense.memory.weights_bytes


def test_unsupported_sparsity_gives_nothing():
    dense = estimate("llama-2-7b", "h100-sxm", **PREFILL)
    # Hopper accelerates 2:4 only: unstructured weights and zero activations run as dense math
    for kw in (dict(weight_sparsity=0.7), dict(activation_sparsity=0.5), dict(sparsity_pattern="1:4")):
        r = estimate("llama-2-7b", "h100-sxm", **kw, **PREFILL)
        assert r.ttft_s == dense.ttft_s and r.memory.weights_bytes == dense.memory.weights_bytes
        assert r.sparsity_effect.math_speedup == 1.0
        assert "does not" in r.sparsity_effect.reason or "only 2:4" in r.sparsity_effect.reason
    # a TPU accelerates no sparsity at all
    tpu = estimate("llama-2-7b", "tpu-v5e", sparsity_pattern="2:4", **PREFILL)
    assert tpu.ttft_s == estimate("llama-2-7b", "tpu-v5e", **PREFILL).ttft_s


def test_sparse_accelerator_caps_at_its_32x():
    s30 = load_chip("moffett-s30")
    assert effect_on(s30, Sparsity(weight=0.9), 16).math_speedup == pytest.approx(10)
    assert effect_on(s30, Sparsity(weight=0.99), 16).math_speedup == 32  # capped
    # dual sparsity: 75% weights x 50% activations keep 12.5% of the math
    assert effect_on(s30, Sparsity(weight=0.75, activation=0.5), 16).math_speedup == pytest.approx(8)
    # unstructured weights are held compressed there: 90% sparse fp16 = 1.6 + min(1, 1.6) bits
    e = effect_on(s30, Sparsity(weight=0.9), 16)
    assert e.storage == "compressed" and e.weight_bits == pytest.approx(2.6)
    # at 2% sparsity the index costs more than the zeros it drops: kept dense
    assert effect_on(s30, Sparsity(weight=0.02), 16).storage == "dense"


def test_moffett_holds_bloom_only_when_sparse_or_int8():
    # 4 x 60 GB LPDDR4X (the one verified figure) against BLOOM-176B's 352 GB of fp16 weights
    kw = dict(num_chips=4, tp=4, batch=1, isl=128, osl=64)
    assert not estimate("bloom-176b", "moffett-s30", **kw).memory.fits
    assert estimate("bloom-176b", "moffett-s30", weight_sparsity=0.75, **kw).memory.fits


def _sparse_times(chip, **sparsity):
    kw = dict(batch=4, isl=256, osl=8)
    r = estimate("llama-2-7b", chip, **kw, **sparsity)
    return r.ttft_s, r.tpot_s, r.memory.weights_bytes


@settings(max_examples=25, deadline=None)
@given(s1=st.floats(0, 0.98), s2=st.floats(0, 0.98), a=st.floats(0, 0.9))
def test_more_sparsity_is_never_slower_where_supported(s1, s2, a):
    lo, hi = sorted((s1, s2))
    less = _sparse_times("moffett-s30", weight_sparsity=lo, activation_sparsity=a)
    more = _sparse_times("moffett-s30", weight_sparsity=hi, activation_sparsity=a)
    assert all(m <= x * (1 + 1e-12) for m, x in zip(more, less, strict=True))


@settings(max_examples=10, deadline=None)
@given(chip=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "b200", "mi300x"]),
       storage=st.sampled_from([None, "dense", "compressed"]), batch=st.integers(1, 64))
def test_2_4_is_never_slower_on_chips_with_sparse_tensor_cores(chip, storage, batch):
    kw = dict(batch=batch, isl=256, osl=4)
    dense = estimate("llama-2-7b", chip, **kw)
    sparse = estimate("llama-2-7b", chip, sparsity_pattern="2:4", sparse_storage=storage, **kw)
    assert sparse.ttft_s <= dense.ttft_s and sparse.tpot_s <= dense.tpot_s
    assert dense.ttft_s / sparse.ttft_s <= 2.0 + 1e-12


@settings(max_examples=25, deadline=None)
@given(s=st.floats(0, 0.98), a=st.floats(0, 0.9), chip=st.sampled_from(["h100-sxm", "a100-sxm-80gb", "tpu-v5e"]))
def test_unsupported_sparsity_is_never_faster(s, a, chip):
    # none of these chips accelerates unstructured weights or activations
    assert _sparse_times(chip, weight_sparsity=s, activation_sparsity=a) == _sparse_times(chip)


def test_sparsity_in_the_json_and_the_cli():
    from click.testing import CliRunner

    from infercast.cli import cli

    out = CliRunner().invoke(cli, ["estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm",
                                   "--weight-sparsity", "0.5", "--sparsity-pattern", "2:4", "--output", "json"])
    assert out.exit_code == 0, out.output
    import json

    d = json.loads(out.output)
    assert d["workload"]["weight_sparsity"] == 0.5 and d["workload"]["sparsity_pattern"] == "2:4"
    assert d["sparsity"]["math_speedup"] == 2.0 and d["sparsity"]["storage"] == "dense"
    assert d["sparsity"]["weight_bytes_ratio"] == 1.0
