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


_LOWEST, _HIGHEST = 0x03FF, 0xFC00  # the keys of −inf and +inf (below and above them: NaN's raw keys)


@njit(inline="always", **_JIT)
def _raw_key(b: int) -> int:
    """:func:`_key` without its NaN test: NaN's patterns map below −inf's key (negative NaN) or above +inf's."""
    b = np.int32(b)
    b = b * (b != 0x8000)
    return b ^ (0x8000 | ((b >> 15) * 0x7FFF))


@njit(**_JIT)
def order_stats(values: np.ndarray, tiles: np.ndarray, zeros: int, r0: int, r1: int, out: np.ndarray) -> np.ndarray:
    """Each unit's order statistics of ranks r0 ≤ r1 (0-based) over the spill, as float16 patterns.

    values uint16 ``[*]`` (the spill), tiles int64 ``[k, 4]`` (first row, rows c, element offset of unit 0's
    run, elements from one unit's run to the next), ``zeros`` more values of +0 per unit (rows no tile covers).
    out uint16 ``[2, U]`` ← the patterns of ranks r0 and r1 among the non-NaN values. Returns int64 ``[U]``: each
    unit's count of NaN.

    One unit at a time: a histogram over all 2¹⁶ keys (two interleaved copies, 512 kB, so that a run of one value,
    a saturated unit, does not make each increment wait for the one before) from the unit's row of every tile,
    then a walk up the keys to the ranks (:func:`_walk`). Exact, with no other pass over the values."""
    U = out.shape[1]
    hist = np.zeros((2, 1 << 16), np.int32)
    nan = np.zeros(U, np.int64)
    for u in range(U):
        h0, h1 = hist[0], hist[1]
        for k in range(tiles.shape[0]):
            c = tiles[k, 1]
            base = tiles[k, 2] + u * tiles[k, 3]
            t = 0
            while t + 2 <= c:
                h0[_raw_key(values[base + t])] += 1
                h1[_raw_key(values[base + t + 1])] += 1
                t += 2
            if t < c:
                h0[_raw_key(values[base + t])] += 1
        h0 += h1
        h0[0x8000] += zeros
        _walk(h0, r0, r1, out, u)
        for j in range(_LOWEST):
            nan[u] += h0[j]
        for j in range(_HIGHEST + 1, 1 << 16):
            nan[u] += h0[j]
        hist[:] = 0
    return nan


@njit(**_JIT)
def _walk(h: np.ndarray, r0: int, r1: int, out: np.ndarray, u: int) -> None:
    """out[:, u] ← the patterns of ranks r0 ≤ r1 of the key histogram h int32 ``[2¹⁶]``: a walk up the keys that
    steps over whole blocks of 256 keys by their sums."""
    cum = 0
    side = 0
    j = _LOWEST
    while j <= _HIGHEST and side < 2:
        target = r0 if side == 0 else r1
        if (j & 255) == 0 and j + 255 < _HIGHEST:
            block = 0
            for i in range(j, j + 256):
                block += h[i]
            if cum + block <= target:  # the rank lies beyond this block
                cum += block
                j += 256
                continue
        cum += h[j]
        while side < 2 and cum > (r0 if side == 0 else r1):
            out[side, u] = j - 0x8000 if j >= 0x8000 else 0xFFFF - j
            side += 1
        j += 1
