"""The run directory: written atomically, opened lazily. docs/FORMAT.md is the specification.

A run is a folder of plain parquet files plus ``manifest.json``::

    <run>/manifest.json           what is here; "complete": true is written last
    <run>/tokens.parquet          one row per token, in corpus order
    <run>/acts/<name>.parquet     one file per activation, wide float16 columns u0000…, same rows as tokens
    <run>/stats.parquet           per activation, per unit: count, mean, std, min, max, saturation, histogram
    <run>/cache/                  derived data, safe to delete

:class:`RunWriter` fills ``<run>.partial/`` and renames it to ``<run>`` only when every file is written, so an
interrupted recording never looks complete, and writing again simply starts over.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import chunkstats as _cs
from . import names as _names
from .errors import RunError
from .layout import SCHEMA_VERSION, TOKEN_COLUMNS, unit_columns
from .outputs import Output, write_json_atomically
from .parquet_f16 import F16ParquetWriter

__all__ = ["SCHEMA_VERSION", "TOKEN_COLUMNS", "Activation", "Run", "RunError", "RunWriter", "open_run", "unit_columns"]

ROW_GROUP = 16384
LOW, HIGH = 0.1, 0.9
HIST_BINS = 32
_PARQUET_OPTS = dict(use_dictionary=False, write_statistics=False)
_THRESHOLD_KEYS = _cs.threshold_keys(LOW, HIGH)
# Per kind, by measurement (bench/e2e.py's codec lines). Uncompressed is the fastest to encode, and encoding is
# what the end of a recording waits for: lz4 saves ~18 % on sigmoid gates and nothing on g, c, h for ~1.6× the
# encoding time, zstd ~40 % on gates and ~12 % on g, c, h for ~2×. A kind listed here ("lz4", "zstd") trades
# that time for its bytes; none is listed.
COMPRESSION: dict[str, str] = {}
WRITE_ROWS = 4096  # RunWriter.write handles its rows this many at a time (bounded scratch however long the run)


@dataclass(frozen=True)
class Activation:
    """One entry of the manifest's activation list."""

    name: str
    module: str
    layer: int
    dir: str
    kind: str
    units: int
    dtype: str = "float16"

    @property
    def file(self) -> str:
        return f"acts/{self.name}.parquet"

    def to_json(self) -> dict:
        return {**self.__dict__, "file": self.file}

    @classmethod
    def from_name(cls, name: str, units: int) -> Activation:
        n = _names.parse(name)
        return cls(name, n.module, n.layer, n.dir, n.kind + ("_grad" if n.grad else ""), units)


def _hist_range(kind: str, first: np.ndarray) -> tuple[float, float]:
    """Histogram range: the kind's bounds for bounded kinds, else ±1.5·max|x| of the first finite values seen."""
    if kind in _names.SIGMOID_KINDS:
        return 0.0, 1.0
    finite = first[np.isfinite(first)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    if kind in _names.TANH_KINDS or bound <= 1.0:
        return -1.0, 1.0
    return -1.5 * bound, 1.5 * bound


class _Stats:
    """Per-unit streaming aggregates of one activation, over the float16 values as stored.

    NaN and ±inf are counted (n_nan, n_inf) and left out of the moments, min, max and histogram; n_low / n_high
    compare every non-NaN value, as ``x < low`` over the stored values does. One compiled pass per chunk
    (:func:`lstmviz.chunkstats.chunk_pass`), which also lays the chunk out unit-major for the spill.
    """

    def __init__(self, act: Activation):
        u = act.units
        self.act = act
        self.count = 0
        self.acc = np.zeros((2, u))  # sum, sumsq of the finite values
        self.cnt = np.zeros((6, u), np.int64)  # n_low, n_high, n_nan, n_inf, min key, max key
        self.cnt[4], self.cnt[5] = _cs.NO_KEY, -_cs.NO_KEY
        self.hist = np.zeros((u, 4, HIST_BINS + 1), np.int64)
        self.range: tuple[float, float] | None = None

    def update(self, bits: np.ndarray, counts: np.ndarray, tiles: np.ndarray) -> None:
        """bits: float16 bit patterns uint16 ``[B, T, units]``, rows ``[0, counts[b])`` of stream b valid.

        Writes each stream's valid rows unit-major into ``tiles[b, :units·counts[b]]`` (uint16 ``[B, ≥units·T]``).
        """
        if self.range is None:
            valid = np.arange(bits.shape[1])[None, :] < counts[:, None]
            self.range = _hist_range(self.act.kind, _cs.LUT[bits[valid]])
        lo, hi = self.range
        _cs.chunk_pass(bits, counts, *_THRESHOLD_KEYS, lo, HIST_BINS / (hi - lo), tiles, self.acc, self.cnt, self.hist)
        self.count += int(counts.sum())

    def frame(self) -> pd.DataFrame:
        n_nan, n_inf = self.cnt[2], self.cnt[3]
        finite = self.count - n_nan - n_inf
        n = np.maximum(finite, 1)
        mean = self.acc[0] / n
        var = np.maximum(self.acc[1] / n - mean**2, 0.0)
        none = finite == 0
        lo, hi = self.range or (0.0, 1.0)
        return pd.DataFrame(
            {
                "name": self.act.name,
                "unit": np.arange(self.act.units, dtype=np.int32),
                "count": np.full(self.act.units, self.count, np.int64),
                "mean": np.where(none, np.nan, mean),
                "std": np.where(none, np.nan, np.sqrt(var)),
                "min": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.cnt[4])].astype(np.float64)),
                "max": np.where(none, np.nan, _cs.LUT[_cs.key_bits(self.cnt[5])].astype(np.float64)),
                "n_low": self.cnt[0],
                "n_high": self.cnt[1],
                "n_nan": n_nan,
                "n_inf": n_inf,
                "hist": list(self.hist[:, :, :HIST_BINS].sum(1)),
                "hist_lo": lo,
                "hist_hi": hi,
            }
        )


class Observer(Protocol):
    """Derived data built in the recording's own pass (e.g. a match index), one observer per activation.

    ``update`` receives every row of the activation exactly once, as stored (float16 ``[n, units]`` rows
    ``[start, start + n)``; ``np.float32(values)`` equals what :meth:`Run.activations` returns), in any row order
    (a stateful recording interleaves its streams); calls for one activation never run concurrently, and the
    array is only valid during the call (copy what you keep). ``finish`` runs once, after every update and after
    the activation files are written, with the run's (still partial) directory; write under ``run_dir / "cache"``.
    Its dict is merged into the activation's manifest entry, so keys must be JSON-serialisable and should not
    collide with the entry's own (name, units, …).
    """

    def update(self, start: int, values: np.ndarray) -> None: ...

    def finish(self, run_dir: Path) -> dict: ...


class RunWriter:
    """Writes a run directory. Activations may arrive in any row order; rows are stored in corpus order.

    Each chunk passes once through a compiled kernel that counts its stats and lays its rows out unit-major;
    the tiles are appended to raw float16 files under ``<run>.partial/spill/`` (so memory stays flat however
    long the corpus is) and :meth:`close` assembles them into parquet in 16k-row groups. :meth:`submit_blocks`
    does a chunk's work on the writer's own thread, overlapping the caller's next forward.

    ``hist_ranges`` (name → (lo, hi)) fixes the stats histograms' ranges, which otherwise come from the first
    chunk (the shards of a run share the run's, so that their histograms add up).

    ``observers``, when given, is called once per activation and returns the :class:`Observer` s that see that
    activation's values as they are stored and are finished before the manifest is written (their dicts are
    merged into the activation's manifest entry). Derived data built this way costs no second pass over the run.

    Usage::

        with RunWriter(out, tokens, activations, manifest) as w:
            w.write(name, start, values)        # values: float [n, units] for rows [start, start+n)
        # on a clean exit the run is complete and renamed into place; on an exception nothing looks complete
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        tokens: pd.DataFrame,
        activations: Sequence[Activation],
        manifest: Mapping | None = None,
        *,
        overwrite: bool = False,
        observers: Callable[[Activation], Iterable[Observer]] | None = None,
        hist_ranges: Mapping[str, tuple[float, float]] | None = None,
    ):
        self.out = Path(out_dir)
        missing = [c for c in TOKEN_COLUMNS if c not in tokens.columns]
        if missing:
            raise RunError(f"tokens table lacks columns {missing}")
        if len(tokens) == 0:  # refused here, before anything exists, as open_run refuses such a run
            raise RunError("a run needs at least one token; this one has none (is the corpus empty?)")
        # refuses what lstmviz did not write; starts over from an interrupted recording's <run>.partial
        self._output = Output(self.out, "run", overwrite, name="output directory")
        self.partial = self._output.partial
        self.tokens = tokens.reset_index(drop=True)
        self.n = len(self.tokens)
        self.acts = {a.name: a for a in activations}
        self.manifest = dict(manifest or {})
        self.stats = {a.name: _Stats(a) for a in activations}
        for name, bounds in (hist_ranges or {}).items():  # the shards of one run bin over the run's ranges
            if name in self.stats:
                self.stats[name].range = (float(bounds[0]), float(bounds[1]))
        self.observers = {a.name: list(observers(a)) if observers else [] for a in activations}
        self._spill = {}
        self._tiles: dict[str, list[tuple[int, int, int]]] = {a.name: [] for a in activations}  # (row, rows, offset)
        self._scratch = np.empty(0, np.uint16)
        self._lock = threading.Lock()  # one chunk at a time: observers and the spills see whole chunks in turn
        self._thread: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        try:
            (self.partial / "acts").mkdir()
            (self.partial / "spill").mkdir()
            for a in activations:
                self._spill[a.name] = open(self.partial / "spill" / f"{a.name}.f16", "wb")  # noqa: SIM115
        except BaseException:  # the spills are closed in close() or abort()
            self.abort()
            raise
        self.columns: dict[str, np.ndarray] = {}

    def write(self, name: str, start: int, values: np.ndarray) -> None:
        """Store rows ``[start, start + len(values))`` of activation ``name``; values: float ``[n, units]``."""
        act = self.acts[name]
        if values.ndim != 2 or values.shape[1] != act.units:
            raise ValueError(f"{name}: expected [n, {act.units}] values, got {list(values.shape)}")
        if start < 0 or start + len(values) > self.n:
            raise ValueError(f"{name}: rows [{start}, {start + len(values)}) outside [0, {self.n})")
        for k in range(0, len(values), WRITE_ROWS):
            with np.errstate(over="ignore"):  # beyond float16's range is stored as ±inf, and counted so
                half = np.ascontiguousarray(values[k : k + WRITE_ROWS], dtype=np.float16)
            self._store(name, np.array([start + k]), half[None], np.array([len(half)]))

    def write_blocks(self, name: str, starts: np.ndarray, values: np.ndarray, counts: np.ndarray) -> None:
        """Store ``values[b, :counts[b]]`` at rows ``starts[b]…`` for each b. values: float ``[B, T, units]``."""
        with np.errstate(over="ignore"):
            half = np.ascontiguousarray(values, dtype=np.float16)
        self._store(name, np.asarray(starts, np.int64), half, np.asarray(counts, np.int64))

    def submit_blocks(
        self, name: str, starts: np.ndarray, values: np.ndarray, counts: np.ndarray, ready: object = None
    ) -> Future:
        """:meth:`write_blocks` on the writer's own thread, so it overlaps what the caller computes next.

        values: float16 ``[B, T, units]``, C-contiguous; the caller must leave it unchanged until the returned
        future is done. ``ready``, if given (e.g. a ``torch.cuda.Event`` after an asynchronous copy into
        ``values``), is synchronised on the thread first. Errors surface from the future, from later calls, and
        from :meth:`close`. The compiled stats pass and the file writes release the GIL.
        """
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmviz-writer")
        starts, counts = np.array(starts, np.int64), np.array(counts, np.int64)

        def job() -> None:
            if ready is not None:
                ready.synchronize()
            self._store(name, starts, values, counts)

        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        future = self._thread.submit(job)
        self._pending.append(future)
        return future

    def flush(self) -> None:
        """Wait for every submitted chunk; raises the first error one of them hit."""
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def _store(self, name: str, starts: np.ndarray, half: np.ndarray, counts: np.ndarray) -> None:
        """Stats, observers and the spill for one chunk: half float16 ``[B, T, units]``, starts / counts ``[B]``."""
        act = self.acts[name]
        B, T, U = half.shape
        if act.units != U:
            raise ValueError(f"{name}: expected [B, T, {act.units}] values, got {list(half.shape)}")
        counts = np.clip(counts, 0, T)
        used = counts > 0
        if ((starts[used] < 0) | (starts[used] + counts[used] > self.n)).any():
            raise ValueError(f"{name}: rows outside [0, {self.n})")
        with self._lock:
            if self._scratch.size < B * U * T:
                self._scratch = np.empty(B * U * T, np.uint16)
            tiles = self._scratch[: B * U * T].reshape(B, U * T)
            self.stats[name].update(half.view(np.uint16), counts, tiles)
            for obs in self.observers[name]:
                for b in range(B):
                    if counts[b]:
                        obs.update(int(starts[b]), half[b, : counts[b]])
            f = self._spill[name]
            index = self._tiles[name]
            for b in range(B):
                c = int(counts[b])
                if c:
                    index.append((int(starts[b]), c, f.tell()))
                    f.write(tiles[b, : U * c].data)

    def set_column(self, column: str, start: int, values: np.ndarray) -> None:
        """Fill rows of an extra token column (e.g. ``loss``); values: ``[n]`` or ``[n, k]``."""
        values = np.asarray(values)
        if column not in self.columns:
            self.columns[column] = np.zeros((self.n, *values.shape[1:]), values.dtype)
        self.columns[column][start : start + len(values)] = values

    def close(self) -> Path:
        """Convert spills to parquet, write tokens, stats and the manifest, rename into place, and only then
        mark the manifest complete (see :mod:`lstmviz.outputs`).

        If anything fails, the partial directory is removed and an existing run at the output is left as it was.
        """
        try:
            manifest = self._finish()
            self._output.publish(finish=lambda run: write_json_atomically(run / "manifest.json", manifest))
        except BaseException:
            self.abort()
            raise
        return self.out

    def _finish(self) -> dict:
        """Write everything into the partial directory, the manifest last but not yet marked complete; returns
        the complete manifest."""
        self._drain()
        for f in self._spill.values():
            f.close()

        def convert(act: Activation) -> None:
            spill = self.partial / "spill" / f"{act.name}.f16"
            _spill_to_parquet(spill, self._tiles[act.name], self.partial / act.file, self.n, act.units, act.kind)
            spill.unlink()

        # The copies and pyarrow's encoding run without the GIL, so files convert in parallel.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(convert, self.acts.values()))
        (self.partial / "spill").rmdir()
        derived = {name: {} for name in self.acts}
        for name, observers in self.observers.items():
            for obs in observers:
                derived[name].update(obs.finish(self.partial))
        tokens = self.tokens.copy()
        for column, values in self.columns.items():
            tokens[column] = list(values) if values.ndim > 1 else values
        pq.write_table(pa.Table.from_pandas(tokens, preserve_index=False), self.partial / "tokens.parquet")
        stats = [s.frame() for s in self.stats.values()]
        if stats:
            pq.write_table(
                pa.Table.from_pandas(pd.concat(stats, ignore_index=True), preserve_index=False),
                self.partial / "stats.parquet",
            )
        from . import __version__

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "lstmviz_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **self.manifest,
            "n_tokens": self.n,
            "activations": [{**a.to_json(), **derived[a.name]} for a in self.acts.values()],
            "stats": {"file": "stats.parquet", "low": LOW, "high": HIGH, "hist_bins": HIST_BINS},
            "complete": False,
        }
        (self.partial / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        return {**manifest, "complete": True}

    def _drain(self) -> None:
        """Let submitted chunks finish (raising the first error), then stop the writer thread."""
        try:
            self.flush()
        finally:
            if self._thread is not None:
                self._thread.shutdown(wait=True, cancel_futures=True)
                self._thread = None

    def abort(self) -> None:
        """Remove the partial directory (and the parent directories it created)."""
        with contextlib.suppress(BaseException):
            self._drain()  # the error that brought us here is the one to report
        for f in self._spill.values():
            f.close()
        self._output.discard()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _spill_to_parquet(
    spill: Path, tiles: Sequence[tuple[int, int, int]], dest: Path, n: int, units: int, kind: str
) -> None:
    """Unit-major float16 tiles → wide parquet with ROW_GROUP-row groups.

    tiles: (first row, rows, byte offset in ``spill``) of each tile ``[units, rows]``; rows no tile covers are 0.
    Each row group is assembled unit-major (contiguous runs per tile) and handed to pyarrow without a copy.
    """
    index = np.array(sorted(tiles), np.int64).reshape(-1, 3)
    first, rows, offsets = index.T
    end = first + rows
    block = np.empty(units * ROW_GROUP, np.float16)
    codec = COMPRESSION.get(kind, "none")
    names = unit_columns(units)
    with _group_writer(dest, names, codec) as write, open(spill, "rb") as f:
        fd = f.fileno()
        for r0 in range(0, max(n, 1), ROW_GROUP):
            r1 = min(r0 + ROW_GROUP, n)
            R = r1 - r0
            group = block[: units * R].reshape(units, R)  # [units, R]
            lo, hi = np.searchsorted(end, r0, "right"), np.searchsorted(first, r1, "left")
            if (np.minimum(end[lo:hi], r1) - np.maximum(first[lo:hi], r0)).sum() < R:
                group[:] = 0
            for i in range(lo, hi):
                a, b = max(first[i], r0), min(end[i], r1)
                tile = np.frombuffer(os.pread(fd, int(units * rows[i] * 2), int(offsets[i])), np.float16)
                group[:, a - r0 : b - r0] = tile.reshape(units, rows[i])[:, a - first[i] : b - first[i]]
            write(group)


@contextlib.contextmanager
def _group_writer(dest: Path, names: Sequence[str], codec: str) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that writes one row group, float16 ``[units, rows]``, into the parquet file ``dest``.

    Uncompressed files are written page by page by :mod:`lstmviz.parquet_f16` (the same file pyarrow writes,
    without its per-value encoding pass); a codec goes through pyarrow.
    """
    if codec == "none":
        with F16ParquetWriter(dest, names) as w:
            yield w.write_group
        return
    schema = pa.schema([(c, pa.float16()) for c in names])
    with pq.ParquetWriter(dest, schema, **{**_PARQUET_OPTS, "compression": codec}) as writer:

        def write(group: np.ndarray) -> None:
            R = group.shape[1]
            cols = [pa.Array.from_buffers(pa.float16(), R, [None, pa.py_buffer(group[u])]) for u in range(len(names))]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=ROW_GROUP)

        yield write


def write_run(
    out_dir: str | os.PathLike,
    tokens: pd.DataFrame | Sequence[str],
    acts: Mapping[str, np.ndarray],
    manifest: Mapping | None = None,
    *,
    overwrite: bool = False,
    observers: Callable[[Activation], Iterable[Observer]] | None = None,
) -> Path:
    """Write a complete run from in-memory arrays (tests, importers). acts: name → ``[tokens, units]``.

    ``tokens`` is a table with at least :data:`TOKEN_COLUMNS` plus any annotation columns, or a plain list of
    display strings (one document, ids 0…).
    """
    if not isinstance(tokens, pd.DataFrame):
        tokens = tokens_frame(list(tokens))
    activations = [Activation.from_name(name, a.shape[1]) for name, a in acts.items()]
    with RunWriter(out_dir, tokens, activations, manifest, overwrite=overwrite, observers=observers) as w:
        for name, a in acts.items():
            w.write(name, 0, a)
    return Path(out_dir)


def tokens_frame(
    display: Sequence[str], token_ids: Iterable[int] | None = None, docs: Iterable[int] | None = None
) -> pd.DataFrame:
    """The base tokens table: ``idx, doc, pos, token_id, token`` for tokens in corpus order."""
    n = len(display)
    doc = np.zeros(n, np.int32) if docs is None else np.asarray(list(docs), np.int32)
    starts = np.r_[0, np.flatnonzero(np.diff(doc)) + 1] if n else np.zeros(0, np.int64)
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) if n else np.zeros(0, np.int64)
    ids = np.arange(n) if token_ids is None else np.asarray(list(token_ids))
    return pd.DataFrame(
        {
            "idx": np.arange(n, dtype=np.int64),
            "doc": doc,
            "pos": pos.astype(np.int32),
            "token_id": ids.astype(np.int32),
            "token": pd.array(list(display), dtype="string"),
        }
    )


class Run:
    """A recorded run, opened lazily. Use :func:`open_run`, which checks it first."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self._acts = {a["name"]: a for a in manifest["activations"]}
        self._files: dict[str, pq.ParquetFile] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, tokens={self.n_tokens}, activations={len(self.names)})"

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

    def top_contexts(self, name: str, unit: int, k: int = 20, sign: int = 1, window: int = 10) -> pd.DataFrame:
        """The unit's greedy de-duplicated top-k contexts: ``rank, idx, value, token, context`` (see
        :func:`lstmviz.cards.top_contexts`)."""
        from .cards import top_contexts

        return top_contexts(self, name, unit, k=k, sign=sign, window=window)

    def correlated_units(self, name: str, unit: int, k: int = 10) -> pd.DataFrame:
        """The k units of ``name`` most correlated with ``unit``: ``unit, r`` by |r| (see
        :func:`lstmviz.cards.correlated_units`)."""
        from .cards import correlated_units

        return correlated_units(self, name, unit, k=k)

    @cached_property
    def tokens(self) -> pd.DataFrame:
        """One row per token: idx, doc, pos, token_id, token, then annotation and prediction columns."""
        from .shards import tokens_file

        return self._read_table(tokens_file(self.manifest))

    @cached_property
    def stats(self) -> pd.DataFrame:
        """Per activation, per unit: count, mean, std, min, max, n_low, n_high, hist, hist_lo, hist_hi."""
        from .validate import stats_file

        file = stats_file(self.manifest)
        return self._read_table(file) if (self.path / file).exists() else pd.DataFrame()

    def _read_table(self, file: str) -> pd.DataFrame:
        """A whole parquet file (or a sharded run's parts of one) of the run; damage that its footer did not show
        is a RunError too."""
        from .shards import read_table

        try:
            return read_table(self.path, file)
        except (OSError, pa.ArrowException) as e:
            raise RunError(f"{self.path / file} is unreadable: {' '.join(str(e).split())}") from None

    @property
    def cache_dir(self) -> Path:
        """``<run>/cache``: derived data, created on demand, safe to delete."""
        d = self.path / "cache"
        d.mkdir(exist_ok=True)
        return d

    def _file(self, name: str) -> pq.ParquetFile:
        if name not in self._files:
            from .shards import open_parquet

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
    ) -> np.ndarray:
        """Values of ``name`` for tokens ``[start, stop)`` and the given units: float32 ``[tokens, len(units)]``.

        ``units`` is a sequence of unit ids in ``[0, units(name))``, in any order and possibly repeated (column
        ``j`` holds unit ``units[j]``, as numpy's ``full[:, units]``), a boolean mask of length ``units(name)``,
        one id, or None for all. Reads only the row groups that overlap the range and each requested column once.
        """
        from .validate import is_index, unit_ids

        n_units = self.units(name)
        for key, value in (("start", start), ("stop", stop)):
            if value is not None and not is_index(value):
                raise RunError(f"{key} must be an integer token position or None, got {value!r}")
        start, stop, _ = slice(start, stop).indices(self.n_tokens)
        stop = max(stop, start)
        units = np.arange(n_units) if units is None else unit_ids(units, n_units, name)
        out = np.empty((stop - start, len(units)), np.float32)
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
        for j, column in enumerate(table.columns):
            out[:, where == j] = column.slice(lo, hi - lo).to_numpy()[:, None]
        return out


def open_run(path: str | os.PathLike) -> Run:
    """Open a run directory. Raises :class:`RunError` (one line) for a missing, incomplete or corrupt run.

    Reads the manifest and the parquet footers of the files it lists (not their data) and checks that they agree:
    see :func:`lstmviz.validate.check_run`.
    """
    from .validate import check_run, check_version

    if not isinstance(path, str | os.PathLike) or isinstance(os.fspath(path), bytes):
        raise RunError(f"a run is opened by its path (a str or os.PathLike), got {path!r}")
    if not os.fspath(path):
        raise RunError("no run path given: pass the run's directory")
    if "\x00" in os.fspath(path):
        raise RunError(f"{os.fspath(path)!r} is not a usable path: it holds a NUL byte")
    p = Path(path)
    if not p.exists():
        raise RunError(f"no run at {p}: the directory does not exist")
    if not p.is_dir():
        raise RunError(f"{p} is a file, not a run directory")
    mf = p / "manifest.json"
    if not mf.exists():
        hint = " (an interrupted recording: record it again)" if p.name.endswith(".partial") else ""
        raise RunError(f"{p} is not a run: it has no manifest.json{hint}")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{mf} is corrupt: {e}") from None
    except OSError as e:
        raise RunError(f"{mf} is unreadable: {e.strerror or e}") from None
    if not isinstance(manifest, dict):
        raise RunError(f"{mf} is corrupt: it must hold a JSON object, not a {type(manifest).__name__}")
    if not manifest.get("complete"):
        raise RunError(f"{p} is an incomplete run (its manifest is not marked complete): record it again")
    if manifest["complete"] is not True:
        raise RunError(f"{p} is corrupt: manifest.json field complete must be true, got {manifest['complete']!r}")
    check_version(p, manifest)
    check_run(p, manifest)
    return Run(p, manifest)
