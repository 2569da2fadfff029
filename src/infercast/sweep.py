"""Sweeps: a grid of deployments and workloads, evaluated and written as a dataset, chunk by chunk.

A grid has categorical axes (model, chip or system, the tp/pp/ep/dp plan, dtypes, any other option
of ``resolve()``) and numeric ones (batch, isl, osl, and what-if values of chip rates, efficiencies and
prices). The categorical axes are a short outer loop of ``resolve``; the numeric axes broadcast
through one ``evaluate`` call per categorical combination (never a Python loop over batch or
lengths). A combination ``resolve`` refuses (tp not dividing the heads, a plan larger than the
system, ...) is skipped and counted by its reason, as are (isl, osl) pairs beyond the model's
context.

Rows come in a fixed order: combinations in the order of their axes (the first varies slowest),
then within each the (isl, osl) pairs, the what-if values and the batch (the fastest). The rows are
cut into chunks of about ``chunk_rows`` before any work, so the same grid always gives the same
chunks whichever executor computes them. Each chunk is one part file of the dataset folder
(``infercast.dataset``: written whole, then recorded); ``resume`` recomputes only the chunks whose
record is missing. Executors are plain callables (``serial``, ``process_pool``, ``ray_executor``): they
take the jobs and yield the finished parts in order.

One row holds the inputs (``input.<option>``: the axes as given) and then the estimate's flattened
columns (``ttft_s``, ``decode.tpot_s``, ``memory.fits``, ...) exactly as ``evaluate`` returns them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from infercast.dataset import (
    SUMMARY_FILE,
    done_chunks,
    output_format,
    prepare_folder,
    require,
    require_pyarrow,
    write_atomic,
    write_part,
)
from infercast.errors import InfercastError, pydantic_error_line, shown
from infercast.options import DEPLOYMENT, Option, resolve_kwargs

MAX_CONFIGS = 10**8
"""Largest sweep run without --yes: about 7 minutes and 14 GB of Parquet on a 2-core machine (10.3 million
configurations of llama-3-70b took 42 s and 1.45 GB: benchmarks/bench_sweep.py)."""
DEFAULT_CHUNK_ROWS = 1_000_000
"""Rows per part file: about 20-200 MB of Parquet and 0.5 GB of memory while it is built."""
MAX_AXIS_VALUES = 10_000_000
"""Most values one range may expand to."""

CATEGORICAL: tuple[Option, ...] = tuple(o for o in DEPLOYMENT if not o.pairs and o.type is not bool
                                        and o.name not in ("pp_stages", "calibration"))
"""Options of ``resolve()`` a sweep takes as lists (an outer loop of ``resolve``), in loop order."""
FIXED = tuple(o for o in DEPLOYMENT if o not in CATEGORICAL and o.name not in ("efficiency", "cost"))
"""Options that keep one value for the whole sweep (pp_stages, sequence_parallel, calibration, comm, energy)."""
NUMERIC = ("batch", "isl", "osl")
WHATIF = {"rates": "chip rate", "efficiency": "efficiency", "cost": "cost"}
"""Groups of what-if axes (``evaluate``'s rates=, efficiency=, cost=): KEY=LIST each."""
DEFAULTS = {"batch": (1,), "isl": (128,), "osl": (128,)}


# --- values: lists and ranges ------------------------------------------------------------------------------------


def parse_values(flag: str, value: Any, kind: type) -> tuple:
    """A list of values from a flag or a spec key: '1,2,4', '1..512:x2' (geometric), '128..2048:128'
    (a step), 'h100-sxm,b200', or a YAML list or scalar of them. Every value is checked for its kind;
    an empty list, a bad number or an empty range is one line naming ``flag``."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out: list = []
    for item in items:
        if isinstance(item, bool) or item is None or isinstance(item, (dict, list)):
            raise InfercastError(f"{flag}: expected {_kind_name(kind)} values, got {shown(item)}")
        if isinstance(item, (int, float)) and not isinstance(item, str):
            out.append(_checked(flag, item, kind))
            continue
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            if ".." in part and kind is not str:
                out.extend(_range(flag, part, kind))
            else:
                out.append(_checked(flag, part, kind))
    if not out:
        raise InfercastError(f"{flag}: the list is empty; give values such as {_example(kind)}")
    if len(out) > MAX_AXIS_VALUES:
        raise InfercastError(f"{flag}: {len(out):,} values, more than {MAX_AXIS_VALUES:,} on one axis; use a "
                             f"coarser step")
    twice = [v for v, n in Counter(out).items() if n > 1]
    if twice:
        raise InfercastError(f"{flag}: {twice[0]} is listed twice; name each value once (it would repeat rows)")
    return tuple(out)


def _kind_name(kind: type) -> str:
    return {int: "whole-number", float: "numeric", str: "text"}[kind]


def _example(kind: type) -> str:
    return {int: "1,2,4 or a range 1..512:x2", float: "0.5,1,2 or a range 0.5..2:0.25", str: "a,b"}[kind]


def _number(flag: str, text: str, kind: type):
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise InfercastError(f"{flag}: {shown(text)} is not a number; give values such as {_example(kind)}") from None
    if not math.isfinite(x):
        raise InfercastError(f"{flag}: {text} is not a finite number")
    if kind is int:
        if x != int(x) or x < 1:
            raise InfercastError(f"{flag}: {text} is not a whole number of at least 1")
        return int(x)
    return x


def _checked(flag: str, value: Any, kind: type):
    if kind is str:
        text = str(value).strip()
        if not text:
            raise InfercastError(f"{flag}: an empty name in the list")
        return text
    return _number(flag, value, kind)


def _range(flag: str, text: str, kind: type) -> list:
    """'A..B' (step 1), 'A..B:S' (step S) or 'A..B:xF' (times F), both ends included when reached."""
    span, _, step = text.partition(":")
    lo_text, _, hi_text = span.partition("..")
    lo, hi = _number(flag, lo_text, kind), _number(flag, hi_text, kind)
    if hi < lo:
        raise InfercastError(f"{flag}: the range {text} is empty ({hi_text} is below {lo_text}); write it "
                             f"low..high")
    geometric = step.strip().lower().startswith("x")
    s = _number(flag, step.strip()[1:] if geometric else step or "1", float)
    if (geometric and not s > 1) or (not geometric and not s > 0):
        raise InfercastError(f"{flag}: the range {text} needs a step above 0 or a factor above 1 "
                             f"(e.g. 1..512:x2)")
    if geometric and lo <= 0:
        raise InfercastError(f"{flag}: a geometric range must start above 0, got {text}")
    if (math.log(hi / lo, s) if geometric else (hi - lo) / s) + 1 > MAX_AXIS_VALUES:
        raise InfercastError(f"{flag}: the range {text} gives more than {MAX_AXIS_VALUES:,} values; use a "
                             f"coarser step")
    out, x, i = [], float(lo), 0
    while x <= hi * (1 + 1e-12):
        v = round(x) if kind is int else x
        if not out or v != out[-1]:
            out.append(v)
        i += 1
        x = lo * s**i if geometric else lo + i * s
    return out


# --- the grid ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A sweep's axes, validated: plain data (it travels to worker processes and into ``_sweep.json``)."""

    axes: tuple[tuple[str, tuple], ...]
    """Categorical axes (option name, values), in loop order: the first varies slowest."""
    fixed: tuple[tuple[str, Any], ...]
    """Options with one value for every row (resolve keywords as flags give them)."""
    batch: tuple[int, ...]
    isl: tuple[int, ...]
    osl: tuple[int, ...]
    whatif: tuple[tuple[str, str, tuple[float, ...]], ...]
    """(group, key, values): evaluate's rates=, efficiency= and cost= axes."""
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    @property
    def combinations(self) -> int:
        return math.prod(len(v) for _, v in self.axes)

    @property
    def whatif_size(self) -> int:
        return math.prod(len(v) for _, _, v in self.whatif)

    @property
    def size(self) -> int:
        """Configurations before any is skipped."""
        return self.combinations * len(self.batch) * len(self.isl) * len(self.osl) * self.whatif_size

    def combination(self, index: int) -> dict[str, Any]:
        """The categorical values of combination ``index`` (row-major over the axes)."""
        out = {}
        for name, values in reversed(self.axes):
            index, i = divmod(index, len(values))
            out[name] = values[i]
        return dict(reversed(list(out.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"axes": {k: list(v) for k, v in self.axes}, "fixed": dict(self.fixed), "batch": list(self.batch),
                "isl": list(self.isl), "osl": list(self.osl),
                "whatif": [[g, k, list(v)] for g, k, v in self.whatif], "chunk_rows": self.chunk_rows}

    @property
    def input_columns(self) -> list[tuple[str, str]]:
        """(column, kind) of the inputs: the categorical axes, the numeric ones and the what-ifs."""
        kinds = {o.name: o.type for o in CATEGORICAL}
        out = [(f"input.{n}", {int: "int", float: "float", str: "str"}[kinds[n]]) for n, _ in self.axes]
        out += [(f"input.{n}", "int") for n in NUMERIC]
        out += [(f"input.{g}.{k}", "float") for g, k, _ in self.whatif]
        return out


def make_grid(values: dict[str, Any], *, chunk_rows: int = DEFAULT_CHUNK_ROWS, spec: str | None = None,
              from_spec: frozenset[str] = frozenset()) -> Grid:
    """The grid of flag or spec values (option names as keys: lists, ranges or scalars; ``rates``,
    ``efficiency`` and ``cost`` map keys to lists). Every value is checked here, before any work: a bad
    one is one line naming its flag, or the ``spec`` file and key for the keys ``from_spec``."""
    def flag(name: str) -> str:
        return f"--spec {spec}: {name}" if name in from_spec else "--" + name.replace("_", "-")

    known = {o.name for o in DEPLOYMENT} | set(NUMERIC) | set(WHATIF)
    for key in values:
        if key not in known:
            raise InfercastError(f"{flag(key)}: unknown key; use option names such as model, hardware, tp, batch")
    if values.get("model") in (None, "", []):
        raise InfercastError(f"{flag('model')}: give at least one model")
    if values.get("hardware") in (None, "", []) and values.get("system") in (None, "", []):
        raise InfercastError(f"give {flag('hardware')} (chips) or {flag('system')} (named systems)")
    axes = []
    for o in CATEGORICAL:
        if values.get(o.name) is None:
            continue
        vals = parse_values(flag(o.name), values[o.name], o.type)
        if o.choices:
            for v in vals:
                if v not in o.choices:
                    raise InfercastError(f"{flag(o.name)}: {shown(v)} is not one of {', '.join(o.choices)}")
        _check_names(flag(o.name), o.name, vals)
        axes.append((o.name, vals))
    fixed = []
    for o in FIXED:
        v = values.get(o.name)
        if v is None or v is False or v == () or v == []:
            continue
        if o.pairs:  # kept as KEY=VALUE strings: hashable, and what resolve_kwargs reads
            v = tuple(f"{k}={x!r}" for k, x in pairs_of(flag(o.name), v, single=True).items())
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        fixed.append((o.name, v))
    numeric = {n: parse_values(flag(n), values[n], int) if values.get(n) is not None else DEFAULTS[n]
               for n in NUMERIC}
    whatif = []
    for group in WHATIF:
        for key, vals in pairs_of(flag(group), values.get(group)).items():
            whatif.append((group, key, vals))
    grid = Grid(tuple(axes), tuple(fixed), numeric["batch"], numeric["isl"], numeric["osl"], tuple(whatif),
                int(chunk_rows))
    _check_whatif(grid, flag)
    if chunk_rows < 1:
        raise InfercastError(f"--chunk-rows must be at least 1, got {chunk_rows}")
    return grid


def pairs_of(flag: str, value: Any, *, single: bool = False) -> dict[str, Any]:
    """KEY=LIST strings (flags, repeatable) or a mapping (a spec) as {key: values}; ``single``: one number each."""
    if not value:
        return {}
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        items = []
        for pair in value:
            key, sep, text = pair.partition("=")
            if not sep or not key.strip():
                raise InfercastError(f"{flag} {pair!r}: expected KEY=VALUES, e.g. {flag} bandwidth=0.6,0.8")
            items.append((key.strip(), text))
    else:
        raise InfercastError(f"{flag}: expected KEY=VALUES pairs (a mapping in a spec), got {shown(value)}")
    out: dict[str, Any] = {}
    for key, text in items:
        if key in out:
            raise InfercastError(f"{flag} {key}: given twice; give each key once with all its values")
        vals = parse_values(f"{flag} {key}", text, float)
        if single:
            if len(vals) != 1:
                raise InfercastError(f"{flag} {key}: takes one value for the whole sweep, got {len(vals)}")
            vals = vals[0]
        out[key] = vals
    return out


def _check_names(flag: str, name: str, values: tuple) -> None:
    """Ids and formats checked one by one, before the loop: an unknown one is an error, not a skip."""
    from infercast.formats import SCHEMES, get_format
    from infercast.hardware import load_chip
    from infercast.model import load_model
    from infercast.system import load_system

    load = {"model": load_model, "hardware": load_chip, "system": load_system}.get(name)
    for v in values:
        try:
            if load is not None:
                load(v)
            elif name in ("dtype", "weight_dtype", "act_dtype", "kv_cache_dtype"):
                get_format(v, flag)
            elif name == "quantization" and v.lower() not in SCHEMES:
                raise InfercastError(f"unknown scheme '{v}'; use one of {', '.join(SCHEMES)}")
        except InfercastError as exc:
            message = str(exc)
            raise InfercastError(message if message.startswith(flag) else f"{flag}: {message}") from None


def _check_whatif(grid: Grid, flag: Callable[[str], str]) -> None:
    """What-if keys and values as ``evaluate`` checks them, on a small probe (an unknown key is one line)."""
    if not grid.whatif:
        return
    from infercast.evaluation import evaluate

    sc = _probe_scenario()
    for group, key, vals in grid.whatif:
        try:
            a = np.asarray(vals)  # with a batch of the same shape: evaluate needs one axis to carry the shape
            evaluate(sc, batch=np.ones_like(a), **{group: {key: a}})
        except InfercastError as exc:
            rest = str(exc).removeprefix(WHATIF[group]).lstrip(": ")
            raise InfercastError(f"{flag(group)} {rest if rest.startswith(key) else f'{key}: {rest}'}") from None


@cache
def _probe_scenario():
    from infercast.scenario import resolve

    return resolve("llama-2-7b", "h100-sxm")


def load_spec(path: str) -> dict[str, Any]:
    """A YAML sweep spec: a mapping of option names (snake_case, as the web API) to values, lists or
    ranges; ``rates``, ``efficiency`` and ``cost`` map keys to lists. An unknown key is one line naming it."""
    import yaml
    from pydantic import ConfigDict, ValidationError, create_model

    from infercast.files import read_text

    text = read_text(path, "--spec")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InfercastError(f"--spec {path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise InfercastError(f"--spec {path}: expected a mapping of option names to values, e.g. 'tp: [1, 2, 4]'")
    names = list(dict.fromkeys([o.name for o in DEPLOYMENT] + list(NUMERIC) + list(WHATIF)))
    spec = create_model("SweepSpec", __config__=ConfigDict(extra="forbid", frozen=True),
                        **{n: (Any, None) for n in names})
    try:
        spec(**{str(k): v for k, v in data.items()})
    except ValidationError as exc:
        raise InfercastError(f"--spec {path}: {pydantic_error_line(exc)}") from None
    return {str(k): v for k, v in data.items() if v is not None}


# --- the chunk plan -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """Rows of one combination: pairs [p0, p1) of its (isl, osl) pairs, every what-if and batch."""

    combination: int
    p0: int
    p1: int


@dataclass(frozen=True)
class Chunk:
    index: int
    pieces: tuple[Piece, ...]
    rows: int


@cache
def _context(model: str) -> int:
    from infercast.model import load_model

    return load_model(model).max_position_embeddings


def length_pairs(grid: Grid, model: str) -> np.ndarray:
    """The (isl, osl) pairs within ``model``'s context (isl + osl - 1 tokens), isl outer, as an [n, 2] array."""
    isl, osl = np.meshgrid(np.asarray(grid.isl), np.asarray(grid.osl), indexing="ij")
    pairs = np.stack([isl.ravel(), osl.ravel()], axis=1)
    return pairs[pairs.sum(axis=1) - 1 <= _context(model)]


def plan_chunks(grid: Grid) -> tuple[list[Chunk], Counter]:
    """The chunks (before any work: the same grid gives the same chunks) and the configurations skipped
    at once, by reason (lengths beyond a model's context)."""
    skipped: Counter = Counter()
    per_pair = len(grid.batch) * grid.whatif_size
    models = dict(grid.axes).get("model", ())
    pairs_of_model = {m: len(length_pairs(grid, m)) for m in models}
    every = len(grid.isl) * len(grid.osl)
    per_model = grid.combinations // max(len(models), 1)
    for m, n in pairs_of_model.items():
        if n < every:
            skipped[f"isl + osl - 1 exceeds {m}'s context of {_context(m)} tokens"] += (every - n) * per_pair * per_model
    step = max(1, grid.chunk_rows // per_pair)  # pairs a piece may hold
    chunks, pieces, rows = [], [], 0
    for c in range(grid.combinations):
        n_pairs = pairs_of_model[grid.combination(c)["model"]]
        for p0 in range(0, n_pairs, step):
            p1 = min(n_pairs, p0 + step)
            size = (p1 - p0) * per_pair
            if pieces and rows + size > grid.chunk_rows:
                chunks.append(Chunk(len(chunks), tuple(pieces), rows))
                pieces, rows = [], 0
            pieces.append(Piece(c, p0, p1))
            rows += size
    if pieces or not chunks:  # a grid whose every configuration is skipped still gets a part: the schema
        chunks.append(Chunk(len(chunks), tuple(pieces), rows))
    return chunks, skipped


# --- computing a chunk ---------------------------------------------------------------------------------------


@cache
def estimate_columns() -> tuple[tuple[str, str], ...]:
    """(column, kind) of every estimate column ``evaluate`` can return, in its order: a probe of a chip with
    every figure (energy and owned cost included). Kinds: float, int, bool, str."""
    from infercast.evaluation import evaluate

    cols = evaluate(_probe_scenario(), batch=np.array([1.0, 2.0]))
    out = []
    for key, v in cols.items():
        a = np.asarray(v)
        kind = ("bool" if a.dtype == bool else "str" if a.dtype.kind in "US" else
                "int" if a.dtype.kind in "iu" else "float")
        out.append((key, kind))
    return tuple(out)


@cache
def columns(grid: Grid) -> list[tuple[str, str]]:
    """Every column of the dataset: the inputs, then the estimate's."""
    return grid.input_columns + list(estimate_columns())


class _Scenarios:
    """A worker's memo of loaded models and chips (the same objects keep the engine's caches warm)."""

    def __init__(self) -> None:
        self.specs: dict[str, Any] = {}

    def resolve(self, grid: Grid, combo: dict[str, Any]):
        from infercast.hardware import load_chip
        from infercast.model import load_model
        from infercast.scenario import resolve

        kw = resolve_kwargs({**dict(grid.fixed), **combo})
        model = kw.pop("model")
        if ("model", model) not in self.specs:
            self.specs[("model", model)] = load_model(model)
        hardware = kw.pop("hardware", None)
        if hardware is not None:
            if ("hardware", hardware) not in self.specs:
                self.specs[("hardware", hardware)] = load_chip(hardware)
            hardware = self.specs[("hardware", hardware)]
        return resolve(self.specs[("model", model)], hardware, **kw)


_SCENARIOS = _Scenarios()


def compute_chunk(grid: Grid, chunk: Chunk, progress: Callable[[int], None] | None = None):
    """(Arrow table, skipped configurations by reason) of one chunk; ``progress`` receives the rows of each
    piece as it is done."""
    pa = require_pyarrow()
    from infercast.evaluation import evaluate

    tables, skipped = [], Counter()
    scenario_of: dict[int, Any] = {}
    for piece in chunk.pieces:
        combo = grid.combination(piece.combination)
        rows = (piece.p1 - piece.p0) * len(grid.batch) * grid.whatif_size
        sc = scenario_of.get(piece.combination)
        try:
            if sc is None:
                sc = scenario_of[piece.combination] = _SCENARIOS.resolve(grid, combo)
            arrays = _numeric_arrays(grid, length_pairs(grid, combo["model"])[piece.p0:piece.p1])
            whatif: dict[str, dict[str, np.ndarray]] = {}
            for g, k, _ in grid.whatif:
                whatif.setdefault(g, {})[k] = arrays[f"{g}.{k}"]
            cols = evaluate(sc, batch=arrays["batch"], isl=arrays["isl"], osl=arrays["osl"], **whatif)
        except InfercastError as exc:
            skipped[reason(str(exc))] += rows
            if progress is not None:
                progress(rows)
            continue
        tables.append(_table(pa, grid, combo, arrays, cols, rows))
        if progress is not None:
            progress(rows)
    if not tables:
        tables.append(empty_table(grid))
    return pa.concat_tables(tables), skipped


def reason(message: str) -> str:
    """A skip reason: the refusal's first clause (its fix, after ';', is the same for every row)."""
    return message.split(";")[0].strip()


def _numeric_arrays(grid: Grid, pairs: np.ndarray) -> dict[str, np.ndarray]:
    """The numeric axes shaped to broadcast as [pairs, what-if 1, ..., what-if k, batch]: row-major order is
    the rows' order."""
    ndim = 2 + len(grid.whatif)

    def along(axis: int, values) -> np.ndarray:
        shape = [1] * ndim
        shape[axis] = len(values)
        return np.asarray(values, dtype=float).reshape(shape)

    out = {"isl": along(0, pairs[:, 0]), "osl": along(0, pairs[:, 1]), "batch": along(ndim - 1, grid.batch)}
    for i, (g, k, vals) in enumerate(grid.whatif):
        out[f"{g}.{k}"] = along(1 + i, vals)
    return out


_ARROW_TYPES = {"float": "float64", "int": "int64", "bool": "bool_", "str": "string"}


@cache
def arrow_schema(grid: Grid):
    """The dataset's Arrow schema: text columns dictionary-encoded in memory (plain strings on disk)."""
    pa = require_pyarrow()
    fields = []
    for name, kind in columns(grid):
        t = pa.dictionary(pa.int32(), pa.string()) if kind == "str" else getattr(pa, _ARROW_TYPES[kind])()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def empty_table(grid: Grid):
    return arrow_schema(grid).empty_table()


def _table(pa, grid: Grid, combo: dict[str, Any], arrays: dict[str, np.ndarray], cols, n: int):
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    data = []
    for name, kind in columns(grid):
        if name.startswith("input."):
            key = name.removeprefix("input.")
            v = arrays[key] if key in arrays else combo[key]
        else:
            v = cols.get(name)
        data.append(_column(pa, v, kind, shape, n))
    return pa.Table.from_arrays(data, schema=arrow_schema(grid))


def _column(pa, v, kind: str, shape: tuple[int, ...], n: int):
    """One column of ``n`` rows: a scalar repeated, an array broadcast to the piece's shape, or nulls."""
    if v is None:
        t = pa.dictionary(pa.int32(), pa.string()) if kind == "str" else getattr(pa, _ARROW_TYPES[kind])()
        return pa.nulls(n, t)
    if kind == "str":
        a = np.asarray(v)
        uniq, inverse = np.unique(a, return_inverse=True)
        index = np.broadcast_to(inverse.reshape(a.shape).astype(np.int32), shape).ravel()
        return pa.DictionaryArray.from_arrays(pa.array(index), pa.array(uniq.tolist(), pa.string()))
    dtype = {"float": np.float64, "int": np.int64, "bool": np.bool_}[kind]
    a = np.asarray(v)
    if kind == "int" and a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise InfercastError(f"internal: a whole-number column holds {a.ravel()[0]!r}")
    a = a.astype(dtype, copy=False)
    if a.ndim == 0:
        return pa.array(np.full(n, a, dtype=dtype))
    return pa.array(np.ascontiguousarray(np.broadcast_to(a, shape)).ravel())


def encode(grid: Grid, table, fmt: str) -> bytes:
    """A part file's bytes. Parquet: zstd, byte-stream-split floats, dictionary pages for constants and
    text; the Arrow schema is not stored, so text reads back as plain strings."""
    pa = require_pyarrow()
    sink = pa.BufferOutputStream()
    if fmt == "csv":
        import pyarrow.csv as pcsv

        plain = pa.schema([pa.field(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
                           for f in table.schema])
        pcsv.write_csv(table.cast(plain), sink)
    else:
        import pyarrow.parquet as pq

        constant = _constant_columns(grid)
        floats = [f.name for f in table.schema if pa.types.is_float64(f.type) and f.name not in constant]
        pq.write_table(table, sink, compression="zstd", compression_level=1, use_dictionary=constant,
                       use_byte_stream_split=floats, store_schema=False, row_group_size=max(table.num_rows, 1))
    return sink.getvalue().to_pybytes()


@cache
def _constant_columns(grid: Grid) -> list[str]:
    """Columns that hold few distinct values (dictionary pages): text, the categorical inputs, and what a
    probe returns as one number for every workload. (A what-if that varies one of them only costs the
    writer a fallback to plain pages.)"""
    from infercast.evaluation import evaluate

    probe = evaluate(_probe_scenario(), batch=np.array([1.0, 2.0]))
    out = [n for n, kind in grid.input_columns if kind == "str" or n.removeprefix("input.") in dict(grid.axes)]
    return out + [n for n, kind in estimate_columns() if kind == "str" or np.ndim(probe[n]) == 0]


# --- executors ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    grid: Grid
    chunk: Chunk
    fmt: str


@dataclass
class Part:
    """A finished chunk: its file's bytes, rows and skipped configurations by reason."""

    index: int
    data: bytes
    rows: int
    skipped: dict[str, int] = field(default_factory=dict)


def run_job(job: Job) -> Part:
    """Compute and encode one chunk (what a worker process or a Ray task runs)."""
    table, skipped = compute_chunk(job.grid, job.chunk)
    return Part(job.chunk.index, encode(job.grid, table, job.fmt), table.num_rows, dict(skipped))


Executor = Callable[[list[Job], Callable[[int], None]], Iterator[Part]]
"""(jobs, progress) -> the parts in job order; ``progress`` receives rows as they are computed."""


def serial(jobs: list[Job], progress: Callable[[int], None]) -> Iterator[Part]:
    """One process computes the chunks in order; a thread encodes each while the next is computed."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for job in jobs:
            table, skipped = compute_chunk(job.grid, job.chunk, progress)
            future = pool.submit(encode, job.grid, table, job.fmt)
            if pending is not None:
                yield _finish(*pending)
            pending = (job, future, table.num_rows, skipped)
            del table
        if pending is not None:
            yield _finish(*pending)


def _finish(job: Job, future, rows: int, skipped: Counter) -> Part:
    return Part(job.chunk.index, future.result(), rows, dict(skipped))


def process_pool(workers: int) -> Executor:
    """``workers`` processes (spawned: no state shared with this one), at most two chunks ahead each."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    def run(jobs: list[Job], progress: Callable[[int], None]) -> Iterator[Part]:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            yield from _windowed(jobs, lambda job: pool.submit(run_job, job), lambda f: f.result(),
                                 2 * workers, progress)

    return run


def ray_executor(workers: int, address: str | None = None) -> Executor:
    """Ray tasks: a local runtime of ``workers`` CPUs, or the cluster at ``address`` (workers then caps
    the tasks in flight). Each task returns its part's bytes through Ray's object store."""
    ray = require("ray", "ray")

    def run(jobs: list[Job], progress: Callable[[int], None]) -> Iterator[Part]:
        started = not ray.is_initialized()
        if started:
            kw = {"address": address} if address else {"num_cpus": workers, "include_dashboard": False}
            ray.init(logging_level="ERROR", log_to_driver=False, configure_logging=True, **kw)
        try:
            task = ray.remote(num_cpus=1, max_retries=2)(run_job)
            yield from _windowed(jobs, lambda job: task.remote(job), ray.get, 2 * workers, progress)
        finally:
            if started:
                ray.shutdown()

    return run


def _windowed(jobs: list[Job], submit, result, window: int, progress: Callable[[int], None]) -> Iterator[Part]:
    """Submit jobs keeping at most ``window`` in flight, and yield their parts in job order."""
    from collections import deque

    queue: deque = deque()
    it = iter(jobs)
    for job in itertools.islice(it, window):
        queue.append(submit(job))
    while queue:
        part = result(queue.popleft())
        nxt = next(it, None)
        if nxt is not None:
            queue.append(submit(nxt))
        progress(part.rows + sum(part.skipped.values()))
        yield part


def make_executor(name: str, *, workers: int | None = None, ray_address: str | None = None) -> Executor:
    if workers is not None and workers < 1:
        raise InfercastError(f"--workers must be at least 1, got {workers}")
    n = workers or os.cpu_count() or 1
    if name == "serial":
        return serial
    if name == "process":
        return process_pool(n)
    if name == "ray":
        return ray_executor(n, ray_address)
    raise InfercastError(f"--executor must be serial, process or ray, got {name!r}")


# --- the sweep ---------------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    out: str
    format: str
    configurations: int
    """Configurations of the grid, before any is skipped."""
    rows: int
    skipped: dict[str, int]
    chunks: int
    resumed_chunks: int
    elapsed_s: float
    bytes: int
    new_rows: int
    """Rows this run computed (the rest were on disk already, from a stopped run)."""

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "format": self.format, "configurations": self.configurations, "rows": self.rows,
                "skipped": self.skipped, "chunks": self.chunks, "resumed_chunks": self.resumed_chunks,
                "elapsed_s": self.elapsed_s, "bytes": self.bytes,
                "rows_per_s": self.new_rows / self.elapsed_s if self.elapsed_s > 0 else None}


def check_size(grid: Grid, max_configs: int = MAX_CONFIGS, yes: bool = False) -> None:
    if max_configs < 1:
        raise InfercastError(f"--max-configs must be at least 1, got {max_configs}")
    if grid.size > max_configs and not yes:
        raise InfercastError(f"the sweep has {grid.size:,} configurations, more than --max-configs {max_configs:,}; "
                             f"pass --yes to run it, or narrow the grid")


def run_sweep(grid: Grid, out: str, *, fmt: str | None = None, executor: Executor = serial, resume: bool = False,
              force: bool = False, max_configs: int = MAX_CONFIGS, yes: bool = False,
              progress: Callable[[int, int], None] | None = None,
              on_part: Callable[[Part], None] | None = None) -> SweepResult:
    """Evaluate ``grid`` into the dataset folder ``out``. ``progress(done, total)`` receives rows (written or
    skipped) as they are done; ``on_part`` each part once it is on disk."""
    t0 = time.perf_counter()
    check_size(grid, max_configs, yes)
    fmt = output_format(out, fmt)
    require_pyarrow()
    record = {"infercast_sweep": 1, "format": fmt, "grid": grid.to_dict(), "columns": [c for c, _ in columns(grid)]}
    folder = prepare_folder(out, record, resume=resume, force=force)
    chunks, skipped = plan_chunks(grid)
    done = done_chunks(folder, fmt) if resume else {}
    total = grid.size
    counted = sum(skipped.values()) + sum(c.rows for c in chunks if c.index in done)
    if progress is not None:
        progress(counted, total)
    resumed_rows = rows = sum(d["rows"] for d in done.values())
    for d in done.values():
        skipped.update(d["skipped"])
    jobs = [Job(grid, c, fmt) for c in chunks if c.index not in done]

    def advance(n: int) -> None:
        nonlocal counted
        counted += n
        if progress is not None:
            progress(counted, total)

    for part in executor(jobs, advance):
        write_part(folder, part.index, fmt, part.data, part.rows, part.skipped)
        rows += part.rows
        skipped.update(part.skipped)
        if on_part is not None:
            on_part(part)
    size = sum(p.stat().st_size for p in folder.glob(f"part-*.{fmt}"))
    result = SweepResult(out, fmt, total, rows, dict(sorted(skipped.items(), key=lambda kv: -kv[1])), len(chunks),
                         len(done), time.perf_counter() - t0, size, rows - resumed_rows)
    write_atomic(folder / SUMMARY_FILE, json.dumps(result.to_dict(), indent=1, allow_nan=False))
    return result
