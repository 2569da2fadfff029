"""Speed of the engine: one ``estimate()``, ``evaluate()`` over a million configurations, a categorical grid,
and the ``infercast estimate`` command.

    python benchmarks/bench_engine.py [--quick]

Prints, in one run (targets of issue 11 in brackets):

1. ``estimate("llama-2-7b", "h100-sxm")`` (batch 1, isl 128, osl 128): median in-process time over
   2,000 calls after a warm-up [<= 0.5 ms];
2. ``evaluate()`` of one scenario (llama-2-7b, h100-sxm, tp 1) over a 1,000,000-point grid: batch 1..40 x
   25 prompt lengths x 25 output lengths x 40 memory bandwidths (0.5x..2x), given as broadcast axes
   [>= 1,000,000 configurations per second on one core]: the first call, then the median of the calls after it
   (a sweep's steady state). The first call's extra time is the kernel's: its ~210 MB of fresh pages (the
   per-operator rows and the columns) fault in, which costs several times more right after the 2,000 calls of
   item 1 than in a fresh process;
3. a categorical grid: 20 chips x 6 plans (tp 1, 2, 4, 8; pp 2; tp 2 x pp 2) x 3 precisions (fp16, fp8,
   int4 weights) of llama-3-70b, each evaluated over batch 1..1024 at isl 1024, osl 256: configurations per
   second including every ``resolve`` [>= 200,000/s]; combinations a chip cannot run (too few chips in its
   node, no memory) are counted, not skipped silently;
4. ``infercast estimate --model llama-3-8b --hardware h100-sxm ...`` wall time in a fresh process, median of
   15 runs [<= 0.3 s].

Times are wall-clock on this machine, which is shared: run it twice and read the better. Line 0 measures the
machine itself (a pure-Python loop and one small numpy operation), so that figures taken on different machines
or days can be compared: the engine's time is mostly Python and small numpy calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHIPS = ["h100-sxm", "h200-sxm", "b200", "b300", "gb200", "a100-sxm-80gb", "a100-sxm-40gb", "h100-pcie", "h100-nvl",
         "l40s", "mi300x", "mi325x", "mi355x", "gaudi3", "gaudi2", "rtx-4090", "rtx-pro-6000", "l40", "a10", "h20"]
PLANS = [dict(tp=1), dict(tp=2), dict(tp=4), dict(tp=8), dict(pp=2), dict(tp=2, pp=2)]
PRECISIONS = [dict(dtype="fp16"), dict(dtype="fp8"), dict(quantization="awq")]


def machine_reference() -> tuple[float, float]:
    """(seconds for 5,000,000 Python additions, microseconds per numpy multiply of two 8-float arrays): best of 3."""
    loops, ops = [], []
    a = np.ones(8)
    for _ in range(3):
        t = time.perf_counter()
        s = 0
        for i in range(5_000_000):
            s += i
        loops.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(100_000):
            a * a
        ops.append((time.perf_counter() - t) / 100_000 * 1e6)
    return min(loops), min(ops)


def bench_estimate(calls: int) -> float:
    from infercast import estimate

    estimate("llama-2-7b", "h100-sxm")
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        estimate("llama-2-7b", "h100-sxm")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_grid(repeats: int) -> tuple[int, float, float]:
    from infercast import evaluate, resolve

    sc = resolve("llama-2-7b", "h100-sxm")
    batch = np.arange(1, 41, dtype=float).reshape(-1, 1, 1, 1)
    isl = np.linspace(128, 2048, 25).round().reshape(1, -1, 1, 1)
    osl = np.linspace(16, 2048, 25).round().reshape(1, 1, -1, 1)
    bw = (sc.rates.mem_bw_bytes_per_s * np.linspace(0.5, 2.0, 40)).reshape(1, 1, 1, -1)
    evaluate(sc, batch=batch[:2], isl=isl, osl=osl[:, :, :2], rates={"mem_bw_bytes_per_s": bw[..., :2]})
    walls = []
    for _ in range(1 + repeats):
        t = time.perf_counter()
        cols = evaluate(sc, batch=batch, isl=isl, osl=osl, rates={"mem_bw_bytes_per_s": bw})
        walls.append(time.perf_counter() - t)
        assert np.shape(cols["decode.tpot_s"]) == (40, 25, 25, 40)
        del cols
    n = int(np.prod(np.broadcast_shapes(batch.shape, isl.shape, osl.shape, bw.shape)))
    return n, walls[0], statistics.median(walls[1:])


def bench_categorical() -> tuple[int, float, dict[str, int]]:
    from infercast import InfercastError, evaluate, resolve

    batch = np.arange(1, 1025, dtype=float)
    done, skipped = 0, {}
    t = time.perf_counter()
    for chip in CHIPS:
        for plan in PLANS:
            for precision in PRECISIONS:
                try:
                    sc = resolve("llama-3-70b", chip, **plan, **precision)
                    cols = evaluate(sc, batch=batch, isl=1024, osl=256)
                except InfercastError as exc:
                    reason = str(exc).split(":")[0][:60]
                    skipped[reason] = skipped.get(reason, 0) + len(batch)
                    continue
                done += int(np.size(cols["ttft_s"]))
    return done, time.perf_counter() - t, skipped


def bench_cli(runs: int) -> list[float]:
    exe = Path(sys.executable).parent / "infercast"
    cmd = ([str(exe)] if exe.is_file() else [sys.executable, "-m", "infercast"]) + [
        "estimate", "--model", "llama-3-8b", "--hardware", "h100-sxm", "--batch", "8", "--isl", "1024",
        "--osl", "128"]
    # as an installed package runs: its bytecode compiled (pip compiles it at install; a PYTHONDONTWRITEBYTECODE
    # environment would otherwise recompile every module of the package on every run), after one warm-up run
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repetitions.")
    args = parser.parse_args()
    loop_s, op_us = machine_reference()
    print(f"0. this machine: 5,000,000 Python additions in {loop_s:.3f} s; a numpy multiply of 8 floats "
          f"{op_us:.2f} us")
    median = bench_estimate(200 if args.quick else 2000)
    print(f"1. estimate('llama-2-7b', 'h100-sxm'): median {median * 1e3:.3f} ms in-process (target <= 0.5 ms)")
    n, first, again = bench_grid(3 if args.quick else 5)
    print(f"2. evaluate() over {n:,} configurations (batch x isl x osl x bandwidth): first call {first:.2f} s, "
          f"{n / first:,.0f} configurations/s; the calls after it, median {again:.2f} s, {n / again:,.0f}/s "
          f"(target >= 1,000,000/s)")
    n, wall, skipped = bench_categorical()
    print(f"3. {len(CHIPS)} chips x {len(PLANS)} plans x {len(PRECISIONS)} precisions x 1,024 batches: {n:,} "
          f"configurations in {wall:.2f} s, {n / wall:,.0f}/s including resolve (target >= 200,000/s); not run: "
          + (", ".join(f"{v:,} ({k})" for k, v in skipped.items()) or "none"))
    times = bench_cli(5 if args.quick else 15)
    print(f"4. infercast estimate (fresh process): median {statistics.median(times):.3f} s, min {min(times):.3f} s "
          f"(target <= 0.3 s)")


if __name__ == "__main__":
    main()
