"""Predict every row of a measured-data CSV (DESIGN.md's format) and report the errors.

Each row is predicted or skipped with a reason; none is dropped. Beside the prediction at
the default efficiencies stands the ideal roofline's (peak compute, peak bandwidth, no
overheads), so the gain from the efficiency model is visible.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from infercast.calibration import Calibration, comm_for, efficiency_for
from infercast.errors import InfercastError, shown, with_overrides
from infercast.evaluation import evaluate
from infercast.files import read_text
from infercast.formats import FORMATS, canonical, element_bytes
from infercast.hardware import load_chip
from infercast.model import load_model
from infercast.ops import GELU_FLOPS, SOFTMAX_FLOPS, Precision, gemm_op, make_op, norm_op, vector_op
from infercast.parallel import CommOptions, group_allreduce_s
from infercast.roofline import IDEAL, ChipRates, Efficiency, op_time
from infercast.framework import FrameworkRef
from infercast.scenario import resolve
from infercast.serving.scenarios import predict_serving_row, row_deployment
from infercast.system import default_system

COLUMNS = ("id,source,model,hardware,num_chips,tp,pp,weight_dtype,act_dtype,kv_dtype,framework,scenario,batch,"
           "isl,osl,op,gemm_m,gemm_n,gemm_k,metric,value,constraint,notes").split(",")
GEMM_OPS = {"qkv_proj", "out_proj", "mlp_gate_up", "mlp_up", "mlp_down", "gemm"}
# llama.cpp's ./main rows state the prompt as a 175-word excerpt of "roughly 250-300 LLaMA
# tokens" (measured-public.csv notes); the midpoint stands in for the unstated count.
UNSTATED_PROMPT_TOKENS = 275

BUNDLED = "public"


@dataclass(frozen=True)
class RowResult:
    id: str
    metric: str
    hardware: str
    source: str
    measured: float
    predicted: float | None
    predicted_ideal: float | None
    skipped_reason: str | None
    note: str | None = None

    @property
    def error(self) -> float | None:
        return None if self.predicted is None else (self.predicted - self.measured) / self.measured

    @property
    def error_ideal(self) -> float | None:
        return None if self.predicted_ideal is None else (self.predicted_ideal - self.measured) / self.measured

    def to_dict(self) -> dict[str, Any]:
        measured = self.measured if math.isfinite(self.measured) else None  # OOM and other words: no number
        return {"id": self.id, "metric": self.metric, "hardware": self.hardware, "source": self.source,
                "measured": measured, "predicted": self.predicted, "error": self.error,
                "predicted_ideal": self.predicted_ideal, "error_ideal": self.error_ideal,
                "skipped_reason": self.skipped_reason, "note": self.note}


def read_rows(data: str) -> list[dict[str, str]]:
    """Rows of a measured CSV (docs/data-formats.md); ``public`` is the copy of shared/data/measured-public.csv
    in the package.

    Every cell the predictions compute with is checked here, once, so a bad one is one line naming
    the file, the line and the column: required cells present, counts whole numbers, the measured
    value a positive finite number (or a literal such as OOM, skipped with its reason), GEMM ops with
    their shape, numbers in ``notes`` in range. Format names are read in any case, HF's float16 /
    bfloat16 / float32 included, and passed on in their canonical spelling.
    """
    where, columns, lines = read_table(data)
    required = ("id", "model", "hardware", "scenario", "metric", "value")
    missing = [c for c in required if c not in columns]
    if missing:
        raise InfercastError(f"{where}: missing column(s) {', '.join(missing)}; see docs/data-formats.md for the format")
    rows = []
    for line, row in lines:
        _check_row(row, f"{where}, line {line}")
        rows.append(row)
    return rows


def read_table(data: str) -> tuple[str, list[str], list[tuple[int, dict[str, str]]]]:
    """(how to name the file, its columns, (line, row) pairs with cells stripped) of a CSV, unchecked: the
    serving rows' checks are ``read_rows``'; the vision and offload files are told apart by their columns."""
    if data == BUNDLED:
        where = "--data public"
        text = (resources.files("infercast") / "catalog" / "measured" / "public.csv").read_text(encoding="utf-8")
    else:
        where = f"--data {data}"
        text = read_text(data, "--data")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        lines = [(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}) for row in reader]
    except csv.Error as exc:
        raise InfercastError(f"{where}, line {reader.line_num + 1}: not valid CSV ({exc})") from None
    return where, list(reader.fieldnames), lines


# Largest count a row may give (batch, lengths, GEMM dimensions, tokens in notes): far above any
# measurement, and exact in the int64 arithmetic of the engine.
MAX_COUNT = 2**31 - 1
# Counts that are at least 1 where given; isl and osl may be 0 (llama-bench's pp and tg rows).
_COUNTS = {"num_chips": 1, "tp": 1, "pp": 1, "batch": 1, "gemm_m": 1, "gemm_n": 1, "gemm_k": 1, "isl": 0, "osl": 0}
_SHAPED_OPS = GEMM_OPS | {"attn_score", "attn_value"}


def _check_row(row: dict[str, str], where: str) -> None:
    for column in ("id", "model", "hardware", "scenario", "metric", "value"):
        if not row.get(column):
            raise InfercastError(f"{where}: column {column} is empty; every row needs it")
    for column, low in _COUNTS.items():
        cell = row.get(column, "")
        if not cell:
            continue
        try:
            number = float(cell)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number == int(number) and low <= number <= MAX_COUNT):
            raise InfercastError(f"{where}: column {column} is {shown(cell)}; give a whole number from {low} to "
                                 f"{MAX_COUNT:,} or leave it empty")
    try:
        value = float(row["value"])
    except ValueError:
        value = None  # a literal such as OOM: validate() skips the row, saying why
    if value is not None and not (math.isfinite(value) and value > 0):
        raise InfercastError(f"{where}: column value is {shown(row['value'])}; a measurement is a positive number "
                             f"in SI units (or a literal such as OOM)")
    for column in ("weight_dtype", "act_dtype", "kv_dtype"):
        if row.get(column):
            try:
                row[column] = canonical(row[column])
            except InfercastError:
                pass  # a scheme not modelled yet (q4_0 files, gptq4...): predict_row skips the row and says why
    if row["scenario"] == "op" and row.get("op") in _SHAPED_OPS:
        absent = [c for c in ("gemm_m", "gemm_n", "gemm_k") if not row.get(c)]
        if absent:
            raise InfercastError(f"{where}: op {row['op']} needs its shape; column(s) {', '.join(absent)} are empty")
    for key, number in re.findall(r"\b(tokens|kv_len|num_requests)=(\d+)", row.get("notes", "")):
        if int(number) > MAX_COUNT:
            raise InfercastError(f"{where}: notes give {key}={number[:20]}...; at most {MAX_COUNT:,}")
    if row["scenario"] == "op" and row.get("op") == "attn_softmax" and not _note(row, "kv_len"):
        raise InfercastError(f"{where}: op attn_softmax needs kv_len=N in notes (the keys each query attends to)")


def source_group(row: dict[str, str]) -> str:
    """The dataset a row comes from: the prefix of its id (trtllm, vidur, llamacpp, ...)."""
    return row["id"].split("-", 1)[0]


def _int(row: dict[str, str], key: str, default: int | None = None) -> int | None:
    value = (row.get(key) or "").strip()
    return int(float(value)) if value else default


def _note(row: dict[str, str], key: str) -> int | None:
    match = re.search(rf"\b{key}=(\d+)", row.get("notes", ""))
    return int(match.group(1)) if match else None


def predict_row(row: dict[str, str], *, calibration: Calibration | str | None = None,
                efficiency: Efficiency | dict[str, float] | None = None,
                comm: CommOptions | None = None,
                energy: dict[str, float] | None = None) -> tuple[float | None, str | None, str | None]:
    """(prediction, skipped_reason, note) for one measured row under ``calibration`` (the shipped profile by
    default), with ``efficiency`` overriding the chip's efficiency (fields, or a whole ``Efficiency``),
    ``comm`` the collective parameters (a whole ``CommOptions``) and ``energy`` the energy options
    (``IDEAL_ENERGY``: no power cap)."""
    dtypes = [row.get(k) or "fp16" for k in ("weight_dtype", "act_dtype", "kv_dtype")]
    unknown = [d for d in dtypes if d not in FORMATS]
    if unknown:
        return None, f"format {unknown[0]} needs quantization schemes, not in this version", None
    scenario, metric = row["scenario"], row["metric"]
    found = row_deployment(row)
    if isinstance(found, str):
        return None, found, None
    options, said = found
    if scenario == "op":
        if metric != "op_latency_s":
            return None, f"scenario op measures op_latency_s, not {metric}", None
        return _predict_op(row, Precision(*dtypes), options["framework"], calibration, efficiency, comm)
    kw = {"calibration": calibration, "efficiency": efficiency, "comm": comm, "energy": energy}
    if scenario in ("offline", "server", "concurrency", "interactive"):
        return predict_serving_row(row, **{k: v for k, v in kw.items() if v is not None})
    batch = _int(row, "batch", 1)
    isl, osl = _int(row, "isl"), _int(row, "osl", 1)
    note = "; ".join(said)
    if isl is None:
        isl = UNSTATED_PROMPT_TOKENS
        note += f"; prompt length not stated: assumed {UNSTATED_PROMPT_TOKENS} tokens"
    sc = resolve(**options, **kw)
    if metric in ("ttft_s", "prefill_latency_s", "prefill_tokens_per_s"):
        c = evaluate(sc, batch=batch, isl=isl, osl=1)
        return (batch * isl / c["ttft_s"] if metric == "prefill_tokens_per_s" else c["ttft_s"]), None, note
    if metric in ("decode_tokens_per_s", "tpot_s", "itl_s"):
        # llama-bench tg: generation from an empty context (n_prompt = 0): one token of context
        c = evaluate(sc, batch=batch, isl=max(isl, 1), osl=osl + 1 if isl == 0 else osl)
        return (c["decode.tpot_s"] if metric != "decode_tokens_per_s" else c["decode.tokens_per_s"]), None, note
    if metric in ("output_tokens_per_s", "e2e_latency_s", "samples_per_s"):
        c = evaluate(sc, batch=batch, isl=isl, osl=osl)
        value = {"output_tokens_per_s": c["throughput_tokens_per_s"], "e2e_latency_s": c["e2e_latency_s"],
                 "samples_per_s": batch / c["e2e_latency_s"]}[metric]  # a static batch completes together
        return value, None, note
    return None, f"metric {metric} is not predicted for scenario {scenario}", None


def _predict_op(row: dict[str, str], p: Precision, framework: FrameworkRef, calibration, efficiency,
                comm: CommOptions | None) -> tuple[float | None, str | None, str | None]:
    chip = load_chip(row["hardware"])
    rates = ChipRates.of(chip)
    eff = efficiency if isinstance(efficiency, Efficiency) else with_overrides(
        efficiency_for(chip, calibration, framework.name), efficiency, "--efficiency ")
    if comm is None:
        comm = comm_for(calibration)
        floor = framework.profile.allreduce.floor_s(_int(row, "tp", 1))
        if floor is not None:
            comm = comm.model_copy(update={"allreduce_floor_s": floor})
    op_name = row["op"]
    M, N, K = _int(row, "gemm_m"), _int(row, "gemm_n"), _int(row, "gemm_k")
    if op_name == "allreduce":
        tp, tokens = _int(row, "tp", 1), _note(row, "tokens")
        if tokens is None:
            return None, "allreduce needs tokens=N in notes", None
        spec = load_model(row["model"])
        size = tokens * spec.hidden_size * element_bytes(p.act)  # one layer's output, all-reduced over the TP group
        system = default_system(chip, tp)
        return float(group_allreduce_s(size, tp, system, comm)), None, f"{size / 1e6:.3g} MB over {tp} chips"
    if op_name in GEMM_OPS:
        repeat = re.search(r"value = (\d+) x the measured", row.get("notes", ""))
        times = int(repeat.group(1)) if repeat else 1
        t = op_time(gemm_op(op_name, 1, M, N, K, p), rates, eff).time_s
        return float(t) * times, None, f"{times} GEMMs of the stated shape" if times > 1 else None
    spec = load_model(row["model"])
    tp = _int(row, "tp", 1)
    batch, tokens = _int(row, "batch", 1), _note(row, "tokens")
    heads = spec.num_heads // tp
    if op_name in ("attn_score", "attn_value"):
        # a batched matmul over batch x heads-per-chip of the stated per-head shape, in the row's format
        count, a = batch * heads, element_bytes(p.act)
        op = make_op(op_name, "gemm", 1, flops=2.0 * M * N * K * count,
                     act=a * count * (M * K + K * N), write=a * count * M * N, min_dim=min(M, N, K), math=p.act)
        return float(op_time(op, rates, eff).time_s), None, None
    if tokens is None:
        return None, f"op {op_name} needs tokens=N in notes", None
    if op_name == "norm":
        op = norm_op("norm", spec, 1, tokens, p)
    elif op_name == "gelu":
        op = vector_op("gelu", 1, tokens * spec.intermediate_size / tp, GELU_FLOPS, p)
    elif op_name == "attn_softmax":
        kv_len = _note(row, "kv_len")
        q_len = tokens // batch if row.get("notes", "").startswith("phase=prefill") else 1
        elems = batch * heads * q_len * kv_len  # LLMCompass's softmax covers the full score matrix
        op = vector_op("attn_softmax", 1, elems, SOFTMAX_FLOPS, p)
    else:
        return None, f"op {op_name} is not modelled", None
    return float(op_time(op, rates, eff).time_s), None, None


IDEAL_COMM = CommOptions(bandwidth=1.0, launch_s=0.0)
"""Collectives at the links' full bandwidth and no launch cost: the ideal roofline's."""
IDEAL_ENERGY = {"chip_overhead": 1.0}
"""The bare energy model, under which no chip reaches its TDP: the ideal roofline has no power cap."""


def validate(data: str = BUNDLED, efficiency: dict[str, float] | None = None,
             calibration: Calibration | str | None = None) -> list[RowResult]:
    """Predict every row under ``calibration`` (the shipped profile by default); ``efficiency``
    overrides fields of every chip's efficiency."""
    results = []
    for row in read_rows(data):
        try:
            measured = float(row["value"])
        except ValueError:
            results.append(RowResult(row["id"], row["metric"], row["hardware"], source_group(row), float("nan"),
                                     None, None, f"value {row['value']!r} is not a number"))
            continue
        try:
            predicted, reason, note = predict_row(row, calibration=calibration, efficiency=efficiency)
            ideal = predict_row(row, efficiency=IDEAL, comm=IDEAL_COMM, energy=IDEAL_ENERGY)[0] if reason is None \
                else None
        except InfercastError as exc:
            predicted, ideal, reason, note = None, None, str(exc), None
        results.append(RowResult(row["id"], row["metric"], row["hardware"], source_group(row), measured,
                                 predicted, ideal, reason, note))
    return results


def _stats(errors: list[float]) -> dict[str, float | int | None]:
    if not errors:
        return {"count": 0, "median_ape": None, "p90_ape": None, "median_signed": None}
    e = np.asarray(errors)
    return {"count": len(errors), "median_ape": float(np.median(np.abs(e))),
            "p90_ape": float(np.percentile(np.abs(e), 90)), "median_signed": float(np.median(e))}


def _known(errors: list[float | None]) -> list[float]:
    """The errors of rows that have the figure (validations without an ideal roofline leave it None)."""
    return [e for e in errors if e is not None]


def summarize(results: list[RowResult]) -> dict[str, Any]:
    """Median and p90 absolute percentage error (as fractions), overall and by metric, chip and source."""
    done = [r for r in results if r.predicted is not None]
    summary: dict[str, Any] = {
        "rows": len(results), "predicted": len(done), "skipped": len(results) - len(done),
        "all": _stats([r.error for r in done]), "all_ideal": _stats(_known([r.error_ideal for r in done])),
    }
    for key in ("metric", "hardware", "source"):
        groups: dict[str, list[RowResult]] = defaultdict(list)
        for r in done:
            groups[getattr(r, key)].append(r)
        summary[f"by_{key}"] = {g: {**_stats([r.error for r in rs]),
                                    "ideal": _stats(_known([r.error_ideal for r in rs]))} for g, rs in sorted(groups.items())}
    reasons: dict[str, int] = defaultdict(int)
    for r in results:
        if r.skipped_reason:
            reasons[r.skipped_reason] += 1
    summary["skipped_reasons"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1]))
    return summary
