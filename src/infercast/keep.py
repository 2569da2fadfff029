"""Values kept per object: memos keyed by the identity of frozen objects (a chip, a model spec, an efficiency, a
calibration profile) and whatever else the value depends on.

Hashing such an object field by field costs more than the value kept, so a store is keyed by the objects' ids; an
entry holds its objects, so that an id is never reused while the entry lives, and a store is emptied when it grows
past ``LIMIT`` entries.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import is_
from typing import TypeVar

T = TypeVar("T")
LIMIT = 4096
"""Entries a store keeps before it is emptied."""


def keep(store: dict, objs: tuple, make: Callable[[], T], key: tuple = (), limit: int = LIMIT) -> T:
    """``make()`` for the objects ``objs`` (and the hashable ``key``), kept in ``store`` (emptied past ``limit``
    entries)."""
    k = tuple(map(id, objs)) + key
    hit = store.get(k)
    if hit is not None and all(map(is_, hit[0], objs)):
        return hit[1]
    value = make()
    if len(store) > limit:
        store.clear()
    store[k] = (objs, value)
    return value
