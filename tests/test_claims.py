"""Seed claims C1-C4 and C19 recomputed; the rest say not_yet."""

import pytest

from infercast.claims import all_claims, recompute_figures

GiB = 2**30


@pytest.fixture(scope="module")
def claims():
    return {c.id: c for c in all_claims()}


def test_every_claim_has_a_row_and_a_valid_verdict(claims):
    assert list(claims) == [f"C{i}" for i in range(1, 21)]
    assert all(c.verdict in ("reproduced", "corrected", "refuted", "not_yet") for c in claims.values())
    for cid in ("C1", "C2", "C3", "C4"):
        assert claims[cid].verdict != "not_yet"


def test_c1_both_figures(claims):
    f = claims["C1"].figures
    assert f["kv_cache_bytes_if_mha"] == 80 * GiB  # 2 x 80 x 8192 x 4096 x 8 x 2 B
    assert f["kv_cache_bytes"] == 10 * GiB  # 8 of 64 heads carry K/V
    assert claims["C1"].verdict == "corrected"


def test_c2_recompute_flops():
    f = recompute_figures("llama-2-70b", 4096, 8)
    assert f["kv_recompute_flops_as_mha"] == 4096 * 80 * 8 * 4 * 8192 * 8192  # the quoted "640 T" ~ 7.0e14
    assert f["kv_recompute_flops"] == f["kv_recompute_flops_as_mha"] / 8
    # per token and layer: 4 h kv_dim FLOPs avoided for 2 kv_dim elements of 2 bytes: h / 1 per byte
    assert f["flops_saved_per_cached_byte"] == 8192
    assert f["flops_saved_per_cached_element"] == 16384
    assert f["full_recompute_flops"] == pytest.approx(2 * 68_976_648_192 * 4096 * 8)


def test_c3_memory(claims):
    f = claims["C3"].figures
    assert f["weights_gb_7b"] == pytest.approx(13.48, abs=0.01)
    assert f["weights_gb_13b"] == pytest.approx(26.03, abs=0.01)
    assert f["weights_gb_70b"] == pytest.approx(137.95, abs=0.01)
    assert not f["fits_70b_on_4090"] and f["rtx_4090_min_chips_70b"] >= 6


def test_c4_phases(claims):
    f = claims["C4"].figures
    assert f["prefill_bound"] == "compute" and f["decode_bound"] == "memory"
    # each decode step moves the weights (minus the unread embedding table) plus the cache
    assert f["decode_bytes_over_weights_plus_kv"] == pytest.approx(1.0, abs=0.03)
    assert f["prefill_flops_per_byte"] > 100 * f["decode_flops_per_byte"]
