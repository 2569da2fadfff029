"""``infercast calibrate --local``: measure the machine at hand, describe it as a chip YAML, and check
the estimate against a real transformer run on it.

The micro-benchmarks (torch on the chosen device where torch is installed, else numpy on the CPU):

* matmul throughput per format, on square GEMMs of growing size: the best rate is the chip's peak;
* a sweep of ``[M, K] x [K, N]`` GEMMs over small M with weights streamed from memory, and a GEMV
  over 256 MB of weights: the share of the memory peak the GEMV streams at is ``bandwidth``;
  ``gemm_max`` and ``gemm_half_dim`` are fitted to the sweep through the roofline itself
  (``infercast.roofline.op_time``);
* memory bandwidth: a large copy, read plus written bytes (or the GEMV's rate where it is higher);
* the kernel overhead: a one-element add in eager mode;
* fused attention (``scaled_dot_product_attention``) at a few prompt lengths, for ``attention_max``
  and ``attention_half_len``;
* the per-pass framework cost (``step_overhead_s``): decode steps of a decoder as deep as the
  reference one but 64 channels wide, less what the roofline predicts for it.

On a CPU, torch runs on as many threads as are idle (``choose_threads``) unless OMP_NUM_THREADS says.
Nothing is fitted to the reference transformer's own timings: its prefill and decode times are
then predicted by ``infercast.estimate`` from this chip alone (``infercast.reference_model``).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from itertools import cycle
from typing import Any

import numpy as np
import yaml

from infercast.errors import InfercastError
from infercast.files import check_writable, write_new
from infercast.hardware import Chip
from infercast.ops import Precision, forward_ops, gemm_op
from infercast.roofline import Efficiency, op_time

MEMORY_ROOF_SHARE = 0.5
"""A sweep GEMM streaming its bytes at this share of the GEMV's rate or more runs at the memory roof:
the fit must keep it memory-bound (a BLAS's GEMV kernel at M = 1 is one, however slow its
small-M GEMM kernels are)."""
HALF_DIM_GRID = np.concatenate([[0.0], np.geomspace(0.1, 4096.0, 400)])
"""Candidate values of ``gemm_half_dim`` the sweep fit searches."""
MODEL_MEMORY_SHARE = 0.25
"""Largest share of the device memory the reference transformer (weights and cache) may take."""


@dataclass(frozen=True)
class BenchPlan:
    """How much a run measures: sizes, repetitions and the time it may spend on the transformer."""

    max_square: int
    """Largest edge of the square GEMMs tried for the peak (the ladder doubles from 256)."""
    square_call_s: float
    """The ladder stops at the first size whose call takes at least this long."""
    sweep_rows: tuple[int, ...]
    """M of the small-M GEMM sweep, 1 first (N = K = the largest square edge reached)."""
    copy_bytes: float
    """Bytes of the copy measuring bandwidth (source; as much again is written)."""
    stream_bytes: float
    """Weights the sweep cycles through, and the weight of the GEMV measuring streaming: 256 MB is over
    4x the largest last-level caches in the catalog (H100's 50 MB L2; a server CPU's 32 MB L3),
    STREAM's rule for arrays that measure memory rather than cache (McCalpin, STREAM FAQ)."""
    attention_lens: tuple[int, ...]
    """Prompt lengths of the timed causal attention."""
    trials: int
    """Timed trials of each micro-benchmark (the median is kept: ``time_call``)."""
    min_trial_s: float
    """A trial repeats its operation until it has run this long."""
    model_budget_s: float
    """Predicted time the reference runs may take: the largest model of ``LADDER`` within it runs."""
    isl: int
    osl: int
    model_trials: int
    """Timed generations of the reference transformer (after one warm-up)."""


QUICK = BenchPlan(max_square=8192, square_call_s=0.1, sweep_rows=(1, 4, 16, 64, 256, 1024), copy_bytes=256e6,
                  stream_bytes=256e6, attention_lens=(256, 1024), trials=3, min_trial_s=0.1, model_budget_s=30.0,
                  isl=512, osl=16, model_trials=3)
FULL = BenchPlan(max_square=16384, square_call_s=0.2, sweep_rows=tuple(2**i for i in range(12)), copy_bytes=1e9,
                 stream_bytes=256e6, attention_lens=(128, 256, 512, 1024, 2048), trials=5, min_trial_s=0.25,
                 model_budget_s=240.0, isl=1024, osl=64, model_trials=5)


def _torch():
    """The torch module, or None where it is not installed."""
    if find_spec("torch") is None:
        return None
    import torch

    return torch


class Device:
    """The array library the benchmarks run on: torch on a CPU or CUDA device, or numpy on the CPU."""

    def __init__(self, device: str | None = None) -> None:
        if device not in (None, "cpu", "cuda"):
            raise InfercastError(f"--device {device}: use cpu or cuda")
        self.torch = torch = _torch()
        if torch is None:
            if device == "cuda":
                raise InfercastError('--device cuda needs torch: pip install "infercast[torch]"')
            # numpy has no half-precision BLAS: an fp16 matmul is emulated element by element, hundreds of
            # times slower than the CPU's fp32 rate, so measuring it would record the emulation as a peak.
            # fp32 alone is measured; fp16 and bf16 math then run at the fp32 rate (the engine's fallback).
            self.kind, self.library, self.dtypes = "cpu", "numpy", {"fp32": np.float32}
            self._rng = np.random.default_rng(0)
            return
        if device == "cuda" and not torch.cuda.is_available():
            raise InfercastError("--device cuda: torch sees no CUDA device; use --device cpu")
        self.kind, self.library = device or ("cuda" if torch.cuda.is_available() else "cpu"), "torch"
        self.dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        if self.kind == "cuda":  # TF32: fp32 inputs on the tensor cores (``tf32`` switches it on)
            self.dtypes = {"fp32": torch.float32, "tf32": torch.float32,
                           **({"bf16": torch.bfloat16} if torch.cuda.is_bf16_supported() else {}),
                           "fp16": torch.float16}

    def sync(self) -> None:
        if self.kind == "cuda":
            self.torch.cuda.synchronize()

    def random(self, shape: tuple[int, ...], dtype: str):
        if self.torch is None:
            return self._rng.standard_normal(shape, dtype=np.float32).astype(self.dtypes[dtype])
        return self.torch.randn(shape, device=self.kind, dtype=self.dtypes[dtype])

    def linear(self, x, w):
        """x [M, K] times w [N, K] transposed, as a linear layer computes it."""
        return x @ w.T if self.torch is None else self.torch.nn.functional.linear(x, w)

    def copy(self, dst, src) -> None:
        if self.torch is None:
            np.copyto(dst, src)
        else:
            dst.copy_(src)

    def tf32(self, enabled: bool) -> None:
        if self.kind == "cuda":
            self.torch.backends.cuda.matmul.allow_tf32 = enabled


def time_call(fn: Callable[[], Any], dev: Device, plan: BenchPlan) -> float:
    """Median seconds per call of ``fn`` over ``plan.trials`` trials, after a warm-up call; each trial
    repeats ``fn`` until it has run ``plan.min_trial_s`` (one timer read per trial, not per call).

    The median, not the fastest, on both sides of the comparison (``reference_model.run_reference``):
    on a machine shared with other work, the fastest of many short trials catches the quiet moments
    that a run of seconds cannot, while medians of both see the typical load."""
    dev.sync()
    start = time.perf_counter()
    fn()
    dev.sync()
    reps = max(1, min(100_000, int(plan.min_trial_s / max(time.perf_counter() - start, 1e-7))))
    trials = []
    for _ in range(plan.trials):
        dev.sync()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        dev.sync()
        trials.append((time.perf_counter() - start) / reps)
    return float(np.median(trials))


@dataclass
class Measured:
    """What the micro-benchmarks found (SI units)."""

    device: str
    device_name: str
    library: str
    threads: int | None
    """torch's threads on a CPU (None: numpy, or a CUDA device)."""
    peak_flops: dict[str, float] = field(default_factory=dict)
    """Best matmul FLOP/s per format."""
    square_edge: dict[str, int] = field(default_factory=dict)
    """Largest edge of the square GEMMs timed per format."""
    square_rates: dict[str, float] = field(default_factory=dict)
    """FLOP/s of that largest square GEMM."""
    sweep: list[dict[str, float]] = field(default_factory=list)
    """The small-M GEMMs: m, n, k, time_s, flops_per_s."""
    sweep_dtype: str = "fp32"
    copy_bytes_per_s: float = 0.0
    """A large copy's read plus written bytes per second."""
    gemv_bytes_per_s: float = 0.0
    """Bytes per second a GEMV (M = 1) streams over ``stream_bytes`` of weights."""
    stream_bytes: float = 0.0
    kernel_overhead_s: float = 0.0
    attention: list[dict[str, float]] = field(default_factory=list)
    """Causal fused attention: seq_len, time_s, flops_per_s."""
    host_link_bytes_per_s: float | None = None
    step_overhead_s: float | None = None
    fit: dict[str, float] = field(default_factory=dict)
    """The efficiency fields fitted from the above."""
    speed_during_reference: float | None = None
    """The largest square GEMM's rate timed again after the reference runs, over its rate among the
    micro-benchmarks: below 1 when other work slowed the machine down in between."""

    @property
    def memory_bytes_per_s(self) -> float:
        """Peak memory bandwidth: the copy's read plus written bytes, or the GEMV's if it streams faster
        (a copy on a CPU also reads every line it writes, traffic the count leaves out)."""
        return max(self.copy_bytes_per_s, self.gemv_bytes_per_s)


def measure_matmul(dev: Device, plan: BenchPlan, m: Measured, progress: Callable[[str], None]) -> None:
    """Peak FLOP/s per format: square GEMMs doubling from 256 until a call takes ``square_call_s``."""
    for name in dev.dtypes:
        n, best = 256, 0.0
        while True:
            rate = square_rate(dev, plan, name, n)
            best = max(best, rate)
            if 2.0 * n**3 / rate >= plan.square_call_s or 2 * n > plan.max_square:
                break
            n *= 2
        m.peak_flops[name], m.square_edge[name], m.square_rates[name] = best, n, rate
        progress(f"matmul {name}: {best / 1e9:,.1f} GFLOP/s (square GEMMs up to {n}^3)")


def square_rate(dev: Device, plan: BenchPlan, dtype: str, n: int) -> float:
    """FLOP/s of an n x n x n GEMM in ``dtype``."""
    dev.tf32(dtype == "tf32")
    a, b = dev.random((n, n), dtype), dev.random((n, n), dtype)
    rate = 2.0 * n**3 / time_call(lambda: dev.linear(a, b), dev, plan)
    dev.tf32(False)
    return rate


def measure_sweep(dev: Device, plan: BenchPlan, m: Measured, dtype: str) -> None:
    """GEMMs of M rows against N = K weights, cycling through ``plan.stream_bytes`` of weights; then a
    GEMV (M = 1) streaming one weight that large."""
    n = m.square_edge[dtype]
    count = max(1, int(np.ceil(plan.stream_bytes / (n * n * _element_bytes(dtype)))))
    weights = cycle([dev.random((n, n), dtype) for _ in range(count)])
    m.sweep_dtype = dtype
    for rows in plan.sweep_rows:
        x = dev.random((rows, n), dtype)
        t = time_call(lambda x=x: dev.linear(x, next(weights)), dev, plan)
        rate = 2.0 * rows * n * n / t
        m.sweep.append({"m": rows, "n": n, "k": n, "time_s": t, "flops_per_s": rate})
        m.peak_flops[dtype] = max(m.peak_flops[dtype], rate)
    weights = None  # free the sweep's weights before the GEMV's
    wide = int(plan.stream_bytes // (n * _element_bytes(dtype)))  # N of the GEMV's N x K weight
    w, x = dev.random((wide, n), dtype), dev.random((1, n), dtype)
    op = gemm_op("gemv", 1, 1, wide, n, Precision(dtype, dtype, dtype))
    m.gemv_bytes_per_s = float(op.bytes) / time_call(lambda: dev.linear(x, w), dev, plan)
    m.stream_bytes = plan.stream_bytes


def _element_bytes(dtype: str) -> int:
    return 2 if dtype in ("bf16", "fp16") else 4


def measure_copy(dev: Device, plan: BenchPlan, m: Measured, capacity_bytes: float) -> None:
    elems = int(min(plan.copy_bytes, capacity_bytes / 16) // 4)
    src, dst = dev.random((elems,), "fp32"), dev.random((elems,), "fp32")
    m.copy_bytes_per_s = 2.0 * elems * 4 / time_call(lambda: dev.copy(dst, src), dev, plan)  # read + write


def measure_kernel_overhead(dev: Device, plan: BenchPlan, m: Measured) -> None:
    a, b = dev.random((1,), "fp32"), dev.random((1,), "fp32")
    m.kernel_overhead_s = time_call(lambda: a + b, dev, plan)


def measure_host_link(dev: Device, plan: BenchPlan, m: Measured) -> None:
    """Host-to-device copy from pinned memory (CUDA only)."""
    torch = dev.torch
    elems = int(plan.copy_bytes // 4)
    host = torch.empty(elems, dtype=torch.float32).pin_memory()
    target = torch.empty(elems, dtype=torch.float32, device="cuda")
    m.host_link_bytes_per_s = elems * 4 / time_call(lambda: target.copy_(host, non_blocking=True), dev, plan)


def measure_attention(dev: Device, plan: BenchPlan, m: Measured, heads: int, kv_heads: int, head_dim: int,
                      dtype: str) -> None:
    """Causal prefill attention of one sequence, through the reference model's own attention call."""
    from infercast.reference_model import attend

    for S in plan.attention_lens:
        q = dev.random((1, heads, S, head_dim), dtype)
        k, v = dev.random((1, kv_heads, S, head_dim), dtype), dev.random((1, kv_heads, S, head_dim), dtype)
        with dev.torch.inference_mode():
            t = time_call(lambda q=q, k=k, v=v: attend(q, k, v, 0), dev, plan)
        pairs = heads * S * (S + 1) / 2  # causal (query, key) pairs: infercast.ops.causal_pairs
        m.attention.append({"seq_len": S, "time_s": t, "flops_per_s": 4 * pairs * head_dim / t})


def fit_sweep(m: Measured, chip: Chip) -> tuple[float, float, float]:
    """(bandwidth, gemm_max, gemm_half_dim) from the sweep, through ``roofline.op_time``.

    ``bandwidth``: the share of the memory peak the GEMV streams its weights at, as a decode step's
    do. ``gemm_max``: the share of the compute peak the sweep's largest GEMM reaches (its weights come
    from memory, as a model's do; the peak may be a square GEMM's with its operands in cache).
    ``gemm_half_dim``: least squares on the log of every GEMM's time, among the values that keep each
    GEMM measured at the memory roof memory-bound (its predicted compute time within its measured
    time), and the one-row GEMMs too, whatever their rate: the sweep's and the GEMV (a decode step is
    one: a fit that made it slower than measured would predict decode many times slower than the
    machine runs it), with ``gemm_max`` reproducing the largest GEMM at each candidate value."""
    M = np.array([r["m"] for r in m.sweep], float)
    n = int(m.sweep[0]["n"])
    measured = np.array([r["time_s"] for r in m.sweep])
    busy = np.maximum(measured - m.kernel_overhead_s, 1e-12)
    op = gemm_op("sweep", 1, M, n, n, Precision(m.sweep_dtype, m.sweep_dtype, m.sweep_dtype))
    bandwidth = m.gemv_bytes_per_s / m.memory_bytes_per_s
    at_roof = (op.bytes / busy >= MEMORY_ROOF_SHARE * m.gemv_bytes_per_s) | (M == 1)
    largest = int(np.argmax(M))
    p = Precision(m.sweep_dtype, m.sweep_dtype, m.sweep_dtype)
    gemv = gemm_op("gemv", 1, 1, int(m.stream_bytes // (n * _element_bytes(m.sweep_dtype))), n, p)
    gemv_s = float(gemv.bytes) / m.gemv_bytes_per_s  # as measured (its overhead included)
    best, best_loss = (1.0, 0.0), np.inf
    for d_half in HALF_DIM_GRID:
        eff = _efficiency(gemm_half_dim=d_half, bandwidth=bandwidth, kernel_overhead_s=m.kernel_overhead_s)
        top = float(np.clip(op_time(op, chip, eff).compute_s[largest] / busy[largest], 0.05, 1.0))
        fitted = eff.model_copy(update={"gemm_max": top})
        t = op_time(op, chip, fitted)
        if np.any(t.compute_s[at_roof] > measured[at_roof]) or float(op_time(gemv, chip, fitted).compute_s) > gemv_s:
            continue
        loss = float(np.sum(np.log(t.time_s / measured) ** 2))
        if loss < best_loss:
            best, best_loss = (top, float(d_half)), loss
    return bandwidth, *best


def fit_attention(m: Measured, chip: Chip, spec, dtype: str, gemm_half_dim: float) -> tuple[float, float]:
    """(attention_max, attention_half_len) from the timed attention: the roofline's compute fraction
    is attention_max * k / (k + half_len) at k keys per query, so 1 / fraction is linear in 1 / k."""
    fractions, keys = [], []
    ideal = _efficiency(gemm_half_dim=gemm_half_dim, kernel_overhead_s=0.0)
    p = Precision(dtype, dtype, dtype)
    for row in m.attention:
        S = int(row["seq_len"])
        op = next(o for o in forward_ops(spec, 1, S, S, p) if o.name == "attention")
        busy_s = max(row["time_s"] - m.kernel_overhead_s, 1e-12)
        fractions.append(float(op_time(op, chip, ideal).compute_s) / busy_s)
        keys.append(float(op.seq_len))
    inv_f, inv_k = 1 / np.array(fractions), 1 / np.array(keys)
    slope, intercept = np.polyfit(inv_k, inv_f, 1) if len(keys) > 1 else (0.0, inv_f[0])
    if slope < 0 or intercept <= 0:  # no sign of short prompts being slower: a flat fraction
        return min(1.0, max(fractions)), 0.0
    return min(1.0, 1 / intercept), float(slope / intercept)


def _efficiency(**fields: float) -> Efficiency:
    """Efficiency of a chip whose peak and bandwidth are the measured rates."""
    return Efficiency(**{"gemm_max": 1.0, "gemm_half_dim": 0.0, "wave_quantization": False, "attention_max": 1.0,
                         "bandwidth": 1.0, "kernel_overhead_s": 0.0, **fields})


def _sig(x: float) -> float:
    """Four significant figures: what the noise of a timing run supports."""
    return float(f"{x:.4g}")


def _cpu_facts() -> dict[str, Any]:
    """Name, vendor, cores this process may use, RAM and L3 cache of the host CPU (Linux files where
    present; elsewhere the name from ``platform`` and no cache size)."""
    info: dict[str, str] = {}
    l3 = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:  # index3: the L3, e.g. "32768K"
            size = f.read().strip()
        l3 = (float(size[:-1]) * 1024 or None) if size.endswith("K") else None  # a reported 0K is unknown
    except OSError:
        pass
    try:
        ram = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = None
    vendor = info.get("vendor_id", "")
    return {"name": info.get("model name") or platform.processor() or platform.machine(),
            "vendor": {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor or platform.machine()),
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
            "ram_bytes": ram, "l3_bytes": l3}


_CUDA_FAMILIES = {(8, 0): "nvidia-ampere", (8, 6): "nvidia-ampere-consumer", (8, 7): "nvidia-ampere-consumer",
                  (8, 9): "nvidia-ada", (9, 0): "nvidia-hopper"}
"""Compute capability to architecture family; 10.x and later are Blackwell, earlier than 8.0 the
nearest family the schema has (Ampere), which only picks defaults this chip's own block overrides."""


def _gpu_facts(torch) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    cc = (props.major, props.minor)
    family = _CUDA_FAMILIES.get(cc, "nvidia-blackwell" if props.major >= 10 else "nvidia-ampere")
    return {"name": props.name, "vendor": "NVIDIA", "cores": props.multi_processor_count,
            "ram_bytes": float(props.total_memory), "l3_bytes": getattr(props, "L2_cache_size", None) or None,
            "family": family, "capability": f"{cc[0]}.{cc[1]}"}


def machine_facts(dev: Device) -> dict[str, Any]:
    facts = _gpu_facts(dev.torch) if dev.kind == "cuda" else {**_cpu_facts(), "family": "cpu"}
    if facts["ram_bytes"] is None:
        raise InfercastError("calibrate --local: cannot read this machine's memory size (os.sysconf)")
    return facts


def build_chip(m: Measured, facts: dict[str, Any], efficiency: dict[str, Any] | None, day: datetime.date) -> Chip:
    """The chip YAML's content: every measured figure with its source, the rest null with why."""
    stamp = f"measured by infercast calibrate --local on {day.isoformat()}"
    gpu = m.device == "cuda"
    reader = "torch.cuda.get_device_properties" if gpu else "the operating system"

    def measured(value: float, what: str) -> dict[str, Any]:
        return {"value": _sig(value), "source": f"{stamp}: {what}"}

    def read(value: float | None, what: str) -> dict[str, Any]:
        if value is None:
            return {"value": None, "note": f"unknown: {reader} does not report {what}"}
        return {"value": value, "source": f"{reader}, read by infercast calibrate --local on {day.isoformat()}: {what}"}

    def unknown(what: str) -> dict[str, Any]:
        return {"value": None, "note": f"unknown: {what} cannot be measured by a timing run"}

    peak = {name: measured(rate, f"{name} {m.library} matmul, best of square GEMMs up to {m.square_edge[name]}^3"
                           + (" and the small-M sweep" if name == m.sweep_dtype and m.sweep else "")
                           + (" (fp32 inputs on TF32 tensor cores)" if name == "tf32" else ""))
            for name, rate in m.peak_flops.items()}
    none = {"value": None, "note": "not applicable: the CPU is the host"}
    host = {"name": "none: the CPU is the host", "bandwidth_bytes_per_s_per_direction": none, "latency_s": none}
    if m.host_link_bytes_per_s is not None:
        host = {"name": "link to the host (PCIe or C2C, as measured)",
                "bandwidth_bytes_per_s_per_direction": measured(m.host_link_bytes_per_s, "pinned host-to-device copy"),
                "latency_s": unknown("the per-hop latency")}
    how = [f"{m.library} on {m.device}" + (f", torch threads: {m.threads}" if m.threads else "")
           + (f", compute capability {facts['capability']}" if gpu else "")]
    if m.sweep:
        how.append(f"bandwidth: the share of the memory peak a {m.sweep_dtype} GEMV (M = 1) streams "
                   f"{m.stream_bytes / 1e6:g} MB of weights at; gemm_max and gemm_half_dim fitted to GEMMs of M = "
                   f"{', '.join(str(int(r['m'])) for r in m.sweep)} rows on {int(m.sweep[0]['n'])}^2 weights "
                   f"streamed from memory; kernel_overhead_s: a one-element add")
    if m.attention:
        how.append("attention_max and attention_half_len fitted to causal scaled_dot_product_attention at "
                   f"{', '.join(str(int(r['seq_len'])) for r in m.attention)} tokens")
    if m.step_overhead_s is not None:
        how.append("step_overhead_s: mean decode step of a 64-wide decoder as deep as the reference one, less "
                   "its roofline time")
    data = {
        "id": f"local-{m.device}",
        "name": f"{facts['name']} (this machine, measured)",
        "vendor": facts["vendor"],
        "family": facts["family"],
        "launch_year": day.year,
        "process_nm": unknown("the process node"),
        "peak_flops": peak,
        "memory": {
            "type": "device memory (type not reported)" if gpu else "host DRAM (type not reported)",
            "capacity_bytes": read(facts["ram_bytes"], "total device memory" if gpu else "total RAM"),
            "bandwidth_bytes_per_s": measured(m.memory_bytes_per_s, (
                "large copy, read plus written bytes" if m.copy_bytes_per_s >= m.gemv_bytes_per_s else
                f"a GEMV streaming {m.stream_bytes / 1e6:g} MB of weights, faster than a copy "
                f"({m.copy_bytes_per_s / 1e9:.3g} GB/s read plus written)")),
        },
        "on_chip_sram_bytes": read(facts["l3_bytes"], "L2 cache size" if gpu else "L3 cache size"),
        "num_compute_units": read(float(facts["cores"]), "SMs" if gpu else "cores this process may run on"),
        "interconnect": None,
        "host_link": host,
        "tdp_w": unknown("the power limit"),
        "idle_w": unknown("idle power"),
        "price_usd": unknown("the price"),
        "efficiency": efficiency,
        "notes": f"Written by infercast calibrate --local on {day.isoformat()}; launch_year is the year of the "
                 f"measurement. " + "; ".join(how) + ".",
    }
    return Chip.model_validate(data)


def chip_yaml(chip: Chip) -> str:
    """The chip as catalog YAML (null figures kept with their note, empty optional keys left out)."""
    required = ("value", "interconnect")  # keys the schema needs even when null

    def clean(obj):
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()
                    if k in required or not (v is None or v == [] or (k == "assumed" and v is False))}
        return obj

    header = f"# {chip.name}: written by infercast calibrate --local; the notes say how each figure was found\n"
    return header + yaml.safe_dump(clean(chip.model_dump(mode="json")), sort_keys=False, width=110)


@dataclass
class LocalReport:
    """The result of ``run_local``: the measurements, the chip, and the reference comparison."""

    measured: Measured
    chip: Chip
    chip_path: str | None
    """Where the chip YAML was written (None: not written)."""
    rows: list[dict[str, Any]]
    """Reference transformer: {phase: 'prefill' | 'tpot', measured_s, predicted_s, error} (error is
    predicted / measured - 1); empty without torch."""
    reference: dict[str, Any] | None
    """The reference decoder, its workload and the estimate's breakdown; None without torch."""
    note: str | None
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"chip_path": self.chip_path, "chip": self.chip.model_dump(mode="json"),
                "measured": asdict(self.measured), "reference": self.reference, "rows": self.rows, "note": self.note,
                "wall_s": self.wall_s}


def run_local(*, quick: bool = False, output: str | None = None, force: bool = False, device: str | None = None,
              progress: Callable[[str], None] | None = None, plan: BenchPlan | None = None,
              reference=None) -> LocalReport:
    """Measure this machine, build (and with ``output``, write) its chip YAML, then time a reference
    LLaMA decoder on it and compare with the estimate for that chip.

    ``plan`` replaces the QUICK / FULL plan and ``reference`` (a ``reference_model.ReferenceConfig``)
    the decoder the plan's time budget would pick: for tests and experiments."""
    started = time.perf_counter()
    if output is not None:
        check_writable(output, force)  # fail before minutes of measuring, not after
    dev = Device(device)
    facts = machine_facts(dev)
    plan = plan or (QUICK if quick else FULL)
    threads = None
    if dev.library == "torch" and dev.kind == "cpu":
        previous = dev.torch.get_num_threads()
        threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or choose_threads(dev, plan, facts["cores"])
        dev.torch.set_num_threads(threads)
    try:
        m, chip, run, note = _measure_and_run(dev, facts, plan, threads, output, force, reference,
                                              progress or (lambda _: None))
    finally:
        if threads is not None:
            dev.torch.set_num_threads(previous)
    return LocalReport(m, chip, output, run.rows() if run else [], run.to_dict() if run else None, note,
                       time.perf_counter() - started)


def choose_threads(dev: Device, plan: BenchPlan, cores: int) -> int:
    """Of 1, 2, 4, ... and ``cores`` threads, the count whose 1024^3 fp32 GEMM runs fastest: the cores
    this process may use that are idle. With other work on the machine a thread on a busy core holds
    up every parallel operator at its barrier, and fewer threads run faster than all of them."""
    counts = sorted({*(2**i for i in range(cores.bit_length()) if 2**i < cores), cores})
    rates = {}
    for n in counts:
        dev.torch.set_num_threads(n)
        rates[n] = square_rate(dev, plan, "fp32", 1024)
    return max(rates, key=rates.get)


def _measure_and_run(dev: Device, facts: dict[str, Any], plan: BenchPlan, threads: int | None, output: str | None,
                     force: bool, reference, say: Callable[[str], None]):
    day = datetime.date.today()
    m = Measured(device=dev.kind, device_name=facts["name"], library=dev.library, threads=threads)
    say(f"measuring {facts['name']} with {dev.library} on {dev.kind}"
        + (f" ({threads} thread{'s' if threads > 1 else ''})" if threads else ""))
    dtype = "fp32" if dev.kind == "cpu" else ("bf16" if "bf16" in dev.dtypes else "fp16")
    measure_matmul(dev, plan, m, say)
    measure_copy(dev, plan, m, facts["ram_bytes"])
    measure_kernel_overhead(dev, plan, m)
    measure_sweep(dev, plan, m, dtype)
    if dev.kind == "cuda":
        measure_host_link(dev, plan, m)
        dev.torch.cuda.empty_cache()
    say(f"copy {m.copy_bytes_per_s / 1e9:,.1f} GB/s (read + write); one-element add {m.kernel_overhead_s * 1e6:.2f} us")
    bandwidth, gemm_max, half_dim = fit_sweep(m, build_chip(m, facts, None, day))
    m.fit.update(bandwidth=bandwidth, gemm_max=gemm_max, gemm_half_dim=half_dim)
    eff = {"gemm_max": _sig(gemm_max), "gemm_half_dim": _sig(half_dim), "wave_quantization": False,
           "bandwidth": _sig(bandwidth), "kernel_overhead_s": _sig(m.kernel_overhead_s)}
    say(f"{dtype}: GEMV streams at {bandwidth:.0%} of the memory peak, gemm_max {eff['gemm_max']:g}, "
        f"gemm_half_dim {eff['gemm_half_dim']:g}")
    if dev.torch is None:
        note = 'the reference transformer and the attention benchmark need torch: pip install "infercast[torch]"'
        say(note)
        chip = build_chip(m, facts, eff, day)
        _write(chip, output, force, say)
        return m, chip, None, note

    from infercast import reference_model as rm

    config = reference or rm.choose_reference(
        build_chip(m, facts, {**eff, "attention_max": 1.0}, day), dtype, isl=plan.isl, osl=plan.osl,
        runs=plan.model_trials + 1, budget_s=plan.model_budget_s, memory_bytes=MODEL_MEMORY_SHARE * facts["ram_bytes"])
    measure_attention(dev, plan, m, config.num_heads, config.num_kv_heads, config.head_dim, dtype)
    amax, half_len = fit_attention(m, build_chip(m, facts, None, day), config.spec(), dtype, half_dim)
    m.fit.update(attention_max=amax, attention_half_len=half_len)
    eff.update(attention_max=_sig(amax), attention_half_len=_sig(half_len))
    say(f"attention_max {eff['attention_max']:g}, attention_half_len {eff['attention_half_len']:g}")
    run_args = {"device": dev.kind, "dtype": dtype, "torch_dtype": dev.dtypes[dtype], "sync": dev.sync}
    m.step_overhead_s = rm.step_overhead(build_chip(m, facts, eff, day), num_layers=config.num_layers,
                                         trials=plan.trials, **run_args)
    m.fit["step_overhead_s"] = m.step_overhead_s
    eff["step_overhead_s"] = _sig(m.step_overhead_s)
    say(f"step overhead {m.step_overhead_s * 1e6:,.1f} us per forward pass")
    chip = build_chip(m, facts, eff, day)
    _write(chip, output, force, say)
    say(f"reference {config.name} ({dtype}): batch 1, isl {plan.isl}, osl {plan.osl}, {plan.model_trials} runs")
    run = rm.run_reference(config, chip, isl=plan.isl, osl=plan.osl, trials=plan.model_trials, **run_args)
    for r in run.rows():
        say(f"{r['phase']}: measured {r['measured_s'] * 1e3:,.2f} ms, predicted {r['predicted_s'] * 1e3:,.2f} ms "
            f"({r['error']:+.1%})")
    edge = m.square_edge[dtype]
    m.speed_during_reference = square_rate(dev, plan, dtype, edge) / m.square_rates[dtype]
    if abs(m.speed_during_reference - 1) > 0.1:
        say(f"the {edge}^3 {dtype} GEMM ran at {m.speed_during_reference:.0%} of its earlier rate after the "
            f"reference runs: other work on this machine makes the timings noisy")
    return m, chip, run, None


def _write(chip: Chip, output: str | None, force: bool, say: Callable[[str], None]) -> None:
    if output is not None:
        write_new(output, chip_yaml(chip), force=force)
        say(f"wrote {output}")
