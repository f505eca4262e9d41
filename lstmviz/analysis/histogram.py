"""A unit's histogram over its own range, and its largest |value|: for the Unit page, from its whole column.

A column as stored (float16) is binned from the count of each of its 65536 possible values (one pass, no float64
copy, the same result as binning the values one by one); any other array is binned directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import probes

HIST_BINS = 60
TAIL = 0.005  # the histogram's range drops this fraction of steps at each end, when the tails are long
STRETCH = 2.0  # … "long": the observed range is more than this many times the 0.5–99.5 % range


@dataclass(frozen=True)
class Histogram:
    """A unit's value counts over its own range: ``counts [bins]`` over ``edges [bins + 1]``; ``below`` and
    ``above`` count the finite values outside the edges (0 unless the range was cut to quantiles)."""

    counts: np.ndarray
    edges: np.ndarray
    below: int
    above: int


def histogram(x: np.ndarray, bins: int = HIST_BINS, tail: float = TAIL) -> Histogram:
    """The histogram of one unit's values x ``[tokens]`` (NaN and ±inf left out) over the unit's own range.

    The range is the observed [min, max], unless a few extreme steps stretch it more than ``STRETCH`` times the
    ``tail``…``1 − tail`` quantile range: then it is that quantile range and the steps beyond are counted in
    ``below``/``above``, so the page can say what it leaves out. (stats.parquet's histogram shares one range
    across an activation's units, which leaves a cell state with a small range as one spike.)
    """
    if np.asarray(x).dtype == np.float16:
        return _histogram_f16(np.asarray(x), bins, tail)
    v = np.asarray(x, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return Histogram(np.zeros(bins, np.int64), np.linspace(-1.0, 1.0, bins + 1), 0, 0)
    lo, hi = float(v.min()), float(v.max())
    q_lo, q_hi = (float(q) for q in np.quantile(v, [tail, 1 - tail]))
    return _binned(v, None, lo, hi, q_lo, q_hi, bins)


def peak(x: np.ndarray) -> float:
    """The largest |value| of a column x ``[tokens]``, NaN left out (1.0 for an empty or all-NaN one): for float16,
    from the bit patterns (integer work, where float16 arithmetic is emulated and slow)."""
    x = np.asarray(x)
    if x.dtype == np.float16:
        b = x.view(np.uint16) & 0x7FFF  # |value|'s pattern; NaN patterns lie above 0x7C00 (inf)
        number = b <= 0x7C00
        if not number.any():
            return 1.0
        return float(np.uint16(np.max(b, where=number, initial=0)).view(np.float16))
    finite = x[~np.isnan(x)]
    return float(np.max(np.abs(finite))) if len(finite) else 1.0


def _binned(
    v: np.ndarray, w: np.ndarray | None, lo: float, hi: float, q_lo: float, q_hi: float, bins: int
) -> Histogram:
    """The histogram of values v ``[n]`` (each counted ``w`` times, default once) from their range and quantiles."""
    if q_hi > q_lo and hi - lo > STRETCH * (q_hi - q_lo):
        lo, hi = q_lo, q_hi
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi), weights=w)
    w = np.ones(len(v), np.int64) if w is None else w
    return Histogram(counts.astype(np.int64), edges, int(w[v < lo].sum()), int(w[v > hi].sum()))


def spread(x: np.ndarray, bins: int = HIST_BINS, tail: float = TAIL) -> tuple[Histogram, float]:
    """(:func:`histogram`, :func:`peak`) of a column x ``[tokens]``: for float16, both from one count of its values
    (the Unit page needs both of every unit it shows, and each pass over 10M values costs tens of ms)."""
    x = np.asarray(x)
    if x.dtype != np.float16:
        return histogram(x, bins, tail), peak(x)
    counts = _counts_f16(x)
    seen = probes._key_values()[counts > 0]
    number = seen[~np.isnan(seen)]
    return _histogram_counts(counts, bins, tail), float(np.abs(number).max()) if len(number) else 1.0


def _counts_f16(x: np.ndarray) -> np.ndarray:
    """int64 ``[65536]``: how many of the float16 values x ``[tokens]`` hold each key of ``probes._order_keys``."""
    counts = np.zeros((1, 1, probes.N_KEYS), np.int64)
    probes._count(x[:, None], np.zeros(len(x), np.int8), counts, None, np.zeros(1))
    return counts[0, 0]


def _histogram_f16(x: np.ndarray, bins: int, tail: float) -> Histogram:
    """:func:`histogram` of float16 values ``[tokens]`` (a column as stored) from the count of each of the 65536
    values, one pass and no float64 copy: the same range, quantiles and counts as the float64 path (np.quantile's
    interpolation between the two order statistics it picks, each value in the bin np.histogram gives it)."""
    return _histogram_counts(_counts_f16(x), bins, tail)


def _histogram_counts(counts: np.ndarray, bins: int, tail: float) -> Histogram:
    """:func:`_histogram_f16` from the counts of each key ``[65536]``."""
    v = probes._key_values()
    seen = np.flatnonzero(counts * np.isfinite(v))  # keys in value order
    if not len(seen):
        return Histogram(np.zeros(bins, np.int64), np.linspace(-1.0, 1.0, bins + 1), 0, 0)
    v, c = v[seen], counts[seen]
    n, cum = int(c.sum()), np.cumsum(c)
    q = []
    for p in (tail, 1 - tail):
        at = (n - 1) * p
        i = int(np.floor(at))
        pair = v[np.searchsorted(cum, [i, min(i + 1, n - 1)], side="right")]  # order statistics i and i + 1
        q.append(float(np.quantile(pair, at - i)))
    return _binned(v, c, float(v[0]), float(v[-1]), q[0], q[1], bins)
