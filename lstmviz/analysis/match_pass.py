"""The on-index of select & match built from the writer's own passes over a recording (:class:`PassIndex`).

:class:`~lstmviz.analysis.match_bits.IndexBuilder` builds the index from rows handed to it, and for a quantile θ
keeps its own float16 copy of the activation to pass over twice at the end. In a recording the writer already
holds every value twice over: its chunk pass has each chunk's values in cache, and its spill is read back, in
corpus order, to write the parquet row groups. A :class:`PassIndex` takes what it needs from those:

- a quantile θ's coarse histogram (the high byte of each value's key) is counted by the chunk pass itself
  (``key_hist``, a :class:`lstmviz.chunkstats.KeyHist`);
- when the writer closes, a quantile θ resolves its two order statistics inside their bins from one look at the
  spill's tiles (``scan``), which gives θ exactly as ``np.quantile`` does on the stored values;
- the bits, of either θ, are packed from the row groups as the writer assembles them (``rows``), straight into
  the index's files under ``<run>.partial/cache/match/`` (so an interrupted recording leaves nothing behind).

The files are those of :func:`~lstmviz.analysis.match_bits.index_paths`, bit for bit what ``IndexBuilder``
writes (docs/FORMAT.md).
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np

from .. import chunkstats as _cs
from .match_bits import Threshold, _quantile_bins, _resolve, as_threshold, index_paths, threshold_key


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
        k.fine_rows(g, np.zeros((9, 2), np.int64), np.ones(9, np.bool_), np.zeros((9, 2, 257), np.int32))
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
    on = _cs.match_key(group) >= kth[:, None]
    return np.packbits(on, axis=0, bitorder="little")


def fine_rows(tile: np.ndarray, bins: np.ndarray, need: np.ndarray, fine: np.ndarray) -> None:
    """fine int32 ``[U, 2, 257]`` += low-byte counts of the keys of tile uint16 ``[U, c]`` (unit-major) whose high
    byte is ``bins[u, side]`` (column 256: the rest), for the units with ``need[u]``."""
    k = _kernels()
    if k is not None:
        return k.fine_rows(tile, bins, need, fine)
    keys = _cs.match_key(tile[need])
    for side in (0, 1):
        hit = (keys >= 0) & (keys >> 8 == bins[need, side][:, None])
        units = np.broadcast_to(np.arange(len(keys))[:, None], keys.shape)
        counts = np.bincount(units[hit] * 256 + (keys[hit] & 255), minlength=len(keys) * 256)
        fine[need, side, :256] += counts.reshape(len(keys), 256).astype(np.int32)
        fine[need, side, 256] += (~hit).sum(1).astype(np.int32)


class PassIndex:
    """The on-index of one activation at one θ, fed by :class:`~lstmviz.store.RunWriter`'s passes (see the module
    docstring): the writer counts ``key_hist`` in its chunk pass (quantile θ only), calls ``scan`` with every
    stored tile while ``needs_scan()`` and ``rows`` with every row group in corpus order when it closes, then
    ``finish``. Unlike an ``Observer`` it has no ``update``: only the writer can feed it.

    Args:
        name: activation name; units: its width; n_tokens: rows the run has.
        threshold: absolute θ or a :class:`~lstmviz.analysis.match_bits.Threshold`.
    """

    def __init__(self, name: str, units: int, n_tokens: int, threshold: float | Threshold):
        self.name, self.units, self.n = name, units, n_tokens
        self.th = as_threshold(threshold)
        self.nb = (units + 7) // 8
        self._files: tuple[list[Path], np.ndarray, np.ndarray] | None = None  # (tmp paths, bits, cols)
        self.theta: np.ndarray | None = None
        if self.th.quantile:
            self.key_hist = _cs.KeyHist(units)
            self._fine: np.ndarray | None = None
        else:
            self.theta = np.full(units, self.th.value, np.float32)
            self.kth = threshold_key(self.theta)

    def needs_scan(self) -> bool:
        """Whether θ still needs a look at every stored value (:meth:`scan`) before the rows are packed."""
        return self.theta is None

    def scan(self, tile: np.ndarray) -> None:
        """Stored values uint16 ``[U, c]`` (float16 patterns, unit-major), every stored value once, in any order."""
        if self._fine is None:
            self._hist = self.key_hist.counts()
            self._bins = _quantile_bins(self._hist, self.n, self.th.value)
            self._fine = np.zeros((self.units, 2, 257), np.int32)
            self._need = np.ones(self.units, np.bool_)
        fine_rows(tile, self._bins[1], self._need, self._fine)

    def rows(self, run_dir: Path, start: int, group: np.ndarray) -> None:
        """Rows ``[start, start + R)`` of the run, uint16 ``[U, R]`` (float16 patterns, unit-major), every row once,
        in corpus order; ``run_dir`` the run's partial directory."""
        if self.theta is None:
            self._theta()
        if self._files is None:
            self._files = self._open(Path(run_dir))
        _, bits, cols = self._files
        block = pack_cols(group, self.kth)  # [nb, R]
        cols[:, start : start + block.shape[1]] = block
        bits[start : start + block.shape[1]] = block.T

    def _theta(self) -> None:
        if self._fine is None:
            raise RuntimeError(f"{self.name}: a quantile index was given rows before every value was scanned")
        ranks, bins, below = self._bins
        self.theta = _resolve(self._hist, self.n, self.th.value, ranks, bins, below, self._fine)
        self.kth = threshold_key(self.theta)

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
        if self.theta is None:
            self._theta()
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
