"""Compiled loops (numba) that build the match index from the writer's unit-major rows.

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
    byte is ``bins[u, side]`` (column 256 is left alone). tile uint16 ``[U, c]`` (unit-major rows).

    Each value adds 0 or 1 at its low byte, so nothing branches on how many values fall in the bin (anything
    from none to all), in four interleaved copies, so that a run of one value (a saturated unit) does not make
    each increment wait for the one before."""
    U, c = tile.shape
    part = np.zeros((2, 4, 256), np.int32)
    for u in range(U):
        if not need[u]:
            continue
        sides = 1 if bins[u, 0] == bins[u, 1] else 2
        for side in range(sides):
            b = np.int32(bins[u, side])
            row = tile[u]
            f = part[side]
            t = 0
            while t + 4 <= c:
                for i in range(4):
                    k = _key(row[t + i])
                    f[i, k & 255] += np.int32((k >> 8) == b)
                t += 4
            while t < c:
                k = _key(row[t])
                f[0, k & 255] += np.int32((k >> 8) == b)
                t += 1
        for side in range(2):
            src = part[side if sides == 2 else 0]
            for lo in range(256):
                fine[u, side, lo] += src[0, lo] + src[1, lo] + src[2, lo] + src[3, lo]
        part[:] = 0
