"""Fitting the network profile to measured-vision-encoder.csv, with leave-one-source-out and leave-one-chip-out
errors beside the in-sample ones.

The decoder's fit (``catalog/calibration/default.yaml``) comes from LLM serving: cuBLAS GEMMs and FP8 kernels of
TensorRT-LLM and vLLM. A network's convolutions run as cuDNN's and TensorRT's implicit GEMMs, MLPerf's BERT and
ResNet-50 as INT8 TensorRT engines (on Ampere, INT8 is the only 8-bit format; the decoder fit's narrow ceiling
is FP8's), and diffusers' pipelines as eager PyTorch. The network profile (``calibration.NetworkProfile``)
carries what differs, four kinds of parameter:

* per chip family, network kind (cnn, encoder, diffusion) and math width, a factor on the decoder fit's tensor-core
  ceilings (``narrow``: 8-bit math, ``wide``: 16-bit and TF32), fitted where the family has at least ``MIN_ROWS``
  rows of that kind and width: TensorRT's convolutions and its fused BERT kernels, and diffusers' modules, reach
  different shares of a chip's peak, and not in the same proportion on every architecture;
* the ``generic`` factor per kind and width, fitted to every row of them, for the other families;
* the mean tokens of an MLPerf BERT sample (the harness packs SQuAD without padding; the mean is not in the data);
* the host's time to dispatch one kernel in eager PyTorch (``passes.host_floor_s``).

Each row is tabulated once over a grid of the parameters it depends on (its factor, and the tokens or the launch
time where it has them): one vectorised evaluation per point of the second grid. The fit and its folds are then
interpolations in those tables. Loss: the sum of |log(predicted / measured)| (L1: a factor that minimises it
zeroes the median log error of its rows, the statistic the targets are stated in), every row weighted alike.
Coordinate descent, ``ROUNDS`` rounds: the factors given the tokens and launch time, then the tokens over the
BERT rows, the launch time over the eager rows.

Held out: leave-one-source-out (the MLPerf rounds, each diffusion benchmark) and leave-one-chip-out refit every
parameter without the rows left out and predict them; a chip whose family has too few other rows falls back to
the generic factor, as a new chip would.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.calibration import NetworkProfile, efficiency_for, narrow_math, scaled_efficiency
from infercast.errors import InfercastError
from infercast.validate_vision import group, overrides, setup, skip_reason, source_of, value_of

SCALES = np.geomspace(0.25, 4.0, 41)
"""Grid of the tensor-core factors the rows are tabulated at (7% apart; the fit interpolates)."""
TOKENS = np.geomspace(48, 384, 13)
"""Grid of the MLPerf BERT tokens per sample (19% apart)."""
LAUNCHES = np.geomspace(2e-6, 2e-4, 17)
"""Grid of the eager launch time (33% apart: the prediction bends where the host's floor takes over)."""
MIN_ROWS = 3
"""Rows of one family, kind and width below which the family takes the generic factor."""
ROUNDS = 4
FINE = 600
"""Candidates per parameter on its grid's span (log-spaced, 0.5% apart for the factors) in the descent."""


@dataclass(frozen=True)
class Table:
    """One row's log predictions over its parameter grid: [aux, SCALES], aux the tokens, the launch times or one."""

    id: str
    measured: float
    family: str
    narrow: bool
    kind: str
    """The network's kind (cnn, encoder, diffusion): the factors are per kind."""
    source: str
    chip: str
    group: str
    aux: str | None
    """'tokens', 'launch' or None: the second parameter the row depends on."""
    log_pred: np.ndarray

    @property
    def key(self) -> str:
        """The profile's key of the row's factor: KIND.WIDTH."""
        return f"{self.kind}.{'narrow' if self.narrow else 'wide'}"

    def predict(self, scale: float, tokens: float, launch: float) -> float:
        """The log prediction at the parameters (linear in log parameter between grid points)."""
        along = np.array([np.interp(np.log(scale), np.log(SCALES), lp) for lp in self.log_pred])
        if self.aux is None:
            return float(along[0])
        grid, x = (TOKENS, tokens) if self.aux == "tokens" else (LAUNCHES, launch)
        return float(np.interp(np.log(x), np.log(grid), along))


def tabulate(rows: list[dict[str, str]], progress=None) -> tuple[list[Table], dict[str, str]]:
    """Every predictable row's table; the reason for each row that is not."""
    tables, skipped = [], {}
    for i, row in enumerate(rows):
        why = skip_reason(row)
        try:
            measured = float(row["value"])
        except ValueError:
            why = why or f"value {row['value']!r} is not a number"
        if why:
            skipped[row["id"]] = why
            continue
        try:
            tables.append(_table(row, measured))
        except InfercastError as exc:
            skipped[row["id"]] = str(exc)
        if progress is not None and i % 50 == 0:
            progress(f"  tabulated {i + 1} of {len(rows)} rows")
    return tables, skipped


def _table(row: dict[str, str], measured: float) -> Table:
    bert = group(row) == "bert"
    sc, wl, eager, _ = setup(row, TOKENS[-1])
    narrow = narrow_math(sc.chip, sc.precision.gemm_math)
    base = efficiency_for(sc.chip).model_copy(update=overrides(row))
    eff = scaled_efficiency(base, SCALES[:, None], narrow)  # [scales, 1]: batches on the last axis
    aux = "tokens" if bert else "launch" if eager else None
    points = TOKENS if bert else LAUNCHES if eager else [None]
    out = []
    for v in points:
        s, w = (setup(row, v)[:2] if bert else (sc, wl))
        value = value_of(row, replace(s, efficiency=eff), w, eager, v if eager else None)
        out.append(np.log(np.broadcast_to(np.asarray(value, dtype=float).reshape(-1), SCALES.shape)))
    return Table(row["id"], measured, sc.chip.family, narrow, sc.network.kind, source_of(row), sc.chip.id, group(row),
                 aux, np.array(out))


@dataclass(frozen=True)
class Params:
    scales: dict[str, dict[str, float]]
    tokens: float
    launch: float

    def scale(self, family: str, key: str) -> float:
        return self.scales.get(family, {}).get(key, self.scales["generic"].get(key, 1.0))

    def log_error(self, t: Table) -> float:
        return t.predict(self.scale(t.family, t.key), self.tokens, self.launch) - np.log(t.measured)


def _scale_curve(t: Table, tokens: float, launch: float, fine: np.ndarray) -> np.ndarray:
    """The row's log prediction along ``fine`` factors at the given tokens and launch time."""
    lp = t.log_pred
    if t.aux is not None:
        grid, x = (TOKENS, tokens) if t.aux == "tokens" else (LAUNCHES, launch)
        lp = np.array([np.interp(np.log(x), np.log(grid), lp[:, j]) for j in range(lp.shape[1])])[None]
    return np.interp(np.log(fine), np.log(SCALES), lp[0])


def _aux_curve(t: Table, scale: float, fine: np.ndarray) -> np.ndarray:
    """The row's log prediction along ``fine`` values of its second parameter at the factor ``scale``."""
    grid = TOKENS if t.aux == "tokens" else LAUNCHES
    along = np.array([np.interp(np.log(scale), np.log(SCALES), row) for row in t.log_pred])
    return np.interp(np.log(fine), np.log(grid), along)


def _argmin_l1(curves: list[np.ndarray], measured: np.ndarray, fine: np.ndarray) -> float:
    loss = np.abs(np.stack(curves) - np.log(measured)[:, None]).sum(axis=0)
    return float(fine[int(np.argmin(loss))])


def fit(tables: list[Table], rounds: int = ROUNDS) -> Params:
    """The parameters minimising the sum of absolute log errors of ``tables`` (module docstring)."""
    fine_s = np.geomspace(SCALES[0], SCALES[-1], FINE)
    fine_t = np.geomspace(TOKENS[0], TOKENS[-1], FINE)
    fine_l = np.geomspace(LAUNCHES[0], LAUNCHES[-1], FINE)
    p = Params({"generic": {}}, float(TOKENS[len(TOKENS) // 2]), float(LAUNCHES[5]))
    groups: dict[tuple[str, str], list[Table]] = defaultdict(list)
    for t in tables:
        groups[(t.family, t.key)].append(t)
    measured = {t.id: t.measured for t in tables}

    def by_scale(ts: list[Table]) -> float:
        return _argmin_l1([_scale_curve(t, p.tokens, p.launch, fine_s) for t in ts],
                          np.array([measured[t.id] for t in ts]), fine_s)

    for _ in range(rounds):
        scales: dict[str, dict[str, float]] = {"generic": {}}
        for key in sorted({t.key for t in tables}):  # one factor for every family, as a family without rows gets
            scales["generic"][key] = by_scale([t for t in tables if t.key == key])
        for (family, key), ts in sorted(groups.items()):
            if len(ts) >= MIN_ROWS:
                scales.setdefault(family, {})[key] = by_scale(ts)
        p = replace(p, scales=scales)
        for aux, fine, field in (("tokens", fine_t, "tokens"), ("launch", fine_l, "launch")):
            ts = [t for t in tables if t.aux == aux]
            if ts:
                value = _argmin_l1([_aux_curve(t, p.scale(t.family, t.key), fine) for t in ts],
                                   np.array([measured[t.id] for t in ts]), fine)
                p = replace(p, **{field: value})
    return p


def _errors(tables: list[Table], p: Params) -> dict[str, float]:
    return {t.id: float(np.expm1(p.log_error(t))) for t in tables}


def _held_out(tables: list[Table], key, progress=None) -> dict[str, float]:
    """Each row's signed error from the fit without its fold (``key``: source or chip)."""
    out = {}
    for fold in sorted({key(t) for t in tables}):
        train = [t for t in tables if key(t) != fold]
        test = [t for t in tables if key(t) == fold]
        if progress is not None:
            progress(f"  without {fold}: fitting {len(train)} rows, predicting {len(test)}")
        out.update(_errors(test, fit(train)))
    return out


def stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "median_ape": None, "p90_ape": None, "median_signed": None}
    e = np.asarray(errors, dtype=float)
    return {"count": len(e), "median_ape": float(np.median(np.abs(e))), "p90_ape": float(np.percentile(np.abs(e), 90)),
            "median_signed": float(np.median(e))}


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def calibrate_vision(rows: list[dict[str, str]], *, folds: bool = True, progress=None) -> NetworkProfile:
    """The network profile fitted to ``rows``, its record holding the in-sample, leave-one-source-out and
    leave-one-chip-out error of every row and their medians by group, source and chip."""
    tables, skipped = tabulate(rows, progress)
    if not tables:
        raise InfercastError("no row of the data can be predicted; nothing to fit")
    p = fit(tables)
    errs = {"in_sample": _errors(tables, p)}
    if folds:
        errs["loso"] = _held_out(tables, lambda t: t.source, progress)
        errs["loco"] = _held_out(tables, lambda t: t.chip, progress)
    summary: dict[str, Any] = {}
    for fold, e in errs.items():
        by: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for t in tables:
            for name, g in (("group", t.group), ("group_source", f"{t.group} | {t.source}"),
                            ("group_chip", f"{t.group} | {t.chip}")):
                by[name][g].append(e[t.id])
        summary[fold] = {name: {g: stats(v) for g, v in sorted(d.items())} for name, d in by.items()}
    record = {"rows": len(tables), "skipped": len(skipped), "loss": "sum of |log(predicted / measured)|, rows alike",
              "grids": {"scales": [float(SCALES[0]), float(SCALES[-1])], "tokens": [float(TOKENS[0]), float(TOKENS[-1])],
                        "launch_s": [float(LAUNCHES[0]), float(LAUNCHES[-1])]}, "min_rows_per_family": MIN_ROWS,
              "summary": summary,
              "row_errors": {t.id: {k: _round(v[t.id]) for k, v in errs.items()} for t in tables}}
    scales = {f: {w: _round(v) for w, v in d.items()} for f, d in p.scales.items()}
    return NetworkProfile(description=f"fitted by infercast.calibrate_vision to {len(tables)} rows of "
                                      f"measured-vision-encoder.csv", scales=scales,
                          eager_launch_s=_round(p.launch), mlperf_bert_tokens=_round(p.tokens), fit=record)
