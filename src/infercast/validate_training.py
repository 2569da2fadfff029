"""Measured training runs (DESIGN.md's training CSV): predict every row, and fit the training efficiencies.

Each row is a run: a model on tp x pp x cp x dp chips with a sharding, recomputation and precision, and
one measured metric (step time, tokens/s of the whole system, MFU against the peak its notes name, model
TFLOP/s per chip as NeMo counts them, or peak memory per chip). ``predict_row`` reads what the row
states (and what its notes state: the pipeline's virtual stages, sequence parallelism, llm-foundry's FSDP
mixed-precision mode, torchtitan's AsyncTP, the H100 variant a source ran on) into ``training.train``'s
inputs; what a row leaves out is assumed and said in its note; a row that cannot be predicted gets its
reason.

``fit`` chooses the matrix efficiencies of each (framework, chip family) by a grid search of the mean
absolute log error of the throughput rows (step time, tokens/s, MFU, TFLOP/s) of that group, the family's
pooled fit standing in for a framework without rows; leave-one-source-out refits without each source (the
row's ``source`` column: one table of one document) and predicts it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.files import read_text
from infercast.hardware import load_chip
from infercast.model import load_model
from infercast.roofline import Efficiency
from infercast.system import default_system
from infercast.training import (
    TrainingCalibration,
    load_framework,
    model_flops_per_token,
    resolve_training,
    step_time,
    train_memory,
)

COLUMNS = ("id,source,model,hardware,num_chips,tp,pp,dp,cp,ep,zero_stage,precision,seq_len,micro_batch,"
           "global_batch,recompute,framework,metric,value,notes").split(",")
METRICS = ("step_time_s", "tokens_per_s", "tflops_per_chip", "mfu", "peak_memory_bytes_per_chip", "time_to_train_s")
THROUGHPUT = ("step_time_s", "tokens_per_s", "tflops_per_chip", "mfu")

GRID_GEMM = np.round(np.arange(0.20, 1.0001, 0.01), 4)
GRID_ATTENTION = np.round(np.arange(0.05, 1.0001, 0.01), 4)
"""The efficiency grids the fit searches (fractions of the dense peak)."""
GRID_RESERVE = np.round(np.arange(0.0, 0.6001, 0.005), 4)
"""The caching allocator's reserve over live tensors the memory fit searches."""


def is_training_csv(header: list[str]) -> bool:
    return [h.strip() for h in header] == COLUMNS


def is_training_data(data: str) -> bool:
    """``training`` (the bundled copy), or a CSV whose header is the training schema's."""
    if data == BUNDLED:
        return True
    try:
        with open(data, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # the inference reader reports what is wrong with the file
    return is_training_csv(header)


def read_training_rows(data: str) -> list[dict[str, str]]:
    """Rows of a training CSV, every cell the predictions use checked: one line naming the file, line and column."""
    text = read_text(data, "--data")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    for row in reader:
        line = reader.line_num
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"--data {data}, line {line}"
        for column in ("id", "model", "hardware", "metric", "value", "num_chips", "seq_len"):
            if not row.get(column):
                raise InfercastError(f"{where}: column {column} is empty; every training row needs it")
        for column in ("num_chips", "tp", "pp", "dp", "cp", "ep", "seq_len", "micro_batch", "global_batch"):
            cell = row.get(column, "")
            if cell and not (cell.isdigit() and 1 <= int(cell) <= 2**31 - 1):
                raise InfercastError(f"{where}: column {column} is {cell!r}; give a whole number of at least 1 or "
                                     f"leave it empty")
        if row.get("zero_stage") and row["zero_stage"] not in ("0", "1", "2", "3"):
            raise InfercastError(f"{where}: column zero_stage is {row['zero_stage']!r}; 0, 1, 2, 3 or empty")
        if row["metric"] not in METRICS:
            raise InfercastError(f"{where}: metric {row['metric']!r} is not one of {', '.join(METRICS)}")
        try:
            value = float(row["value"])
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise InfercastError(f"{where}: column value is {row['value']!r}; a measurement is a positive number")
        rows.append(row)
    return rows


def _int(row: dict[str, str], key: str, default: int | None = None) -> int | None:
    cell = row.get(key, "")
    return int(cell) if cell else default


_FRAMEWORKS = {"llm-foundry/composer": "composer", "torchtitan": "torchtitan", "nemo": "nemo",
               "megatron-lm": "megatron"}


@dataclass(frozen=True)
class RowRun:
    """A row read into a training run's inputs, with what was assumed."""

    kwargs: dict[str, Any]
    rates: dict[str, float]
    notes: tuple[str, ...]
    convention: str
    peak_flops: float | None


def row_run(row: dict[str, str]) -> RowRun | str:
    """The training inputs a row states (a reason string where the row cannot be predicted)."""
    notes = row.get("notes", "")
    if "WORKLOAD:" in notes:
        kind = "LoRA" if "fine-tuning (LoRA)" in notes else "SFT"
        return (f"fine-tuning ({kind}) row: packed SQuAD sequences whose lengths (and so attention spans) are not "
                f"stated{'; LoRA trains adapters only' if kind == 'LoRA' else ''}")
    said: list[str] = []
    framework = _FRAMEWORKS.get(row.get("framework", "").lower(), row.get("framework") or "megatron")
    fw = load_framework(framework)
    chips, tp, pp, cp = _int(row, "num_chips"), _int(row, "tp", 1), _int(row, "pp", 1), _int(row, "cp", 1)
    dp = _int(row, "dp") or chips // (tp * pp * cp)
    if tp * pp * cp * dp != chips:
        return f"num_chips {chips} is not tp x pp x cp x dp = {tp * pp * cp * dp}"
    seq, mb = _int(row, "seq_len"), _int(row, "micro_batch", 1)
    gb = _int(row, "global_batch")
    if gb is None:
        gb = dp * mb
        said.append("global batch not stated: one local batch per replica (dp x local batch)")
    if fw.id == "torchtitan" and pp > 1:
        if mb % pp:
            return f"torchtitan splits the local batch {mb} into pp = {pp} micro-batches; {mb} is not a multiple"
        mb //= pp
        said.append(f"the local batch splits into pp = {pp} pipeline micro-batches of {mb} (torchtitan's default)")
    zero = row.get("zero_stage")
    zero_stage = int(zero) if zero else (3 if fw.master_is_sharded_param else 1)
    recompute = row.get("recompute") or ""
    if not recompute:
        recompute = "none"
        said.append("recomputation not stated: none assumed")
    precision = row.get("precision") or "bf16"
    kwargs: dict[str, Any] = dict(model=row["model"], hardware=row["hardware"], num_chips=chips, tp=tp, pp=pp, cp=cp,
                                  dp=dp, ep=_int(row, "ep", 1), seq_len=seq, global_batch=gb, micro_batch=mb,
                                  zero_stage=zero_stage, recompute=recompute, dtype=precision, framework=fw.id)
    spec = load_model(row["model"])
    if spec.position_embedding == "learned" and fw.id == "composer" and seq != spec.max_position_embeddings:
        kwargs["model"] = spec.model_copy(update={"max_position_embeddings": seq})
        said.append(f"position table of {seq} rows (llm-foundry sets max_seq_len to the run's)")
    elif spec.position_embedding == "learned" and seq > spec.max_position_embeddings:
        return f"seq_len {seq} is beyond {spec.name}'s learned position table of {spec.max_position_embeddings} rows"
    vp = re.search(r"\bVP=(\d+)", notes) or re.search(r"interleaved pipeline chunks=(\d+)", notes)
    if vp and int(vp.group(1)) > 1 and pp > 1:
        kwargs["virtual_stages"] = int(vp.group(1))
    elif "Interleaved 1F1B" in notes and pp > 1:
        kwargs["virtual_stages"] = 2
        said.append("interleaved 1F1B: 2 stages per rank assumed (torchtitan's default)")
    if "no seq-par" in notes:
        kwargs["sequence_parallel"] = False
    elif "sequence parallel" in notes:
        kwargs["sequence_parallel"] = True
    if "MP mode=PURE" in notes:
        kwargs["reduce_dtype"] = "bf16"
    if "AsyncTP" in notes:
        kwargs["tp_comm_overlap"] = 1.0
    if fw.id == "megatron":
        kwargs["dropout"] = True  # Korthikanti et al.'s GPT models train with dropout 0.1
    if "korthikanti" in row["id"]:
        kwargs["attention"] = "materialized"
        said.append("attention scores materialised (Megatron-LM of 2022, before FlashAttention)")
    if "selective layer" in notes:
        kwargs["selective"] = "layer"
    elif "selective op" in notes:
        kwargs["selective"] = "op"
    rates: dict[str, float] = {}
    if "HBM2e" in notes and row["hardware"].startswith("h100"):
        rates = {"mem_bw_bytes_per_s": 2.4e12, "mem_capacity_bytes": 96e9}
        said.append("H100 96 GB HBM2e (2.4 TB/s) as the notes say; its 500 W power limit is not modelled")
    node = re.search(r"(\d+) Gbps node-node", row.get("source", ""))
    if node and chips > 8:
        per_chip = float(node.group(1)) * 1e9 / 8 / 8  # bits/s per node over 8 GPUs, in bytes/s
        kwargs["system"] = _with_inter_node(row["hardware"], chips, per_chip, node.group(1))
        del kwargs["hardware"], kwargs["num_chips"]
    if fw.id == "megatron" and row["hardware"].startswith("a100") and "hardware" in kwargs:
        kwargs["system"] = _with_inter_node(row["hardware"], chips, 25e9, "1600")  # Selene: DGX A100 nodes
        del kwargs["hardware"], kwargs["num_chips"]
    convention = "llm-foundry" if fw.id == "composer" else ("megatron" if fw.id in ("nemo", "megatron") else "palm")
    peak = re.search(r"MFU peak:[^|]*?(\d{3,4}) TFLOP/s", notes)
    return RowRun(kwargs, rates, tuple(said), convention, float(peak.group(1)) * 1e12 if peak else None)


def _with_inter_node(hardware: str, chips: int, bytes_per_s: float, gbps: str):
    base = default_system(load_chip(hardware), chips)
    tier = base.inter_node.model_copy(update={
        "name": f"{gbps} Gb/s per node ({bytes_per_s / 1e9:g} GB/s per GPU)",
        "bandwidth_bytes_per_s_per_direction": base.inter_node.bandwidth_bytes_per_s_per_direction.model_copy(
            update={"value": bytes_per_s, "source": "the measured rows' source: node-to-node interconnect"})})
    return base.model_copy(update={"inter_node": tier})


@dataclass
class Prediction:
    """A row's prediction at every point of an efficiency grid (or at the shipped fit)."""

    id: str
    metric: str
    source: str
    group: str
    framework: str
    family: str
    hardware: str
    math: str
    seq_len: int
    measured: float
    predicted: Any
    """A float, or an array over the grid (gemm, attention)."""
    reason: str | None
    note: str | None


def predict_row(row: dict[str, str], *, grid: bool = False, calibration: TrainingCalibration | None = None,
                efficiency: dict[str, float] | None = None) -> Prediction:
    """One row predicted at the shipped fit (or ``calibration``), or over the fit's grid (``grid``)."""
    measured = float(row["value"])
    base = dict(id=row["id"], metric=row["metric"], source=row.get("source", ""), group=row["id"].split("-", 1)[0],
                hardware=row["hardware"], measured=measured, seq_len=_int(row, "seq_len", 0))
    run = row_run(row)
    fw = _FRAMEWORKS.get(row.get("framework", "").lower(), "megatron")
    try:
        family = load_chip(row["hardware"]).family
    except InfercastError:
        family = "?"
    math_ = "fp8" if row.get("precision") == "fp8" else "16-bit"
    if isinstance(run, str):
        return Prediction(**base, framework=fw, family=family, math=math_, predicted=None, reason=run, note=None)
    if row["metric"] == "time_to_train_s":
        return Prediction(**base, framework=fw, family=family, math=math_, predicted=None,
                          reason="time_to_train_s needs the run's token count, which the row does not give", note=None)
    try:
        ts = resolve_training(training_calibration=calibration, efficiency=efficiency, **run.kwargs)
        rates = ts.sc.rates.with_values(**run.rates) if run.rates else None
        note = "; ".join(run.notes) or None
        if row["metric"] == "peak_memory_bytes_per_chip":
            cap = run.rates.get("mem_capacity_bytes")
            mem = train_memory(ts, cap)
            value = (mem.tensor_bytes * (1 + GRID_RESERVE) + mem.workspace_bytes) if grid else mem.total_bytes
            return Prediction(**base, framework=fw, family=family, math=math_, predicted=value, reason=None, note=note)
        eff = None
        if grid:
            g = GRID_GEMM[:, None]
            a = GRID_ATTENTION[None, :]
            eff = Efficiency.model_construct(**{**dict(ts.sc.efficiency), "gemm_max": g, "gemm_max_narrow": g,
                                                "attention_max": a})
        st = step_time(ts, eff=eff, rates=rates)
        value = throughput_metric(row, run, ts, st.step_s)
    except InfercastError as exc:
        return Prediction(**base, framework=fw, family=family, math=math_, predicted=None, reason=str(exc), note=None)
    return Prediction(**base, framework=fw, family=family, math=math_, predicted=value, reason=None, note=note)


def throughput_metric(row: dict[str, str], run: RowRun, ts, step_s):
    """The row's metric from a step time, in the row's own conventions (FLOPs per token, peak)."""
    cfg, sc = ts.cfg, ts.sc
    tokens_per_s = cfg.tokens_per_step / step_s
    chips = sc.plan.num_chips
    metric = row["metric"]
    if metric == "step_time_s":
        return step_s
    if metric == "tokens_per_s":
        return tokens_per_s
    flops = model_flops_per_token(ts.spec, cfg.seq_len, run.convention)
    if metric == "tflops_per_chip":
        return tokens_per_s / chips * flops / 1e12
    peak = run.peak_flops or float(sc.rates.peak("fp8" if cfg.dtype == "fp8" else "bf16", sc.chip.id))
    return tokens_per_s / chips * flops / peak


# --- the fit -----------------------------------------------------------------------------------------------


def _loss(pred: np.ndarray, measured: float) -> np.ndarray:
    return np.abs(np.log(pred / measured))


@dataclass
class Fit:
    calibration: TrainingCalibration
    in_sample: list[tuple[Prediction, float | None]]
    loso: list[tuple[Prediction, float | None]]


PINNED_SEQ_LENS = 3
"""A group's rows pin the attention efficiency apart from the GEMMs' only if they span this many sequence
lengths (the attention share of the work changes with the sequence, the GEMMs' does not)."""


def fit(predictions: list[Prediction], base: dict[tuple[str, str], dict[str, float]]) -> dict[str, Any]:
    """Each framework's fit on each chip family, and each kernel stack's pooled over its frameworks:
    {'frameworks': {framework: {family: fields}}, 'stacks': {stack: {family: fields}}} (``fit_groups``)."""
    by_stack = [replace(p, framework=load_framework(p.framework).stack) for p in predictions]
    stack_base = {(load_framework(fw).stack, fam): v for (fw, fam), v in base.items()}
    return {"frameworks": fit_groups(predictions, base), "stacks": fit_groups(by_stack, stack_base)}


def fit_groups(predictions: list[Prediction], base: dict[tuple[str, str], dict[str, float]]) -> dict[str, Any]:
    """The efficiencies that minimise the mean absolute log error of each (framework, family) group's
    throughput rows: {framework: {family: fields}}.

    A row depends on the GEMM efficiency of its math (16-bit: gemm_max, FP8: gemm_max_narrow) and on
    attention_max; a group's loss is summed over the grid of the three and its minimum taken. Only what the
    group's rows pin is fitted: the GEMM field of each math the rows use, and attention_max where the rows
    span ``PINNED_SEQ_LENS`` sequence lengths; the rest keeps ``base[(framework, family)]`` (the chip's
    inference calibration: kernel efficiencies measured on serving workloads).
    """
    usable = [p for p in predictions if p.predicted is not None and np.ndim(p.predicted) == 2
              and p.metric in THROUGHPUT]
    groups: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for p in usable:
        groups[(p.framework, p.family)].append(p)
    out: dict[str, Any] = {}
    for (fw, fam), rows in sorted(groups.items()):
        prior = base[(fw, fam)]
        pinned = len({p.seq_len for p in rows}) >= PINNED_SEQ_LENS
        k_fixed = int(np.argmin(np.abs(GRID_ATTENTION - prior["attention_max"])))
        losses = {m: [_loss(p.predicted, p.measured) for p in rows if (p.math == "fp8") == (m == "narrow")]
                  for m in ("wide", "narrow")}
        tables = {m: (sum(v) if pinned else sum(v)[:, k_fixed:k_fixed + 1]) for m, v in losses.items() if v}
        att = GRID_ATTENTION if pinned else GRID_ATTENTION[k_fixed:k_fixed + 1]
        fields: dict[str, float] = {}
        if len(tables) == 2:
            total = tables["wide"][:, None, :] + tables["narrow"][None, :, :]  # [gemm, narrow, attention]
            i, j, k = np.unravel_index(np.argmin(total), total.shape)
            fields = {"gemm_max": float(GRID_GEMM[i]), "gemm_max_narrow": float(GRID_GEMM[j])}
        else:
            (m, table), = tables.items()
            i, k = np.unravel_index(np.argmin(table), table.shape)
            fields = {"gemm_max" if m == "wide" else "gemm_max_narrow": float(GRID_GEMM[i])}
        if pinned:
            fields["attention_max"] = float(att[k])
        out.setdefault(fw, {})[fam] = fields
    return out


def value_at(p: Prediction, fields: dict[str, float]) -> float | None:
    """A grid prediction read at ``fields`` (the nearest grid point)."""
    if p.predicted is None:
        return None
    if np.ndim(p.predicted) == 0:
        return float(p.predicted)
    if np.ndim(p.predicted) == 1:
        return float(p.predicted[int(np.argmin(np.abs(GRID_RESERVE - fields["allocator_reserve"])))])
    key = "gemm_max_narrow" if p.math == "fp8" else "gemm_max"
    i = int(np.argmin(np.abs(GRID_GEMM - fields[key])))
    k = int(np.argmin(np.abs(GRID_ATTENTION - fields["attention_max"])))
    return float(p.predicted[i, k])


def inference_fields(predictions: list[Prediction]) -> dict[tuple[str, str], dict[str, float]]:
    """Each group's matrix efficiencies before the training fit: the inference calibration of its chips."""
    from infercast.calibration import efficiency_for

    out = {}
    for p in predictions:
        if (p.framework, p.family) not in out:
            eff = efficiency_for(load_chip(p.hardware))
            out[(p.framework, p.family)] = {"gemm_max": eff.gemm_max, "gemm_max_narrow": eff.gemm_max_narrow or
                                            eff.gemm_max, "attention_max": eff.attention_max}
    return out


def fields_for(fitted: dict[str, Any], base: dict[tuple[str, str], dict[str, float]], framework: str,
               family: str) -> dict[str, float]:
    """The fields a row is read at: the inference calibration, under its framework's stack's fit, under its
    framework's own (as ``TrainingCalibration.fields_for``)."""
    stack = load_framework(framework).stack
    return {**base[(framework, family)], **fitted["stacks"].get(stack, {}).get(family, {}),
            **fitted["frameworks"].get(framework, {}).get(family, {}),
            "allocator_reserve": fitted.get("allocator_reserve", 0.0)}


def fit_reserve(predictions: list[Prediction]) -> float:
    """The caching allocator's reserve minimising the mean absolute log error of the peak-memory rows."""
    rows = [_loss(p.predicted, p.measured) for p in predictions
            if p.metric == "peak_memory_bytes_per_chip" and np.ndim(p.predicted) == 1]
    return float(GRID_RESERVE[int(np.argmin(sum(rows)))]) if rows else 0.0


def predict_all(rows: list[dict[str, str]], *, grid: bool) -> list[Prediction]:
    return [predict_row(r, grid=grid) for r in rows]


def cross_validate(predictions: list[Prediction]) -> dict[str, Any]:
    """In-sample and leave-one-source-out predictions of every row: {'fitted', 'in_sample', 'loso'}, the last
    two {row id: predicted value or None}. Predictions must be on the grid (``predict_row(grid=True)``)
    and made without a training calibration (``calibration=TrainingCalibration()``) for the grid to mean
    what it says; memory rows do not depend on the fit."""
    base = inference_fields(predictions)
    fitted = fit(predictions, base)
    fitted["allocator_reserve"] = fit_reserve(predictions)
    in_sample = {p.id: value_at(p, fields_for(fitted, base, p.framework, p.family)) for p in predictions}
    loso: dict[str, float | None] = {}
    for source in sorted({p.source for p in predictions}):
        others = [p for p in predictions if p.source != source]
        rest = fit(others, base)
        rest["allocator_reserve"] = fit_reserve(others)
        for p in predictions:
            if p.source == source:
                loso[p.id] = value_at(p, fields_for(rest, base, p.framework, p.family))
    return {"fitted": fitted, "in_sample": in_sample, "loso": loso}


def stats(errors: list[float]) -> dict[str, Any]:
    if not errors:
        return {"count": 0, "median_ape": None, "p90_ape": None, "median_signed": None}
    e = np.asarray(errors)
    return {"count": len(errors), "median_ape": float(np.median(np.abs(e))),
            "p90_ape": float(np.percentile(np.abs(e), 90)), "median_signed": float(np.median(e))}


def error_tables(predictions: list[Prediction], values: dict[str, float | None]) -> dict[str, Any]:
    """Signed relative errors summarised by metric, by source group and by chip (and overall)."""
    done = [(p, values.get(p.id)) for p in predictions]
    done = [(p, (v - p.measured) / p.measured) for p, v in done if v is not None]
    out: dict[str, Any] = {"all": stats([e for _, e in done])}
    for key in ("metric", "group", "hardware"):
        by: dict[str, list[float]] = defaultdict(list)
        for p, e in done:
            by[getattr(p, key)].append(e)
        out[f"by_{key}"] = {k: stats(v) for k, v in sorted(by.items())}
    return out


# --- the shipped profile and the validate command ------------------------------------------------------------

BUNDLED = "training"
"""``--data training``: the copy of shared/data/measured-training.csv in the package."""


def data_path(data: str) -> str:
    if data == BUNDLED:
        from importlib import resources

        return str(resources.files("infercast") / "catalog" / "measured" / "training.csv")
    return data


def calibrate(data: str = BUNDLED, progress=None) -> tuple[TrainingCalibration, dict[str, tuple]]:
    """Fit the training efficiencies to a training CSV: the profile, with its record (rows, loss, in-sample
    and leave-one-source-out errors by metric, source group and chip), and each row's (prediction, in-sample
    error, leave-one-source-out error)."""
    path = data_path(data)
    rows = read_training_rows(path)
    if progress:
        progress(f"predicting {len(rows)} rows over the efficiency grid")
    preds = predict_all(rows, grid=True)
    if progress:
        progress("fitting, and refitting without each source")
    cv = cross_validate(preds)
    fitted = dict(cv["fitted"])
    reserve = fitted.pop("allocator_reserve")
    used = [p for p in preds if p.predicted is not None]
    record = {
        "data": "shared/data/measured-training.csv" if data == BUNDLED else data,
        "rows": len(rows), "predicted": len(used),
        "skipped": {r: sum(1 for p in preds if p.reason == r) for r in sorted({p.reason for p in preds if p.reason})},
        "method": ("grid search (gemm 0.20-1.00, attention 0.05-1.00, steps of 0.01; allocator reserve 0-0.6, steps "
                   "of 0.005) of the mean |log(predicted / measured)| of each (framework, chip family)'s throughput "
                   "rows (step time, tokens/s, MFU, TFLOP/s), and of each kernel stack's (a framework without rows takes its "
                   "stack's); attention_max fitted only where a group spans "
                   f"{PINNED_SEQ_LENS}+ sequence lengths; the allocator reserve on the peak-memory rows; fields not "
                   "pinned keep the chip's inference calibration"),
        "in_sample": error_tables(preds, cv["in_sample"]),
        "leave_one_source_out": error_tables(preds, cv["loso"]),
    }
    cal = TrainingCalibration(description=(
        f"fitted to {len(used)} rows of {record['data']} (llm-foundry MPT on A100/H100, torchtitan Llama-3.1, NeMo "
        f"24.07, Korthikanti et al. 2022) by scripts/training_report.py --write-calibration"),
        frameworks=fitted["frameworks"], stacks=fitted["stacks"], allocator_reserve=reserve, fit=record)
    row_errors = {p.id: (p, _err(p, cv["in_sample"]), _err(p, cv["loso"])) for p in used}
    return cal, row_errors


def _err(p: Prediction, values: dict[str, float | None]) -> float | None:
    v = values.get(p.id)
    return None if v is None else round((v - p.measured) / p.measured, 4)


def to_yaml(cal: TrainingCalibration) -> str:
    import yaml

    return yaml.safe_dump(cal.model_dump(exclude_none=True), sort_keys=False, width=110)


def validate(data: str = BUNDLED, efficiency: dict[str, float] | None = None,
             calibration: TrainingCalibration | None = None) -> list:
    """Every row of a training CSV predicted under the shipped fit (``validate.RowResult``s, beside the ideal
    roofline's prediction), or skipped with its reason."""
    from infercast.validate import RowResult

    out = []
    for row in read_training_rows(data_path(data)):
        p = predict_row(row, calibration=calibration, efficiency=efficiency)
        ideal = None
        if p.predicted is not None and row["metric"] in THROUGHPUT:
            ideal = _ideal(row)
        elif p.predicted is not None:
            ideal = p.predicted
        out.append(RowResult(p.id, p.metric, p.hardware, p.group, p.measured,
                             None if p.predicted is None else float(p.predicted), ideal, p.reason, p.note))
    return out


def _ideal(row: dict[str, str]) -> float | None:
    """The row at the ideal roofline: peak compute and bandwidth, no overheads, full-bandwidth collectives."""
    from infercast.roofline import IDEAL
    from infercast.validate import IDEAL_COMM

    run = row_run(row)
    if isinstance(run, str):
        return None
    try:
        ts = resolve_training(comm=IDEAL_COMM, **run.kwargs)
        rates = ts.sc.rates.with_values(**run.rates) if run.rates else None
        return float(throughput_metric(row, run, ts, step_time(ts, eff=IDEAL, rates=rates).step_s))
    except InfercastError:
        return None
