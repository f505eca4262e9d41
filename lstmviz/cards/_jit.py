"""Compiled twin of the per-chunk scan of :class:`lstmviz.cards.CardBuilder` (numba; see ``cards.build.jit``).

One pass over a chunk does what the numpy path does in several: the orderable key of each value for both signs,
the keys that beat each unit's threshold, the counts beyond ±θ, and the strip's sum, max and min per corpus bin.
"""

from __future__ import annotations

import numba
import numpy as np

POS_BITS = 47
POS_MAX = (1 << POS_BITS) - 1


@numba.njit(cache=True, nogil=True)
def scan(bits, x, start, thr_pos, thr_neg, above, below, n_above, n_below, per, s_sum, s_max, s_min, out, b0):
    """bits uint16 ``[n, U]`` (float16 patterns), x float32 ``[n, U]`` the same values; thr_* int64 ``[U]``;
    above / below: the orderable keys of θ and −θ; s_* ``[bins, U]`` the strip from bin ``b0`` on.

    Fills ``out`` int64 ``[2, cap, 2]`` with admitted ``(unit, key)`` pairs per sign; returns their counts ``[2]``.
    """
    n, U = bits.shape
    count = np.zeros(2, np.int64)
    for r in range(n):
        pos = start + r
        tail = POS_MAX - pos
        b = pos // per - b0
        for u in range(U):
            v = bits[r, u]
            if v == 0x8000:
                v = 0
            if (v & 0x7C00) == 0x7C00 and (v & 0x03FF) != 0:
                o = 0  # NaN: never a top context, never counted
            elif v >> 15:
                o = (~v) & 0xFFFF
            else:
                o = v | 0x8000
            if o == 0:
                continue
            key = (np.int64(o) << POS_BITS) | tail
            if key > thr_pos[u]:
                out[0, count[0], 0] = u
                out[0, count[0], 1] = key
                count[0] += 1
            nkey = (np.int64(0xFFFF - o) << POS_BITS) | tail
            if nkey > thr_neg[u]:
                out[1, count[1], 0] = u
                out[1, count[1], 1] = nkey
                count[1] += 1
            if o > above:
                n_above[u] += 1
            elif o < below:
                n_below[u] += 1
            f = x[r, u]
            if np.isfinite(f):
                s_sum[b, u] += f
                if f > s_max[b, u]:
                    s_max[b, u] = f
                if f < s_min[b, u]:
                    s_min[b, u] = f
    return count
