"""One compiled pass per unit over a finished activation's stored values: its exact order statistics and its unit
cards' top-context candidates, from a histogram of the unit's 2¹⁶ float16 patterns.

When a recording closes, the writer hands its spill observers every stored value once, unit-major, where it lies in
the files it wrote (:class:`~lstmviz.store.RunWriter`, ``read_spill``). A quantile θ of the match index
(:mod:`lstmviz.analysis.match_pass`) and the unit cards (:mod:`lstmviz.cards`) both need, per unit, a walk over the
unit's sorted values, and a histogram of the 2¹⁶ patterns gives that walk without sorting. :class:`Sweep` is the one
pass they share: each asks for what it needs when it is made (:meth:`Sweep.want_ranks`, :meth:`Sweep.want_cards`),
and the first ``read_spill`` runs :func:`sweep` for all of them.

Per unit:

- the histogram over the *raw keys* of the patterns (:func:`raw_key`: unsigned, in the values' order, both zeros
  on one key; NaN's patterns fall below −inf's key or above +inf's), in two interleaved copies, so that a run of
  one value (a saturated unit) does not make each increment wait for the one before;
- the order statistics of two ranks among the non-NaN values, a walk up the keys;
- for the cards: the key ``kp`` at which the count of keys from the top reaches M, so that the unit's top M card
  keys (value first, then the earlier position: :func:`lstmviz.f16keys.card_keys`) are exactly the values above
  ``kp`` and the earliest positions at ``kp`` (as many as M leaves), and the same from the bottom for the negative
  sign; then one scan of the values in corpus order collects them, skipping each block whose maximum and minimum
  keys show it holds none, and stopping once it has them all. Of those, only the keys at or above a floor can be
  picks: the (2k − 1)-th best of the blocks' maxima, over the blocks of at least 2·window + 1 rows
  (:mod:`lstmviz.cards` proves it), so that most blocks are skipped. The counts beyond ±θ come from the histogram,
  and the values at the bands' sampled positions from the scan.

A block's summary is the max and min raw keys of its values that are not NaN. In a recording the blocks are the
overview's bins: the writer's stats pass takes each bin's min and max order keys of its finite values while it
counts the bin's sums, with the values in cache and in the vector registers its min and max per stream already
took (:class:`~lstmviz.bins.BinSums`), so the cards cost the writer's thread nothing there and the sweep
only a scan of the few blocks that reach the floor. ±inf are not finite, but a bin's sum says which it holds (+inf
or −inf alone, NaN for both). A unit whose count of such values is not the stats pass's (rows never written, or
written twice) and a file swept after its recording (:func:`lstmviz.cards.build_cards`: no bins) take the blocks'
extremes in the sweep, 64-row blocks for the file, in a vectorised pass over the unit's values.

The values are read where they lie: ``tiles`` int64 ``[k, 4]`` lists runs of rows in corpus order, disjoint (first
row, rows c, element offset of unit 0's run, elements from one unit's run to the next).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bins import BinSums, no_keys
from .f16keys import NO_KEY, POS_BITS, POS_MAX, key

_JIT = {"error_model": "numpy", "cache": True, "nogil": True}
LOWEST, HIGHEST = 0x03FF, 0xFC00  # the raw keys of −inf and +inf; beyond them lie NaN's patterns
ZERO = 0x8000  # the raw key of both zeros
BLOCK = 64  # rows per block where the sweep takes the blocks' extremes itself


def raw_key(bits: np.ndarray) -> np.ndarray:
    """The raw keys int64 of float16 bit patterns (see the module docstring): ``0x8000 + key`` for a value ≥ 0,
    ``0x7FFF + key`` for a negative one (:func:`lstmviz.f16keys.key`)."""
    k = key(bits)
    return np.where(k >= 0, ZERO + k, 0x7FFF + k)


@njit(inline="always", **_JIT)
def _raw(b: int) -> int:
    b = np.int32(b)
    b = b * (b != 0x8000)
    return b ^ (0x8000 | ((b >> 15) * 0x7FFF))


@njit(inline="always", **_JIT)
def _card_key(r: int, sign: int, pos: int) -> int:
    """The card key of raw key r (not NaN) times ``sign`` at corpus position ``pos``."""
    k = r - ZERO if r >= ZERO else r - 0x7FFF
    return (np.int64(sign * k + 0x8000) << POS_BITS) | (POS_MAX - pos)


@njit(**_JIT)
def _walk(h: np.ndarray, lo: int, r0: int, r1: int, out: np.ndarray, u: int) -> None:
    """out[:, u] ← the patterns of ranks r0 ≤ r1 of the non-NaN keys of histogram h int32 ``[2¹⁶]``, whose lowest
    filled key is ≥ lo: a walk up the keys that steps over whole blocks of 256 keys by their sums."""
    cum = 0
    side = 0
    j = max(lo, LOWEST)
    while j <= HIGHEST and side < 2:
        if (j & 255) == 0 and j + 255 < HIGHEST:
            block = 0
            for i in range(j, j + 256):
                block += h[i]
            if cum + block <= (r0 if side == 0 else r1):  # the rank lies beyond this block
                cum += block
                j += 256
                continue
        cum += h[j]
        while side < 2 and cum > (r0 if side == 0 else r1):
            out[side, u] = j - 0x8000 if j >= 0x8000 else 0xFFFF - j
            side += 1
        j += 1


@njit(inline="always", **_JIT)
def _raw_of_key(k: int) -> int:
    """The raw key of an order key (:func:`lstmviz.f16keys.key`); ``−NO_KEY`` (a block with no finite value's
    maximum) maps below −inf's raw key, ``NO_KEY`` (its minimum) above +inf's."""
    return ZERO + k if k >= 0 else 0x7FFF + k


@njit(inline="always", **_JIT)
def _bound(extreme: int) -> int:
    """A block's largest (or smallest) raw key as a bound a greedy floor may use: the key itself where it is a
    value's, else −1 (a block with no value that is not NaN: no bound)."""
    return extreme if LOWEST <= extreme <= HIGHEST else -1


@njit(inline="always", **_JIT)
def _scatter(values: np.ndarray, base: int, c: int, h0: np.ndarray, h1: np.ndarray) -> None:
    """The histogram of one unit's run ``values[base : base + c]`` into h0 and h1, interleaved."""
    t = 0
    while t + 2 <= c:
        h0[_raw(values[base + t])] += 1
        h1[_raw(values[base + t + 1])] += 1
        t += 2
    if t < c:
        h0[_raw(values[base + t])] += 1


@njit(**_JIT)
def _extents(values: np.ndarray, tiles: np.ndarray, u: int, origin: int, per: int, keys: np.ndarray) -> None:
    """Unit u's min and max order keys of the values that are not NaN (±inf among them) of each block of ``per``
    rows (row r in block ``(origin + r) // per``) into keys int16 ``[blocks, 2]``, which hold NO_KEY, −NO_KEY."""
    for k in range(tiles.shape[0]):
        r0, c = tiles[k, 0], tiles[k, 1]
        base = tiles[k, 2] + u * tiles[k, 3]
        t0 = 0
        while t0 < c:
            b = (origin + r0 + t0) // per
            t1 = min(c, (b + 1) * per - origin - r0)
            lo, hi = keys[b, 0], keys[b, 1]
            run = values[base + t0 : base + t1]
            for t in range(run.shape[0]):  # branch-free in 16-bit lanes, so that it runs in vector registers
                h = np.int16(run[t])
                sign = h >> np.int16(15)
                mag = h & np.int16(0x7FFF)
                k16 = np.int16(mag ^ sign) - sign  # the order key: −mag for a negative pattern
                value = mag <= np.int16(0x7C00)
                small = k16 if value else np.int16(NO_KEY)
                large = k16 if value else np.int16(-NO_KEY)
                lo = small if small < lo else lo
                hi = large if large > hi else hi
            keys[b, 0], keys[b, 1] = lo, hi
            t0 = t1


@njit(**_JIT)
def _rows(tiles: np.ndarray, origin: int, per: int, blocks: int) -> np.ndarray:
    """The rows the tiles cover in each block of ``per`` rows: int64 ``[blocks]``."""
    size = np.zeros(blocks, np.int64)
    for k in range(tiles.shape[0]):
        r, end = tiles[k, 0], tiles[k, 0] + tiles[k, 1]
        while r < end:
            b = (origin + r) // per
            r1 = min(end, (b + 1) * per - origin)
            size[b] += r1 - r
            r = r1
    return size


@njit(**_JIT)
def _summary(keys: np.ndarray, sums: np.ndarray, u: int, summary: np.ndarray) -> None:
    """Unit u's blocks as the stats pass took them (:class:`~lstmviz.bins.BinSums` keys and sums) into summary int64
    ``[2, blocks]``: the max and min raw keys of each block's values that are not NaN. The keys leave ±inf out; a
    block's sum is +inf where it holds +inf and no −inf, −inf for the converse, NaN where it holds both."""
    for b in range(summary.shape[1]):
        hi, lo, s = _raw_of_key(keys[b, 1, u]), _raw_of_key(keys[b, 0, u]), sums[b, u]
        if s == np.inf or s != s:
            hi, lo = HIGHEST, min(lo, HIGHEST)
        if s == -np.inf or s != s:
            hi, lo = max(hi, LOWEST), LOWEST
        summary[0, b], summary[1, b] = hi, lo


@njit(**_JIT)
def _floor(summary: np.ndarray, side: int, size: np.ndarray, span: int, nth: int, sign: int) -> int:
    """A raw key at or below every greedy pick of the sign's (at or above, for −1): the nth best of the bounds
    (:func:`_bound` of each block's extreme ``summary[side]`` of that sign) of the blocks of at least ``span`` rows
    that have one (:mod:`lstmviz.cards` proves it); the worst key when fewer than nth blocks have one."""
    scratch = np.empty(size.shape[0], np.int64)
    n = 0
    for i in range(size.shape[0]):
        bound = _bound(summary[side, i])
        if size[i] >= span and bound >= 0:
            scratch[n] = sign * bound
            n += 1
    if n < nth:
        return 0 if sign > 0 else 0xFFFF
    return sign * np.partition(scratch[:n], n - nth)[n - nth]


@njit(**_JIT)
def _collect(
    values: np.ndarray,
    tiles: np.ndarray,
    u: int,
    offset: int,
    kp: int,
    tp: int,
    kn: int,
    tn: int,
    want: np.ndarray,
    origin: int,
    per: int,
    summary: np.ndarray,
    top: np.ndarray,
    sample_pos: np.ndarray,
    sample: np.ndarray,
) -> None:
    """Unit u's top card keys of both signs into top int64 ``[2, U, M]`` (descending, 0 padded): the keys above
    kp and the first tp at kp (positive), below kn and the first tn at kn (negative), ``want`` ``[2]`` of them,
    reading only the blocks (row r in block ``(origin + r) // per``) whose summary ``[2, blocks]`` (the max and min
    raw keys of their values that are not NaN) shows they may hold some, and only until both signs have all they
    want (a saturated unit's ties at its extreme are found early); and its values at the sampled positions into
    sample uint16 ``[U, S]``. Positions are rows plus ``offset``."""
    reach_hi = kp if tp > 0 else kp + 1  # a block holds a candidate only if its max reaches this
    reach_lo = kn if tn > 0 else kn - 1
    n_pos = 0
    n_neg = 0
    si = 0
    S = sample_pos.shape[0]
    for k in range(tiles.shape[0]):
        r0, c = tiles[k, 0], tiles[k, 1]
        pos0 = offset + r0
        base = tiles[k, 2] + u * tiles[k, 3]
        while si < S and sample_pos[si] < pos0 + c:
            if sample_pos[si] >= pos0:
                sample[u, si] = values[base + sample_pos[si] - pos0]
            si += 1
        t0 = 0
        while t0 < c and (n_pos < want[0] or n_neg < want[1]):
            b = (origin + r0 + t0) // per
            t1 = min(c, (b + 1) * per - origin - r0)
            if (n_pos == want[0] or summary[0, b] < reach_hi) and (n_neg == want[1] or summary[1, b] > reach_lo):
                t0 = t1
                continue
            for t in range(t0, t1):
                r = _raw(values[base + t])
                if r <= HIGHEST and (r > kp or (r == kp and tp > 0)):
                    if r == kp:
                        tp -= 1
                    top[0, u, n_pos] = _card_key(r, 1, pos0 + t)
                    n_pos += 1
                if r >= LOWEST and (r < kn or (r == kn and tn > 0)):
                    if r == kn:
                        tn -= 1
                    top[1, u, n_neg] = _card_key(r, -1, pos0 + t)
                    n_neg += 1
            t0 = t1
    _descending(top[0, u], n_pos)
    _descending(top[1, u], n_neg)


@njit(**_JIT)
def _descending(row: np.ndarray, n: int) -> None:
    """row[:n] sorted descending, the rest 0."""
    row[:n] = np.sort(row[:n])[::-1]
    row[n:] = 0


@njit(**_JIT)
def sweep(
    values: np.ndarray,
    tiles: np.ndarray,
    zeros: int,
    r0: int,
    r1: int,
    order: np.ndarray,
    nan: np.ndarray,
    offset: int,
    nth: int,
    span: int,
    above: int,
    below: int,
    top: np.ndarray,
    dens: np.ndarray,
    sample_pos: np.ndarray,
    sample: np.ndarray,
    origin: int,
    per: int,
    blocks: int,
    keys: np.ndarray,
    sums: np.ndarray,
    seen: np.ndarray,
) -> None:
    """Every unit of the stored values (see the module docstring); U is ``len(nan)``.

    values uint16 ``[*]``, tiles int64 ``[k, 4]``; ``zeros`` more values of +0 per unit (rows no tile covers,
    stored as 0), counted in the order statistics only. Out: nan int64 ``[U]`` the NaN counts; with r0 ≥ 0,
    order uint16 ``[2, U]`` the patterns of ranks r0 ≤ r1 among the non-NaN values; with ``top`` int64
    ``[2, U, M]`` of M > 0 (the cards), the unit's top M card keys of x and of −x (positions offset by
    ``offset``), dens int64 ``[2, U]`` the counts of raw keys above ``above`` and below ``below`` (not NaN), and
    sample uint16 ``[U, S]`` the values at the sorted positions sample_pos int64 ``[S]`` (left as they are where no
    row holds one). The cards' blocks: row r in block ``(origin + r) // per``, of ``blocks`` blocks. Where the
    stats pass took a unit's blocks (:class:`~lstmviz.bins.BinSums`: keys int16 ``[blocks, 2, U]``, sums float64
    ``[blocks, U]``),
    seen int64 ``[U]`` is how many values that are not NaN it saw; the sweep takes a unit's blocks itself where that
    is not the number the tiles hold (rows never written, or written twice) or where seen is −1 (no blocks given).
    """
    U = nan.shape[0]
    M = top.shape[2]
    hist = np.zeros((2, 1 << 16), np.int32)
    h0, h1 = hist[0], hist[1]
    size = _rows(tiles, origin, per, blocks) if M > 0 else np.zeros(0, np.int64)
    covered = size.sum()
    summary = np.empty((2, size.shape[0]), np.int64)
    own = np.empty((size.shape[0], 2), np.int16)
    want = np.empty(2, np.int64)
    for u in range(U):
        for k in range(tiles.shape[0]):
            _scatter(values, tiles[k, 2] + u * tiles[k, 3], tiles[k, 1], h0, h1)
        lo = 0  # the filled keys: found in the histogram, cheaper than a min and max per value
        while lo < 1 << 16 and h0[lo] == 0 and h1[lo] == 0:
            lo += 1
        hi = (1 << 16) - 1
        while hi >= lo and h0[hi] == 0 and h1[hi] == 0:
            hi -= 1
        for j in range(lo, hi + 1):
            h0[j] += h1[j]
            h1[j] = 0
        n_nan = 0
        for j in range(lo, min(hi + 1, LOWEST)):
            n_nan += h0[j]
        for j in range(max(lo, HIGHEST + 1), hi + 1):
            n_nan += h0[j]
        nan[u] = n_nan
        if M > 0:
            n_above = 0
            for j in range(max(lo, above + 1), min(hi, HIGHEST) + 1):
                n_above += h0[j]
            n_below = 0
            for j in range(max(lo, LOWEST), min(hi + 1, below)):
                n_below += h0[j]
            dens[0, u], dens[1, u] = n_above, n_below
            kp, tp, cum = LOWEST - 1, 0, 0  # fewer than M values: every one, no ties to cut
            for j in range(min(hi, HIGHEST), max(lo, LOWEST) - 1, -1):
                if cum + h0[j] >= M:
                    kp, tp = j, M - cum
                    break
                cum += h0[j]
            kn, tn, cum = HIGHEST + 1, 0, 0
            for j in range(max(lo, LOWEST), min(hi, HIGHEST) + 1):
                if cum + h0[j] >= M:
                    kn, tn = j, M - cum
                    break
                cum += h0[j]
            if seen[u] != covered - n_nan:
                own[:, 0], own[:, 1] = NO_KEY, -NO_KEY
                _extents(values, tiles, u, origin, per, own)
                for b in range(size.shape[0]):
                    summary[0, b], summary[1, b] = _raw_of_key(own[b, 1]), _raw_of_key(own[b, 0])
            else:
                _summary(keys, sums, u, summary)
            floor = _floor(summary, 0, size, span, nth, 1)
            if floor > kp:  # every pick is at or above the long blocks' floor: fewer candidates, all its ties
                kp, tp = floor - 1, 0
            floor = _floor(summary, 1, size, span, nth, -1)
            if floor < kn:
                kn, tn = floor + 1, 0
            want[0], want[1] = tp, tn
            for j in range(kp + 1, min(hi, HIGHEST) + 1):
                want[0] += h0[j]
            for j in range(max(lo, LOWEST), kn):
                want[1] += h0[j]
            _collect(values, tiles, u, offset, kp, tp, kn, tn, want, origin, per, summary, top, sample_pos, sample)
        if r0 >= 0:
            h0[ZERO] += zeros
            _walk(h0, min(lo, ZERO) if zeros else lo, r0, r1, order, u)
            h0[ZERO] -= zeros
        for j in range(lo, hi + 1):
            h0[j] = 0


class Sweep:
    """The pass over one activation's stored values that its spill observers share (see the module docstring).

    Each observer asks for what it needs when it is made, then calls :meth:`run` from its ``read_spill``; the
    first call computes everything asked for, later ones return the same result.
    """

    def __init__(self, units: int):
        self.units = units
        self.ranks: tuple[int, int] | None = None
        self.cards: tuple[int, int, int, int, int, int, np.ndarray] | None = None
        self.blocks: BinSums | None = None
        self.result: dict[str, np.ndarray] | None = None
        self.zeros = 0

    def want_ranks(self, r0: int, r1: int) -> None:
        """The order statistics of ranks r0 ≤ r1 (0-based, among the non-NaN values)."""
        if self.ranks not in (None, (r0, r1)):
            raise ValueError(f"a sweep computes one pair of ranks, asked for {self.ranks} and {(r0, r1)}")
        self.ranks = (r0, r1)

    def want_cards(
        self,
        m: int,
        nth: int,
        span: int,
        offset: int,
        above: int,
        below: int,
        sample_pos: np.ndarray,
        blocks: BinSums | None = None,
    ) -> None:
        """The card keys of each sign that can be greedy picks (positions offset by ``offset``): the top m, and
        of those only the ones at or above the ``nth`` best bound of the blocks of at least ``span`` rows; the
        counts of raw keys above ``above`` and below ``below``; and the values at ``sample_pos`` (sorted).

        ``blocks``: an overview's bins, whose extremes the writer's stats pass has taken by the time the spill is
        read; without them the sweep takes its own, of :data:`BLOCK` rows."""
        self.cards = (m, nth, span, offset, above, below, np.asarray(sample_pos, np.int64))
        self.blocks = blocks

    def run(self, values: np.ndarray, tiles: np.ndarray, zeros: int = 0) -> dict[str, np.ndarray]:
        """values uint16 ``[*]``, tiles int64 ``[k, 4]`` (see the module docstring). Returns ``nan`` int64 ``[U]``
        and, as asked, ``order`` uint16 ``[2, U]``; ``top`` int64 ``[2, U, m]``, ``dens`` int64 ``[2, U]``,
        ``sample`` uint16 ``[U, S]`` (NaN where no row holds a sampled position)."""
        if self.result is not None and zeros != self.zeros:
            raise ValueError(f"a sweep ran over {self.zeros} uncovered rows, asked again with {zeros}")
        self.zeros = zeros
        if self.result is None:
            U = self.units
            r0, r1 = self.ranks or (-1, -1)
            m, nth, span, offset, above, below, sample_pos = self.cards or (0, 1, 1, 0, 0, 0, np.zeros(0, np.int64))
            out = {
                "nan": np.zeros(U, np.int64),
                "order": np.zeros((2, U), np.uint16),
                "top": np.zeros((2, U, m), np.int64),
                "dens": np.zeros((2, U), np.int64),
                "sample": np.full((U, len(sample_pos)), 0x7E00, np.uint16),
            }
            tiles = np.ascontiguousarray(tiles, np.int64).reshape(-1, 4)
            rows = int((tiles[:, 0] + tiles[:, 1]).max(initial=0))
            if self.blocks is not None:
                origin, per, sums, count, keys = self.blocks
                blocks, seen = len(keys), count.sum(0)
                if m and (keys.shape[1:] != (2, U) or sums.shape != (blocks, U) or count.shape != (blocks, U)):
                    raise ValueError(f"blocks of keys {keys.shape}, sums {sums.shape}, counts {count.shape}: not U={U}")
            else:  # the sweep takes its own
                origin, per, blocks = 0, BLOCK, -(-rows // BLOCK)
                keys, sums, seen = no_keys(0, U), np.zeros((0, U)), np.full(U, -1, np.int64)
            if m and rows and (origin + rows - 1) // per >= blocks:
                raise ValueError(f"{blocks} blocks of {per} rows from {origin} do not hold {rows} rows")
            sweep(values, tiles, zeros, r0, r1, out["order"], out["nan"], offset, nth, span, above, below, out["top"],
                  out["dens"], sample_pos, out["sample"], origin, per, blocks, keys, sums, seen)  # fmt: skip
            self.result = out
        return self.result
