"""The on-index of select & match built from the writer's own passes over a recording (:class:`PassIndex`).

:class:`~lstmviz.analysis.match_bits.IndexBuilder` builds the index from rows handed to it, and for a quantile θ
keeps its own float16 copy of the activation to pass over twice at the end. In a recording the writer already
holds every value twice over: its chunk pass has each chunk's values in cache, and when it closes it reads its
files back, written in place, a row group at a time in corpus order. A :class:`PassIndex` takes what it needs from
those:

- when the writer closes, a quantile θ takes each unit's two order statistics from one pass over the stored values, a
  histogram of the unit's 2¹⁶ float16 patterns (``read_spill``, :mod:`lstmviz.unit_sweep`, the pass the unit cards
  share), which gives θ exactly as ``np.quantile`` does on the stored values with no copy of them and nothing
  counted in the chunk pass;
- the bits, of either θ, are packed from the row groups as the writer reads them (``row_group``), straight into
  the index's files under ``<run>.partial/cache/match/`` (so an interrupted recording leaves nothing behind).

The files are those of :func:`~lstmviz.analysis.match_bits.index_paths`, bit for bit what ``IndexBuilder``
writes (docs/FORMAT.md).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..store.format import Activation
from ..unit_sweep import Sweep
from .match_bits import DEFAULT_THRESHOLDS, Threshold, _keys, as_threshold, index_paths, threshold_key


@functools.cache
def _kernels():
    """:mod:`lstmviz.analysis._match_pass_jit`, or None with ``LSTMVIZ_NO_JIT=1`` or where numba cannot compile or
    cache here (then numpy does the same work, slower)."""
    from .match_bits import jit

    if jit() is None:
        return None
    try:
        from . import _match_pass_jit as k

        g = np.zeros((9, 3), np.uint16)
        k.pack_cols(g, np.zeros(9, np.int64), np.zeros((2, 3), np.uint8))
    except Exception:  # a compile error
        return None
    return k


def pack_cols(group: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """uint8 ``[⌈U/8⌉, R]``: bit ``u & 7`` of ``[u >> 3, t]`` is ``x[u, t] >= θ[u]`` for group uint16 ``[U, R]``
    (float16 patterns, unit-major) and kth (:func:`~lstmviz.analysis.match_bits.threshold_key` of θ) ``[U]``."""
    U, R = group.shape
    out = np.empty(((U + 7) // 8, R), np.uint8)
    k = _kernels()
    if k is not None:
        k.pack_cols(group, kth, out)
        return out
    on = _keys(group) >= kth[:, None]
    return np.packbits(on, axis=0, bitorder="little")


def quantiles(
    values: np.ndarray, tiles: np.ndarray, n: int, units: int, q: float, sweep: Sweep | None = None
) -> np.ndarray:
    """float32 ``[units]``: each unit's q-quantile over the spill, exactly as ``np.quantile`` gives it on the n
    stored values (rows no tile covers are stored as 0). values uint16 ``[*]`` the spill, tiles int64 ``[k, 4]``
    (first row, rows c, element offset of unit 0's run, elements from one unit's run to the next); ``sweep``, the
    activation's :class:`~lstmviz.unit_sweep.Sweep` when its other spill observers share it (it must have been
    asked for these ranks, :func:`ranks`)."""
    zeros = n - int(tiles[:, 1].sum())
    lo, hi, frac = ranks(n, q)
    if _kernels() is None:
        theta = np.empty(units, np.float32)
        for u in range(units):
            x = [values[o + u * st : o + u * st + c] for _, c, o, st in tiles] + [np.zeros(zeros, np.uint16)]
            with np.errstate(invalid="ignore"):  # inf − inf, as np.quantile meets it
                theta[u] = np.quantile(np.concatenate(x).view(np.float16).astype(np.float32), q)
        return theta
    if sweep is None:
        sweep = Sweep(units)
        sweep.want_ranks(lo, hi)
    swept = sweep.run(values, tiles, zeros)
    stats = swept["order"].view(np.float16).astype(np.float32)
    # numpy's own interpolation between the two order statistics, so theta equals np.quantile bit for bit
    with np.errstate(invalid="ignore"):  # inf − inf, as np.quantile meets it too
        theta = np.quantile(stats, frac, axis=0).astype(np.float32)
    theta[swept["nan"] > 0] = np.nan
    return theta


def ranks(n: int, q: float) -> tuple[int, int, float]:
    """The two order statistics (0-based ranks) that ``np.quantile(x, q)`` interpolates between for n values, and
    the fraction of the way from the first to the second."""
    p = (n - 1) * float(q)
    lo = int(np.floor(p))
    return lo, min(lo + 1, n - 1), p - lo


class PassIndex:
    """The on-index of one activation at one θ, fed by :class:`~lstmviz.store.RunWriter`'s passes (see the module
    docstring): when the writer closes it calls ``read_spill`` with the whole spill if ``needs_spill()`` (a quantile
    θ), then ``row_group`` with every row group in corpus order, then ``finish``. Unlike an ``Observer`` it has no
    ``update``: only the writer can feed it.

    Args:
        name: activation name; units: its width; n_tokens: rows the run has.
        threshold: absolute θ or a :class:`~lstmviz.analysis.match_bits.Threshold`.
        sweep: the activation's :class:`~lstmviz.unit_sweep.Sweep`, shared with its other spill observers (the
            unit cards), so that a quantile θ costs no pass of its own.
    """

    def __init__(self, name: str, units: int, n_tokens: int, threshold: float | Threshold, sweep: Sweep | None = None):
        self.name, self.units, self.n = name, units, n_tokens
        self.th = as_threshold(threshold)
        self.nb = (units + 7) // 8
        self._files: tuple[list[Path], np.ndarray, np.ndarray] | None = None  # (tmp paths, bits, cols)
        self.theta: np.ndarray | None = None
        self.sweep = sweep
        if not self.th.quantile:
            self.theta = np.full(units, self.th.value, np.float32)
            self.kth = threshold_key(self.theta)
        elif sweep is not None:
            sweep.want_ranks(*ranks(n_tokens, self.th.value)[:2])

    def needs_spill(self) -> bool:
        """Whether θ is still to be found from every stored value (:meth:`read_spill`) before the rows are packed."""
        return self.theta is None

    def read_spill(self, values: np.ndarray, tiles: np.ndarray) -> None:
        """The writer's whole spill: values uint16 ``[*]`` (float16 patterns), tiles int64 ``[k, 4]`` (first row,
        rows c, element offset of unit 0's run, elements from one unit's run to the next), every stored row once."""
        self.theta = quantiles(values, tiles, self.n, self.units, self.th.value, self.sweep)
        self.kth = threshold_key(self.theta)

    def row_group(self, run_dir: Path, start: int, group: np.ndarray) -> None:
        """Rows ``[start, start + R)`` of the run, uint16 ``[U, R]`` (float16 patterns, unit-major), every row once,
        in corpus order; ``run_dir`` the run's partial directory."""
        if self.theta is None:
            raise RuntimeError(f"{self.name}: a quantile index was given rows before the spill")
        if self._files is None:
            self._files = self._open(Path(run_dir))
        _, bits, cols = self._files
        block = pack_cols(group, self.kth)  # [nb, R]
        cols[:, start : start + block.shape[1]] = block
        bits[start : start + block.shape[1]] = block.T

    def _open(self, run_dir: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
        paths = index_paths(run_dir / "cache", self.name, self.th, self.n)
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{threading.get_ident()}-{id(self)}.tmp.npy"
        tmps = [p.with_name(f"{p.name}.{tag}") for p in paths]
        bits = np.lib.format.open_memmap(tmps[0], mode="w+", dtype=np.uint8, shape=(self.n, self.nb))
        cols = np.lib.format.open_memmap(tmps[1], mode="w+", dtype=np.uint8, shape=(self.nb, self.n))
        return tmps, bits, cols

    def finish(self, run_dir: str | os.PathLike) -> dict:
        """Write the index under ``run_dir/cache/match/`` (theta and cols first, bits last, each by a rename, so
        the bits file marks a complete index); returns ``{}``."""
        if self._files is None:  # no rows: a run of no tokens
            self._files = self._open(Path(run_dir))
        tmps, bits, cols = self._files
        self._files = None
        np.save(tmps[2], self.theta)
        for m in (bits, cols):
            m.flush()
        del bits, cols
        paths = index_paths(Path(run_dir) / "cache", self.name, self.th, self.n)
        for i in (2, 1, 0):
            os.replace(tmps[i], paths[i])
        return {}


def recording_observers(n_tokens: int, cards: bool = False) -> Callable[[Activation], list]:
    """The :class:`~lstmviz.store.RunWriter` ``observers`` factory that builds, in the recording pass, the match
    indices at :data:`~lstmviz.analysis.match_bits.DEFAULT_THRESHOLDS` (:class:`PassIndex`, from the writer's
    own passes) and the overview (:mod:`lstmviz.analysis.overview`) of every activation, and with ``cards`` its unit
    cards (:class:`lstmviz.cards.PassCards`), which :func:`lstmviz.record_corpus` asks for by default (their cost:
    ``bench/e2e.py --cards-too``). A run without them builds an activation's cards on the Unit page's first visit,
    from the same closing sweep over its file."""
    from ..cards.inpass import PassCards
    from .overview import OverviewBuilder

    def make(act: Activation) -> list:
        sweep = Sweep(act.units)  # one pass over the spill for a quantile θ and the cards
        builders: list = [PassIndex(act.name, act.units, n_tokens, th, sweep) for th in DEFAULT_THRESHOLDS]
        overview = OverviewBuilder(act.name, act.units, n_tokens)
        builders.append(overview)
        if cards:  # the overview's bins, whose extremes the writer's stats pass takes, are the cards' blocks
            builders.append(PassCards(act, n_tokens, sweep=sweep, blocks=overview.overview_state))
        return builders

    return make
