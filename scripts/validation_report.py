"""Write docs/validation.md: predicted vs measured for every row of the public data under the shipped
calibration, beside the ideal roofline, with the held-out errors (leave one source, chip or framework out)
the fit that produced the shipped profile recorded; tables by framework, vendor, chip, model, scenario,
metric and source; the InferenceX rows; the framework effect on one chip; the fitted vendor efficiencies
against shared/data/gemm-efficiency.csv; DeepSeek-R1 on 8 x B200 beside its measured InferenceX row.

Usage: python scripts/validation_report.py [--output docs/validation.md]

The shipped profile itself comes from
    infercast calibrate --fit public --iterations 10 --output src/infercast/catalog/calibration/default.yaml --force
(about 40 minutes on two cores: recording the serving runs, ten steps of the full fit, then one Gauss-Newton
step per source, chip and framework left out).
"""


from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from report_tables import pct, table

from infercast.calibration import efficiency_for, fit_record, load_calibration, vendor_of
from infercast.framework import framework_of_text
from infercast.hardware import load_chip
from infercast.validate import validate

HELD_OUT = (("leave_one_source_out", "LOSO"), ("leave_one_chip_out", "LOCO"), ("leave_one_framework_out", "LOFO"))
ROOT = Path(__file__).resolve().parent.parent
FIT_COMMAND = ("infercast calibrate --fit public --iterations 10 --output "
               "src/infercast/catalog/calibration/default.yaml --force")




def stats(errors: list[float]) -> tuple[int, float | None, float | None]:
    e = np.abs(np.asarray([x for x in errors if x is not None and np.isfinite(x)], float))
    if not len(e):
        return 0, None, None
    return len(e), float(np.median(e)), float(np.percentile(e, 90))


def bundled_rows() -> dict[str, dict[str, str]]:
    text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text()
    return {r["id"]: r for r in csv.DictReader(text.splitlines())}


def grouped(results, rows, held, key, title) -> list[str]:
    groups = defaultdict(list)
    for r in results:
        if r.predicted is not None:
            groups[key(rows[r.id], r)].append(r)
    out = []
    for g, rs in sorted(groups.items()):
        n, med, p90 = stats([r.error for r in rs])
        cells = [g, str(n), pct(med), pct(p90)]
        for kind, _ in HELD_OUT:
            _, hm, hp = stats([held.get(r.id, {}).get(kind) for r in rs])
            cells += [pct(hm), pct(hp)]
        _, im, _ = stats([r.error_ideal for r in rs])
        cells += [pct(im), pct(float(np.median([r.error for r in rs])), True)]
        out.append(cells)
    header = [title, "rows", "median", "p90"]
    for _, short in HELD_OUT:
        header += [f"{short} median", f"{short} p90"]
    return [f"## By {title}", "", table(header + ["ideal median", "median signed"], out), ""]


def framework_of(row: dict[str, str]) -> str:
    date = next((w[5:15] for w in row["notes"].split() if w.startswith("date=")), None)
    return framework_of_text(row["framework"], date)[0].name


def framework_effect() -> list[str]:
    """The same model and workload under three frameworks on one chip (the simulator, shipped calibration)."""
    from infercast.serving.scenarios import RowRun
    from infercast.serving.server import server

    model, chip, tp = "llama-3.3-70b", "h100-sxm", 2
    run = RowRun((), "concurrency", 320, 1024, 1024, True, 32, 1)
    reqs = run.draw()
    out = ["## The framework effect on one chip", "",
           f"{model}, FP8 weights and activations, bf16 KV cache, on {tp} x {chip} (TP{tp}); a closed loop of 32 "
           "requests in flight, 320 requests of 1k/1k tokens (uniform in [0.8 L, L]), under the shipped "
           "calibration. Reproduce one with `infercast simulate --model llama-3.3-70b --hardware h100-sxm "
           "--num-chips 2 --tp 2 --weight-dtype fp8 --act-dtype fp8 --kv-cache-dtype bf16 --max-concurrency 32 "
           "--num-prompts 320 --isl 922 --osl 922 --isl-dist uniform --osl-dist uniform --length-spread 0.111 "
           "--framework vllm` (and sglang, trtllm).", ""]
    rows, params = [], []
    for fw in ("vllm", "sglang", "trtllm"):
        srv = server(model, chip, num_chips=tp, tp=tp, weight_dtype="fp8", act_dtype="fp8", kv_cache_dtype="bf16",
                     framework=fw)
        m = srv.run(reqs, max_concurrency=32).metrics
        e, p = srv.deployment.efficiency, srv.deployment.framework.profile
        rows.append([srv.deployment.framework.label, f"{m['output_throughput']:,.0f}", f"{m['ttft_ms']['p50']:.1f}",
                     f"{m['tpot_ms']['p50']:.2f}"])
        floor = srv.deployment.comm.allreduce_floor_s
        params.append([fw, str(p.cuda_graphs.value), str(p.prefill_graphs.value), f"{e.kernel_overhead_s * 1e6:.2f}",
                       f"{(e.graph_kernel_overhead_s or e.kernel_overhead_s) * 1e6:.2f}",
                       f"{e.step_overhead_s * 1e3:.3f}", f"{e.request_overhead_s * 1e3:.1f}",
                       f"{e.gemm_max_narrow:.3f}", p.allreduce.implementation,
                       f"{floor * 1e6:.1f}" if floor is not None else "NCCL", str(srv.config.max_num_seqs),
                       str(srv.budget), f"{srv.deployment.memory.gpu_memory_utilization:.2f}"])
    out += [table(["framework", "output tokens/s", "median TTFT ms", "median TPOT ms"], rows), "",
            "What makes the difference (profile: sourced structure; efficiency: the calibration's values for the "
            "framework on nvidia-hopper):", "",
            table(["framework", "decode graphs", "prefill graphs", "launched kernel us", "graph kernel us",
                   "step ms", "request ms", "FP8 GEMM eff", "all-reduce", "AR floor us", "max seqs", "token budget",
                   "memory share"], params), ""]
    return out


def vendor_efficiencies(profile) -> list[str]:
    """The fitted GEMM efficiencies per vendor and family against the hipBLASLt measurements."""
    path = ROOT.parent / "shared" / "data" / "gemm-efficiency.csv"  # the project's shared data, beside the checkout
    measured = defaultdict(list)
    if path.exists():
        for r in csv.DictReader(path.open()):
            measured[(r["chip"], "fp8" if r["dtype"] == "fp8" else "16-bit")].append(
                float(r["achieved_tflops"]) / float(r["peak_tflops"]))
    out = ["## Fitted GEMM efficiencies against gemm-efficiency.csv", "",
           "`gemm_max` (large 16-bit GEMMs) and `gemm_max_narrow` (FP8) as fitted per vendor and chip family, beside "
           "the measured fraction of the dense peak from shared/data/gemm-efficiency.csv (AMD hipBLASLt, "
           "hipblaslt-bench, large shapes; the vendor prior of AMD is their median). The fitted values are what "
           "end-to-end serving rows imply, with the framework's per-kernel costs separated out.", ""]
    rows = []
    for vendor, v in sorted(profile.vendors.items()):
        rows.append([f"vendor {vendor}", f"{v.get('gemm_max', float('nan')):.3f}",
                     f"{v.get('gemm_max_narrow', float('nan')):.3f}", f"{v.get('gemm_max_fp4', float('nan')):.3f}", ""])
    for chip in ("mi300x", "mi325x", "mi355x", "h100-sxm", "h200-sxm", "b200", "a100-sxm-80gb", "gaudi2"):
        e = efficiency_for(load_chip(chip), profile)
        m16, m8 = measured.get((chip, "16-bit")), measured.get((chip, "fp8"))
        meas = "; ".join(f"{k} {np.median(x):.3f} ({len(x)} row{'s' if len(x) > 1 else ''})" for k, x in (("16-bit", m16), ("FP8", m8)) if x)
        rows.append([f"{chip} ({load_chip(chip).family})", f"{e.gemm_max:.3f}", f"{e.gemm_max_narrow:.3f}",
                     f"{e.gemm_max_fp4 or e.gemm_max_narrow:.3f}", meas or "not measured"])
    out += [table(["level", "gemm_max", "gemm_max_narrow (FP8)", "gemm_max_fp4", "measured (hipBLASLt)"], rows), ""]
    return out


def deepseek_on_b200(rows) -> list[str]:
    from infercast.serving.scenarios import predict_serving_row

    out = ["## DeepSeek-R1 FP8 on 8 x B200 (TP8 EP8), concurrency 64, 1k/1k", "",
           "`infercast simulate --model deepseek-v3 --hardware b200 --num-chips 8 --tp 8 --ep 8 --dtype fp8 "
           "--framework sglang@0.5.9 --max-concurrency 64 --num-prompts 640 --isl 922 --osl 922 --isl-dist uniform "
           "--osl-dist uniform --length-spread 0.111` runs the same deployment and closed loop as the measured "
           "InferenceX row (lengths uniform in [0.8 L, L]; the row's own draw below). Median TTFT and TPOT, as "
           "InferenceX reports them.", ""]
    found = []
    for rid, r in rows.items():
        if rid.startswith("ix-b200-") and "-dsr1-fp8-tp8ep8-1k1k-c64-" in rid:
            value, reason, note = predict_serving_row(r)
            found.append([rid, r["metric"], f"{float(r['value']):.4g}", "-" if value is None else f"{value:.4g}",
                          "-" if value is None else pct(value / float(r["value"]) - 1, True), r["framework"][:60]])
    out += [table(["row", "metric", "measured", "simulated", "error", "framework"], found), ""]
    return out


def report() -> str:
    profile = load_calibration()
    results = validate()
    rows = bundled_rows()
    fit = fit_record(profile) or {}
    held = fit.get("row_errors", {})
    predicted = [r for r in results if r.predicted is not None]
    out = ["# Validation", "",
           "Generated by `python scripts/validation_report.py` from the bundled copy of `measured-public.csv` "
           f"({len(results)} rows), under the shipped calibration profile "
           f"(`src/infercast/catalog/calibration/default.yaml`: {profile.description}; made by `{FIT_COMMAND}`, "
           f"which stopped after {fit.get('iterations', '?')} steps: {fit.get('stopped', 'not recorded')}).", "",
           "Errors are (predicted - measured) / measured; median and p90 are of |error|. *In-sample* is "
           "`infercast validate` under the shipped profile. The held-out columns are the fit's own: each row "
           "predicted by a fit that left out its source (LOSO: the `source` column, one document or data "
           "capture), its chip (LOCO) or its framework (LOFO); serving rows there are replayed runs "
           "(`infercast.serving.replay`). *Ideal* is the textbook roofline: peak FLOPS, peak bandwidth, no "
           "overheads, collectives at full link bandwidth, no power cap.", ""]
    n, med, p90 = stats([r.error for r in predicted])
    _, imed, ip90 = stats([r.error_ideal for r in predicted])
    summary = [["in-sample", str(n), pct(med), pct(p90), pct(imed), pct(ip90)]]
    for kind, short in HELD_OUT:
        k, m, p = stats([held.get(r.id, {}).get(kind) for r in predicted])
        summary.append([f"held out ({short})", str(k), pct(m), pct(p), "", ""])
    ix = [r for r in predicted if r.id.startswith("ix-")]
    for metric in ("output_tokens_per_s", "tpot_s", "ttft_s"):
        sub = [r for r in ix if r.metric == metric]
        k, m, p = stats([r.error for r in sub])
        lo = stats([held.get(r.id, {}).get("leave_one_source_out") for r in sub])
        summary.append([f"InferenceX {metric}, in-sample (LOSO)", str(k), f"{pct(m)} ({pct(lo[1])})",
                        f"{pct(p)} ({pct(lo[2])})", pct(stats([r.error_ideal for r in sub])[1]), ""])
    out += ["## Summary", "", table(["errors", "rows", "median", "p90", "ideal median", "ideal p90"], summary), ""]
    skipped = [r for r in results if r.predicted is None]
    out += [f"{len(predicted)} of {len(results)} rows predicted ({100 * len(predicted) / len(results):.1f}%). "
            "Each row not predicted, with its reason:", ""]
    out += [f"- `{r.id}`: {r.skipped_reason}" for r in skipped] or ["- none"]
    out.append("")
    out += grouped(results, rows, held, lambda row, r: framework_of(row), "framework")
    out += grouped(results, rows, held, lambda row, r: vendor_of(load_chip(row["hardware"]).family), "vendor")
    out += grouped(results, rows, held, lambda row, r: row["hardware"], "chip")
    out += grouped(results, rows, held, lambda row, r: row["model"], "model")
    out += grouped(results, rows, held, lambda row, r: row["scenario"], "scenario")
    out += grouped(results, rows, held, lambda row, r: row["metric"], "metric")
    out += grouped(results, rows, held, lambda row, r: r.id.split("-", 1)[0], "dataset")
    out += grouped([r for r in ix], rows, held,
                   lambda row, r: f"{row['hardware']} {framework_of(row)} {row['metric']}", "InferenceX group")
    out += framework_effect()
    out += vendor_efficiencies(profile)
    out += deepseek_on_b200(rows)
    aliases = yaml.safe_load((resources.files("infercast") / "catalog" / "frameworks" / "aliases.yaml").read_text())
    out += ["## How the framework column maps onto profiles", "",
            "`catalog/frameworks/aliases.yaml`, first match wins (`infercast.framework.framework_of_text`):", "",
            table(["pattern", "profile", "version", "dated before", "why"],
                  [[f"`{a['pattern']}`", a["framework"], a.get("version") or "from the text",
                    a.get("dated_before") or "", a["why"]] for a in aliases["aliases"]]), ""]
    out += ["## Every row", ""]
    lines = []
    for r in results:
        h = held.get(r.id, {})
        lines.append([r.id, r.metric, f"{r.measured:.4g}", "-" if r.predicted is None else f"{r.predicted:.4g}",
                      pct(r.error, True), *[pct(h.get(kind), True) for kind, _ in HELD_OUT], pct(r.error_ideal, True),
                      (r.skipped_reason or r.note or "").replace("|", "/")])
    out += [table(["id", "metric", "measured", "predicted", "error", "LOSO", "LOCO", "LOFO", "ideal error", "note"],
                  lines), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "validation.md"))
    args = parser.parse_args()
    text = report()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
