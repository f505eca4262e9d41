"""Charts of per-unit and per-distance tables: gate saturation, gradient flow, projections, rankings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lstmviz.dashboard.figures.common import SEQUENTIAL


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
