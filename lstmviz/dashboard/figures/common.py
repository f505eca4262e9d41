"""What every figure shares: colour scales, token display, hover text and track scaling."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lstmviz.names import SIGMOID_KINDS

DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
GATE_SCALE = "Greens"
"""A sigmoid gate's 0…1: white where the gate is shut, dark green where it is open (one hue, apart from the
red/blue of signed values and the purple of annotation tracks)."""
FONT = 13
"""The figures' base font size in px; projector mode passes a larger one."""
TRACK_SCALE = [[0.0, "#f4f4f4"], [1.0, "#6a51a3"]]
MAX_HOVER_CELLS = 20_000  # above this, heatmap cells carry no per-cell token (it costs ~1 ms per 1k cells)


def show_token(token: str) -> str:
    """A token as drawn in a cell: newline as ↵, tab as →, other whitespace kept."""
    return str(token).replace("\n", "↵").replace("\t", "→").replace("\r", "␍")


def code_span(text: str) -> str:
    """``text`` as one Markdown code span, whatever backticks or edge spaces it holds."""
    fence = "`" * (max((len(r) for r in re.findall("`+", text)), default=0) + 1)
    edges = text[:1] + text[-1:]
    pad = " " if "`" in edges or (edges == "  " and text.strip()) else ""  # CommonMark strips one space a side
    return f"{fence}{pad}{text}{pad}{fence}"


def symmetric_range(values: np.ndarray) -> tuple[float, float]:
    """``(-m, m)`` with m the largest finite |value| (1 when there is none)."""
    finite = np.abs(values[np.isfinite(values)]) if values.size else np.zeros(0)
    m = float(finite.max()) if finite.size else 1.0
    return -(m or 1.0), m or 1.0


def unit_scale(kind: str, zrange: tuple[float, float] | None = None) -> tuple[str, tuple[float, float]]:
    """How one unit's values are coloured: ``(plotly colour scale, (lo, hi))``.

    A sigmoid gate (i f o r z, :data:`lstmviz.names.SIGMOID_KINDS`) lies in [0, 1] whatever it does, so it is
    drawn on :data:`GATE_SCALE` over exactly 0…1: a forget gate held near 1 reads as "open", not as the far end of
    a signed scale. Every other kind is signed, so it is drawn diverging, over ``zrange`` (e.g. the unit's
    symmetric range over the run; :func:`symmetric_range`), or ``(-1, 1)`` when none is given.
    """
    if kind in SIGMOID_KINDS:
        return GATE_SCALE, (0.0, 1.0)
    return DIVERGING, zrange or (-1.0, 1.0)


def token_class(tokens: Sequence[str] | pd.Series) -> list[str]:
    """A coarse class per token: letter, digit, space, newline, bracket, quote, punctuation or other."""

    def one(t: str) -> str:
        if not t:
            return "other"
        c = t[0]
        if "\n" in t:
            return "newline"
        if c.isspace():
            return "space"
        if c.isalpha() or c == "_":
            return "letter"
        if c.isdigit():
            return "digit"
        if c in "()[]{}":
            return "bracket"
        if c in "'\"`":
            return "quote"
        return "punctuation" if c.isprintable() else "other"

    return [one(str(t)) for t in tokens]


def token_hover(tokens: pd.DataFrame, vocab: Sequence[str] | None = None, tracks: Sequence[str] = ()) -> list[str]:
    """One hover line per token row: position, the token, annotation values, loss and top-k predictions."""
    out = []
    has_top = "top_ids" in tokens and "top_p" in tokens
    has_loss = "loss" in tokens  # asked once: a DataFrame's `in` costs a fraction of a millisecond per row
    for row in tokens.itertuples(index=False):
        parts = [f"#{row.idx} {show_token(row.token)!r}"]
        parts += [f"{t}={getattr(row, t)}" for t in tracks]
        if has_loss:
            parts.append(f"loss {row.loss:.2f}")
        if has_top and row.top_ids is not None:
            preds = [
                f"{show_token(vocab[i]) if vocab and 0 <= i < len(vocab) else i}:{p:.2f}"
                for i, p in zip(row.top_ids, row.top_p, strict=False)
            ]
            parts.append("next: " + " ".join(preds))
        out.append("<br>".join(parts))
    return out


def track_values(track: pd.Series | np.ndarray) -> np.ndarray:
    """float32 ``[T]`` in [0, 1] for drawing an annotation track: booleans as 0/1, numbers scaled to their range,
    categories (strings) by category code."""
    raw = pd.Series(np.asarray(track))
    if raw.dtype == bool:
        return raw.to_numpy(np.float32)
    num = pd.to_numeric(raw, errors="coerce").to_numpy(np.float32)
    if np.isnan(num).all():
        num = raw.astype("category").cat.codes.to_numpy(np.float32)
    lo, hi = (float(np.nanmin(num)), float(np.nanmax(num))) if np.isfinite(num).any() else (0.0, 0.0)
    return (num - lo) / (hi - lo) if hi > lo else np.zeros_like(num)
