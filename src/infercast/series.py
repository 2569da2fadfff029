"""Exact sums over integer ranges of convex piecewise-linear functions, without a loop over the terms.

A decode of osl - 1 steps at KV lengths L = isl + 1 .. isl + osl - 1 costs, per step, the maximum
of a few lines in L (compute or memory of each kernel, a pipeline's slowest stage or its whole
trip, the power cap). Its total is

    sum_{L = lo}^{hi} max_k (a_k + b_k L)

which these functions evaluate in closed form: the upper envelope of the lines splits [lo, hi]
into segments where one line is the maximum, and each segment is an arithmetic series.
Every argument may be an array; everything broadcasts. ``lo > hi`` is an empty range (sum 0).
"""

from __future__ import annotations

import math

import numpy as np

from infercast.arrays import is_scalar, maximum


def count(lo, hi):
    """Integers in [lo, hi]."""
    return maximum(hi - lo + 1.0, 0.0)


def sum_range(lo, hi):
    """Sum of the integers in [lo, hi] (0 when empty)."""
    return count(lo, hi) * (lo + hi) / 2


def sum_line(a, b, lo, hi):
    """sum_{L=lo}^{hi} (a + b L)."""
    n = count(lo, hi)
    return a * n + b * n * (lo + hi) / 2


def _sum_max2_scalar(a1, b1, a2, b2, lo, hi) -> float:
    if b1 == b2:
        return sum_line(a1, b1, lo, hi) if a1 >= a2 else sum_line(a2, b2, lo, hi)
    k = min(max(math.floor((a2 - a1) / (b1 - b2)), lo - 1), hi)
    if b1 < b2:
        return sum_line(a1, b1, lo, k) + sum_line(a2, b2, k + 1, hi)
    return sum_line(a2, b2, lo, k) + sum_line(a1, b1, k + 1, hi)


def sum_max2(a1, b1, a2, b2, lo, hi):
    """sum_{L=lo}^{hi} max(a1 + b1 L, a2 + b2 L), exactly: the two lines cross at most once."""
    if is_scalar(a1, b1, a2, b2, lo, hi):
        return _sum_max2_scalar(a1, b1, a2, b2, lo, hi)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    db = b1 - b2
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(db != 0, (a2 - a1) / np.where(db != 0, db, 1.0), np.nan)
    # k: the last integer at or below the crossing, within [lo - 1, hi]; on [lo, k] the line with the smaller
    # slope is the larger (it was ahead before they crossed), on [k + 1, hi] the other one
    k = np.clip(np.floor(np.where(np.isnan(x), lo - 1, x)), lo - 1, hi)
    first_is_1 = b1 < b2
    a_lo, b_lo = np.where(first_is_1, a1, a2), np.where(first_is_1, b1, b2)
    a_hi, b_hi = np.where(first_is_1, a2, a1), np.where(first_is_1, b2, b1)
    split = sum_line(a_lo, b_lo, lo, k) + sum_line(a_hi, b_hi, k + 1, hi)
    # parallel lines: the one with the larger intercept throughout
    same = np.where(a1 >= a2, sum_line(a1, b1, lo, hi), sum_line(a2, b2, lo, hi))
    return np.where(db == 0, same, split)


def sum_max(a: list, b: list, lo, hi):
    """sum_{L=lo}^{hi} max_k (a[k] + b[k] L) for any number of lines.

    The candidate breakpoints are the pairwise crossings of the lines inside the range; sorted, they
    cut it into segments on each of which one line is the maximum (the envelope of lines is convex),
    found at the segment's middle. The counts of integers per segment telescope, so every integer of
    the range is counted exactly once whatever the rounding of the crossings.
    """
    if len(a) == 1:
        return sum_line(a[0], b[0], lo, hi)
    if len(a) == 2:
        return sum_max2(a[0], b[0], a[1], b[1], lo, hi)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    shape = np.broadcast_shapes(lo.shape, hi.shape, *(np.shape(x) for x in a), *(np.shape(x) for x in b))
    A = np.stack([np.broadcast_to(x, shape) for x in a])  # [K, *shape]
    B = np.stack([np.broadcast_to(x, shape) for x in b])
    lo, hi = np.broadcast_to(lo, shape), np.broadcast_to(hi, shape)
    steps = int(np.max(hi - lo + 1, initial=0))
    if steps <= len(a) ** 2:
        # fewer integers than crossings (a deep pipeline's envelope has hundreds of lines): the envelope at
        # each integer, K x steps, instead of K^2 crossings each scanned over K lines
        total = np.zeros(shape)
        for j in range(steps):
            L = lo + j
            total = total + np.where(L <= hi, np.max(A + B * L[None], axis=0), 0.0)
        return total
    start = lo - 1
    end = np.maximum(hi, start)
    points = [start, end]
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            db = B[i] - B[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.where(db != 0, (A[j] - A[i]) / np.where(db != 0, db, 1.0), start)
            x = np.clip(x, start, end)
            # a pair that crosses inside no configuration's range only repeats its ends: segments without an
            # integer, which add nothing (most pairs, most often: their sort was most of the time)
            if not ((x <= start) | (x >= end)).all():
                points.append(x)
    P = np.sort(np.stack(points), axis=0)  # [n_points, *shape]
    f = np.floor(P)
    total = np.zeros(shape)
    for s in range(len(P) - 1):
        n = f[s + 1] - f[s]  # integers in (P_s, P_{s+1}]
        if not np.any(n):
            continue
        mid = (P[s] + P[s + 1]) / 2
        k = np.argmax(A + B * mid[None], axis=0)
        a_k = np.take_along_axis(A, k[None], axis=0)[0]
        b_k = np.take_along_axis(B, k[None], axis=0)[0]
        total = total + a_k * n + b_k * (f[s + 1] * (f[s + 1] + 1) - f[s] * (f[s] + 1)) / 2
    return total


def max_lines_at(a: list, b: list, L):
    """max_k (a[k] + b[k] L) at L (the step-by-step reference of ``sum_max``)."""
    out = a[0] + b[0] * L
    for ak, bk in zip(a[1:], b[1:], strict=True):
        out = np.maximum(out, ak + bk * L)
    return out
