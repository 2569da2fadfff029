"""Speed of ``infercast sweep``: 10 million configurations written as Parquet, and the executors' equivalence.

    python benchmarks/bench_sweep.py [--rows full|small] [--executors serial,process,ray] [--out DIR] [--search]

The grid (issue 13): one model (llama-3-70b), 20 chips, 6 plans (tp 1, 2, 4 x pp 1, 2), 3 precisions
(--dtype fp16, fp8, fp4), 112 batches (1..112) x 16 prompt lengths (256..4096:256) x 16 output lengths
(128..2048:128): 360 combinations x 28,672 = 10,321,920 configurations [serial <= 60 s].
``--rows small`` keeps 4 chips (72 combinations, 2,064,384 configurations): what the executor comparison
runs on a 2-core machine, where process and Ray workers compete with the writer for the same two cores.

Prints, for each executor: wall time, rows/s, the Parquet size, and whether the dataset's content equals
the serial one (every column, row by row). ``--search`` then times the issue's search in a fresh process
(``infercast search --model llama-3-70b --isl 1024 --osl 1024 --qps 20 --slo ttft_p99:2000,tpot_p99:50
--hardware all``, top-5 simulations included) [<= 10 s], three times, and prints its table. Times are
wall-clock on a shared machine: run twice.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

CHIPS = ["h100-sxm", "h200-sxm", "b200", "b300", "gb200", "a100-sxm-80gb", "a100-sxm-40gb", "h100-pcie", "h100-nvl",
         "l40s", "mi300x", "mi325x", "mi355x", "gaudi3", "gaudi2", "rtx-4090", "rtx-pro-6000", "l40", "a10", "h20"]


def grid_values(rows: str) -> dict:
    chips = CHIPS if rows == "full" else CHIPS[:4]
    return {"model": "llama-3-70b", "hardware": ",".join(chips), "tp": "1,2,4", "pp": "1,2", "dtype": "fp16,fp8,fp4",
            "batch": "1..112", "isl": "256..4096:256", "osl": "128..2048:128"}


def run(executor: str, rows: str, out: Path, workers: int):
    from infercast.sweep import make_executor, make_grid, run_sweep

    grid = make_grid(grid_values(rows))
    t = time.perf_counter()
    r = run_sweep(grid, str(out), executor=make_executor(executor, workers=workers))
    return time.perf_counter() - t, r


SEARCH = ["search", "--model", "llama-3-70b", "--isl", "1024", "--osl", "1024", "--qps", "20",
          "--slo", "ttft_p99:2000,tpot_p99:50", "--hardware", "all"]


def bench_search(runs: int = 3) -> None:
    import json
    import statistics
    import subprocess

    exe = Path(sys.executable).parent / "infercast"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "infercast"]
    walls, out = [], ""
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(cmd + SEARCH + ["--output", "json"], check=True, capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - t)
    doc = json.loads(out)
    print(f"search (fresh process, top-5 simulated): median {statistics.median(walls):.2f} s, "
          f"runs {', '.join(f'{w:.2f}' for w in walls)} s; {doc['candidates_evaluated']:,} candidates, "
          f"{len(doc['ranked'])} ranked", flush=True)
    table = subprocess.run(cmd + SEARCH, check=True, capture_output=True, text=True).stdout
    print(table)


def same_content(a: Path, b: Path) -> str:
    """'identical bytes' when every part file is byte for byte the same (the strongest check, and one that
    does not load 10 million rows twice); else whether the rows are equal, part by part."""
    import hashlib

    from infercast.dataset import read_dataset

    pa_, pb = sorted(a.glob("part-*")), sorted(b.glob("part-*"))
    if [p.name for p in pa_] != [p.name for p in pb]:
        return "DIFFERENT part files"
    if all(hashlib.sha256(x.read_bytes()).digest() == hashlib.sha256(y.read_bytes()).digest()
           for x, y in zip(pa_, pb, strict=True)):
        return "identical bytes"
    return "equal rows" if read_dataset(str(a)).equals(read_dataset(str(b))) else "DIFFERENT rows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", choices=["full", "small"], default="full")
    parser.add_argument("--executors", default="serial")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="Keep the datasets here (default: a temporary folder, removed).")
    parser.add_argument("--search", action="store_true", help="Time the issue's search command too.")
    args = parser.parse_args()
    base = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for name in args.executors.split(","):
            out = base / f"{name}.parquet"
            if out.exists():
                shutil.rmtree(out)
            wall, r = run(name, args.rows, out, args.workers)
            n, size, skipped = r.rows, r.bytes, r.skipped
            results[name] = out
            same = "" if name == "serial" or "serial" not in results else (
                f", against serial: {same_content(results['serial'], out)}")
            print(f"{name}: {n:,} rows in {wall:.1f} s, {n / wall:,.0f} rows/s, Parquet {size / 1e9:.2f} GB "
                  f"({size / n:.1f} bytes/row){same}; skipped: {skipped or 'none'}", flush=True)
    finally:
        if not args.out:
            shutil.rmtree(base, ignore_errors=True)
    if args.search:
        bench_search()


if __name__ == "__main__":
    sys.exit(main())
