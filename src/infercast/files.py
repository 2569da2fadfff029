"""A user's files: read as UTF-8 text with one clear error; written never over one they saved
(without ``force``), never half-written, with the permissions any other program would give them."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from infercast.errors import InfercastError, shown


def exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` names something on disk; False, not an exception, for a name no file could have
    (too long, a NUL byte)."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def is_package_file(folder, file_name: str) -> bool:
    """Whether a folder of the package (an importlib.resources Traversable) holds ``file_name``:
    False for a name with a path separator or one no file could have."""
    try:
        return "/" not in file_name and (folder / file_name).is_file()
    except (OSError, ValueError):
        return False


def read_text(path: str | os.PathLike, flag: str) -> str:
    """The text of a user's file, or one line naming ``flag`` and the file: missing, a folder,
    unreadable, binary or not UTF-8. A UTF-8 byte-order mark (spreadsheet exports) is dropped."""
    if not str(path).strip():
        raise InfercastError(f"{flag}: the path is empty; give a file")
    p = Path(path)
    if not exists(p):
        raise InfercastError(f"{flag}: no such file {path}")
    if p.is_dir():
        raise InfercastError(f"{flag} {path}: is a folder, not a file")
    if not p.is_file():  # a FIFO or a device would block or never end
        raise InfercastError(f"{flag} {path}: not a regular file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InfercastError(f"{flag} {path}: cannot be read ({exc.strerror or exc})") from None
    if b"\x00" in data:
        raise InfercastError(f"{flag} {path}: a binary file (it holds NUL bytes); give a UTF-8 text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InfercastError(f"{flag} {path}: not UTF-8 text (byte {shown(data[exc.start:exc.start + 1])} at "
                             f"offset {exc.start}); save it as UTF-8") from None


def _read_only(path: Path) -> bool:
    # os.access answers for root too (who may write anywhere); a file or folder without any write
    # permission bit was marked read-only on purpose, so it counts as read-only for root as well
    return not os.access(path, os.W_OK) or not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def check_writable(path: str, force: bool = False, flag: str = "--output") -> Path:
    """``path`` as a Path if a file may be written there, checked before any work: a one-line error
    naming ``flag`` if it is a folder, exists (without ``force``), is read-only, or its folder is
    missing or read-only."""
    if not str(path).strip():
        raise InfercastError(f"{flag}: the path is empty; give a file name")
    target = Path(path)
    if target.is_dir():
        raise InfercastError(f"{flag} {path}: is a folder; give a file name inside it")
    if target.exists() and not force:
        raise InfercastError(f"{flag} {path}: the file exists; choose another name or pass --force to replace it")
    if target.exists() and _read_only(target):
        raise InfercastError(f"{flag} {path}: the file is read-only; make it writable (chmod u+w) or choose another name")
    folder = target.parent
    if not folder.is_dir():
        raise InfercastError(f"{flag} {path}: no such folder {folder}")
    if _read_only(folder):
        raise InfercastError(f"{flag} {path}: the folder {folder} is not writable; choose another folder")
    return target


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_new(path: str, text: str, *, force: bool = False, flag: str = "--output") -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it), and never over
    an existing file unless ``force``. A new file gets the mode the umask gives (0666 & ~umask), a
    replaced one keeps its own."""
    target = check_writable(path, force, flag)
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode)  # mkstemp makes 0600, private to the temporary file's purpose, not the user's
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
