"""Predict the rows of measured-vision-encoder.csv (BERT-Large, ResNet-50, diffusion) with the pass engine.

Columns: ``id,source,model,hardware,num_chips,precision,resolution,seq_len,steps,batch,framework,scenario,
metric,value,notes`` (DESIGN.md). Every row is predicted or skipped with its reason:

* ``offline`` rows (MLPerf Offline: the harness picks its batch) at the throughput-optimal batch per chip
  that fits (``passes.best_batch``), times the system's chips (one replica per chip);
* ``single_stream`` rows at batch 1, ``static`` rows at their stated batch;
* ``samples_per_s`` / ``images_per_s``: the system's throughput; ``s_per_image``: the end-to-end latency of
  one request; ``denoiser_it_per_s``: denoising steps per second of the pipeline's loop.

MLPerf's BERT runs SQuAD v1.1 at a maximum of 384 tokens, but NVIDIA's harness (and every closed
submission built on it) packs sequences without padding, so a sample costs its real length, whose mean
over the dataset is not in the data: ``mlperf_bert_tokens`` is fitted to the rows (one number for all
chips), and the leave-one-source-out report refits it without each MLPerf round.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from infercast.calibration import (NetworkProfile, efficiency_for, narrow_math, network_profile, network_scale,
                                   scaled_efficiency)
from infercast.errors import InfercastError
from infercast.formats import FORMATS
from infercast.hardware import catalog_id, chip_ids, load_chip
from infercast.passes import batch_grid, evaluate_network
from infercast.roofline import ChipRates
from infercast.scenario import resolve
from infercast.validate import RowResult

HEADER = {"resolution", "seq_len", "steps", "precision"}
"""Columns that tell a vision/encoder CSV apart from the serving one."""


def group(row: dict[str, str]) -> str:
    """The model family of a row: bert, resnet or diffusion (the targets differ)."""
    return {"bert-large": "bert", "resnet-50": "resnet"}.get(row["model"], "diffusion")


def source_of(row: dict[str, str]) -> str:
    """The publication a row comes from: mlperf-v2.1, mlperf-v3.0, fal, diffusers-pt2, ..."""
    parts = row["id"].split("-")
    return "-".join(parts[:2]) if parts[0] in ("mlperf", "diffusers") else parts[0]


def skip_reason(row: dict[str, str]) -> str | None:
    """Why a row cannot be predicted as it stands, or None."""
    notes, hw = row.get("notes", ""), row["hardware"]
    if catalog_id(hw) is None and hw not in chip_ids():
        return f"hardware {hw} is not in the catalog"
    if "SPARSIFIED" in notes or "ratio not stated" in notes:
        return "open division, sparsified weights of unstated ratio (claim C14 infers the ratio)"
    if "OPEN division" in notes:
        return "open division: the model may be modified (pruned or distilled), not the network modelled"
    if "NOT compute-equivalent" in notes:
        return "a step cache skips part of the denoising compute"
    prec = row.get("precision", "")
    if prec and prec not in FORMATS:
        return f"precision {prec} (weight-only 4-bit with 16-bit math) is not modelled for networks"
    return None


def _precision(row: dict[str, str]) -> tuple[str, str | None]:
    prec = row.get("precision") or ""
    if prec == "fp32" and _pytorch(row) and "tf32" in ChipRates.of(load_chip(row["hardware"])).peak_flops:
        return "tf32", ("fp32 tensors with TF32 tensor-core math: PyTorch runs convolutions in TF32 by default "
                        "(cudnn.allow_tf32), and the measured rate is above the chip's FP32 peak")
    if prec:
        return prec, None
    if group(row) == "diffusion":
        return "fp16", "precision not recorded; fp16 assumed"
    return "int8", "precision not stated; int8 assumed (the closed division's bert-99 and resnet50 submissions)"


FUSING = ("tensorrt", "trt", "compile", "oneflow", "aitemplate", "deepspeed")
"""Frameworks that fuse a network's elementwise work into its neighbours and launch from graphs."""


def _pytorch(row: dict[str, str]) -> bool:
    fw = row.get("framework", "").lower()
    return group(row) == "diffusion" and not any(m in fw for m in ("tensorrt", "trt", "oneflow", "aitemplate"))


def execution(row: dict[str, str]) -> tuple[bool, str]:
    """(eager, attention) of a row's framework: PyTorch eager unless the framework compiles or fuses
    (``FUSING``; every MLPerf harness here is TensorRT); attention materialised where the source ran diffusers'
    default attention processor: the ToMe benchmark's 'Vanilla' column (beside a '+ xFormers' one) and the SDXL
    blog's rows before '+ SDPA' (fp32 'default attention', fp16)."""
    fw = row.get("framework", "").lower()
    if group(row) != "diffusion":
        return False, "flash"
    eager = not any(m in fw for m in FUSING)
    before_sdpa = source_of(row) == "hfblog" and "sdpa" not in fw and "default +" not in fw
    return eager, "materialized" if ("default attention" in fw or "vanilla" in fw or before_sdpa) else "flash"


def overrides(row: dict[str, str]) -> dict[str, float]:
    """Efficiency fields a row's harness changes. MLPerf Offline: NVIDIA's harness runs several engine contexts
    on their own CUDA streams (its configs' gpu_inference_streams), whose kernels interleave, so a kernel's launch,
    ramp-up and tail overlap another stream's work and ``kernel_overhead_s`` is hidden."""
    return {"kernel_overhead_s": 0.0} if row["scenario"] == "offline" else {}


def setup(row: dict[str, str], tokens: float) -> tuple[Any, dict[str, Any], bool, str | None]:
    """(scenario, workload keywords, eager, note) of a predictable row."""
    prec, note = _precision(row)
    chips = int(row.get("num_chips") or 1)
    eager, attention = execution(row)
    sc = resolve(row["model"], row["hardware"], dp=chips, dtype=prec, attention=attention,
                 efficiency=overrides(row) or None)
    wl: dict[str, Any] = {}
    if group(row) == "bert":
        wl["seq_len"] = max(1, int(round(tokens)))
        note = "; ".join(x for x in (note, f"{wl['seq_len']} tokens per sample (the fitted SQuAD mean)") if x)
    elif row.get("resolution"):
        wl["resolution"] = row["resolution"]
    if group(row) == "diffusion":
        wl["steps"] = int(row["steps"]) if row.get("steps") else None
        wl["cfg"] = row["model"] != "flux.1-dev"
        note = "; ".join(x for x in (note, ("eager PyTorch" if eager else "fused kernels")
                                      + (", materialised attention" if attention == "materialized" else "")) if x)
    return sc, wl, eager, note


def value_of(row: dict[str, str], sc, wl: dict[str, Any], eager: bool, launch_s: float | None = None):
    """The row's metric as the engine predicts it (an array where ``sc``'s efficiency holds arrays: offline rows
    take the best batch that fits along the last axis)."""
    chips = int(row.get("num_chips") or 1)
    # batches on the last of two axes, so that an efficiency array [values, 1] spreads along the first
    if row["scenario"] == "offline":
        grid = np.array([batch_grid()], dtype=float)
        c = evaluate_network(sc, batch=grid, eager=eager, eager_launch_s=launch_s, **wl)
        raw = np.asarray(c["images_per_s" if sc.network.kind == "diffusion" else "samples_per_s"])
        best = np.max(np.where(np.asarray(c["memory.fits"]), raw, -1.0), axis=-1)
        return np.where(best > 0, best, raw[..., 0])  # none fits: batch 1
    per_chip = max(1, math.ceil(int(row.get("batch") or 1) / chips))
    c = evaluate_network(sc, batch=np.full((1, 1), float(per_chip)), eager=eager, eager_launch_s=launch_s, **wl)
    metric = row["metric"]
    value = {"s_per_image": c["latency_s"], "samples_per_s": c.get("images_per_s", c.get("samples_per_s")),
             "images_per_s": c.get("images_per_s", c.get("samples_per_s")),
             "denoiser_it_per_s": c.get("denoiser_it_per_s")}.get(metric)
    return None if value is None else np.asarray(value, dtype=float)[..., 0]


def predict(row: dict[str, str], profile: NetworkProfile | None = None) -> tuple[float | None, str | None, str | None]:
    """(prediction, skipped reason, note) for one row under the network profile (the shipped one by default)."""
    why = skip_reason(row)
    if why:
        return None, why, None
    profile = profile or network_profile()
    sc, wl, eager, note = setup(row, profile.mlperf_bert_tokens)
    if profile is not network_profile():
        narrow = narrow_math(sc.chip, sc.precision.gemm_math)
        scale = network_scale(profile, sc.chip.family, sc.network.kind, narrow)
        sc = replace(sc, efficiency=scaled_efficiency(efficiency_for(sc.chip).model_copy(update=overrides(row)), scale,
                                                      narrow))
    value = value_of(row, sc, wl, eager, profile.eager_launch_s)
    if value is None:
        return None, f"metric {row['metric']} is not predicted for {row['model']}", note
    return float(np.asarray(value).reshape(-1)[0]), None, note


def validate_vision(rows: list[dict[str, str]], profile: NetworkProfile | None = None) -> list[RowResult]:
    """Every row predicted under the network profile (or skipped with its reason)."""
    results = []
    for r in rows:
        try:
            measured = float(r["value"])
        except ValueError:
            results.append(RowResult(r["id"], r["metric"], r["hardware"], source_of(r), math.nan, None, None,
                                     f"value {r['value']!r} is not a number"))
            continue
        try:
            pred, why, note = predict(r, profile)
        except InfercastError as exc:
            pred, why, note = None, str(exc), None
        results.append(RowResult(r["id"], r["metric"], r["hardware"], source_of(r), measured, pred, None, why, note))
    return results


def _stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "median_ape": None, "median_signed": None}
    e = np.asarray(errors)
    return {"count": len(e), "median_ape": float(np.median(np.abs(e))), "median_signed": float(np.median(e))}


def summarize_vision(rows: list[dict[str, str]], results: list[RowResult],
                     profile: NetworkProfile | None = None) -> dict[str, Any]:
    """Median absolute errors by model group, by group and source, by group and chip: in-sample (the shipped fit)
    and held out, leave-one-source-out and leave-one-chip-out, as the fit recorded them for each row id (a row
    the fit never saw counts as held out in both)."""
    profile = profile or network_profile()
    record = (profile.fit or {}).get("row_errors", {})
    by_id = {r["id"]: r for r in rows}
    done = [x for x in results if x.predicted is not None]
    out: dict[str, Any] = {"rows": len(results), "predicted": len(done), "mlperf_bert_tokens": profile.mlperf_bert_tokens,
                           "eager_launch_s": profile.eager_launch_s, "scales": profile.scales}

    def held(x: RowResult, fold: str) -> float:
        return record.get(x.id, {}).get(fold, x.error)

    for name, key in (("by_group", lambda x: group(by_id[x.id])),
                      ("by_group_source", lambda x: f"{group(by_id[x.id])} | {x.source}"),
                      ("by_group_chip", lambda x: f"{group(by_id[x.id])} | {x.hardware}")):
        groups: dict[str, list[RowResult]] = defaultdict(list)
        for x in done:
            groups[key(x)].append(x)
        out[name] = {g: {"in_sample": _stats([x.error for x in xs]),
                         "leave_one_source_out": _stats([held(x, "loso") for x in xs]),
                         "leave_one_chip_out": _stats([held(x, "loco") for x in xs])}
                     for g, xs in sorted(groups.items())}
    reasons: dict[str, int] = defaultdict(int)
    for x in results:
        if x.skipped_reason:
            reasons[re.sub(r"hardware \S+ is", "hardware ... is", x.skipped_reason)] += 1
    out["skipped_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return out
