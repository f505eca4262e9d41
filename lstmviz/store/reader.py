"""Reading a run: :class:`RunReader` opens nothing until asked, and reads only what it is asked for (the row groups
of a window, the columns of the units wanted). A sharded run (:mod:`lstmviz.shards`) reads as one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import threading
import weakref
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from ..errors import RunError
from ..location import AnyPath, FsPath, local_cache, process_running
from ..shards import expand, open_parquet, read_table, tokens_file
from ..validate import is_index, stats_file, unit_ids

TILE_ROWS = 4096  # rows transposed at a time from the unit-major copy of a read (a tile stays in cache)

_MAPPED: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()


_MAPPED_LOCK = threading.Lock()  # the sessions' threads register maps while one of them drops pages


def mapped(m: mmap.mmap) -> mmap.mmap:
    """Register a read-only map of derived data, for :func:`drop_mapped_pages`; returns it."""
    with _MAPPED_LOCK:
        _MAPPED.add(m)
    return m


def _stamp(path: Path) -> tuple[int, int, int]:
    s = path.stat()
    return s.st_size, s.st_mtime_ns, s.st_ino


def drop_mapped_pages() -> None:
    """Unmap the pages read so far from every registered map (the tokens' copy, the match indices): they stay in
    the page cache, so the next read faults them back from memory, not disk, but they leave this process's
    resident set. A map is read a window or a few units at a time, and what one view touched (a match's pass
    over 160 MB of bits, a projection's 5000 rows across every column) would otherwise stay resident for the
    process's life, one more map per θ. The dashboard calls it after every script run."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:  # no madvise here (Windows)
        return
    with _MAPPED_LOCK:
        maps = list(_MAPPED)
    for m in maps:
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            m.madvise(advice)


@contextlib.contextmanager
def _parquet(path: AnyPath) -> Iterator[pq.ParquetFile]:
    """A parquet file opened for one read, closed after it (a stream from a store included)."""
    with path.open_input() if isinstance(path, FsPath) else open(path, "rb") as f:
        yield pq.ParquetFile(f)


class RunReader:
    """The files of a recorded run, read lazily: its manifest, tokens, stats and activations (see :class:`Run`,
    which adds the unit cards' reads; open either with :func:`open_run`, which checks the run first)."""

    def __init__(self, path: AnyPath, manifest: dict):
        self.path = path
        self.manifest = manifest
        self._acts = {a["name"]: a for a in manifest["activations"]}
        self._files: dict[str, pq.ParquetFile] = {}
        self._local_cache: Path | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, tokens={self.n_tokens}, activations={len(self.names)})"

    @property
    def names(self) -> list[str]:
        """Activation names, in recording order."""
        return list(self._acts)

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def info(self, name: str) -> dict:
        """The manifest entry of one activation: name, module, layer, dir, kind, units, dtype, file."""
        if not isinstance(name, str):
            raise RunError(f"an activation name is a string such as {self.names[:1] or ['rnn.l0.fwd.h']}, got {name!r}")
        try:
            return self._acts[name]
        except KeyError:
            raise RunError(
                f"run {self.path} has no activation {name!r}; it has {len(self._acts)}, "
                f"e.g. {', '.join(self.names[:4])}"
            ) from None

    def units(self, name: str) -> int:
        return int(self.info(name)["units"])

    @cached_property
    def tokens(self) -> pd.DataFrame:
        """One row per token: idx, doc, pos, token_id, token, then annotation and prediction columns."""
        return self._read_table(tokens_file(self.manifest))

    @cached_property
    def token_table(self) -> pa.Table:
        """The tokens table as arrow, memory-mapped from an uncompressed copy in :attr:`cache_dir` (written on
        first use, a row group at a time): a window or one column costs the pages it touches, where
        :attr:`tokens` holds every column in memory (about 400 MB at 10M tokens). Where the cache cannot be
        written (a read-only run), read into memory."""
        where = self.path / tokens_file(self.manifest)
        try:
            try:
                path = self._token_map()
            except OSError:  # a cache that cannot be written
                return self._tokens_in_memory()
            try:
                with open(path, "rb") as f:
                    m = mapped(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
                return ipc.open_file(pa.py_buffer(m)).read_all()
            except (OSError, ValueError, pa.ArrowException):  # the copy cut short by a crash, or removed meanwhile
                with contextlib.suppress(OSError):
                    path.unlink()  # derived data: the next opening of the run writes it again
                return self._tokens_in_memory()
        except (OSError, pa.ArrowException) as e:
            raise RunError(f"{where} is unreadable: {' '.join(str(e).split())}") from None

    def _tokens_in_memory(self) -> pa.Table:
        schema, parts = self._token_parts()
        return pa.Table.from_batches([b for part in parts for b in part.to_batches()], schema)

    @property
    def token_columns(self) -> list[str]:
        """The tokens table's columns, in order (a stored pandas index is not one)."""
        return [c for c in self.token_table.column_names if not c.startswith("__index_level_")]

    def token_kind(self, column: str) -> str:
        """``"boolean"`` (missing values allowed), ``"numeric"`` or ``"other"``: a tokens column's kind, from its
        arrow type (nothing is read)."""
        t = self.token_table.schema.field(column).type
        if pa.types.is_boolean(t):
            return "boolean"
        return "numeric" if pa.types.is_integer(t) or pa.types.is_floating(t) else "other"

    def tokens_window(self, start: int, stop: int, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows ``[start, stop)`` of the tokens table (``columns``, default all), indexed from 0."""
        start, stop, _ = slice(start, stop).indices(self.n_tokens)
        part = self.token_table.slice(start, max(stop - start, 0))
        part = part.select(list(columns)) if columns is not None else part
        return part.to_pandas().reset_index(drop=True)

    def token_rows(self, rows: np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows ``rows`` (int ``[n]``, any order, repeats allowed) of the tokens table (``columns``, default all),
        in that order. Taken a record batch at a time: arrow's take over a chunked table joins every chunk of a
        column first, ~20 ms for a few hundred rows of a 10M-token run, where this costs well under one."""
        table = self.token_table if columns is None else self.token_table.select(list(columns))
        rows = np.asarray(rows, np.int64).reshape(-1)
        batches = table.to_batches()
        if not len(rows) or not batches:
            return table.slice(0, 0).take(pa.array(rows))  # empty, or out of range: arrow says so
        bounds = np.cumsum([0] + [b.num_rows for b in batches])
        if rows.min() < 0 or rows.max() >= bounds[-1]:
            raise RunError(f"token rows must lie in 0…{bounds[-1] - 1}, got {rows.min()}…{rows.max()}")
        which = np.searchsorted(bounds, rows, side="right") - 1
        order = np.argsort(which, kind="stable")
        parts = [batches[b].take(pa.array(rows[order[which[order] == b]] - bounds[b])) for b in np.unique(which)]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return pa.Table.from_batches(parts, table.schema).combine_chunks().take(pa.array(inverse))

    def token_column(self, column: str) -> pd.Series:
        """One column of the tokens table over the whole run, ``[tokens]``, as :attr:`tokens` has it (a copy of the
        mapped column, for the caller to drop when done)."""
        return self.token_table.select([column]).to_pandas()[column]

    @property
    def tokens_key(self) -> str:
        """16 hex digits naming this recording's tokens: its manifest, and the size, time and inode of each local
        tokens file (one rewritten in place, same manifest and length, gets another key). Derived data that
        depends on the tokens table (its memory map, annotation scores) is stored under it."""
        files = expand(self.path, tokens_file(self.manifest))
        stamps = [] if isinstance(self.path, FsPath) else [_stamp(self.path / f) for f in files]
        recording = json.dumps([self.manifest, files, stamps], sort_keys=True, default=str)
        return hashlib.sha256(recording.encode()).hexdigest()[:16]

    def _token_map(self) -> Path:
        """The memory-mappable copy of the tokens table, keyed by the manifest and the tokens files' size and
        times (a run recorded again gets its own; the copy of an earlier recording is removed). Written to a
        temporary sibling and renamed, so a reader never maps half a file."""
        cache = self.cache_dir
        path = cache / f"tokens.{self.tokens_key}.arrow"
        if path.is_file():
            return path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            schema, parts = self._token_parts()
            with ipc.new_file(str(tmp), schema) as writer:
                for part in parts:
                    writer.write_table(part)
                    del part
                    pa.default_memory_pool().release_unused()
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        for old in cache.glob("tokens.*.arrow"):
            if old != path:
                old.unlink(missing_ok=True)
        for left in cache.glob(".tokens.*.arrow.*.tmp"):  # ".<name>.<pid>.<thread>.tmp" of a killed process
            pid = left.name.split(".")[-3]
            if pid.isdigit() and not process_running(int(pid)):
                left.unlink(missing_ok=True)
        return path

    def _token_parts(self) -> tuple[pa.Schema, Iterator[pa.Table]]:
        """The tokens table's schema, and its row groups in corpus order (over a sharded run's parts). A shard's
        pandas metadata names its own row range: the first part's stands for all."""
        files = [self.path / f for f in expand(self.path, tokens_file(self.manifest))]
        with _parquet(files[0]) as first:
            schema = first.schema_arrow

        def groups() -> Iterator[pa.Table]:
            for path in files:
                with _parquet(path) as pf:
                    for g in range(pf.metadata.num_row_groups):
                        yield pf.read_row_group(g).replace_schema_metadata(schema.metadata).cast(schema)

        return schema, groups()

    @cached_property
    def stats(self) -> pd.DataFrame:
        """Per activation, per unit: count, mean, std, min, max, n_low, n_high, hist, hist_lo, hist_hi."""
        file = stats_file(self.manifest)
        return self._read_table(file) if (self.path / file).exists() else pd.DataFrame()

    def _read_table(self, file: str) -> pd.DataFrame:
        """A whole parquet file (or a sharded run's parts of one) of the run; damage that its footer did not show
        is a RunError too."""
        try:
            return read_table(self.path, file)
        except (OSError, pa.ArrowException) as e:
            raise RunError(f"{self.path / file} is unreadable: {' '.join(str(e).split())}") from None

    @property
    def cache_dir(self) -> Path:
        """``<run>/cache``: derived data, created on demand, safe to delete. A run on object storage has a local
        one instead (:func:`lstmviz.location.local_cache`), filled with the run's own on first use."""
        if isinstance(self.path, FsPath):
            if self._local_cache is None:
                self._local_cache = local_cache(self.path, self.manifest)
            return self._local_cache
        d = self.path / "cache"
        d.mkdir(exist_ok=True)
        return d

    def _file(self, name: str) -> pq.ParquetFile:
        if name not in self._files:
            path = self.path / self.info(name)["file"]
            try:
                self._files[name] = open_parquet(self.path, self.info(name)["file"])
            except (OSError, pa.ArrowException) as e:
                raise RunError(f"activation file {path} is unreadable: {' '.join(str(e).split())}") from None
        return self._files[name]

    def activations(
        self,
        name: str,
        units: Sequence[int] | np.ndarray | int | None = None,
        start: int | None = None,
        stop: int | None = None,
        *,
        dtype: type = np.float32,
    ) -> np.ndarray:
        """Values of ``name`` for tokens ``[start, stop)`` and the given units: float32 ``[tokens, len(units)]``
        (or ``dtype``: float16, as stored, halves a blockwise scan's memory and its conversions).

        ``units`` is a sequence of unit ids in ``[0, units(name))``, in any order and possibly repeated (column
        ``j`` holds unit ``units[j]``, as numpy's ``full[:, units]``), a boolean mask of length ``units(name)``,
        one id, or None for all. Reads only the row groups that overlap the range and each requested column once.
        """
        n_units = self.units(name)
        for key, value in (("start", start), ("stop", stop)):
            if value is not None and not is_index(value):
                raise RunError(f"{key} must be an integer token position or None, got {value!r}")
        start, stop, _ = slice(start, stop).indices(self.n_tokens)
        stop = max(stop, start)
        units = np.arange(n_units) if units is None else unit_ids(units, n_units, name)
        out = np.empty((stop - start, len(units)), dtype)
        if stop == start or not len(units):
            return out
        f = self._file(name)
        md = f.metadata
        read, where = np.unique(units, return_inverse=True)  # each column is read once, then placed
        row0 = 0
        groups, first = [], None
        for g in range(md.num_row_groups):
            rows = md.row_group(g).num_rows
            if row0 + rows > start and row0 < stop:
                groups.append(g)
                first = row0 if first is None else first
            row0 += rows
        try:
            table = f.read_row_groups(groups, columns=[f"u{u:04d}" for u in read])
        except (OSError, pa.ArrowException) as e:  # changed on disk since open_run checked it
            raise RunError(
                f"activation file {self.path / self.info(name)['file']} is unreadable: {' '.join(str(e).split())}"
            ) from None
        lo, hi = start - first, stop - first
        # Each column lands contiguous in a unit-major copy, then tiles of it are transposed into the row-major
        # output: placing every column straight into its strided output column costs ~3× as much at 128 units.
        same = len(read) == len(units) and bool((where == np.arange(len(read))).all())
        if same and len(read) == 1:  # one column: [n, 1] is contiguous already (a unit's whole column, say)
            out[:, 0] = table.column(0).slice(lo, hi - lo).to_numpy()
            return out
        cols = np.empty((len(read), stop - start), out.dtype)
        for j, column in enumerate(table.columns):
            cols[j] = column.slice(lo, hi - lo).to_numpy()
        for r in range(0, stop - start, TILE_ROWS):
            tile = cols[:, r : r + TILE_ROWS].T  # [rows, len(read)]
            out[r : r + TILE_ROWS] = tile if same else tile[:, where]
        return out
