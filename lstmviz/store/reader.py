"""Reading a run: :class:`RunReader` opens nothing until asked, and reads only what it is asked for (the row groups
of a window, the columns of the units wanted). A sharded run (:mod:`lstmviz.shards`) reads as one."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RunError
from ..location import AnyPath, FsPath, local_cache
from ..shards import open_parquet, read_table, tokens_file
from ..validate import is_index, stats_file, unit_ids

TILE_ROWS = 4096  # rows transposed at a time from the unit-major copy of a read (a tile stays in cache)


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
