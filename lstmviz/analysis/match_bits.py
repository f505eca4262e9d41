"""The on-index of select & match: which units are on (≥ θ) at which steps, one bit each, under ``<run>/cache/match/``.

Layout (docs/FORMAT.md): ``bits`` uint8 ``[T, ⌈U/8⌉]``, time-major, unit u of step t is bit ``u & 7`` (least
significant first) of byte ``u >> 3``; 64 MB for 1M tokens × 512 units. Time-major so that a span's on-set is an
AND of a few contiguous rows, and so that the index streams: each chunk of stored rows becomes the same rows of
bits. ``cols`` is the same bytes transposed, ``[⌈U/8⌉, T]``, so that counting the selected units at every step
reads their bytes only (1 MB per 8 units at 1M tokens, not the 64 MB of every row). ``theta`` float32
``[units]`` is the θ used per unit.

:class:`IndexBuilder` builds it from the values as stored, in any row order: from a finished run on first use of
another θ (:func:`on_index`), or from a shard's rows. A recording builds the default θs' indices from the writer's
own passes instead (:class:`lstmviz.analysis.match_pass.PassIndex`, see
:func:`lstmviz.analysis.match_pass.recording_observers`). An absolute
θ sets bits as rows arrive (into an unlinked temporary file, so memory stays flat in corpus length), and the files
are written at the end. A per-unit quantile θ needs the whole column first: the builder keeps its own float16 copy
of the rows (an unlinked temporary file, so the page cache holds it and a crash leaves nothing), counts each
value's key in a 256-bin histogram as rows arrive, and at the end makes two passes over the copy: one to resolve
the order statistics inside their bins (exact, as ``np.quantile``), one to set the bits. A histogram alone cannot
give the exact quantile, and reading the parquet back costs seconds.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RunError
from ..store.reader import RunReader, mapped

INDEX_VERSION = 2
ROWS = 1 << 16  # rows per block when reading a run or a scratch copy


@dataclass(frozen=True)
class Threshold:
    """θ for "on": ``Threshold(0.3)`` is absolute; ``Threshold(0.9, quantile=True)`` is each unit's 90th
    percentile over the whole run (``np.quantile``, linear interpolation)."""

    value: float
    quantile: bool = False

    def __post_init__(self) -> None:
        if self.quantile and not 0.0 <= self.value <= 1.0:
            raise RunError(f"a quantile threshold must lie in [0, 1], got {self.value}")

    @property
    def key(self) -> str:
        """A file-name-safe key, e.g. ``v0.3`` or ``q0.9``."""
        return f"{'q' if self.quantile else 'v'}{float(self.value)!r}"


DEFAULT_THRESHOLDS = (Threshold(0.3), Threshold(0.9, quantile=True))
"""What the select page starts from (absolute 0.3; 0.9 when θ is switched to a quantile): built while recording."""


def as_threshold(threshold: float | Threshold) -> Threshold:
    """A number means an absolute θ."""
    return threshold if isinstance(threshold, Threshold) else Threshold(float(threshold))


@dataclass(frozen=True)
class OnIndex:
    """Which units are on at which steps. ``bits`` uint8 ``[T, ⌈U/8⌉]``: bit ``u & 7`` of byte ``u >> 3`` of row
    t is ``x[t, u] >= theta[u]``. ``theta`` float32 ``[units]``. ``cols`` uint8 ``[⌈U/8⌉, T]`` is the same bytes
    transposed (``bits.T``), so counting a few units over the whole run reads a megabyte per 8 units rather than
    every row (default: transposed here)."""

    bits: np.ndarray
    theta: np.ndarray
    n_tokens: int
    cols: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.cols is None:
            object.__setattr__(self, "cols", np.ascontiguousarray(np.asarray(self.bits).T))

    @property
    def n_units(self) -> int:
        return len(self.theta)


@functools.cache
def jit():
    """The compiled kernels module, or None with ``LSTMVIZ_NO_JIT=1`` or where numba cannot compile or cache here
    (then numpy does the same work, slower)."""
    if os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    try:
        from . import _match_jit as k

        # Each call with the types it meets: memory maps and their slices are read-only arrays, a distinct
        # type to numba, compiled (or loaded from its disk cache) here rather than on a user's first query.
        for ro in (False, True):
            h, bits = _frozen(np.zeros((1, 9), np.uint16), ro), _frozen(np.zeros((3, 2), np.uint8), ro)
            kth, sel = np.zeros(9, np.int64), np.zeros(1, np.int64)
            k.pack_on(h, kth, np.empty((1, 2), np.uint8))
            k.coarse_hist(h, np.zeros((9, 257), np.int32))
            k.fine_hist(h, np.zeros((9, 2), np.int64), np.zeros((9, 2, 257), np.int32))
            k.level_spans(k.count_on(bits, sel), 1, 1)
            k.level_spans(k.count_words(_frozen(np.zeros((3, 1), np.uint64), ro), sel, sel.astype(np.uint64)), 1, 2)
            k.on_sets(bits, sel, sel + 1, 1, 1, np.zeros(2, np.uint8))
    except Exception:  # no numba, nowhere to cache, or a compile error
        return None
    return k


def _frozen(x: np.ndarray, readonly: bool) -> np.ndarray:
    x.setflags(write=not readonly)
    return x


# ------------------------------------------------------------------------------------------------ float16 keys


def threshold_key(theta: np.ndarray) -> np.ndarray:
    """int64 ``[U]``: the key of the smallest float16 ≥ θ, so ``key(x) >= it`` ⇔ ``x >= θ`` for float16 x;
    NaN θ gives a key above all (nothing is on)."""
    theta = np.asarray(theta, np.float32)
    with np.errstate(over="ignore"):
        up = theta.astype(np.float16)
    low = up.astype(np.float32) < theta
    up[low] = np.nextafter(up[low], np.float16(np.inf))
    out = _keys(up.view(np.uint16)).astype(np.int64)
    out[np.isnan(theta)] = 1 << 16
    return out


def _keys(h: np.ndarray) -> np.ndarray:
    """int32 keys of float16 bit patterns (uint16, any shape): integer order is float order, −0 is +0, NaN → −1."""
    b = np.where(h == 0x8000, 0, h).astype(np.int32)
    k = np.where(b < 0x8000, b | 0x8000, 0xFFFF - b)
    return np.where((b & 0x7FFF) > 0x7C00, -1, k)


def _value(key: np.ndarray) -> np.ndarray:
    """float32 value of keys (the inverse of :func:`_keys` for non-NaN keys)."""
    key = np.asarray(key, np.int64)
    b = np.where(key >= 0x8000, key - 0x8000, 0xFFFF - key).astype(np.uint16)
    return b.view(np.float16).astype(np.float32)


def _pack(h: np.ndarray, theta: np.ndarray, kth: np.ndarray) -> np.ndarray:
    """uint8 ``[n, ⌈U/8⌉]`` bits of ``x >= θ`` for float16 patterns h uint16 ``[n, U]``."""
    k = jit()
    if k is None:
        return np.packbits(h.view(np.float16) >= theta, axis=1, bitorder="little")
    out = np.empty((len(h), (h.shape[1] + 7) // 8), np.uint8)
    k.pack_on(h, kth, out)
    return out


def _coarse(h: np.ndarray, hist: np.ndarray) -> None:
    """hist int32 ``[U, 257]`` += high-byte counts of the keys of h uint16 ``[n, U]``, NaNs in column 256."""
    k = jit()
    if k is not None:
        return k.coarse_hist(h, hist)
    keys = _keys(h)
    cells = np.arange(h.shape[1]) * 257 + np.where(keys < 0, 256, keys >> 8)
    hist += np.bincount(cells.ravel(), minlength=hist.size).reshape(hist.shape).astype(np.int32)


def _fine(h: np.ndarray, bins: np.ndarray, fine: np.ndarray) -> None:
    """fine int32 ``[U, 2, 257]`` += low-byte counts of the keys of h uint16 ``[n, U]`` in bin ``bins[u, side]``
    (column 256: the rest)."""
    k = jit()
    if k is not None:
        return k.fine_hist(h, bins, fine)
    keys = _keys(h)
    units = np.broadcast_to(np.arange(h.shape[1]), keys.shape)
    for side in (0, 1):
        hit = (keys >= 0) & (keys >> 8 == bins[:, side])
        cells = (units[hit] << 8) + (keys[hit] & 255)
        fine[:, side, :256] += np.bincount(cells, minlength=h.shape[1] << 8).reshape(h.shape[1], 256)


# ------------------------------------------------------------------------------------------------------ building


def index_paths(cache_dir: Path, name: str, th: Threshold, n_tokens: int) -> tuple[Path, Path, Path]:
    """(bits, cols, theta) file paths of an index under ``cache_dir`` (``<run>/cache``)."""
    stem = f"{name}.{th.key}.n{n_tokens}.v{INDEX_VERSION}"
    d = cache_dir / "match"
    return d / f"{stem}.bits.npy", d / f"{stem}.cols.npy", d / f"{stem}.theta.npy"


class IndexBuilder:
    """Builds the on-index of one activation at one θ from its stored rows, in any order
    (the :class:`~lstmviz.store.Observer` contract: ``update`` once per row, then ``finish``).

    Args:
        name: activation name; units: its width; n_tokens: rows it will receive.
        threshold: absolute θ or a :class:`Threshold`.
        scratch_dir: where the temporary files live (the run's filesystem, not a RAM-backed /tmp).
    """

    def __init__(
        self, name: str, units: int, n_tokens: int, threshold: float | Threshold, scratch_dir: str | os.PathLike
    ):
        self.name, self.units, self.n = name, units, n_tokens
        self.th = as_threshold(threshold)
        self.nb = (units + 7) // 8
        self._scratch_dir = Path(scratch_dir)
        self._file = None  # bits [n, nb] (absolute θ) or float16 values [n, units] (quantile θ)
        if self.th.quantile:
            self.hist = np.zeros((units, 257), np.int32)  # key high byte; NaNs in column 256
        else:
            self.theta = np.full(units, self.th.value, np.float32)
            self.kth = threshold_key(self.theta)

    def _fd(self) -> int:
        if self._file is None:
            self._scratch_dir.mkdir(parents=True, exist_ok=True)
            self._file = tempfile.TemporaryFile(dir=self._scratch_dir)  # noqa: SIM115 - closed in finish()
            self._file.truncate(self.n * (self.units * 2 if self.th.quantile else self.nb))
        return self._file.fileno()

    def update(self, start: int, values: np.ndarray) -> None:
        """Rows ``[start, start + n)``: float16 ``[n, units]`` as stored."""
        h = np.ascontiguousarray(values, np.float16).view(np.uint16)
        if self.th.quantile:
            _coarse(h, self.hist)
            os.pwrite(self._fd(), h.data, start * self.units * 2)
        else:
            os.pwrite(self._fd(), _pack(h, self.theta, self.kth).data, start * self.nb)

    def finish(self, run_dir: str | os.PathLike) -> dict:
        """Write the index under ``run_dir/cache/match/`` (theta and cols first, bits last, each by a rename, so
        the bits file marks a complete index); returns ``{}``."""
        paths = index_paths(Path(run_dir) / "cache", self.name, self.th, self.n)
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        tag = f"{os.getpid()}-{threading.get_ident()}.tmp.npy"
        tmps = [p.with_name(f"{p.name}.{tag}") for p in paths]
        fd, copy = self._fd(), None
        if self.th.quantile:
            copy = np.memmap(self._file, np.uint16, "r", shape=(self.n, self.units)) if self.n else None
            self.theta = self._quantiles(copy)
            self.kth = threshold_key(self.theta)
        np.save(tmps[2], self.theta)
        bits = np.lib.format.open_memmap(tmps[0], mode="w+", dtype=np.uint8, shape=(self.n, self.nb))
        cols = np.lib.format.open_memmap(tmps[1], mode="w+", dtype=np.uint8, shape=(self.nb, self.n))
        for r in range(0, self.n, ROWS):
            rows = min(ROWS, self.n - r)
            if self.th.quantile:
                block = _pack(np.asarray(copy[r : r + rows]), self.theta, self.kth)
            else:
                block = np.frombuffer(os.pread(fd, rows * self.nb, r * self.nb), np.uint8).reshape(rows, self.nb)
            bits[r : r + rows] = block
            cols[:, r : r + rows] = block.T
        for m in (bits, cols):
            m.flush()
        del bits, cols, copy
        self._file.close()
        for i in (2, 1, 0):
            os.replace(tmps[i], paths[i])
        return {}

    def _quantiles(self, copy: np.ndarray | None) -> np.ndarray:
        """float32 ``[units]``: each unit's q-quantile, exactly as ``np.quantile`` gives it on the stored values."""
        n, q = self.n, float(self.th.value)
        if n == 0:
            return np.full(self.units, np.nan, np.float32)
        p = (n - 1) * q
        lo = int(np.floor(p))
        ranks = np.array([lo, min(lo + 1, n - 1)])
        cum = np.cumsum(self.hist[:, :256], axis=1, dtype=np.int64)  # [units, 256]
        bins = np.stack([(cum <= r).sum(1) for r in ranks], axis=1).clip(0, 255)  # [units, 2]
        below = np.take_along_axis(np.pad(cum, ((0, 0), (1, 0))), bins, axis=1)  # values in lower bins
        fine = np.zeros((self.units, 2, 257), np.int32)
        for r in range(0, n, ROWS):
            _fine(np.asarray(copy[r : r + ROWS]), bins, fine)  # a read-only view of the copy, no copy
        fine = fine[:, :, :256]
        stats = np.empty((2, self.units), np.float32)
        for side in (0, 1):
            within = (np.cumsum(fine[:, side], axis=1) <= (ranks[side] - below[:, side])[:, None]).sum(1)
            stats[side] = _value((bins[:, side] << 8) + within.clip(0, 255))
        # numpy's own interpolation between the two order statistics, so theta equals np.quantile bit for bit
        with np.errstate(invalid="ignore"):  # inf − inf, as np.quantile meets it too
            theta = np.quantile(stats, p - lo, axis=0).astype(np.float32)
        theta[self.hist[:, 256] > 0] = np.nan
        return theta


def on_index(run: RunReader, name: str, threshold: float | Threshold = 0.3) -> OnIndex:
    """The on-index of ``name`` at θ: recorded with the run for :data:`DEFAULT_THRESHOLDS`, otherwise built on
    first use from the run's values (seconds for a large run) and cached under ``<run>/cache/match/``. A deleted
    index is rebuilt the same way.

    Returns:
        :class:`OnIndex` with bits ``[T, ⌈U/8⌉]`` (memory-mapped) and theta ``[units]``.
    """
    th = as_threshold(threshold)
    paths = index_paths(run.cache_dir, name, th, run.n_tokens)
    if not all(p.exists() for p in paths):
        build_index(run, name, th)
    stat = paths[0].stat()
    return _load(*map(str, paths), run.n_tokens, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=32)
def _load(bits: str, cols: str, theta: str, n_tokens: int, mtime_ns: int, inode: int) -> OnIndex:
    """One memory map per index file and process: a fresh map would fault in its pages again on every query
    (tens of ms for 64 MB). Keyed by mtime and inode, so a rebuilt file is mapped afresh."""
    maps = np.load(bits, mmap_mode="r"), np.load(cols, mmap_mode="r")
    for m in maps:  # a query's pages leave the resident set after the script run (drop_mapped_pages)
        mapped(m._mmap)
    return OnIndex(maps[0], np.load(theta), n_tokens, maps[1])


def build_index(run: RunReader, name: str, threshold: float | Threshold) -> None:
    """Build and cache the index of a finished run: its rows in blocks through an :class:`IndexBuilder`."""
    builder = IndexBuilder(name, run.units(name), run.n_tokens, threshold, run.cache_dir)
    for r in range(0, run.n_tokens, ROWS):
        builder.update(r, run.activations(name, start=r, stop=r + ROWS).astype(np.float16))
    builder.finish(run.cache_dir.parent)
