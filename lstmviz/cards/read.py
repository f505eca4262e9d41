"""Reading the unit cards: :func:`load_cards` (built from the run's values on first use, then cached), and the
answers made from them, :func:`top_contexts` and :func:`correlated_units`."""

from __future__ import annotations

import collections
import functools
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import f16keys as _cs
from ..errors import RunError
from ..location import AnyPath, parquet_file, read_table
from ..shards import expand, tokens_file
from ..store.format import Activation
from ..store.parquet_f16 import plain_chunks
from ..store.reader import RunReader
from ..validate import unit_ids
from ._sums import block_sums
from .build import WINDOW, candidates, card_file, greedy, key_values
from .inpass import PassCards


def load_cards(run: RunReader, name: str) -> Cards:
    """The cards of one activation: from ``cache/cards/`` when the recording built them, else built now from the
    run's values (a run recorded before cards existed, or a deleted cache) and cached for next time."""
    run.info(name)  # a RunError for an unknown name
    path = run.cache_dir / "cards" / card_file(name, run.n_tokens)
    if not path.is_file():
        build_cards(run, name)
    return _load(str(path), path.stat().st_mtime_ns)


def build_cards(run: RunReader, name: str, rows: int = 16384) -> None:
    """Build and cache the cards of a finished run's activation with the same :class:`~.inpass.PassCards` and
    sweep as a recording's, so the cards are the ones it would have built. A file as the writer lays it out is
    swept in place (memory-mapped, :func:`in_place`); any other (a codec, 8-bit levels, a sharded run, older
    files whose pages sit at odd offsets, object storage) is first read in blocks of ``rows`` into a scratch copy
    laid out unit-major beside the cards, removed after."""
    act = Activation.from_name(name, run.units(name))
    cards = PassCards(act, run.n_tokens)
    mapped = in_place(run, name)
    if mapped is not None:
        cards.read_spill(*mapped)
        del mapped
        cards.finish(run.cache_dir.parent)
        return
    folder = run.cache_dir / "cards"
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f"{name}.{os.getpid()}-{threading.get_ident()}.tmp.f16"
    try:
        tiles = []
        with open(scratch, "wb") as f:
            for start in range(0, run.n_tokens, rows):
                x = run.activations(name, start=start, stop=start + rows, dtype=np.float16).view(np.uint16)
                tiles.append((start, len(x), f.tell() // 2, len(x)))
                f.write(np.ascontiguousarray(x.T).data)
        size = scratch.stat().st_size // 2
        values = np.memmap(scratch, np.uint16, "r", shape=(size,)) if size else np.zeros(0, np.uint16)
        cards.read_spill(values, np.array(tiles, np.int64).reshape(-1, 4))
        del values
        cards.finish(run.cache_dir.parent)
    finally:
        scratch.unlink(missing_ok=True)


def in_place(run: RunReader, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An activation's stored values as ``read_spill`` takes them, read where they lie: (the file memory-mapped as
    uint16 ``[size / 2]``, its row groups int64 ``[G, 4]``: first row, rows, element offset of unit 0's values,
    elements from one unit's to the next), when it is one local file every group of which is plain float16 pages
    at even offsets (:func:`~lstmviz.store.parquet_f16.plain_chunks`); else None."""
    files = expand(run.path, run.info(name)["file"])
    path = run.path / files[0] if len(files) == 1 else None
    if not isinstance(path, Path) or not path.stat().st_size:
        return None
    md = parquet_file(path).metadata
    data = np.memmap(path, np.uint8, "r")
    tiles, row0 = [], 0
    for g in range(md.num_row_groups):
        chunks = plain_chunks(md, g, data)
        R = md.row_group(g).num_rows
        if chunks is None or chunks[0] % 2 or chunks[1] % 2:
            return None
        tiles.append((row0, R, chunks[0] // 2, chunks[1] // 2))
        row0 += R
    return data[: len(data) // 2 * 2].view(np.uint16), np.array(tiles, np.int64).reshape(-1, 4)


class Cards:
    """The arrays of one cards file (names as in docs/FORMAT.md), read-only."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.a = dict(arrays)
        self.k, self.window = int(self.a["k"]), int(self.a["window"])

    def top(self, unit: int, sign: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions int64 ``[k]`` and values float32 ``[k]`` of the stored greedy top contexts of ``unit`` (sign
        +1 or −1), in rank order."""
        s = "top_pos" if sign > 0 else "top_neg"
        p = self.a[s][unit]
        return p[p >= 0], self.a[f"{s}_value"][unit][p >= 0]


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> Cards:
    with np.load(path) as z:
        return Cards({key: z[key] for key in z.files})


def top_contexts(
    run: RunReader, name: str, unit: int, k: int = 20, sign: int = 1, window: int = WINDOW, context: int = 10
) -> pd.DataFrame:
    """The greedy de-duplicated top ``k`` positions of one unit (see the module docstring), in rank order.

    Answered from the cards when ``k ≤`` the stored k and ``window`` is the stored window, else computed from
    the unit's column (one column read). Returns columns ``rank, idx, value, token, context``: ``context`` is the
    tokens ``[idx − context, idx]`` joined, the top token last.
    """
    (unit,) = unit_ids(unit, run.units(name), name)
    if sign not in (1, -1):
        raise RunError(f"sign is 1 (the most positive contexts) or -1 (the most negative), got {sign!r}")
    if not isinstance(k, int) or k < 1 or not isinstance(window, int) or window < 0:
        raise RunError(f"k must be a positive integer and window a non-negative one, got k={k!r}, window={window!r}")
    c = load_cards(run, name)
    if k <= c.k and window == c.window:
        idx, value = c.top(unit, sign)
        idx, value = idx[:k], value[:k]
    else:
        keys = sign * _cs.key(run.activations(name, [unit])[:, 0].astype(np.float16).view(np.uint16))
        pos = np.flatnonzero(np.abs(keys) <= 0x7C00)  # NaN is never a top context
        ck = _cs.card_keys(keys[pos], pos)
        m = candidates(k, window)
        top = ck if len(ck) <= m else np.partition(ck, len(ck) - m)[len(ck) - m :]
        picked, best = greedy(np.sort(top)[::-1][None], k, window)
        idx = picked[0][picked[0] >= 0]
        value = key_values(best[0][: len(idx)], sign)
    tokens = token_strings(run)
    return pd.DataFrame(
        {
            "rank": np.arange(len(idx)),
            "idx": idx,
            "value": value,
            "token": [tokens[i] for i in idx],
            "context": ["".join(tokens[max(0, i - context) : i + 1]) for i in idx],
        }
    )


def correlated_units(run: RunReader, name: str, unit: int, k: int = 10) -> pd.DataFrame:
    """The ``k`` units of the same activation most correlated with ``unit`` (Pearson r over the run,
    :func:`correlation_row`), by |r| descending, ties to the lower unit; columns ``unit, r``. The unit itself is
    left out."""
    (unit,) = unit_ids(unit, run.units(name), name)
    r = correlation_row(run, name, unit)
    others = np.delete(np.arange(len(r)), unit)
    strength = np.abs(r[others])
    order = others[np.lexsort((others, -np.nan_to_num(strength, nan=-1.0)))][:k]
    return pd.DataFrame({"unit": order, "r": r[order]})


def correlation_row(run: RunReader, name: str, unit: int) -> np.ndarray:
    """Pearson r float64 ``[U]`` of ``unit`` with every unit of activation ``name`` over the run's tokens; NaN
    for a constant unit or one with a non-finite value (and all NaN when ``unit`` is one).

    One streamed pass over the stored values, a row group at a time, each column a contiguous float16 run: with
    every unit v shifted by its first value s_v (y_v = x_v − s_v, which makes a constant unit's variance exactly
    0 and cancels less), r = (Σy_u·y_v − Σy_u·Σy_v / n) / √((Σy_u² − (Σy_u)²/n)(Σy_v² − (Σy_v)²/n)), every sum
    in float64. A row of the U × U matrix costs 2 flops per stored value where the matrix costs 2·U, so none is
    kept in the cards; the pass reads the whole activation (about 0.3 s of compiled work per 1M tokens × 512
    units, bench/cards.py), its row groups spread over the cores, and rows are cached per process.
    """
    (unit,) = unit_ids(unit, run.units(name), name)
    files = tuple(run.path / f for f in expand(run.path, run.info(name)["file"]))
    key = (files, tuple(f.stat().st_mtime_ns for f in files), name, int(unit))
    if key not in _ROWS:
        if len(_ROWS) >= 64:
            _ROWS.pop(next(iter(_ROWS)))
        _ROWS[key] = _correlation_row(run, name, int(unit))
    return _ROWS[key]


_ROWS: dict[tuple, np.ndarray] = {}


def _correlation_row(run: RunReader, name: str, unit: int) -> np.ndarray:
    n, U = run.n_tokens, run.units(name)
    groups = value_runs(run, name)
    first = next(groups, None)
    if n < 2 or first is None:
        return np.full(U, np.nan)
    shift = _first_values(first[2], U)  # shifted sums cancel less
    groups = itertools.chain([first], groups)
    del first  # group 0 is held by the chain until summed, no longer
    sums = np.zeros((U, 3))
    for part in _in_threads(functools.partial(_group_sums, unit=unit, shift=shift), groups):
        sums += part  # in corpus order, whatever thread summed the group: the row is the same on every call
    dot, s, ss = sums.T
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # a non-finite unit's sums
        var = ss - s * s / n
        r = (dot - s[unit] * s / n) / np.sqrt(var[unit] * var)
    r[~np.isfinite(ss) | (var <= 0)] = np.nan
    if not np.isfinite(ss[unit]) or var[unit] <= 0:
        r[:] = np.nan
    return np.clip(r, -1, 1)


def _first_values(runs: list, U: int) -> np.ndarray:
    """Each unit's first value in a :func:`value_runs` group's runs, float64 ``[U]`` (a non-finite one as 0)."""
    first = np.zeros(U)
    for flat, starts, units in runs:
        v = _cs.LUT[flat[starts]].astype(np.float64)
        first[units] = np.where(np.isfinite(v), v, 0.0)
    return first


def _group_sums(group: tuple[int, int, list], unit: int, shift: np.ndarray) -> np.ndarray:
    """One row group's sums float64 ``[U, 3]`` (Σ y_u·y_v, Σ y_v, Σ y_v²) of a :func:`value_runs` group."""
    _, R, runs = group
    own = next((r for r in runs if (r[2] == unit).any()), None)
    if own is None:
        raise RunError(f"unit {unit} is not among the {sum(len(r[2]) for r in runs)} units of a row group")
    flat, starts, units = own
    at = starts[np.flatnonzero(units == unit)[0]]
    a = _cs.LUT[flat[at : at + R]].astype(np.float64) - shift[unit]  # the unit's own values in this group
    out = np.zeros((len(shift), 3))
    for flat, starts, units in runs:
        block_sums(a, flat, starts, units, _cs.LUT, shift, out)
    return out


def _in_threads(fn: Callable, items: Iterator) -> Iterator:
    """``map(fn, items)`` in order, on up to :data:`THREADS` threads (fn releases the GIL), reading one item ahead
    of them: a row group's work is compiled code over memory-mapped pages, so threads overlap both. Stopping early
    waits for the items running and starts no other."""
    if THREADS < 2:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(THREADS)
    try:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def value_runs(run: RunReader, name: str) -> Iterator[tuple[int, int, list]]:
    """The stored values of an activation, one row group at a time: (first row, rows R, runs), where runs is a
    list of (flat uint16 ``[·]``, starts int64 ``[k]``, units int64 ``[k]``): unit ``units[i]``'s float16 bit
    patterns are ``flat[starts[i] : starts[i] + R]``. A local file as :mod:`~lstmviz.store.parquet_f16` writes it
    (each column chunk one plain page, at a fixed stride: :func:`~lstmviz.store.parquet_f16.plain_chunks`) is
    memory-mapped and read in place, its pages' values at even and at odd byte offsets in two views; any other
    file (a codec, 8-bit levels, object storage) is decoded by pyarrow."""
    row0 = 0
    for path in (run.path / f for f in expand(run.path, run.info(name)["file"])):
        pf = parquet_file(path)
        md = pf.metadata
        mapped = np.memmap(path, np.uint8, "r") if isinstance(path, Path) and path.stat().st_size else None
        for g in range(md.num_row_groups):
            R = md.row_group(g).num_rows
            runs = _mapped_runs(mapped, md, g) if mapped is not None else None
            if runs is None:
                table = pf.read_row_groups([g])
                U = table.num_columns
                flat = np.concatenate([_bits(c) for c in table.columns]) if U else np.empty(0, np.uint16)
                runs = [(flat, np.arange(U, dtype=np.int64) * R, np.arange(U, dtype=np.int64))]
            yield row0, R, runs
            row0 += R


def _mapped_runs(mapped: np.ndarray, md: pq.FileMetaData, g: int) -> list | None:
    """Row group g of a memory-mapped activation file as :func:`value_runs`' runs, or None when the group is not
    laid out as parquet_f16 writes it."""
    chunks = plain_chunks(md, g, mapped)
    if chunks is None:
        return None
    at = chunks[0] + np.arange(md.row_group(g).num_columns, dtype=np.int64) * chunks[1]  # each unit's values
    runs = []
    for parity in (0, 1):
        units = np.flatnonzero(at % 2 == parity)
        if len(units):
            flat = mapped[parity : parity + 2 * ((len(mapped) - parity) // 2)].view(np.uint16)
            runs.append((flat, (at[units] - parity) // 2, units))
    return runs


def _bits(column: pa.ChunkedArray) -> np.ndarray:
    """The uint16 bit patterns of a float16 column (8-bit levels decoded to their values)."""
    return np.ascontiguousarray(column.to_numpy(), np.float16).view(np.uint16)


def token_strings(run: RunReader) -> list[str]:
    """The run's display tokens, read once per run (the column alone, not the whole tokens table); a sharded
    run's come from its parts in order."""
    files = tuple(run.path / f for f in expand(run.path, tokens_file(run.manifest)))
    return _tokens(files, tuple(f.stat().st_mtime_ns for f in files))


@functools.lru_cache(maxsize=4)
def _tokens(files: tuple[AnyPath, ...], mtimes_ns: tuple[int, ...]) -> list[str]:
    return [t for f in files for t in read_table(f, columns=["token"]).column("token").to_pylist()]
