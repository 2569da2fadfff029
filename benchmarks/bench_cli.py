"""Wall time of the ``infercast`` command and of in-process ``estimate()`` calls.

    python benchmarks/bench_cli.py

Runs ``infercast estimate ... --output json`` 15 times in fresh processes (the 0.5 s target
covers interpreter start and imports) and 1000 ``estimate()`` calls in this process.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

CLI_TARGET_S = 0.5
RUNS = 15
CALLS = 1000
ARGS = ["estimate", "--model", "llama-2-7b", "--hardware", "a100-sxm-80gb", "--batch", "1", "--isl", "128",
        "--osl", "128", "--output", "json"]


def command() -> list[str]:
    """The console script next to this interpreter, else the module run through its __main__ guard."""
    exe = Path(sys.executable).parent / ("infercast.exe" if sys.platform == "win32" else "infercast")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "infercast.cli"]


def bench_cli() -> list[float]:
    cmd = command() + ARGS
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def bench_estimate() -> float:
    from infercast import estimate

    estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=128, osl=128)  # load and cache the catalog entries
    start = time.perf_counter()
    for _ in range(CALLS):
        estimate("llama-2-7b", "a100-sxm-80gb", batch=1, isl=128, osl=128)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    times = bench_cli()
    median = statistics.median(times)
    verdict = "within" if median <= CLI_TARGET_S else "OVER"
    print(f"{' '.join(command())} {' '.join(ARGS)}")
    print(f"  {RUNS} runs: median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
          f"({verdict} the {CLI_TARGET_S} s target)")
    mean = bench_estimate()
    print(f"estimate('llama-2-7b', 'a100-sxm-80gb', batch=1, isl=128, osl=128): "
          f"mean {mean * 1e3:.3f} ms over {CALLS} in-process calls")


if __name__ == "__main__":
    main()
