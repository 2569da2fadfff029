"""Fleet sizing: how many replicas of a deployment serve a load, and what they cost over years.

A replica is the estimate's deployment: ``num_chips`` chips serving ``batch`` queries (isl input
and osl output tokens each) together, one static batch after another. It completes ``batch``
queries per end-to-end latency, so for a load of ``qps`` queries per second

    replica_qps = batch / E2E
    replicas    = ceil(qps / (replica_qps x target_utilization))
    load        = qps / (replicas x replica_qps)            fraction of time a replica is busy

Busy chips draw the estimate's average power, the rest of the time their idle power. Without SLOs
this is the static-batch bound. With SLOs (``replica_rate``), a replica's rate is instead the highest
Poisson request rate the serving simulator finds it sustaining within them (continuous batching,
``infercast.serving.search.max_rate``, MLPerf Server style), and ``basis`` says which.

    capex      = chips x purchase cost per chip                     (0 in the cloud)
    opex/year  = chips x 8760 h x (electricity + hosting per chip-hour)  (cloud: the chip-hour price)
    TCO        = capex + years x opex/year
    usd_per_query = TCO / (qps x years x 3600 x 8760)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from infercast.cost import HOURS_PER_YEAR, CostOptions, owned_chip_hour
from infercast.errors import InfercastError
from infercast.estimate import Estimate, estimate

SECONDS_PER_YEAR = HOURS_PER_YEAR * 3600
MAX_QPS = 1e9
"""Largest load a fleet is sized for: ten thousand times Google search's ~1e5 queries per second."""


@dataclass(frozen=True)
class Fleet:
    qps: float
    isl: int
    osl: int
    batch: int
    chips_per_replica: int
    replica_qps: float
    """Queries per second one replica completes: batch / E2E."""
    replicas: int
    chips: int
    load: float
    """Fraction of the time the replicas are busy at this qps."""
    average_power_w_per_chip: float
    """Busy power weighted by the load, idle power the rest of the time."""
    capex_usd: float
    opex_usd_per_year: float
    years: float
    tco_usd: float
    energy_kwh_per_year: float
    """At the facility meter: chips and their servers, times PUE."""
    usd_per_query: float
    mode: str
    """'owned' or 'cloud'."""
    basis: str = "static batch"
    """How replica_qps was found: 'static batch' (batch / E2E) or 'simulated at SLOs ...'."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_load(qps: float, target_utilization: float = 1.0) -> None:
    """A positive load and a utilization in (0, 1], or a one-line error naming the flag."""
    if isinstance(qps, bool) or not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
        raise InfercastError(f"--qps must be a positive number of queries per second, got {qps!r}")
    if qps > MAX_QPS:
        raise InfercastError(f"--qps {qps:g}: beyond any service (all of Google search is about 1e5 queries/s); "
                             f"use at most {MAX_QPS:g}")
    if isinstance(target_utilization, bool) or not (isinstance(target_utilization, (int, float))
                                                    and 0 < target_utilization <= 1):
        raise InfercastError(f"--target-utilization must be in (0, 1], got {target_utilization!r}")


def size_fleet(est: Estimate, qps: float, *, target_utilization: float = 1.0, replica_rate: float | None = None,
               basis: str = "static batch") -> Fleet:
    """Replicas of ``est``'s deployment for ``qps`` queries per second, and their cost over the years
    (the estimate's cost options: ``estimate(..., cost=..., usd_per_chip_hour=...)``). ``replica_rate``:
    queries per second one replica sustains (e.g. within SLOs, from the simulator) instead of batch / E2E."""
    check_load(qps, target_utilization)
    if not est.memory.fits:
        raise InfercastError(f"the deployment does not fit: {est.memory.reason}; use more chips (--tp, --pp, --nodes)")
    if est.energy is None or est.cost is None:
        why = est.extra.get("energy_unavailable") or est.extra.get("cost_unavailable")
        raise InfercastError(f"{why}; a fleet needs the deployment's power and cost")
    energy, cost = est.energy, est.cost
    o = CostOptions(**cost.assumptions)
    replica_qps = est.batch / est.e2e_latency_s if replica_rate is None else replica_rate
    if not replica_qps > 0:
        raise InfercastError("one replica sustains no load within the SLOs; relax --slo or use a faster deployment")
    replicas = math.ceil(qps / (replica_qps * target_utilization))
    n = est.plan.num_chips
    chips = replicas * n
    load = qps / (replicas * replica_qps)
    power_w = load * energy.average_power_w + (1 - load) * energy.idle_w
    if cost.mode == "cloud":
        capex, opex = 0.0, chips * HOURS_PER_YEAR * cost.usd_per_chip_hour
    else:
        capex = cost.capex_usd / n * chips
        hour = owned_chip_hour(cost.capex_usd / n, power_w, energy.tdp_w, o)
        opex = chips * HOURS_PER_YEAR * (hour.electricity_usd + hour.hosting_usd)
    tco = capex + o.years * opex
    return Fleet(qps=float(qps), isl=est.isl, osl=est.osl, batch=est.batch, chips_per_replica=n,
                 replica_qps=replica_qps, replicas=replicas, chips=chips, load=load, average_power_w_per_chip=power_w,
                 capex_usd=capex, opex_usd_per_year=opex, years=o.years, tco_usd=tco,
                 energy_kwh_per_year=chips * (power_w + o.host_power_w_per_chip) * o.pue * HOURS_PER_YEAR / 1000,
                 usd_per_query=tco / (qps * o.years * SECONDS_PER_YEAR), mode=cost.mode, basis=basis)


def replica_rate_within(slo: str, *, num_prompts: int = 2000, **estimate_kw: Any) -> tuple[float, str]:
    """(queries per second, basis) one replica (dp 1) of the estimate_kw deployment sustains within ``slo``
    ('ttft_p99:2000,tpot_p99:200'), Poisson arrivals of fixed isl/osl, by the simulator's rate search."""
    from infercast.serving.metrics import parse_slo
    from infercast.serving.search import find_max_rate

    slo_ms = parse_slo(slo, "--slo", percentiles=True)
    kw = {k: v for k, v in estimate_kw.items() if v is not None and k not in
          ("batch", "energy", "cost", "usd_per_chip_hour", "auto")}
    kw["dp"] = 1
    search = find_max_rate(kw.pop("model"), kw.pop("hardware", None), slo_ms=slo_ms, num_prompts=num_prompts,
                           **kw)
    return search.max_request_rate, f"simulated at SLOs {slo} ({num_prompts} Poisson requests per probe)"


# Claim C18's scenario: Google-scale search traffic answered by a ChatGPT-class model.
GOOGLE_QPS = 100_000.0
"""About 8.5 billion searches a day, the figure usually quoted for Google (2022), is ~100,000 per second."""
QUERY_ISL, QUERY_OSL = 1000, 500
"""Assumed query: a 1,000-token prompt (question, instructions, retrieved context) and a 500-token answer."""
GOOGLE_CASES = (
    # (model, system, nodes, tp, pp)
    ("gpt-3-175b", "hgx-h100", 1, 8, 1),
    ("gpt-3-175b", "hgx-b200", 1, 8, 1),
    ("gpt-4-class-moe", "hgx-h100", 8, 8, 8),  # 3.6 TB of FP16 weights: 8 nodes of 8 x 80 GB
    ("gpt-4-class-moe", "hgx-b200", 4, 8, 4),  # 4 nodes of 8 x 180 GB
)
MAX_BATCH = 256
"""Largest batch the scenario runs, a cap for interactive serving: a memory-bound decode keeps getting
cheaper per token beyond it, at a longer TPOT."""


def google_scale(**cost: float) -> list[dict[str, Any]]:
    """The four C18 cases at the largest batch that fits (up to MAX_BATCH), FP16, fully loaded; owned
    hardware unless ``cost`` gives ``usd_per_chip_hour``."""
    rows = []
    for model, system, nodes, tp, pp in GOOGLE_CASES:
        kw = dict(system=system, nodes=nodes, tp=tp, pp=pp, isl=QUERY_ISL, osl=QUERY_OSL, cost=cost or None)
        probe = estimate(model, batch=1, **kw)
        batch = max(1, min(probe.memory.max_batch, MAX_BATCH))
        est = estimate(model, batch=batch, **kw)
        fleet = size_fleet(est, GOOGLE_QPS)
        rows.append({"model": model, "system": system, "nodes": nodes, "tp": tp, "pp": pp,
                     "e2e_latency_s": est.e2e_latency_s, "tpot_s": est.tpot_s, **fleet.to_dict()})
    return rows
