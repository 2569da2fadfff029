"""Elementwise helpers that keep Python floats as floats and broadcast numpy arrays.

Every formula of the engine is written once and runs on one configuration (floats) or on a
million (broadcast arrays). numpy's ufuncs do both, but cost about a microsecond per call on a
float; these dispatch to the builtins when every argument is a float or an int, so a scalar
``estimate()`` stays well under a millisecond.
"""

from __future__ import annotations

import math

import numpy as np

_SCALARS = (float, int)


def is_scalar(*xs) -> bool:
    return all(type(x) in _SCALARS for x in xs)


def maximum(a, b):
    if type(a) in _SCALARS and type(b) in _SCALARS:
        return a if a >= b else b
    return np.maximum(a, b)


def minimum(a, b):
    if type(a) in _SCALARS and type(b) in _SCALARS:
        return a if a <= b else b
    return np.minimum(a, b)


def ceil(x):
    return float(math.ceil(x)) if type(x) in _SCALARS else np.ceil(x)


def floor(x):
    return float(math.floor(x)) if type(x) in _SCALARS else np.floor(x)


def where(cond, a, b):
    if type(cond) is bool and type(a) in _SCALARS and type(b) in _SCALARS:
        return a if cond else b
    return np.where(cond, a, b)


def clip(x, lo, hi):
    return minimum(maximum(x, lo), hi)


def any_(x) -> bool:
    """``np.any`` that answers a Python scalar or bool without numpy."""
    return bool(x) if type(x) in _SCALARS or type(x) is bool else bool(np.any(x))


def all_(x) -> bool:
    """``np.all`` that answers a Python scalar or bool without numpy."""
    return bool(x) if type(x) in _SCALARS or type(x) is bool else bool(np.all(x))


def ndim(x) -> int:
    """``np.ndim`` for the engine's values (floats, ints, numpy scalars and arrays), at a tenth of its cost."""
    return x.ndim if isinstance(x, np.ndarray) else 0


def num(x):
    """A float for a Python or numpy scalar, else a float array."""
    if type(x) in _SCALARS:
        return float(x)
    a = np.asarray(x, dtype=float)
    return float(a) if a.ndim == 0 else a
