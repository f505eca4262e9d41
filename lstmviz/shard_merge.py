"""The merges of a sharded run (docs/FORMAT.md, "Sharded runs"): each shard is recorded as a run of its own with
:func:`shard_observers`, then the Ray driver (:mod:`lstmviz.distributed`) merges the shards' stats, match indices,
overviews and unit cards into the run's, exactly. The format and the reads of a sharded run are
:mod:`lstmviz.shards`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis.match_bits import DEFAULT_THRESHOLDS, ROWS, IndexBuilder, index_paths
from .analysis.overview import OverviewBuilder
from .cards.build import card_file
from .cards.inpass import PassCards, merge_parts, part_path
from .errors import RunError


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
        self.builder = OverviewBuilder(name, units, n_run)
        self.offset = offset
        self.overview_state = self.builder.overview_state._replace(offset=offset)  # the writer's pass feeds it

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
    builder = OverviewBuilder(name, units, n)
    for p in parts:
        with np.load(overview_sums_path(p, name)) as z:
            builder.sum += z["sum"]
            builder.count += z["count"]
    builder.finish(run_dir)


def merge_cards(run_dir: Path, parts: Sequence[Path], name: str, n: int) -> str:
    """The run's unit cards of ``name`` (cache/cards/, docs/FORMAT.md) from the shards' parts, exactly: the union of
    the shards' top-M candidates holds the run's top M (:func:`lstmviz.cards.merge_parts`). Returns the file,
    relative to the run."""
    loaded = []
    for p in parts:
        with np.load(part_path(p, name)) as z:
            loaded.append({key: z[key] for key in z.files})
    path = Path(run_dir) / "cache" / "cards" / card_file(name, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **merge_parts(loaded, n))
    os.replace(tmp, path)
    return f"cache/cards/{path.name}"


def shard_observers(n_run: int, offset: int, n_shard: int, scratch_dir: Path):
    """The observers of one shard's recording: the match indices at the absolute default θs (over the shard), the
    overview sums on the run's grid and the unit cards' parts (run positions). What these merge into is
    :func:`merge_cache`."""

    def make(act) -> list:
        absolute = [th for th in DEFAULT_THRESHOLDS if not th.quantile]
        index = [IndexBuilder(act.name, act.units, n_shard, th, scratch_dir) for th in absolute]
        overview = GridOverview(act.name, act.units, n_run, offset)
        cards = PassCards(act, n_run, offset=offset, n_local=n_shard, part=True, blocks=overview.overview_state)
        return [*index, overview, cards]

    return make


def merge_cache(run_dir: Path, parts: Sequence[Path], bounds: Sequence[tuple[int, int]], acts: Sequence[dict]) -> None:
    """Merge the shards' derived data into ``run_dir/cache`` and drop the shards' own caches; each entry of
    ``acts`` (the run's manifest entries) gets its ``cards`` file."""
    n = bounds[-1][1]
    for a in acts:
        for th in DEFAULT_THRESHOLDS:
            if not th.quantile:
                merge_match(run_dir, parts, bounds, a["name"], th)
        merge_overview(run_dir, parts, a["name"], int(a["units"]), n)
        a["cards"] = merge_cards(run_dir, parts, a["name"], n)
    for p in parts:
        shutil.rmtree(p / "cache", ignore_errors=True)
