"""Writing a run: :class:`RunWriter` streams activations in any row order into ``<run>.partial/`` (each value copied
once, to its place in the final parquet file) and renames it into place only when every file is written
(:mod:`lstmviz.outputs`), or, for a run on object storage, stages it locally and uploads it with the manifest
last (:mod:`lstmviz.location`); :func:`write_run` writes one from arrays."""

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
from .mapped import PAGE, MappedF16File
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
# The bytes the chunks write into the mapped files between two drops of their pages from the resident set
# (MappedF16File.drop): this, or as many as the pages being filled hold (one per stream and unit of each
# activation) if that is more. The resident set then holds at most that much of them plus the pages being
# filled: flat in the corpus length. Each drop costs a fault back in per page being filled, so with the bound at
# least their size, the drops at most double the faults of writing the bytes once.
RESIDENT_BYTES = 256 << 20


class RunWriter:
    """Writes a run directory. Activations may arrive in any row order; rows are stored in corpus order.

    Each chunk passes once through a compiled kernel that counts its stats and lays its rows out unit-major, and
    the unit-major runs are copied straight to their final offsets in the activation's parquet file, created at
    its final size and memory-mapped (:class:`~lstmviz.store.mapped.MappedF16File`, 16k-row groups): there is
    no spill, and :meth:`close` only runs the row-group observers over the file and writes the footers. The
    maps' pages leave the resident set every :data:`RESIDENT_BYTES` written (or as many as the pages being filled
    hold, if more), so memory stays flat however long the corpus is. An activation stored otherwise (a codec of
    :data:`COMPRESSION`, 8-bit gates) is written so into a hidden float16 file beside its own, which
    :meth:`close` encodes into it. :meth:`submit_blocks` does a chunk's work on the writer's own thread,
    overlapping the caller's next forward.

    ``hist_ranges`` (name → (lo, hi)) fixes the stats histograms' ranges, which otherwise come from the first
    chunk (the shards of a run share the run's, so that their histograms add up).

    ``gates="8bit"`` stores the sigmoid gates (i, f, o, r, z) as 8-bit levels (:mod:`lstmviz.store.levels`):
    1 byte per value, within :data:`~lstmviz.store.levels.MAX_ERROR` of the exact value; their stats and
    observers see the stored level values.

    ``observers``, when given, is called once per activation and returns the :class:`Observer` s that see that
    activation's values as they are stored and are finished before the manifest is written (their dicts are
    merged into the activation's manifest entry). Derived data built this way costs no second pass over the run.
    An observer with ``row_group`` is given, instead of ``update``, the row groups in turn at :meth:`close`
    (unit-major), after the whole file if it ``needs_spill()`` (:class:`~lstmviz.store.Observer`).

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
        self._bin_sums = {n: next((o.overview_state for o in obs if hasattr(o, "overview_state")), None)
                          for n, obs in self.observers.items()}  # fmt: skip
        # an observer with ``row_group`` is given the row groups of the written file at close, instead of ``update``,
        # and one with ``read_spill`` alone only the whole file
        self._row_obs = {n: [o for o in obs if _by_groups(o)] for n, obs in self.observers.items()}
        self._updates = {n: [o for o in obs if _by_rows(o)] for n, obs in self.observers.items()}
        self._files: dict[str, MappedF16File] = {}
        self._scratch = np.empty(0, np.uint16)
        self._resident = 0  # bytes written into the mapped files since their pages were last dropped
        self._all_units = sum(a.units for a in activations)
        self._lock = threading.Lock()  # one chunk at a time: observers and the files see whole chunks in turn
        self._thread: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []
        try:
            (self.partial / "acts").mkdir()
            for a in activations:
                self._files[a.name] = MappedF16File(self._mapped_path(a), unit_columns(a.units), self.n, ROW_GROUP)
        except BaseException:  # the files are released in close() or abort()
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

    def _mapped_path(self, act: Activation) -> Path:
        """Where an activation's values are written in place: its own file when it is stored as uncompressed
        float16, else a float16 file beside it that :meth:`close` encodes into it (a codec, 8-bit levels)."""
        if act.name in self.eight or COMPRESSION.get(act.kind, "none") != "none":
            return self.partial / "acts" / f".{act.name}.f16.parquet"
        return self.partial / act.file

    def _store(self, name: str, starts: np.ndarray, half: np.ndarray, counts: np.ndarray) -> None:
        """Stats, observers and the file for one chunk: half float16 ``[B, T, units]``, starts / counts ``[B]``."""
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
            self._files[name].write_runs(tiles, starts, counts)
            self._resident += 2 * U * int(counts.sum())
            if self._resident > max(RESIDENT_BYTES, B * self._all_units * PAGE):
                for f in self._files.values():
                    f.drop()
                self._resident = 0

    def set_column(self, column: str, start: int, values: np.ndarray) -> None:
        """Fill rows of an extra token column (e.g. ``loss``); values: ``[n]`` or ``[n, k]``."""
        values = np.asarray(values)
        if column not in self.columns:
            self.columns[column] = np.zeros((self.n, *values.shape[1:]), values.dtype)
        self.columns[column][start : start + len(values)] = values

    def close(self) -> AnyPath:
        """Finish the activation files (their observers' passes, the footers), write tokens, stats and the
        manifest, rename into place, and only then mark the manifest complete (see :mod:`lstmviz.outputs`).

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

        def convert(act: Activation) -> None:
            f, row_obs = self._files[act.name], self._row_obs[act.name]
            spill_obs = [o for o in self.observers[act.name] if getattr(o, "needs_spill", lambda: False)()]
            if spill_obs:
                values, groups = f.spill()
                for o in spill_obs:
                    o.read_spill(values, groups)
                f.drop()
            encode = f.path != self.partial / act.file
            # observers and encoders get a C-contiguous copy of each group: the compiled passes specialised on it
            # run several times faster than on a strided view of the map, for a copy at memory speed
            scratch = np.empty(act.units * ROW_GROUP, np.uint16) if row_obs or encode else None
            with _group_writer(self.partial / act.file, act.units, act.kind, act.name in self.eight, encode) as write:
                for g, r0 in enumerate(f.layout.first.tolist()):
                    if scratch is not None:
                        stored = f.group(g)  # [units, R], a strided view of the map
                        group = scratch[: stored.size].reshape(stored.shape)
                        np.copyto(group, stored)
                        for o in row_obs:
                            o.row_group(self.partial, r0, group)
                        write(group)
                    f.drop(g)
            f.close()
            if encode:
                f.path.unlink()

        def finish(name: str) -> dict:
            derived: dict = {}
            for obs in self.observers[name]:
                derived.update(obs.finish(self.partial))
            return derived

        # The copies, the page writes, pyarrow's codecs and the observers' compiled passes run without the GIL,
        # so files convert, and then observers finish, in parallel (a recording waits for all of it).
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            list(pool.map(convert, self.acts.values()))
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
        for f in self._files.values():
            f.abort()
        self._output.discard()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _by_groups(observer: object) -> bool:
    """Whether an observer takes the row groups (``row_group``) rather than ``update``."""
    return callable(getattr(observer, "row_group", None))


def _by_rows(observer: object) -> bool:
    """Whether an observer takes each chunk's rows (``update``): unless it takes the row groups, the file alone, or
    is fed by the stats pass itself (``overview_state``)."""
    fed = callable(getattr(observer, "read_spill", None)) or hasattr(observer, "overview_state")
    return not _by_groups(observer) and not fed


@contextlib.contextmanager
def _group_writer(
    dest: Path, units: int, kind: str, eight: bool, encode: bool
) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that takes each row group in turn, float16 patterns uint16 ``[units, rows]``, for the parquet
    file ``dest``: nothing to do when the values are written in place (not ``encode``); else the group goes into
    ``dest``, as 8-bit levels (``eight``: a dictionary-encoded file of uint8 indices, by
    :mod:`lstmviz.store.parquet_f16`) or with the kind's codec (pyarrow)."""
    if not encode:
        yield lambda group: None
        return
    names = unit_columns(units)
    if eight:
        indices = np.empty(units * ROW_GROUP, np.uint8)
        with F16ParquetWriter(dest, names, LEVELS) as w:

            def levels(group: np.ndarray) -> None:
                U, R = group.shape
                w.write_group(np.take(INDEX, group, out=indices[: U * R].reshape(U, R), mode="clip"))

            yield levels
        return
    schema = pa.schema([(c, pa.float16()) for c in names])
    with pq.ParquetWriter(dest, schema, **{**_PARQUET_OPTS, "compression": COMPRESSION[kind]}) as writer:

        def write(group: np.ndarray) -> None:
            R = group.shape[1]
            cols = [pa.Array.from_buffers(pa.float16(), R, [None, pa.py_buffer(np.ascontiguousarray(group[u]))])
                    for u in range(units)]  # fmt: skip
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
