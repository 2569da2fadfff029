"""Markdown pieces the report scripts share (``python scripts/<name>_report.py`` puts this folder on the path)."""

from __future__ import annotations

import math


def pct(x: float | None, signed: bool = False, digits: int = 1) -> str:
    """A fraction as a percentage ("-" for a missing value)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:+.{digits}f}%" if signed else f"{100 * x:.{digits}f}%"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
