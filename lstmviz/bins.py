"""The overview's bins as the writer's stats pass fills them (:class:`BinSums`): the overview's sums, and the
extremes the unit cards' sweep takes as its blocks. Below both :mod:`lstmviz.store` and :mod:`lstmviz.unit_sweep`,
so that one record serves the two."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .f16keys import NO_KEY


class BinSums(NamedTuple):
    """What an observer gives the stats pass to have its bin sums counted there (``overview_state``, e.g.
    :class:`lstmviz.analysis.overview.OverviewBuilder`'s): row r of a chunk at run position ``offset + r`` goes to
    bin ``(offset + r) // per`` of ``sum`` float64 / ``count`` int64 ``[bins, units]``, which add the values that
    are not NaN in row order (a sum is ±inf where the bin holds that infinity, NaN where it holds both), and of
    ``keys`` int16 ``[bins, 2, units]``, the min and max order keys (:func:`lstmviz.f16keys.key`) of its finite
    values (``NO_KEY`` and ``−NO_KEY`` in a bin with none), which the stats pass takes anyway and the unit cards'
    sweep bounds its blocks with (:meth:`lstmviz.unit_sweep.Sweep.want_cards`)."""

    offset: int
    per: int
    sum: np.ndarray
    count: np.ndarray
    keys: np.ndarray


def no_keys(bins: int, units: int) -> np.ndarray:
    """The keys of bins with no value yet: int16 ``[bins, 2, units]``, NO_KEY then −NO_KEY."""
    keys = np.empty((bins, 2, units), np.int16)
    keys[:, 0], keys[:, 1] = NO_KEY, -NO_KEY
    return keys


def bin_sums(offset: int, per: int, bins: int, units: int) -> BinSums:
    """Empty :class:`BinSums` of ``bins`` bins of ``per`` positions, from run position ``offset``."""
    return BinSums(offset, per, np.zeros((bins, units)), np.zeros((bins, units), np.int64), no_keys(bins, units))
