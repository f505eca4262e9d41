"""Pure plotly figure builders for the dashboard: data in, ``go.Figure`` out, no streamlit (so they are testable).

Values arrive as numpy arrays, any float dtype; they are cast to float32 here, because plotly serialises float16
element by element. Diverging colour scales are centred on zero with a symmetric range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
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
    for row in tokens.itertuples(index=False):
        parts = [f"#{row.idx} {show_token(row.token)!r}"]
        parts += [f"{t}={getattr(row, t)}" for t in tracks]
        if "loss" in tokens:
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


LINE_ENDS = frozenset({"<eos>"})
"""Tokens after which the text goes on in a new line (besides any token holding a newline)."""
TEXT_COLS = {"": 80, " ": 90}
"""Cells per line of the text heatmap, by how tokens join: characters get roomy cells, words narrower ones, so
both read well on a wide page (a 13 px monospace character is about 8 px wide)."""
TRACK_H = 0.3
"""The height of one annotation track under a line, in lines."""


@dataclass(frozen=True)
class TextLayout:
    """Where each token of a text heatmap sits: ``row``, ``x0`` (first cell) and ``width`` (cells), int ``[T]``;
    ``doc_rows``: (row, doc) for each row a document begins on; ``n_rows`` lines in all."""

    row: np.ndarray
    x0: np.ndarray
    width: np.ndarray
    doc_rows: list[tuple[int, int]]
    n_rows: int


def layout_text(
    tokens: Sequence[str], cols: int, joiner: str = "", docs: Sequence[int] | np.ndarray | None = None
) -> TextLayout:
    """Lay tokens out like text: each at its own width (its display string, at least one cell), ``len(joiner)``
    cells apart, wrapped at ``cols`` cells without splitting a token, a new line after a newline or ``<eos>``,
    and each new document (``docs [T]``) on a line of its own. A token wider than a line gets a line to itself."""
    n = len(tokens)
    row, x0 = np.zeros(n, np.int64), np.zeros(n, np.int64)
    width = np.fromiter((max(1, len(show_token(t))) for t in tokens), np.int64, n)
    gap = len(joiner)
    doc = None if docs is None else np.asarray(docs)
    doc_rows: list[tuple[int, int]] = [(0, int(doc[0]))] if doc is not None and n else []
    r = c = 0
    for j, t in enumerate(tokens):
        if doc is not None and j and doc[j] != doc[j - 1]:
            r, c = (r + 1 if c else r), 0
            doc_rows.append((r, int(doc[j])))
        at = c + (gap if c else 0)
        if c and at + width[j] > cols:
            r, at = r + 1, 0
        row[j], x0[j] = r, at
        c = at + width[j]
        if "\n" in str(t) or t in LINE_ENDS:
            r, c = r + 1, 0
    return TextLayout(row, x0, width, doc_rows, int(row[-1]) + 1 if n else 1)


def text_figure(
    tokens: Sequence[str],
    values: np.ndarray,
    *,
    hover: Sequence[str] | None = None,
    tracks: pd.DataFrame | None = None,
    joiner: str = "",
    docs: Sequence[int] | np.ndarray | None = None,
    cols: int | None = None,
    zrange: tuple[float, float] | None = None,
    title: str = "",
) -> go.Figure:
    """Karpathy-style text colouring: each token a box coloured by one unit's value, laid out as text.

    tokens ``[T]`` display strings, values ``[T]``, hover ``[T]`` strings. ``joiner`` is how the tokens join into
    text (``""`` characters, ``" "`` words: see :func:`layout_text`); ``docs [T]`` the document of each token,
    given when the run holds several: each document then begins a line, under a rule, labelled on the left.
    Each column of ``tracks`` (``[T]`` rows, numeric or boolean) is drawn as a thin bar under every token,
    scaled to its own range. A token without a finite value is a grey box.
    """
    values = np.asarray(values, np.float32).reshape(-1)
    cols = cols or TEXT_COLS.get(joiner, TEXT_COLS[" "])
    n_tracks = 0 if tracks is None else tracks.shape[1]
    lay = layout_text(tokens, cols, joiner, docs)
    line_h = 1 + TRACK_H * n_tracks
    y = lay.row * line_h
    labels = np.array([show_token(t) for t in tokens], object)
    tips = list(hover) if hover is not None else [""] * len(values)
    tips = np.array([f"{h}<br>value {v:.3f}" if h else f"value {v:.3f}" for h, v in zip(tips, values, strict=True)])
    lo, hi = zrange or symmetric_range(values)
    finite = np.isfinite(values)
    traces = [_boxes(lay, finite, y, 0.9, {"color": values[finite], "coloraxis": "coloraxis"}, tips, labels)]
    if not finite.all():
        traces.append(_boxes(lay, ~finite, y, 0.9, {"color": "#bbb"}, tips, labels))
    for k, column in enumerate(tracks.columns if n_tracks else ()):
        raw = tracks[column].to_numpy()
        tip = np.array([f"{column}: {v}" for v in raw], object)
        marker = {"color": track_values(tracks[column]), "coloraxis": "coloraxis2"}
        every = np.ones(len(values), bool)
        traces.append(_boxes(lay, every, y + 0.5 + TRACK_H * (k + 0.5), TRACK_H * 0.8, marker, tip))
    ticks = {}
    if docs is not None and lay.doc_rows:
        ticks = {"tickvals": [r * line_h for r, _ in lay.doc_rows], "ticktext": [f"doc {d}" for _, d in lay.doc_rows]}
        rules = [v for r, _ in lay.doc_rows[1:] for v in (r * line_h - 0.5, r * line_h - 0.5, None)]
        traces.append(
            go.Scatter(
                x=[0, cols, None] * (len(rules) // 3),
                y=rules,
                mode="lines",
                line={"color": "#444", "width": 1.5},
                hoverinfo="skip",
                showlegend=False,
            )
        )
    layout = dict(
        title=title or None,
        height=max(160, round(26 * lay.n_rows * line_h) + 80),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        coloraxis={
            "colorscale": DIVERGING,
            "cmin": lo,
            "cmax": hi,
            "colorbar": {"thickness": 10, "lenmode": "pixels", "len": 240, "y": 1, "yanchor": "top"},  # at the top
        },
        coloraxis2={"colorscale": TRACK_SCALE, "cmin": 0, "cmax": 1, "showscale": False},
        xaxis={"visible": False, "range": [0, cols], "fixedrange": False},
        yaxis={
            "visible": bool(ticks),
            "range": [lay.n_rows * line_h - 0.5, -0.5],
            "showgrid": False,
            "zeroline": False,
            "ticks": "",
            **ticks,
        },
        plot_bgcolor="white",
        bargap=0,
        showlegend=False,
        uniformtext={"mode": "show", "minsize": 13},
    )
    return go.Figure(traces, layout)


def _boxes(
    lay: TextLayout,
    keep: np.ndarray,
    y: np.ndarray,
    thickness: float,
    marker: dict,
    tips: np.ndarray,
    labels: np.ndarray | None = None,
) -> go.Bar:
    """One horizontal bar per kept token (``keep``: bool ``[T]``), spanning its cells less a hair (the gap
    between neighbours), at height ``y [T]``; ``tips``/``labels`` ``[T]`` (object arrays) its hover and text."""
    text = {} if labels is None else {"text": labels[keep], "textposition": "inside", "insidetextanchor": "middle"}
    return go.Bar(
        orientation="h",
        base=lay.x0[keep] + 0.05,
        x=lay.width[keep] - 0.1,
        y=y[keep],
        width=thickness,
        marker={**marker, "line": {"width": 0}},
        customdata=tips[keep],
        hovertemplate="%{customdata}<extra></extra>",
        textangle=0,
        constraintext="none",
        textfont={"family": "monospace", "size": 13},
        cliponaxis=False,
        **text,
    )


def units_heatmap(
    values: np.ndarray,
    start: int,
    units: Sequence[int],
    tokens: Sequence[str] | None = None,
    *,
    tracks: pd.DataFrame | None = None,
    span: tuple[int, int] | None = None,
    zrange: tuple[float, float] | None = None,
    title: str = "",
    select: bool = True,
) -> go.Figure:
    """Units × tokens heatmap of a window: values ``[T, U]`` for tokens ``start…start+T-1`` and ``units``.

    With ``select`` the drag mode is box-select (``dragmode="select"``): a brush returns x (token) and y (unit)
    ranges. ``span`` (a, b) is outlined. Annotation ``tracks`` (``[T]`` rows) are drawn in rows below.
    """
    values = np.asarray(values, np.float32)
    T, U = values.shape
    x = np.arange(start, start + T)
    n_tracks = 0 if tracks is None else tracks.shape[1]
    fig = make_subplots(
        rows=1 + n_tracks, cols=1, shared_xaxes=True, vertical_spacing=0.01, row_heights=[max(U, 4)] + [1] * n_tracks
    )
    labels = [show_token(t) for t in tokens] if tokens is not None else None
    hover = "token %{x}<br>unit %{y}<br>value %{z:.3f}<extra></extra>"
    custom = None
    if labels is not None and T * U <= MAX_HOVER_CELLS:
        custom = np.broadcast_to(np.asarray(labels, object), (U, T))
        hover = "token %{x} %{customdata}<br>unit %{y}<br>value %{z:.3f}<extra></extra>"
    lo, hi = zrange or symmetric_range(values)
    heat = go.Heatmap(
        z=values.T,
        x=x,
        y=list(units),
        customdata=custom,
        hovertemplate=hover,
        colorscale=DIVERGING,
        zmin=lo,
        zmax=hi,
        colorbar={"thickness": 10, "len": 0.8},
    )
    fig.add_trace(heat, row=1, col=1)
    if n_tracks:
        for k, column in enumerate(tracks.columns):
            fig.add_trace(
                go.Heatmap(
                    z=track_values(tracks[column])[None, :],
                    customdata=tracks[column].astype(str).to_numpy()[None, :],
                    x=x,
                    y=[str(column)],
                    colorscale=TRACK_SCALE,
                    showscale=False,
                    hovertemplate=f"token %{{x}}<br>{column} %{{customdata}}<extra></extra>",
                ),
                row=2 + k,
                col=1,
            )
    if span is not None:
        fig.add_vrect(
            x0=span[0] - 0.5,
            x1=span[1] - 0.5,
            line={"color": "black", "width": 2},
            fillcolor="rgba(0,0,0,0)",
            row=1,
            col=1,
        )
    if labels is not None and T <= 120:
        fig.update_xaxes(
            tickmode="array", tickvals=x, ticktext=labels, tickangle=0, tickfont={"size": 10}, row=1 + n_tracks, col=1
        )
    fig.update_yaxes(title_text="unit", row=1, col=1)
    fig.update_layout(
        title=title or None,
        height=min(900, 140 + 12 * max(U, 8) + 22 * n_tracks),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        dragmode="select" if select else "zoom",
        selectdirection="h" if select else "any",
    )
    return fig


def overview_figure(binned: np.ndarray, per: int, window: tuple[int, int] | None = None, title: str = "") -> go.Figure:
    """The whole run at a glance: ``binned`` ``[bins, U]`` means of ``per`` tokens each; the window is outlined."""
    binned = np.asarray(binned, np.float32)
    x = np.arange(binned.shape[0]) * per
    lo, hi = symmetric_range(binned)
    fig = go.Figure(
        go.Heatmap(
            z=binned.T,
            x=x,
            colorscale=DIVERGING,
            zmin=lo,
            zmax=hi,
            colorbar={"thickness": 10},
            hovertemplate=f"tokens %{{x}}…+{per}<br>unit %{{y}}<br>mean %{{z:.3f}}<extra></extra>",
        )
    )
    if window is not None:
        fig.add_vrect(x0=window[0], x1=window[1], line={"color": "black", "width": 2}, fillcolor="rgba(0,0,0,0.1)")
    fig.update_layout(
        title=title or None,
        height=220,
        margin={"l": 10, "r": 10, "t": 30 if title else 10, "b": 10},
        xaxis_title="token",
        yaxis_title="unit",
    )
    return fig


def counts_figure(counts: np.ndarray, start: int, n_units: int, title: str = "") -> go.Figure:
    """Match-count track: how many of the selected units are on at each step of a window (``counts`` ``[T]``)."""
    counts = np.asarray(counts, np.float32)
    fig = go.Figure(
        go.Heatmap(
            z=counts[None, :],
            x=np.arange(start, start + len(counts)),
            y=["on"],
            colorscale="Greens",
            zmin=0,
            zmax=max(n_units, 1),
            colorbar={"thickness": 10},
            hovertemplate="token %{x}<br>%{z} units on<extra></extra>",
        )
    )
    fig.update_layout(title=title or None, height=140, margin={"l": 10, "r": 10, "t": 30 if title else 10, "b": 10})
    return fig


def saturation_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Karpathy et al. (2015) §4.2: one subplot per gate kind, x = fraction right-saturated, y = left-saturated.

    table: one row per gate unit with columns name, layer, kind, unit, frac_low, frac_high, and optionally module
    and dir (:func:`lstmviz.analysis.saturation.saturation`'s table). Dots are coloured by layer, and by module
    and direction when the table has more than one.
    """
    kinds = list(dict.fromkeys(table["kind"])) or ["gate"]
    fig = make_subplots(
        rows=1, cols=len(kinds), subplot_titles=[f"gate {k}" for k in kinds], shared_yaxes=True, horizontal_spacing=0.04
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    label = "layer " + table["layer"].astype(str)
    for extra in ("dir", "module"):
        if extra in table and table[extra].nunique() > 1:
            label = (table[extra].astype(str) + " " + label) if extra == "module" else (label + " " + table[extra])
    groups = list(dict.fromkeys(label))
    shown: set[str] = set()
    for c, kind in enumerate(kinds, start=1):
        for j, group in enumerate(groups):
            part = table[(table["kind"] == kind) & (label == group)]
            if not len(part):
                continue
            fig.add_trace(
                go.Scatter(
                    x=part["frac_high"],
                    y=part["frac_low"],
                    mode="markers",
                    name=group,
                    legendgroup=group,
                    showlegend=group not in shown,
                    marker={"color": palette[j % len(palette)], "size": 7, "opacity": 0.7},
                    customdata=np.stack([part["name"], part["unit"]], axis=1),
                    hovertemplate="%{customdata[0]} unit %{customdata[1]}<br>right-saturated %{x:.2f}"
                    "<br>left-saturated %{y:.2f}<extra></extra>",
                ),
                row=1,
                col=c,
            )
            shown.add(group)
        fig.update_xaxes(range=[-0.02, 1.02], title_text="fraction right-saturated (> high)", row=1, col=c)
    fig.update_yaxes(range=[-0.02, 1.02], title_text="fraction left-saturated (< low)", row=1, col=1)
    fig.update_layout(title=title or None, height=420, margin={"l": 10, "r": 10, "t": 60, "b": 10})
    return fig


def gradient_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Gradient norm against distance k on a log scale, one line per series with a quantile band.

    table columns: series (e.g. "code_lstm h l1"), k, mean, lo, hi.
    """
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
    for j, (series, part) in enumerate(table.groupby("series", sort=False)):
        color = palette[j % len(palette)]
        rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
        fig.add_trace(
            go.Scatter(
                x=np.r_[part["k"], part["k"][::-1]],
                y=np.r_[part["hi"], part["lo"][::-1]],
                fill="toself",
                fillcolor=f"rgba{(*rgb, 0.15)}",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=str(series),
            )
        )
        fig.add_trace(
            go.Scatter(
                x=part["k"],
                y=part["mean"],
                mode="lines",
                name=str(series),
                legendgroup=str(series),
                line={"color": color},
                hovertemplate=f"{series}<br>k=%{{x}}<br>%{{y:.3g}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or None,
        height=460,
        yaxis_type="log",
        xaxis_title="distance k (steps back)",
        yaxis_title="gradient norm",
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def projection_figure(
    table: pd.DataFrame,
    color: str,
    hover: str = "hover",
    title: str = "",
    axes: tuple[str, str] = ("x", "y"),
) -> go.Figure:
    """2-D scatter (WebGL) of projected token states: columns x, y, the ``color`` column and a ``hover`` column.

    Every point carries its table row label as customdata. Drag mode is lasso, so a selection returns the chosen
    points. ``axes`` are the axis titles.
    """
    values = table[color]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    fig = go.Figure()
    if numeric:
        fig.add_trace(
            go.Scattergl(
                x=table["x"],
                y=table["y"],
                mode="markers",
                text=table[hover],
                hovertemplate="%{text}<extra></extra>",
                customdata=table.index.to_numpy(),
                marker={
                    "color": values.astype(np.float32),
                    "colorscale": SEQUENTIAL,
                    "size": 5,
                    "colorbar": {"title": {"text": color}, "thickness": 10},
                },
            )
        )
    else:
        for label, part in table.groupby(values.astype(str), sort=True):
            fig.add_trace(
                go.Scattergl(
                    x=part["x"],
                    y=part["y"],
                    mode="markers",
                    name=str(label),
                    text=part[hover],
                    hovertemplate="%{text}<extra></extra>",
                    customdata=part.index.to_numpy(),
                    marker={"size": 5},
                )
            )
    fig.update_layout(
        title=title or None,
        height=560,
        dragmode="lasso",
        legend_title_text=color,
        xaxis_title=axes[0],
        yaxis_title=axes[1],
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def ranking_figure(
    table: pd.DataFrame, score: str = "score", top: int = 20, title: str = "", center: float = 0.0
) -> go.Figure:
    """Horizontal bars of the ``top`` rows of a ranking (columns name, unit and ``score``), best on top.

    Bars start at ``center`` (chance: 0.5 for an AUC, 0 for a correlation), so a unit that switches off where the
    annotation holds points the other way. Each bar carries its unit as customdata.
    """
    part = table.head(top).iloc[::-1]
    labels = [f"{n} u{u}" for n, u in zip(part["name"], part["unit"], strict=True)]
    values = part[score].to_numpy(np.float64)
    fig = go.Figure(
        go.Bar(
            x=values - center,
            base=center,
            y=labels,
            orientation="h",
            marker={"color": np.where(values >= center, "#d62728", "#1f77b4")},
            customdata=part["unit"],
            text=[f"{v:.3f}" for v in values],
            textposition="none",
            hovertemplate="%{y}<br>" + score + " %{text}<extra></extra>",
        )
    )
    fig.add_vline(x=center, line={"color": "#444", "width": 1})
    fig.update_layout(
        title=title or None,
        height=max(220, 22 * len(part) + 80),
        xaxis_title=score,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


# --- the cell walkthrough -------------------------------------------------------------------------------------

_BOXES = {
    "LSTM": {
        "x": (0, 0),
        "h₋₁": (0, 2),
        "c₋₁": (2, 4),
        "f": (2, 2),
        "i": (3, 2),
        "g": (4, 2),
        "o": (5, 2),
        "c": (4, 4),
        "h": (6, 4),
    },
    "GRU": {"x": (0, 0), "h₋₁": (0, 2), "r": (2, 2), "z": (3, 2), "n": (4, 2), "h": (6, 4)},
    "RNN": {"x": (0, 0), "h₋₁": (0, 2), "h": (4, 2)},
}
_ARROWS = {
    "LSTM": [
        ("x", "f"),
        ("x", "i"),
        ("x", "g"),
        ("x", "o"),
        ("h₋₁", "f"),
        ("h₋₁", "i"),
        ("h₋₁", "g"),
        ("h₋₁", "o"),
        ("c₋₁", "c"),
        ("f", "c"),
        ("i", "c"),
        ("g", "c"),
        ("c", "h"),
        ("o", "h"),
    ],
    "GRU": [
        ("x", "r"),
        ("x", "z"),
        ("x", "n"),
        ("h₋₁", "r"),
        ("h₋₁", "z"),
        ("h₋₁", "h"),
        ("r", "n"),
        ("z", "h"),
        ("n", "h"),
    ],
    "RNN": [("x", "h"), ("h₋₁", "h")],
}
_ROLE = {
    "x": "input part",
    "h₋₁": "previous h",
    "c₋₁": "previous c",
    "f": "forget",
    "i": "input gate",
    "g": "candidate",
    "o": "output gate",
    "c": "cell",
    "h": "hidden",
    "r": "reset",
    "z": "update",
    "n": "candidate",
}


def cell_figure(cell: str, values: Mapping[str, float], title: str = "") -> go.Figure:
    """A diagram of one LSTM / GRU / RNN unit at one step: a box per quantity, coloured and labelled by its value.

    values: quantity → value, with keys among x (the input's contribution to the pre-activation), h₋₁, c₋₁ and
    the cell's kinds (i f g o c h, r z n h, or h). Missing quantities are drawn grey.
    """
    boxes, arrows = _BOXES[cell], _ARROWS[cell]
    fig = go.Figure()
    for a, b in arrows:
        (xa, ya), (xb, yb) = boxes[a], boxes[b]
        fig.add_annotation(
            x=xb,
            y=yb,
            ax=xa,
            ay=ya,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=2,
            arrowsize=1,
            arrowwidth=1.2,
            arrowcolor="#888",
            standoff=26,
            startstandoff=26,
            text="",
        )
    names = list(boxes)
    vals = np.array([values.get(n, np.nan) for n in names], np.float32)
    fig.add_trace(
        go.Scatter(
            x=[boxes[n][0] for n in names],
            y=[boxes[n][1] for n in names],
            mode="markers+text",
            marker={
                "symbol": "square",
                "size": 58,
                "color": vals,
                "colorscale": DIVERGING,
                "cmin": -1,
                "cmax": 1,
                "line": {"color": "#333", "width": 1},
                "colorbar": {"thickness": 10, "title": {"text": "value"}},
            },
            text=[
                f"<b>{n}</b><br>{v:+.2f}" if np.isfinite(v) else f"<b>{n}</b><br>–"
                for n, v in zip(names, vals, strict=True)
            ],
            textfont={"size": 12, "color": np.where(np.abs(np.nan_to_num(vals)) > 0.5, "white", "#222").tolist()},
            customdata=[_ROLE[n] for n in names],
            hovertemplate="%{customdata}: %{marker.color:.4f}<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_layout(
        title=title or None,
        height=380,
        plot_bgcolor="white",
        xaxis={"visible": False, "range": [-0.8, 6.8]},
        yaxis={"visible": False, "range": [-0.8, 4.8]},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def sparklines(series: Mapping[str, np.ndarray], step: int, tokens: Sequence[str] | None = None) -> go.Figure:
    """One small line per quantity over the steps so far (each ``[steps]``), with the current step marked."""
    names = list(series)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.02)
    for r, n in enumerate(names, start=1):
        y = np.asarray(series[n], np.float32)
        fig.add_trace(
            go.Scatter(
                x=np.arange(len(y)),
                y=y,
                mode="lines",
                line={"width": 1.5},
                name=n,
                text=[show_token(t) for t in tokens[: len(y)]] if tokens is not None else None,
                hovertemplate=f"{n} %{{y:.3f}}<br>step %{{x}} %{{text}}<extra></extra>",
            ),
            row=r,
            col=1,
        )
        if 0 <= step < len(y):
            fig.add_trace(
                go.Scatter(
                    x=[step], y=[y[step]], mode="markers", marker={"size": 6, "color": "black"}, hoverinfo="skip"
                ),
                row=r,
                col=1,
            )
        fig.add_vline(x=step, line={"color": "black", "width": 1, "dash": "dot"}, row=r, col=1)
        fig.update_yaxes(title_text=n, title_standoff=2, row=r, col=1)
    steps = max((len(series[n]) for n in names), default=1)
    fig.update_xaxes(range=[-0.5, max(steps - 1, 1) + 0.5])
    fig.update_layout(height=60 * len(names) + 40, showlegend=False, margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig
