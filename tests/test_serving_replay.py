"""A recorded run replayed at other efficiencies equals a fresh simulation at them (closed loop and offline),
because what the scheduler puts in a step never depends on how long steps take."""

from __future__ import annotations

import numpy as np
import pytest

from infercast.serving.replay import record, replay
from infercast.serving.server import server
from infercast.serving.steptime import step_time
from infercast.serving.workload import Requests

OTHER = {"kernel_overhead_s": 3e-5, "graph_kernel_overhead_s": 4e-6, "step_overhead_s": 2e-3,
         "request_overhead_s": 0.1, "bandwidth": 0.6, "gemm_max_narrow": 0.4}


def _requests(n: int, isl: int, osl: int) -> Requests:
    rng = np.random.default_rng(1)
    return Requests(np.zeros(n), rng.integers(int(0.8 * isl), isl + 1, n), rng.integers(int(0.8 * osl), osl + 1, n))


@pytest.mark.parametrize("options, concurrency, beams", [
    (dict(model="deepseek-v3", hardware="b200", num_chips=8, tp=8, ep=8, dtype="fp8", framework="sglang@0.5.5"),
     32, 1),
    (dict(model="llama-3-8b", hardware="h100-sxm", num_chips=2, dp=2, dtype="fp8", framework="trtllm@1.0"), None, 1),
    (dict(model="gpt-j-6b", hardware="gaudi2", framework="optimum-habana", dtype="fp8"), None, 4),
])
def test_replay_equals_a_fresh_simulation(options, concurrency, beams):
    reqs = _requests(256, 600, 120)
    srv = server(**options)
    first, rec = record(srv, reqs, max_concurrency=concurrency, beams=beams)
    assert rec.exact
    again = replay(rec, srv.step_time if beams == 1 else step_time(srv.deployment, srv.budget * beams,
                                                                    srv.config.max_num_seqs),
                   srv.deployment.efficiency.request_overhead_s)
    other = server(**options, efficiency=OTHER)
    fresh = other.run(reqs, max_concurrency=concurrency, beams=beams).metrics
    table = step_time(other.deployment, other.budget * beams, other.config.max_num_seqs)
    moved = replay(rec, table, OTHER["request_overhead_s"])
    for metrics, reference in ((again, first.metrics), (moved, fresh)):
        assert metrics["output_throughput"] == pytest.approx(reference["output_throughput"], rel=1e-9)
        for key in ("ttft_ms", "tpot_ms", "e2el_ms"):
            for stat in ("mean", "p50", "p99"):
                assert metrics[key][stat] == pytest.approx(reference[key][stat], rel=1e-9), (key, stat)
    assert fresh["output_throughput"] != pytest.approx(first.metrics["output_throughput"], rel=0.01)
