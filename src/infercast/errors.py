"""The one exception users see, and helpers that make its message one clear line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError


class InfercastError(ValueError):
    """Bad input: the message names the field and the fix, and the CLI prints only it."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def pydantic_error_line(exc: ValidationError) -> str:
    """The first validation error as 'field.path: message'."""
    errors = exc.errors()
    # a misspelt key shows up twice: the unknown spelling and the missing real key; name the spelling
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    elif err["type"] == "missing":
        msg = "required key is missing"
    others = [".".join(str(p) for p in e["loc"]) + (" missing" if e["type"] == "missing" else "")
              for e in errors if e is not err]
    more = f" (also: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
    return f"{where}: {msg}{more}"


def with_overrides(default: BaseModel, override, prefix: str):
    """``default`` with the fields of ``override`` (a dict) replaced and validated, ``override`` itself if
    it is already a spec of the same class, or ``default`` for None; a bad field is one line starting
    with ``prefix`` ('efficiency.', '--energy ')."""
    if override is None:
        return default
    if isinstance(override, type(default)):
        return override
    try:
        return type(default)(**{**default.model_dump(), **override})
    except ValidationError as exc:
        raise InfercastError(f"{prefix}{pydantic_error_line(exc)}") from None
