"""Arrivals, length distributions and trace files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infercast.errors import InfercastError
from infercast.serving.workload import (
    Workload,
    arrivals,
    lengths,
    make_workload,
    read_lengths,
    read_trace,
    requests_for,
    synthetic,
)


def test_poisson_arrivals_have_the_rate_and_start_at_zero():
    # vLLM's benchmark sends the first request at once, then waits a gamma(shape=b, scale=1/(rate b)) gap
    t = arrivals(200_000, 5.0, 1.0, np.random.default_rng(0))
    gaps = np.diff(t)
    assert t[0] == 0 and (gaps >= 0).all()
    assert gaps.mean() == pytest.approx(0.2, rel=0.01)
    assert gaps.std() == pytest.approx(0.2, rel=0.01)  # exponential: sd = mean


def test_burstiness_changes_the_spread_not_the_rate():
    # gamma shape k: coefficient of variation 1 / sqrt(k)
    for k in (0.25, 4.0):
        gaps = np.diff(arrivals(200_000, 5.0, k, np.random.default_rng(1)))
        assert gaps.mean() == pytest.approx(0.2, rel=0.02)
        assert gaps.std() / gaps.mean() == pytest.approx(1 / math.sqrt(k), rel=0.02)


def test_offline_sends_everything_at_once():
    assert (arrivals(10, math.inf, 1.0, np.random.default_rng(0)) == 0).all()


@pytest.mark.parametrize("dist", ["fixed", "uniform", "normal", "lognormal"])
def test_length_distributions_keep_the_mean(dist):
    x = lengths(100_000, 500, dist, 0.3, np.random.default_rng(2))
    assert x.dtype.kind == "i"
    assert x.mean() == pytest.approx(500, rel=0.01)
    if dist == "uniform":
        assert x.min() == 350 and x.max() == 650
    if dist == "normal":
        assert x.std() == pytest.approx(150, rel=0.02)
    if dist == "lognormal":
        assert np.log(x).std() == pytest.approx(0.3, rel=0.02)


def test_a_seed_reproduces_a_run_and_another_seed_does_not():
    w = Workload(num_prompts=500, request_rate=3, isl=300, osl=50, isl_dist="lognormal", osl_dist="uniform", seed=7)
    a, b = synthetic(w, 4096), synthetic(w, 4096)
    c = synthetic(w.model_copy(update={"seed": 8}), 4096)
    assert (a.arrival_s == b.arrival_s).all() and (a.isl == b.isl).all() and (a.osl == b.osl).all()
    assert not (a.arrival_s == c.arrival_s).all()


def test_lengths_are_clipped_to_the_context_and_counted():
    # a normal sd of 0.4 x 50 puts 0.6% of the outputs below half a token: clipped to 1, and counted
    w = Workload(num_prompts=2000, isl=900, osl=50, osl_dist="normal", length_spread=0.4)
    r = synthetic(w, 1024)
    assert (r.isl >= 1).all() and (r.isl + r.osl <= 1024).all() and (r.osl >= 1).all()
    assert 0 < r.clipped <= 20
    # a spread that would clip more than 1% of the requests is refused, naming one that would not
    with pytest.raises(InfercastError, match=r"^--length-spread 1: 29.9% of the requests .* use --length-spread 0.01 "
                                             r"or less or shorter --isl/--osl$"):
        synthetic(Workload(num_prompts=2000, isl=900, osl=100, isl_dist="lognormal", length_spread=1.0), 1024)
    with pytest.raises(InfercastError, match="max-model-len 1024"):
        synthetic(Workload(isl=1000, osl=100), 1024)


def test_bad_fields_name_the_flag():
    with pytest.raises(InfercastError, match="^--request-rate: "):
        make_workload(request_rate=-2)
    with pytest.raises(InfercastError, match="^--num-prompts: "):
        make_workload(num_prompts=0)
    with pytest.raises(InfercastError, match="^--isl-dist: "):
        make_workload(isl_dist="zipf")


def test_trace_is_read_sorted_and_bad_rows_name_the_line(tmp_path):
    good = tmp_path / "trace.csv"
    good.write_text("arrival_s,isl,osl,user\n0.5,100,20,a\n0.1,200,10,b\n0.1,50,5,c\n")
    r = read_trace(str(good), 4096)
    assert r.arrival_s.tolist() == [0.1, 0.1, 0.5]
    assert r.isl.tolist() == [200, 50, 100]  # stable: equal arrivals keep the file's order
    cases = {"arrival_s,isl\n0,1\n": "missing column\\(s\\) osl",
             "arrival_s,isl,osl\n0,ten,5\n": "line 2: column isl is 'ten'",
             "arrival_s,isl,osl\n0,10,5\n-1,10,5\n": "line 3: arrival_s must be",
             "arrival_s,isl,osl\n0,10.5,5\n": "whole number",
             "arrival_s,isl,osl\n": "no rows"}
    for i, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.csv"
        bad.write_text(text)
        with pytest.raises(InfercastError, match=message):
            read_trace(str(bad), 4096)
    with pytest.raises(InfercastError, match="no such file"):
        read_trace(str(tmp_path / "none.csv"), 4096)


def test_lengths_are_drawn_from_measured_pairs(tmp_path):
    path = tmp_path / "lengths.csv"
    path.write_text("isl,osl\n100,10\n300,30\n")
    isl, osl = read_lengths(str(path), 4096)
    r = requests_for(Workload(num_prompts=1000, seed=3), 4096, lengths=str(path))
    pairs = set(zip(r.isl.tolist(), r.osl.tolist()))
    assert pairs == {(100, 10), (300, 30)} and isl.tolist() == [100, 300] and osl.tolist() == [10, 30]
    with pytest.raises(InfercastError, match="drop --lengths"):
        requests_for(Workload(), 4096, lengths=str(path), trace=str(path))
