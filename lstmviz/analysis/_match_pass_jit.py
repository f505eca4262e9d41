"""Compiled loops (numba) that build the match index and the overview from the writer's unit-major rows.

The writer lays each chunk out unit-major for its parquet pages (:mod:`lstmviz.chunkstats`) and assembles the
file's row groups ``[U, R]`` from those tiles when it closes (:mod:`lstmviz.store.writer`); these loops read
the same layout, one unit's contiguous row at a time, so each inner loop is a plain sweep that LLVM vectorises.
Values are float16 bit patterns (uint16), compared as the match keys of :mod:`lstmviz.analysis._match_jit`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._match_jit import _key

_JIT = {"error_model": "numpy", "cache": True, "nogil": True}


@njit(**_JIT)
def pack_cols(group: np.ndarray, kth: np.ndarray, out: np.ndarray) -> None:
    """out uint8 ``[⌈U/8⌉, R]`` ← bit ``u & 7`` of ``out[u >> 3, t]`` is ``key(group[u, t]) >= kth[u]``.

    group uint16 ``[U, R]`` (unit-major rows), kth int64 ``[U]`` (≥ 0, so NaN, key −1, is never on)."""
    U, R = group.shape
    out[:] = 0
    for u in range(U):
        shift = np.uint8(u & 7)
        k = kth[u]
        row = group[u]
        o = out[u >> 3]
        for t in range(R):
            o[t] |= np.uint8(_key(row[t]) >= k) << shift


@njit(**_JIT)
def fine_rows(tile: np.ndarray, bins: np.ndarray, need: np.ndarray, fine: np.ndarray) -> None:
    """fine int32 ``[U, 2, 257]`` += for each unit with ``need[u]``, the low-byte counts of its keys whose high
    byte is ``bins[u, side]``, every other value in column 256. tile uint16 ``[U, c]`` (unit-major rows)."""
    U, c = tile.shape
    for u in range(U):
        if not need[u]:
            continue
        b0, b1 = np.int32(bins[u, 0]), np.int32(bins[u, 1])
        row = tile[u]
        f0, f1 = fine[u, 0], fine[u, 1]
        for t in range(c):
            k = _key(row[t])
            hi = k >> 8  # −1 for NaN: no bin
            lo = k & 255
            f0[lo if hi == b0 else 256] += 1
            f1[lo if hi == b1 else 256] += 1


@njit(**_JIT)
def bin_sums_rows(
    group: np.ndarray, table: np.ndarray, start: int, per: int, sums: np.ndarray, counts: np.ndarray
) -> None:
    """sums float64 / counts int64 ``[bins, U]`` += the non-NaN values of rows ``start…`` (group uint16 ``[U, R]``,
    unit-major), row r into bin ``r // per``; each bin's part of a unit's row is summed in row order."""
    U, R = group.shape
    for u in range(U):
        row = group[u]
        t = 0
        while t < R:
            b = (start + t) // per
            t1 = min(R, (b + 1) * per - start)
            s = 0.0
            n = 0
            for i in range(t, t1):
                v = table[row[i]]
                ok = v == v
                s += np.float64(v) if ok else 0.0
                n += ok
            sums[b, u] += s
            counts[b, u] += n
            t = t1
