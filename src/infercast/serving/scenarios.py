"""Measured rows as deployments and runs: how a row of the measured-data CSV is read, and the serving
scenarios (offline, server, interactive, concurrency) predicted with the simulator.

``row_deployment(row)`` gives the ``resolve()`` options of a row of any scenario, by these rules
(docs/validation.md prints them):

* the system is ``num_chips`` chips of ``hardware`` in ``tp x pp`` groups, ``dp = num_chips / (tp x pp)``
  replicas. Expert parallelism and data-parallel attention are read from the notes: InferenceX's
  ``TPn EPm dp-attention=true|false`` (with it: attention data-parallel over the n GPUs, tp 1, dp n,
  ep m), the TensorRT-LLM overview's ``DEPn`` (tp 1, dp n, ep n);
* the framework column maps onto a profile and version (``infercast.framework.framework_of_text``);
* an MoE model's ``fp4`` weights are its experts' (MXFP4 on AMD chips and for gpt-oss, NVFP4 otherwise),
  the other linear layers stay in their checkpoint's format: FP8 for DeepSeek (block-scaled), bf16 for
  gpt-oss (its config's ``modules_to_not_convert``). gpt-oss's MXFP4 is weight-only, so an ``fp4``
  activation of a gpt-oss row (the TensorRT-LLM overview's rows assume it: their notes say the activation
  precision is not stated) is read as bf16;
* a row that names an NVIDIA ModelOpt checkpoint (``nvidia/...-FP8``, ``-FP4``) and says its KV dtype is not
  stated runs an FP8 KV cache, as those checkpoints' quantization configs set it (and as the rows of the
  TensorRT-LLM v1.0 overview, on the same checkpoints, assume): the 03e27c7 overview's Llama-3.3-70B rows
  write bf16, under which ten of their 24 rows measure above the ideal roofline;
* so does a Gaudi row of Intel Neural Compressor's FP8 flow whose KV dtype is not stated: the flow quantizes the
  KV cache (its KVCache module) with the linear layers, and the rows' batches need it: LLaMA-2-7B's 163
  sequences of 2,176 tokens hold 186 GB of bf16 K/V, twice a Gaudi 2's 96 GiB, and five of the 16 rows measure
  above the bf16 ideal roofline.

``predict_serving_row(row)`` returns (prediction or None, skipped_reason or None, note or None):

* offline (MLPerf Offline, trtllm-bench): every request at t = 0; ``num_requests=N`` in the notes (or the
  TensorRT-LLM overview's counts by length class), else OFFLINE_REQUESTS;
* server and interactive (MLPerf Server): the highest Poisson rate meeting every constraint of the
  ``constraint`` column (``STAT_METRIC<=VALUE`` in SI units, ``;``-separated), then the throughput at that
  rate, or the statistic of TTFT/TPOT of that run;
* concurrency: a closed-loop client keeping ``batch`` requests in flight, ``num_prompts=AxB`` in the notes
  (InferenceX: 10 x concurrency; the warm-up requests run before and are not measured) or
  CONCURRENCY_ROUNDS x batch; lengths drawn uniform in [0.8 L, L] where the notes say so (InferenceX's
  random-range-ratio 0.8), else fixed;
* latencies at the statistic the notes name (``statistic=mean|median|p99``, or a MEDIAN figure as in
  InferenceX's notes), the mean when silent;
* a row without isl/osl takes its dataset's documented mean lengths (DATASET_LENGTHS) and says so; MLPerf
  GPT-J runs beam search with 4 beams (MLPERF_GPTJ_BEAMS).

Runs are kept (``_RUNS``) so that the rows of one run (throughput, TTFT, TPOT) simulate it once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from infercast.errors import InfercastError
from infercast.framework import framework_of_text
from infercast.model import load_model
from infercast.serving.metrics import SimResult
from infercast.serving.search import max_rate
from infercast.serving.server import server
from infercast.serving.workload import Requests, Workload

OFFLINE_REQUESTS = 2000
"""Requests of an offline run when the row does not say (enough for the batch to fill and drain)."""
MAX_ROW_REQUESTS = 1_000_000
"""Most requests simulated for a row: a steady offline throughput is reached long before (a million take
about 5 s); a row's notes may state a count that would take minutes and gigabytes."""
CONCURRENCY_ROUNDS = 10
"""A concurrency run sends this many requests per slot of concurrency (at least 200) unless the notes say."""
SERVER_REQUESTS = 5000
"""Requests per probe of a server row's rate search."""
LENGTH_SEED = 0
"""Seed of the drawn lengths of a row's requests."""

DATASET_LENGTHS = {
    # MLPerf GPT-J runs CNN/DailyMail's 13,368 validation articles. See et al. 2017 ("Get To The Point:
    # Summarization with Pointer-Generator Networks", sec. 4) give 781 tokens per article and 56 per summary
    # (word tokens); at 0.75 words per BPE token (OpenAI's tokenizer guide: 100 tokens ~ 75 words) that is
    # 1,041 prompt and 75 output tokens. The lengths are means: every request takes them.
    "gpt-j-6b": (round(781 / 0.75), round(56 / 0.75), "CNN/DailyMail (See et al. 2017: 781 and 56 words a "
                                                     "sample, at 0.75 words a token)"),
}
MLPERF_GPTJ_BEAMS = 4
"""MLPerf Inference GPT-J generates with beam search of 4 beams (language/gpt-j reference: num_beams=4;
shared/data/README.md)."""

THROUGHPUT = {"output_tokens_per_s": "output_throughput", "samples_per_s": "request_throughput",
              "total_tokens_per_s": "total_token_throughput"}
LATENCY = {"ttft_s": "ttft_ms", "tpot_s": "tpot_ms", "itl_s": "itl_ms", "e2e_latency_s": "e2el_ms"}
STATISTICS = {"mean": "mean", "median": "p50", "p50": "p50", "p90": "p90", "p99": "p99"}
_CONSTRAINT = re.compile(r"^(mean|p50|p90|p99)_(ttft_s|tpot_s|itl_s|e2e_latency_s)<=([0-9.eE+-]+)$")
CONSTRAINT_FORM = "STAT_METRIC<=VALUE[;...] in SI units, e.g. p99_ttft_s<=2;p99_tpot_s<=0.2"


def _int(row: dict[str, str], key: str) -> int | None:
    value = (row.get(key) or "").strip()
    return int(float(value)) if value else None


def _date(row: dict[str, str]) -> str | None:
    match = re.search(r"\bdate=(\d{4}-\d{2}-\d{2})", row.get("notes") or "")
    return match.group(1) if match else None


_KV_UNSTATED = re.compile(r"\bKV[ _]dtype not stated", re.IGNORECASE)
_FP8_KV_FLOWS = (
    (re.compile(r"\bnvidia/[\w.-]+-FP[48]\b"),  # nvidia/Llama-3.3-70B-Instruct-FP4, ...
     "an NVIDIA ModelOpt FP8/FP4 checkpoint, whose quantization config carries an FP8 KV cache"),
    (re.compile(r"Intel Neural Compressor/FP8"),
     "Intel Neural Compressor's FP8 flow quantizes the KV cache with the linear layers"),
)
"""Checkpoints and flows named in a row's notes that quantize the KV cache to FP8 (``row_deployment``)."""


def row_deployment(row: dict[str, str]) -> tuple[dict[str, Any], list[str]] | str:
    """``resolve()`` options of a measured row and notes on how they were read, or why it has none."""
    notes_text = row.get("notes") or ""
    chips, tp, pp = _int(row, "num_chips") or 1, _int(row, "tp") or 1, _int(row, "pp") or 1
    if chips % (tp * pp):
        return f"num_chips {chips} is not a multiple of tp x pp = {tp * pp}"
    said = []
    ep, dp = 1, chips // (tp * pp)
    ix = re.search(r"TP(\d+) EP(\d+) dp-attention=(true|false)", notes_text)
    dep = re.search(r"\bDEP(\d+)\b", notes_text)
    if ix:
        ep = int(ix.group(2))
        if ix.group(3) == "true":
            tp, dp = 1, chips // pp
            said.append(f"attention data-parallel over {dp} GPUs, experts over {ep}")
        else:
            said.append(f"TP{tp} EP{ep}")
    elif dep:
        tp, dp, ep = 1, chips // pp, int(dep.group(1))
        said.append(f"DEP{ep}: attention data-parallel, experts over {ep} GPUs")
    ref, fw_note = framework_of_text(row.get("framework") or "", _date(row))
    said.append(fw_note)
    options: dict[str, Any] = dict(model=row["model"], hardware=row["hardware"], num_chips=chips, tp=tp, pp=pp,
                                   dp=dp, ep=ep, framework=ref)
    dtypes = {k: row.get(c) or None for k, c in (("weight_dtype", "weight_dtype"), ("act_dtype", "act_dtype"),
                                                 ("kv_cache_dtype", "kv_dtype"))}
    options.update({k: v for k, v in dtypes.items() if v})
    if _KV_UNSTATED.search(notes_text) and options.get("kv_cache_dtype") != "fp8":
        why = next((why for pattern, why in _FP8_KV_FLOWS if pattern.search(notes_text)), None)
        if why is not None:
            options["kv_cache_dtype"] = "fp8"
            said.append(f"KV fp8 ({why}; the row's KV dtype is not stated)")
    if dtypes["weight_dtype"] == "fp4":
        try:
            spec = load_model(row["model"])
        except InfercastError as exc:
            return str(exc)
        if spec.is_moe:
            amd = row["hardware"].startswith("mi") or spec.architecture == "gpt_oss"
            options["expert_dtype"] = "mxfp4" if amd else "nvfp4"
            options["weight_dtype"] = "bf16" if spec.architecture == "gpt_oss" else "fp8"
            said.append(f"experts {options['expert_dtype']}, other weights {options['weight_dtype']}")
            if spec.architecture == "gpt_oss" and options.get("act_dtype") == "fp4":
                # MXFP4 is weight-only in gpt-oss's checkpoint (config.json quantization_config): the experts'
                # GEMMs take 16-bit activations; FP4 activations would need a re-quantized checkpoint
                options["act_dtype"] = "bf16"
                said.append("activations bf16 (gpt-oss's MXFP4 quantizes weights only)")
    return options, said


def parse_constraint(text: str) -> dict[str, float]:
    """The ``constraint`` column as simulator SLOs in ms ({'ttft_p99': 2000.0, ...}); one line naming the
    column and the expected form if it does not parse."""
    slo = {}
    for part in (p.strip() for p in text.split(";")):
        match = _CONSTRAINT.match(part.replace(" ", ""))
        try:
            value = float(match.group(3)) if match else math.nan
        except ValueError:
            value = math.nan
        if not (match and math.isfinite(value) and value > 0):
            raise InfercastError(f"column constraint: {part!r} does not parse; expected {CONSTRAINT_FORM}")
        metric = LATENCY[match.group(2)].removesuffix("_ms")
        slo[f"{metric}_{match.group(1)}"] = value * 1e3
    return slo


def statistic(row: dict[str, str]) -> str:
    """The statistic of a latency row: ``statistic=...`` in notes, a MEDIAN figure (InferenceX), else mean."""
    notes = row.get("notes") or ""
    match = re.search(r"\bstatistic=(\w+)", notes)
    if match:
        if match.group(1) not in STATISTICS:
            raise InfercastError(f"column notes: statistic={match.group(1)}; use one of {', '.join(STATISTICS)}")
        return match.group(1)
    return "median" if re.search(r"\bMEDIAN (TTFT|TPOT|ITL|E2E)", notes) else "mean"


@dataclass(frozen=True)
class RowRun:
    """What a serving row simulates: the deployment, its requests and how the client sends them."""

    options: tuple
    """``server()`` options, as sorted (key, value) pairs."""
    kind: str
    """offline, server or concurrency."""
    requests: int
    isl: int
    osl: int
    uniform: bool
    """Lengths uniform in [0.8 L, L] (else fixed)."""
    concurrency: int | None
    beams: int
    slo: tuple = ()

    def draw(self) -> Requests:
        """The run's requests: all at t = 0 (a closed loop or an offline run sends them as slots free)."""
        n = self.requests
        if not self.uniform:
            return Requests(np.zeros(n), np.full(n, self.isl, dtype=np.int64), np.full(n, self.osl, dtype=np.int64))
        rng = np.random.default_rng(LENGTH_SEED)
        isl = rng.integers(int(0.8 * self.isl), self.isl + 1, size=n)
        osl = rng.integers(int(0.8 * self.osl), self.osl + 1, size=n)
        return Requests(np.zeros(n), isl, osl)


def row_run(row: dict[str, str]) -> tuple[RowRun, list[str]] | str:
    """The run a serving row measures, and notes on how it was read (or why it cannot be run)."""
    scenario = row["scenario"]
    found = row_deployment(row)
    if isinstance(found, str):
        return found
    options, said = found
    isl, osl = _int(row, "isl"), _int(row, "osl")
    if isl is None or osl is None:
        default = DATASET_LENGTHS.get(row["model"])
        if default is None:
            return "serving rows need isl and osl (the dataset's lengths are not stated and no default is known)"
        isl, osl = default[0], default[1]
        said.append(f"lengths not stated: {isl} and {osl} tokens, the means of {default[2]}")
    notes = row.get("notes") or ""
    beams = 1
    if row["model"] == "gpt-j-6b" and "mlcommons" in (row.get("source") or ""):
        beams = MLPERF_GPTJ_BEAMS
        said.append(f"beam search, {beams} beams (MLPerf GPT-J)")
    uniform = bool(re.search(r"uniform in \[0\.8\*L, L\]|random-range-ratio 0\.8", notes))
    key = tuple(sorted(options.items(), key=lambda kv: kv[0]))
    if scenario == "offline":
        match = re.search(r"num_requests=(\d+)", notes)
        stated = int(match.group(1)) if match else _overview_requests(notes, isl, osl)
        n = min(stated, MAX_ROW_REQUESTS) if stated is not None else OFFLINE_REQUESTS
        said.append(f"{n} requests at t = 0" + (" (count not stated)" if stated is None else
                                                f" (capped from the {stated} stated)" if stated > n else ""))
        return RowRun(key, "offline", n, isl, osl, uniform, None, beams), said
    if scenario in ("server", "interactive"):
        if not (row.get("constraint") or "").strip():
            return f"{scenario} rows need a latency constraint, e.g. p99_ttft_s<=2;p99_tpot_s<=0.2"
        slo = parse_constraint(row["constraint"])
        said.append(f"Poisson arrivals, {SERVER_REQUESTS} requests a probe")
        return RowRun(key, "server", SERVER_REQUESTS, isl, osl, uniform, None, beams,
                      tuple(sorted(slo.items()))), said
    batch = _int(row, "batch")
    if batch is None:
        return "concurrency rows need the concurrency in batch"
    match = re.search(r"num_prompts=(\d+)x(\d+)", notes)
    n = int(match.group(1)) * int(match.group(2)) if match else max(200, CONCURRENCY_ROUNDS * batch)
    said.append(f"{n} requests, {batch} in flight" + (", lengths uniform in [0.8 L, L]" if uniform else ""))
    return RowRun(key, "concurrency", n, isl, osl, uniform, batch, beams), said


def _overview_requests(notes: str, isl: int, osl: int) -> int | None:
    """The TensorRT-LLM perf overview's requests by length class: 'num_requests 3000 (1k/1k), 1500 (8k/1k,
    1k/8k), 1000 (32k/1k, 1k/32k)'."""
    if "num_requests 3000 (1k/1k)" not in notes:
        return None
    longest = max(isl, osl)
    return 3000 if longest <= 1100 else 1500 if longest <= 8200 else 1000


_RUNS: dict[tuple, Any] = {}
"""Simulated runs by (run, calibration, overrides): the rows of one run share it."""


def simulate_row_run(run: RowRun, **estimate_kw: Any):
    """The SimResult (offline, concurrency) or RateSearch (server) of ``run``; ``estimate_kw`` (calibration,
    efficiency, comm) reach the deployment."""
    key = (run, _identity(estimate_kw))
    hit = _RUNS.get(key)
    if hit is not None:
        return hit
    srv = server(**dict(run.options), **estimate_kw)
    if run.kind == "server":
        w = Workload(num_prompts=run.requests, isl=run.isl, osl=run.osl, beam_width=run.beams)
        result: Any = max_rate(srv, w, dict(run.slo))
    else:
        result = srv.run(run.draw(), max_concurrency=run.concurrency, beams=run.beams)
    if len(_RUNS) > 2048:
        _RUNS.clear()
    _RUNS[key] = result
    return result


def _identity(kw: dict[str, Any]) -> tuple:
    out = []
    for k, v in sorted(kw.items()):
        if hasattr(v, "model_dump"):
            v = (type(v).__name__, id(v)) if type(v).__name__ == "Calibration" else tuple(sorted(v.model_dump().items()))
        elif isinstance(v, dict):
            v = tuple(sorted(v.items()))
        out.append((k, v))
    return tuple(out)


def predict_serving_row(row: dict[str, str], **estimate_kw: Any) -> tuple[float | None, str | None, str | None]:
    """(prediction, skipped_reason, note) for a measured row of scenario offline, server (or interactive,
    MLPerf's server with tighter constraints) or concurrency; ``estimate_kw`` (calibration, efficiency,
    comm...) reach the deployment's estimate."""
    scenario, metric = row["scenario"], row["metric"]
    if scenario not in ("offline", "server", "interactive", "concurrency"):
        return None, f"scenario {scenario} is not a serving scenario", None
    if scenario == "offline" and metric not in THROUGHPUT:
        return None, f"metric {metric} is not predicted for offline rows", None
    if metric not in THROUGHPUT and metric not in LATENCY:
        return None, f"metric {metric} is not predicted for {scenario} rows", None
    try:
        found = row_run(row)
        if isinstance(found, str):
            return None, found, None
        run, said = found
        result = simulate_row_run(run, **estimate_kw)
        if run.kind == "server":
            if result.at_max is None:
                return 0.0, None, "; ".join(said + [result.reason or "no rate meets the constraint"])
            said.append(f"at {result.max_request_rate:.4g} requests/s")
            result = result.at_max
        if metric in THROUGHPUT:
            return result[THROUGHPUT[metric]], None, "; ".join(said)
        stat = statistic(row)
        value = result[LATENCY[metric]][STATISTICS[stat]]
        return value / 1e3, None, "; ".join(said + [stat])
    except InfercastError as exc:
        return None, str(exc), None


__all__ = ["parse_constraint", "predict_serving_row", "row_deployment", "row_run", "simulate_row_run",
           "statistic", "SimResult"]
