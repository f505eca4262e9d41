"""The unit cards' computations (see :mod:`lstmviz.cards` for what they hold, and why a bounded candidate set makes
the greedy exact): the candidate bound, the greedy over card keys (:func:`lstmviz.chunkstats.card_keys`), the
quantile bands of a sample, the correlation sums (:class:`Moments`) and Pearson r from them."""

from __future__ import annotations

import numpy as np

from .. import chunkstats as _cs

K = 20  # top contexts stored per unit and sign (the API's k is at most this when answered from the cards)
WINDOW = 10  # the de-duplication window of the stored top contexts
BANDS = 10
BAND_EXAMPLES = 5
SAMPLE = 4096  # positions sampled for the quantile bands
STRIP_BINS = 400
THETA = 0.5
CORR_KINDS = ("c", "h", "hp")
"""Kinds whose Σxxᵀ the recording accumulates. One U×U GEMM per block costs 2·U flops per stored value, more than
the rest of the cards together (bench/cards.py, ``extra_pct_corr_<kind>``), so only the states (what people ask
"what moves with it?" of) pay it while recording; another kind's correlations are computed from its file on
first use and cached. An empty tuple defers every kind to first use."""
SEED = 0
VERSION = 1
POS_BITS = _cs.POS_BITS
_POS_MAX = _cs.POS_MAX
_GEMM_ROWS = 2048  # rows gathered before one Σxxᵀ GEMM
_F16_LUT = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)  # a gather beats astype


def candidates(k: int, window: int) -> int:
    """M = (k − 1)(2·window + 1) + 1: the top positions per unit that provably hold the greedy's k picks."""
    return (k - 1) * (2 * window + 1) + 1


def greedy(keys: np.ndarray, k: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy de-duplicated picks of each row of card keys ``keys`` int64 ``[U, M]`` (descending, 0 = empty): the
    best remaining key, then every position within ±window of it dropped, k times. Returns the positions int64
    ``[U, k]`` (−1 where fewer remain) and their card keys int64 ``[U, k]`` (0 pads)."""
    from ._jit import greedy as compiled

    keys = np.ascontiguousarray(keys, np.int64)
    picked = np.empty((len(keys), k), np.int64)
    best = np.empty((len(keys), k), np.int64)
    compiled(keys, k, window, picked, best)
    return picked, best


def best_keys(keys: np.ndarray, length: np.ndarray, m: int) -> np.ndarray:
    """Per row of ``keys`` int64 ``[U, W]``, the m largest of its first ``length[u]``, descending, 0 padded
    ``[U, m]``."""
    from ._jit import best_keys as compiled

    out = np.empty((len(keys), m), np.int64)
    compiled(np.ascontiguousarray(keys, np.int64), np.asarray(length, np.int64), m, out)
    return out


def key_values(keys: np.ndarray, sign: int) -> np.ndarray:
    """float32 values of card keys int64 (of sign·x): NaN where the key is 0 (no pick)."""
    k, _ = _cs.card_order_keys(keys)
    v = sign * _cs.LUT[_cs.key_bits(np.where(keys > 0, k, 0x7E00))]
    return v.astype(np.float32)


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
    keys = _cs.key(values.astype(np.float16).view(np.uint16))  # the stored values are float16: the keys' order
    ords = np.where(np.abs(keys) <= 0x7C00, keys + 0x8000, 0)  # ≥ 1 for a value, 0 for NaN (first)
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
