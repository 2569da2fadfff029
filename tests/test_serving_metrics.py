"""Metrics: vLLM's definitions on hand-made traces, percentiles without expansion, SLO parsing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infercast.errors import InfercastError
from infercast.serving.engine import EngineConfig, run
from infercast.serving.metrics import SimResult, parse_slo, stats_ms, summarize, weighted_percentiles
from infercast.serving.workload import Requests


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10, allow_nan=False), st.integers(1, 50)), min_size=1, max_size=30))
def test_weighted_percentiles_equal_numpy_on_the_expanded_samples(pairs):
    values = np.array([v for v, _ in pairs])
    counts = np.array([c for _, c in pairs])
    expanded = np.repeat(values, counts)
    got = weighted_percentiles(values, counts, (0, 50, 90, 99, 100))
    np.testing.assert_allclose(got, np.percentile(expanded, [0, 50, 90, 99, 100]), rtol=1e-12, atol=1e-12)


def fixed_step(chunks, decodes, context):
    """Every step takes 10 ms, whatever it holds: the times below follow by counting steps."""
    return 0.01


def test_metrics_by_hand():
    # two requests at t = 0 and one at t = 1 s, prompts of 8 tokens, outputs of 4, 2 and 1 tokens;
    # each step is 10 ms. Steps 0-3: both early requests prefill in step 0 (first token at 10 ms),
    # decode together in step 1 (request 1 finishes at 20 ms), request 0 decodes alone in steps 2
    # and 3 (done at 40 ms). Request 2 arrives at 1 s, to an idle engine: its prefill ends at 1.01 s.
    req = Requests(np.array([0.0, 0.0, 1.0]), np.array([8, 8, 8]), np.array([4, 2, 1]))
    trace = run(req, fixed_step, EngineConfig(), num_blocks=100, budget=8192)
    m = summarize(trace, {"ttft": 10.5, "tpot": 9.0})
    assert trace.first_token_s.tolist() == pytest.approx([0.01, 0.01, 1.01])
    assert trace.finish_s.tolist() == pytest.approx([0.04, 0.02, 1.01])
    assert m["ttft_ms"]["mean"] == pytest.approx(10.0)
    # TPOT = (E2EL - TTFT) / (osl - 1): request 0 (40 - 10) / 3 = 10 ms, request 1 (20 - 10) / 1 = 10 ms;
    # request 2 has one token and no TPOT
    assert m["tpot_ms"] == pytest.approx({"mean": 10.0, "p50": 10.0, "p90": 10.0, "p99": 10.0})
    # ITL: request 0's three gaps and request 1's one, all 10 ms
    assert m["itl_ms"]["mean"] == pytest.approx(10.0)
    assert int(trace.itl_gap_count.sum()) + len(trace.itl_other_s) == 4
    # E2EL 40, 20, 10 ms
    assert m["e2el_ms"]["mean"] == pytest.approx(70 / 3)
    assert m["duration_s"] == pytest.approx(1.01)
    assert m["request_throughput"] == pytest.approx(3 / 1.01)
    assert m["output_throughput"] == pytest.approx(7 / 1.01)
    assert m["total_token_throughput"] == pytest.approx(31 / 1.01)
    # goodput: every TTFT is 10 ms (<= 10.5); TPOT 10 ms misses 9 ms, except request 2's, which
    # counts 0 as vLLM does: one good request
    assert m["goodput"]["request_goodput"] == pytest.approx(1 / 1.01)
    assert m["goodput"]["fraction_good"] == pytest.approx(1 / 3)
    assert m["steps"] == 5 and m["preemptions"] == 0


def test_stats_of_nothing_are_none():
    assert stats_ms(np.array([])) == {"mean": None, "p50": None, "p90": None, "p99": None}


def test_slo_parsing():
    assert parse_slo(("ttft:500", "tpot:50"), "--goodput", percentiles=False) == {"ttft": 500.0, "tpot": 50.0}
    assert parse_slo("ttft_p99:2000,tpot_p99:200", "--slo", percentiles=True) == {"ttft_p99": 2000.0,
                                                                                  "tpot_p99": 200.0}
    for bad in ("ttft", "ttft:-1", "ttft:abc", "latency:5"):
        with pytest.raises(InfercastError, match="--goodput"):
            parse_slo((bad,), "--goodput", percentiles=False)
    with pytest.raises(InfercastError, match="--slo 'ttft:2000'"):
        parse_slo("ttft:2000", "--slo", percentiles=True)


def test_timeline_is_written_atomically_and_never_over_a_file(tmp_path):
    req = Requests(np.zeros(3), np.array([8, 8, 8]), np.array([3, 3, 3]))
    trace = run(req, fixed_step, EngineConfig(), num_blocks=100, budget=8192)
    result = SimResult({}, summarize(trace), trace)
    path = tmp_path / "timeline.csv"
    result.write_timeline(str(path))
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert len(rows) == 3 and rows[0]["prefill_tokens"] == "24" and rows[1]["decode_seqs"] == "3"
    assert float(rows[0]["kv_usage"]) == pytest.approx(3 / 100)
    path.write_text("mine")
    with pytest.raises(InfercastError, match="--force"):
        result.write_timeline(str(path))
    assert path.read_text() == "mine"
    result.write_timeline(str(path), force=True)
    assert path.read_text().startswith("replica,start_s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timeline.csv"]  # no temporary left behind
