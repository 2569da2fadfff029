"""Derive the roofline's default efficiency parameters from public GEMM timings.

Usage: python scripts/derive_efficiency.py [measured.csv]

Uses only the op-level GEMM rows (Vidur's and LLMCompass's profiled FP16 GEMMs on A100 and
H100): their shapes are known exactly, so no model or framework assumption enters.

1. Weight-streaming rows (M <= 16 rows: GEMV-like, memory-bound): fit
       t = kernel_overhead + bytes / (bandwidth * peak_bw)
   per family with the Theil-Sen estimator (median of pairwise slopes; robust to the odd
   row, such as LLMCompass's M=8 QKV GEMM at 18% of peak bandwidth): the slope gives the
   bandwidth fraction, the intercept the fixed per-kernel time.
2. Compute-bound rows (FLOPs at peak take longer than bytes at peak): the achieved fraction
   e = FLOPs / ((t - kernel_overhead) * peak) is fitted to e(d) = gemm_max * d / (d + d_half),
   d the smallest GEMM dimension: d_half over all families together (only A100 has shapes
   spread widely enough to pin it), gemm_max per family as the least-squares level given d_half.
   d_half is searched from 8 up: Ampere's mma.m16n8k16 tensor-core instruction takes 16 rows,
   so a GEMM with 8 rows wastes at least half of every instruction whatever the data say.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from importlib import resources

import numpy as np

from infercast.hardware import load_chip

GEMM_OPS = {"qkv_proj", "out_proj", "mlp_gate_up", "mlp_up", "mlp_down", "gemm"}


def gemm_rows(path: str | None = None) -> list[dict]:
    text = open(path).read() if path else (resources.files("infercast") / "catalog/measured/public.csv").read_text()
    rows = []
    for r in csv.DictReader(text.splitlines()):
        if r["scenario"] != "op" or r["op"] not in GEMM_OPS or r["weight_dtype"] != "fp16":
            continue
        chip = load_chip(r["hardware"])
        M, N, K = (int(r[k]) for k in ("gemm_m", "gemm_n", "gemm_k"))
        rows.append(dict(family=chip.family, M=M, N=N, K=K, t=float(r["value"]), flops=2.0 * M * N * K,
                         bytes=2.0 * (M * K + K * N + M * N), peak=chip.peak("fp16"),
                         bw=chip.figure("memory.bandwidth_bytes_per_s")))
    return rows


def derive(path: str | None = None) -> dict[str, dict[str, float]]:
    by_family = defaultdict(list)
    for r in gemm_rows(path):
        by_family[r["family"]].append(r)

    out: dict[str, dict[str, float]] = {}
    compute_rows = []
    for family, rows in sorted(by_family.items()):
        gemv = [r for r in rows if r["M"] <= 16]
        x = np.array([r["bytes"] / r["bw"] for r in gemv])  # s at peak bandwidth
        t = np.array([r["t"] for r in gemv])
        i, j = np.triu_indices(len(x), 1)
        keep = x[i] != x[j]
        slope = float(np.median((t[j] - t[i])[keep] / (x[j] - x[i])[keep]))
        intercept = float(np.median(t - slope * x))
        out[family] = dict(bandwidth=1 / slope, kernel_overhead_s=intercept)
        for r in rows:
            if r["flops"] / r["peak"] > r["bytes"] / r["bw"] and r["M"] > 16:
                e = r["flops"] / ((r["t"] - intercept) * r["peak"])
                compute_rows.append((family, min(r["M"], r["N"], r["K"]), e))

    def level(d_half: float, fam: str | None = None) -> tuple[float, float]:
        sel = [(d, e) for f, d, e in compute_rows if fam is None or f == fam]
        shape = np.array([d / (d + d_half) for d, _ in sel])
        e = np.array([e for _, e in sel])
        top = float(shape @ e / (shape @ shape))
        return top, float(np.sum((top * shape - e) ** 2))

    def total_sse(d_half: float) -> float:
        return sum(level(d_half, fam)[1] for fam in out)

    grid = np.arange(8.0, 1024.0, 1.0)
    d_half = float(grid[np.argmin([total_sse(g) for g in grid])])
    for fam in out:
        out[fam]["gemm_max"] = level(d_half, fam)[0]
        out[fam]["gemm_half_dim"] = d_half
        out[fam]["rows"] = len(by_family[fam])
    return out


def main() -> None:
    derived = derive(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"{'family':16} {'rows':>4} {'gemm_max':>9} {'half_dim':>9} {'bandwidth':>9} {'overhead_us':>11}")
    for fam, v in derived.items():
        print(f"{fam:16} {v['rows']:4d} {v['gemm_max']:9.3f} {v['gemm_half_dim']:9.0f} {v['bandwidth']:9.3f} "
              f"{v['kernel_overhead_s'] * 1e6:11.2f}")
    keys = ("gemm_max", "bandwidth", "kernel_overhead_s")
    mean = {k: float(np.mean([v[k] for v in derived.values()])) for k in keys}
    print("generic (mean): " + ", ".join(f"{k}={mean[k]:.4g}" for k in keys))


if __name__ == "__main__":
    main()
