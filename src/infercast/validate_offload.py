"""Predict the rows of measured-offload.csv (FlexGen, ZeRO-Inference, DeepNVMe, diffusers CPU offload).

Columns: ``id,source,workload,model,hardware,host_memory,storage,offload_policy,precision,prompt_len,gen_len,
batch,metric,value,notes``. Each row names a framework's policy; the prediction runs that framework's schedule:

* FlexGen (``infercast.flexgen``): its zig-zag block schedule and cost model, with its CPU attention over a cache
  off the GPU and its 4-bit group-wise compression (weights, and the cache where the row says weights+KV), on
  the machine the row names (``host_of``: the FlexGen paper's T4 machine with its authors' fitted PCIe and CPU
  rates, the drive's stated read and write rates). "best policy found" rows search FlexGen's policy space;
  rows that state the batch and placement run that policy; "4 T4 GPUs" rows are a pipeline over four such
  machines;
* DeepSpeed ZeRO-Inference: every weight off the GPU (DRAM, or the SSD beyond it), prefetched (overlap 1),
  copied from pageable DRAM (``offload_param.pin_memory`` defaults to False), KV cache on the GPU unless the row
  says it is offloaded; "DeepSpeed (4 GPUs)" is four data-parallel copies;
* Hugging Face Accelerate: ``device_map="auto"`` fills the GPU, then DRAM, then disk; hooks copy each module's
  pageable weights before it runs (overlap 0);
* a row's stated batch is kept; "max feasible" means the throughput-optimal batch that fits, except the FlexGen
  paper's one-T4 baselines, whose batch and lowest offload device FlexGen's README states (``BASELINES``).

Every PCIe copy runs at the measured share of the line rate (``tiers.PCIE_COPY_EFFICIENCY``), a copy from
pageable memory at a share of that (``tiers.PAGEABLE_COPY_SHARE``). Rows the engine cannot describe are skipped
with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from infercast.errors import InfercastError
from infercast.evaluation import evaluate
from infercast.flexgen import Host, describe, load_host, schedule
from infercast.hardware import catalog_id, load_chip
from infercast.offload import offloaded
from infercast.passes import evaluate_network
from infercast.scenario import resolve
from infercast.validate import RowResult

HEADER = {"offload_policy", "host_memory", "storage"}
BASELINE_PROMPT, BASELINE_GEN = 512, 32
BASELINES = {
    ("accelerate", "opt-6.7b"): (2, "gpu"), ("accelerate", "opt-30b"): (8, "cpu"),
    ("accelerate", "opt-175b"): (2, "disk"),
    ("zero", "opt-6.7b"): (16, "cpu"), ("zero", "opt-30b"): (4, "cpu"), ("zero", "opt-175b"): (1, "disk"),
}
"""The batch and the weights' home of the FlexGen paper's one-T4 baselines at prompt 512, generation 32, as its
authors state them beside the throughputs ("Hugging Face Accelerate 25.12 (2 on GPU), 0.62 (8 on CPU), 0.01 (2 on
disk); DeepSpeed ZeRO-Inference 9.28 (16 on CPU), 0.60 (4 on CPU), 0.01 (1 on disk)": flexgen 0.1.8 on PyPI,
README.md, "Generation throughput" table: "the corresponding effective batch sizes and lowest offloading devices are
in parentheses"; "the batch size is tuned to a large value that maximizes the generation throughput for each
system"). Accelerate's ``device_map="auto"`` fills the GPU first, then host DRAM, then disk; ZeRO-3's
``offload_param`` moves every weight to one device, cpu or nvme."""
GPU_FILL = tuple(i / 20 for i in range(21))
BATCHES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
GPU_SHARES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _gb(text: str, unit: str = "GB") -> float | None:
    m = re.search(rf"([\d.]+)\s*{unit}", text or "")
    return float(m.group(1)) if m else None


def _storage_gbps(text: str) -> float | None:
    m = re.search(r"~?([\d.]+)\s*GB/s read", text or "") or re.search(r"\(([\d,]+)\s*MB/s", text or "")
    if not m:
        return None
    v = float(m.group(1).replace(",", ""))
    return v / 1000 if "MB/s" in m.group(0) else v


def _storage_write_gbps(text: str) -> float | None:
    m = re.search(r"~?([\d.]+)\s*GB/s write", text or "")
    return float(m.group(1)) if m else None


def skip_reason(row: dict[str, str]) -> str | None:
    if catalog_id(row["hardware"]) is None:
        return f"hardware {row['hardware']} is not in the catalog"
    if row["value"] == "OOM":
        return "the source reports out-of-memory (no throughput)"
    pol = row["offload_policy"]
    if "model CPU offload" in pol:
        return "component offload (each model moved to the GPU once per call) is not modelled, only sequential offload"
    if row["model"] == "flux.1-dev":
        return "nf4 weights are not modelled for networks"
    return None


def _precision(row: dict[str, str]) -> dict[str, str]:
    p = row["precision"]
    if p.startswith("4-bit") or "4-bit weight quant=Yes" in row["offload_policy"]:
        # group-wise 4-bit weights dequantised to fp16 for the math (gptq4: 4 bits plus a scale per 128)
        kv = "int4" if "weights+KV" in p else "fp16"
        return {"weight_dtype": "gptq4", "act_dtype": "fp16", "kv_cache_dtype": kv}
    return {"dtype": "fp16"}


def _kind(row: dict[str, str]) -> str:
    pol = row["offload_policy"]
    return "flexgen" if pol.startswith("FlexGen") else "accelerate" if pol.startswith("Accelerate") else "zero"


def _decoder(row, batch: int, gpu_share: float, kv_on: str, host_bytes: float | None, disk_gbps: float | None,
             overlap: float, weights_tier: str, pinned: bool = True, stated: bool = False) -> dict[str, Any] | None:
    """Columns of one placement, or None if it does not fit (``stated``: the source says it ran, so it did)."""
    prec = _precision(row)
    probe = resolve(row["model"], row["hardware"], **prec)
    w = float(evaluate(probe, batch=1, isl=2, osl=1)["memory.weights_bytes"])
    off_share = 1.0 - gpu_share
    parts = []
    if off_share > 0:
        if weights_tier == "nvme":
            parts = [("nvme", off_share)]
        else:
            room = host_bytes if host_bytes is not None else math.inf
            cpu = min(off_share, room / w * 0.9)  # leave a tenth of DRAM to the process and the KV cache
            parts = [("cpu", cpu)] if cpu > 0 else []
            if off_share - cpu > 1e-9:
                parts.append(("nvme", off_share - cpu))
    spec = ",".join(filter(None, ["weights=" + "+".join(f"{n}:{f:.6f}" for n, f in parts) if parts else "",
                                  "kv=cpu" if kv_on == "cpu" else ""])) or None
    extra = {}
    if host_bytes is not None:
        extra["cpu_gb"] = host_bytes / 1e9
    if disk_gbps is not None:
        extra["nvme_gbps"] = disk_gbps
    off = None
    if spec:
        off = spec + f",overlap={overlap:g},pinned={pinned:d}" + "".join(f",{k}={v:g}" for k, v in extra.items())
    isl, osl = int(row["prompt_len"]), int(row["gen_len"])
    sc = resolve(row["model"], row["hardware"], offload=off, efficiency=measured_gpu(row), **prec)
    cols = evaluate(sc, batch=batch, isl=isl, osl=osl)
    if sc.offload is not None:
        cols = offloaded(sc, cols)
    return cols if cols["memory.fits"] or stated else None


def host_of(row: dict[str, str]) -> Host:
    """The machine of a row as FlexGen's cost model sees it: the FlexGen paper's T4 machine (its authors' fitted
    PCIe and CPU-attention rates) with the drive's read and write rates as the row states them; another machine
    carries those measured rates over in proportion to its host link and drive (``Host.scaled``)."""
    base = load_host("gcp-t4")
    read, write = _storage_gbps(row["storage"]), _storage_write_gbps(row["storage"])
    dram = (_gb(row["host_memory"]) or base.dram_bytes / 1e9) * 1e9
    disk = (_gb(row["storage"], "TB") or 1.5) * 1e12
    chip = load_chip(row["hardware"])
    link = chip.host_link.bandwidth_bytes_per_s_per_direction.value
    host = base if chip.id == "t4" else base.scaled(host_link_bytes_per_s=link * base.host_link_bytes_per_s / 16e9,
                                                    storage_read_bytes_per_s=None, dram_bytes=dram, disk_bytes=disk,
                                                    name=f"{chip.id} host")
    read_bps = read * 1e9 if read else host.storage_read_bytes_per_s
    write_bps = write * 1e9 if write else read_bps * 0.5  # no write rate stated: the T4 drive's write/read ratio
    return replace(host, dtoc_bytes_per_s=read_bps, ctod_cache_prefill_bytes_per_s=write_bps,
                   ctod_hidden_prefill_bytes_per_s=write_bps, ctod_decode_bytes_per_s=write_bps,
                   storage_read_bytes_per_s=read_bps, dram_bytes=dram, disk_bytes=disk)


def measured_gpu(row: dict[str, str]) -> dict[str, float] | None:
    """On the FlexGen paper's T4 machine, the GPU's tensor-core ceilings its authors measured there (prefill GEMMs
    at 21.24 and attention at 9.97 of the T4's 65 TFLOPS); elsewhere the calibration's."""
    if load_chip(row["hardware"]).id != "t4":
        return None
    host, peak = load_host("gcp-t4"), 65e12  # NVIDIA T4 datasheet: FP16 tensor 65 TFLOPS
    return {"gemm_max": host.prefill_matmul_flops / peak, "attention_max": host.prefill_attention_flops / peak}


def _flexgen(row: dict[str, str]) -> tuple[float | None, str | None, str | None]:
    """A FlexGen row: its schedule (``infercast.flexgen``) under the row's stated placement and batch, or the
    policy search FlexGen itself runs where the row says 'best policy found'."""
    pol, prec = row["offload_policy"], row["precision"]
    compress_w = "weights" in prec and prec.startswith("4-bit") or "4-bit weight quant=Yes" in pol
    compress_c = "weights+KV" in prec
    pp = 4 if "4 T4 GPUs" in pol else 1
    fixed: dict[str, Any] = {}
    if "weights -> cpu_offload" in pol:
        fixed["weights"] = "cpu"
    elif "weights -> disk_offload" in pol:
        fixed["weights"] = "disk"
    if "KV cache offload to CPU=Yes" in pol:
        fixed["cache"] = "cpu"  # (=No leaves FlexGen's own choice: 280 OPT-30B caches cannot sit on a 48 GB GPU)
    if row["batch"].isdigit():
        fixed["sequences"] = int(row["batch"])
    r = schedule(row["model"], row["hardware"], host_of(row), s=int(row["prompt_len"]), n=int(row["gen_len"]),
                 compress_weights=compress_w, compress_cache=compress_c, pp=pp, **fixed)
    if r is None:
        return None, "no FlexGen policy fits the GPU, host DRAM and disk (FlexGen's peak-memory terms)", None
    value = r.decode_tokens_per_s if row["metric"] == "decoding_tokens_per_s" else r.throughput_tokens_per_s
    return value, None, describe(r) + (f", {pp} pipeline stages" if pp > 1 else "")


def predict(row: dict[str, str]) -> tuple[float | None, str | None, str | None]:
    why = skip_reason(row)
    if why:
        return None, why, None
    if row["offload_policy"].startswith("FlexGen"):
        return _flexgen(row)
    if "DeepSpeed (4 GPUs)" in row["offload_policy"]:  # ZeRO-Inference runs data-parallel: one copy per machine
        one, why, note = predict({**row, "offload_policy": "DeepSpeed ZeRO-Inference: best policy found"})
        return (None if one is None else 4 * one), why, note and f"4 data-parallel machines, each: {note}"
    if row["model"] in ("sdxl-base-1.0",):
        # enable_sequential_cpu_offload is accelerate's cpu_offload on each component: hooks copy every submodule's
        # pageable weights before it runs (``state_dict = {n: p.to("cpu") ...}``, accelerate big_modeling.py)
        off = "weights=cpu,overlap=0,pinned=0" if "sequential" in row["offload_policy"] else None
        sc = resolve(row["model"], row["hardware"], dtype="fp16", offload=off)
        c = evaluate_network(sc, batch=int(row["batch"]))
        return c["latency_s"] * 1e3, None, ("sequential offload: every pass's weights copied before it runs" if off
                                            else "no offload: the weights stay on the GPU")
    host = (_gb(row["host_memory"]) or None) if row["host_memory"] not in ("", "not stated") else None
    host_bytes = host * 1e9 if host else None
    disk = _storage_gbps(row["storage"])
    kind = _kind(row)
    pol = row["offload_policy"]
    weights_tier = "nvme" if ("disk_offload" in pol or "weights on NVMe" in pol) else "cpu"
    kv_options = ("gpu", "cpu") if kind == "flexgen" and "KV cache offload" not in pol else (
        ("cpu",) if "KV cache offload to CPU=Yes" in pol else ("gpu",))
    shares = GPU_SHARES if kind == "flexgen" else (0.0,)
    batches = (int(row["batch"]),) if row["batch"].isdigit() else BATCHES
    stated = BASELINES.get((kind, row["model"])) if row["id"].startswith("flexgen-t2") else None
    if stated is not None:
        b512, home = stated
        # the batch was tuned at prompt 512 until the GPU was full; the cache and the activations that filled it grow
        # with the tokens each sequence holds, so at another prompt length as many fewer sequences fit
        b = math.floor(b512 * (BASELINE_PROMPT + BASELINE_GEN) / (int(row["prompt_len"]) + int(row["gen_len"])))
        if b < 1:
            return None, f"not one sequence fits: {b512} at prompt {BASELINE_PROMPT} scales to {b}", None
        batches = (b,)
        # "on GPU": every weight stayed there (the engine's 10% reserve and 1 GiB overhead would refuse OPT-6.7B's
        # 13.3 GB on the 16 GB T4; the source ran it)
        shares = (1.0,) if home == "gpu" else GPU_FILL if kind == "accelerate" else (0.0,)
        weights_tier = "nvme" if kind == "zero" and home == "disk" else "cpu"
    overlap = 0.0 if kind == "accelerate" else 1.0
    # Accelerate's hooks copy from the state dict's pageable CPU tensors (accelerate hooks.py, AlignDevicesHook:
    # ``param.to("cpu")``, then ``set_module_tensor_to_device`` before each forward); DeepSpeed's offload_param
    # pins only when asked (``pin_memory: bool = False`` in deepspeed 0.8.0, runtime/zero/offload_config.py)
    pinned = kind == "flexgen"
    metric = row["metric"]
    best, best_note = None, None
    for b in batches:
        for g in shares:
            for kv in kv_options:
                try:
                    c = _decoder(row, b, g, kv, host_bytes, disk, overlap, weights_tier, pinned,
                                 stated is not None and stated[1] == "gpu")
                except InfercastError:
                    c = None
                if c is None:
                    continue
                v = c["decode.tokens_per_s"] if metric == "decoding_tokens_per_s" else c["throughput_tokens_per_s"]
                if best is None or v > best:
                    how = "" if pinned or g == 1 else " (pageable)"
                    best, best_note = v, (f"batch {b}{' (the source states it)' if stated else ''}, weights "
                                          f"{100 * (1 - g):.0f}% off the GPU{how}, KV on {kv}")
    if best is None:
        return None, "no placement of this model fits the GPU and the host (the engine's memory model)", None
    return float(best), None, best_note


def validate_offload(rows: list[dict[str, str]]) -> list[RowResult]:
    out = []
    for r in rows:
        measured = float(r["value"]) if r["value"] not in ("OOM", "") else math.nan
        try:
            pred, why, note = predict(r)
        except InfercastError as exc:
            pred, why, note = None, str(exc), None
        out.append(RowResult(r["id"], r["metric"], r["hardware"], r["id"].split("-")[0], measured, pred, None, why, note))
    return out


def framework_of(row: dict[str, str]) -> str:
    """The system a row measures: flexgen, deepspeed (ZeRO-Inference), accelerate, deepnvme or diffusers."""
    pol = row["offload_policy"]
    if pol.startswith("FlexGen"):
        return "flexgen"
    if pol.startswith("Accelerate"):
        return "accelerate"
    if row["id"].startswith("deepnvme"):
        return "deepnvme"
    return "deepspeed" if "DeepSpeed" in pol or "ZeRO" in pol else "diffusers"


def summarize_offload(rows: list[dict[str, str]], results: list[RowResult]) -> dict[str, Any]:
    """``validate.summarize`` (by metric, chip and source) and the same by the system measured."""
    from collections import defaultdict

    from infercast.validate import _stats, summarize

    out = summarize(results)
    by_id = {r["id"]: r for r in rows}
    groups: dict[str, list[float]] = defaultdict(list)
    for x in results:
        if x.predicted is not None:
            groups[framework_of(by_id[x.id])].append(x.error)
    out["by_framework"] = {k: _stats(v) for k, v in sorted(groups.items())}
    return out
