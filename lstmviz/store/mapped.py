"""An uncompressed float16 activation file written in place: :class:`MappedF16File`.

Such a file's size and layout are known before any value arrives (:func:`~lstmviz.store.parquet_f16.layout`):
each row group's column chunks are one page each, a fixed-size header then the unit's values. So the file is
created at its final size, its blocks reserved (``posix_fallocate``: a full disk is an error before the
recording starts, and reading what is not yet written gives zeros), memory-mapped, and every chunk's unit-major
runs are copied straight to their final offsets. Closing writes the footer; no value is written twice.

A run's rows arrive stream-major (each of 64 streams owns a stretch of the corpus), so one chunk writes a short
run (its rows, e.g. 128 values) into a page of every unit's column at every stream: the pages a recording is
filling at any time are one or two per stream and unit. The mapped pages count in the process's resident set
until dropped: :meth:`MappedF16File.drop` unmaps them (``madvise(MADV_DONTNEED)``: for a shared file mapping
the data stays in the page cache), and the next write to a page that is still being filled faults it back in
from memory (a fault per stream and unit, each serving one chunk's run: the price of a drop).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .parquet_f16 import MAGIC, _page_header, footer, layout

PAGE = mmap.PAGESIZE


def reserve(fd: int, size: int) -> None:
    """Give the file ``fd`` its ``size`` bytes on disk now (zeros), so that a full disk is an ``OSError`` here and
    not a fault (SIGBUS) when a page of the map is first written; where the file system cannot reserve, the file
    is only extended (sparse)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError) as e:  # no posix_fallocate here, or a file system that does not support it
        if isinstance(e, OSError) and e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # else: real (ENOSPC)
            raise
        os.ftruncate(fd, size)


class MappedF16File:
    """The parquet file ``path`` of n rows × ``names`` float16 columns in ``row_group``-row groups, written in place.

    Rows that no call writes are 0. Usage::

        f = MappedF16File(path, names, n, row_group)
        f.write_runs(tiles, starts, counts)   # any rows, any order
        f.group(g)                            # uint16 [units, R_g], a read-only view of the stored patterns
        f.close()                             # the footer; or f.abort() (the caller removes the file)
    """

    def __init__(self, path: str | os.PathLike, names: Sequence[str], n: int, row_group: int):
        self.path = Path(path)
        self.units = len(names)
        self.layout = layout(n, self.units, row_group)
        self.row_group = row_group
        self._footer = footer(names, self.layout.groups())
        self.size = self.layout.data_end + len(self._footer) + 4 + len(MAGIC)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            reserve(fd, self.size)
            # written, not stored through the map: a first write fault per header page would also read around it
            _write_at(fd, MAGIC, 0)
            lay = self.layout
            for g, r in enumerate(lay.rows.tolist()):
                h = _page_header(r)
                for u in range(self.units):
                    _write_at(fd, h, int(lay.values[g] + u * lay.stride[g]) - len(h))
            self._map: mmap.mmap | None = mmap.mmap(fd, self.size)  # a map of its own: fd is not needed after
        finally:
            os.close(fd)
        self._bytes = np.frombuffer(self._map, np.uint8)
        self._values = np.frombuffer(self._map, np.uint16, count=self.size // 2)

    def group(self, g: int, writeable: bool = False) -> np.ndarray:
        """Row group g's stored float16 patterns, uint16 ``[units, R_g]`` (a strided view of the map)."""
        lay = self.layout
        base = self._values[int(lay.values[g]) // 2 :]
        shape, strides = (self.units, int(lay.rows[g])), (int(lay.stride[g]), 2)
        return np.lib.stride_tricks.as_strided(base, shape, strides, writeable=writeable)

    def write_runs(self, tiles: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> None:
        """Store ``tiles[b, :units·counts[b]]`` (uint16, unit-major: unit u's ``counts[b]`` patterns at
        ``u·counts[b]``) at rows ``starts[b]…``, for each b; tiles ``[B, ≥ units·max(counts)]``."""
        R = self.row_group
        for b in np.flatnonzero(counts > 0).tolist():
            s, c = int(starts[b]), int(counts[b])
            tile = tiles[b, : self.units * c].reshape(self.units, c)
            for g in range(s // R, (s + c - 1) // R + 1):
                a, e = max(s, g * R), min(s + c, (g + 1) * R)
                self.group(g, writeable=True)[:, a - g * R : e - g * R] = tile[:, a - s : e - s]

    def spill(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole file as observers' ``read_spill`` takes it: read-only uint16 ``[size / 2]`` and the row groups
        int64 ``[G, 4]`` (first row, rows R, element offset of unit 0's values, elements from one unit's values
        to the next)."""
        values = self._values.view()
        values.flags.writeable = False
        lay = self.layout
        return values, np.column_stack([lay.first, lay.rows, lay.values // 2, lay.stride // 2]).astype(np.int64)

    def drop(self, g: int | None = None) -> None:
        """Unmap the pages written or read so far (of row group g, or of the whole file) from this process's
        resident set; they stay in the page cache."""
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is None or self._map is None or self.size == 0:
            return
        if g is None:
            start, stop = 0, self.size
        else:
            lay = self.layout
            start = int(lay.values[g]) // PAGE * PAGE
            stop = min(int(lay.values[g] + lay.stride[g] * self.units), self.size)
        self._map.madvise(advice, start, stop - start)

    def close(self) -> None:
        """Write the footer, and release the map."""
        if self._map is None:
            return
        at = self.layout.data_end
        tail = self._footer + len(self._footer).to_bytes(4, "little") + MAGIC
        self._bytes[at : at + len(tail)] = np.frombuffer(tail, np.uint8)
        self.abort()

    def abort(self) -> None:
        """Release the map as it is (the caller removes the file)."""
        if self._map is None:
            return
        m, self._map = self._map, None
        del self._bytes, self._values
        with contextlib.suppress(BufferError):  # a view still held elsewhere: the map closes when it goes
            m.close()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """``pwrite`` that goes on after a short write."""
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
