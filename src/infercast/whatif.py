"""What-ifs: a chip's or a design's figures swept through ``evaluate()``, what binds at each point, and how
much TPOT, TTFT, J/token and USD per million tokens move with each (a tornado).

``infercast whatif --model M --hardware BASE --vary dram_bandwidth=0.5x..4x --vary sram_bytes=1e8,1e9``
evaluates the grid of every axis's values around BASE (a catalog chip, a chip YAML or a design). Numeric
axes are arrays given to one ``evaluate()`` call (``rates``: bandwidth, SRAM, peak scale, TDP, price ...;
on a design, area, cost and a derived TDP follow its knobs through ``infercast.design``'s formulas, on
the same arrays); ``fp4_units`` changes the chip's formats, so each of its values is its own scenario;
``batch``, ``isl`` and ``osl`` are workload axes. An axis value is absolute (SI units) or a ratio to
the base ('2x'); ``A..B`` doubles from A to B, ``A..B:N`` takes N geometric steps, ``a,b,c`` lists.

The tornado varies one axis at a time, the others at the base, and reports each metric at the axis's
ends against the base, and its elasticity d ln(metric) / d ln(axis) between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from infercast.design import (
    KNOBS,
    Design,
    Knobs,
    base_value,
    derive_chip,
    is_design,
    load_design,
    modify,
    parse_value,
    price_usd,
    tdp_w,
)
from infercast.errors import InfercastError, did_you_mean
from infercast.evaluation import evaluate
from infercast.hardware import Chip, load_chip
from infercast.scenario import resolve

WORKLOAD_AXES = ("batch", "isl", "osl")
STRUCTURAL = ("fp4_units",)
"""Knobs that change which formats the chip has: one scenario per value, not an array."""
METRICS = {"tokens_per_s": "throughput_tokens_per_s", "decode_tokens_per_s": "decode.tokens_per_s",
           "tpot_s": "decode.tpot_s", "ttft_s": "ttft_s", "joules_per_token": "energy.joules_per_token",
           "usd_per_million_tokens": "cost.usd_per_million_tokens"}
"""What each point reports (name -> the estimate's flattened key)."""
TORNADO = ("tpot_s", "ttft_s", "joules_per_token", "usd_per_million_tokens")
MAX_POINTS = 1_000_000


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[float, ...]
    """Absolute values, SI units."""
    labels: tuple[str, ...]
    """As given: '2x' or '4e12'."""
    base: float | None
    """The base hardware's value (None where unknown, or for a workload axis)."""


def parse_axis(spec: str, hw: Chip | Design) -> Axis:
    """``KEY=A..B``, ``KEY=A..B:N``, ``KEY=a,b,c`` or ``KEY=v``; one line naming the key if bad."""
    key, sep, rhs = spec.partition("=")
    key = key.strip()
    if not sep or not rhs.strip():
        raise InfercastError(f"--vary {spec!r}: expected KEY=VALUES, e.g. --vary dram_bandwidth=0.5x..4x")
    allowed = (*KNOBS, *WORKLOAD_AXES)
    if key not in allowed:
        raise InfercastError(f"--vary {key}: unknown axis{did_you_mean(key, allowed)}; use one of {', '.join(allowed)}")
    base = None if key in WORKLOAD_AXES else base_value(hw, key)

    def value(text: str) -> float:
        if key in WORKLOAD_AXES:
            try:
                v = float(text)
            except ValueError:
                raise InfercastError(f"--vary {key}={text!r}: expected a whole number of at least 1") from None
            if not (math.isfinite(v) and v >= 1 and v == int(v)):
                raise InfercastError(f"--vary {key}={text}: expected a whole number of at least 1")
            return v
        return parse_value(key, text, base).__float__()

    rhs = rhs.strip()
    if ".." in rhs:
        lo_text, _, rest = rhs.partition("..")
        hi_text, _, n_text = rest.partition(":")
        lo, hi = value(lo_text.strip()), value(hi_text.strip())
        if not 0 < lo <= hi:
            raise InfercastError(f"--vary {key}={rhs}: the range must run from a positive low end to a high end")
        ratio_form = lo_text.strip().lower().endswith("x")
        if n_text:
            try:
                n = int(n_text)
            except ValueError:
                raise InfercastError(f"--vary {key}={rhs}: the step count after ':' must be a whole number") from None
            if not 2 <= n <= 1000:
                raise InfercastError(f"--vary {key}={rhs}: take 2 to 1000 steps")
            values = list(np.geomspace(lo, hi, n))
        else:
            values, v = [], lo
            while v <= hi * (1 + 1e-9) and len(values) < 1000:
                values.append(v)
                v *= 2
            if not math.isclose(values[-1], hi, rel_tol=1e-9):
                values.append(hi)
        if key in WORKLOAD_AXES:
            values = sorted({float(round(v)) for v in values})
        labels = [f"{v / base:.4g}x" if ratio_form and base else f"{v:.4g}" for v in values]
    else:
        texts = [t.strip() for t in rhs.split(",") if t.strip()]
        values = [value(t) for t in texts]
        labels = texts
    if len(set(values)) != len(values):
        raise InfercastError(f"--vary {key}={rhs}: a value is given twice")
    return Axis(key, tuple(values), tuple(labels), base)


def base_hardware(hardware: str | Chip | Design, chip: dict[str, Any] | None = None) -> Chip | Design:
    """The base a what-if varies: a design (its knobs re-derive area, cost and TDP) or a chip."""
    if isinstance(hardware, (Chip, Design)):
        hw: Chip | Design = hardware
    else:
        hw = load_design(hardware) if is_design(hardware) else load_chip(hardware)
    return modify(hw, chip) if chip else hw


def knob_rates(hw: Chip | Design, values: dict[str, Any], chip_overhead: float | None = None) -> dict[str, Any]:
    """``evaluate()``'s ``rates`` for knob values (floats or arrays, absolute) on the base hardware (a design's
    derived TDP at ``chip_overhead``, default the catalog's median)."""
    if isinstance(hw, Design):
        return _design_rates(hw, values, chip_overhead)
    out: dict[str, Any] = {}
    direct = {"dram_bandwidth": "mem_bw_bytes_per_s", "dram_capacity": "mem_capacity_bytes",
              "sram_bytes": "sram_bytes", "sram_bandwidth": "sram_bw_bytes_per_s", "tdp": "tdp_w",
              "price": "price_usd", "process_nm": "process_nm"}
    scale = 1.0
    for key, v in values.items():
        if key in direct:
            out[direct[key]] = v
        elif key in ("clock", "compute"):
            scale = scale * v  # the base is 1 on a catalog chip
        elif key == "compute_units":
            base = base_value(hw, key)
            if base is None:
                raise InfercastError(f"--vary compute_units: hardware {hw.id} has no unit count to scale from")
            out["compute_units"] = v
            scale = scale * v / base
    if not (isinstance(scale, float) and scale == 1.0):
        out["peak_scale"] = scale
    return out


def design_knobs(d: Design, values: dict[str, Any]) -> Knobs:
    """A design's knobs with what-if values (absolute, floats or arrays) in place of its own."""
    k0 = Knobs.of(d)
    names = {"dram_bandwidth": "dram_bw", "dram_capacity": "dram_capacity", "sram_bytes": "sram_bytes",
             "sram_bandwidth": "sram_bw", "clock": "clock_hz", "compute_units": "units", "process_nm": "process_nm"}
    fields = {names[k]: v for k, v in values.items() if k in names}
    if "compute" in values:
        fields["matrix_cores"] = k0.matrix_cores * values["compute"]
    return Knobs(**{**k0.__dict__, **fields})


def _design_rates(d: Design, values: dict[str, Any], chip_overhead: float | None = None) -> dict[str, Any]:
    """A design's rates with knobs changed: its figures, area, cost and TDP from the same formulas as one chip's."""
    k0, k = Knobs.of(d), design_knobs(d, values)
    out: dict[str, Any] = {"mem_bw_bytes_per_s": k.dram_bw, "mem_capacity_bytes": k.dram_capacity,
                           "sram_bytes": k.sram_bytes, "process_nm": k.process_nm, "compute_units": k.units}
    if k.sram_bw is not None:
        out["sram_bw_bytes_per_s"] = k.sram_bw
    scale = k.units * k.matrix_cores * k.clock_hz / (k0.units * k0.matrix_cores * k0.clock_hz)
    if not (np.ndim(scale) == 0 and scale == 1.0):
        out["peak_scale"] = scale
    out["price_usd"] = values["price"] if "price" in values else price_usd(d, k)
    out["tdp_w"] = values["tdp"] if "tdp" in values else tdp_w(d, k, chip_overhead)
    return {key: (float(v) if np.ndim(v) == 0 else v) for key, v in out.items()}


def _hardware_of(hw: Chip | Design) -> Chip:
    return derive_chip(hw) if isinstance(hw, Design) else hw


def _grid(axes: list[Axis]) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    """The grid's shape and each axis's values, shaped to broadcast along its own dimension."""
    shape = tuple(len(a.values) for a in axes)
    out = {}
    for i, a in enumerate(axes):
        dims = [1] * len(axes)
        dims[i] = -1
        out[a.name] = np.asarray(a.values, dtype=float).reshape(dims)
    return shape, out


def run_points(hw: Chip | Design, model, axes: list[Axis], workload: dict[str, float], options: dict[str, Any]):
    """Every point of the numeric axes' grid, for each combination of the structural axes' values: one
    ``evaluate()`` per combination. Returns (rows, shape)."""
    numeric = [a for a in axes if a.name not in STRUCTURAL]
    structural = [a for a in axes if a.name in STRUCTURAL]
    shape, grid = _grid(numeric)
    n = int(np.prod(shape)) * math.prod(len(a.values) for a in structural)
    if n > MAX_POINTS:
        raise InfercastError(f"--vary: {n:,} points; at most {MAX_POINTS:,} (take fewer values)")
    rows = []
    for combo in product(*(a.values for a in structural)):
        variant = modify(hw, {a.name: v for a, v in zip(structural, combo, strict=True)}) if structural else hw
        cols = evaluate_grid(variant, model, grid, shape, workload, options)
        flat = {k: np.broadcast_to(np.asarray(cols[v]), shape).ravel() for k, v in _COLUMNS.items() if v in cols}
        for i in range(max(1, int(np.prod(shape)))):
            row: dict[str, Any] = {a.name: lab for a, lab in zip(structural, [_label(a, v) for a, v in zip(
                structural, combo, strict=True)], strict=True)}
            idx = np.unravel_index(i, shape) if shape else ()
            for a, j in zip(numeric, idx, strict=True):
                row[a.name] = a.labels[j]
            for key, arr in flat.items():
                row[key] = _plain(arr[i])
            row["binding"] = _binding(row)
            rows.append(row)
    return rows, shape


def _label(a: Axis, v: float) -> str:
    return a.labels[a.values.index(v)]


_COLUMNS = {**METRICS, "decode_bound": "decode.bound", "prefill_bound": "prefill.bound", "fits": "memory.fits",
            "power_capped": "energy.power_capped", "price_usd": "_price_usd", "tdp_w": "energy.tdp_w",
            "decode_latency_s": "decode.latency_s", "prefill_latency_s": "prefill.latency_s"}


def _plain(x):
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.floating, float, np.integer, int)):
        v = float(x)
        return v if math.isfinite(v) else None
    return str(x)


def _binding(row: dict[str, Any]) -> str:
    """What binds the request: memory capacity where it does not fit, else the bound of its longer phase."""
    if row.get("fits") is False:
        return "capacity"
    dec, pre = row.get("decode_latency_s") or 0.0, row.get("prefill_latency_s") or 0.0
    return str(row["decode_bound"] if dec >= pre else row["prefill_bound"])


def evaluate_grid(hw: Chip | Design, model, grid: dict[str, np.ndarray], shape: tuple[int, ...],
                  workload: dict[str, float], options: dict[str, Any]):
    """One ``evaluate()`` of the base hardware with the grid's knob arrays and workload axes."""
    sc = resolve(model, _hardware_of(hw), **options)
    knobs = {k: v for k, v in grid.items() if k in KNOBS}
    rates = knob_rates(hw, knobs) if knobs else {}
    load = {k: grid.get(k, workload[k]) for k in WORKLOAD_AXES}
    if shape:
        load = {k: _axis_array(v, len(shape)) for k, v in load.items()}
    cols = evaluate(sc, **load, rates=rates or None, beam_width=int(workload.get("beam_width", 1)),
                    n=int(workload.get("n", 1)))
    cols["_price_usd"] = rates.get("price_usd", sc.rates.price_usd)
    return cols


def _axis_array(value, nd: int) -> np.ndarray:
    """A workload axis with the grid's number of dimensions (ones where it does not vary): ``evaluate()`` broadcasts
    chip-rate arrays against the workload's, which a scalar workload does not give it."""
    a = np.asarray(value, dtype=float)
    return a.reshape((1,) * (nd - a.ndim) + a.shape) if a.ndim else np.full((1,) * nd, float(a))


def tornado(hw: Chip | Design, model, axes: list[Axis], workload: dict[str, float],
            options: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The base point, and per axis (others at the base) each metric at the axis's low and high ends, its
    change from the base and its elasticity."""
    base_rows, _ = run_points(hw, model, [], workload, options)
    base = base_rows[0]
    out = []
    for a in axes:
        rows, _ = run_points(hw, model, [a], workload, options)
        lo, hi = rows[0], rows[-1]
        x_lo, x_hi = a.values[0], a.values[-1]
        entry: dict[str, Any] = {"axis": a.name, "low": a.labels[0], "high": a.labels[-1],
                                 "binding_low": lo["binding"], "binding_high": hi["binding"]}
        swing = 0.0
        for m in TORNADO:
            b, l_, h = base.get(m), lo.get(m), hi.get(m)
            ok = all(isinstance(v, float) and v > 0 for v in (b, l_, h))
            entry[f"{m}_low"], entry[f"{m}_high"] = l_, h
            entry[f"{m}_change_low"] = l_ / b - 1 if ok else None
            entry[f"{m}_change_high"] = h / b - 1 if ok else None
            entry[f"{m}_elasticity"] = (math.log(h / l_) / math.log(x_hi / x_lo)
                                        if ok and x_lo > 0 and x_hi > x_lo else None)
            if ok:
                swing = max(swing, abs(math.log(l_ / b)), abs(math.log(h / b)))
        entry["swing"] = swing
        out.append(entry)
    out.sort(key=lambda e: -e["swing"])
    return base, out


def whatif(model, hardware: str | Chip | Design, vary: list[str], *, batch: int = 1, isl: int = 128,
           osl: int = 128, beam_width: int = 1, n: int = 1, chip: dict[str, Any] | None = None,
           **options: Any) -> dict[str, Any]:
    """The what-if document: the base point, every grid point with what binds, and the tornado; ``beam_width``
    and ``n`` decode several sequences per prompt (``evaluate``)."""
    hw = base_hardware(hardware, chip)
    axes = [parse_axis(s, hw) for s in vary]
    if not axes:
        raise InfercastError("whatif: give at least one --vary KEY=VALUES, e.g. --vary dram_bandwidth=0.5x..4x")
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InfercastError(f"--vary {dup}: given twice; list its values in one --vary")
    workload = {"batch": float(batch), "isl": float(isl), "osl": float(osl), "beam_width": float(beam_width),
                "n": float(n)}
    rows, _ = run_points(hw, model, axes, workload, options)
    base, swings = tornado(hw, model, axes, workload, options)
    chip_of = _hardware_of(hw)
    return {"model": str(model), "hardware": chip_of.id, "design": isinstance(hw, Design),
            "workload": {k: int(v) for k, v in workload.items()},
            "axes": [{"name": a.name, "values": list(a.values), "labels": list(a.labels), "base": a.base}
                     for a in axes],
            "base": base, "points": rows, "tornado": swings}


def pyplot():
    """matplotlib's pyplot on a file backend, or one line saying which extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InfercastError('--plot needs matplotlib: pip install "infercast[plots]"') from None
    return plt


def plot_tornado(doc: dict[str, Any], path: str) -> None:
    """A tornado chart of the document's swings (needs the plotting extra)."""
    plt = pyplot()
    rows = doc["tornado"]
    fig, axs = plt.subplots(1, len(TORNADO), figsize=(4 * len(TORNADO), 0.6 * len(rows) + 1.5), sharey=True)
    labels = [f"{r['axis']} ({r['low']}..{r['high']})" for r in rows]
    for ax, m in zip(axs, TORNADO, strict=True):
        lo = [100 * (r[f"{m}_change_low"] or 0.0) for r in rows]
        hi = [100 * (r[f"{m}_change_high"] or 0.0) for r in rows]
        y = np.arange(len(rows))
        ax.barh(y, lo, color="tab:blue", label="low end")
        ax.barh(y, hi, color="tab:orange", label="high end", alpha=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(m)
        ax.set_xlabel("change from base, %")
        ax.set_yticks(y, labels)
    axs[0].invert_yaxis()
    axs[-1].legend(loc="lower right")
    fig.suptitle(f"{doc['model']} on {doc['hardware']}: batch {doc['workload']['batch']}, "
                 f"isl {doc['workload']['isl']}, osl {doc['workload']['osl']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the seed-003 target: 50 W per delivered PFLOP/s at over 50% efficiency ------------------------------------------

SEED003_GRID = {
    "process_nm": (7.0, 5.0, 3.0, 2.0),
    "sram_bytes": (50e6, 1e9, 4e9),
    "dram_bandwidth": (3.35e12, 8e12, 32e12),
    "batch": (16.0, 64.0, 256.0, 1024.0),
    "dataflow": (0.0, 1.0),
}
"""Numeric axes of the search (one ``evaluate()`` per categorical combination). ``dataflow`` 0 keeps the family's
fitted efficiency (GPU kernels: launch and step overheads, the matrix units' achievable share of peak); 1 is a
statically scheduled chip that launches nothing at run time and whose matrix units reach ``DATAFLOW_MATRIX_MAX``."""
DATAFLOW_MATRIX_MAX = 0.9
"""Share of peak a statically scheduled design's matrix units reach in every format. Assumed (systolic arrays fed
by a compiler-planned schedule; GPUs measure 0.57-0.82 here, ``catalog/calibration/default.yaml``)."""
SEED003_SRAM_BANDWIDTH = 100e12
"""SRAM bandwidth of every searched design, bytes/s: the order of Groq's LPU (80 TB/s from 230 MB; Groq, ISCA
2020 and product brief). Assumed; it matters only where a chip holds all its weights."""
SEED003_FORMATS = {"fp8": dict(dtype="fp8"), "fp4": dict(weight_dtype="fp4", act_dtype="fp4", kv_cache_dtype="fp8")}
SEED003_SPARSITY = {
    "dense": ({}, None),
    "2:4": (dict(sparsity_pattern="2:4", sparse_storage="compressed"), None),
    "75% unstructured, 8x engine": (dict(weight_sparsity=0.75), dict(
        structured=("2:4",), unstructured=True, max_speedup=8, compressed_weights=True,
        source="search assumption: an engine skipping unstructured zeros up to 8x (the S30's is 32x)")),
}
SEED003_PLANS = {"1 chip": dict(tp=1), "8 chips (tp 8)": dict(tp=8), "64 chips (tp 8 x pp 8)": dict(tp=8, pp=8)}


def seed003_base() -> Design:
    """The search's template: the H100 design with its TDP, area and price left to the models (so that node,
    SRAM and formats change them), an SRAM bandwidth, and FP4 units at twice the FP8 rate."""
    d = load_design("h100-sxm-design")
    data = d.model_dump()
    data.update(design="seed003-base", name="H100-like inference design (seed-003 search)", tdp_w=None,
                die_area_mm2=None, price_usd=None, notes=None)
    data["sram"][-1]["bandwidth_bytes_per_s"] = SEED003_SRAM_BANDWIDTH
    return Design.model_validate(data)


def target_search(model: str = "llama-3-70b", *, isl: int = 1024, osl: int = 256, target_efficiency: float = 0.5,
                  target_w_per_pflops: float = 50.0, overheads: tuple[float | None, ...] = (None, 4.0, 2.0, 1.0),
                  max_e2e_s: float = 10.0) -> dict[str, Any]:
    """Designs around ``seed003_base`` for SEED-CLAIMS C17 / seed 003: compute efficiency (the request's FLOPs over
    its time x the chip's peak) of at least ``target_efficiency`` and at most ``target_w_per_pflops`` W per
    delivered PFLOP/s, answering within ``max_e2e_s``. Sweeps ``SEED003_GRID`` as arrays for each format,
    sparsity, plan and chip overhead (None: the catalog's median, what today's chips spend beyond their bare
    datapath). Returns how many designs meet the target, the best of them, the closest point (``score``: the
    larger of efficiency short of target and watts over target, 1 or less meets both) and the closest at each
    chip overhead, with what binds there."""
    base = seed003_base()
    shape, grid = _grid([Axis(k, v, tuple(f"{x:g}" for x in v), None) for k, v in SEED003_GRID.items()])
    axes = {key: np.broadcast_to(v, shape).ravel() for key, v in grid.items()}
    combos, evaluated, met_count, valid_count = [], 0, 0, 0
    for (fmt, fmt_opts), (sp, (sp_opts, engine)), (plan, plan_opts), k in product(
            SEED003_FORMATS.items(), SEED003_SPARSITY.items(), SEED003_PLANS.items(), overheads):
        d = modify(base, {"fp4_units": 2.0}) if fmt == "fp4" else base
        if engine is not None:
            data = d.model_dump()
            data["compute"]["sparsity"] = engine
            d = Design.model_validate(data)
        sc = resolve(model, derive_chip(d), **fmt_opts, **sp_opts, **plan_opts,
                     energy={"chip_overhead": k} if k is not None else None)
        knobs = {key: v for key, v in grid.items() if key in KNOBS}
        rates = knob_rates(d, knobs, chip_overhead=k)
        a, e = grid["dataflow"], sc.efficiency
        # a dataflow design's TDP is what its GEMMs draw at the share of peak they reach there
        rates["tdp_w"] = np.where(a > 0, tdp_w(d, design_knobs(d, knobs), k, DATAFLOW_MATRIX_MAX), rates["tdp_w"])
        eff_values = {"kernel_overhead_s": e.kernel_overhead_s * (1 - a), "step_overhead_s": e.step_overhead_s * (1 - a),
                      **{f: getattr(e, f) + a * (DATAFLOW_MATRIX_MAX - getattr(e, f))
                         for f in ("gemm_max", "gemm_max_narrow", "attention_max") if getattr(e, f) is not None}}
        nd = len(shape)
        cols = evaluate(sc, batch=grid["batch"], isl=_axis_array(isl, nd), osl=_axis_array(osl, nd), rates=rates,
                        efficiency=eff_values)
        peak = sc.rates.peak(sc.precision.gemm_math, sc.chip.id)
        flat = {key: np.broadcast_to(np.asarray(v), shape).ravel() for key, v in {
            "efficiency": (cols["prefill.flops"] + cols["decode.flops"]) / (cols["e2e_latency_s"] * peak),
            "w_per_pflops": cols["energy.w_per_delivered_pflops"], "fits": cols["memory.fits"],
            "e2e_s": cols["e2e_latency_s"], "ttft_s": cols["ttft_s"], "tpot_s": cols["decode.tpot_s"],
            "tokens_per_s_per_chip": cols["throughput_tokens_per_s"] / sc.plan.num_chips,
            "usd_per_million_tokens": cols["cost.usd_per_million_tokens"], "price_usd": rates["price_usd"],
            "tdp_w": rates["tdp_w"], "decode_bound": cols["decode.bound"], "prefill_bound": cols["prefill.bound"],
            "power_capped": cols["energy.power_capped"],
            **{f"share_{p}": cols[f"energy.split.{p}"] / cols["energy.total_j"]
               for p in ("compute_j", "sram_j", "dram_j", "interconnect_j", "static_j", "overhead_j")}}.items()}
        with np.errstate(divide="ignore", invalid="ignore"):
            short, over = target_efficiency / flat["efficiency"], flat["w_per_pflops"] / target_w_per_pflops
            score = np.maximum(short, over) + 1e-3 * np.minimum(short, over)  # ties go to the better other half
        valid = flat["fits"] & np.isfinite(score) & (flat["e2e_s"] <= max_e2e_s)
        score = np.where(valid, score, np.inf)
        evaluated += score.size
        valid_count += int(valid.sum())
        met_count += int((score <= 1).sum())
        density = sc.sparsity_effect.math_density if sc.sparsity_effect is not None else 1.0
        # the same with the FLOPs sparsity skips counted as delivered (vendors' "effective" FLOPS): the linear
        # layers' math over its density, approximately (attention and the LM head stay dense)
        dense = np.where(valid, np.maximum(short * density, over * density), np.inf)
        label = {"format": fmt, "sparsity": sp, "plan": plan, "overhead_is_reference": k is None,
                 "chip_overhead": round(float(sc.energy_rates.chip_overhead), 3), "linear_math_density": density}
        combos.append((label, flat, score, dense))

    def row(c, i: int) -> dict[str, Any]:
        label, flat, score, dense = c
        r = {**label, **{key: float(v[i]) for key, v in axes.items()}, **{f: _plain(v[i]) for f, v in flat.items()},
             "score": float(score[i]), "score_counting_skipped_flops": float(dense[i])}
        r["dense_equivalent_w_per_pflops"] = r["w_per_pflops"] * label["linear_math_density"]
        r["dense_equivalent_efficiency"] = r["efficiency"] / label["linear_math_density"]
        return r

    def best(pick, which: int = 2) -> dict[str, Any] | None:
        chosen = [(float(c[which][i]), n, i) for n, c in enumerate(combos) if pick(c[0])
                  for i in [int(np.argmin(c[which]))] if np.isfinite(c[which][i])]
        if not chosen:
            return None
        _, n, i = min(chosen)
        return row(combos[n], i)

    met = sorted(((float(c[2][i]), n, int(i)) for n, c in enumerate(combos) for i in np.flatnonzero(c[2] <= 1)))
    by_overhead = {}
    for k in overheads:
        key = "reference" if k is None else f"{k:g}"
        by_overhead[key] = best(lambda lab, k=k: lab["overhead_is_reference"] if k is None else
                                (not lab["overhead_is_reference"] and lab["chip_overhead"] == k))
    return {"model": model, "isl": isl, "osl": osl, "target_efficiency": target_efficiency,
            "target_w_per_pflops": target_w_per_pflops, "max_e2e_s": max_e2e_s,
            "grid": {k: list(v) for k, v in SEED003_GRID.items()}, "formats": list(SEED003_FORMATS),
            "sparsity": list(SEED003_SPARSITY), "plans": list(SEED003_PLANS),
            "chip_overheads": ["reference" if k is None else k for k in overheads],
            "evaluated": evaluated, "valid": valid_count, "met_count": met_count,
            "met": [row(combos[n], i) for _, n, i in met[:10]], "closest": best(lambda lab: True),
            "best_by_overhead": by_overhead,
            "closest_counting_skipped_flops": {
                key: best(lambda lab, k=k: lab["overhead_is_reference"] if k is None else
                          (not lab["overhead_is_reference"] and lab["chip_overhead"] == k), which=3)
                for key, k in zip(by_overhead, overheads, strict=True)}}


# --- the S30 against the H100 (SEED-CLAIMS C12-C14) -----------------------------------------------------------------


def s30_comparison(*, batches: tuple[int, ...] = (1, 32), sparsities: tuple[float, ...] = (0.0, 0.5, 0.75, 0.875),
                   isl: int = 128, osl: int = 128) -> list[dict[str, Any]]:
    """BLOOM-176B decode on 4 x the Moffett S30 design (12 nm, INT8, unstructured sparsity its engine skips, weights
    compressed) against 4 x the H100 design (INT8 dense and 2:4), both priced by the design cost model. One row
    per chip, sparsity and batch (BERT-Large, the other half of the claim: ``s30_bert_comparison``)."""
    rows = []
    cases = [("moffett-s30-design", s, {"weight_sparsity": s} if s else {}) for s in sparsities]
    cases += [("h100-sxm-design", 0.0, {}), ("h100-sxm-design", 0.5, {"sparsity_pattern": "2:4",
                                                                     "sparse_storage": "compressed"})]
    for design, s, extra in cases:
        d = load_design(design)
        chip = derive_chip(d)
        sc = resolve("bloom-176b", chip, tp=4, dtype="int8", kv_cache_dtype="bf16", **extra)
        cols = evaluate(sc, batch=np.asarray(batches, dtype=float), isl=float(isl), osl=float(osl))
        flat = {key: np.broadcast_to(np.asarray(v), (len(batches),)) for key, v in cols.items()
                if key.startswith(("decode.", "energy.", "cost.", "memory."))}
        for i, b in enumerate(batches):
            def at(key, i=i, flat=flat):
                return _plain(flat[key][i])
            rows.append({"chip": design, "node_nm": d.process_nm, "sparsity": s, "batch": b,
                         "tokens_per_s_per_stream": 1 / at("decode.tpot_s"), "decode_tokens_per_s": at("decode.tokens_per_s"),
                         "tpot_s": at("decode.tpot_s"), "joules_per_token": at("energy.joules_per_token"),
                         "usd_per_million_tokens": at("cost.usd_per_million_tokens"), "decode_bound": at("decode.bound"),
                         "fits": at("memory.fits"), "average_power_w": at("energy.average_power_w"),
                         "chip_price_usd": chip.price_usd.value, "tdp_w": chip.tdp_w.value})
    return rows


def s30_bert_comparison(*, sparsities: tuple[float, ...] = (0.0, 0.5, 0.75, 0.875)) -> list[dict[str, Any]]:
    """BERT-Large as MLPerf Offline runs it (INT8, the SQuAD mean of ``passes.MLPERF_BERT_TOKENS`` tokens a
    sample, the throughput-optimal batch that fits) on one Moffett S30 design at each unstructured weight
    sparsity its engine skips, against one H100 design dense and with 2:4; both priced by the design cost model."""
    from infercast.passes import MLPERF_BERT_TOKENS, best_batch

    cases = [("moffett-s30-design", s, {"weight_sparsity": s} if s else {}) for s in sparsities]
    cases += [("h100-sxm-design", 0.0, {}), ("h100-sxm-design", 0.5, {"sparsity_pattern": "2:4",
                                                                     "sparse_storage": "compressed"})]
    rows = []
    for design, s, extra in cases:
        d = load_design(design)
        chip = derive_chip(d)
        batch, c = best_batch(resolve("bert-large", chip, dtype="int8", **extra), seq_len=round(MLPERF_BERT_TOKENS))
        rows.append({"chip": design, "node_nm": d.process_nm, "sparsity": s, "batch": batch,
                     "samples_per_s": _plain(c["samples_per_s"]), "bound": c["bound"],
                     "joules_per_sample": _plain(c.get("energy.joules_per_sample")),
                     "usd_per_million_samples": _plain(c.get("cost.usd_per_million_samples")),
                     "chip_price_usd": chip.price_usd.value, "tdp_w": chip.tdp_w.value})
    return rows
