"""The writer's per-chunk pass (numba): transpose each stream's rows into a unit-major tile and count its stats.

A chunk of one activation arrives as float16 bit patterns ``[B, T, U]`` (B streams, T steps, U units), of which
stream b's first ``counts[b]`` rows are valid. One pass per stream, while its rows are in cache:

- the rows are transposed into a tile ``[U, counts[b]]`` (packed in ``tiles[b]``), the layout a parquet column
  chunk wants, so that converting the spill at the end is a copy of contiguous runs, not a transpose;
- per unit, over the finite values: sum, sum of squares, min, max, and the histogram bin counts; over all values:
  ``x < LOW``, ``x > HIGH`` (so ±inf count as saturated, as a direct comparison counts them), NaN and ±inf.

numba has no float16 on the CPU, so values are decoded from their bit patterns with integer operations, and min,
max, the thresholds and finiteness are counted on order keys of the bit patterns (:func:`key`), which LLVM
vectorises where float comparisons with NaN in play would stay scalar. The moments may reassociate their float64
sums (that is what lets them vectorise); the histogram bins may not (a reassociated ``(x − lo)·scale`` rounds
differently at a bin edge than the same formula in numpy).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LUT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # float16 bits → value
NO_KEY = 0x7FFF  # the min key of a unit with no finite value (its max key is −NO_KEY)
_DENORMAL = np.float32(2.0**-24)
_ZERO = np.float32(0)
# No nnan/ninf anywhere: NaN and inf are data here (a diverged model). Finiteness is tested on the bit patterns.
_FAST = {"fastmath": {"nsz", "arcp", "contract", "reassoc"}, "error_model": "numpy", "nogil": True, "cache": True}
_STRICT = {"error_model": "numpy", "nogil": True, "cache": True}


def key(bits: np.ndarray) -> np.ndarray:
    """Order keys int64 of float16 bit patterns: ``−magnitude`` for negative, ``magnitude`` for positive values,
    so keys order as the values do (both zeros are 0). NaN's magnitudes are above inf's, 0x7C00."""
    bits = np.asarray(bits, np.int64)
    return np.where(bits & 0x8000, -(bits & 0x7FFF), bits & 0x7FFF)


def key_bits(k: np.ndarray) -> np.ndarray:
    """The float16 bit patterns ``uint16`` of order keys (the inverse of :func:`key`)."""
    k = np.asarray(k, np.int64)
    return np.where(k < 0, 0x8000 | -k, k).astype(np.uint16)


def threshold_keys(low: float, high: float) -> tuple[int, int]:
    """Keys such that for a non-NaN float16 x: ``x < low`` ⇔ key ≤ low_key and ``x > high`` ⇔ key ≥ high_key.

    The comparisons are float32 ones, as ``x < low`` on the stored values reads.
    """
    ok = ~np.isnan(LUT)
    keys = key(np.arange(1 << 16))
    return int(keys[ok & (np.float32(low) > LUT)].max()), int(keys[ok & (np.float32(high) < LUT)].min())


@njit(**_STRICT)
def _transpose(bits: np.ndarray, b: int, c: int, tile: np.ndarray) -> None:
    """tile ``[U·c]`` (unit-major) ← rows ``[0, c)`` of ``bits[b]`` ``[T, U]``, in 16-unit blocks."""
    U = bits.shape[2]
    for u0 in range(0, U, 16):
        u1 = min(u0 + 16, U)
        for t in range(c):
            for u in range(u0, u1):
                tile[u * c + t] = bits[b, t, u]


@njit(**_FAST)
def _moments(
    row: np.ndarray,
    xi: np.ndarray,
    xf: np.ndarray,
    keys: np.ndarray,
    low_key: int,
    high_key: int,
    acc: np.ndarray,
    cnt: np.ndarray,
    u: int,
) -> None:
    """One unit's values (bits ``[c]``) into acc ``[2, U]`` (sum, sumsq) and cnt ``[6, U]`` (n_low, n_high, n_nan,
    n_inf, min key, max key). Leaves the values in xf ``[≥c]`` (0 where not finite) and their keys in keys.

    Three loops, each of which LLVM vectorises: decode (integer ops; xf is xi's float32 view), sums, key counts.
    """
    c = row.shape[0]
    for t in range(c):
        h = np.int32(row[t])
        mag = h & 0x7FFF
        sign = (h & 0x8000) << 16
        xi[t] = (sign | ((mag << 13) + (112 << 23))) if h & 0x7C00 else sign  # normal: rebias the exponent
        keys[t] = -mag if h & 0x8000 else mag
    s = 0.0
    s2 = 0.0
    for t in range(c):
        h = np.int32(row[t])
        e = h & 0x7C00
        small = np.float32(h & 0x3FF) * _DENORMAL
        x = xf[t] + (-small if h & 0x8000 else small) if e == 0 else xf[t]  # denormal: mantissa · 2⁻²⁴
        x = x if e != 0x7C00 else _ZERO
        xf[t] = x
        d = np.float64(x)
        s += d
        s2 += d * d
    k_min = NO_KEY
    k_max = -NO_KEY
    n_low = 0
    n_high = 0
    n_nan = 0
    n_inf = 0
    for t in range(c):
        k = keys[t]
        a = k if k >= 0 else -k
        finite = a < 0x7C00
        nan = a > 0x7C00
        k_min = min(k_min, k if finite else NO_KEY)
        k_max = max(k_max, k if finite else -NO_KEY)
        n_low += (k <= low_key) & (not nan)
        n_high += (k >= high_key) & (not nan)
        n_nan += nan
        n_inf += a == 0x7C00
    acc[0, u] += s
    acc[1, u] += s2
    cnt[0, u] += n_low
    cnt[1, u] += n_high
    cnt[2, u] += n_nan
    cnt[3, u] += n_inf
    cnt[4, u] = min(cnt[4, u], k_min)
    cnt[5, u] = max(cnt[5, u], k_max)


@njit(**_STRICT)
def _histogram(
    xf: np.ndarray, keys: np.ndarray, c: int, lo: float, scale: float, hist: np.ndarray, bins: np.ndarray
) -> None:
    """One unit's values (from :func:`_moments`) into hist ``[4, K + 1]``: bin ``clip((x − lo)·scale, 0, K − 1)`` in
    float32, as numpy computes it (no reassociation here: it would round differently at a bin edge); column K
    takes the non-finite values. Four interleaved copies, so that a run of equal bins (a saturated unit) does not
    make each increment wait for the one before."""
    top = np.float32(hist.shape[1] - 2)
    lo32, scale32 = np.float32(lo), np.float32(scale)
    for t in range(c):
        v = min(max((xf[t] - lo32) * scale32, _ZERO), top)
        a = keys[t] if keys[t] >= 0 else -keys[t]
        bins[t] = np.int32(v) if a < 0x7C00 else hist.shape[1] - 1
    t = 0
    while t + 4 <= c:
        hist[0, bins[t]] += 1
        hist[1, bins[t + 1]] += 1
        hist[2, bins[t + 2]] += 1
        hist[3, bins[t + 3]] += 1
        t += 4
    while t < c:
        hist[0, bins[t]] += 1
        t += 1


@njit(**_STRICT)
def chunk_pass(
    bits: np.ndarray,
    counts: np.ndarray,
    low_key: int,
    high_key: int,
    lo: float,
    scale: float,
    tiles: np.ndarray,
    acc: np.ndarray,
    cnt: np.ndarray,
    hist: np.ndarray,
) -> None:
    """bits uint16 ``[B, T, U]``; counts int64 ``[B]``; tiles uint16 ``[B, U·T]`` (out: tile b packed ``[U, c_b]``).

    Accumulates into acc float64 ``[2, U]``, cnt int64 ``[6, U]`` and hist int64 ``[U, 4, K + 1]`` (see above).
    """
    T, U = bits.shape[1], bits.shape[2]
    xi = np.empty(T, np.int32)
    xf = xi.view(np.float32)
    keys = np.empty(T, np.int32)
    bins = np.empty(T, np.int32)
    for b in range(bits.shape[0]):
        c = counts[b]
        if c <= 0:
            continue
        tile = tiles[b]
        _transpose(bits, b, c, tile)
        for u in range(U):
            _moments(tile[u * c : (u + 1) * c], xi, xf, keys, low_key, high_key, acc, cnt, u)
            _histogram(xf, keys, c, lo, scale, hist[u], bins)
