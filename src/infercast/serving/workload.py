"""Workloads: when requests arrive and how long their prompts and outputs are.

Arrivals follow vLLM's ``benchmark_serving.py``: the first request is sent at t = 0 and the
gaps are gamma distributed with shape ``burstiness`` and mean 1 / ``request_rate``
(burstiness 1 is a Poisson process; below 1 burstier, above 1 more regular); an infinite
rate sends everything at t = 0 (offline). A trace file gives every arrival and length.

Lengths are fixed, uniform, normal or lognormal around the means ``isl`` / ``osl`` with a
relative ``length_spread``, or drawn with replacement from a CSV of measured (isl, osl)
pairs. Draws are clipped to at least one token and to the model's context (a request must
satisfy isl + osl <= max_model_len, as vLLM rejects longer ones); ``Requests.clipped``
counts the requests clipping touched, and a run whose draws clip more than MAX_CLIPPED_SHARE
of its requests is refused (clipping moves the mean: a normal spread of 0.25 at isl 3968, osl
128 averaged 116 output tokens in a context of 4096), naming a smaller --length-spread that
does not. A trace or lengths file is never clipped: a row longer than the context is an error
naming its line. One seed makes a run reproducible: arrivals and each length get independent
streams spawned from it.

Bounds: at most MAX_REQUESTS requests a run, arrivals within MAX_ARRIVAL_S of the start.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infercast.errors import InfercastError, pydantic_error_line, shown
from infercast.files import read_text

Distribution = Literal["fixed", "uniform", "normal", "lognormal"]

TRACE_COLUMNS = ("arrival_s", "isl", "osl")
LENGTH_COLUMNS = ("isl", "osl")

MAX_REQUESTS = 10_000_000
"""Most requests a run simulates: 10 million Poisson requests at 512 + 128 tokens took 75 s and 7 GB on a
workstation core (1e8 ran 9 minutes and was killed at 24 GB; 1e12 asked numpy for 7 TiB)."""
MAX_ARRIVAL_S = 1e9
"""Latest arrival, in seconds from the start of the run (31 years): far beyond any benchmark, and far from
the float range where the event loop's sums of step times would lose every digit or overflow."""
MAX_CLIPPED_SHARE = 0.01
"""Share of a synthetic run's requests that clipping to [1, max_model_len] may touch before it is refused."""
MAX_LENGTH_SPREAD = 10.0
"""Largest --length-spread: a lognormal sigma of 10 already puts the median 1e21 below the mean."""
# Longest prompt or output a length file may give: above any model's context, and small enough to stay
# exact in the int64 arrays the simulator uses.
MAX_TOKENS = 2**31 - 1
# Flags a lengths file replaces (it gives every length), and those a trace replaces (every arrival too):
# given with them, they would be ignored.
LENGTHS_REPLACE = ("isl", "osl", "isl_dist", "osl_dist", "length_spread")
TRACE_REPLACES = ("num_prompts", "request_rate", "burstiness", *LENGTHS_REPLACE, "seed")


class Workload(BaseModel):
    """A synthetic benchmark run, in the words of vLLM's benchmark_serving.py."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_prompts: int = Field(default=1000, gt=0)
    """Requests to send (vLLM --num-prompts, default 1000; at most MAX_REQUESTS)."""
    request_rate: float = math.inf
    """Mean requests per second; inf sends all at t = 0 (vLLM --request-rate, default inf)."""
    burstiness: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Shape of the gamma-distributed gaps: 1 is Poisson (vLLM --burstiness)."""
    max_concurrency: int | None = Field(default=None, gt=0)
    """Most requests in flight: a client holds the next request until one finishes (vLLM --max-concurrency)."""
    isl: int = Field(default=1024, gt=0)
    """Mean prompt tokens (vLLM --random-input-len, default 1024)."""
    osl: int = Field(default=128, gt=0)
    """Mean output tokens (vLLM --random-output-len, default 128)."""
    isl_dist: Distribution = "fixed"
    """Distribution of prompt lengths around isl."""
    osl_dist: Distribution = "fixed"
    """Distribution of output lengths around osl."""
    length_spread: float = Field(default=0.25, ge=0, le=MAX_LENGTH_SPREAD)
    """Relative spread of non-fixed lengths: uniform over mean x [1 - s, 1 + s] (vLLM's --random-range-ratio),
    normal with standard deviation s x mean, lognormal with sigma s (and the given mean)."""
    prefix_len: int = Field(default=0, ge=0)
    """Leading prompt tokens every request shares (a system prompt), shorter than every prompt; only
    enable_prefix_caching makes it count (without it each prompt is computed whole, as in vLLM)."""
    seed: int = Field(default=0, ge=0)
    """Seed of every random draw (vLLM --seed, default 0; numpy takes no negative seed)."""
    beam_width: int = Field(default=1, ge=1, le=1024)
    """Beams of a beam search per request (vLLM's use_beam_search with best_of): each decodes that many
    sequences sharing the prompt's KV cache and returns the best."""
    n: int = Field(default=1, ge=1, le=1024)
    """Completions sampled in parallel per request (vLLM's n), sharing the prompt's KV cache."""

    @field_validator("num_prompts")
    @classmethod
    def _bounded(cls, n: int) -> int:
        if n > MAX_REQUESTS:
            raise ValueError(f"at most {MAX_REQUESTS:,} requests a run (that many take about 75 s and 7 GB), got "
                             f"{n:,}; a steady state is reached long before")
        return n

    @field_validator("request_rate")
    @classmethod
    def _positive_rate(cls, rate: float) -> float:
        if not rate > 0:  # NaN too
            raise ValueError(f"must be a positive number of requests per second, or inf to send all at t = 0; "
                             f"got {rate!r}")
        return rate


def from_flags(spec: type[BaseModel], **fields) -> BaseModel:
    """``spec(**fields)``, a bad value being one line that names its flag (--num-prompts, ...)."""
    try:
        return spec(**fields)
    except ValidationError as exc:
        field, _, message = pydantic_error_line(exc).partition(":")
        raise InfercastError(f"--{field.replace('_', '-')}:{message}") from None


def make_workload(*, trace: str | None = None, lengths: str | None = None, **fields) -> Workload:
    """The workload of the given fields; with a ``trace`` (which gives every arrival and length) or a
    ``lengths`` file (every length), a field it replaces is an error rather than silently ignored."""
    for flag, path, replaced, what in (("--trace", trace, TRACE_REPLACES, "every arrival and length"),
                                       ("--lengths", lengths, LENGTHS_REPLACE, "every length")):
        given = [f for f in replaced if f in fields] if path is not None else []
        if given:
            name = "--" + given[0].replace("_", "-")
            also = " (or --offline)" if given[0] == "request_rate" else ""
            raise InfercastError(f"{flag} gives {what}, so {name} would be ignored; drop {name}{also}")
    return from_flags(Workload, **fields)


@dataclass(frozen=True)
class Requests:
    """The requests of a run, sorted by arrival."""

    arrival_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    clipped: int = 0
    """Requests whose drawn lengths were clipped to [1, max_model_len]."""

    def __len__(self) -> int:
        return len(self.arrival_s)

    def realised(self) -> dict[str, float | int]:
        """Mean, min and max of the prompt and output lengths actually simulated."""
        out: dict[str, float | int] = {}
        for name, x in (("isl", self.isl), ("osl", self.osl)):
            out |= {f"{name}_mean": float(x.mean()), f"{name}_min": int(x.min()), f"{name}_max": int(x.max())}
        return out


def arrivals(num: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times: the first at 0, then gamma gaps of mean 1 / rate (all 0 for an infinite rate)."""
    if math.isinf(rate):
        return np.zeros(num)
    scale = rate * burstiness  # underflows to 0 for absurd inputs: gaps of inf, which synthetic() refuses
    theta = 1.0 / scale if scale > 0 else math.inf  # vLLM: np.random.gamma(shape=burstiness, scale=theta)
    gaps = rng.gamma(shape=burstiness, scale=theta, size=num - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def lengths(num: int, mean: int, dist: Distribution, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Integer lengths around ``mean`` (before clipping; draws beyond [0, MAX_TOKENS] are held at its ends,
    where clipping finds them, so that a wide spread never overflows the integer cast)."""
    if dist == "fixed" or spread == 0:
        return np.full(num, mean, dtype=np.int64)
    if dist == "uniform":
        lo, hi = math.floor(mean * (1 - spread)), math.ceil(mean * (1 + spread))
        return rng.integers(lo, hi + 1, size=num)
    if dist == "normal":
        x = rng.normal(mean, spread * mean, size=num)
    else:
        mu = math.log(mean) - spread**2 / 2  # lognormal with mean exp(mu + sigma^2 / 2) = mean
        x = rng.lognormal(mu, spread, size=num)
    return np.rint(np.clip(x, 0, MAX_TOKENS)).astype(np.int64)


def _clip(isl: np.ndarray, osl: np.ndarray, max_model_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    isl2 = np.clip(isl, 1, max_model_len - 1)
    osl2 = np.clip(osl, 1, max_model_len - isl2)
    return isl2, osl2, int(np.count_nonzero((isl2 != isl) | (osl2 != osl)))


def _draw(w: Workload, max_model_len: int, pairs: tuple[np.ndarray, np.ndarray] | None,
          arrive: bool = True) -> Requests:
    seeds = np.random.SeedSequence(w.seed).spawn(3)
    rng_arrival, rng_isl, rng_osl = (np.random.default_rng(s) for s in seeds)
    t = arrivals(w.num_prompts, w.request_rate, w.burstiness, rng_arrival) if arrive else np.zeros(w.num_prompts)
    if pairs is None:
        isl = lengths(w.num_prompts, w.isl, w.isl_dist, w.length_spread, rng_isl)
        osl = lengths(w.num_prompts, w.osl, w.osl_dist, w.length_spread, rng_osl)
    else:
        pick = rng_isl.integers(0, len(pairs[0]), size=w.num_prompts)
        isl, osl = pairs[0][pick], pairs[1][pick]
    isl, osl, clipped = _clip(isl, osl, max_model_len)
    return Requests(t, isl, osl, clipped)


def _smaller_spread(w: Workload, max_model_len: int) -> float | None:
    """About the largest spread whose draws clip at most half the allowed share, bisected on (up to 100,000
    of) the run's own draws and rounded down to two digits; None if it rounds to 0."""
    n = min(w.num_prompts, 100_000)

    def ok(spread: float) -> bool:
        trial = w.model_copy(update={"num_prompts": n, "length_spread": spread})
        return _draw(trial, max_model_len, None, arrive=False).clipped <= MAX_CLIPPED_SHARE / 2 * n

    lo, hi = 0.0, w.length_spread  # 0 clips nothing (isl + osl fit), the given spread too much
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    if lo <= 0:
        return None
    digits = 10.0 ** (math.floor(math.log10(lo)) - 1)
    return round(math.floor(lo / digits) * digits, 12)


def synthetic(w: Workload, max_model_len: int, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> Requests:
    """Requests of a synthetic run; ``pairs`` (isl, osl arrays) replace the length distributions. Refused
    when the draws would clip more than MAX_CLIPPED_SHARE of the requests, or arrive beyond MAX_ARRIVAL_S."""
    if w.isl + w.osl > max_model_len and pairs is None:
        raise InfercastError(f"--isl {w.isl} + --osl {w.osl} exceeds max-model-len {max_model_len}; shorten them")
    r = _draw(w, max_model_len, pairs)
    last = r.arrival_s[-1]
    if not last <= MAX_ARRIVAL_S:  # NaN too
        span = f"{last:.3g} s" if math.isfinite(last) else "an unbounded time"
        raise InfercastError(f"--request-rate {w.request_rate:g}: {w.num_prompts:,} requests would arrive over {span}, "
                             f"beyond the {MAX_ARRIVAL_S:.0e} s the simulator takes; raise --request-rate (or "
                             f"--burstiness) or lower --num-prompts")
    if r.clipped > MAX_CLIPPED_SHARE * len(r):
        if pairs is not None:
            raise InfercastError(f"--lengths: {r.clipped:,} of {len(r):,} drawn pairs exceed max-model-len "
                                 f"{max_model_len}; drop those pairs")
        smaller = _smaller_spread(w, max_model_len)
        fix = (f"use --length-spread {smaller:g} or less" if smaller is not None
               else "use fixed --isl-dist/--osl-dist")
        if np.count_nonzero(r.isl + r.osl == max_model_len) > r.clipped / 2:  # mostly clipped at the context
            fix += " or shorter --isl/--osl"
        raise InfercastError(f"--length-spread {w.length_spread:g}: {100 * r.clipped / len(r):.1f}% of the requests "
                             f"({r.clipped:,} of {len(r):,}) draw a length below 1 token or beyond max-model-len "
                             f"{max_model_len} (--isl-dist {w.isl_dist}, --osl-dist {w.osl_dist}), and clipping more "
                             f"than {MAX_CLIPPED_SHARE:.0%} of them would move the mean; {fix}")
    return r


def csv_rows(path: str, flag: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a UTF-8 CSV, header names stripped of spaces; malformed CSV
    is one line naming ``flag``, the file and the line."""
    text = read_text(path, flag)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise InfercastError(f"{flag} {path}, line {reader.line_num + 1}: not valid CSV ({exc})") from None
    return header, rows


def _read_csv(path: str, columns: tuple[str, ...], flag: str, max_model_len: int) -> dict[str, np.ndarray]:
    header, rows = csv_rows(path, flag)
    missing = [c for c in columns if c not in header]
    if missing:
        raise InfercastError(f"{flag} {path}: missing column(s) {', '.join(missing)}; "
                             f"expected a header with {','.join(columns)} (docs/data-formats.md)")
    if not rows:
        raise InfercastError(f"{flag} {path}: no rows")
    if flag == "--trace" and len(rows) > MAX_REQUESTS:
        raise InfercastError(f"{flag} {path}: {len(rows):,} rows, more than the {MAX_REQUESTS:,} requests the "
                             f"simulator takes in a run; split the trace")
    out = {}
    for c in columns:
        values = []
        for i, row in rows:
            cell = row[c] or ""  # a short row leaves its last cells out
            try:
                v = float(cell)
            except (TypeError, ValueError):
                raise InfercastError(f"{flag} {path}, line {i}: column {c} is {shown(cell)}, not a number") from None
            if c == "arrival_s":
                if not 0 <= v <= MAX_ARRIVAL_S:  # NaN too
                    raise InfercastError(f"{flag} {path}, line {i}: arrival_s must be seconds from the start of the "
                                         f"run, from 0 to {MAX_ARRIVAL_S:.0e}, got {v!r}; subtract the first arrival "
                                         f"(timestamps are not accepted)")
            elif not (math.isfinite(v) and 1 <= v <= MAX_TOKENS and v == int(v)):
                raise InfercastError(f"{flag} {path}, line {i}: {c} must be a whole number of tokens from 1 to "
                                     f"{MAX_TOKENS:,}, got {cell.strip()}")
            values.append(v)
        out[c] = np.asarray(values) if c == "arrival_s" else np.asarray(values, dtype=np.int64)
    total = out["isl"] + out["osl"]
    over = np.flatnonzero(total > max_model_len)
    if len(over):  # vLLM rejects such a request; clipping it would simulate another one
        j = over[0]
        raise InfercastError(f"{flag} {path}, line {rows[j][0]}: isl {out['isl'][j]} + osl {out['osl'][j]} = "
                             f"{total[j]} tokens exceeds max-model-len {max_model_len} ({len(over):,} of "
                             f"{len(rows):,} rows do); drop or shorten those rows")
    return out


def read_trace(path: str, max_model_len: int) -> Requests:
    """A trace CSV with columns arrival_s, isl, osl (more columns are ignored); sorted by arrival. A row
    longer than ``max_model_len`` is an error."""
    cols = _read_csv(path, TRACE_COLUMNS, "--trace", max_model_len)
    order = np.argsort(cols["arrival_s"], kind="stable")
    return Requests(cols["arrival_s"][order], cols["isl"][order], cols["osl"][order])


def read_lengths(path: str, max_model_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Measured (isl, osl) pairs to draw lengths from: a CSV with columns isl and osl, none longer than
    ``max_model_len``."""
    cols = _read_csv(path, LENGTH_COLUMNS, "--lengths", max_model_len)
    return cols["isl"], cols["osl"]


def requests_for(w: Workload, max_model_len: int, *, trace: str | None = None,
                 lengths: str | None = None) -> Requests:
    """The requests of a run: a trace file's, or synthetic ones (lengths drawn from a CSV if given)."""
    if trace is not None:
        if lengths is not None:
            raise InfercastError("--trace gives the lengths too; drop --lengths")
        return read_trace(trace, max_model_len)
    return synthetic(w, max_model_len, read_lengths(lengths, max_model_len) if lengths is not None else None)
