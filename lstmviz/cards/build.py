"""Computing the unit cards (see :mod:`lstmviz.cards` for what they hold, and why a bounded candidate set makes the
greedy exact): the orderable int64 keys, the per-unit candidate top keys, and :class:`CardBuilder`, the observer
that builds one activation's cards from its stored chunks."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from ..store.format import Activation

K = 32  # top contexts stored per unit and sign (the API's k is at most this when answered from the cards)
WINDOW = 10  # the de-duplication window of the stored top contexts
BANDS = 10
BAND_EXAMPLES = 5
SAMPLE = 4096  # positions sampled for the quantile bands
STRIP_BINS = 400
THETA = 0.5
CORR_KINDS = ("c", "h", "hp")
"""Kinds whose Σxxᵀ the recording accumulates: one U×U GEMM per block costs 2·U flops per stored value, about
what the rest of the cards cost together, so only the states (what people ask "what moves with it?" of) pay it
while recording; a gate's correlations are computed from its file on first use and cached."""
SEED = 0
VERSION = 1
POS_BITS = 47
_POS_MAX = (1 << POS_BITS) - 1
_GEMM_ROWS = 2048  # rows gathered before one Σxxᵀ GEMM
_F16_LUT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # a gather beats astype


@functools.cache
def jit():
    """The compiled scan (:mod:`lstmviz.cards._jit`), or None with ``LSTMVIZ_NO_JIT=1`` or where numba cannot
    compile or cache here (then numpy does the same work, slower)."""
    if os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    try:
        from . import _jit as k

        z = np.zeros((1, 1), np.uint16)
        thr, counts, strip = np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros((1, 1), np.float32)
        k.scan(
            z,
            strip,
            0,
            thr,
            thr,
            1,
            1,
            counts,
            counts,
            1,
            np.zeros((1, 1)),
            strip,
            strip,
            np.zeros((2, 1, 2), np.int64),
            0,
        )
    except Exception:  # no numba, nowhere to cache, or a compile error
        return None
    return k


def candidates(k: int, window: int) -> int:
    """M = (k − 1)(2·window + 1) + 1: the top positions per unit that provably hold the greedy's k picks."""
    return (k - 1) * (2 * window + 1) + 1


def orderable(half: np.ndarray) -> np.ndarray:
    """uint16 keys that sort as the float16 values ``half`` do (−0 as +0); NaN → 0, below every number."""
    bits = half.view(np.uint16)
    neg = bits >> 15 == 1
    out = np.where(neg, ~bits, bits | 0x8000).astype(np.uint16)
    out[bits == 0x8000] = 0x8000  # −0 sorts with +0
    out[np.isnan(half)] = 0
    return out


_ABOVE = int(orderable(np.array([THETA], np.float16))[0])  # x > θ  ⇔  orderable(x) > _ABOVE
_BELOW = int(orderable(np.array([-THETA], np.float16))[0])  # x < −θ ⇔  0 < orderable(x) < _BELOW


def greedy(keys: np.ndarray, k: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy de-duplicated picks of each row of ``keys`` int64 ``[U, M]`` (descending, 0 = empty): the positions
    int64 ``[U, k]`` (−1 where fewer remain) and their keys' uint16 orderable values ``[U, k]``. Vectorised over
    units, one step per candidate rank."""
    U, M = keys.shape
    pos = np.where(keys > 0, _POS_MAX - (keys & _POS_MAX), -1)
    picked = np.full((U, k), -1, np.int64)
    ords = np.zeros((U, k), np.uint16)
    count = np.zeros(U, np.int64)
    far = np.int64(1) << 62
    rows = np.arange(U)
    for r in range(M):
        p = pos[:, r]
        live = (p >= 0) & (count < k)
        if not live.any():  # keys descend, so every unit is out of candidates or full
            break
        taken = np.where(picked >= 0, picked, far)
        clash = (np.abs(taken - p[:, None]) <= window).any(1)
        ok = live & ~clash
        picked[rows[ok], count[ok]] = p[ok]
        ords[rows[ok], count[ok]] = keys[ok, r] >> POS_BITS
        count += ok
    return picked, ords


def value_of(ords: np.ndarray) -> np.ndarray:
    """float32 values of uint16 orderable keys (the inverse of :func:`orderable`; 0 gives NaN)."""
    ords = ords.astype(np.uint16)
    bits = np.where(ords & 0x8000, ords & 0x7FFF, ~ords).astype(np.uint16)
    out = bits.view(np.float16).astype(np.float32)
    out[ords == 0] = np.nan
    return out


class _TopKeys:
    """The top ``m`` keys per unit of one sign, fed chunk by chunk (see the module docstring)."""

    def __init__(self, units: int, m: int):
        self.m = m
        self.units = units
        self.top = np.zeros((units, 0), np.int64)
        self.thr = np.full(units, _POS_MAX, np.int64)  # admit key > thr: ord ≥ 1, i.e. not NaN
        self.pending_u: list[np.ndarray] = []
        self.pending_k: list[np.ndarray] = []
        self.n_pending = 0

    def update(self, start: int, ords: np.ndarray) -> None:
        """ords: uint16 ``[n, U]`` keys of rows ``[start, start + n)``."""
        coarse = (self.thr >> POS_BITS).astype(np.uint16)
        rows, units = np.nonzero(ords >= coarse)
        if not len(rows):
            return
        keys = (ords[rows, units].astype(np.int64) << POS_BITS) | (_POS_MAX - (start + rows))
        keep = keys > self.thr[units]
        self.pending_u.append(units[keep])
        self.pending_k.append(keys[keep])
        self.n_pending += int(keep.sum())
        if self.n_pending > self.units * self.m:
            self.merge()

    def admit(self, units: np.ndarray, keys: np.ndarray) -> None:
        """Pending ``(unit, key)`` pairs that beat the thresholds (the compiled scan found them)."""
        if len(units):
            self.pending_u.append(units.copy())
            self.pending_k.append(keys.copy())
            self.n_pending += len(units)
            if self.n_pending > self.units * self.m:
                self.merge()

    def merge(self) -> None:
        """Fold the pending keys into ``top``: the best ``m`` per unit (unordered), thresholds tightened.

        The pending keys are grouped by unit with a stable sort of their uint16 unit ids (a radix sort), laid out
        beside ``top`` in one ``[U, m + most]`` matrix, and partitioned row-wise: linear, not a full sort."""
        if not self.n_pending:
            return
        U, m = self.units, self.m
        units = np.concatenate(self.pending_u).astype(np.uint16)
        keys = np.concatenate(self.pending_k)
        self.pending_u, self.pending_k, self.n_pending = [], [], 0
        order = np.argsort(units, kind="stable")
        units, keys = units[order], keys[order]
        counts = np.bincount(units, minlength=U)
        rank = np.arange(len(units)) - (np.cumsum(counts) - counts)[units]
        w = self.top.shape[1]
        mat = np.zeros((U, w + int(counts.max())), np.int64)
        mat[:, :w] = self.top
        mat[units, w + rank] = keys
        if mat.shape[1] > m:
            mat = np.partition(mat, mat.shape[1] - m, axis=1)[:, -m:]
        self.top = mat
        if mat.shape[1] == m:
            least = mat.min(1)
            self.thr = np.where(least > 0, least, _POS_MAX)

    def ranked(self) -> np.ndarray:
        """The kept keys int64 ``[U, ≤ m]``, each row descending (0 = empty)."""
        self.merge()
        return -np.sort(-self.top, axis=1)


class Moments:
    """Streaming sums for Pearson r within an activation: rows n, Σ(x − shift) ``[U]`` and Σ(x − shift)(x − shift)ᵀ
    ``[U, U]`` (float64) of the rows fed, with non-finite values as 0 and their units marked ``bad``. The shift
    is the first rows' mean (covariance is shift-invariant, and the shifted sums cancel less). Rows are gathered
    in float32 and summed by one GEMM per ``_GEMM_ROWS`` rows."""

    def __init__(self, units: int):
        self.count = 0
        self.shift: np.ndarray | None = None
        self.s1 = np.zeros(units, np.float64)
        self.sxx = np.zeros((units, units), np.float64)
        self.bad = np.zeros(units, bool)
        self._rows = np.empty((_GEMM_ROWS, units), np.float32)
        self._filled = 0

    def add(self, values: np.ndarray) -> None:
        """values: float ``[n, U]`` rows (float16 as stored, or float32)."""
        x = _F16_LUT[values.view(np.uint16)] if values.dtype == np.float16 else np.asarray(values, np.float32)
        finite = np.isfinite(x)
        if not finite.all():
            self.bad |= ~finite.all(0)
            x = np.where(finite, x, np.float32(0))
        if self.shift is None:
            self.shift = x.mean(0, dtype=np.float64).astype(np.float32)
        k = 0
        while k < len(x):
            take = min(len(x) - k, _GEMM_ROWS - self._filled)
            np.subtract(x[k : k + take], self.shift, out=self._rows[self._filled : self._filled + take])
            self._filled += take
            k += take
            if self._filled == _GEMM_ROWS:
                self._gemm()

    def _gemm(self) -> None:
        r = self._rows[: self._filled]
        self.s1 += r.sum(0, dtype=np.float64)
        self.sxx += r.T @ r  # float32 GEMM per block, accumulated in float64
        self.count += self._filled
        self._filled = 0

    def sums(self) -> dict[str, np.ndarray]:
        """The sums so far: ``count`` int64, ``shift`` float64 ``[U]``, ``s1``, ``sxx``, ``bad``."""
        if self._filled:
            self._gemm()
        shift = np.zeros(len(self.s1)) if self.shift is None else self.shift.astype(np.float64)
        return {"count": np.int64(self.count), "shift": shift, "s1": self.s1, "sxx": self.sxx, "bad": self.bad}

    @staticmethod
    def merge(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n, Σ, Σxxᵀ, bad) for :func:`correlation` of the union of several :meth:`sums` (the rows of each),
        moved to the first part's shift a: with d = shift − a, Σ(x − a) = Σ(x − shift) + n·d and
        Σ(x − a)(x − a)ᵀ = Σ(x − shift)(x − shift)ᵀ + Σ(x − shift)dᵀ + d Σ(x − shift)ᵀ + n·d dᵀ."""
        a = parts[0]["shift"]
        n = 0
        s1 = np.zeros_like(a)
        sxx = np.zeros((len(a), len(a)))
        bad = np.zeros(len(a), bool)
        for p in parts:
            m, d = int(p["count"]), p["shift"] - a
            s1 += p["s1"] + m * d
            sxx += p["sxx"] + np.outer(p["s1"], d) + np.outer(d, p["s1"]) + m * np.outer(d, d)
            n += m
            bad |= p["bad"]
        return np.full(len(a), n, np.int64), s1, sxx, bad


class CardBuilder:
    """Builds the unit cards of one activation from its stored chunks (an :class:`~lstmviz.store.Observer`)."""

    def __init__(self, act: Activation, n_tokens: int, k: int = K, window: int = WINDOW, correlations: bool = True):
        self.act, self.n, self.k, self.window, self.correlations = act, n_tokens, k, window, correlations
        U = act.units
        m = candidates(k, window)
        self.top = (_TopKeys(U, m), _TopKeys(U, m))  # sign +1, sign −1
        rng = np.random.default_rng(SEED)
        self.sample_pos = np.sort(rng.choice(n_tokens, min(SAMPLE, n_tokens), replace=False))
        self.sample = np.full((len(self.sample_pos), U), np.nan, np.float32)
        self.n_above = np.zeros(U, np.int64)
        self.n_below = np.zeros(U, np.int64)
        self.per = -(-n_tokens // STRIP_BINS)
        bins = -(-n_tokens // self.per)
        self.strip_sum = np.zeros((bins, U), np.float64)
        self.strip_max = np.full((bins, U), -np.inf, np.float32)
        self.strip_min = np.full((bins, U), np.inf, np.float32)
        self.moments = Moments(U)
        self._out = np.empty((2, 0, 2), np.int64)

    def update(self, start: int, values: np.ndarray) -> None:
        """values: float16 ``[n, U]``, rows ``[start, start + n)`` as stored."""
        n = len(values)
        x = values.astype(np.float32)
        k = jit()
        if k is None:
            self._scan(start, values, x)
        else:
            if self._out.shape[1] < n * self.act.units:
                self._out = np.empty((2, n * self.act.units, 2), np.int64)
            b0, b1 = (start // self.per), (start + n - 1) // self.per + 1
            got = k.scan(
                values.view(np.uint16),
                x,
                start,
                self.top[0].thr,
                self.top[1].thr,
                _ABOVE,
                _BELOW,
                self.n_above,
                self.n_below,
                self.per,
                self.strip_sum[b0:b1],
                self.strip_max[b0:b1],
                self.strip_min[b0:b1],
                self._out,
                b0,
            )
            for s in range(2):
                self.top[s].admit(self._out[s, : got[s], 0], self._out[s, : got[s], 1])
        lo, hi = np.searchsorted(self.sample_pos, [start, start + n])
        if hi > lo:
            self.sample[lo:hi] = x[self.sample_pos[lo:hi] - start]
        if self.correlations:
            self.moments.add(x)

    def _scan(self, start: int, values: np.ndarray, x: np.ndarray) -> None:
        """The numpy twin of the compiled scan: top-key admission, density counts, the strip."""
        ords = orderable(values)
        self.top[0].update(start, ords)
        neg = np.where(ords > 0, np.uint16(0xFFFF) - ords, 0).astype(np.uint16)  # orderable(−x)
        self.top[1].update(start, neg)
        self.n_above += (x > THETA).sum(0)
        self.n_below += (x < -THETA).sum(0)
        finite = np.isfinite(x)
        self._strip(start, np.where(finite, x, 0.0), finite)

    def _strip(self, start: int, x: np.ndarray, finite: np.ndarray) -> None:
        b = (start + np.arange(len(x))) // self.per
        cuts = np.flatnonzero(np.diff(b)) + 1
        heads = np.concatenate([[0], cuts])
        bins = b[heads]
        self.strip_sum[bins] += np.add.reduceat(x, heads, axis=0)
        hi = np.where(finite, x, -np.inf)
        lo = np.where(finite, x, np.inf)
        np.maximum.at(self.strip_max, bins, np.maximum.reduceat(hi, heads, axis=0))
        np.minimum.at(self.strip_min, bins, np.minimum.reduceat(lo, heads, axis=0))

    def finish(self, run_dir: str | os.PathLike) -> dict:
        """Write the cards under ``run_dir/cache/cards/``; returns the manifest entry's ``cards`` key."""
        arrays = self.arrays()
        d = Path(run_dir) / "cache" / "cards"
        d.mkdir(parents=True, exist_ok=True)
        path = d / card_file(self.act.name, self.n)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return {"cards": f"cache/cards/{path.name}"}

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the cards file holds (docs/FORMAT.md), computed from what the updates saw."""
        out: dict[str, np.ndarray] = {"k": np.int64(self.k), "window": np.int64(self.window)}
        for s, top in zip(("pos", "neg"), self.top, strict=True):
            out[f"top_{s}"], ords = greedy(top.ranked(), self.k, self.window)
            out[f"top_{s}_value"] = value_of(ords) * (1 if s == "pos" else -1)
        out.update(bands(self.sample_pos, self.sample))
        out["n_above"], out["n_below"], out["theta"] = self.n_above, self.n_below, np.float32(THETA)
        out["strip_per"] = np.int64(self.per)
        counts = np.diff(np.minimum(np.arange(len(self.strip_sum) + 1) * self.per, self.n))
        out["strip_mean"] = (self.strip_sum / counts[:, None]).astype(np.float32)
        out["strip_max"], out["strip_min"] = self.strip_max, self.strip_min
        if self.correlations:
            m = self.moments.sums()
            out["corr"] = correlation(np.int64(m["count"]), m["s1"], m["sxx"], m["bad"])
        return out


def bands(sample_pos: np.ndarray, sample: np.ndarray) -> dict[str, np.ndarray]:
    """Equal-count bands of the sampled values of each unit, with example positions.

    sample_pos: int64 ``[S]`` sorted corpus positions; sample: float32 ``[S, U]`` their values. The finite sampled
    values of a unit, in the top contexts' order (value ascending here, ties to the earlier position), are cut
    into ``BANDS`` runs of equal count (``np.array_split``: sizes differ by at most one). Band b's examples are
    its members at ``BAND_EXAMPLES`` ranks drawn without replacement by ``default_rng((SEED, b, size))`` (a
    uniform draw from the band), in corpus order. Returns ``band_lo``/``band_hi`` float32 ``[U, BANDS]`` (the
    band's smallest and largest sampled value) and ``band_pos`` int64 ``[U, BANDS, BAND_EXAMPLES]`` (−1 padded).
    """
    S, U = sample.shape
    lo = np.full((U, BANDS), np.nan, np.float32)
    hi = np.full((U, BANDS), np.nan, np.float32)
    pos = np.full((U, BANDS, BAND_EXAMPLES), -1, np.int64)
    values = np.ascontiguousarray(sample.T)  # [U, S]
    ords = orderable(values.astype(np.float16))  # the stored values are float16: their order is the keys'
    bits = max(int(S).bit_length(), 1)
    keys = np.sort((ords.astype(np.int64) << bits) | np.arange(S), axis=1)  # unique keys: ties to the earlier
    order = keys & ((1 << bits) - 1)  # [U, S] sample columns ascending, NaN (key 0) first
    n_nan = (ords == 0).sum(1)
    for nan in np.unique(n_nan):
        units = np.flatnonzero(n_nan == nan)
        count = S - int(nan)
        ranked = order[units, int(nan) :]  # [u, count]
        for b, cols in enumerate(np.array_split(np.arange(count), BANDS)):
            if not len(cols):
                continue
            members = ranked[:, cols]  # [u, size]
            lo[units, b] = values[units, members[:, 0]]
            hi[units, b] = values[units, members[:, -1]]
            e = min(BAND_EXAMPLES, len(cols))
            ranks = np.random.default_rng((SEED, b, len(cols))).choice(len(cols), e, replace=False)
            pos[units, b, :e] = np.sort(sample_pos[members[:, ranks]], axis=1)
    return {"band_lo": lo, "band_hi": hi, "band_pos": pos}


def correlation(n: np.ndarray, s1: np.ndarray, sxx: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Pearson r float32 ``[U, U]`` from sums of shifted values: n ``[U]`` rows, Σx ``[U]``, Σxxᵀ ``[U, U]``
    (float64); NaN for a constant unit or one with a non-finite value."""
    count = float(np.max(n, initial=0))
    if count < 2:
        return np.full(sxx.shape, np.nan, np.float32)
    mean = s1 / count
    cov = sxx / count - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.outer(sd, sd)
    r[bad, :] = np.nan
    r[:, bad] = np.nan
    r[sd <= 0, :] = np.nan
    r[:, sd <= 0] = np.nan
    return np.clip(r, -1, 1).astype(np.float32)


def card_file(name: str, n_tokens: int) -> str:
    """The cards file name of an activation in a run of ``n_tokens`` tokens."""
    return f"{name}.n{n_tokens}.v{VERSION}.npz"
