"""Designs evaluated per second through ``evaluate()``: one model and workload, a grid of chip designs.

    python benchmarks/bench_design.py [--quick]

LLaMA-3-70B (FP8, TP 2, batch 64, 1024 + 256 tokens) on the H100 design with five knobs varied together, each
point a design whose peaks, bandwidth, SRAM, node, area, price and TDP follow from its knobs
(``infercast.whatif.knob_rates`` on ``infercast.design``'s formulas), all in one ``evaluate()`` call:
DRAM bandwidth 20 x SRAM 20 x clock 16 x node 4 x compute units 4 = 102,400 designs [target >= 100,000/s].
The time includes deriving the designs' rates. Wall-clock on a shared machine: run it twice, read the better.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def grid(quick: bool) -> dict[str, np.ndarray]:
    from infercast.design import Knobs, load_design

    k = Knobs.of(load_design("h100-sxm-design"))
    n = (10, 10, 8, 4, 2) if quick else (20, 20, 16, 4, 4)
    axes = {
        "dram_bandwidth": k.dram_bw * np.geomspace(0.5, 4, n[0]),
        "sram_bytes": k.sram_bytes * np.geomspace(0.25, 16, n[1]),
        "clock": k.clock_hz * np.linspace(0.8, 2.0, n[2]),
        "process_nm": np.array([7.0, 5.0, 3.0, 2.0])[: n[3]],
        "compute_units": np.linspace(k.units, 2 * k.units, n[4]).round(),
    }
    out = {}
    for i, (name, v) in enumerate(axes.items()):
        shape = [1] * len(axes)
        shape[i] = -1
        out[name] = v.reshape(shape)
    return out


def run(quick: bool = False) -> tuple[int, float]:
    from infercast import evaluate, resolve
    from infercast.design import derive_chip, load_design
    from infercast.whatif import knob_rates

    d = load_design("h100-sxm-design")
    sc = resolve("llama-3-70b", derive_chip(d), tp=2, dtype="fp8")
    knobs = grid(quick)
    shape = np.broadcast_shapes(*(v.shape for v in knobs.values()))
    ones = (1,) * len(shape)  # workload arrays of the grid's dimensions, so the chip arrays broadcast against them
    load = dict(batch=np.full(ones, 64.0), isl=np.full(ones, 1024.0), osl=np.full(ones, 256.0))
    evaluate(sc, **load)  # warm caches
    t = time.perf_counter()
    rates = knob_rates(d, knobs)
    cols = evaluate(sc, **load, rates=rates)
    wall = time.perf_counter() - t
    # columns come back in the shapes that vary (TPOT does not depend on the node): they broadcast to the grid
    assert np.broadcast_shapes(np.shape(cols["decode.tpot_s"]), np.shape(cols["cost.usd_per_million_tokens"])) == shape
    assert np.all(np.isfinite(cols["cost.usd_per_million_tokens"]))
    return int(np.prod(shape)), wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a grid of 6,400 designs")
    args = p.parse_args()
    n, wall = run(args.quick)
    print(f"{n:,} designs of llama-3-70b (fp8, tp 2, batch 64, 1024 + 256) in {wall:.2f} s: "
          f"{n / wall:,.0f} designs/s through evaluate() (target >= 100,000/s)")


if __name__ == "__main__":
    main()
