"""Compiled loops (numba) that build the match index from the writer's unit-major rows.

The writer lays each chunk out unit-major for its parquet pages (:mod:`lstmviz.store._stats_jit`) and assembles the
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
