"""Write docs/frontier.md: the predicted throughput-interactivity frontier beside InferenceX's measured points,
and TensorRT-LLM's offline throughput beside the predicted maximum.

Usage: python scripts/frontier_report.py [--data ../shared/data/measured-public.csv] [--output docs/frontier.md]

For every chip, precision, framework and (isl, osl) of the InferenceX rows (ids ``ix-...``: DeepSeek-R1 =
deepseek-v3 on b200, h200-sxm, mi300x, mi355x), each measured run (one concurrency) is a point: output tokens/s
per chip (the whole system's over its GPUs) against tokens/s per user (1 / median TPOT). The predicted frontier
is ``infercast.search``'s: for the chip, the run's precision and its framework (the profile and version the
row's framework text names, as ``infercast validate`` reads it), over the plans InferenceX ran (tp 4 and 8 in
one node; experts over the TP group or not) and every concurrency up to the framework's max-num-seqs (at most
1,024), the continuous-batching steady state of the static-batch estimate, non-dominated. The error of a point is the predicted frontier's
tokens/s per chip at the point's tokens/s per user (linear between frontier points) over the measured one,
less 1; a point faster per user than anything predicted lies beyond the frontier and is counted apart.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from report_tables import pct as report_pct
from report_tables import table

from infercast.framework import framework_of_text
from infercast.search import (CONCURRENCY, Deployment, evaluate_deployment, interpolate, max_num_seqs, non_dominated,
                              points_of, steady_state)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "measured-public.csv"
X, Y = "output_tokens_per_s_per_user", "output_tokens_per_s_per_chip"
MAX_B = 1024
"""The report's largest concurrency (the data's is 512)."""
INTERACTIVITY = 50.0
"""Tokens/s per user at which chips are ranked (InferenceX's charts are read at fixed interactivity)."""
MEAN_LENGTH = 0.9
"""InferenceX draws each length uniformly in [0.8 L, L]: the mean is 0.9 L."""


@dataclass(frozen=True)
class Run:
    model: str
    hardware: str
    chips: int
    tp: int
    ep: int
    dpa: bool
    weight: str
    act: str
    kv: str
    framework: str
    profile: str
    """The framework profile and version the row's text names (``framework_of_text``)."""
    isl: int
    osl: int
    concurrency: int
    per_chip: float
    per_user: float

    @property
    def lengths(self) -> str:
        return f"{_k(self.isl)}/{_k(self.osl)}"


def pct(x: float | None, signed: bool = False) -> str:
    """Whole percentages (the frontier's errors are tens of percent)."""
    return report_pct(x, signed, digits=0)


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def family(framework: str) -> str:
    for name in ("SGLang", "TensorRT-LLM", "ATOM", "vLLM"):
        if name.lower() in framework.lower():
            return name
    return framework.split(" ")[0]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def inferencex_runs(rows: list[dict[str, str]]) -> list[Run]:
    """One Run per InferenceX benchmark run: its throughput and median TPOT rows paired by id."""
    by_run: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for r in rows:
        if r["id"].startswith("ix-"):
            by_run[r["id"].rsplit("-", 1)[0]][r["metric"]] = r
    out = []
    for run_id, m in sorted(by_run.items()):
        if "output_tokens_per_s" not in m or "tpot_s" not in m:
            continue
        r = m["output_tokens_per_s"]
        ep = int(run_id.split("-tp")[1].split("ep")[1].split("-")[0])
        chips = int(r["num_chips"])
        profile = framework_of_text(r["framework"], _date(r["notes"]))[0].label
        out.append(Run(r["model"], r["hardware"], chips, int(r["tp"]), ep, "-dpa-" in run_id, r["weight_dtype"],
                       r["act_dtype"], r["kv_dtype"], family(r["framework"]), profile, int(r["isl"]), int(r["osl"]),
                       int(r["batch"]), float(r["value"]) / chips, 1 / float(m["tpot_s"]["value"])))
    return out


def _date(notes: str) -> str | None:
    return next((w[5:] for w in notes.split() if w.startswith("date=")), None)


_FRONTIERS: dict[tuple, list[dict]] = {}


def predicted_frontier(model: str, hardware: str, weight: str, act: str, kv: str, isl: int, osl: int,
                       tps: tuple[int, ...], frameworks: tuple[str, ...]) -> list[dict]:
    """The engine's frontier for the chip and precision over tp in ``tps`` (ep 1 or tp) and the ``frameworks``,
    concurrency 1 .. each framework's max-num-seqs (at most MAX_B)."""
    key = (model, hardware, weight, act, kv, isl, osl, tps, frameworks)
    if key in _FRONTIERS:
        return _FRONTIERS[key]
    from infercast.model import load_model

    spec = load_model(model)
    pts = []
    for fw in frameworks:
        B = np.array([c for c in CONCURRENCY if c <= min(MAX_B, max_num_seqs(fw))], dtype=float)
        for tp in tps:
            for ep in sorted({1, tp} if spec.is_moe else {1}):
                d = Deployment(hardware, tp, 1, ep, {"weight_dtype": weight, "act_dtype": act, "kv_cache_dtype": kv},
                               framework=fw)
                if evaluate_deployment(spec, d, isl, osl, B) is None:
                    pts += points_of(d, osl)
    _FRONTIERS[key] = non_dominated(pts, X, Y)
    return _FRONTIERS[key]


def mean_length(n: int) -> int:
    return round(MEAN_LENGTH * n)


@dataclass(frozen=True)
class Error:
    chip: float | None
    """Predicted tokens/s per chip at the run's tokens/s per user, over the measured, less 1 (None: beyond)."""
    user: float | None
    """Predicted tokens/s per user at the run's tokens/s per chip, over the measured, less 1."""
    tpot: float | None
    """The run's own plan at its concurrency: predicted steady-state TPOT over the measured median, less 1."""


def errors(runs: list[Run]) -> list[tuple[Run, Error]]:
    from infercast.model import load_model

    out = []
    for r in runs:
        tps = tuple(sorted({x.tp for x in runs if (x.hardware, x.weight) == (r.hardware, r.weight)}))
        isl, osl = mean_length(r.isl), mean_length(r.osl)
        front = predicted_frontier(r.model, r.hardware, r.weight, r.act, r.kv, isl, osl, tps, (r.profile,))
        chip = interpolate(front, X, Y, r.per_user)
        by_y = sorted(front, key=lambda p: p[Y])
        user = interpolate(by_y, Y, X, r.per_chip)
        d = Deployment(r.hardware, r.tp, 1, r.ep, {"weight_dtype": r.weight, "act_dtype": r.act,
                                                   "kv_cache_dtype": r.kv}, framework=r.profile)
        tpot = None
        if evaluate_deployment(load_model(r.model), d, isl, osl, np.array([1.0, float(r.concurrency)])) is None:
            tpot = float(d.tpot[-1]) * r.per_user - 1
        out.append((r, Error(None if chip is None else chip / r.per_chip - 1,
                             None if user is None else user / r.per_user - 1, tpot)))
    return out




def _medians(values: list[float | None]) -> tuple[str, str]:
    v = [x for x in values if x is not None]
    return (pct(statistics.median(abs(x) for x in v)), pct(statistics.median(v), True)) if v else ("-", "-")


def _cells(items: list[tuple[Run, Error]]) -> list:
    chip = [e.chip for _, e in items]
    beyond = sum(x is None for x in chip)
    return [len(items), beyond, *_medians(chip), *_medians([e.user for _, e in items]),
            _medians([e.tpot for _, e in items])[1]]


HEADER = ["runs", "beyond frontier", "tok/s/chip: median abs error", "median signed", "tok/s/user: median abs error",
          "median signed", "TPOT at the run's plan and concurrency: median signed"]


def error_tables(errs: list[tuple[Run, Error]]) -> tuple[str, str, dict]:
    groups: dict[tuple, list] = defaultdict(list)
    for r, e in errs:
        groups[(r.hardware, r.weight, r.framework, r.lengths)].append((r, e))
    rows = []
    for (hw, w, fw, lengths), items in sorted(groups.items()):
        users = [r.per_user for r, _ in items]
        rows.append([hw, w, fw, lengths, f"{min(users):.0f}-{max(users):.0f}", *_cells(items)])
    detail = table(["chip", "precision", "framework", "isl/osl", "measured tok/s/user", *HEADER], rows)
    summary_rows = []
    for label, key in (("chip", lambda r: r.hardware), ("framework", lambda r: r.framework),
                       ("precision", lambda r: r.weight), ("isl/osl", lambda r: r.lengths), ("all", lambda r: "all")):
        g: dict[str, list] = defaultdict(list)
        for r, e in errs:
            g[key(r)].append((r, e))
        for name, items in sorted(g.items()):
            summary_rows.append([f"{label} = {name}" if label != "all" else "**all**", *_cells(items)])
    chip = [e.chip for _, e in errs]
    inside = [x for x in chip if x is not None]
    totals = {"runs": len(errs), "beyond": len(chip) - len(inside),
              "median_abs": statistics.median(abs(x) for x in inside) if inside else None,
              "median_signed": statistics.median(inside) if inside else None,
              "user_abs": statistics.median(abs(e.user) for _, e in errs if e.user is not None),
              "tpot_signed": statistics.median(e.tpot for _, e in errs if e.tpot is not None)}
    summary = table(["group", *HEADER], summary_rows)
    return summary, detail, totals


def rankings(runs: list[Run]) -> tuple[str, int, int]:
    """Chips ranked by output tokens/s per chip at INTERACTIVITY tokens/s per user, measured (each chip's best
    framework: the frontier of all its runs) and predicted, per precision and lengths."""
    rows, matched, compared = [], 0, 0
    cases = sorted({(r.weight, r.lengths, r.isl, r.osl) for r in runs})
    for weight, lengths, isl, osl in cases:
        measured, predicted = {}, {}
        for hw in sorted({r.hardware for r in runs if (r.weight, r.lengths) == (weight, lengths)}):
            mine = [r for r in runs if (r.hardware, r.weight, r.lengths) == (hw, weight, lengths)]
            pts = [{X: r.per_user, Y: r.per_chip} for r in mine]
            m = interpolate(non_dominated(pts, X, Y), X, Y, INTERACTIVITY)
            r0 = mine[0]
            tps = tuple(sorted({r.tp for r in mine}))
            fws = tuple(sorted({r.profile for r in mine}))
            front = predicted_frontier(r0.model, hw, weight, r0.act, r0.kv, mean_length(isl), mean_length(osl), tps,
                                       fws)
            p = interpolate(front, X, Y, INTERACTIVITY)
            if m is not None and p is not None:
                measured[hw], predicted[hw] = m, p
        if len(measured) < 2:
            continue
        order_m = sorted(measured, key=lambda h: -measured[h])
        order_p = sorted(predicted, key=lambda h: -predicted[h])
        same = order_m == order_p
        compared += 1
        matched += same
        rows.append([weight, lengths, " > ".join(f"{h} ({measured[h]:,.0f})" for h in order_m),
                     " > ".join(f"{h} ({predicted[h]:,.0f})" for h in order_p), "yes" if same else "**no**"])
    text = table(["precision", "isl/osl", f"measured at {INTERACTIVITY:g} tok/s/user (tok/s/chip)",
                  "predicted (tok/s/chip)", "same order"], rows)
    return text, matched, compared


def offline_table(rows: list[dict[str, str]]) -> str:
    """TensorRT-LLM 1.x offline throughput (trtllm-bench, every request queued) beside the predicted maximum."""
    from infercast.errors import InfercastError
    from infercast.evaluation import evaluate
    from infercast.model import load_model
    from infercast.scenario import resolve

    why = ""
    out, unsupported = [], defaultdict(set)
    B = np.unique(np.round(np.geomspace(1, 8192, 60)))
    for r in rows:
        if not r["id"].startswith("trtllm-1x-") or r["metric"] != "output_tokens_per_s":
            continue
        try:
            load_model(r["model"])
        except InfercastError as exc:
            unsupported[r["model"]].add(r["hardware"])
            why = str(exc).split(" (")[0]
            continue
        chips, tp, pp = int(r["num_chips"]), int(r["tp"]), int(r["pp"])
        dep = "-dep" in r["id"]
        plan = {"tp": 1, "dp": chips, "ep": chips} if dep else {"tp": tp, "pp": pp}
        isl, osl = int(r["isl"]), int(r["osl"])
        try:
            sc = resolve(r["model"], r["hardware"], weight_dtype=r["weight_dtype"], act_dtype=r["act_dtype"],
                         kv_cache_dtype=r["kv_dtype"], framework=framework_of_text(r["framework"], _date(r["notes"]))[0],
                         **plan)
            cols = evaluate(sc, batch=B, isl=isl, osl=osl)
        except Exception as exc:  # noqa: BLE001  (a row the engine cannot run is reported, not fatal)
            out.append([r["model"], r["hardware"], _plan(plan), f"{_k(isl)}/{_k(osl)}",
                        f"{float(r['value']) / chips:,.0f}", "-", f"not predicted: {str(exc)[:60]}"])
            continue
        fits = np.asarray(cols["memory.fits"], bool)
        ttft, tpot = steady_state(B, np.asarray(cols["ttft_s"], float), np.asarray(cols["decode.tpot_s"], float), osl)
        per_chip = B * osl / (ttft + (osl - 1) * tpot) / chips
        best = float(np.max(np.where(fits, per_chip, 0.0)))
        at = int(B[int(np.argmax(np.where(fits, per_chip, 0.0)))])
        measured = float(r["value"]) / chips
        out.append([r["model"], r["hardware"], _plan(plan), f"{_k(isl)}/{_k(osl)}", f"{measured:,.0f}",
                    f"{best:,.0f} (batch {at})", pct(best / measured - 1, True)])
    text = table(["model", "chip", "plan", "isl/osl", "measured tok/s/chip", "predicted max tok/s/chip", "error"],
                 out)
    for model, chips in unsupported.items():
        text += (f"\n\n{model} ({', '.join(sorted(chips))}) is not predicted: {why}; the engine does not read its "
                 f"architecture yet (its config is in `data/configs/`).")
    return text


def floor_table(runs: list[Run]) -> str:
    """The engine's decode at the lowest concurrency measured, beside the measured TPOT: where the error starts."""
    from infercast import estimate

    rows = []
    for hw, weight in sorted({(r.hardware, r.weight) for r in runs}):
        mine = [r for r in runs if (r.hardware, r.weight, r.lengths) == (hw, weight, "1k/1k")]
        if not mine:
            continue
        low = min(mine, key=lambda r: (r.concurrency, -r.per_user))
        e = estimate(low.model, hw, tp=low.tp, ep=low.ep, weight_dtype=low.weight, act_dtype=low.act,
                     kv_cache_dtype=low.kv, batch=low.concurrency, isl=mean_length(1024), osl=mean_length(1024),
                     framework=low.profile)
        d = e.to_dict()
        rows.append([hw, weight, f"tp{low.tp} ep{low.ep}", low.concurrency, low.profile,
                     f"{1e3 / low.per_user:.1f}", f"{e.tpot_s * 1e3:.1f}", d["decode"]["bound"],
                     f"{d['efficiency'][_decode_kernel_key(low.profile)] * 1e6:.1f}"])
    return table(["chip", "precision", "plan", "concurrency", "framework", "measured median TPOT ms",
                  "predicted TPOT ms", "predicted decode bound", "calibrated per-kernel time of a decode step us"],
                 rows)


def _decode_kernel_key(framework: str) -> str:
    """The efficiency key of a decode kernel's fixed time: a graph replay's, or a launch's."""
    from infercast.framework import resolve_framework

    return "graph_kernel_overhead_s" if resolve_framework(framework).profile.cuda_graphs.value else "kernel_overhead_s"


def _plan(plan: dict) -> str:
    return " ".join(f"{k}{v}" for k, v in plan.items())


def report(path: Path) -> str:
    rows = read_rows(path)
    runs = inferencex_runs(rows)
    errs = errors(runs)
    summary, detail, totals = error_tables(errs)
    ranks, matched, compared = rankings(runs)
    offline = offline_table(rows)
    floor = floor_table(runs)
    return f"""# Predicted frontiers against InferenceX and TensorRT-LLM

Written by `python scripts/frontier_report.py` from `{path.name}` ({len(runs)} InferenceX runs of DeepSeek-R1 =
`deepseek-v3`). The predicted frontier is `infercast.search`'s (`infercast pareto --framework ...`): for a chip,
a precision and the run's framework (the profile and version its framework text names, as `infercast validate`
reads it: SGLang 0.5.x, TensorRT-LLM 1.x, ATOM), over tp 4 and 8 in one node (experts spread over the TP group or
not) and every concurrency up to the framework's max-num-seqs (512 for SGLang and ATOM; 1,024 here for
TensorRT-LLM), output tokens/s per chip against tokens/s per user in the continuous-batching steady state of the
static-batch estimate (`src/infercast/search.py`). Lengths are InferenceX's means (0.9 x the nominal isl and osl: each is drawn
uniformly in [0.8 L, L]). A measured run is a point: the whole system's output tokens/s over its GPUs against
1 / median TPOT. Its error is the predicted frontier's tokens/s per chip at the run's tokens/s per user over the
measured figure, less 1 (positive: the engine predicts more); a run faster per user than the whole predicted
frontier is counted as beyond it.

Each run is compared with the frontier of its own framework: its decode steps replay CUDA (HIP) graphs at the
calibration's per-kernel graph time, its all-reduce is the framework's, and its scheduler's max-num-seqs caps the
concurrency. Under the `generic` profile (kernels launched one by one from the host, about 1,200 a DeepSeek-R1
decode step) the same comparison put 140 of the 172 runs beyond the frontier, with the predicted TPOT +130% off.

## Summary

{totals['runs']} runs. Output tokens/s per chip at the measured tokens/s per user: {totals['beyond']} runs are
faster per user than anything the engine predicts (beyond the frontier); over the other
{totals['runs'] - totals['beyond']}, the median absolute error is {pct(totals['median_abs'])} (median signed
{pct(totals['median_signed'], True)}). Read the other way, tokens/s per user at the measured tokens/s per chip (defined
for every run): median absolute error {pct(totals['user_abs'])}. At each run's own plan and concurrency the
predicted TPOT is {pct(totals['tpot_signed'], True)} off the measured median (median signed). Chip rankings at
{INTERACTIVITY:g} tokens/s per user match the measured ranking in {matched} of {compared} cases.

{summary}

## Ranking of chips at {INTERACTIVITY:g} tokens/s per user

Each chip's measured figure is its best framework's (the frontier of all its runs at that precision and lengths),
read at {INTERACTIVITY:g} tokens/s per user between the two runs around it; the predicted one is the frontier over
the same frameworks. Cases where fewer than two chips reach that interactivity in both the data and the prediction
are left out.

{ranks}

## Every chip, precision, framework and length

{detail}

## TensorRT-LLM 1.x offline throughput

`trtllm-bench` with every request queued (fixed lengths): measured output tokens/s per GPU beside the predicted
maximum over concurrency (steady state, up to the batch that fits, at most 8,192). `DEPn` rows are attention data
parallel with experts over the n GPUs: the engine's tp 1, dp n, ep n (all-to-all between replicas).

{offline}

## What limits the comparison

At the lowest concurrency measured (1k/1k), the run's own deployment under its framework:

{floor}

- **Reading a flat frontier.** Where tokens/s per chip rises steeply as interactivity falls, a small error in
  TPOT moves the frontier's tokens/s per chip at a given tokens/s per user a lot: the errors read the other way
  (tokens/s per user at the measured tokens/s per chip) and the TPOT at the run's own plan are the smaller ones.
  The frontier is also the best plan of several (tp 4 or 8, experts spread or not), where a run is one plan.
- **Framework behaviour beyond the profile.** SGLang's DP-attention runs (`-dpa-`) are compared with the TP
  frontier; fused MoE and attention kernels, ATOM's AITER kernels and the schedulers' chunking are in the
  calibrated efficiencies (fitted over `infercast validate`'s rows), not modelled kernel by kernel.
- **MI300X over-predicted.** The AMD FP8 GEMM efficiency the fit settles on and SGLang's ROCm path leave MI300X
  runs +54% to +319% on tokens/s per chip at their interactivity (TPOT -13% to -36% at the run's plan).
- **Offline throughput.** The maximum over concurrency of the steady state does not see the scheduler's token
  budget per step or the run's ramp-up and drain: it over-predicts the MoE rows by +17% to +224% (the 32k-token
  rows least), more than the simulator `infercast validate` runs on the same rows (-45% to +147%, the 32k-token
  rows under), and under-predicts gpt-oss-120b on one H200: a known gap of the fit (issue 14).
- **DeepSeek-R1 is MLA and MoE.** The frontier is the analytic steady state, not a simulated one (the simulator
  runs MLA, search does not call it for MLA models); DP-attention runs (`-dpa-`) are compared with the same TP
  frontier.
- **Steady-state estimate.** TPOT at concurrency B adds to the static decode step the share of the prompts
  that arrive during a request's decode; real schedulers chunk prompts (SGLang, vLLM) or run them in separate
  iterations, and InferenceX reports median TPOT, which hides the slow tail this average carries.
- **Run length.** InferenceX runs 10 x concurrency prompts: at high concurrency much of a run is ramp-up and
  drain, which a steady state does not have.
- **Lengths.** Means stand in for uniform draws in [0.8 L, L].
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--output", default="docs/frontier.md")
    args = parser.parse_args()
    text = report(Path(args.data))
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
