"""A non-decoder model's workload as a list of passes, priced by the engine's roofline, energy and cost.

``evaluate_network(scenario, batch=, resolution=, steps=, cfg=, seq_len=)`` runs each pass of
``Network.passes`` (an encoder's one bidirectional pass; a CNN's forward; a diffusion pipeline's text
encoders once, its denoiser ``steps`` times, its VAE decoder once) on one replica through the same
``evaluation.Pricer`` a decoder's prefill uses: every operator's roofline time with its kernel overhead,
one framework overhead per forward pass (``step_overhead_s``), and the chip's power cap (a pass whose
dynamic energy over its time would exceed TDP - idle runs at TDP). ``batch`` may be a numpy array: the
throughput-optimal batch is a maximum over one call.

Memory: the weights of every component (all resident), the activations of the largest operator of any
pass (its input and output, twice for the tensors the next operator and a skip connection hold), the
runtime's fixed overhead. Weights placed on a memory tier (``--offload weights=cpu:F``) leave the chip's
memory and are streamed to it on every execution of each pass (sequential offload, as ZeRO-Inference and
diffusers' sequential CPU offload run), at the tier's bandwidth, overlapped with compute by the offload's
``overlap`` (``infercast.offload.combine``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from infercast.cost import capex_per_chip_usd, owned_chip_hour
from infercast.errors import InfercastError
from infercast.evaluation import BOUNDS, Pricer, Rows
from infercast.calibration import network_profile
from infercast.networks import INT8, Network, TextEncoder, Workload
from infercast.ops_vision import Execution
from infercast.offload import combine
from infercast.scenario import Scenario

ACT_HELD = 2.0
"""Activation tensors held per operator: its input and output, each as large as the largest operator's
(the next operator's input and, in a UNet, the skip connections, are of that order)."""


def _batch(value) -> Any:
    a = np.asarray(value)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.any(a < 1) or np.any(a != np.floor(a)) \
            or np.any(a > 2**20):
        raise InfercastError(f"--batch must be a whole number from 1 to 1,048,576, got {value!r}")
    return float(a) if a.ndim == 0 else a.astype(float)


def workload_of(sc: Scenario, *, resolution=None, steps=None, cfg=None, seq_len=None) -> Workload:
    return sc.network.workload(resolution=resolution, steps=steps, cfg=cfg, seq_len=seq_len)


def execution_of(sc: Scenario, eager: bool) -> Execution:
    """How the operators run: eager or fused (``--eager``), attention fused or materialised (``--attention``)."""
    return Execution(eager=bool(eager), materialized=sc.attention == "materialized")


def host_floor_s(ops, launch_s: float) -> float:
    """Time the host needs to dispatch one execution of a pass's kernels, one after the other: PyTorch eager
    launches each kernel from Python, and the GPU, running behind it, cannot finish before the last launch."""
    return launch_s * sum(op.count for op in ops)


def weight_bytes(net: Network, wl: Workload, sc: Scenario) -> dict[str, float]:
    """Bytes of each component's weights at the scenario's formats (embedding tables in the activations')."""
    out = {}
    for name, ops, _ in net.passes(1.0, wl, sc.precision):
        comp = net.components.get(name)
        tables = comp.table_params() * sc.precision.act_bytes if isinstance(comp, TextEncoder) else 0.0
        out[name] = sum(op.count * float(op.weight_bytes) for op in ops) + tables
    return out


def evaluate_network(sc: Scenario, *, batch=1, resolution=None, steps=None, cfg=None, seq_len=None,
                     eager: bool = False, eager_launch_s: float | None = None) -> dict[str, Any]:
    """Columns of one replica running ``batch`` requests through every pass (flattened document keys), with
    ``rows`` (the breakdown's operator rows by pass) and ``passes`` (per-pass totals); ``eager`` runs the
    operators as PyTorch eager does (``ops_vision.Execution``), each kernel dispatched in ``eager_launch_s``
    (default: the network profile's)."""
    if sc.network is None:
        raise InfercastError(f"{sc.spec.name} is a decoder: use infercast.evaluate")
    net, p = sc.network, sc.precision
    wl = workload_of(sc, resolution=resolution, steps=steps, cfg=cfg, seq_len=seq_len)
    x = execution_of(sc, eager)
    launch_s = (network_profile().eager_launch_s if eager_launch_s is None else eager_launch_s) if x.eager else 0.0
    B = _batch(batch)
    pricer = Pricer(sc)
    pricer.activations_on_chip = True
    eff, er = pricer.eff, pricer.er
    off = sc.offload
    frac = off.fraction("weights") if off else 0.0
    if off and ("kv" in off.place or "act" in off.place):
        raise InfercastError(f"--offload: {net.id} has no KV cache and keeps its activations on the chip; place "
                             f"weights only, e.g. --offload weights=cpu")
    weights = weight_bytes(net, wl, sc)
    pricer.weights_bytes = sum(weights.values()) * (1.0 - frac)  # on the chip: SRAM-resident if they fit
    total_latency, total_energy, capped_any = 0.0, 0.0, False
    flops = bytes_ = 0.0
    per_pass, rows, bound_time = [], {}, {b: 0.0 for b in BOUNDS}
    act_peak = 0.0
    for name, ops, reps in net.passes(B, wl, p, x):
        pc = pricer.cost(ops, ("pass", net.id, name, x))
        t = np.maximum(pc.time_s, host_floor_s(ops, launch_s)) + eff.step_overhead_s
        if frac:  # the pass's offloaded weights cross the tier's link on every execution
            t = combine(t, off.transfer_s(sc.chip, "weights", weights[name]), off.overlap)
        e = pc.energy_j
        capped = t if e is None or pricer.power is None else np.maximum(t, e / pricer.power)
        capped_any = capped_any | (np.asarray(capped) > np.asarray(t) * (1 + 1e-12))
        total_latency = total_latency + reps * capped
        if e is not None:
            total_energy = total_energy + reps * e
        r = Rows.of(pc, reps, eff.step_overhead_s)
        rows[name] = r
        f, b = r.total("flops"), r.total("bytes")
        flops, bytes_ = flops + f, bytes_ + b
        per_pass.append({"name": name, "repeats": reps, "latency_s": reps * capped, "flops": f, "bytes": b})
        for i in range(len(r.names)):
            kind = r.bound(i)
            bound_time[kind if isinstance(kind, str) else "compute"] += _scalar_or(r.time_s[i])
        act_peak = np.maximum(act_peak, np.max(np.stack(np.broadcast_arrays(
            *[(op.act_bytes + op.write_bytes) * 1.0 for op in ops])), axis=0))
    latency = total_latency
    dp = sc.plan.dp
    samples = B * dp
    per_s = samples / latency
    opts, rates = sc.memory, sc.rates
    usable = rates.mem_capacity_bytes * opts.gpu_memory_utilization
    w_total = sum(weights.values())
    w_device = w_total * (1 - frac)
    act = ACT_HELD * act_peak
    total = w_device + act + opts.runtime_overhead_bytes
    act_one = ACT_HELD * _act_peak_at_one(net, wl, sc, x)
    max_batch = np.floor(np.maximum(usable - w_device - opts.runtime_overhead_bytes, 0.0) / act_one)
    fits = total <= usable
    if frac:
        fits = fits & off.fits(sc.chip, {"weights": w_total})
    peak = rates.peak(p.gemm_math, sc.chip.id)
    cols: dict[str, Any] = {
        "model": net.id, "kind": net.kind, "hardware": sc.chip.id, "system": sc.system.id,
        "parallel.dp": dp, "parallel.num_chips": dp,
        "workload.batch": B, "workload.resolution": None if wl.resolution is None else f"{wl.resolution[0]}x{wl.resolution[1]}",
        "workload.steps": wl.steps if net.kind == "diffusion" else None, "workload.cfg": wl.cfg,
        "workload.seq_len": wl.seq_len, "workload.eager": x.eager,
        "workload.attention": "materialized" if x.materialized else "flash",
        "workload.weight_dtype": p.weight, "workload.act_dtype": p.act,
        "workload.weight_sparsity": sc.sparsity.weight,
        "params.total": float(sum(net.params().values())),
        "memory.weights_bytes": w_device, "memory.offloaded_weights_bytes": w_total * frac,
        "memory.activation_bytes": act, "memory.overhead_bytes": opts.runtime_overhead_bytes,
        "memory.total_per_chip_bytes": total, "memory.capacity_per_chip_bytes": rates.mem_capacity_bytes,
        "memory.usable_per_chip_bytes": usable, "memory.fits": fits, "memory.max_batch": max_batch,
        "memory.min_chips": min_chips(samples, max_batch),
        "latency_s": latency, "flops": flops, "bytes": bytes_,
        "bound": max(bound_time, key=bound_time.get) if not capped_any is True else "power",
        "utilization.compute": flops / (latency * peak),
    }
    if net.kind == "diffusion":
        den = next(x for x in per_pass if x["name"] == "denoiser")
        cols.update({"images_per_s": per_s, "seconds_per_image": latency / B,
                     "denoiser_it_per_s": wl.steps / den["latency_s"], "flops_per_image": flops / B})
    else:
        cols.update({"samples_per_s": per_s, "flops_per_sample": flops / B})
    unavailable = {}
    avg_power = None
    if er is not None:
        dynamic = dp * total_energy
        static = dp * er.idle_w * latency
        energy = dynamic + static
        avg_power = np.minimum(energy / (dp * latency), er.tdp_w)
        unit = "image" if net.kind == "diffusion" else "sample"
        cols.update({"energy.total_j": energy, f"energy.joules_per_{unit}": energy / samples,
                     "energy.dynamic_j": dynamic, "energy.static_j": static, "energy.average_power_w": avg_power,
                     "energy.power_capped": capped_any, "energy.tdp_w": er.tdp_w, "energy.idle_w": er.idle_w})
    else:
        unavailable["energy"] = sc.extra.get("energy_unavailable", "energy is unknown")
    try:
        o = sc.cost
        if o.usd_per_chip_hour is not None:
            chip_hour, mode = o.usd_per_chip_hour, "cloud"
        else:
            if avg_power is None:
                raise InfercastError(unavailable["energy"] + "; owned-hardware cost needs it: give --usd-per-chip-hour")
            chip_hour = owned_chip_hour(capex_per_chip_usd(rates, sc.system, o, sc.chip.id), avg_power, er.tdp_w,
                                        o).total_usd
            mode = "owned"
        per_hour = dp * chip_hour
        unit = "image" if net.kind == "diffusion" else "million_samples"
        per = per_hour / 3600 / per_s * (1 if net.kind == "diffusion" else 1e6)
        cols.update({"cost.mode": mode, "cost.usd_per_chip_hour": chip_hour, "cost.usd_per_hour": per_hour,
                     f"cost.usd_per_{unit}": per})
    except InfercastError as exc:
        unavailable["cost"] = str(exc)
    cols["passes"] = per_pass
    cols["rows"] = rows
    cols["unavailable"] = unavailable
    cols["weights_by_component_bytes"] = weights
    return cols


def min_chips(samples, max_batch):
    """The fewest chips that hold ``samples`` requests: one replica per chip, each holding the weights and at
    most ``max_batch`` requests' activations, so ceil(samples / max_batch); 0 where no chip holds the weights
    and one request (a network is never split over chips)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(max_batch >= 1, np.ceil(samples / np.maximum(max_batch, 1.0)), 0.0)


def _scalar_or(x) -> float:
    return float(np.max(x)) if np.ndim(x) else float(x)


def _act_peak_at_one(net: Network, wl: Workload, sc: Scenario, x: Execution) -> float:
    """The largest operator's input and output bytes at batch 1 (activations grow with the batch)."""
    return max(float(op.act_bytes + op.write_bytes) for _, ops, _ in net.passes(1.0, wl, sc.precision, x) for op in ops)


def batch_grid(limit: int = 4096) -> list[int]:
    """Powers of two and their midpoints up to ``limit``: the batches an offline harness is searched over."""
    return sorted({int(b) for k in range(int(math.log2(limit)) + 1) for b in (2**k, 1.5 * 2**k) if b <= limit})


MLPERF_BERT_TOKENS = 151.5
"""Mean tokens per SQuAD v1.1 sample the MLPerf closed-division BERT rows imply (``validate_vision.fit_bert_tokens``
over measured-vision-encoder.csv: 151.5; 144-160 without one MLPerf round); the harness skips the padding."""


def best_batch(sc: Scenario, *, limit: int = 4096, **workload) -> tuple[int, dict[str, Any]]:
    """The throughput-optimal batch per replica that fits (MLPerf Offline: the harness picks its batch), over
    ``batch_grid(limit)``; batch 1 where none fits."""
    grid = batch_grid(limit)
    cols = evaluate_network(sc, batch=np.array(grid, dtype=float), **workload)
    rate = np.asarray(cols["images_per_s" if sc.network.kind == "diffusion" else "samples_per_s"])
    ok = np.asarray(cols["memory.fits"])
    if not ok.any():
        return 1, evaluate_network(sc, batch=1, **workload)
    b = grid[int(np.argmax(np.where(ok, rate, -1.0)))]
    return b, evaluate_network(sc, batch=b, **workload)


def _plain(x):
    if isinstance(x, (np.generic, np.ndarray)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def network_document(model: str, hardware=None, *, batch: int = 1, resolution: str | None = None,
                     steps: int | None = None, cfg: bool | None = None, seq_len: int | None = None,
                     eager: bool = False, **options: Any) -> dict[str, Any]:
    """``infercast estimate`` for a non-decoder model: the document of one replica's batch through every
    pass (keys are new beside the decoder's contract: per image or per sample, not per token)."""
    from infercast.scenario import resolve

    sc = resolve(model, hardware, **options)
    c = evaluate_network(sc, batch=batch, resolution=resolution, steps=steps, cfg=cfg, seq_len=seq_len, eager=eager)
    groups: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in c.items():
        if key in ("passes", "rows", "unavailable", "weights_by_component_bytes"):
            continue
        head, dot, rest = key.partition(".")
        if dot:
            groups.setdefault(head, {})[rest] = _plain(value)
        else:
            top[key] = _plain(value)
    mem = groups["memory"]
    for k in ("max_batch", "min_chips"):
        mem[k] = int(mem[k])
    mem["fits"] = bool(mem["fits"])
    groups["workload"]["batch"] = int(groups["workload"]["batch"])
    groups["params"]["by_component"] = sc.network.params()
    breakdown = []
    for name, rows in c["rows"].items():
        for i, op in enumerate(rows.names):
            breakdown.append({"op": op, "phase": name, "flops": float(rows.flops[i]), "bytes": float(rows.bytes[i]),
                              "time_s": float(rows.time_s[i]), "bound": str(rows.bound(i))})
    doc = {**{k: top.pop(k) for k in ("model", "kind", "hardware", "system")}, "parallel": groups.pop("parallel"),
           "workload": groups.pop("workload"), "params": groups.pop("params"), "memory": mem,
           "passes": [{k: _plain(v) for k, v in p.items()} for p in c["passes"]], **top,
           "utilization": groups.pop("utilization"), "energy": groups.get("energy"), "cost": groups.get("cost"),
           "offload": None if sc.offload is None else sc.offload.describe(), "breakdown": breakdown,
           "warnings": list(sc.warnings)}
    for part, why in c["unavailable"].items():
        doc[f"{part}_unavailable"] = why
    return doc
