"""Fitting the efficiency parameters to measurements, per chip family x framework, with held-out errors.

The model's free parameters are ``Efficiency`` fields at five levels, and the collective parameters:

    value(field, chip family f, framework w) = map(u_generic + d_vendor(f) + d_family(f) + d_framework(w)
                                                   + d_cell(f, w))

u lives on an unconstrained axis mapped into the field's physical range (``BOUNDS``, logistic, on
the log scale for the overheads); each deviation d is penalised towards its prior, so a level
whose rows do not pin a field keeps the level above it (hierarchical shrinkage: cell -> framework
-> family -> vendor -> generic -> literature prior, ``catalog/calibration/prior.yaml``, whose
``vendors`` entries carry the measured GEMM efficiencies of ``shared/data/gemm-efficiency.csv``).
Which fields each level fits is ``LEVELS``: the chip's levels its achievable fractions, the
framework's its per-kernel, per-step and per-request times and its libraries' (FP8, FP4, grouped
expert) GEMM efficiency. They are fitted by robust least squares on the log error of every row
the validator predicts:

    minimise  sum_i w_i rho(log(predicted_i / measured_i))  +  priors

* rho is the soft-L1 loss with a 10% scale: rows within about 10% count quadratically, the rest
  linearly, so a row the model cannot explain (a framework quirk) does not drag the others.
* w_i = 1 / sqrt(rows of the row's source): a source of 36 profiled GEMMs does not outvote one of
  three end-to-end measurements, and per-row evidence still counts.

Serving rows (offline and closed-loop runs) are simulated once, recorded, and re-priced at every
parameter vector (``infercast.serving.replay``); server rows, whose rate search a replay cannot
follow, are validated but not fitted.

Held-out errors: leave one source out (the ``source`` column: one document or data capture), one
chip out and one framework out. A fold's parameters are the full fit's with those only the left-out
rows pin reset to their prior (a chip or framework no other row runs), then moved by one
Gauss-Newton step on the other rows: the least-squares step of their residuals (weighted as a fit of
them alone would weigh them) and priors, linearised with the Jacobian the full fit ended on. That is the fit without the left-out rows to first order
(exact where the problem is locally quadratic), for the cost of a linear solve instead of hours of
refits on two cores; ``fold_evaluations`` > 0 refits each fold with that many least-squares
iterations from there instead. The fold's predictions of the left-out rows (the model run anew, not
linearised) are the held-out errors.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infercast.calibration import Calibration, comm_for, efficiency_for, load_calibration, vendor_of
from infercast.errors import InfercastError
from infercast.framework import GENERIC
from infercast.hardware import load_chip
from infercast.parallel import CommOptions
from infercast.roofline import Efficiency
from infercast.scenario import resolve
from infercast.serving.replay import Recording, record, replay
from infercast.serving.scenarios import LATENCY, STATISTICS, THROUGHPUT, RowRun, row_deployment, row_run, statistic
from infercast.serving.server import server
from infercast.serving.steptime import step_time
from infercast.validate import predict_row, read_rows

BOUNDS: dict[str, tuple[float, float]] = {
    "gemm_max": (0.30, 1.00),
    "gemm_max_narrow": (0.15, 1.00),
    "gemm_max_fp4": (0.10, 1.00),
    "gemm_half_dim": (1.0, 512.0),
    "attention_max": (0.10, 1.00),
    "attention_half_len": (1.0, 8192.0),
    "bandwidth": (0.40, 1.00),
    "kernel_overhead_s": (0.5e-6, 100e-6),
    "graph_kernel_overhead_s": (0.1e-6, 30e-6),
    "step_overhead_s": (1e-6, 50e-3),
    "request_overhead_s": (1e-4, 2.0),
    "moe_gemm_efficiency": (0.05, 1.00),
}
"""Fitted efficiency fields and their physical ranges."""
COMM_BOUNDS: dict[str, tuple[float, float]] = {"bandwidth": (0.30, 1.00), "launch_s": (1e-6, 60e-6)}
LOG_SCALE = {"gemm_half_dim", "attention_half_len", "kernel_overhead_s", "graph_kernel_overhead_s", "step_overhead_s",
             "request_overhead_s", "launch_s"}
"""Parameters spanning orders of magnitude: mapped on the log scale."""
LEVELS: dict[str, tuple[str, ...]] = {
    "generic": tuple(f for f in BOUNDS if f != "request_overhead_s"),
    "vendor": ("gemm_max", "gemm_max_narrow", "gemm_max_fp4", "bandwidth"),
    "family": ("gemm_max", "gemm_max_narrow", "gemm_max_fp4", "bandwidth", "attention_max", "kernel_overhead_s"),
    "framework": ("kernel_overhead_s", "graph_kernel_overhead_s", "step_overhead_s", "request_overhead_s",
                  "moe_gemm_efficiency", "gemm_max_narrow", "gemm_max_fp4", "attention_max"),
    "cell": ("kernel_overhead_s", "step_overhead_s", "request_overhead_s", "gemm_max_narrow", "gemm_max_fp4"),
}
"""The fields each level fits. The generic framework has no request overhead (an offline engine)."""
CHIP_LEVELS = ("vendor", "family")
REQUEST_PRIOR_S = 0.05
"""Prior of a serving framework's request overhead: 50 ms, the order of an HTTP request through a Python API
server with tokenization and streaming (the InferenceX TTFTs of a 1k prompt at concurrency 1 are 70-170 ms,
of which the prefill is a few tens)."""

PROGRESS_EVERY_S = 10.0
"""A fit says how far it got at most this often."""
LOSS = "soft_l1"
"""Robust loss on the log error e (scale f): soft_l1 2 f^2 (sqrt(1 + (e/f)^2) - 1), or cauchy
f^2 log(1 + (e/f)^2), whose pull stops growing for rows far off."""
LOSS_SCALE = 0.10
"""Scale of the robust loss on the log error: about 10%."""
_LOSSES = {
    "soft_l1": lambda e, f: 2 * f * f * (np.sqrt(1 + (e / f) ** 2) - 1),
    "cauchy": lambda e, f: f * f * np.log1p((e / f) ** 2),
}
PRIOR_WEIGHTS = {"generic": 0.05, "vendor": 0.3, "family": 0.3, "framework": 0.3, "cell": 1.0, "comm": 0.05}
"""Weight of each level's pull towards its prior (per unit of the logistic axis). Generic and family 0.05/0.3
were chosen by the leave-one-source-out error of the first-round data among three settings (0.05/0.3,
0.01/0.05, 0.002/0.01: median 12.9/14.1/13.4%, p90 43/44/48%); vendor and framework take the family's, and a
cell, which few rows pin, a stronger one."""
FOLD_EVALUATIONS = 0
"""Least-squares iterations of a fold's refit after its Gauss-Newton step (0: the step alone)."""


def _to_unit(name: str, value: float, lo: float, hi: float) -> float:
    """Inverse of ``_from_unit``: the unconstrained coordinate of ``value`` (kept inside the range)."""
    if name in LOG_SCALE:
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    s = min(max((value - lo) / (hi - lo), 0.01), 0.99)
    return math.log(s / (1 - s))


def _from_unit(name: str, u, lo: float, hi: float):
    s = 1 / (1 + np.exp(-u))
    if name in LOG_SCALE:
        return np.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * s)
    return lo + (hi - lo) * s


@dataclass(frozen=True)
class Row:
    row: dict[str, str]
    source: str
    """The ``source`` column: the document or capture the row comes from."""
    family: str
    framework: str
    measured: float
    run: Any = None
    """For a replayed serving row: its ``_Replayed`` run."""


@dataclass
class _Replayed:
    """A serving run recorded once and re-priced at every parameter vector."""

    run: RowRun
    recording: Recording
    budget: int
    max_seqs: int


def usable_rows(rows: list[dict[str, str]], start: Calibration, progress=None) -> tuple[list[Row], dict[str, str]]:
    """The rows the fit predicts under ``start`` (serving runs recorded), and the reason for each it does not."""
    out, skipped = [], {}
    runs: dict[RowRun, _Replayed] = {}
    say = progress or (lambda msg: None)
    said = time.monotonic()
    for i, r in enumerate(rows):
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            say(f"  recording: row {i} of {len(rows)}")
        try:
            measured = float(r["value"])
            found = row_deployment(r)
            if isinstance(found, str):
                skipped[r["id"]] = found
                continue
            framework = found[0]["framework"].name
            replayed = None
            if r["scenario"] in ("server", "interactive"):
                skipped[r["id"]] = "a server row's rate search is validated, not fitted (a replay cannot follow it)"
                continue
            if r["scenario"] in ("offline", "concurrency"):
                plan = row_run(r)
                if isinstance(plan, str):
                    skipped[r["id"]] = plan
                    continue
                run = plan[0]
                if run not in runs:
                    srv = server(**dict(run.options), calibration=start)
                    _, rec = record(srv, run.draw(), max_concurrency=run.concurrency, beams=run.beams)
                    runs[run] = _Replayed(run, rec, srv.budget, srv.config.max_num_seqs)
                replayed = runs[run]
                pred = _serving_value(r, _replay_metrics(replayed, start))
                reason = None
            else:
                pred, reason, _ = predict_row(r, calibration=start)
        except (InfercastError, ValueError) as exc:
            skipped[r["id"]] = str(exc)
            continue
        if pred is None or not measured > 0:
            skipped[r["id"]] = reason or f"value {r['value']!r} is not a positive number"
            continue
        out.append(Row(r, r.get("source") or r["id"].split("-", 1)[0], load_chip(r["hardware"]).family, framework,
                       measured, replayed))
    return out, skipped


class _Memo:
    """What a fit keeps between evaluations, by the efficiency and collective values a prediction used: rows'
    predictions and runs' metrics (small, many), and step-time tables (large: the last few per deployment)."""

    MAX_VALUES = 200_000
    MAX_TABLES = 128

    def __init__(self):
        self.values: dict = {}
        self.tables: dict = {}

    def value(self, key, make):
        return _kept(self.values, self.MAX_VALUES, key, make)

    def table(self, key, make):
        return _kept(self.tables, self.MAX_TABLES, key, make)


def _kept(store: dict, limit: int, key, make):
    """``store[key]``, made and kept (the store emptied first when it holds ``limit`` entries)."""
    hit = store.get(key)
    if hit is None:
        if len(store) >= limit:
            store.clear()
        hit = store[key] = make()
    return hit


def _replay_metrics(rep: _Replayed, calibration: Calibration, memo: _Memo | None = None) -> dict[str, Any]:
    """The replayed run's metrics under ``calibration`` (kept in ``memo`` by the deployment's efficiency)."""
    memo = memo or _Memo()
    sc = resolve(**dict(rep.run.options), calibration=calibration)
    eff, comm = _eff_key(sc.efficiency), _comm_key(sc.comm)

    def metrics():
        table = memo.table((rep.run.options, rep.run.beams, eff, comm),
                           lambda: step_time(sc, rep.budget * rep.run.beams, rep.max_seqs))
        return replay(rep.recording, table, sc.efficiency.request_overhead_s)

    return memo.value((rep.run, eff, comm), metrics)


def _serving_value(row: dict[str, str], metrics: dict[str, Any]) -> float:
    metric = row["metric"]
    if metric in THROUGHPUT:
        return metrics[THROUGHPUT[metric]]
    return metrics[LATENCY[metric]][STATISTICS[statistic(row)]] / 1e3


def _eff_key(eff: Efficiency) -> tuple:
    return tuple(dict(eff).values())


def _comm_key(comm: CommOptions) -> tuple:
    return tuple(dict(comm).values())


def _cell(family: str, framework: str) -> str:
    return f"{family}/{framework}"


class _Problem:
    """The parameter vector: generic values, deviations per vendor, family, framework and cell, the request
    overhead's base, and the collective values; each entry ``(level, key, field)``."""

    def __init__(self, rows: list[Row], start: Calibration, weights: dict[str, float], progress=None):
        self.rows, self.start, self.weights_by_level = rows, start, weights
        self.progress, self.calls, self.said = progress, 0, time.monotonic()
        self.measured = np.array([r.measured for r in rows])
        gen = {**start.generic}
        for f in ("gemm_max_narrow", "gemm_max_fp4"):
            gen[f] = gen.get(f) or gen.get("gemm_max_narrow") or gen["gemm_max"]
        gen.setdefault("graph_kernel_overhead_s", gen["kernel_overhead_s"])
        self.u_generic = {f: _to_unit(f, max(float(gen.get(f) or BOUNDS[f][0]), BOUNDS[f][0]), *BOUNDS[f])
                          for f in BOUNDS}
        self.u_generic["request_overhead_s"] = _to_unit("request_overhead_s", REQUEST_PRIOR_S,
                                                        *BOUNDS["request_overhead_s"])
        comm = CommOptions(**start.comm)
        self.u_comm = {f: _to_unit(f, getattr(comm, f), *COMM_BOUNDS[f]) for f in COMM_BOUNDS}
        families = sorted({r.family for r in rows})
        frameworks = sorted({r.framework for r in rows})
        cells = sorted({_cell(r.family, r.framework) for r in rows})
        vendors = sorted({vendor_of(f) for f in families})
        params: list[tuple[str, str | None, str]] = [("generic", None, f) for f in LEVELS["generic"]]
        params.append(("request", None, "request_overhead_s"))
        params += [("vendor", v, f) for v in vendors for f in LEVELS["vendor"]]
        params += [("family", k, f) for k in families for f in LEVELS["family"]]
        params += [("framework", w, f) for w in frameworks for f in LEVELS["framework"]
                   if not (w == GENERIC and f == "request_overhead_s")]
        params += [("cell", c, f) for c in cells for f in LEVELS["cell"]
                   if not (c.endswith("/" + GENERIC) and f == "request_overhead_s")]
        params += [("comm", None, f) for f in COMM_BOUNDS]
        self.params = params
        self.index = {p: i for i, p in enumerate(params)}
        self.prior = np.array([self._prior_of(p) for p in params])
        self.penalty = np.array([math.sqrt(weights["generic" if p[0] == "request" else p[0]]) for p in params])
        self.weights = _row_weights(rows)
        self.memo = _Memo()
        self.solution = None
        """The least-squares result of the last fit (its x, residuals and Jacobian: the folds' starting point)."""

    def _prior_of(self, p: tuple[str, str | None, str]) -> float:
        """The prior of an entry: the start's value (generic, comm), its vendor entry (a deviation), else 0."""
        level, key, f = p
        if level == "generic" or level == "request":
            return self.u_generic[f]
        if level == "comm":
            return self.u_comm[f]
        if level == "vendor" and f in self.start.vendors.get(key, {}):
            return _to_unit(f, float(self.start.vendors[key][f]), *BOUNDS[f]) - self.u_generic[f]
        return 0.0

    @property
    def size(self) -> int:
        return len(self.params)

    def x0(self) -> np.ndarray:
        return self.prior.copy()

    def unit(self, x: np.ndarray, family: str, framework: str, f: str) -> float:
        """The unconstrained value of field ``f`` for a chip family under a framework."""
        ix = self.index
        if f == "request_overhead_s":
            if framework == GENERIC:
                return -math.inf
            u = x[ix[("request", None, f)]]
        else:
            u = x[ix[("generic", None, f)]]
        for level, key in (("vendor", vendor_of(family)), ("family", family), ("framework", framework),
                           ("cell", _cell(family, framework))):
            i = ix.get((level, key, f))
            if i is not None:
                u = u + x[i]
        return u

    def value(self, x: np.ndarray, family: str, framework: str, f: str) -> float:
        u = self.unit(x, family, framework, f)
        return 0.0 if u == -math.inf else float(_from_unit(f, u, *BOUNDS[f]))

    def profile(self, x: np.ndarray, record: dict[str, Any] | None = None, description: str = "",
                exact: bool = False) -> Calibration:
        """The calibration profile of ``x``: generic values, vendor and family values of the chip fields, the
        framework values of the fields only frameworks fit, and every framework field of each pair seen;
        rounded to 4 digits unless ``exact`` (the fit's own predictions, whose finite differences rounding
        would swallow)."""
        _round = _exact if exact else _round4
        keep = {k: v for k, v in self.start.generic.items() if k not in BOUNDS}
        generic = {**keep, **{f: _round(self.value(x, "", GENERIC, f)) for f in LEVELS["generic"]},
                   "request_overhead_s": 0.0}
        vendors: dict[str, dict[str, float]] = {}
        for level, key, f in self.params:
            if level == "vendor":
                u = x[self.index[("generic", None, f)]] + x[self.index[(level, key, f)]]
                vendors.setdefault(key, {})[f] = _round(float(_from_unit(f, u, *BOUNDS[f])))
        families: dict[str, dict[str, float]] = {}
        frameworks: dict[str, dict[str, float]] = {}
        cells: dict[str, dict[str, float]] = {}
        chip_fields = set(LEVELS["vendor"]) | set(LEVELS["family"])
        framework_only = [f for f in LEVELS["framework"] if f not in chip_fields]
        for level, key, f in self.params:
            if level == "family" and key not in families:
                families[key] = {g: _round(self.value(x, key, "", g)) for g in sorted(chip_fields)}
            if level == "framework" and key not in frameworks:
                frameworks[key] = {g: _round(self.value(x, "", key, g)) for g in framework_only
                                   if not (key == GENERIC and g == "request_overhead_s")}
            if level == "cell" and key not in cells:
                fam, _, fw = key.partition("/")
                fields = set(LEVELS["framework"]) | set(LEVELS["cell"])
                cells[key] = {g: _round(self.value(x, fam, fw, g)) for g in sorted(fields)}
        comm = {f: _round(float(_from_unit(f, x[self.index[("comm", None, f)]], *COMM_BOUNDS[f]))) for f in COMM_BOUNDS}
        keep_families = {k: v for k, v in self.start.families.items() if k not in families}
        return Calibration(description=description, generic=generic,
                           vendors={**{k: v for k, v in self.start.vendors.items() if k not in vendors}, **vendors},
                           families={**keep_families, **families}, frameworks=frameworks, cells=cells,
                           chips=dict(self.start.chips), comm={**self.start.comm, **comm}, fit=record)

    def predict(self, x: np.ndarray) -> np.ndarray:
        profile = self.profile(x, exact=True)
        return _predict(self.rows, profile, self.memo)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        e = np.log(self.predict(x) / self.measured)
        self.calls += 1
        if self.progress is not None and time.monotonic() - self.said >= PROGRESS_EVERY_S:
            self.said = time.monotonic()
            self.progress(f"  {self.calls} evaluations of {len(self.rows)} rows; median |log error| "
                          f"{float(np.nanmedian(np.abs(e))):.3f}")
        e = np.where(np.isfinite(e), e, 5.0)  # a failed prediction: a large, finite penalty
        robust = np.sign(e) * np.sqrt(_LOSSES[LOSS](e, LOSS_SCALE))  # squared, the robust cost
        return np.concatenate([np.sqrt(self.weights) * robust, self.penalty * (x - self.prior)])

    def touches(self, r: Row) -> list[int]:
        """The entries a row's prediction depends on."""
        out = [self.index[("generic", None, f)] for f in LEVELS["generic"]]
        out += [self.index[("comm", None, f)] for f in COMM_BOUNDS]
        if r.framework != GENERIC:
            out.append(self.index[("request", None, "request_overhead_s")])
        for level, key in (("vendor", vendor_of(r.family)), ("family", r.family), ("framework", r.framework),
                           ("cell", _cell(r.family, r.framework))):
            out += [self.index[(level, key, f)] for f in LEVELS[level] if (level, key, f) in self.index]
        return out

    def sparsity(self):
        """Which parameters each residual depends on (finite differences then group the columns)."""
        n_rows = len(self.rows)
        s = np.zeros((n_rows + self.size, self.size), dtype=bool)
        for i, r in enumerate(self.rows):
            s[i, self.touches(r)] = True
        s[n_rows:, :] = np.eye(self.size, dtype=bool)
        return s


def _row_weights(rows: list[Row]) -> np.ndarray:
    """w_i = 1 / sqrt(rows of the row's source), scaled to a mean of 1."""
    counts = defaultdict(int)
    for r in rows:
        counts[r.source] += 1
    w = np.array([1 / math.sqrt(counts[r.source]) for r in rows])
    return w * len(rows) / w.sum()


def _round4(v: float) -> float:
    return float(f"{v:.4g}")


def _exact(v: float) -> float:
    return float(v)


_round = _round4


def _least_squares():
    try:
        from scipy.optimize import least_squares
    except ImportError:
        raise InfercastError('calibrate --fit needs SciPy: pip install "infercast[fit]"') from None
    return least_squares


def _predict(rows: list[Row], profile: Calibration, memo: _Memo | None = None) -> np.ndarray:
    """Predictions for ``rows`` under ``profile`` (NaN where a row cannot be predicted); ``memo`` keeps each
    row's prediction by its deployment's efficiency and collective values, which most parameter changes leave
    alone."""
    memo = memo or _Memo()
    comm = _comm_key(comm_for(profile))
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        eff = _eff_key(efficiency_for(load_chip(r.row["hardware"]), profile, r.framework))

        def make(r=r):
            if r.run is not None:
                return _serving_value(r.row, _replay_metrics(r.run, profile, memo))
            pred, _, _ = predict_row(r.row, calibration=profile)
            return pred if pred is not None else np.nan

        out[i] = memo.value((r.row["id"], eff, comm), make)
    return out


def predict_with(rows: list[Row], profile: Calibration) -> np.ndarray:
    """Predictions for ``rows`` under ``profile``."""
    return _predict(rows, profile)


def fit_profile(rows: list[Row], start: Calibration, *, max_nfev: int = 60, description: str = "",
                prior_weights: dict[str, float] | tuple[float, float] | None = None, progress=None,
                x0: np.ndarray | None = None, problem: _Problem | None = None) -> tuple[Calibration, np.ndarray, Any]:
    """The profile that fits ``rows`` best from ``start`` (or from ``x0``, a vector of ``problem``'s layout),
    its predictions for them, and the fitted vector; ``progress`` receives a line every PROGRESS_EVERY_S
    seconds of fitting."""
    if not rows:
        raise InfercastError("calibrate --fit: no row of the data can be predicted; nothing to fit")
    weights = _weights(prior_weights)
    if problem is None:
        problem = _Problem(rows, start, weights, progress)
    result = _least_squares()(problem.residuals, problem.x0() if x0 is None else x0,
                              jac_sparsity=problem.sparsity(), method="trf", x_scale=1.0, diff_step=1e-3,
                              max_nfev=max_nfev)
    problem.solution = result
    profile = problem.profile(result.x, description=description)
    return profile, problem.predict(result.x), result.x


def _weights(prior_weights) -> dict[str, float]:
    if prior_weights is None:
        return dict(PRIOR_WEIGHTS)
    if isinstance(prior_weights, dict):
        return {**PRIOR_WEIGHTS, **prior_weights}
    generic, deviation = prior_weights
    return {"generic": generic, "comm": generic, **{k: deviation for k in ("vendor", "family", "framework", "cell")}}


def _summary(errors: list[float]) -> dict[str, Any]:
    e = np.abs(np.asarray(errors))
    e = e[np.isfinite(e)]
    return {"count": len(e), "median_ape": float(np.median(e)) if len(e) else None,
            "p90_ape": float(np.percentile(e, 90)) if len(e) else None}


GROUPINGS = {
    "metric": lambda r: r.row["metric"],
    "source": lambda r: r.row["id"].split("-", 1)[0],
    "chip": lambda r: r.row["hardware"],
    "vendor": lambda r: vendor_of(r.family),
    "framework": lambda r: r.framework,
    "model": lambda r: r.row["model"],
    "scenario": lambda r: r.row["scenario"],
}
"""How errors are tabulated (``source`` here is the dataset: the id's prefix, as validate groups rows)."""


def _grouped(rows: list[Row], errors: np.ndarray) -> dict[str, Any]:
    out: dict[str, Any] = {"all": _summary(list(errors))}
    for key, of in GROUPINGS.items():
        groups = defaultdict(list)
        for r, e in zip(rows, errors, strict=True):
            groups[of(r)].append(float(e))
        out[f"by_{key}"] = {k: _summary(v) for k, v in sorted(groups.items())}
    return out


FOLDS = {
    "leave_one_source_out": lambda r: r.source,
    "leave_one_chip_out": lambda r: r.row["hardware"],
    "leave_one_framework_out": lambda r: r.framework,
}
"""Held-out errors: each fold leaves out the rows of one value of these (the source column, the chip, the
framework)."""


@dataclass(frozen=True)
class FitReport:
    profile: Calibration
    rows: list[Row]
    in_sample: np.ndarray
    """Signed error of each row under the full fit."""
    held_out: dict[str, np.ndarray] = field(default_factory=dict)
    """Signed error of each row when its source, chip or framework was left out of the fit (by fold kind)."""
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def loso(self) -> np.ndarray | None:
        return self.held_out.get("leave_one_source_out")


def _fold(problem: _Problem, train_idx: list[int], test_idx: list[int], rows: list[Row], start: Calibration,
          weights: dict[str, float], progress, evaluations: int) -> np.ndarray:
    """Predictions of the rows ``test_idx`` by the fit without them: the full fit's parameters, those only the
    left-out rows touch reset to their prior, the rest moved by one Gauss-Newton step on the rows ``train_idx``
    (and refit for ``evaluations`` least-squares iterations if above 0)."""
    x_full, result = problem.solution.x, problem.solution
    kept = sorted({j for i in train_idx for j in problem.touches(rows[i])})
    x = problem.prior.copy()
    x[kept] = x_full[kept]
    n_rows = len(rows)
    jac = result.jac.toarray() if hasattr(result.jac, "toarray") else np.asarray(result.jac)
    # the residuals the fold keeps (its rows and the priors of its parameters), linearised at the full fit; a
    # row's residual carries sqrt(w_i), and the fold weighs its rows by their counts without the left-out ones
    use = np.concatenate([np.asarray(train_idx, dtype=int), n_rows + np.asarray(kept, dtype=int)])
    rescale = np.concatenate([np.sqrt(_row_weights([rows[i] for i in train_idx]) / problem.weights[train_idx]),
                              np.ones(len(kept))])
    A, b = jac[np.ix_(use, kept)] * rescale[:, None], result.fun[use] * rescale
    step, *_ = np.linalg.lstsq(A, -b, rcond=None)
    x[kept] = x[kept] + step
    if evaluations > 0:
        train = [rows[i] for i in train_idx]
        fold = _Problem(train, start, weights, progress)
        fold.memo = problem.memo
        x0 = np.array([x[problem.index[p]] for p in fold.params])
        _, _, xf = fit_profile(train, start, max_nfev=evaluations, x0=x0, problem=fold)
        for p, i in fold.index.items():
            x[problem.index[p]] = xf[i]
    return _predict([rows[i] for i in test_idx], problem.profile(x, exact=True), problem.memo)


def calibrate(data: str, *, start: Calibration | str = "prior", loso: bool = True, max_nfev: int = 60,
              prior_weights: dict[str, float] | tuple[float, float] | None = None, progress=None,
              folds: tuple[str, ...] = tuple(FOLDS), fold_evaluations: int = FOLD_EVALUATIONS) -> FitReport:
    """Fit a profile to the rows of ``data`` (a CSV path, or 'public') from ``start`` (the literature
    prior by default), with held-out errors (``folds``: leave one source, chip or framework out) unless
    ``loso`` is False."""
    start = start if isinstance(start, Calibration) else load_calibration(start)
    say = progress or (lambda msg: None)
    rows, skipped = usable_rows(read_rows(data), start, say)
    say(f"fitting {len(rows)} rows ({len(skipped)} not fitted)")
    weights = _weights(prior_weights)
    desc = f"fitted by infercast calibrate --fit {data} to {len(rows)} rows"
    problem = _Problem(rows, start, weights, say)
    profile, pred, x = fit_profile(rows, start, max_nfev=max_nfev, description=desc, prior_weights=weights,
                                   progress=say, problem=problem)
    measured = np.array([r.measured for r in rows])
    in_sample = (pred - measured) / measured
    held: dict[str, np.ndarray] = {}
    for kind in (folds if loso else ()):
        of = FOLDS[kind]
        values = sorted({of(r) for r in rows})
        if len(values) < 2:
            continue
        errors = np.full(len(rows), np.nan)
        for value in values:
            train_idx = [i for i, r in enumerate(rows) if of(r) != value]
            test_idx = [i for i, r in enumerate(rows) if of(r) == value]
            say(f"{kind}: fitting without {value} ({len(train_idx)} rows), predicting its {len(test_idx)}")
            got = _fold(problem, train_idx, test_idx, rows, start, weights, say, fold_evaluations)
            errors[test_idx] = (got - measured[test_idx]) / measured[test_idx]
        held[kind] = errors
    record = {"data": data, "rows": len(rows), "skipped": len(skipped), "loss": f"{LOSS} on log error, scale "
              f"{LOSS_SCALE}", "weights": "1/sqrt(rows of the source)", "bounds": {**BOUNDS, **{
                  f"comm.{k}": v for k, v in COMM_BOUNDS.items()}},
              "levels": {k: list(v) for k, v in LEVELS.items()}, "prior_weights": weights,
              "max_nfev": max_nfev, "iterations": int(problem.solution.nfev),
              "stopped": str(problem.solution.message), "folds": "one Gauss-Newton step from the full fit" + (
                  f", then {fold_evaluations} least-squares iterations" if fold_evaluations else ""),
              "in_sample": _grouped(rows, in_sample)}
    for kind, errors in held.items():
        record[kind] = _grouped(rows, errors)
    record["row_errors"] = {r.row["id"]: {"in_sample": _round(float(a)),
                                          **{k: _round(float(v[i])) for k, v in held.items()}}
                            for i, (r, a) in enumerate(zip(rows, in_sample, strict=True))}
    profile = profile.model_copy(update={"fit": _plain(record)})
    return FitReport(profile, rows, in_sample, held, skipped)


def _plain(x):
    """Tuples to lists and numpy scalars to floats, for YAML."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
