"""Charts of per-unit and per-distance tables: gate saturation, gradient flow, projections, rankings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lstmviz.dashboard.figures.common import SEQUENTIAL, show_token
from lstmviz.dashboard.figures.heatmaps import MAX_TICK_TOKENS, char_ticks

QUALITATIVE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
"""Distinct hues (plotly's D3 set without its grey) for categories, runs and units."""
BOOLEAN_COLORS = {"False": "#9e9e9e", "True": "#d62728"}
"""A boolean colour column: the annotation holds in red, elsewhere grey, whatever the order of the groups."""
DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]


def selection_lines(
    values: np.ndarray,
    start: int,
    units: Sequence[int],
    tokens: Sequence[str] | None = None,
    theta: np.ndarray | float = 0.0,
    *,
    span: tuple[int, int] | None = None,
    hit: tuple[int, int] | None = None,
    title: str = "",
) -> go.Figure:
    """LSTMVis's line plot: the selected units over a window, one line each, with θ as a horizontal line.

    values: float ``[T, k]`` for tokens ``start…start+T−1`` and the k ``units``. theta: one θ, or float ``[k]``
    per unit (a quantile θ differs by unit: each is then drawn dotted in its unit's colour). ``span`` is shaded
    grey and ``hit`` green. Windows of at most :data:`MAX_TICK_TOKENS` tokens carry their characters on the x axis.
    """
    values = np.asarray(values, np.float32)
    T = len(values)
    x = np.arange(start, start + T)
    th = np.broadcast_to(np.asarray(theta, np.float32), (len(units),))
    labels = np.asarray([show_token(t) for t in tokens], object) if tokens is not None else None
    traces = []
    for j, u in enumerate(units):
        # one hover box per token lists every line (x unified), so only the first line carries the tokens:
        # plotly copies a trace's customdata object by object, and a window's tokens per line cost the page
        token = labels is not None and j == 0
        traces.append(
            go.Scatter(
                x=x,
                y=values[:, j],
                mode="lines",
                name=f"unit {u}",
                line={"color": QUALITATIVE[j % len(QUALITATIVE)], "width": 1.5, "shape": "hvh"},
                customdata=labels if token else None,
                hovertemplate=("token %{customdata} · " if token else "") + f"unit {u}: %{{y:.3f}}<extra></extra>",
            )
        )
    # shapes written into the layout at once: add_hline / add_vrect each walk every trace's axes (~2 ms apiece)
    shapes, notes = [], []
    if len(th) and np.all(th == th[0]):
        shapes.append(_hline(float(th[0]), {"color": "black", "width": 1, "dash": "dash"}))
        notes.append(
            dict(x=1, xref="paper", xanchor="right", y=float(th[0]), text=f"θ = {th[0]:.3g}", showarrow=False, yshift=8)
        )
    else:
        for j, t in enumerate(th):
            shapes.append(_hline(float(t), {"color": QUALITATIVE[j % len(QUALITATIVE)], "width": 1, "dash": "dot"}))
    for marked, color in ((span, "rgba(0,0,0,0.08)"), (hit, "rgba(44,160,44,0.15)")):
        if marked is not None and marked[0] < start + T and marked[1] > start:
            x0, x1 = max(marked[0], start) - 0.5, min(marked[1], start + T) - 0.5
            shapes.append(
                dict(type="rect", xref="x", yref="y domain", x0=x0, x1=x1, y0=0, y1=1, fillcolor=color, line_width=0)
            )
    fig = go.Figure(data=traces, layout={"shapes": shapes, "annotations": notes})
    if labels is not None and T <= MAX_TICK_TOKENS:
        fig.update_xaxes(**char_ticks(x, labels))
    fig.update_layout(
        title=title or None,
        height=300,
        yaxis_title="value",
        legend={"orientation": "h", "yanchor": "top", "y": -0.12 if T <= MAX_TICK_TOKENS else -0.2},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        hovermode="x unified",
    )
    return fig


def _hline(y: float, line: dict) -> dict:
    """A horizontal line across the plot at ``y``, as ``fig.add_hline`` draws it."""
    return dict(type="line", xref="x domain", yref="y", x0=0, x1=1, y0=y, y1=y, line=line)


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


def _lighter(color: str, amount: float) -> str:
    """``color`` (``#rrggbb``) mixed with white by ``amount`` in [0, 1]."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


QUANTITY_DASH = {"h": "solid", "c": "dash", "x": "dot"}
"""Gradient flow: one line style per quantity, so a run keeps one hue."""


def gradient_figure(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Gradient norm against distance k on a log scale, one line per series with a quantile band.

    table columns: series (e.g. "code_lstm h l1"), k, mean, lo, hi; and optionally run, quantity (h | c | x) and
    layer (−1 for x). Each run has one hue (lower layers lighter), each quantity a line style (h solid, c dashed,
    x dotted); the legend, grouped by run, sits under the plot. The log axis is labelled in powers of ten.
    """
    fig = go.Figure()
    runs = list(dict.fromkeys(table["run"])) if "run" in table else [""]
    top = table.groupby("run")["layer"].max().to_dict() if {"run", "layer"} <= set(table.columns) else {}
    for j, (series, part) in enumerate(table.groupby("series", sort=False)):
        run = part["run"].iloc[0] if "run" in part else ""
        quantity = part["quantity"].iloc[0] if "quantity" in part else ""
        layer = int(part["layer"].iloc[0]) if "layer" in part else -1
        hue = QUALITATIVE[(runs.index(run) if run in runs and run else j) % len(QUALITATIVE)]
        depth = max(int(top.get(run, 0)), 0)
        color = _lighter(hue, 0.5 * (depth - layer) / (depth + 1)) if layer >= 0 else hue
        rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
        label = str(series)[len(str(run)) :].strip() if run and str(series).startswith(str(run)) else str(series)
        group = str(run) or str(series)
        fig.add_trace(
            go.Scatter(
                x=np.r_[part["k"], part["k"][::-1]],
                y=np.r_[part["hi"], part["lo"][::-1]],
                fill="toself",
                fillcolor=f"rgba{(*rgb, 0.12)}",
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=group,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=part["k"],
                y=part["mean"],
                mode="lines",
                name=label,
                legendgroup=group,
                legendgrouptitle_text=str(run) if run else None,
                line={"color": color, "dash": QUANTITY_DASH.get(quantity, DASHES[j % len(DASHES)]), "width": 2},
                hovertemplate=f"{series}<br>k=%{{x}}<br>%{{y:.3e}}<extra></extra>",
            )
        )
    fig.update_yaxes(type="log", exponentformat="power", showexponent="all", title_text="gradient norm")
    fig.update_layout(
        title=title or None,
        height=520,
        xaxis_title="distance k (steps back)",
        legend={"orientation": "h", "yanchor": "top", "y": -0.15, "groupclick": "toggleitem"},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def category_color(label: str, j: int) -> str:
    """The colour of the j-th category (sorted) of a colour column: fixed for True/False, else a distinct hue."""
    return BOOLEAN_COLORS.get(label, QUALITATIVE[j % len(QUALITATIVE)])


def projection_figure(
    table: pd.DataFrame,
    color: str,
    hover: str = "hover",
    title: str = "",
    axes: tuple[str, str] = ("x", "y"),
) -> go.Figure:
    """2-D scatter (WebGL) of projected token states: columns x, y, the ``color`` column and a ``hover`` column.

    A numeric column is drawn on a sequential scale; a boolean or categorical one in distinct hues
    (:func:`category_color`: True red, False grey). Every point carries its table row label as customdata. Drag
    mode is lasso, so a selection returns the chosen points. ``axes`` are the axis titles.
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
        for j, (label, part) in enumerate(table.groupby(values.astype(str), sort=True)):
            fig.add_trace(
                go.Scattergl(
                    x=part["x"],
                    y=part["y"],
                    mode="markers",
                    name=str(label),
                    text=part[hover],
                    hovertemplate="%{text}<extra></extra>",
                    customdata=part.index.to_numpy(),
                    marker={"size": 5, "color": category_color(str(label), j)},
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
