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

With a :class:`CardState` (the unit cards, :mod:`lstmviz.cards`), the same pass also keeps, per unit, while the
unit's values are in cache:

- the candidates for the greedy top contexts of both signs: every value whose card key (:func:`card_keys`: the
  value's order, then the earlier position) beats the unit's floor enters a buffer ``[2, U, cap]``. The floor is
  the larger of the M-th best key so far (a full buffer is cut to its best M, a selection, not a sort, and that
  threshold rises to the M-th) and the long rows' bound: the (2k − 1)-th best, over the rows of at least
  2·window + 1 positions, of the row's best value at its last position (:mod:`lstmviz.cards` proves every pick
  lies at or above it; a row of NaN alone has no bound). A row whose best non-NaN key is below the floor (most
  rows once it has risen) is skipped after one vectorised reduction. The result is exact whatever the row order:
  a key below a floor is never a pick;
- the rows of the bands' sample (a copy of the stream's rows at the sampled positions, float16 bits);
- the counts beyond ±θ (in the key-count loop), and per strip bin the sum of the finite values (exact in
  float64: float16 values are multiples of 2⁻²⁴ below 2¹⁶, so sums of up to 2¹³ of them are exact in any order;
  a row's last bin takes the row's sum less the others').
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
POS_BITS = 47  # a card key: (order key + 2¹⁵) << POS_BITS | (POS_MAX − position)
POS_MAX = (1 << POS_BITS) - 1
_NAN_FREE = 0x7C00  # |order key| ≤ this: not NaN (±inf included, as a value)


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


def card_keys(k: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """int64 card keys of order keys ``k`` (:func:`key`, of the value times the sign) at corpus positions ``pos``:
    larger is better, value first, then the earlier position; all distinct for distinct positions, all > 0."""
    return ((np.asarray(k, np.int64) + 0x8000) << POS_BITS) | (POS_MAX - np.asarray(pos, np.int64))


def card_order_keys(ck: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order keys and positions int64 of card keys (the inverse of :func:`card_keys`)."""
    ck = np.asarray(ck, np.int64)
    return (ck >> POS_BITS) - 0x8000, POS_MAX - (ck & POS_MAX)


class CardState:
    """What the chunk pass keeps for the unit cards of one activation of ``units`` units (see the module
    docstring); positions are the chunk's rows plus ``offset`` (a shard's start in its run), and strip bin b
    holds positions ``[b·per, (b + 1)·per)``.

    Arrays: ``buf`` int64 ``[2, U, cap]`` card keys (sign +1, −1) of which ``length`` int64 ``[2, U]`` are
    filled; ``thr`` int64 ``[2, U]`` the M-th best key once M are kept (0 before); ``rows`` int64
    ``[2, U, blocks]`` the best ``blocks`` (2k − 1) bounds of the rows of at least ``span`` (2·window + 1)
    positions, ``low`` int64 ``[2, U]`` the smallest of them (0 until as many were seen); ``dens`` int64
    ``[2, U]`` the counts of ``x > θ`` and ``x < −θ``; ``strip_sum`` float64 ``[U, bins]`` the sums of the finite
    values; ``sample`` uint16 ``[U, S]`` the float16 bits of the rows at ``sample_pos`` int64 ``[S]`` (sorted
    positions; NaN where not seen).
    """

    def __init__(
        self,
        units: int,
        m: int,
        theta: float,
        per: int,
        bins: int,
        offset: int = 0,
        blocks: int = 1,
        span: int = 1 << 62,
        sample_pos: np.ndarray | None = None,
    ):
        self.m, self.per, self.offset, self.span = m, per, offset, span
        cap = 2 * m  # a cut every m admissions: the selection costs O(cap), so O(1) per admitted key
        self.buf = np.zeros((2, units, cap), np.int64)
        self.length = np.zeros((2, units), np.int64)
        self.thr = np.zeros((2, units), np.int64)
        self.rows = np.zeros((2, units, max(blocks, 1)), np.int64)
        self.low = np.zeros((2, units), np.int64)
        self.dens = np.zeros((2, units), np.int64)
        keys = key(np.arange(1 << 16))
        ok = ~np.isnan(LUT)
        self.above_key = int(keys[ok & (np.float32(theta) >= LUT)].max())  # x > θ ⇔ key > above_key
        self.below_key = int(keys[ok & (np.float32(-theta) <= LUT)].min())  # x < −θ ⇔ key < below_key
        self.strip_sum = np.zeros((units, bins), np.float64)
        self.sample_pos = np.zeros(0, np.int64) if sample_pos is None else np.asarray(sample_pos, np.int64)
        self.sample = np.full((units, len(self.sample_pos)), 0x7E00, np.uint16)  # NaN until seen

    def floor(self) -> np.ndarray:
        """int64 ``[2, U]``: every key of a greedy pick is above this: one less than the larger of the M-th best key
        (``thr``) and the long rows' bound (``low``)."""
        return np.maximum(self.thr, self.low) - 1

    def args(self) -> tuple:
        """The trailing arguments of :func:`chunk_pass`."""
        return (
            True, self.offset, self.m, self.buf, self.length, self.thr, self.dens, self.above_key, self.below_key,
            self.per, self.strip_sum, self.rows, self.low, self.span, self.sample_pos, self.sample,
        )  # fmt: skip


_NO_CARDS = (
    False, 0, 1, np.zeros((2, 1, 1), np.int64), np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64),
    np.zeros((2, 1), np.int64), 0, 0, 1, np.zeros((1, 1)), np.zeros((2, 1, 1), np.int64), np.zeros((2, 1), np.int64), 1,
    np.zeros(0, np.int64), np.zeros((1, 0), np.uint16),
)  # fmt: skip


def no_cards() -> tuple:
    """The trailing arguments of :func:`chunk_pass` without cards (never written to)."""
    return _NO_CARDS


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
    above_key: int,
    below_key: int,
    acc: np.ndarray,
    cnt: np.ndarray,
    u: int,
) -> tuple[float, int, int, int, int]:
    """One unit's values (bits ``[c]``) into acc ``[2, U]`` (sum, sumsq) and cnt ``[6, U]`` (n_low, n_high, n_nan,
    n_inf, min key, max key). Leaves the values in xf ``[≥c]`` (0 where not finite) and their keys in keys.

    Three loops, each of which LLVM vectorises: decode (integer ops; xf is xi's float32 view), sums, key counts.
    Returns, for the cards, the row's sum, the counts of keys above ``above_key`` and below ``below_key`` (not
    NaN), and the max and min key over the values that are not NaN.
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
    n_above = 0
    n_below = 0
    kn_max = -0x8000
    kn_min = 0x8000
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
        n_above += (k > above_key) & (not nan)
        n_below += (k < below_key) & (not nan)
        kn_max = max(kn_max, k if not nan else -0x8000)
        kn_min = min(kn_min, k if not nan else 0x8000)
    acc[0, u] += s
    acc[1, u] += s2
    cnt[0, u] += n_low
    cnt[1, u] += n_high
    cnt[2, u] += n_nan
    cnt[3, u] += n_inf
    cnt[4, u] = min(cnt[4, u], k_min)
    cnt[5, u] = max(cnt[5, u], k_max)
    return s, n_above, n_below, kn_max, kn_min


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


@njit(**_FAST)
def _strip(xf: np.ndarray, c: int, pos0: int, per: int, s: float, ssum: np.ndarray) -> None:
    """One unit's row sum s of values xf ``[≥c]`` (0 where not finite) at positions ``pos0 + [0, c)`` into its
    strip bins ``ssum``: each bin's part summed, the last one's the rest (exact, see the module docstring)."""
    t = 0
    b = pos0 // per
    while (b + 1) * per - pos0 < c:
        t1 = (b + 1) * per - pos0
        part = 0.0
        for i in range(t, t1):
            part += np.float64(xf[i])
        ssum[b] += part
        s -= part
        t = t1
        b += 1
    ssum[b] += s


@njit(**_STRICT)
def _cut(buf: np.ndarray, n: int, m: int, thr: np.ndarray, s: int) -> int:
    """Cut ``buf[:n]`` to its best m keys; ``thr[s]`` ← the m-th. Returns m."""
    part = np.partition(buf[:n], n - m)
    thr[s] = part[n - m]
    buf[:m] = part[n - m :]
    return m


@njit(**_STRICT)
def _admit(
    row: np.ndarray,
    c: int,
    pos0: int,
    m: int,
    buf: np.ndarray,
    length: np.ndarray,
    thr: np.ndarray,
    u: int,
    floor_pos: int,
    floor_neg: int,
) -> None:
    """The values of unit u (row: float16 bits ``[c]``) at positions ``pos0 + [0, c)`` whose card keys beat
    ``thr[s, u]`` and the rows' floor (``floor_pos``, ``floor_neg``) into ``buf[s, u]`` ``[cap ≥ 2m]``
    (``length[s, u]`` filled), for both signs s (0: x, 1: −x) in one loop. A key below both thresholds' order
    keys is passed over with two comparisons; one at or above them is written to both buffers and each fill
    advances by whether its card key beat that sign's threshold (measured faster than writing every key, since
    most keys are passed over). Before a piece of the row could overflow a buffer, it is cut to its best m and
    the threshold rises to the m-th."""
    n_pos, n_neg = length[0, u], length[1, u]
    pos_buf, neg_buf = buf[0, u], buf[1, u]
    thr_u = thr[:, u]
    cap = buf.shape[2]
    tail = POS_MAX - pos0
    for t0 in range(0, c, cap - m):
        t1 = min(c, t0 + cap - m)
        if n_pos + t1 - t0 > cap:
            n_pos = _cut(pos_buf, n_pos, m, thr_u, 0)
        if n_neg + t1 - t0 > cap:
            n_neg = _cut(neg_buf, n_neg, m, thr_u, 1)
        th_pos, th_neg = max(thr_u[0], floor_pos), max(thr_u[1], floor_neg)
        lo_pos = (th_pos >> POS_BITS) - 0x8000  # no key below the threshold's order key can beat it
        lo_neg = (th_neg >> POS_BITS) - 0x8000
        for t in range(t0, t1):
            h = np.int32(row[t])
            k = -(h & 0x7FFF) if h & 0x8000 else h & 0x7FFF
            if (k >= lo_pos or -k >= lo_neg) and (k if k >= 0 else -k) <= _NAN_FREE:
                at = tail - t
                ck = (np.int64(k + 0x8000) << POS_BITS) | at
                nk = (np.int64(0x8000 - k) << POS_BITS) | at
                pos_buf[n_pos] = ck
                neg_buf[n_neg] = nk
                n_pos += ck > th_pos
                n_neg += nk > th_neg
    length[0, u], length[1, u] = n_pos, n_neg


@njit(**_STRICT)
def _bound(best: np.ndarray, low: np.ndarray, s: int, u: int, lb: int) -> None:
    """Keep a unit's ``len(best)`` largest row bounds, ``low[s, u]`` the smallest (0 until as many were kept): lb
    replaces the smallest if it is larger."""
    if lb <= low[s, u]:
        return
    at = 0
    for i in range(1, best.shape[0]):
        if best[i] < best[at]:
            at = i
    best[at] = lb
    least = best[0]
    for i in range(1, best.shape[0]):
        least = min(least, best[i])
    low[s, u] = least


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
    starts: np.ndarray,
    cards: bool,
    offset: int,
    m: int,
    buf: np.ndarray,
    length: np.ndarray,
    thr: np.ndarray,
    dens: np.ndarray,
    above_key: int,
    below_key: int,
    per: int,
    strip_sum: np.ndarray,
    rows: np.ndarray,
    low: np.ndarray,
    span: int,
    sample_pos: np.ndarray,
    sample: np.ndarray,
) -> None:
    """bits uint16 ``[B, T, U]``; counts int64 ``[B]``; tiles uint16 ``[B, U·T]`` (out: tile b packed ``[U, c_b]``).

    Accumulates into acc float64 ``[2, U]``, cnt int64 ``[6, U]`` and hist int64 ``[U, 4, K + 1]`` (see above).
    With ``cards``, stream b's rows are at positions ``offset + starts[b] + [0, counts[b])`` and the arguments
    after it are a :class:`CardState`'s (:meth:`CardState.args`); without, they are never touched.
    """
    T, U = bits.shape[1], bits.shape[2]
    xi = np.empty(T, np.int32)
    xf = xi.view(np.float32)
    keys = np.empty(T, np.int32)
    bins = np.empty(T, np.int32)
    best = np.full((bits.shape[0], 2, U), -0x8000, np.int32) if cards else np.empty((0, 2, U), np.int32)
    for b in range(bits.shape[0]):
        c = counts[b]
        if c <= 0:
            continue
        tile = tiles[b]
        _transpose(bits, b, c, tile)
        pos0 = offset + starts[b]
        if cards:
            i0 = np.searchsorted(sample_pos, pos0)
            i1 = np.searchsorted(sample_pos, pos0 + c)
            for i in range(i0, i1):
                sample[:, i] = bits[b, sample_pos[i] - pos0, :]
        for u in range(U):
            row = tile[u * c : (u + 1) * c]
            s, n_above, n_below, kn_max, kn_min = _moments(
                row, xi, xf, keys, low_key, high_key, above_key, below_key, acc, cnt, u
            )
            _histogram(xf, keys, c, lo, scale, hist[u], bins)
            if cards:
                dens[0, u] += n_above
                dens[1, u] += n_below
                _strip(xf, c, pos0, per, s, strip_sum[u])
                best[b, 0, u] = kn_max  # −0x8000: every value NaN, no candidate and no bound
                best[b, 1, u] = -kn_min
                if c >= span and kn_max != -0x8000:  # a long row: its best key, at its last position at worst
                    last = POS_MAX - (pos0 + c - 1)
                    _bound(rows[0, u], low, 0, u, (np.int64(kn_max + 0x8000) << POS_BITS) | last)
                    _bound(rows[1, u], low, 1, u, (np.int64(0x8000 - kn_min) << POS_BITS) | last)
    if cards:  # every row's bound is in before any row is admitted, so the chunk's first rows meet a risen floor
        for b in range(bits.shape[0]):
            c = counts[b]
            if c <= 0:
                continue
            pos0 = offset + starts[b]
            first = POS_MAX - pos0  # the row's best card key of either sign has its first position
            for u in range(U):
                if best[b, 0, u] == -0x8000:
                    continue
                floor_pos = low[0, u] - 1
                floor_neg = low[1, u] - 1
                best_pos = (np.int64(best[b, 0, u] + 0x8000) << POS_BITS) | first
                best_neg = (np.int64(best[b, 1, u] + 0x8000) << POS_BITS) | first
                if best_pos > max(thr[0, u], floor_pos) or best_neg > max(thr[1, u], floor_neg):
                    row = tiles[b, u * c : (u + 1) * c]
                    _admit(row, c, pos0, m, buf, length, thr, u, floor_pos, floor_neg)
