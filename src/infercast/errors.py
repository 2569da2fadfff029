"""The one exception users see, and helpers that make its message one clear line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import ValidationError


class InfercastError(ValueError):
    """Bad input: the message names the field and the fix, and the CLI prints only it."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def pydantic_error_line(exc: ValidationError) -> str:
    """The first validation error as 'field.path: message'."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    elif err["type"] == "missing":
        msg = "required key is missing"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {msg}{more}"
