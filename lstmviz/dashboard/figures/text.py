"""The text heatmap: tokens laid out as wrapped text, coloured by one unit, with annotation tracks under each line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lstmviz.dashboard.figures.common import (
    FONT,
    TRACK_SCALE,
    show_token,
    symmetric_range,
    track_values,
    unit_scale,
)

LINE_ENDS = frozenset({"<eos>"})
"""Tokens after which the text goes on in a new line (besides any token holding a newline)."""
TEXT_COLS = {"": 80, " ": 90}
"""Cells per line of the text heatmap, by how tokens join: characters get roomy cells, words narrower ones, so
both read well on a wide page (a 13 px monospace character is about 8 px wide)."""
TRACK_H = 0.4
"""The height of one annotation track under a line, in lines (tall enough for its label on the left)."""


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
    kind: str = "",
    font_size: int = FONT,
    title: str = "",
) -> go.Figure:
    """Karpathy-style text colouring: each token a box coloured by one unit's value, laid out as text.

    tokens ``[T]`` display strings, values ``[T]``, hover ``[T]`` strings (e.g. :func:`token_hover`: the token,
    loss and next-token guesses; its first line should name the token). ``joiner`` is how the tokens join into
    text (``""`` characters, ``" "`` words: see :func:`layout_text`); ``docs [T]`` the document of each token,
    given when the run holds several: each document then begins a line, under a rule, labelled on the left.
    Each column of ``tracks`` (``[T]`` rows, numeric or boolean) is drawn as a thin bar under every token,
    scaled to its own range, its rows labelled with its name on the left. A token without a finite value is a
    grey box. ``kind`` (the activation's kind) picks the colour scale, see :func:`unit_scale`: a gate on 0…1,
    anything else diverging over ``zrange`` (default ±max|value|). ``font_size`` (px) sizes the text, and with
    it the cells: a larger font gets fewer cells per line (``cols`` defaults to :data:`TEXT_COLS` at 13 px).

    Hover lives on one invisible layer drawn last, a box per token spanning its line and the track rows under
    it, so wherever the mouse is over a token it reads the token, its value, each drawn track's value and the
    lines of ``hover``; every visible layer skips hover, so none of them can catch the mouse first.
    """
    values = np.asarray(values, np.float32).reshape(-1)
    cols = cols or max(8, round(TEXT_COLS.get(joiner, TEXT_COLS[" "]) * FONT / font_size))
    n_tracks = 0 if tracks is None else tracks.shape[1]
    lay = layout_text(tokens, cols, joiner, docs)
    line_h = 1 + TRACK_H * n_tracks
    y = lay.row * line_h
    labels = np.array([show_token(t) for t in tokens], object)
    tips = _tips(tokens, values, hover, tracks)
    colorscale, (lo, hi) = unit_scale(kind, zrange or symmetric_range(values))
    finite = np.isfinite(values)
    every = np.ones(len(values), bool)
    traces = [_boxes(lay, finite, y, 0.9, {"color": values[finite], "coloraxis": "coloraxis"}, labels, font_size)]
    if not finite.all():
        traces.append(_boxes(lay, ~finite, y, 0.9, {"color": "#bbb"}, labels, font_size))
    track_y = {}
    for k, column in enumerate(tracks.columns if n_tracks else ()):
        track_y[column] = y + 0.5 + TRACK_H * (k + 0.5)
        marker = {"color": track_values(tracks[column]), "coloraxis": "coloraxis2"}
        traces.append(_boxes(lay, every, track_y[column], TRACK_H * 0.8, marker))
    ticks: dict[float, str] = {}
    if docs is not None and lay.doc_rows:
        ticks.update({r * line_h: f"doc {d}" for r, d in lay.doc_rows})
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
    for column, at in track_y.items():
        ticks.update({float(v): str(column) for v in np.unique(at)})
    traces.append(_hover_layer(lay, y - 0.5 + line_h / 2, line_h, tips))
    layout = dict(
        title=title or None,
        height=max(160, round(2 * font_size * lay.n_rows * line_h) + 80),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        font={"size": font_size},
        coloraxis={
            "colorscale": colorscale,
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
            "tickvals": list(ticks),
            "ticktext": list(ticks.values()),
            "tickfont": {"size": max(9, round(font_size * 0.7)), "color": "#555"},
            "automargin": True,
        },
        plot_bgcolor="white",
        bargap=0,
        barmode="overlay",
        showlegend=False,
        hovermode="closest",
        uniformtext={"mode": "show", "minsize": font_size},
    )
    return go.Figure(traces, layout)


def _tips(
    tokens: Sequence[str], values: np.ndarray, hover: Sequence[str] | None, tracks: pd.DataFrame | None
) -> np.ndarray:
    """object ``[T]``: each token's hover, its first line (the token) first, then its value, the drawn tracks'
    values and the rest of its ``hover`` lines; the token itself when ``hover`` is not given."""
    columns = {} if tracks is None else {str(c): tracks[c].to_numpy() for c in tracks.columns}
    out = np.empty(len(values), object)
    for j, v in enumerate(values):
        head, _, rest = (hover[j] if hover is not None else repr(show_token(tokens[j]))).partition("<br>")
        lines = [head, f"value {v:.3f}", *(f"{c}={a[j]}" for c, a in columns.items()), rest]
        out[j] = "<br>".join(line for line in lines if line)
    return out


def _boxes(
    lay: TextLayout,
    keep: np.ndarray,
    y: np.ndarray,
    thickness: float,
    marker: dict,
    labels: np.ndarray | None = None,
    font_size: int = FONT,
) -> go.Bar:
    """One horizontal bar per kept token (``keep``: bool ``[T]``), spanning its cells less a hair (the gap
    between neighbours), at height ``y [T]``, with the text ``labels [T]`` (object) if given. It never hovers:
    :func:`_hover_layer` does."""
    text = {} if labels is None else {"text": labels[keep], "textposition": "inside", "insidetextanchor": "middle"}
    return go.Bar(
        orientation="h",
        base=lay.x0[keep] + 0.05,
        x=lay.width[keep] - 0.1,
        y=y[keep],
        width=thickness,
        marker={**marker, "line": {"width": 0}},
        hoverinfo="skip",
        textangle=0,
        constraintext="none",
        textfont={"family": "monospace", "size": font_size},
        cliponaxis=False,
        **text,
    )


def _hover_layer(lay: TextLayout, y: np.ndarray, height: float, tips: np.ndarray) -> go.Bar:
    """An invisible bar per token over its full cells and the full ``height`` of its line (centred at ``y [T]``),
    carrying ``tips [T]``: whatever the mouse is over in a token's column of its line, this is what hovers."""
    return go.Bar(
        orientation="h",
        base=lay.x0,
        x=lay.width,
        y=y,
        width=height,
        marker={"color": "rgba(0,0,0,0)", "line": {"width": 0}},
        customdata=tips,
        hovertemplate="%{customdata}<extra></extra>",
        hoverlabel={"font": {"family": "monospace"}},
        showlegend=False,
    )
