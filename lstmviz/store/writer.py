"""Writing a run: :class:`RunWriter` streams activations in any row order into ``<run>.partial/`` and renames it into
place only when every file is written (:mod:`lstmviz.outputs`), or, for a run on object storage, stages it locally
and uploads it with the manifest last (:mod:`lstmviz.location`); :func:`write_run` writes one from arrays."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import RunError
from ..layout import SCHEMA_VERSION, TOKEN_COLUMNS, unit_columns
from ..location import AnyPath, FsPath, RemoteOutput, resolve, write_manifest
from ..outputs import Output
from .format import Activation, Observer, tokens_frame
from .levels import INDEX, LEVELS, MAX_ERROR, eight_bit, level_bits, nan_error
from .parquet_f16 import F16ParquetWriter
from .stats import HIGH, HIST_BINS, LOW, Stats

ROW_GROUP = 16384
_PARQUET_OPTS = dict(use_dictionary=False, write_statistics=False)
# Per kind, by measurement (bench/e2e.py's codec lines). Uncompressed is the fastest to encode, and encoding is
# what the end of a recording waits for: lz4 saves ~18 % on sigmoid gates and nothing on g, c, h for ~1.6× the
# encoding time, zstd ~40 % on gates and ~12 % on g, c, h for ~2×. A kind listed here ("lz4", "zstd") trades
# that time for its bytes; none is listed.
COMPRESSION: dict[str, str] = {}
WRITE_ROWS = 4096  # RunWriter.write handles its rows this many at a time (bounded scratch however long the run)


class RunWriter:
    """Writes a run directory. Activations may arrive in any row order; rows are stored in corpus order.

    Each chunk passes once through a compiled kernel that counts its stats and lays its rows out unit-major;
    the tiles are appended to raw float16 files under ``<run>.partial/spill/`` (so memory stays flat however
    long the corpus is) and :meth:`close` assembles them into parquet in 16k-row groups. :meth:`submit_blocks`
    does a chunk's work on the writer's own thread, overlapping the caller's next forward.

    ``hist_ranges`` (name → (lo, hi)) fixes the stats histograms' ranges, which otherwise come from the first
    chunk (the shards of a run share the run's, so that their histograms add up).

    ``gates="8bit"`` stores the sigmoid gates (i, f, o, r, z) as 8-bit levels (:mod:`lstmviz.store.levels`):
    1 byte per value, within :data:`~lstmviz.store.levels.MAX_ERROR` of the exact value; their stats and
    observers see the stored level values.

    ``observers``, when given, is called once per activation and returns the :class:`Observer` s that see that
    activation's values as they are stored and are finished before the manifest is written (their dicts are
    merged into the activation's manifest entry). Derived data built this way costs no second pass over the run.
    An observer with ``row_group`` is given, instead of ``update``, the row groups as :meth:`close` assembles them
    (unit-major), after the whole spill if it ``needs_spill()`` (:class:`~lstmviz.store.Observer`).

    ``out_dir`` may be a URI (``s3://bucket/runs/x``) or an :class:`~lstmviz.location.FsPath`: the run is
    then staged in a local directory as a local one is written, and uploaded when closed, its manifest last
    (:class:`~lstmviz.location.RemoteOutput`); an existing run there is refused, even with ``overwrite``.

    Usage::

        with RunWriter(out, tokens, activations, manifest) as w:
            w.write(name, start, values)        # values: float [n, units] for rows [start, start+n)
        # on a clean exit the run is complete and renamed into place; on an exception nothing looks complete
    """

    def __init__(
        self,
        out_dir: str | os.PathLike | FsPath,
        tokens: pd.DataFrame,
        activations: Sequence[Activation],
        manifest: Mapping | None = None,
        *,
        overwrite: bool = False,
        observers: Callable[[Activation], Iterable[Observer]] | None = None,
        hist_ranges: Mapping[str, tuple[float, float]] | None = None,
        gates: str = "float16",
    ):
        self.out: AnyPath = resolve(out_dir)
        self.eight = {a.name for a in activations if eight_bit(a.kind, gates)}  # names stored as 8-bit levels
        missing = [c for c in TOKEN_COLUMNS if c not in tokens.columns]
        if missing:
            raise RunError(f"tokens table lacks columns {missing}")
        if len(tokens) == 0:  # refused here, before anything exists, as open_run refuses such a run
            raise RunError("a run needs at least one token; this one has none (is the corpus empty?)")
        # refuses what lstmviz did not write; starts over from an interrupted recording's <run>.partial
        if isinstance(self.out, FsPath):
            self._output: Output | RemoteOutput = RemoteOutput(self.out, name="output directory")
        else:
            self._output = Output(self.out, "run", overwrite, name="output directory")
        self.partial = self._output.partial
        self.tokens = tokens.reset_index(drop=True)
        self.n = len(self.tokens)
        self.acts = {a.name: a for a in activations}
        self.manifest = dict(manifest or {})
        self.stats = {a.name: Stats(a) for a in activations}
        for name, bounds in (hist_ranges or {}).items():  # the shards of one run bin over the run's ranges
            if name in self.stats:
                self.stats[name].range = (float(bounds[0]), float(bounds[1]))
        self.observers = {a.name: list(observers(a)) if observers else [] for a in activations}
        # an observer's overview_state (BinSums) is fed by the stats pass itself, values in cache, not by ``update``
        binned = {n: next((o for o in obs if hasattr(o, "overview_state")), None) for n, obs in self.observers.items()}
        self._bin_sums = {n: getattr(o, "overview_state", None) for n, o in binned.items()}
        # an observer with ``row_group`` is given the row groups as the spill becomes parquet, instead of ``update``,
        # and one with ``read_spill`` alone only the whole spill
        self._row_obs = {n: [o for o in obs if _by_groups(o)] for n, obs in self.observers.items()}
        self._updates = {n: [o for o in obs if _by_rows(o) and o is not binned[n]] for n, obs in self.observers.items()}
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
            half = self._stored(name, values[k : k + WRITE_ROWS])
            self._store(name, np.array([start + k]), half[None], np.array([len(half)]))

    def write_blocks(self, name: str, starts: np.ndarray, values: np.ndarray, counts: np.ndarray) -> None:
        """Store ``values[b, :counts[b]]`` at rows ``starts[b]…`` for each b. values: float ``[B, T, units]``."""
        self._store(name, np.asarray(starts, np.int64), self._stored(name, values), np.asarray(counts, np.int64))

    def _stored(self, name: str, values: np.ndarray) -> np.ndarray:
        """The float16 values as stored (C-contiguous): 8-bit levels for an 8-bit gate, else float16."""
        if name in self.eight:
            return level_bits(name, values)
        with np.errstate(over="ignore"):  # beyond float16's range is stored as ±inf, and counted so
            return np.ascontiguousarray(values, dtype=np.float16)

    def submit_blocks(
        self,
        name: str,
        starts: np.ndarray,
        values: np.ndarray,
        counts: np.ndarray,
        ready: object = None,
        nan: object = None,
    ) -> Future:
        """:meth:`write_blocks` on the writer's own thread, so it overlaps what the caller computes next.

        values: float16 ``[B, T, units]``, C-contiguous (for an 8-bit gate: its uint8 level indices, with
        ``nan`` a boolean, e.g. a one-element tensor, true if the exact values had a NaN); the caller must leave
        it unchanged until the returned future is done. ``ready``, if given (e.g. a ``torch.cuda.Event`` after an
        asynchronous copy into ``values``), is synchronised on the thread first. Errors surface from the future,
        from later calls, and from :meth:`close`. The compiled stats pass and the file writes release the GIL.
        """
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmviz-writer")
        starts, counts = np.array(starts, np.int64), np.array(counts, np.int64)
        if (name in self.eight) != (values.dtype == np.uint8):
            want = "uint8 level indices" if name in self.eight else "float16 values"
            raise ValueError(f"{name}: expected {want}, got {values.dtype}")

        def job() -> None:
            if ready is not None:
                ready.synchronize()
            if nan is not None and bool(nan):
                raise nan_error(name)
            self._store(name, starts, LEVELS[values] if values.dtype == np.uint8 else values, counts)

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
            self.stats[name].update(half.view(np.uint16), counts, tiles, starts, self._bin_sums[name])
            for obs in self._updates[name]:
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

    def close(self) -> AnyPath:
        """Convert spills to parquet, write tokens, stats and the manifest, rename into place, and only then
        mark the manifest complete (see :mod:`lstmviz.outputs`).

        If anything fails, the partial directory is removed and an existing run at the output is left as it was.
        """
        try:
            manifest = self._finish()
            self._output.publish(finish=lambda run: write_manifest(run, manifest))
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
            eight = act.name in self.eight
            tiles, row_obs = self._tiles[act.name], self._row_obs[act.name]
            spill_obs = [o for o in self.observers[act.name] if getattr(o, "needs_spill", lambda: False)()]
            if spill_obs:
                _read_spill(spill, tiles, spill_obs)

            def on_group(start: int, group: np.ndarray) -> None:
                for o in row_obs:
                    o.row_group(self.partial, start, group)

            _spill_to_parquet(spill, tiles, self.partial / act.file, self.n, act.units, act.kind, eight, on_group)
            spill.unlink()

        def finish(name: str) -> dict:
            derived: dict = {}
            for obs in self.observers[name]:
                derived.update(obs.finish(self.partial))
            return derived

        # The copies, the page writes, pyarrow's codecs and the observers' compiled passes run without the GIL,
        # so files convert, and then observers finish, in parallel (a recording waits for all of it).
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(convert, self.acts.values()))
            (self.partial / "spill").rmdir()
            derived = dict(zip(self.acts, pool.map(finish, self.acts), strict=True))
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
        from .. import __version__

        manifest = {
            "schema_version": SCHEMA_VERSION,
            "lstmviz_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **self.manifest,
            "n_tokens": self.n,
            "activations": [{**a.to_json(), **derived[a.name], **self._quantized(a.name)} for a in self.acts.values()],
            "stats": {"file": "stats.parquet", "low": LOW, "high": HIGH, "hist_bins": HIST_BINS},
            "complete": False,
        }
        (self.partial / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
        return {**manifest, "complete": True}

    def _quantized(self, name: str) -> dict:
        """The manifest entry's ``quantized`` key of an 8-bit gate (docs/FORMAT.md); nothing for float16."""
        return {"quantized": {"levels": len(LEVELS), "max_abs_error": MAX_ERROR}} if name in self.eight else {}

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
    spill: Path,
    tiles: Sequence[tuple[int, int, int]],
    dest: Path,
    n: int,
    units: int,
    kind: str,
    eight: bool,
    on_group: Callable[[int, np.ndarray], None] | None = None,
) -> None:
    """Unit-major float16 tiles → wide parquet with ROW_GROUP-row groups (``eight``: 8-bit levels, whose float16
    values the tiles hold, as a dictionary-encoded file).

    tiles: (first row, rows, byte offset in ``spill``) of each tile ``[units, rows]``; rows no tile covers are 0.
    Each row group is assembled unit-major (contiguous runs per tile), given to ``on_group(first row, group)`` as
    float16 patterns uint16 ``[units, R]`` (the values as stored), and handed to the file writer.
    """
    index = np.array(sorted(tiles), np.int64).reshape(-1, 3)
    first, rows, offsets = index.T
    end = first + rows
    block = np.empty(units * ROW_GROUP, np.float16)
    scratch = np.empty(units * int(rows.max(initial=0)), np.float16)  # one tile, reused: no allocation per tile
    codec = "levels" if eight else COMPRESSION.get(kind, "none")
    indices = np.empty(units * ROW_GROUP, np.uint8) if eight else None
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
                tile = scratch[: units * rows[i]]
                _pread_into(fd, tile, int(offsets[i]))
                group[:, a - r0 : b - r0] = tile.reshape(units, rows[i])[:, a - first[i] : b - first[i]]
            if on_group is not None:
                on_group(r0, group.view(np.uint16))
            if indices is not None:
                group = np.take(INDEX, group.view(np.uint16), out=indices[: units * R].reshape(units, R), mode="clip")
            write(group)


def _by_groups(observer: object) -> bool:
    """Whether an observer takes the row groups (``row_group``) rather than ``update``."""
    return callable(getattr(observer, "row_group", None))


def _by_rows(observer: object) -> bool:
    """Whether an observer takes each chunk's rows (``update``): unless it takes the row groups or the spill alone."""
    return not _by_groups(observer) and not callable(getattr(observer, "read_spill", None))


def _read_spill(spill: Path, tiles: Sequence[tuple[int, int, int]], observers: Sequence) -> None:
    """Give each observer's ``read_spill(values, tiles)`` the whole spill as read-only float16 patterns uint16 ``[n]``
    (memory-mapped) and its tiles int64 ``[k, 4]`` in corpus order (first row, rows c, element offset of unit 0's
    run, elements from one unit's run to the next: unit u's c values start at ``offset + u·stride``)."""
    index = np.array(sorted(tiles), np.int64).reshape(-1, 3)
    index[:, 2] //= 2
    index = np.column_stack([index, index[:, 1]])
    size = spill.stat().st_size // 2
    values = np.memmap(spill, np.uint16, "r", shape=(size,)) if size else np.zeros(0, np.uint16)
    for o in observers:
        o.read_spill(values, index)


def _pread_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` (C-contiguous) with the file's bytes from ``offset`` on."""
    view = memoryview(out).cast("B")
    while view.nbytes:
        n = os.preadv(fd, [view], offset)
        if n <= 0:
            raise RunError(f"a spill file ended early at byte {offset}")
        view, offset = view[n:], offset + n


@contextlib.contextmanager
def _group_writer(dest: Path, names: Sequence[str], codec: str) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that writes one row group, float16 ``[units, rows]``, into the parquet file ``dest``.

    Uncompressed files are written page by page by :mod:`lstmviz.store.parquet_f16` (the same file pyarrow writes,
    without its per-value encoding pass), and so are 8-bit gates (codec ``"levels"``: the group is uint8 level
    indices); a codec goes through pyarrow.
    """
    if codec in ("none", "levels"):
        with F16ParquetWriter(dest, names, LEVELS if codec == "levels" else None) as w:
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
    out_dir: str | os.PathLike | FsPath,
    tokens: pd.DataFrame | Sequence[str],
    acts: Mapping[str, np.ndarray],
    manifest: Mapping | None = None,
    *,
    overwrite: bool = False,
    observers: Callable[[Activation], Iterable[Observer]] | None = None,
    gates: str = "float16",
) -> AnyPath:
    """Write a complete run from in-memory arrays (tests, importers). acts: name → ``[tokens, units]``.

    ``tokens`` is a table with at least :data:`TOKEN_COLUMNS` plus any annotation columns, or a plain list of
    display strings (one document, ids 0…). ``gates``: as for :class:`RunWriter`.
    """
    if not isinstance(tokens, pd.DataFrame):
        tokens = tokens_frame(list(tokens))
    activations = [Activation.from_name(name, a.shape[1]) for name, a in acts.items()]
    with RunWriter(out_dir, tokens, activations, manifest, overwrite=overwrite, observers=observers, gates=gates) as w:
        for name, a in acts.items():
            w.write(name, 0, a)
    return w.out
