"""The overview's bin sums as one compiled loop (numba), over float16 bit patterns read through a table.

numba has no float16, so values arrive as their uint16 patterns and ``F16`` (float32 ``[65536]``, 256 kB, held in
cache) gives each its value; numpy's float16 → float32 cast plus a NaN mask and a reduction cost several passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(error_model="numpy", cache=True, nogil=True)
def bin_sums(h: np.ndarray, table: np.ndarray, start: int, per: int, sums: np.ndarray, counts: np.ndarray) -> None:
    """sums float64 / counts int64 ``[bins, U]`` += the non-NaN values of rows ``start…`` (h uint16 ``[n, U]``),
    row r into bin ``r // per``."""
    n, U = h.shape
    for t in range(n):
        b = (start + t) // per
        for u in range(U):
            v = table[h[t, u]]
            if v == v:
                sums[b, u] += v
                counts[b, u] += 1
