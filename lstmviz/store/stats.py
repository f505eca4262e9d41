"""Per-unit stats of each activation, counted in the writer's one pass over the values as stored (one compiled
pass per chunk, :mod:`lstmviz.store._stats_jit`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import f16keys as _cs
from .. import names as _names
from ..bins import BinSums, bin_sums
from . import _stats_jit
from .format import Activation

LOW, HIGH = 0.1, 0.9
HIST_BINS = 32


def hist_range(kind: str, first: np.ndarray) -> tuple[float, float]:
    """Histogram range: the kind's bounds for bounded kinds, else ±1.5·max|x| of the first finite values seen."""
    if kind in _names.SIGMOID_KINDS:
        return 0.0, 1.0
    finite = first[np.isfinite(first)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    if kind in _names.TANH_KINDS or bound <= 1.0:
        return -1.0, 1.0
    return -1.5 * bound, 1.5 * bound


_NO_BINS = bin_sums(0, 1, 1, 1)


class Stats:
    """Per-unit streaming aggregates of one activation, over the float16 values as stored.

    NaN and ±inf are counted (n_nan, n_inf) and left out of the moments, min, max and histogram; n_low / n_high
    compare every non-NaN value, as ``x < low`` over the stored values does. One compiled pass per chunk
    (:func:`lstmviz.store._stats_jit.stats_pass`), which also lays the chunk out unit-major for the parquet pages.

    The pass counts the histogram, n_low, n_high, n_nan and n_inf as one count of value classes (``codes``
    ``[units, n_codes]``, folded by the code table's ``fold``).
    """

    def __init__(self, act: Activation):
        u = act.units
        self.act = act
        self.count = 0
        self.acc = np.zeros((2, u))  # sum, sumsq of the finite values
        self.extent = np.array([[_cs.NO_KEY], [-_cs.NO_KEY]], np.int64).repeat(u, 1)  # min, max key of the finite
        self.range: tuple[float, float] | None = None
        self._table: tuple[np.ndarray, np.ndarray] | None = None  # codes [65536], fold, for self.range
        self.codes = np.zeros((u, 0), np.int64)

    def update(
        self,
        bits: np.ndarray,
        counts: np.ndarray,
        tiles: np.ndarray,
        starts: np.ndarray | None = None,
        bins: BinSums | None = None,
    ) -> None:
        """bits: float16 bit patterns uint16 ``[B, T, units]``, rows ``[0, counts[b])`` of stream b valid.

        Writes each stream's valid rows unit-major into ``tiles[b, :units·counts[b]]`` (uint16 ``[B, ≥units·T]``).
        ``bins``, if given, are fed in the same pass (stream b's rows at ``starts[b]…``, int64 ``[B]``).
        """
        bits = np.ascontiguousarray(bits)
        starts = np.zeros(len(counts), np.int64) if starts is None else np.asarray(starts, np.int64)
        if bins is not None:  # the compiled passes write where the positions say: refuse rows outside the bins
            used = counts > 0
            first, last = starts[used] + bins.offset, starts[used] + bins.offset + counts[used] - 1
            if used.any() and (first.min() < 0 or last.max() // bins.per >= len(bins.sum)):
                raise ValueError(f"{self.act.name}: rows outside the {len(bins.sum)} bins of {bins.per} positions")
            if bins.sum.shape[1:] != (self.act.units,) or bins.count.shape != bins.sum.shape:
                raise ValueError(f"{self.act.name}: bin sums of shape {bins.sum.shape}, not [bins, {self.act.units}]")
            if bins.keys.shape != (len(bins.sum), 2, self.act.units) or bins.keys.dtype != np.int16:
                raise ValueError(f"{self.act.name}: bin keys {bins.keys.dtype} {bins.keys.shape}, not int16 "
                                 f"[{len(bins.sum)}, 2, {self.act.units}]")  # fmt: skip
        if self.range is None:
            self.range = hist_range(self.act.kind, self._largest(bits, counts))
        lo, hi = self.range
        if self._table is None:
            self._table = _stats_jit.code_table(lo, hi, HIST_BINS, LOW, HIGH)
            self.codes = np.zeros((self.act.units, len(self._table[1])), np.int64)
        b = _NO_BINS if bins is None else bins
        _stats_jit.stats_pass(bits, counts, starts, self._table[0], tiles, self.acc, self.extent, self.codes,
                              bins is not None, b.offset, b.per, b.sum, b.count, b.keys)  # fmt: skip
        self.count += int(counts.sum())

    def _largest(self, bits: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """float32 ``[≤1]``: what :func:`hist_range` reads of the chunk's valid rows, the largest magnitude of their
        finite values (0 when none is finite: the same range as none); nothing for the kinds of a fixed range."""
        if self.act.kind in _names.SIGMOID_KINDS or self.act.kind in _names.TANH_KINDS:
            return np.zeros(0, np.float32)
        mags = (bits[b, :c] & 0x7FFF for b, c in enumerate(counts) if c > 0)
        return _cs.LUT[[max((int(np.where(m < 0x7C00, m, 0).max(initial=0)) for m in mags), default=0)]]

    def _counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(hist int64 ``[units, HIST_BINS]``, int64 ``[4, units]`` n_low, n_high, n_nan, n_inf) from the codes."""
        if self._table is None:  # no rows yet
            return np.zeros((self.act.units, HIST_BINS), np.int64), np.zeros((4, self.act.units), np.int64)
        folded = self.codes @ self._table[1]
        return folded[:, :HIST_BINS], folded[:, HIST_BINS + 1 :].T

    def frame(self) -> pd.DataFrame:
        hist, (n_low, n_high, n_nan, n_inf) = self._counts()
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
                "min": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.extent[0])].astype(np.float64)),
                "max": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.extent[1])].astype(np.float64)),
                "n_low": n_low,
                "n_high": n_high,
                "n_nan": n_nan,
                "n_inf": n_inf,
                "hist": list(hist),
                "hist_lo": lo,
                "hist_hi": hi,
            }
        )
