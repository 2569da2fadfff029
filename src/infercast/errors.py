"""The one exception users see, and helpers that make its message one clear line."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable

from pydantic import BaseModel, ValidationError


class InfercastError(ValueError):
    """Bad input: the message names the field and the fix, and the CLI prints only it.

    The message is always one line: line breaks that reach it from user input (a path, a YAML
    key, a library's message) are replaced, so ``error: ...`` never spills onto a second line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class UnknownName(InfercastError):
    """A model, chip, system or design that no preset, catalog entry or file is called (the web API answers 404)."""


def one_line(text: str) -> str:
    """``text`` with every line break (including the Unicode ones ``str.splitlines`` knows) replaced."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip()) or text.strip()


def shown(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a value quoted in an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean a, b?)' for close matches, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _loc(parts: tuple) -> str:
    # a key from a user's file may hold spaces or line breaks: quote anything that is not a plain name
    return ".".join(str(p) if str(p).replace("-", "_").replace(".", "_").isidentifier() or isinstance(p, int)
                    else shown(p) for p in parts)


def pydantic_error_line(exc: ValidationError) -> str:
    """The first validation error as 'field.path: message, got VALUE'."""
    errors = exc.errors()
    # a misspelt key shows up twice: the unknown spelling and the missing real key; name the spelling
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    where = _loc(err["loc"])  # empty for a model validator's error, whose message names its own keys
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check its spelling"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif not isinstance(err.get("input"), (dict, list, BaseModel)) and err["type"] != "value_error":
        msg += f", got {shown(err.get('input'))}"
    others = [_loc(e["loc"]) + (" missing" if e["type"] == "missing" else "")
              for e in errors if e is not err]
    more = f" (also: {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


def with_overrides(default: BaseModel, override, prefix: str):
    """``default`` with the fields of ``override`` (a dict) replaced and validated, ``override`` itself if
    it is already a spec of the same class, or ``default`` for None; a bad field is one line starting
    with ``prefix`` ('efficiency.', '--energy ')."""
    if override is None:
        return default
    if isinstance(override, type(default)):
        return override
    for key, value in override.items():  # a field's range check lets inf through where it has no upper bound
        if isinstance(value, float) and not math.isfinite(value):
            raise InfercastError(f"{prefix}{key}: must be a finite number, got {value}")
    try:
        return type(default)(**{**default.model_dump(), **override})
    except ValidationError as exc:
        raise InfercastError(f"{prefix}{pydantic_error_line(exc)}") from None
