"""Units × time heatmaps: a window of units, the downsampled whole run, and on-counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lstmviz.dashboard.figures.common import (
    MAX_HOVER_CELLS,
    TRACK_SCALE,
    show_token,
    symmetric_range,
    track_values,
    unit_scale,
)

MAX_TICK_TOKENS = 160
"""Windows up to this many tokens carry one tick label per token (about 8 px each across a wide page)."""


def char_ticks(x: np.ndarray, labels: Sequence[str]) -> dict:
    """x-axis settings that write each token under its column (a space as ␣, so it is seen)."""
    text = ["␣" if t == " " else t for t in labels]
    return {"tickmode": "array", "tickvals": x, "ticktext": text, "tickangle": 0, "tickfont": {"size": 10}}


def units_heatmap(
    values: np.ndarray,
    start: int,
    units: Sequence[int],
    tokens: Sequence[str] | None = None,
    *,
    tracks: pd.DataFrame | None = None,
    span: tuple[int, int] | None = None,
    hit: tuple[int, int] | None = None,
    zrange: tuple[float, float] | None = None,
    title: str = "",
    select: bool = True,
    kind: str = "",
) -> go.Figure:
    """Units × tokens heatmap of a window: values ``[T, U]`` for tokens ``start…start+T-1`` and ``units``.

    ``kind`` (the activation's, e.g. ``"f"``) picks the colours as :func:`unit_scale` does: a gate on 0…1.

    With ``select`` the drag mode is box-select (``dragmode="select"``): a brush returns x (token) and y (unit)
    ranges. ``span`` (a, b) is outlined in black and ``hit`` (a match on show) in green, each when it overlaps
    the window. Annotation ``tracks`` (``[T]`` rows) are drawn in rows below. A window of at most
    :data:`MAX_TICK_TOKENS` tokens has its characters under the x axis.
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
    scale, (lo, hi) = unit_scale(kind, zrange or symmetric_range(values))
    heat = go.Heatmap(
        z=values.T,
        x=x,
        y=list(units),
        customdata=custom,
        hovertemplate=hover,
        colorscale=scale,
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
    for marked, color, dash in ((span, "black", "solid"), (hit, "#2ca02c", "dash")):
        if marked is not None and marked[0] < start + T and marked[1] > start:
            fig.add_vrect(
                x0=max(marked[0], start) - 0.5,
                x1=min(marked[1], start + T) - 0.5,
                line={"color": color, "width": 2, "dash": dash},
                fillcolor="rgba(0,0,0,0)",
                row=1,
                col=1,
            )
    if labels is not None and T <= MAX_TICK_TOKENS:
        fig.update_xaxes(**char_ticks(x, labels), row=1 + n_tracks, col=1)
    fig.update_yaxes(title_text="unit", row=1, col=1)
    fig.update_layout(
        title=title or None,
        height=min(900, 140 + 12 * max(U, 8) + 22 * n_tracks),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        dragmode="select" if select else "zoom",
        selectdirection="h" if select else "any",
    )
    return fig


def overview_figure(
    binned: np.ndarray, per: int, window: tuple[int, int] | None = None, title: str = "", kind: str = ""
) -> go.Figure:
    """The whole run at a glance: ``binned`` ``[bins, U]`` means of ``per`` tokens each; the window is outlined.
    ``kind`` picks the colours as :func:`unit_scale` does (a gate on 0…1)."""
    binned = np.asarray(binned, np.float32)
    x = np.arange(binned.shape[0]) * per
    scale, (lo, hi) = unit_scale(kind, symmetric_range(binned))
    fig = go.Figure(
        go.Heatmap(
            z=binned.T,
            x=x,
            colorscale=scale,
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
