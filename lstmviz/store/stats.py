"""Per-unit stats of each activation, counted in the writer's one pass over the values as stored (one compiled
pass per chunk, :mod:`lstmviz.chunkstats`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import chunkstats as _cs
from .. import names as _names
from .format import Activation

LOW, HIGH = 0.1, 0.9
HIST_BINS = 32
_THRESHOLD_KEYS = _cs.threshold_keys(LOW, HIGH)


def hist_range(kind: str, first: np.ndarray) -> tuple[float, float]:
    """Histogram range: the kind's bounds for bounded kinds, else ±1.5·max|x| of the first finite values seen."""
    if kind in _names.SIGMOID_KINDS:
        return 0.0, 1.0
    finite = first[np.isfinite(first)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    if kind in _names.TANH_KINDS or bound <= 1.0:
        return -1.0, 1.0
    return -1.5 * bound, 1.5 * bound


class Stats:
    """Per-unit streaming aggregates of one activation, over the float16 values as stored.

    NaN and ±inf are counted (n_nan, n_inf) and left out of the moments, min, max and histogram; n_low / n_high
    compare every non-NaN value, as ``x < low`` over the stored values does. One compiled pass per chunk
    (:func:`lstmviz.chunkstats.chunk_pass`), which also lays the chunk out unit-major for the spill.
    """

    def __init__(self, act: Activation):
        u = act.units
        self.act = act
        self.count = 0
        self.acc = np.zeros((2, u))  # sum, sumsq of the finite values
        self.cnt = np.zeros((6, u), np.int64)  # n_low, n_high, n_nan, n_inf, min key, max key
        self.cnt[4], self.cnt[5] = _cs.NO_KEY, -_cs.NO_KEY
        self.hist = np.zeros((u, 4, HIST_BINS + 1), np.int64)
        self.range: tuple[float, float] | None = None

    def update(
        self,
        bits: np.ndarray,
        counts: np.ndarray,
        tiles: np.ndarray,
        starts: np.ndarray | None = None,
        cards: _cs.CardState | None = None,
    ) -> None:
        """bits: float16 bit patterns uint16 ``[B, T, units]``, rows ``[0, counts[b])`` of stream b valid.

        Writes each stream's valid rows unit-major into ``tiles[b, :units·counts[b]]`` (uint16 ``[B, ≥units·T]``).
        ``cards``, if given, is fed in the same pass (stream b's rows at ``starts[b]…``, int64 ``[B]``).
        """
        if self.range is None:
            valid = np.arange(bits.shape[1])[None, :] < counts[:, None]
            self.range = hist_range(self.act.kind, _cs.LUT[bits[valid]])
        lo, hi = self.range
        extra = (starts, *cards.args()) if cards is not None else (counts, *_cs.no_cards())
        scale = HIST_BINS / (hi - lo)
        _cs.chunk_pass(bits, counts, *_THRESHOLD_KEYS, lo, scale, tiles, self.acc, self.cnt, self.hist, *extra)
        self.count += int(counts.sum())

    def frame(self) -> pd.DataFrame:
        n_nan, n_inf = self.cnt[2], self.cnt[3]
        finite = self.count - n_nan - n_inf
        n = np.maximum(finite, 1)
        mean = self.acc[0] / n
        var = np.maximum(self.acc[1] / n - mean**2, 0.0)
        none = finite == 0
        lo, hi = self.range or (0.0, 1.0)
        return pd.DataFrame(
            {
                "name": self.act.name,
                "unit": np.arange(self.act.units, dtype=np.int32),
                "count": np.full(self.act.units, self.count, np.int64),
                "mean": np.where(none, np.nan, mean),
                "std": np.where(none, np.nan, np.sqrt(var)),
                "min": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.cnt[4])].astype(np.float64)),
                "max": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.cnt[5])].astype(np.float64)),
                "n_low": self.cnt[0],
                "n_high": self.cnt[1],
                "n_nan": n_nan,
                "n_inf": n_inf,
                "hist": list(self.hist[:, :, :HIST_BINS].sum(1)),
                "hist_lo": lo,
                "hist_hi": hi,
            }
        )
