"""Compiled loop (numba) for neuron search: per-unit counts of each float16 value, split by the token's class.

Importing this module compiles nothing; the first call compiles (seconds) and caches the machine code on disk.
:mod:`lstmviz.analysis.probes` holds the numpy equivalent used when numba cannot run here.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(error_model="numpy", cache=True, nogil=True)
def count_keys(
    bits: np.ndarray, cls: np.ndarray, hist: np.ndarray, yc: np.ndarray, sxy: np.ndarray, values: np.ndarray
) -> None:
    """hist int64 ``[classes, units, 65536]`` += 1 at ``[cls[t], u, key(bits[t, u])]`` for each step t with
    ``cls[t] >= 0``; bits uint16 ``[n, units]`` are float16 bit patterns, cls int8 ``[n]``. The key is
    :func:`lstmviz.analysis.probes._order_keys`'s (−0 folded onto +0, then sign-flipped so integer order is float
    order). With yc float64 ``[n]`` (else empty), also sxy ``[units]`` += Σ x·yc over the counted steps, x the
    value of each pattern (values float64 ``[65536]``: numba has no float16). Unit by unit, so each unit's 65536
    counters stay in cache while its column streams past."""
    n, U = bits.shape
    with_y = len(yc) > 0
    for u in range(U):
        acc = 0.0
        for t in range(n):
            c = cls[t]
            if c < 0:
                continue
            b = np.int64(bits[t, u])
            if with_y:
                acc += values[b] * yc[t]
            if b == 0x8000:
                b = 0
            hist[c, u, (0xFFFF - b) if b & 0x8000 else (b | 0x8000)] += 1
        sxy[u] += acc
