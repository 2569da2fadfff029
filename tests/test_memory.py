"""Memory: the issue's golden figures, fit, min chips and max batch."""

import pytest

from infercast import estimate

GiB = 2**30


def test_llama2_7b_on_a100():
    m = estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=128, osl=128).memory
    # 6,738,415,616 params x 2 bytes = 13,476,831,232 B (the seed's "about 14 GB", DESIGN's 13.5 GB)
    assert m.weights_bytes == pytest.approx(13.48e9, rel=0.01)
    assert m.kv_cache_bytes == 256 * 524_288  # (128 + 128) tokens x 524,288 B per token
    assert m.kv_cache_bytes_if_mha == m.kv_cache_bytes  # LLaMA-2-7B is MHA
    assert m.fits and m.min_chips == 1


def test_llama2_70b_kv_cache_c1():
    # 2 x 80 layers x 8 KV heads x 128 x 4096 tokens x batch 8 x 2 B = 10 GiB;
    # as if every one of the 64 heads had K/V (the articles' formula): 80 GiB.
    m = estimate("llama-2-70b", "h100-sxm", batch=8, isl=4000, osl=96).memory
    assert m.kv_cache_bytes == 10_737_418_240 == 10 * GiB
    assert m.kv_cache_bytes_if_mha == 85_899_345_920 == 80 * GiB


def test_llama2_70b_does_not_fit_one_4090():
    m = estimate("llama-2-70b", "rtx-4090", batch=1, isl=128, osl=128).memory
    assert not m.fits
    # 137.95 GB of FP16 weights over 24 GB x 0.9 usable - 1 GiB runtime = 20.5 GB per card: 6.7 cards,
    # but 7 chips allow only pp=7 (tp=7 does not divide 64 heads), and its first stage holds 12 of the
    # 80 layers (12 x 1.711 GB) plus the 0.26 GB embedding = 20.8 GB: the smallest valid plan is 8 chips.
    assert m.min_chips == 8 and m.min_plan in ({"tp": 1, "pp": 8, "dp": 1}, {"tp": 8, "pp": 1, "dp": 1})
    assert "at least 8 chips" in m.reason
    assert m.max_batch == 0


def test_int4_70b_fits_two_4090s_worth_of_memory():
    m = estimate("llama-2-70b", "rtx-4090", batch=1, isl=512, osl=512, weight_dtype="int4").memory
    assert m.weights_bytes == pytest.approx(68_976_648_192 * 0.5)
    assert m.min_chips == 2


@pytest.mark.parametrize(("model", "hw", "isl", "osl"), [
    ("llama-2-7b", "a100-sxm-80gb", 1024, 1024), ("mixtral-8x7b", "h100-sxm", 512, 512),
    ("llama-3-8b", "rtx-4090", 2048, 256), ("deepseek-v3", "b200", 1000, 1000),
])
def test_max_batch_is_the_largest_that_fits(model, hw, isl, osl):
    m = estimate(model, hw, batch=1, isl=isl, osl=osl).memory
    if m.max_batch == 0:
        assert not m.fits
        return
    assert estimate(model, hw, batch=m.max_batch, isl=isl, osl=osl).memory.fits
    assert not estimate(model, hw, batch=m.max_batch + 1, isl=isl, osl=osl).memory.fits


def test_memory_utilization_is_an_option():
    tight = estimate("llama-2-13b", "rtx-4090", isl=256, osl=256, memory={"gpu_memory_utilization": 1.0}).memory
    assert tight.usable_per_chip_bytes == 24 * 2**30  # a GeForce's 24 GB is 24 GiB, 25.77e9 bytes
    # 13B FP16 is 26.03e9 B of weights: the seed's "23-26 GB" does not fit a 24 GiB card either way
    assert not tight.fits and tight.weights_bytes == pytest.approx(26.03e9, rel=0.001)


def test_materialized_attention_holds_scores():
    flash = estimate("llama-2-7b", "a100-sxm-80gb", isl=4000, osl=8).memory
    mat = estimate("llama-2-7b", "a100-sxm-80gb", isl=4000, osl=8, attention="materialized").memory
    assert mat.activation_bytes - flash.activation_bytes == 32 * 4000 * 4000 * 2  # heads x S^2 x 2 B


def test_sliding_window_bounds_the_cache():
    # Mistral-7B v0.1: 2 x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B per token, at most 4096 tokens kept
    m = estimate("mistral-7b", "a100-sxm-80gb", batch=2, isl=8000, osl=100).memory
    assert m.kv_cache_bytes == 2 * 4096 * 131_072


def test_gpt_oss_windowed_layers_keep_the_window():
    # gpt-oss-120b at isl 1000, osl 25: a full layer keeps 1024 tokens (1000 + 24, 64 blocks of 16), a
    # windowed one 128; half the layers each: 576 tokens' worth of K/V at 36 x 2048 B (fp16) per token
    from infercast.memory import kept_tokens
    from infercast.model import load_model

    s = load_model("gpt-oss-120b")
    assert kept_tokens(s, 1000, 25, 16) == 576
    e = estimate("gpt-oss-120b", "b200", batch=3, isl=1000, osl=25, weight_dtype="bf16", expert_dtype="mxfp4")
    assert e.memory.kv_cache_bytes == 3 * 576 * 36 * 2048
    # MXFP4 experts (36 x 128 x 24,891,840 = 114.70B at 4.25 bits) and bf16 for the other 2.13B (attention,
    # routers, norms, embeddings): 65.19 GB, the checkpoint's size class
    assert e.memory.weights_bytes == pytest.approx(114_701_598_720 * 4.25 / 8 + 2_127_557_952 * 2)
