"""Sharded runs (format version 2): one run read as one, stored as contiguous parts. docs/FORMAT.md specifies it.

A sharded run keeps each shard as a run of its own, recorded from a zero state over its piece of the corpus::

    <run>/manifest.json                    schema_version 2; recording.shards = [[start, stop], …] in tokens
    <run>/shards/00000/                    a complete version-1 run of tokens [0, stop₀) …
    <run>/shards/00001/                    … and of [start₁, stop₁), and so on, in corpus order
    <run>/stats.parquet                    merged exactly from the shards' stats
    <run>/cache/                           the match indices at absolute θ and the overviews, merged

Each activation's manifest ``file`` is the glob ``shards/*/acts/<name>.parquet`` and ``tokens.file`` is
``shards/*/tokens.parquet``: the parts sort (zero-padded names) into corpus order, so DuckDB, Polars and Spark
read a glob as one table. :func:`open_parquet` gives :class:`~lstmviz.store.Run` the same view, lazily: a window
reads only the row groups of the parts it overlaps.

This module holds the format and the reads; :mod:`lstmviz.shard_merge` the merges, and :mod:`lstmviz.distributed`
records the shards on Ray.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .location import AnyPath, FsPath, parquet_file

SHARDED_VERSION = 2
PARTS = "shards"


def part_dir(run_dir: AnyPath, shard: int) -> AnyPath:
    """The directory of shard ``shard`` inside ``run_dir``: ``shards/00000`` …"""
    return (run_dir if isinstance(run_dir, FsPath) else Path(run_dir)) / PARTS / f"{shard:05d}"


def act_glob(name: str) -> str:
    """The manifest ``file`` of an activation of a sharded run."""
    return f"{PARTS}/*/acts/{name}.parquet"


TOKENS_GLOB = f"{PARTS}/*/tokens.parquet"


def is_glob(file: str) -> bool:
    return glob.has_magic(file)


def expand(run_dir: AnyPath, file: str) -> list[str]:
    """The files (relative to ``run_dir``) a manifest entry names: itself, or its glob's matches in sorted order,
    which is corpus order (hidden names, e.g. a replaced part being removed, never match)."""
    if not is_glob(file):
        return [file]
    if isinstance(run_dir, FsPath):
        return [f.relative_to(run_dir) for f in run_dir.glob(file)]
    root = os.fspath(run_dir)
    return sorted(os.path.relpath(f, root) for f in glob.glob(os.path.join(glob.escape(root), file)))


def tokens_file(manifest: dict) -> str:
    """The tokens file or glob of a checked manifest."""
    return (manifest.get("tokens") or {}).get("file", "tokens.parquet")


# --------------------------------------------------------------------------------------------------- reading


class _Group:
    def __init__(self, num_rows: int):
        self.num_rows = num_rows


class _Metadata:
    """The part of ``pq.FileMetaData`` that :meth:`~lstmviz.store.Run.activations` uses, over every part."""

    def __init__(self, rows: list[int]):
        self._rows = rows
        self.num_row_groups = len(rows)
        self.num_rows = sum(rows)

    def row_group(self, g: int) -> _Group:
        return _Group(self._rows[g])


class PartedFile:
    """Parquet parts read as one file: global row group g is row group ``local[g]`` of part ``part[g]``.

    Opens each part's footer once, on first use; :meth:`read_row_groups` reads only the parts it needs.
    """

    def __init__(self, paths: Sequence[AnyPath]):
        self.paths = list(paths)
        self._files = [parquet_file(p) for p in self.paths]
        rows, self._where = [], []
        for i, f in enumerate(self._files):
            for g in range(f.metadata.num_row_groups):
                rows.append(f.metadata.row_group(g).num_rows)
                self._where.append((i, g))
        self.metadata = _Metadata(rows)

    def read_row_groups(self, groups: Sequence[int], columns: Sequence[str]) -> pa.Table:
        """The given global row groups (ascending), as one table."""
        by_part: dict[int, list[int]] = {}
        for g in groups:
            i, local = self._where[g]
            by_part.setdefault(i, []).append(local)
        tables = [self._files[i].read_row_groups(local, columns=list(columns)) for i, local in by_part.items()]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def open_parquet(run_dir: AnyPath, file: str) -> pq.ParquetFile | PartedFile:
    """A listed file, or a glob's parts as one :class:`PartedFile`."""
    if not is_glob(file):
        return parquet_file(run_dir / file)
    return PartedFile([run_dir / f for f in expand(run_dir, file)])


def read_table(run_dir: AnyPath, file: str) -> pd.DataFrame:
    """A whole listed file, or its glob's parts concatenated in order."""
    files = expand(run_dir, file)
    frames = [read_frame(run_dir / f) for f in files]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_frame(path: AnyPath) -> pd.DataFrame:
    """One parquet file as ``pd.read_parquet`` reads it, a column at a time: a whole-file read holds the arrow
    table and its pandas copy at once (a 10M-token tokens table peaks ~300 MB higher). A file whose pandas
    metadata names stored index columns is read whole."""
    f = parquet_file(path)
    meta = f.schema_arrow.pandas_metadata or {}
    names = f.schema_arrow.names
    if not names or any(isinstance(c, str) for c in meta.get("index_columns", [])):
        return f.read().to_pandas()
    columns = {}
    for name in names:
        columns[name] = f.read(columns=[name]).to_pandas(self_destruct=True)[name]
        pa.default_memory_pool().release_unused()  # the column's arrow buffers, before the next is read
    return pd.DataFrame(columns, copy=False)


def check_shards(manifest: dict, n: int, corrupt) -> list[tuple[int, int]] | None:
    """``recording.shards`` of a manifest: contiguous ``[start, stop)`` pairs covering ``[0, n)``, or None."""
    shards = (manifest.get("recording") or {}).get("shards")
    if shards is None:
        return None
    ok = (
        isinstance(shards, list)
        and shards
        and all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in s)
            for s in shards
        )
    )
    if not ok:
        raise corrupt("manifest.json field recording.shards must be a list of [start, stop] token positions")
    edges = [s[0] for s in shards] + [shards[-1][1]]
    contiguous = all(a[1] == b[0] for a, b in itertools.pairwise(shards))
    if edges[0] != 0 or edges[-1] != n or not contiguous or any(a >= b for a, b in shards):
        raise corrupt(f"manifest.json field recording.shards must cut [0, {n}) into contiguous non-empty pieces")
    return [(a, b) for a, b in shards]
