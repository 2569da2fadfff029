"""Search: the cheapest deployment of a model that serves a load within latency SLOs, and the trade-off curves.

``search(model, isl=, osl=, qps= | concurrency=, slo=)`` answers the capacity planner's question in three steps:

1. **Enumerate** every chip asked for (the catalog by default) x tensor- and pipeline-parallel plans of up to
   ``MAX_TP`` x ``MAX_PP`` chips (and expert parallelism over the TP group for MoE models) x the precisions the
   chip has units for; a replica is ``tp x pp`` chips of the chip's default system (a node of up to 8 over its
   own link, InfiniBand between nodes), and replicas (dp) are added for the load.
2. **Filter and rank analytically.** One ``evaluate`` over the concurrency per replica B = 1 ..
   the framework's max-num-seqs (256 for vLLM and the generic profile) gives the static-batch figures at each B; from them, the
   continuous-batching steady state a replica runs at concurrency B is estimated as

       TPOT(B) = tpot_static(B) + (B - 1) / B x ttft_static(B) / (osl - 1)
                 (each decode step also carries its share of the prompts of the B - 1 requests that arrive
                 during a request's decode: the static batch's prefill spread over its osl - 1 steps)
       TTFT(B) = ttft_static(1) + TPOT(B)       (a prompt's own prefill, after the step in flight)
       rate(B) = B / (TTFT(B) + (osl - 1) x TPOT(B))          requests per second (Little's law)

   These are means, used as the first filter (the p99 SLOs are checked by the simulator in step 3). A
   replica's concurrency is capped at the largest B meeting every SLO and fitting in memory (the
   ``binding`` constraint is the one that caps it); the load then sets the replicas: ceil(qps / rate(B_max))
   (or ceil(concurrency / B_max) for a closed loop), and the operating concurrency is the smallest B
   whose rate carries the load per replica. Candidates are ranked by the objective at that point.
3. **Confirm** the top ``top_k`` with the serving simulator at the target load (Poisson at qps / replicas per
   replica, or a closed loop at concurrency / replicas): p99 TTFT and TPOT, throughput per chip and per user.
   A candidate the simulator finds missing an SLO is dropped (counted) and the next one simulated, up to
   ``3 x top_k`` simulations. Models with multi-head latent attention (DeepSeek) are not simulated yet: their
   figures stay analytic (``simulated: false``).

Costs: a chip priced in the catalog is owned hardware (``infercast.cost``), ``usd_per_chip_hour`` gives a
cloud price per chip; a chip with neither is rejected when the objective is a cost. TCO is chips x the
chip-hour cost x the cost options' years. Energy per token is the analytic figure at the operating point.

``pareto(...)`` gives, per chip (or per chip and plan and precision), the frontier of output tokens/s per chip
against tokens/s per user (1 / TPOT) and of USD per million tokens against tokens/s per user: plain data.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infercast.errors import InfercastError, did_you_mean
from infercast.framework import GENERIC

OBJECTIVES = ("usd_per_mtok", "tco_usd", "chips", "joules_per_token")
DEFAULT_DTYPES = ("bf16", "fp8", "fp4")
MAX_TP = 8
"""Tensor parallelism stays inside a node of 8."""
PIPELINE = (1, 2, 4, 8)
"""Pipeline stages of a replica: more than one only with a full node of tensor parallelism (TP inside a node,
PP across nodes), and each doubling only where the plan with half the stages is bound by memory (stages add
capacity, never speed)."""
CONCURRENCY = (1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224,
               256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120,
               6144, 7168, 8192)
"""Concurrencies per replica evaluated (every 1/8 to 1/4 of a doubling), up to the framework's max-num-seqs (the
requests its scheduler runs at once: 256 for vLLM and the generic profile, 512 for SGLang and ATOM, 8,192 for
TensorRT-LLM): the operating point is one of them."""
DEFAULT_TOP_K = 5
DEFAULT_NUM_PROMPTS = 1000
DEFAULT_MAX_CHIPS = 4096
KEYS = ("hardware", "num_chips", "tp", "pp", "ep", "dp", "weight_dtype", "act_dtype", "kv_dtype", "framework",
        "concurrency", "ttft_p99_s", "tpot_p99_s", "output_tokens_per_s_per_chip", "output_tokens_per_s_per_user",
        "usd_per_million_tokens", "tco_usd", "joules_per_token", "binding", "simulated")
"""A ranked entry of ``infercast search --output json`` (DESIGN.md, Contracts, "Sweep and search")."""
OBJECTIVE_KEY = {"usd_per_mtok": "usd_per_million_tokens", "tco_usd": "tco_usd", "chips": "num_chips",
                 "joules_per_token": "joules_per_token"}
NO_PRICE = "no price in the catalog: give --usd-per-chip-hour CHIP=P"
NO_POWER = "no power figure (TDP) in the catalog: energy unknown"
NO_BACKEND = "the framework has no backend for the chip's vendor (infercast frameworks list: runs_on)"


# --- inputs -------------------------------------------------------------------------------------------


def precision_of(dtype: str) -> dict[str, str]:
    """resolve()'s dtype keywords for a search precision: weights and activations in ``dtype``, the KV cache
    in it too except FP4, whose deployments (NVFP4, MXFP4 checkpoints) keep the cache in FP8."""
    from infercast.formats import get_format

    name = get_format(dtype, "--dtype").name
    return {"dtype": name, "kv_cache_dtype": "fp8"} if name in ("fp4", "mxfp4", "nvfp4") else {"dtype": name}


def chip_runs(chip, dtype: str) -> bool:
    """Whether the chip has matrix units for ``dtype``'s math (its own peak in the catalog)."""
    from infercast.formats import get_format

    math_fmt = get_format(dtype).math or dtype
    figure = getattr(chip.peak_flops, math_fmt, None)
    return figure is not None and figure.value is not None


def parse_prices(text: str | tuple[str, ...] | dict | None, chips: list[str]) -> dict[str, float]:
    """'h100-sxm=2.5,b200=4' (or a mapping) -> {chip id: USD per chip-hour}; every chip must be known."""
    from infercast.hardware import load_chip

    if not text:
        return {}
    if isinstance(text, dict):
        items = list(text.items())
    else:
        parts = [p for t in ((text,) if isinstance(text, str) else text) for p in t.split(",") if p.strip()]
        items = []
        for p in parts:
            key, sep, value = p.partition("=")
            if not sep:
                raise InfercastError(f"--usd-per-chip-hour {p!r}: expected CHIP=USD, e.g. h100-sxm=2.5")
            items.append((key.strip(), value))
    out = {}
    for key, value in items:
        try:
            price = float(value)
        except (TypeError, ValueError):
            price = math.nan
        if not (math.isfinite(price) and price > 0):
            raise InfercastError(f"--usd-per-chip-hour {key}: the price must be a positive number, got {value!r}")
        try:
            cid = load_chip(key).id
        except InfercastError as exc:
            raise InfercastError(f"--usd-per-chip-hour: {exc}") from None
        out[cid] = price
    return out


def parse_hardware(value: str | list[str] | None) -> list[str]:
    """Chip ids: 'all' (the catalog), or a comma list; an unknown id is one line naming --hardware."""
    from infercast.hardware import chip_ids, load_chip

    if value is None or value == "all" or value == ["all"]:
        return chip_ids()
    names = [x.strip() for x in (value.split(",") if isinstance(value, str) else value) if x.strip()]
    if not names:
        raise InfercastError("--hardware: the list is empty; give chip ids or 'all'")
    out = []
    for n in names:
        try:
            cid = load_chip(n).id
        except InfercastError as exc:
            raise type(exc)(f"--hardware: {exc}") from None
        if cid in out:
            raise InfercastError(f"--hardware: {n} is named twice")
        out.append(cid)
    return out


def parse_dtypes(value: str | list[str] | None) -> list[str]:
    from infercast.formats import get_format

    if value is None:
        return list(DEFAULT_DTYPES)
    names = [x.strip() for x in (value.split(",") if isinstance(value, str) else value) if x.strip()]
    if not names:
        raise InfercastError("--dtype: the list is empty; give formats such as bf16,fp8,fp4")
    out = []
    for n in names:
        fmt = get_format(n, "--dtype")
        if fmt.math is None:
            raise InfercastError(f"--dtype {n}: a weight quantization scheme, not a format of weights and "
                                 f"activations; use bf16, fp16, fp8, int8 or fp4")
        out.append(fmt.name)
    return out


def parse_slo_ms(text: str | dict) -> dict[str, float]:
    """'ttft_p99:2000,tpot_p99:50' -> {key: ms}; TTFT, TPOT and E2EL statistics only (what can be estimated)."""
    from infercast.serving.metrics import parse_slo

    slo = dict(text) if isinstance(text, dict) else parse_slo(text, "--slo", percentiles=True)
    for key in slo:
        if key.split("_")[0] not in ("ttft", "tpot", "e2el"):
            raise InfercastError(f"--slo {key}: search estimates ttft, tpot and e2el; use e.g. ttft_p99:2000")
    return slo


# --- one deployment at every concurrency -----------------------------------------------------------------


@dataclass
class Deployment:
    """A replica's plan and precision on a chip, with its figures at concurrency B = 1 .. len(B)."""

    hardware: str
    tp: int
    pp: int
    ep: int
    precision: dict[str, str]
    framework: str = GENERIC
    """``NAME[@VERSION]``: the framework profile the replica runs."""
    weight_dtype: str = ""
    act_dtype: str = ""
    kv_dtype: str = ""
    price: float | None = None
    """Cloud USD per chip-hour (None: owned hardware at the catalog price)."""
    B: np.ndarray = field(default=None, repr=False)
    fits: np.ndarray = field(default=None, repr=False)
    ttft: np.ndarray = field(default=None, repr=False)
    tpot: np.ndarray = field(default=None, repr=False)
    rate: np.ndarray = field(default=None, repr=False)
    usd_per_chip_hour: np.ndarray | None = field(default=None, repr=False)
    joules_per_token: np.ndarray | None = field(default=None, repr=False)
    years: float = 5.0
    mla: bool = False
    max_num_seqs: int = 0
    """The framework's max-num-seqs: the largest concurrency a replica runs."""

    @property
    def chips(self) -> int:
        return self.tp * self.pp

    @property
    def label(self) -> str:
        ep = f" ep{self.ep}" if self.ep > 1 else ""
        fw = f" {self.framework}" if self.framework != GENERIC else ""
        return f"{self.hardware} tp{self.tp} pp{self.pp}{ep} {self.weight_dtype}{fw}"


def plans(spec, chips_limit: int) -> list[tuple[int, int, int]]:
    """(tp, pp, ep) replica plans to try: tp a power of two up to MAX_TP with one stage, then MAX_TP x each of
    PIPELINE's deeper pipelines (tried only while the shallower one is memory-bound); ep 1 or tp (MoE)."""
    out = []
    for pp in PIPELINE:
        tps = [t for t in (1, 2, 4, 8) if t <= MAX_TP] if pp == 1 else [MAX_TP]
        for tp in tps:
            if tp * pp <= chips_limit:
                out.append((tp, pp, 1))
                if spec.is_moe and tp > 1:
                    out.append((tp, pp, tp))
    return out


def steady_state(B: np.ndarray, ttft_static: np.ndarray, tpot_static: np.ndarray,
                 osl: int) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT, TPOT) of continuous batching at the concurrencies ``B`` (the first is 1) from the static-batch
    figures at B (the module docstring's estimate)."""
    share = (B - 1) / B * ttft_static / (osl - 1) if osl > 1 else np.zeros_like(B)
    tpot = (tpot_static if osl > 1 else np.zeros_like(B)) + share
    return ttft_static[0] + tpot, tpot


def concurrencies(total: int | None = None, max_num_seqs: int = 256) -> np.ndarray:
    """CONCURRENCY up to ``max_num_seqs``, and for a closed loop of ``total`` requests every ceil(total /
    replicas) up to it (so the operating point is evaluated, not interpolated)."""
    values = {c for c in CONCURRENCY if c <= max_num_seqs}
    if total is not None:
        r = np.arange(max(1, total // max_num_seqs), total + 1)
        values |= {int(v) for v in np.unique(np.ceil(total / r)) if v <= max_num_seqs}
    return np.array(sorted(values), dtype=float)


def max_num_seqs(framework) -> int:
    """The requests the framework (``NAME[@VERSION]`` or a resolved one) runs at once by default (its profile's
    engine)."""
    from infercast.framework import resolve_framework

    return int(resolve_framework(framework).profile.engine.max_num_seqs.value)


def evaluate_deployment(model_spec, d: Deployment, isl: int, osl: int, B: np.ndarray | None = None,
                        memory: dict | None = None, total: int | None = None) -> str | None:
    """Fill ``d``'s figures at the concurrencies ``B`` (by default ``concurrencies(total)`` up to the framework's
    max-num-seqs; B[0] = 1); a reason string if the deployment cannot run."""
    from infercast.evaluation import evaluate
    from infercast.memory import need
    from infercast.scenario import resolve

    try:
        sc = resolve(model_spec, d.hardware, tp=d.tp, pp=d.pp, ep=d.ep, usd_per_chip_hour=d.price, memory=memory,
                     framework=d.framework, **d.precision)
    except InfercastError as exc:
        return str(exc).split(";")[0]
    d.max_num_seqs = max_num_seqs(sc.framework)
    d.weight_dtype, d.act_dtype, d.kv_dtype = sc.precision.weight, sc.precision.act, sc.precision.kv
    d.mla = sc.spec.is_mla
    usable = sc.rates.mem_capacity_bytes * sc.memory.gpu_memory_utilization
    if any(need(load, 1.0, 1.0, 0.0, sc.memory).total_bytes > usable for load in sc.loads):
        return "weights do not fit in memory"
    B = concurrencies(total, d.max_num_seqs) if B is None else B
    cols = evaluate(sc, batch=B, isl=isl, osl=osl)
    d.B = B
    d.fits = np.asarray(cols["memory.fits"], dtype=bool)
    d.ttft, d.tpot = steady_state(B, np.asarray(cols["ttft_s"], float),
                                  np.asarray(cols["decode.tpot_s"], float) if osl > 1 else np.zeros_like(B), osl)
    d.rate = B / (d.ttft + (osl - 1) * d.tpot)
    d.usd_per_chip_hour = np.broadcast_to(cols["cost.usd_per_chip_hour"], B.shape) \
        if "cost.usd_per_chip_hour" in cols else None
    d.joules_per_token = np.broadcast_to(cols["energy.joules_per_token"], B.shape) \
        if "energy.joules_per_token" in cols else None
    d.years = sc.cost.years
    if not d.fits[0]:
        return "one request does not fit in memory (KV cache)"
    return None


def limits(d: Deployment, slo_ms: dict[str, float], osl: int) -> dict[str, np.ndarray]:
    """Per constraint, whether each concurrency B meets it: memory, max_num_seqs (the grid's end) and each SLO
    (its estimate: the analytic means)."""
    out = {"memory": d.fits}
    for key, ms in slo_ms.items():
        out[key] = estimate_of(d, key, osl) <= ms / 1e3
    return out


def estimate_of(d: Deployment, key: str, osl: int) -> np.ndarray:
    metric = key.split("_")[0]
    return {"ttft": d.ttft, "tpot": d.tpot, "e2el": d.ttft + (osl - 1) * d.tpot}[metric]


# --- the search ------------------------------------------------------------------------------------------


@dataclass
class Choice:
    """A deployment at an operating point: replicas, concurrency per replica, and the figures there."""

    d: Deployment
    replicas: int
    concurrency: int
    binding: str
    ttft_s: float
    tpot_s: float
    per_chip: float
    per_user: float
    usd_per_mtok: float | None
    tco_usd: float | None
    joules_per_token: float | None
    simulated: bool = False

    @property
    def num_chips(self) -> int:
        return self.replicas * self.d.chips

    def row(self) -> dict[str, Any]:
        d = self.d
        return {"hardware": d.hardware, "num_chips": self.num_chips, "tp": d.tp, "pp": d.pp, "ep": d.ep,
                "dp": self.replicas, "weight_dtype": d.weight_dtype, "act_dtype": d.act_dtype, "kv_dtype": d.kv_dtype,
                "framework": d.framework, "concurrency": self.concurrency, "ttft_p99_s": self.ttft_s,
                "tpot_p99_s": self.tpot_s, "output_tokens_per_s_per_chip": self.per_chip,
                "output_tokens_per_s_per_user": self.per_user, "usd_per_million_tokens": self.usd_per_mtok,
                "tco_usd": self.tco_usd, "joules_per_token": self.joules_per_token, "binding": self.binding,
                "simulated": self.simulated}

    def objective(self, name: str) -> float:
        v = self.row()[OBJECTIVE_KEY[name]]
        return math.inf if v is None else float(v)


def operate(d: Deployment, ok: dict[str, np.ndarray], *, qps: float | None, concurrency: int | None,
            osl: int) -> Choice | str:
    """The operating point of ``d`` for the load (a Choice), or why it cannot carry it (a reason)."""
    every = np.logical_and.reduce(list(ok.values()))
    prefix = np.cumprod(every).astype(bool)  # concurrencies up to which every constraint holds
    if not prefix[0]:
        return next(k for k, v in ok.items() if not v[0])
    k = int(np.count_nonzero(prefix))  # B[k - 1] is the largest concurrency meeting every constraint
    binding = "max_num_seqs" if k == len(d.B) else next(name for name, v in ok.items() if not v[k])
    if qps is not None:
        replicas = math.ceil(qps / d.rate[k - 1] * (1 - 1e-12))
        i = int(np.argmax(d.rate[:k] >= qps / replicas * (1 - 1e-12)))
        tokens_per_s = qps * osl
    else:
        replicas = math.ceil(concurrency / d.B[k - 1])
        i = int(np.searchsorted(d.B, math.ceil(concurrency / replicas)))
        tokens_per_s = replicas * d.rate[i] * osl
    b = int(d.B[i])
    chips = replicas * d.chips
    usd_hour = None if d.usd_per_chip_hour is None else chips * float(d.usd_per_chip_hour[i])
    return Choice(d, replicas, b, binding, float(d.ttft[i]), float(d.tpot[i]), tokens_per_s / chips,
                  1 / float(d.tpot[i]) if d.tpot[i] > 0 else math.inf,
                  None if usd_hour is None else usd_hour / 3600 / tokens_per_s * 1e6,
                  None if usd_hour is None else usd_hour * 8760 * d.years,
                  None if d.joules_per_token is None else float(d.joules_per_token[i]))


def enumerate_deployments(spec, hardware: list[str], dtypes: list[str], prices: dict[str, float],
                          max_chips: int, need_price: bool, need_energy: bool, rejected: Counter,
                          frameworks: list[str] = (GENERIC,)) -> list[Deployment]:
    """Every chip x framework x plan x precision the chip runs; those the framework does not run on, or that
    cannot be priced for the objective, are counted in ``rejected`` and left out."""
    from infercast.framework import load_framework, resolve_framework
    from infercast.hardware import load_chip

    replica_plans = plans(spec, max_chips)
    out = []
    for hw in hardware:
        chip = load_chip(hw)
        has_price = hw in prices or (chip.price_usd is not None and chip.price_usd.value is not None)
        has_power = chip.tdp_w is not None and chip.tdp_w.value is not None
        for fw in frameworks:
            if not load_framework(resolve_framework(fw).name).runs(chip.vendor):
                rejected[NO_BACKEND] += len(dtypes) * len(replica_plans)
                continue
            for dtype in dtypes:
                for tp, pp, ep in replica_plans:
                    if not chip_runs(chip, dtype):
                        rejected[f"the chip has no {dtype} units"] += 1
                    elif need_price and not has_price:
                        rejected[NO_PRICE] += 1
                    elif need_energy and not has_power:
                        rejected[NO_POWER] += 1
                    else:
                        out.append(Deployment(hw, tp, pp, ep, precision_of(dtype), framework=fw,
                                              price=prices.get(hw)))
    return out


def parse_frameworks(value: str | list[str] | None) -> list[str]:
    """Framework labels ``NAME[@VERSION]``: None the generic profile; 'all' every named framework (generic left
    out), each on the chips it runs on; or a comma list. An unknown name is one line naming --framework."""
    from infercast.framework import framework_names, resolve_framework

    if value is None:
        return [GENERIC]
    if value == "all" or value == ["all"]:
        return [n for n in framework_names() if n != GENERIC]
    names = [x.strip() for x in (value.split(",") if isinstance(value, str) else value) if x.strip()]
    if not names:
        raise InfercastError("--framework: the list is empty; give framework names (vllm,sglang,trtllm) or 'all'")
    out = []
    for n in names:
        label = resolve_framework(n).label
        if label in out:
            raise InfercastError(f"--framework: {n} is named twice")
        out.append(label)
    return out


MEMORY = ("weights do not fit in memory", "one request does not fit in memory (KV cache)")
DEEPER = "a deeper pipeline adds only memory, and half its stages already hold every concurrency"


def evaluated(spec, deployments: list[Deployment], isl: int, osl: int, total: int | None, rejected: Counter,
              near: list | None = None):
    """The deployments that run, evaluated at ``concurrencies(total)`` up to each one's max-num-seqs; the others
    counted in ``rejected`` by reason. A plan of pp > 1 stages is evaluated only where the plan with half the stages (same chip,
    precision and tp) is bound by memory."""
    bound: dict[tuple, bool] = {}
    for d in deployments:
        key = (d.hardware, d.framework, tuple(sorted(d.precision.items())), d.tp, d.ep)
        if d.pp > 1 and not bound.get((*key, d.pp // 2), False):
            rejected[DEEPER] += 1
            continue
        why = evaluate_deployment(spec, d, isl, osl, total=total)
        bound[(*key, d.pp)] = why in MEMORY or (why is None and not d.fits[-1])
        if why is not None:
            rejected[why] += 1
            if why == MEMORY[0] and near is not None:
                near.append(_memory_gap(spec, d))
            continue
        yield d


@dataclass
class Closest:
    constraint: str
    deployment: str
    value: float
    limit: float

    def to_dict(self) -> dict[str, Any]:
        return {"constraint": self.constraint, "deployment": self.deployment, "value": self.value,
                "limit": self.limit, "over_by": self.value / self.limit - 1}

    def sentence(self) -> str:
        unit = "GB" if self.constraint == "memory" else "chips" if self.constraint == "max_chips" else "ms"
        scale = 1e-9 if unit == "GB" else 1 if unit == "chips" else 1e3
        return (f"closest: {self.constraint} on {self.deployment}: {self.value * scale:,.4g} {unit} against "
                f"{self.limit * scale:,.4g} {unit} ({100 * (self.value / self.limit - 1):.3g}% over)")


def search(model: str, *, isl: int, osl: int, slo: str | dict, qps: float | None = None,
           concurrency: int | None = None, hardware: str | list[str] | None = None,
           dtype: str | list[str] | None = None, max_chips: int = DEFAULT_MAX_CHIPS,
           objective: str = "usd_per_mtok", usd_per_chip_hour: str | dict | None = None, top_k: int = DEFAULT_TOP_K,
           num_prompts: int = DEFAULT_NUM_PROMPTS, seed: int = 0, simulate: bool = True,
           framework: str | list[str] | None = None) -> dict[str, Any]:
    """The ranked deployments of ``model`` serving ``qps`` requests/s (Poisson) or ``concurrency`` requests in
    flight (a closed loop) of ``isl`` prompt and ``osl`` output tokens within ``slo`` ('ttft_p99:2000,tpot_p99:50',
    ms), under ``framework`` (a list or 'all' makes it an axis; None: the generic profile): the document of
    ``infercast search --output json`` (DESIGN.md)."""
    from infercast.model import load_model

    spec = load_model(model)
    _check_workload(spec, isl, osl, qps, concurrency)
    slo_ms = parse_slo_ms(slo)
    if objective not in OBJECTIVES:
        raise InfercastError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
                             f"{did_you_mean(objective, OBJECTIVES)}")
    for flag, v in (("--max-chips", max_chips), ("--top-k", top_k), ("--num-prompts", num_prompts)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InfercastError(f"{flag} must be a whole number of at least 1, got {v!r}")
    chips = parse_hardware(hardware)
    dtypes = parse_dtypes(dtype)
    prices = parse_prices(usd_per_chip_hour, chips)
    frameworks = parse_frameworks(framework)
    rejected: Counter = Counter()
    deployments = enumerate_deployments(spec, chips, dtypes, prices, max_chips,
                                        objective in ("usd_per_mtok", "tco_usd"), objective == "joules_per_token",
                                        rejected, frameworks)
    n_candidates = len(deployments) + sum(rejected.values())
    choices: list[Choice] = []
    near: list[Closest] = []
    for d in evaluated(spec, deployments, isl, osl, concurrency, rejected, near):
        ok = limits(d, slo_ms, osl)
        got = operate(d, ok, qps=qps, concurrency=concurrency, osl=osl)
        if isinstance(got, str):
            rejected[f"{got} missed even at concurrency 1" if got != "memory" else "does not fit"] += 1
            if got != "memory":
                worst = max(slo_ms, key=lambda k: float(estimate_of(d, k, osl)[0]) / slo_ms[k])
                near.append(Closest(worst, d.label, float(estimate_of(d, worst, osl)[0]), slo_ms[worst] / 1e3))
            continue
        if got.num_chips > max_chips:
            rejected["needs more than --max-chips chips for the load"] += 1
            near.append(Closest("max_chips", d.label, got.num_chips, max_chips))
            continue
        choices.append(got)
    def rank(c: Choice):
        return c.objective(objective), c.objective("usd_per_mtok"), c.num_chips, c.d.label

    choices.sort(key=rank)
    ranked, notes = _confirm(spec, choices, slo_ms, qps=qps, concurrency=concurrency, isl=isl, osl=osl,
                             top_k=top_k, num_prompts=num_prompts, seed=seed, simulate=simulate, rejected=rejected,
                             frameworks=frameworks)
    ranked.sort(key=rank)  # by the simulated figures where there are some
    front = non_dominated([c.row() for c in choices], "output_tokens_per_s_per_user",
                          OBJECTIVE_KEY[objective], minimize_y=True)
    doc = {
        "model": spec.name,
        "workload": {"isl": isl, "osl": osl, "qps": qps, "concurrency": concurrency, "num_prompts": num_prompts},
        "slo": {f"{k}_s": v / 1e3 for k, v in slo_ms.items()},
        "objective": objective,
        "candidates_evaluated": n_candidates,
        "ranked": [c.row() for c in ranked],
        "pareto": front,
        "rejected": dict(sorted(rejected.items(), key=lambda kv: -kv[1])),
        "closest": None,
        "notes": notes,
        "frameworks": frameworks,
    }
    if not ranked:
        doc["closest"] = min(near, key=lambda c: c.value / c.limit).to_dict() if near else None
        doc["notes"].append("nothing meets the SLOs" + (f"; {min(near, key=lambda c: c.value / c.limit).sentence()}"
                                                        if near else ""))
    return doc


def _check_workload(spec, isl: int, osl: int, qps: float | None, concurrency: int | None) -> None:
    for flag, v in (("--isl", isl), ("--osl", osl)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InfercastError(f"{flag} must be a whole number of at least 1, got {v!r}")
    if isl + osl - 1 > spec.max_position_embeddings:
        raise InfercastError(f"--isl + --osl = {isl + osl} exceeds {spec.name}'s context of "
                             f"{spec.max_position_embeddings} tokens; shorten one")
    if (qps is None) == (concurrency is None):
        raise InfercastError("give exactly one of --qps (Poisson requests per second) or --concurrency (requests "
                             "in flight, a closed loop)")
    if qps is not None and not (isinstance(qps, (int, float)) and math.isfinite(qps) and qps > 0):
        raise InfercastError(f"--qps must be a positive number of requests per second, got {qps!r}")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int)
                                    or concurrency < 1):
        raise InfercastError(f"--concurrency must be a whole number of at least 1, got {concurrency!r}")


def _memory_gap(spec, d: Deployment) -> Closest:
    from infercast.memory import need
    from infercast.scenario import resolve

    sc = resolve(spec, d.hardware, tp=d.tp, pp=d.pp, ep=d.ep, framework=d.framework, **d.precision)
    usable = sc.rates.mem_capacity_bytes * sc.memory.gpu_memory_utilization
    worst = max(need(load, 1.0, 1.0, 0.0, sc.memory).total_bytes for load in sc.loads)
    return Closest("memory", d.label, worst, usable)


def _confirm(spec, choices: list[Choice], slo_ms: dict[str, float], *, qps, concurrency, isl, osl, top_k,
             num_prompts, seed, simulate, rejected: Counter, frameworks: list[str]) -> tuple[list[Choice], list[str]]:
    """The first ``top_k`` choices the simulator confirms (at most 3 x top_k simulations)."""
    notes = [] if frameworks != [GENERIC] else [
        "every deployment runs the generic framework profile (kernels launched one by one, no CUDA graphs): "
        "give --framework vllm,sglang,trtllm (or all) to search over serving engines"]
    if not simulate or spec.is_mla:
        if spec.is_mla:
            notes.append(f"{spec.name} uses multi-head latent attention: search ranks it analytically and does not "
                         f"confirm it with the simulator (simulated: false); run infercast simulate on a choice")
        return choices[:top_k], notes
    ranked: list[Choice] = []
    tried = 0
    for c in choices:
        if len(ranked) == top_k or tried == 3 * top_k:
            break
        tried += 1
        sim = simulate_choice(spec, c, slo_ms, qps=qps, concurrency=concurrency, isl=isl, osl=osl,
                              num_prompts=num_prompts, seed=seed)
        if sim is None:
            ranked.append(c)
            continue
        if sim.meets:
            ranked.append(sim.choice)
        else:
            rejected[f"simulated {sim.missed} misses the SLO"] += 1
    if len(ranked) < min(top_k, len(choices)):
        notes.append(f"{tried} candidates simulated; {len(ranked)} met every SLO")
    return ranked, notes


@dataclass
class Simulated:
    choice: Choice
    meets: bool
    missed: str | None


def simulate_choice(spec, c: Choice, slo_ms: dict[str, float], *, qps, concurrency, isl, osl, num_prompts,
                    seed) -> Simulated | None:
    """One replica of ``c`` on the serving simulator at its share of the load (None: it cannot be simulated)."""
    from infercast.serving import Workload, server
    from infercast.serving.metrics import slo_value
    from infercast.serving.workload import synthetic

    d = c.d
    try:
        srv = server(spec, d.hardware, tp=d.tp, pp=d.pp, ep=d.ep, usd_per_chip_hour=d.price, framework=d.framework,
                     **d.precision)
    except InfercastError:
        return None
    if qps is not None:
        w = Workload(num_prompts=num_prompts, request_rate=qps / c.replicas, isl=isl, osl=osl, seed=seed)
    else:
        n = max(num_prompts, 10 * c.concurrency)
        w = Workload(num_prompts=n, max_concurrency=c.concurrency, isl=isl, osl=osl, seed=seed)
    result = srv.run(synthetic(w, srv.max_model_len), max_concurrency=w.max_concurrency)
    m = result.metrics
    seen = {k: slo_value(m, k) for k in slo_ms}
    missed = next((k for k, v in seen.items() if v is None or v > slo_ms[k]), None)
    tokens_per_s = m["output_throughput"] * c.replicas
    chips = c.num_chips
    per_hour = None if c.usd_per_mtok is None else c.usd_per_mtok * 3600 * c.per_chip * chips / 1e6
    tpot_p50 = m["tpot_ms"]["p50"]
    sim = Choice(d, c.replicas, c.concurrency, c.binding, m["ttft_ms"]["p99"] / 1e3, m["tpot_ms"]["p99"] / 1e3,
                 tokens_per_s / chips, 1e3 / tpot_p50 if tpot_p50 else math.inf,
                 None if per_hour is None else per_hour / 3600 / tokens_per_s * 1e6, c.tco_usd, c.joules_per_token,
                 simulated=True)
    return Simulated(sim, missed is None, missed)


# --- Pareto frontiers --------------------------------------------------------------------------------------


GROUPS = ("hardware", "precision", "framework", "deployment")


def non_dominated(points: list[dict[str, Any]], x: str, y: str, *, minimize_y: bool = False) -> list[dict[str, Any]]:
    """The points no other point beats on both ``x`` (higher is better) and ``y`` (higher, or lower with
    ``minimize_y``), sorted by ``x``; points missing either value are left out. Ties keep the first."""
    pts = [p for p in points if p.get(x) is not None and p.get(y) is not None
           and math.isfinite(p[x]) and math.isfinite(p[y])]
    sign = -1.0 if minimize_y else 1.0
    order = sorted(range(len(pts)), key=lambda i: (-pts[i][x], -sign * pts[i][y], i))
    out, best = [], -math.inf
    for i in order:  # from the highest x down, keep a point when its y beats every point with a higher x
        v = sign * pts[i][y]
        if v > best:
            out.append(pts[i])
            best = v
    return sorted(out, key=lambda p: p[x])


def pareto(model: str, *, isl: int, osl: int, hardware: str | list[str] | None = None,
           dtype: str | list[str] | None = None, max_chips: int = MAX_TP * PIPELINE[-1],
           usd_per_chip_hour: str | dict | None = None, group_by: str = "hardware",
           tp: list[int] | None = None, framework: str | list[str] | None = None) -> dict[str, Any]:
    """Per group (``hardware``; ``precision``: chip and precision; ``framework``: chip and framework;
    ``deployment``: chip, plan, precision and framework), the frontiers of output tokens/s
    per chip and of USD per million tokens against output tokens/s per user, over every plan, precision and
    concurrency 1 .. the framework's max-num-seqs (the steady-state estimate of the module docstring). Plain data:
    {model, workload, frontiers: [{group, metric, points: [...]}]}, each point with KEYS' deployment fields."""
    from infercast.model import load_model

    spec = load_model(model)
    _check_workload(spec, isl, osl, 1.0, None)
    if group_by not in GROUPS:
        raise InfercastError(f"--group-by must be one of {', '.join(GROUPS)}, got {group_by!r}")
    chips = parse_hardware(hardware)
    prices = parse_prices(usd_per_chip_hour, chips)
    frameworks = parse_frameworks(framework)
    rejected: Counter = Counter()
    deployments = enumerate_deployments(spec, chips, parse_dtypes(dtype), prices, max_chips, False, False, rejected,
                                        frameworks)
    if tp is not None:
        deployments = [d for d in deployments if d.tp in tp]
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in evaluated(spec, deployments, isl, osl, None, rejected):
        for p in points_of(d, osl):
            key = {"hardware": d.hardware, "precision": f"{d.hardware} {d.weight_dtype}",
                   "framework": f"{d.hardware} {d.framework}", "deployment": d.label}[group_by]
            groups.setdefault(key, []).append(p)
    frontiers = []
    for key, pts in groups.items():
        for metric, minimize in (("output_tokens_per_s_per_chip", False), ("usd_per_million_tokens", True)):
            front = non_dominated(pts, "output_tokens_per_s_per_user", metric, minimize_y=minimize)
            if front:
                frontiers.append({"group": key, "metric": metric, "points": front})
    return {"model": spec.name, "workload": {"isl": isl, "osl": osl}, "group_by": group_by,
            "frontiers": frontiers, "rejected": dict(rejected), "frameworks": frameworks}


def points_of(d: Deployment, osl: int) -> list[dict[str, Any]]:
    """One point per concurrency that fits: the deployment's fields and its steady-state figures."""
    out = []
    for i in np.flatnonzero(d.fits):
        tokens_per_s = float(d.rate[i]) * osl
        usd = None if d.usd_per_chip_hour is None else \
            float(d.usd_per_chip_hour[i]) * d.chips / 3600 / tokens_per_s * 1e6
        out.append({"hardware": d.hardware, "num_chips": d.chips, "tp": d.tp, "pp": d.pp, "ep": d.ep, "dp": 1,
                    "weight_dtype": d.weight_dtype, "act_dtype": d.act_dtype, "kv_dtype": d.kv_dtype,
                    "framework": d.framework, "concurrency": int(d.B[i]), "ttft_s": float(d.ttft[i]),
                    "tpot_s": float(d.tpot[i]), "output_tokens_per_s_per_chip": tokens_per_s / d.chips,
                    "output_tokens_per_s_per_user": 1 / float(d.tpot[i]) if d.tpot[i] > 0 else None,
                    "usd_per_million_tokens": usd,
                    "joules_per_token": None if d.joules_per_token is None else float(d.joules_per_token[i])})
    return out


def interpolate(front: list[dict[str, Any]], x_key: str, y_key: str, x: float) -> float | None:
    """The frontier's ``y`` at ``x`` (linear between its points, sorted by x); None outside its span."""
    xs = [p[x_key] for p in front]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    return float(np.interp(x, xs, [p[y_key] for p in front]))
