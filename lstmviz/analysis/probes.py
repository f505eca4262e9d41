"""Neuron search: which units track a token annotation, such as "inside a string" or "bracket depth"?

Each unit is scored against one annotation column of the tokens table over every token of the run: Pearson
correlation for a numeric track, ROC-AUC for a boolean one (or for ``column == value`` on a categorical one).
AUC is computed exactly, ties counted half, from per-unit histograms of the stored float16 values. The run is
read in blocks of rows (:data:`ROWS` steps of a group of units at a time), never a whole column: each block adds
to per-unit counts of each float16 value, split by the token's class (annotation true, false, or, for a number,
present), and Pearson r takes its sums Σx·y from the same blocks and its Σx, Σx² from the counts. Memory is the
counts (:data:`HIST_BYTES`) and one block, whatever the run's length.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ..location import write_table
from ..store import Run, RunError

N_KEYS = 1 << 16  # float16 bit patterns
AUC_UNITS = 32  # units whose histograms are built at once (2M int64 counters)
ROWS = 1 << 16  # steps read at once
HIST_BYTES = 1 << 26  # the per-unit value counts held at once (64 MB): this bounds the units of one pass


@functools.cache
def jit():
    """The compiled counting loop (:mod:`lstmviz.analysis._probe_jit`), or None with ``LSTMVIZ_NO_JIT=1`` or where
    numba cannot compile or cache here (then numpy counts, slower)."""
    if os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    try:
        from . import _probe_jit as k

        h, one = np.zeros((1, 1, N_KEYS), np.int64), np.zeros(1)
        k.count_keys(np.zeros((1, 1), np.uint16), np.zeros(1, np.int8), h, one, one, _pattern_values())
    except Exception:  # no numba, nowhere to cache, or a compile error
        return None
    return k


def probe(
    run: Run, column: str, names: str | Sequence[str] | None = None, *, value: object = None, top: int | None = None
) -> pd.DataFrame:
    """Rank units by how well they track a token annotation: |Pearson r| for numbers, ROC-AUC for true/false.

    AUC is the probability that the unit is higher at a random token where the annotation holds than at one
    where it does not: 0.5 is chance, 1.0 a perfect detector, 0.0 a perfect detector that switches off. Units
    rank by strength, |r| or |2·AUC − 1|, so detectors of both signs come first. Tokens where the annotation is
    missing are left out.

    Args:
        run: an open run.
        column: an annotation column of ``run.tokens`` (boolean or numeric, or any kind with ``value``).
        names: activations to search (default: all of them).
        value: score ``column == value`` as a boolean track (for categorical columns).
        top: keep only the strongest rows.

    Returns:
        DataFrame, strongest first: name, unit, metric (``auc`` or ``pearson_r``), score, strength, n, and for
        boolean tracks mean_true / mean_false (the unit's mean where the annotation holds / does not).
    """
    track = target(*track_arrays(run, column, value))
    names = run.names if names is None else [names] if isinstance(names, str) else list(names)
    frames = [_score(run, name, track) for name in names]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(out):
        out = out.sort_values("strength", ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True).head(top) if top is not None else out.reset_index(drop=True)


PROBE_VERSION = 2


def stored_probe(run: Run, column: str, name: str, value: object = None) -> pd.DataFrame:
    """:func:`probe` of one activation, kept under the run's ``cache/probes/``: scoring every unit reads the whole
    activation once (tens of seconds at 10M tokens), so a later session, or a restarted app, reads the ranking
    back. Keyed by the activation, the track, the value and :attr:`~lstmviz.store.RunReader.tokens_key` (a
    tokens table rewritten with other annotations is scored afresh); written to a temporary file and renamed,
    so a killed process never leaves half a table. Where the cache cannot be written, the ranking is returned
    all the same."""
    asked = None if value is None else [type(value).__name__, repr(value)]  # 1 and "1" match different tokens
    ask = json.dumps([name, column, asked, run.tokens_key, PROBE_VERSION])
    try:
        path = run.cache_dir / "probes" / f"{hashlib.sha256(ask.encode()).hexdigest()[:20]}.parquet"
    except OSError:  # a read-only run without a cache: scored again next session
        return probe(run, column, name, value=value)
    if path.is_file():
        try:
            return pd.read_parquet(path)
        except (OSError, pa.ArrowException):  # damaged (a crash before the data reached the disk): scored anew
            with contextlib.suppress(OSError):
                path.unlink()
    table = probe(run, column, name, value=value)
    with contextlib.suppress(OSError):  # as above
        path.parent.mkdir(parents=True, exist_ok=True)
        write_table(pa.Table.from_pandas(table, preserve_index=False), path)
    return table


def track_arrays(run: Run, column: str, value: object = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(y ``[T]``, valid bool ``[T]``, boolean?) for an annotation column (``column == value`` when a value is
    given): a column of True/False with missing values (pandas' object dtype) is boolean."""
    if column not in run.token_columns:
        extra = [c for c in run.token_columns if c not in ("idx", "doc", "pos", "token_id", "token")]
        raise RunError(f"the run has no token column {column!r}; annotation columns: {', '.join(extra) or 'none'}")
    col = run.token_column(column)
    valid = ~col.isna().to_numpy()
    if value is not None:
        return (col == value).fillna(False).to_numpy(bool), valid, True
    if pd.api.types.is_bool_dtype(col.dtype) or (col.dtype == object and set(col.dropna().unique()) <= {True, False}):
        return col.fillna(False).to_numpy(bool), valid, True
    if pd.api.types.is_numeric_dtype(col.dtype):
        return col.to_numpy(np.float64, na_value=np.nan), valid, False
    raise RunError(
        f"token column {column!r} is neither boolean nor numeric ({col.dtype}): pass value= to score {column} == value"
    )


def _score(run: Run, name: str, track: Target) -> pd.DataFrame:
    """One activation's units scored against a track, reading the run in blocks of rows, float16 as stored."""

    def read(units: np.ndarray, start: int, stop: int) -> np.ndarray:
        return run.activations(name, units, start, stop, dtype=np.float16)

    frame = scores(read, run.units(name), track)
    frame.insert(0, "name", name)
    return frame


def column_score(x: np.ndarray, track: Target) -> tuple[str, float]:
    """(metric, score) of one unit's column x ``[T]`` (its float16 values, as stored) against a track: what
    :func:`probe` gives that unit, read a block at a time with no copy of the column."""

    def read(units: np.ndarray, start: int, stop: int) -> np.ndarray:
        return x[start:stop, None]

    row = scores(read, 1, track).iloc[0]
    return str(row["metric"]), float(row["score"])


@dataclass(frozen=True)
class Target:
    """An annotation prepared for scoring, once for every unit scored against it (:func:`target`): y ``[T]``
    (bool, or float64 for a number), valid bool ``[T]`` (the tokens that count), cls int8 ``[T]`` (the class of
    each token, 1 / 0 for a boolean track, 0 for a number, −1 where missing), and for a number ȳ, Σ(y − ȳ) and
    Σ(y − ȳ)² over the valid tokens."""

    y: np.ndarray
    valid: np.ndarray
    boolean: bool
    cls: np.ndarray
    n_valid: int
    y_mean: float = 0.0
    syc: float = 0.0
    syy: float = 0.0

    @property
    def numeric(self) -> bool:
        return not self.boolean and self.n_valid > 0

    def centred(self, r: int, stop: int) -> np.ndarray:
        """y − ȳ over steps [r, stop), 0 where the annotation is missing."""
        return _centred(self.y, self.valid, self.y_mean, r, stop)


def _centred(y: np.ndarray, valid: np.ndarray, y_mean: float, r: int, stop: int) -> np.ndarray:
    """y − ȳ over steps [r, stop), 0 where the annotation is missing (a block at a time: at 10M tokens a [T]
    float64 copy is 80 MB)."""
    yc = y[r:stop] - y_mean
    yc[~valid[r:stop]] = 0.0
    return yc


def target(y: np.ndarray, valid: np.ndarray, boolean: bool) -> Target:
    """:class:`Target` of an annotation y ``[T]`` (valid ``[T]`` marks the tokens that count)."""
    cls = y.astype(np.int8) if boolean else np.zeros(len(y), np.int8)  # int8 [T], built in place
    cls[~valid] = -1
    n_valid = int(valid.sum())
    if boolean or not n_valid:
        return Target(y, valid, boolean, cls, n_valid)
    y_mean = float(np.mean(y, where=valid))
    syc = syy = 0.0  # Σyc and Σyc²
    for r in range(0, len(y), ROWS):
        yc = _centred(y, valid, y_mean, r, min(r + ROWS, len(y)))
        syc, syy = syc + float(yc.sum()), syy + float((yc * yc).sum())
    return Target(y, valid, boolean, cls, n_valid, y_mean, syc, syy)


def scores(read, n_units: int, track: Target) -> pd.DataFrame:
    """Every unit scored against a track ``[T]`` from blocks of values: ``read(units, start, stop)`` gives float16
    ``[stop - start, len(units)]``. Per unit, the counts of each float16 value by class (true / false, or valid)
    and, for a number, the sums Σx·(y − ȳ); at most :data:`HIST_BYTES` of counts at once, so the units are taken
    a group at a time. Columns: unit, metric, score (and mean_true, mean_false), strength, n."""
    T, boolean, numeric, cls = len(track.cls), track.boolean, track.numeric, track.cls
    centred, syc, syy, n_valid = track.centred, track.syc, track.syy, track.n_valid
    n_cls = 2 if boolean else 1
    group = max(1, HIST_BYTES // (n_cls * N_KEYS * 8))
    parts = []
    for j in range(0, n_units, group):
        units = np.arange(j, min(j + group, n_units))
        hist = np.zeros((n_cls, len(units), N_KEYS), np.int64)
        sxy = np.zeros(len(units))
        for r in range(0, T, ROWS):
            stop = min(r + ROWS, T)
            x = read(units, r, stop)  # [rows, len(units)]
            _count(x, cls[r:stop], hist, centred(r, stop) if numeric else None, sxy)
        if boolean:
            part = {"unit": units, "metric": "auc", "score": _auc_counts(hist[1], hist[0])}
            part["mean_true"], part["mean_false"] = _mean_counts(hist[1]), _mean_counts(hist[0])
        else:
            score = _pearson_counts(hist[0], sxy, syc, syy) if numeric else np.full(len(units), np.nan)
            part = {"unit": units, "metric": "pearson_r", "score": score}
        parts.append(pd.DataFrame(part))
    frame = pd.concat(parts, ignore_index=True)
    frame["strength"] = (2 * frame["score"] - 1).abs() if boolean else frame["score"].abs()
    frame["n"] = n_valid
    return frame


def _count(x: np.ndarray, cls: np.ndarray, hist: np.ndarray, yc: np.ndarray | None, sxy: np.ndarray) -> None:
    """hist ``[classes, units, N_KEYS]`` += the counts of the keys (:func:`_order_keys`) of x ``[n, units]`` by the
    class cls ``[n]`` of each step (−1: not counted); with yc ``[n]``, sxy ``[units]`` += Σ x·yc over the counted
    steps (in a loop, not a BLAS product, whose threads a busy machine stalls)."""
    k = jit()
    if k is not None:
        bits = np.ascontiguousarray(x, np.float16).view(np.uint16)
        return k.count_keys(bits, cls, hist, np.zeros(0) if yc is None else yc, sxy, _pattern_values())
    keys = _order_keys(x)
    units = np.arange(keys.shape[1]) * N_KEYS
    for c in range(len(hist)):
        cells = (keys[cls == c] + units).ravel()
        hist[c] += np.bincount(cells, minlength=hist[c].size).reshape(hist[c].shape)
    if yc is not None:
        xb = x.astype(np.float64)
        xb[cls < 0] = 0.0  # a missing annotation's step counts in no sum
        sxy += yc @ xb


@functools.cache
def _pattern_values() -> np.ndarray:
    """float64 ``[65536]``: the value of each float16 bit pattern."""
    return np.arange(N_KEYS, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)


@functools.cache
def _key_values() -> np.ndarray:
    """float64 ``[N_KEYS]``: the float16 value of each key of :func:`_order_keys` (the inverse map)."""
    k = np.arange(N_KEYS, dtype=np.uint32)
    bits = np.where(k & 0x8000, k & 0x7FFF, 0xFFFF - k).astype(np.uint16)
    return bits.view(np.float16).astype(np.float64)


def _sums(counts: np.ndarray, power: int, center: np.ndarray | None = None) -> np.ndarray:
    """float64 ``[units]``: Σ over the counted values of (value − center)^power, from counts ``[units, N_KEYS]``
    (keys never counted are left out, so the NaN patterns among them do not spoil the sum)."""
    out = np.zeros(len(counts))
    v = _key_values()
    for u in range(len(counts)):
        seen = np.flatnonzero(counts[u])
        d = v[seen] - (0.0 if center is None else center[u])
        out[u] = (counts[u, seen] * d**power).sum()
    return out


def _mean_counts(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, _sums(counts, 1) / n, np.nan)


def _pearson_counts(counts: np.ndarray, sxy: np.ndarray, syc: float, syy: float) -> np.ndarray:
    """Pearson r per unit from its value counts ``[units, N_KEYS]``, Σx·yc ``[units]``, Σyc and Σyc², yc being y
    minus its mean where valid, else 0: Σ(x − x̄)(y − ȳ) = Σx·yc − x̄·Σyc, and Σ(x − x̄)² from the counts."""
    mean = _mean_counts(counts)
    sxx = _sums(counts, 2, mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sxy - mean * syc) / np.sqrt(sxx * syy)
    return np.where(sxx > 0, r, np.nan)  # a constant unit: 0/0, which rounding in Σx·yc would turn into ±inf


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each column of x ``[n, U]`` with y ``[n]``, in float64; NaN for a constant column or y."""
    xc = x - x.mean(0, dtype=np.float64)
    yc = y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return (yc @ xc) / np.sqrt((xc * xc).sum(0) * (yc @ yc))


def auc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC-AUC of each column of x ``[n, U]`` as a detector of bool y ``[n]``, ties counted half.

    Exact for float16 values (what a run stores): each value maps to an order-preserving 16-bit key, and AUC
    comes from the per-key counts of positives and negatives (the Mann–Whitney U statistic). NaN when y is
    all true or all false.
    """
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out = np.full(x.shape[1], np.nan)
    if not n_pos or not n_neg:
        return out
    keys = _order_keys(x)  # (n, U)
    for j in range(0, x.shape[1], AUC_UNITS):
        k = keys[:, j : j + AUC_UNITS]
        b = k.shape[1]
        k = k + np.arange(b) * N_KEYS  # one histogram per unit, side by side
        pos = np.bincount(k[y].ravel(), minlength=b * N_KEYS).reshape(b, N_KEYS)
        neg = np.bincount(k[~y].ravel(), minlength=b * N_KEYS).reshape(b, N_KEYS)
        out[j : j + b] = _auc_counts(pos, neg)
    return out


def _auc_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC-AUC per unit from its counts of each key among positives and negatives, int64 ``[units, N_KEYS]``
    each: twice the Mann–Whitney U, exact in int64, over 2·n_pos·n_neg; NaN without positives or negatives."""
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each key
    wins = (pos * below).sum(1) * 2 + (pos * neg).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (2 * n_pos * n_neg), np.nan)


def _order_keys(x: np.ndarray) -> np.ndarray:
    """uint16 keys whose order is the order of the float16 values (−0 and +0 share a key)."""
    bits = (x.astype(np.float16) + np.float16(0)).view(np.uint16)  # adding +0 turns −0 into +0
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000).astype(np.intp)
