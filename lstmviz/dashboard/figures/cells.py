"""The cell walkthrough: one step of an LSTM / GRU / RNN cell drawn as boxes and arrows, and unit sparklines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lstmviz.dashboard.figures.common import FONT, show_token, unit_scale
from lstmviz.names import SIGMOID_KINDS

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


def cell_figure(cell: str, values: Mapping[str, float], title: str = "", font_size: int = FONT) -> go.Figure:
    """A diagram of one LSTM / GRU / RNN unit at one step: a box per quantity, coloured and labelled by its value.

    values: quantity → value, with keys among x (the input's contribution to the pre-activation), h₋₁, c₋₁ and
    the cell's kinds (i f g o c h, r z n h, or h). Missing quantities are drawn grey. The gates (i f o, r z) are
    coloured on their own 0…1 scale (:func:`unit_scale`), everything else on −1…1 diverging.
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
    box = round(58 * font_size / FONT)
    for gates in (False, True):
        names = [n for n in boxes if (n in SIGMOID_KINDS) == gates]
        if not names:
            continue
        vals = np.array([values.get(n, np.nan) for n in names], np.float32)
        scale, (lo, hi) = unit_scale("f" if gates else "")
        dark = vals > 0.6 if gates else np.abs(np.nan_to_num(vals)) > 0.5
        fig.add_trace(
            go.Scatter(
                x=[boxes[n][0] for n in names],
                y=[boxes[n][1] for n in names],
                mode="markers+text",
                marker={
                    "symbol": "square",
                    "size": box,
                    "color": vals,
                    "colorscale": scale,
                    "cmin": lo,
                    "cmax": hi,
                    "line": {"color": "#333", "width": 1},
                    "colorbar": {
                        "thickness": 10,
                        "len": 0.45,
                        "y": 0.25 if gates else 0.75,
                        "title": {"text": "gates" if gates else "value"},
                    },
                },
                text=[
                    f"<b>{n}</b><br>{v:+.2f}" if np.isfinite(v) else f"<b>{n}</b><br>–"
                    for n, v in zip(names, vals, strict=True)
                ],
                textfont={"size": round(font_size * 12 / FONT), "color": np.where(dark, "white", "#222").tolist()},
                customdata=[_ROLE[n] for n in names],
                hovertemplate="%{customdata}: %{marker.color:.4f}<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_layout(
        title=title or None,
        height=round(380 * max(1.0, font_size / FONT)),
        plot_bgcolor="white",
        font={"size": font_size},
        xaxis={"visible": False, "range": [-0.8, 6.8]},
        yaxis={"visible": False, "range": [-0.8, 4.8]},
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
    )
    return fig


def sparklines(
    series: Mapping[str, np.ndarray],
    step: int,
    tokens: Sequence[str] | None = None,
    start: int = 0,
    font_size: int = FONT,
) -> go.Figure:
    """One small line per quantity over a stretch of text (each ``[steps]``, token ``start`` first), with step
    ``step`` of it (counted from the stretch's start) marked."""
    names = list(series)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.02)
    for r, n in enumerate(names, start=1):
        y = np.asarray(series[n], np.float32)
        x = start + np.arange(len(y))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"width": 1.5},
                name=n,
                text=[show_token(t) for t in tokens[: len(y)]] if tokens is not None else None,
                hovertemplate=f"{n} %{{y:.3f}}<br>token %{{x}} %{{text}}<extra></extra>",
            ),
            row=r,
            col=1,
        )
        if 0 <= step < len(y):
            fig.add_trace(
                go.Scatter(
                    x=[start + step],
                    y=[y[step]],
                    mode="markers",
                    marker={"size": 6, "color": "black"},
                    hoverinfo="skip",
                ),
                row=r,
                col=1,
            )
        fig.add_vline(x=start + step, line={"color": "black", "width": 1, "dash": "dot"}, row=r, col=1)
        fig.update_yaxes(title_text=n, title_standoff=2, row=r, col=1)
    steps = max((len(series[n]) for n in names), default=1)
    fig.update_xaxes(range=[start - 0.5, start + max(steps - 1, 1) + 0.5])
    fig.update_layout(
        height=round((60 * len(names) + 40) * max(1.0, font_size / FONT)),
        showlegend=False,
        font={"size": font_size},
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return fig
