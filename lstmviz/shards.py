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

This module holds the format and the merges; :mod:`lstmviz.distributed` records the shards on Ray.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import RunError

SHARDED_VERSION = 2
PARTS = "shards"


def part_dir(run_dir: Path, shard: int) -> Path:
    """The directory of shard ``shard`` inside ``run_dir``: ``shards/00000`` …"""
    return Path(run_dir) / PARTS / f"{shard:05d}"


def act_glob(name: str) -> str:
    """The manifest ``file`` of an activation of a sharded run."""
    return f"{PARTS}/*/acts/{name}.parquet"


TOKENS_GLOB = f"{PARTS}/*/tokens.parquet"


def is_glob(file: str) -> bool:
    return glob.has_magic(file)


def expand(run_dir: Path, file: str) -> list[str]:
    """The files (relative to ``run_dir``) a manifest entry names: itself, or its glob's matches in sorted order,
    which is corpus order (hidden names, e.g. a replaced part being removed, never match)."""
    if not is_glob(file):
        return [file]
    root = os.fspath(run_dir)
    return sorted(os.path.relpath(f, root) for f in glob.glob(os.path.join(glob.escape(root), file)))


def tokens_file(manifest: dict) -> str:
    """The tokens file or glob of a checked manifest."""
    return (manifest.get("tokens") or {}).get("file", "tokens.parquet")


def shard_bounds(manifest: dict) -> list[tuple[int, int]] | None:
    """``recording.shards`` as ``[(start, stop), …]``, or None for an unsharded run."""
    shards = (manifest.get("recording") or {}).get("shards")
    return None if shards is None else [(int(a), int(b)) for a, b in shards]


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

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self._files = [pq.ParquetFile(p) for p in self.paths]
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


def open_parquet(run_dir: Path, file: str) -> pq.ParquetFile | PartedFile:
    """A listed file, or a glob's parts as one :class:`PartedFile`."""
    if not is_glob(file):
        return pq.ParquetFile(run_dir / file)
    return PartedFile([run_dir / f for f in expand(run_dir, file)])


def read_table(run_dir: Path, file: str) -> pd.DataFrame:
    """A whole listed file, or its glob's parts concatenated in order."""
    files = expand(run_dir, file)
    frames = [pd.read_parquet(run_dir / f) for f in files]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------- merging


def merge_stats(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """stats.parquet of a sharded run from its shards' (docs/FORMAT.md, stats.parquet), exactly:

    counts, n_low, n_high, n_nan, n_inf and the histogram are sums (every shard bins over the run's own
    [hist_lo, hist_hi]); min and max are the extremes; mean and std come from the merged moments
    Σx = mean·m and Σx² = (std² + mean²)·m over the m finite values of each shard, which is exact to float64
    rounding (the single-process writer accumulates the same float64 sums).
    """
    keys = ["name", "unit"]
    first = parts[0]
    for k, p in enumerate(parts[1:], 1):
        if len(p) != len(first) or not (p[keys].to_numpy() == first[keys].to_numpy()).all():
            raise RunError(f"shard {k} recorded other activations or units than shard 0")
        for col in ("hist_lo", "hist_hi"):
            if not np.array_equal(p[col].to_numpy(), first[col].to_numpy()):
                raise RunError(f"shard {k} binned its histogram over another range than shard 0")
    count = sum(p["count"].to_numpy() for p in parts)
    sums = {c: sum(p[c].to_numpy() for p in parts) for c in ("n_low", "n_high", "n_nan", "n_inf")}
    s1 = np.zeros(len(first))
    s2 = np.zeros(len(first))
    for p in parts:
        m = (p["count"] - p["n_nan"] - p["n_inf"]).to_numpy()
        mean, std = np.nan_to_num(p["mean"].to_numpy()), np.nan_to_num(p["std"].to_numpy())
        s1 += mean * m
        s2 += (std**2 + mean**2) * m
    finite = count - sums["n_nan"] - sums["n_inf"]
    n = np.maximum(finite, 1)
    mean = s1 / n
    var = np.maximum(s2 / n - mean**2, 0.0)
    none = finite == 0
    with np.errstate(all="ignore"):
        lo = np.fmin.reduce([p["min"].to_numpy() for p in parts])
        hi = np.fmax.reduce([p["max"].to_numpy() for p in parts])
    hist = np.sum([np.stack(p["hist"].to_numpy()) for p in parts], axis=0)
    return pd.DataFrame(
        {
            "name": first["name"].to_numpy(),
            "unit": first["unit"].to_numpy(),
            "count": count,
            "mean": np.where(none, np.nan, mean),
            "std": np.where(none, np.nan, np.sqrt(var)),
            "min": lo,
            "max": hi,
            **sums,
            "hist": list(hist),
            "hist_lo": first["hist_lo"].to_numpy(),
            "hist_hi": first["hist_hi"].to_numpy(),
        }
    )


def merge_match(run_dir: Path, parts: Sequence[Path], bounds: Sequence[tuple[int, int]], name: str, th) -> None:
    """The run's on-index of ``name`` at an absolute θ: the shards' bits concatenated along time.

    A quantile θ is not merged: a per-unit quantile of the whole run is not a function of the shards' own, so
    :func:`lstmviz.analysis.match_bits.on_index` builds it on first use from the run's values, out of core.
    """
    from .analysis.match_bits import ROWS, index_paths

    n = bounds[-1][1]
    dest = index_paths(Path(run_dir) / "cache", name, th, n)
    dest[0].parent.mkdir(parents=True, exist_ok=True)
    tmps = [p.with_name(f"{p.name}.{os.getpid()}.tmp.npy") for p in dest]
    sources = [index_paths(p / "cache", name, th, b - a) for p, (a, b) in zip(parts, bounds, strict=True)]
    theta = np.load(sources[0][2])
    np.save(tmps[2], theta)
    nb = (len(theta) + 7) // 8
    bits = np.lib.format.open_memmap(tmps[0], mode="w+", dtype=np.uint8, shape=(n, nb))
    cols = np.lib.format.open_memmap(tmps[1], mode="w+", dtype=np.uint8, shape=(nb, n))
    for src, (a, b) in zip(sources, bounds, strict=True):
        part = np.load(src[0], mmap_mode="r")
        for r in range(0, b - a, ROWS):
            block = np.asarray(part[r : r + ROWS])
            bits[a + r : a + r + len(block)] = block
            cols[:, a + r : a + r + len(block)] = block.T
        del part
    for m in (bits, cols):
        m.flush()
    del bits, cols
    for i in (2, 1, 0):  # bits last: its presence marks a complete index
        os.replace(tmps[i], dest[i])


class GridOverview:
    """An :class:`~lstmviz.store.Observer` in a shard that sums its rows into the *run's* overview bins (rows
    offset by the shard's start), so the run's overview is the sum of the shards' (:func:`merge_overview`)."""

    def __init__(self, name: str, units: int, n_run: int, offset: int):
        from .analysis.overview import OverviewBuilder

        self.builder = OverviewBuilder(name, units, n_run)
        self.offset = offset

    def update(self, start: int, values: np.ndarray) -> None:
        self.builder.update(self.offset + start, values)

    def finish(self, run_dir: str | os.PathLike) -> dict:
        path = overview_sums_path(Path(run_dir), self.builder.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, sum=self.builder.sum, count=self.builder.count)
        os.replace(tmp, path)
        return {}


def overview_sums_path(part: Path, name: str) -> Path:
    return part / "cache" / "overview-sums" / f"{name}.npz"


def merge_overview(run_dir: Path, parts: Sequence[Path], name: str, units: int, n: int) -> None:
    """The run's overview of ``name`` (cache/overview/, docs/FORMAT.md) from the shards' bin sums."""
    from .analysis.overview import OverviewBuilder

    builder = OverviewBuilder(name, units, n)
    for p in parts:
        with np.load(overview_sums_path(p, name)) as z:
            builder.sum += z["sum"]
            builder.count += z["count"]
    builder.finish(run_dir)


def shard_observers(n_run: int, offset: int, n_shard: int, scratch_dir: Path):
    """The observers of one shard's recording: the match indices at the absolute default θs (over the shard) and
    the overview sums on the run's grid. What these merge into is :func:`merge_cache`."""
    from .analysis.match_bits import DEFAULT_THRESHOLDS, IndexBuilder

    def make(act) -> list:
        absolute = [th for th in DEFAULT_THRESHOLDS if not th.quantile]
        index = [IndexBuilder(act.name, act.units, n_shard, th, scratch_dir) for th in absolute]
        return [*index, GridOverview(act.name, act.units, n_run, offset)]

    return make


def merge_cache(run_dir: Path, parts: Sequence[Path], bounds: Sequence[tuple[int, int]], acts: Sequence[dict]) -> None:
    """Merge the shards' derived data into ``run_dir/cache`` and drop the shards' own caches."""
    from .analysis.match_bits import DEFAULT_THRESHOLDS

    n = bounds[-1][1]
    for a in acts:
        for th in DEFAULT_THRESHOLDS:
            if not th.quantile:
                merge_match(run_dir, parts, bounds, a["name"], th)
        merge_overview(run_dir, parts, a["name"], int(a["units"]), n)
    for p in parts:
        shutil.rmtree(p / "cache", ignore_errors=True)


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
