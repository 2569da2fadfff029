"""A sweep's dataset: a folder of part files, each written whole (a temporary name renamed into place) and
recorded in ``_chunks/`` once it is there, beside ``_sweep.json`` (the grid that made it) and ``_summary.json``.

    result.parquet/
        _sweep.json            the grid, format and columns: --resume refuses another sweep's folder
        _chunks/00000.json     rows and skipped configurations of part 0: written after the part (the commit)
        part-00000.parquet     ...
        _summary.json          totals, once the sweep is done

Readers that skip names starting with '_' or '.' (pyarrow datasets, DuckDB's part-*.parquet glob) see only
whole parts; a chunk whose record is missing is recomputed by --resume, so no row is lost or repeated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from infercast.errors import InfercastError

SWEEP_FILE = "_sweep.json"
SUMMARY_FILE = "_summary.json"
CHUNKS_DIR = "_chunks"
FORMATS = ("parquet", "csv")


def require(module: str, extra: str):
    """Import an optional dependency, or one line naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InfercastError(f"this needs {module}, which is not installed: pip install \"infercast[{extra}]\"") \
            from None


def require_pyarrow():
    return require("pyarrow", "sweep")


def output_format(out: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise InfercastError(f"--format must be parquet or csv, got {fmt!r}")
        return fmt
    return "csv" if out.lower().rstrip("/").endswith(".csv") else "parquet"


def prepare_folder(out: str, record: dict[str, Any], *, resume: bool, force: bool) -> Path:
    """The dataset folder, checked before any work: new (or replaced with ``force``), or, with ``resume``,
    one this same sweep started."""
    if not out.strip():
        raise InfercastError("--out: the path is empty; give a folder name such as result.parquet")
    folder = Path(out)
    marker = folder / SWEEP_FILE
    if folder.exists() and not folder.is_dir():
        raise InfercastError(f"--out {out}: a file exists there; a sweep writes a folder of part files. Choose "
                             f"another name")
    if not folder.parent.is_dir():
        raise InfercastError(f"--out {out}: no such folder {folder.parent}")
    if not os.access(folder.parent, os.W_OK):
        raise InfercastError(f"--out {out}: the folder {folder.parent} is not writable; choose another folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not marker.is_file():
            raise InfercastError(f"--out {out}: a folder that holds other files; choose a new name")
        if resume:
            try:
                previous = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise InfercastError(f"--resume: {marker} cannot be read; start again with --force") from None
            ours = json.loads(json.dumps(record))  # as it reads back (tuples become lists)
            if previous.get("grid") != ours["grid"] or previous.get("format") != ours["format"]:
                raise InfercastError(f"--resume: {out} holds a different sweep (other axes, chunk size or format); "
                                     f"give the same flags, or --force to start again")
            if not os.access(folder, os.W_OK):
                raise InfercastError(f"--resume: the folder {out} is not writable")
            for stale in folder.glob(".part-*.tmp"):
                stale.unlink()
            return folder
        if not force:
            raise InfercastError(f"--out {out}: a sweep is already there; pass --resume to finish it or --force to "
                                 f"replace it")
        _clear(folder)
    folder.mkdir(exist_ok=True)
    (folder / CHUNKS_DIR).mkdir(exist_ok=True)
    write_atomic(marker, json.dumps(record, indent=1, allow_nan=False))
    return folder


def _clear(folder: Path) -> None:
    """Remove what a sweep wrote (and nothing else)."""
    for p in [*folder.glob("part-*"), *folder.glob(".part-*"), *(folder / CHUNKS_DIR).glob("*"),
              folder / SWEEP_FILE, folder / SUMMARY_FILE]:
        if p.is_file():
            p.unlink()


def write_atomic(path: Path, text: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    data = text.encode() if isinstance(text, str) else text
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:05d}.{fmt}"


def done_chunks(folder: Path, fmt: str) -> dict[int, dict[str, Any]]:
    """Chunks already written: a record in _chunks/ and its part file."""
    out = {}
    for rec in (folder / CHUNKS_DIR).glob("*.json"):
        try:
            index = int(rec.stem)
            data = json.loads(rec.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            continue
        if (folder / part_name(index, fmt)).is_file():
            out[index] = data
    return out


def write_part(folder: Path, index: int, fmt: str, data: bytes, rows: int, skipped: dict[str, int]) -> None:
    """Part ``index``, whole or not at all (a temporary name renamed), then its record (the commit)."""
    target = folder / part_name(index, fmt)
    tmp = folder / f".{target.name}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    write_atomic(folder / CHUNKS_DIR / f"{index:05d}.json",
                 json.dumps({"rows": rows, "skipped": skipped}, allow_nan=False))


def read_dataset(path: str):
    """The dataset as one Arrow table (parts in order; None for a CSV dataset without parts)."""
    pa = require_pyarrow()
    folder = Path(path)
    fmt = "csv" if any(folder.glob("part-*.csv")) else "parquet"
    parts = sorted(folder.glob(f"part-*.{fmt}"))
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pa.concat_tables([pcsv.read_csv(p) for p in parts]) if parts else None
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p) for p in parts])

