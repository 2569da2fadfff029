"""Writing a user's files: never over one they saved (without ``force``), never half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from infercast.errors import InfercastError


def check_writable(path: str, force: bool = False, flag: str = "--output") -> Path:
    """``path`` as a Path if a new file may be written there; a one-line error naming ``flag`` if it
    exists (without ``force``) or its folder does not."""
    target = Path(path)
    if target.exists() and not force:
        raise InfercastError(f"{flag} {path}: the file exists; choose another name or pass --force to replace it")
    if not target.parent.is_dir():
        raise InfercastError(f"{flag} {path}: no such folder {target.parent}")
    return target


def write_new(path: str, text: str, *, force: bool = False, flag: str = "--output") -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it), and never over
    an existing file unless ``force``."""
    target = check_writable(path, force, flag)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
