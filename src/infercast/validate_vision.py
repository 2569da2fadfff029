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
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.formats import FORMATS
from infercast.hardware import chip_ids, catalog_id
from infercast.passes import best_batch, evaluate_network
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
    if prec:
        return prec, None
    if group(row) == "diffusion":
        return "fp16", "precision not recorded; fp16 assumed"
    return "int8", "precision not stated; int8 assumed (the closed division's bert-99 and resnet50 submissions)"


def predict(row: dict[str, str], bert_tokens: float, **resolve_kw) -> tuple[float | None, str | None, str | None]:
    """(prediction, skipped reason, note) for one row."""
    why = skip_reason(row)
    if why:
        return None, why, None
    prec, note = _precision(row)
    chips = int(row.get("num_chips") or 1)
    sc = resolve(row["model"], row["hardware"], dp=chips, dtype=prec, **resolve_kw)
    wl: dict[str, Any] = {}
    if group(row) == "bert":
        wl["seq_len"] = max(1, int(round(bert_tokens)))
        note = "; ".join(x for x in (note, f"{wl['seq_len']} tokens per sample (the fitted SQuAD mean)") if x)
    elif row.get("resolution"):
        wl["resolution"] = row["resolution"]
    if group(row) == "diffusion":
        wl["steps"] = int(row["steps"]) if row.get("steps") else None
        wl["cfg"] = row["model"] != "flux.1-dev"
    metric, scenario = row["metric"], row["scenario"]
    if scenario == "offline":
        _, c = best_batch(sc, **wl)
    else:
        per_chip = max(1, math.ceil(int(row.get("batch") or 1) / chips))
        c = evaluate_network(sc, batch=per_chip, **wl)
    value = {"samples_per_s": c.get("samples_per_s", c.get("images_per_s")), "images_per_s": c.get("images_per_s"),
             "s_per_image": c["latency_s"], "denoiser_it_per_s": c.get("denoiser_it_per_s")}.get(metric)
    if value is None:
        return None, f"metric {metric} is not predicted for {row['model']}", note
    return float(value), None, note


def _median_log_error(rows: list[dict[str, str]], tokens: float, **kw) -> float:
    errs = []
    for r in rows:
        pred, why, _ = predict(r, tokens, **kw)
        if pred is not None:
            errs.append(math.log(pred / float(r["value"])))
    return float(np.median(errs)) if errs else 0.0


def fit_bert_tokens(rows: list[dict[str, str]], **kw) -> float:
    """The tokens per sample that zero the median log error of ``rows``' BERT predictions (bisection: the
    prediction falls as the tokens grow)."""
    bert = [r for r in rows if group(r) == "bert" and skip_reason(r) is None]
    if not bert:
        return 384.0
    lo, hi = 16.0, 384.0
    for _ in range(12):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if _median_log_error(bert, mid, **kw) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


def validate_vision(rows: list[dict[str, str]], *, loso: bool = True, **kw) -> tuple[list[RowResult], dict[str, Any]]:
    """Every row predicted (or skipped with its reason), the fitted BERT tokens, and the leave-one-source-out
    predictions of the BERT rows (the tokens refitted without each MLPerf round)."""
    tokens = fit_bert_tokens(rows, **kw)
    held: dict[str, float] = {}
    fits: dict[str, float] = {}
    if loso:
        for src in sorted({source_of(r) for r in rows if group(r) == "bert"}):
            fits[src] = t = fit_bert_tokens([r for r in rows if source_of(r) != src], **kw)
            for r in rows:
                if source_of(r) == src and group(r) == "bert":
                    held[r["id"]] = predict(r, t, **kw)[0]
    results = []
    for r in rows:
        try:
            measured = float(r["value"])
        except ValueError:
            results.append(RowResult(r["id"], r["metric"], r["hardware"], source_of(r), math.nan, None, None,
                                     f"value {r['value']!r} is not a number"))
            continue
        try:
            pred, why, note = predict(r, tokens, **kw)
        except InfercastError as exc:
            pred, why, note = None, str(exc), None
        results.append(RowResult(r["id"], r["metric"], r["hardware"], source_of(r), measured, pred, None, why, note))
    return results, {"mlperf_bert_tokens": tokens, "mlperf_bert_tokens_loso": fits, "held_out": held}


def _stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "median_ape": None, "median_signed": None}
    e = np.asarray(errors)
    return {"count": len(e), "median_ape": float(np.median(np.abs(e))), "median_signed": float(np.median(e))}


def summarize_vision(rows: list[dict[str, str]], results: list[RowResult], fit: dict[str, Any]) -> dict[str, Any]:
    """Median absolute errors by model group, by group and source, by group and chip; in-sample and held out
    (BERT: the tokens refitted without the row's source; the rest fits nothing to these rows, so held-out
    equals in-sample)."""
    by_id = {r["id"]: r for r in rows}
    done = [x for x in results if x.predicted is not None]
    out: dict[str, Any] = {"rows": len(results), "predicted": len(done), "mlperf_bert_tokens": fit["mlperf_bert_tokens"],
                           "mlperf_bert_tokens_loso": fit["mlperf_bert_tokens_loso"]}

    def held(x: RowResult) -> float:
        pred = fit["held_out"].get(x.id, x.predicted)
        return (pred - x.measured) / x.measured if pred is not None else x.error

    for name, key in (("by_group", lambda x: group(by_id[x.id])),
                      ("by_group_source", lambda x: f"{group(by_id[x.id])} | {x.source}"),
                      ("by_group_chip", lambda x: f"{group(by_id[x.id])} | {x.hardware}")):
        groups: dict[str, list[RowResult]] = defaultdict(list)
        for x in done:
            groups[key(x)].append(x)
        out[name] = {g: {"in_sample": _stats([x.error for x in xs]), "held_out": _stats([held(x) for x in xs])}
                     for g, xs in sorted(groups.items())}
    reasons: dict[str, int] = defaultdict(int)
    for x in results:
        if x.skipped_reason:
            reasons[re.sub(r"hardware \S+ is", "hardware ... is", x.skipped_reason)] += 1
    out["skipped_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return out
