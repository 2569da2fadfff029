"""``infercast query RESULT "SELECT ..."``: SQL over a sweep's dataset (or any Parquet or CSV file), by DuckDB.

The dataset is the view ``result``: ``SELECT "decode.tpot_s" FROM result WHERE "memory.fits"`` (column
names with dots are quoted). A sweep folder is read as every part file it holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from infercast.errors import InfercastError, one_line


def source(path: str) -> str:
    """DuckDB's reader of ``path``: a sweep folder (its part files), a Parquet file or a CSV file."""
    p = Path(path)
    if not path.strip() or not p.exists():
        raise InfercastError(f"query: no such file or folder {path!r}; give a sweep's --out (e.g. result.parquet)")
    if p.is_dir():
        parquet, csv = sorted(p.glob("part-*.parquet")), sorted(p.glob("part-*.csv"))
        if not parquet and not csv:
            raise InfercastError(f"query: {path} holds no part files; is it a sweep's --out?")
        files, reader = (parquet, "read_parquet") if parquet else (csv, "read_csv")
    else:
        files = [p]
        reader = "read_csv" if p.suffix.lower() == ".csv" else "read_parquet"
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    extra = ", header = true" if reader == "read_csv" else ""
    return f"{reader}([{listed}]{extra})"


def run_query(path: str, sql: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows) of ``sql`` over the view ``result`` of ``path``; a bad query is one line."""
    try:
        import duckdb
    except ImportError:
        raise InfercastError('query needs duckdb, which is not installed: pip install "infercast[sweep]"') from None
    if not sql.strip():
        raise InfercastError('query: the SQL is empty; e.g. "SELECT hardware, count(*) FROM result GROUP BY 1"')
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW result AS SELECT * FROM {source(path)}")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InfercastError(f"query: {one_line(first)} (the dataset is the view 'result'; quote dotted column "
                             f"names: \"decode.tpot_s\")") from None
    finally:
        con.close()
    return names, rows


def plain(value: Any) -> Any:
    """A value as JSON writes it: non-finite floats as null, dates and decimals as text or numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
