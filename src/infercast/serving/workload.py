"""Workloads: when requests arrive and how long their prompts and outputs are.

Arrivals follow vLLM's ``benchmark_serving.py``: the first request is sent at t = 0 and the
gaps are gamma distributed with shape ``burstiness`` and mean 1 / ``request_rate``
(burstiness 1 is a Poisson process; below 1 burstier, above 1 more regular); an infinite
rate sends everything at t = 0 (offline). A trace file gives every arrival and length.

Lengths are fixed, uniform, normal or lognormal around the means ``isl`` / ``osl`` with a
relative ``length_spread``, or drawn with replacement from a CSV of measured (isl, osl)
pairs. Draws are clipped to at least one token and to the model's context (a request must
satisfy isl + osl <= max_model_len, as vLLM rejects longer ones); ``Requests.clipped``
counts the requests clipping touched. One seed makes a run reproducible: arrivals and each
length get independent streams spawned from it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infercast.errors import InfercastError, pydantic_error_line, shown
from infercast.files import read_text

Distribution = Literal["fixed", "uniform", "normal", "lognormal"]

TRACE_COLUMNS = ("arrival_s", "isl", "osl")
LENGTH_COLUMNS = ("isl", "osl")


class Workload(BaseModel):
    """A synthetic benchmark run, in the words of vLLM's benchmark_serving.py."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_prompts: int = Field(default=1000, gt=0)
    """Requests to send (vLLM --num-prompts, default 1000)."""
    request_rate: float = Field(default=math.inf, gt=0)
    """Mean requests per second; inf sends all at t = 0 (vLLM --request-rate, default inf)."""
    burstiness: float = Field(default=1.0, gt=0)
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
    length_spread: float = Field(default=0.25, ge=0)
    """Relative spread of non-fixed lengths: uniform over mean x [1 - s, 1 + s] (vLLM's --random-range-ratio),
    normal with standard deviation s x mean, lognormal with sigma s (and the given mean)."""
    prefix_len: int = Field(default=0, ge=0)
    """Leading prompt tokens every request shares (a system prompt), which prefix caching can skip."""
    seed: int = 0
    """Seed of every random draw (vLLM --seed, default 0)."""


def from_flags(spec: type[BaseModel], **fields) -> BaseModel:
    """``spec(**fields)``, a bad value being one line that names its flag (--num-prompts, ...)."""
    try:
        return spec(**fields)
    except ValidationError as exc:
        field, _, message = pydantic_error_line(exc).partition(":")
        raise InfercastError(f"--{field.replace('_', '-')}:{message}") from None


def make_workload(**fields) -> Workload:
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


def arrivals(num: int, rate: float, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times: the first at 0, then gamma gaps of mean 1 / rate (all 0 for an infinite rate)."""
    if math.isinf(rate):
        return np.zeros(num)
    theta = 1.0 / (rate * burstiness)  # vLLM: np.random.gamma(shape=burstiness, scale=theta)
    gaps = rng.gamma(shape=burstiness, scale=theta, size=num - 1)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def lengths(num: int, mean: int, dist: Distribution, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Integer lengths around ``mean`` (before clipping)."""
    if dist == "fixed" or spread == 0:
        return np.full(num, mean, dtype=np.int64)
    if dist == "uniform":
        lo, hi = math.floor(mean * (1 - spread)), math.ceil(mean * (1 + spread))
        return rng.integers(lo, hi + 1, size=num)
    if dist == "normal":
        return np.rint(rng.normal(mean, spread * mean, size=num)).astype(np.int64)
    mu = math.log(mean) - spread**2 / 2  # lognormal with mean exp(mu + sigma^2 / 2) = mean
    return np.rint(rng.lognormal(mu, spread, size=num)).astype(np.int64)


def _clip(isl: np.ndarray, osl: np.ndarray, max_model_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    isl2 = np.clip(isl, 1, max_model_len - 1)
    osl2 = np.clip(osl, 1, max_model_len - isl2)
    return isl2, osl2, int(np.count_nonzero((isl2 != isl) | (osl2 != osl)))


def synthetic(w: Workload, max_model_len: int, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> Requests:
    """Requests of a synthetic run; ``pairs`` (isl, osl arrays) replace the length distributions."""
    if w.isl + w.osl > max_model_len and pairs is None:
        raise InfercastError(f"--isl {w.isl} + --osl {w.osl} exceeds max-model-len {max_model_len}; shorten them")
    seeds = np.random.SeedSequence(w.seed).spawn(3)
    rng_arrival, rng_isl, rng_osl = (np.random.default_rng(s) for s in seeds)
    t = arrivals(w.num_prompts, w.request_rate, w.burstiness, rng_arrival)
    if pairs is None:
        isl = lengths(w.num_prompts, w.isl, w.isl_dist, w.length_spread, rng_isl)
        osl = lengths(w.num_prompts, w.osl, w.osl_dist, w.length_spread, rng_osl)
    else:
        pick = rng_isl.integers(0, len(pairs[0]), size=w.num_prompts)
        isl, osl = pairs[0][pick], pairs[1][pick]
    isl, osl, clipped = _clip(isl, osl, max_model_len)
    return Requests(t, isl, osl, clipped)


# Longest prompt or output a length file may give: above any model's context (lengths are clipped to
# it), and small enough to stay exact in the int64 arrays the simulator uses.
MAX_TOKENS = 2**31 - 1


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


def _read_csv(path: str, columns: tuple[str, ...], flag: str) -> dict[str, np.ndarray]:
    header, rows = csv_rows(path, flag)
    missing = [c for c in columns if c not in header]
    if missing:
        raise InfercastError(f"{flag} {path}: missing column(s) {', '.join(missing)}; "
                             f"expected a header with {','.join(columns)} (docs/data-formats.md)")
    if not rows:
        raise InfercastError(f"{flag} {path}: no rows")
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
                if not (math.isfinite(v) and v >= 0):
                    raise InfercastError(f"{flag} {path}, line {i}: arrival_s must be a finite time >= 0, got {v!r}")
            elif not (math.isfinite(v) and 1 <= v <= MAX_TOKENS and v == int(v)):
                raise InfercastError(f"{flag} {path}, line {i}: {c} must be a whole number of tokens from 1 to "
                                     f"{MAX_TOKENS:,}, got {cell.strip()}")
            values.append(v)
        out[c] = np.asarray(values) if c == "arrival_s" else np.asarray(values, dtype=np.int64)
    return out


def read_trace(path: str, max_model_len: int) -> Requests:
    """A trace CSV with columns arrival_s, isl, osl (more columns are ignored); sorted by arrival."""
    cols = _read_csv(path, TRACE_COLUMNS, "--trace")
    order = np.argsort(cols["arrival_s"], kind="stable")
    isl, osl, clipped = _clip(cols["isl"][order], cols["osl"][order], max_model_len)
    return Requests(cols["arrival_s"][order], isl, osl, clipped)


def read_lengths(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Measured (isl, osl) pairs to draw lengths from: a CSV with columns isl and osl."""
    cols = _read_csv(path, LENGTH_COLUMNS, "--lengths")
    return cols["isl"], cols["osl"]


def requests_for(w: Workload, max_model_len: int, *, trace: str | None = None,
                 lengths: str | None = None) -> Requests:
    """The requests of a run: a trace file's, or synthetic ones (lengths drawn from a CSV if given)."""
    if trace is not None:
        if lengths is not None:
            raise InfercastError("--trace gives the lengths too; drop --lengths")
        return read_trace(trace, max_model_len)
    return synthetic(w, max_model_len, read_lengths(lengths) if lengths is not None else None)
