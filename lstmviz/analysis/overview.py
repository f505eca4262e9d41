"""The overview of a whole activation: bin means of equal groups of tokens, ``[bins, units]``, small enough to draw.

Built in the recording pass (:class:`OverviewBuilder`, an :class:`~lstmviz.store.Observer`) and stored as
``<run>/cache/overview/<name>.b<bins>.p<per>.n<T>.v1.npy``; a run recorded without it, or whose file was deleted,
gets it on first use from its values.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np

from ..bins import bin_sums
from ..store.reader import RunReader

VERSION = 1
MAX_CELLS = 2_000_000
MAX_BINS = 1_500
"""At most this many bins (about a screen's width of pixels), and bins × units ≤ :data:`MAX_CELLS`."""
ROWS = 1 << 16


@functools.cache
def _kernel():
    """:func:`lstmviz.analysis._overview_jit.bin_sums` and its table, or None with ``LSTMVIZ_NO_JIT=1`` or where
    numba cannot compile or cache here (then numpy does the same sums)."""
    if os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    try:
        from ._overview_jit import F16, bin_sums

        for readonly in (False, True):
            h = np.zeros((1, 2), np.uint16)
            h.setflags(write=not readonly)
            bin_sums(h, F16, 0, 1, np.zeros((1, 2)), np.zeros((1, 2), np.int64))
    except Exception:  # no numba, nowhere to cache, or a compile error
        return None
    return bin_sums, F16


def shape(n_tokens: int, units: int, max_cells: int = MAX_CELLS, max_bins: int = MAX_BINS) -> tuple[int, int]:
    """(bins, tokens per bin): equal bins of ``per`` tokens (the last one shorter), bins × units ≤ max_cells."""
    bins = max(1, min(n_tokens, max_cells // max(units, 1), max_bins))
    per = -(-max(n_tokens, 1) // bins)  # ceil
    return -(-max(n_tokens, 1) // per), per


def overview_path(cache_dir: Path, name: str, n_tokens: int, bins: int, per: int) -> Path:
    return cache_dir / "overview" / f"{name}.b{bins}.p{per}.n{n_tokens}.v{VERSION}.npy"


class OverviewBuilder:
    """Accumulates bin sums of one activation's stored rows, in any order; ``finish`` writes the bin means
    (NaN values are left out of a bin's mean; a bin of only NaN is NaN).

    As a :class:`~lstmviz.store.RunWriter` observer it is fed by the writer's stats pass (``overview_state``,
    the same sums while the values are in cache), not by ``update``."""

    def __init__(self, name: str, units: int, n_tokens: int, max_cells: int = MAX_CELLS, max_bins: int = MAX_BINS):
        self.name, self.n = name, n_tokens
        self.bins, self.per = shape(n_tokens, units, max_cells, max_bins)
        self.overview_state = bin_sums(0, self.per, self.bins, units)
        self.sum, self.count = self.overview_state.sum, self.overview_state.count

    def update(self, start: int, values: np.ndarray) -> None:
        """Rows ``[start, start + n)``: float ``[n, units]`` (float16 as stored, or any float)."""
        if not len(values):
            return
        kernel = _kernel()
        if kernel is not None and values.dtype == np.float16:
            bin_sums, table = kernel
            h = np.ascontiguousarray(values).view(np.uint16)
            return bin_sums(h, table, start, self.per, self.sum, self.count)
        x = np.asarray(values, np.float32)
        first = start // self.per
        cuts = np.arange(first * self.per, start + len(x), self.per) - start
        cuts[0] = 0
        bins = np.arange(first, first + len(cuts))
        ok = ~np.isnan(x)
        if ok.all():
            self.sum[bins] += np.add.reduceat(x, cuts, axis=0, dtype=np.float64)
            self.count[bins] += np.diff(np.append(cuts, len(x)))[:, None]
        else:
            self.sum[bins] += np.add.reduceat(np.where(ok, x, 0), cuts, axis=0, dtype=np.float64)
            self.count[bins] += np.add.reduceat(ok, cuts, axis=0, dtype=np.int64)

    def means(self) -> np.ndarray:
        """float32 ``[bins, units]``."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.sum / self.count).astype(np.float32)

    def finish(self, run_dir: str | os.PathLike) -> dict:
        """Write the means under ``run_dir/cache/overview/`` (via a rename); returns ``{}``."""
        path = overview_path(Path(run_dir) / "cache", self.name, self.n, self.bins, self.per)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
        np.save(tmp, self.means())
        os.replace(tmp, path)
        return {}


def overview(run: RunReader, name: str, max_cells: int = MAX_CELLS, max_bins: int = MAX_BINS) -> tuple[np.ndarray, int]:
    """A downsampled picture of a whole activation: (float32 ``[bins, units]`` bin means, tokens per bin).

    Tokens are grouped into equal bins, at most ``max_bins`` and so that bins × units ≤ max_cells; each cell is
    the mean of its bin. Read from the run's cache (written while recording), else computed once and cached.
    """
    n, units = run.n_tokens, run.units(name)
    bins, per = shape(n, units, max_cells, max_bins)
    path = overview_path(run.cache_dir, name, n, bins, per)
    if not path.exists():
        builder = OverviewBuilder(name, units, n, max_cells, max_bins)
        for r in range(0, n, ROWS):
            builder.update(r, run.activations(name, start=r, stop=r + ROWS).astype(np.float16))
        builder.finish(run.cache_dir.parent)
    return np.load(path), per
