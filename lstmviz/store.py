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

import datetime as _dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import names as _names
from .errors import RunError
from .outputs import Output, write_json_atomically

SCHEMA_VERSION = 1
ROW_GROUP = 16384
LOW, HIGH = 0.1, 0.9
HIST_BINS = 32
TOKEN_COLUMNS = ("idx", "doc", "pos", "token_id", "token")
_PARQUET_OPTS = dict(compression="zstd", use_dictionary=False, write_statistics=False)


def unit_columns(units: int) -> list[str]:
    """Column names of an activation file: ``["u0000", "u0001", …]``."""
    return [f"u{u:04d}" for u in range(units)]


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
    """Histogram range: the kind's bounds for bounded kinds, else ±1.5·max|x| of the first values seen."""
    if kind in _names.SIGMOID_KINDS:
        return 0.0, 1.0
    bound = float(np.abs(first).max()) if first.size else 1.0
    if kind in _names.TANH_KINDS or bound <= 1.0:
        return -1.0, 1.0
    return -1.5 * bound, 1.5 * bound


class _Stats:
    """Per-unit streaming aggregates of one activation, over the float16 values as stored."""

    def __init__(self, act: Activation):
        u = act.units
        self.act = act
        self.count = 0
        self.sum = np.zeros(u)
        self.sumsq = np.zeros(u)
        self.min = np.full(u, np.inf)
        self.max = np.full(u, -np.inf)
        self.n_low = np.zeros(u, np.int64)
        self.n_high = np.zeros(u, np.int64)
        self.hist = np.zeros((u, HIST_BINS), np.int64)
        self.range: tuple[float, float] | None = None

    def update(self, x: np.ndarray) -> None:
        """x: float32 ``[n, units]`` of values already rounded to float16."""
        if not len(x):
            return
        self.count += len(x)
        self.sum += x.sum(0, dtype=np.float64)
        self.sumsq += np.einsum("ij,ij->j", x, x, dtype=np.float64)
        np.minimum(self.min, x.min(0), out=self.min)
        np.maximum(self.max, x.max(0), out=self.max)
        self.n_low += np.count_nonzero(x < LOW, axis=0)
        self.n_high += np.count_nonzero(x > HIGH, axis=0)
        if self.range is None:
            self.range = _hist_range(self.act.kind, x)
        lo, hi = self.range
        b = np.clip((x - lo) * (HIST_BINS / (hi - lo)), 0, HIST_BINS - 1).astype(np.int32)  # (n, units)
        b += np.arange(self.act.units, dtype=np.int32) * HIST_BINS
        self.hist += np.bincount(b.ravel(), minlength=self.act.units * HIST_BINS).reshape(self.act.units, HIST_BINS)

    def frame(self) -> pd.DataFrame:
        n = max(self.count, 1)
        mean = self.sum / n
        var = np.maximum(self.sumsq / n - mean**2, 0.0)
        lo, hi = self.range or (0.0, 1.0)
        return pd.DataFrame(
            {
                "name": self.act.name,
                "unit": np.arange(self.act.units, dtype=np.int32),
                "count": np.full(self.act.units, self.count, np.int64),
                "mean": mean,
                "std": np.sqrt(var),
                "min": self.min,
                "max": self.max,
                "n_low": self.n_low,
                "n_high": self.n_high,
                "hist": list(self.hist),
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

    Values are spilled to raw float16 files under ``<run>.partial/spill/`` with positioned writes (so memory
    stays flat however long the corpus is), then converted to parquet in 16k-row groups by :meth:`close`.

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
        self.observers = {a.name: list(observers(a)) if observers else [] for a in activations}
        self._spill = {}
        try:
            (self.partial / "acts").mkdir()
            (self.partial / "spill").mkdir()
            for a in activations:
                f = self._spill[a.name] = open(self.partial / "spill" / f"{a.name}.f16", "w+b")  # noqa: SIM115
                f.truncate(self.n * a.units * 2)  # closed in close() or abort()
        except BaseException:
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
        half = np.ascontiguousarray(values, dtype=np.float16)
        self.stats[name].update(half.astype(np.float32))
        for obs in self.observers[name]:
            obs.update(start, half)
        os.pwrite(self._spill[name].fileno(), half.data, start * act.units * 2)

    def write_blocks(
        self, name: str, starts: np.ndarray, values: np.ndarray, counts: np.ndarray, rounded: np.ndarray | None = None
    ) -> None:
        """Store ``values[b, :counts[b]]`` at rows ``starts[b]…`` for each b. values: ``[B, T, units]``.

        ``values`` may already be float16, with ``rounded`` the same values as float32 (callers with a faster
        converter, e.g. torch, pass both); otherwise both are derived here.
        """
        act = self.acts[name]
        half = values.astype(np.float16, copy=False)  # (B, T, units)
        if rounded is None:
            rounded = half.astype(np.float32)
        valid = np.arange(half.shape[1])[None, :] < np.asarray(counts)[:, None]
        self.stats[name].update(rounded[valid] if not valid.all() else rounded.reshape(-1, act.units))
        fd = self._spill[name].fileno()
        for b, (start, count) in enumerate(zip(starts, counts, strict=True)):
            if count:
                block = np.ascontiguousarray(half[b, :count])
                for obs in self.observers[name]:
                    obs.update(int(start), block)
                os.pwrite(fd, block.data, int(start) * act.units * 2)

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
        for f in self._spill.values():
            f.close()

        def convert(act: Activation) -> None:
            spill = self.partial / "spill" / f"{act.name}.f16"
            _spill_to_parquet(spill, self.partial / act.file, self.n, act.units)
            spill.unlink()

        # pyarrow encodes and compresses without the GIL, so files convert in parallel.
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

    def abort(self) -> None:
        """Remove the partial directory (and the parent directories it created)."""
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


def _spill_to_parquet(spill: Path, dest: Path, n: int, units: int) -> None:
    """Raw float16 ``[n, units]`` row-major file → wide parquet with ROW_GROUP-row groups."""
    schema = pa.schema([(c, pa.float16()) for c in unit_columns(units)])
    with pq.ParquetWriter(dest, schema, **_PARQUET_OPTS) as writer, open(spill, "rb") as f:
        for start in range(0, max(n, 1), ROW_GROUP):
            rows = min(ROW_GROUP, n - start)
            block = np.fromfile(f, np.float16, rows * units).reshape(rows, units)  # [rows, units]
            cols = [pa.array(block[:, u]) for u in range(units)]
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=ROW_GROUP)


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

    @cached_property
    def tokens(self) -> pd.DataFrame:
        """One row per token: idx, doc, pos, token_id, token, then annotation and prediction columns."""
        return self._read_table("tokens.parquet")

    @cached_property
    def stats(self) -> pd.DataFrame:
        """Per activation, per unit: count, mean, std, min, max, n_low, n_high, hist, hist_lo, hist_hi."""
        from .validate import stats_file

        file = stats_file(self.manifest)
        return self._read_table(file) if (self.path / file).exists() else pd.DataFrame()

    def _read_table(self, file: str) -> pd.DataFrame:
        """A whole parquet file of the run; damage that its footer did not show is a RunError too."""
        try:
            return pd.read_parquet(self.path / file)
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
            path = self.path / self.info(name)["file"]
            try:
                self._files[name] = pq.ParquetFile(path)
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
