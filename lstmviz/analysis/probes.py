"""Neuron search: which units track a token annotation, such as "inside a string" or "bracket depth"?

Each unit is scored against one annotation column of the tokens table over every token of the run: Pearson
correlation for a numeric track, ROC-AUC for a boolean one (or for ``column == value`` on a categorical one).
AUC is computed exactly, ties counted half, from per-unit histograms of the stored float16 values, so a
million tokens × 512 units takes seconds and little memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..store import Run, RunError
from .select_match import unit_blocks

N_KEYS = 1 << 16  # float16 bit patterns
AUC_UNITS = 32  # units whose histograms are built at once (2M int64 counters)


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
    y, valid, boolean = _track(run, column, value)
    names = run.names if names is None else [names] if isinstance(names, str) else list(names)
    frames = [_score(run, name, y, valid, boolean) for name in names]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if len(out):
        out = out.sort_values("strength", ascending=False, na_position="last", kind="stable")
    return out.reset_index(drop=True).head(top) if top is not None else out.reset_index(drop=True)


def _track(run: Run, column: str, value: object) -> tuple[np.ndarray, np.ndarray, bool]:
    """(y ``[T]``, valid bool ``[T]``, boolean?) for an annotation column."""
    tokens = run.tokens
    if column not in tokens.columns:
        extra = [c for c in tokens.columns if c not in ("idx", "doc", "pos", "token_id", "token")]
        raise RunError(f"the run has no token column {column!r}; annotation columns: {', '.join(extra) or 'none'}")
    col = tokens[column]
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


def _score(run: Run, name: str, y: np.ndarray, valid: np.ndarray, boolean: bool) -> pd.DataFrame:
    y = y[valid]
    parts = []
    for units, x in unit_blocks(run, name):  # x: (T, block)
        x = x[valid]
        if boolean:
            parts.append(
                pd.DataFrame(
                    {
                        "unit": units,
                        "metric": "auc",
                        "score": auc(x, y),
                        "mean_true": _mean(x[y]),
                        "mean_false": _mean(x[~y]),
                    }
                )
            )
        else:
            parts.append(pd.DataFrame({"unit": units, "metric": "pearson_r", "score": pearson(x, y)}))
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(0, "name", name)
    frame["strength"] = (2 * frame["score"] - 1).abs() if boolean else frame["score"].abs()
    frame["n"] = len(y)
    return frame


def _mean(x: np.ndarray) -> np.ndarray:
    return x.mean(0, dtype=np.float64) if len(x) else np.full(x.shape[1], np.nan)


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
        below = np.cumsum(neg, axis=1) - neg  # negatives strictly below each key
        wins = (pos * below).sum(1) * 2 + (pos * neg).sum(1)  # twice the Mann–Whitney U, exact in int64
        out[j : j + b] = wins / (2 * n_pos * n_neg)
    return out


def _order_keys(x: np.ndarray) -> np.ndarray:
    """uint16 keys whose order is the order of the float16 values (−0 and +0 share a key)."""
    bits = (x.astype(np.float16) + np.float16(0)).view(np.uint16)  # adding +0 turns −0 into +0
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000).astype(np.intp)
