"""The text heatmap as a reader meets it: what hovering a token shows, which rows are labelled, how gates are scaled.

The oracle for hover is geometry: each bar of the figure is a rectangle in data coordinates, so the trace a mouse
meets at a point is the topmost (last drawn) trace with a bar there that does not skip hover.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from lstmviz import names
from lstmviz.dashboard import figures

TOKENS = list("def f(x):\n    return 'ab' + x\n")
VOCAB = sorted(set(TOKENS))


def token_table() -> pd.DataFrame:
    """A window of the tokens table as a run stores it: annotations, loss and top-5 next tokens."""
    n = len(TOKENS)
    rng = np.random.default_rng(0)
    top = [list(rng.permutation(len(VOCAB))[:5]) for _ in range(n)]
    return pd.DataFrame(
        {
            "idx": np.arange(100, 100 + n),
            "token": TOKENS,
            "in_string": [c in "ab'" for c in TOKENS],
            "depth": np.cumsum([(c == "(") - (c == ")") for c in TOKENS]),
            "loss": rng.random(n),
            "top_ids": top,
            "top_p": [sorted(rng.random(5) / 5, reverse=True) for _ in range(n)],
        }
    )


def expanded(scale: str) -> tuple:
    """A named plotly colour scale as a figure stores it: ((position, colour), …)."""
    return go.layout.Coloraxis(colorscale=scale).colorscale


def bars(fig) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(trace index, x0, x1, y0, y1) ``[bars]`` of every bar trace, in drawing order."""
    out = []
    for k, t in enumerate(fig.data):
        if t.type != "bar":
            continue
        x0 = np.asarray(t.base, float)
        y = np.asarray(t.y, float)
        out.append((k, x0, x0 + np.asarray(t.x, float), y - t.width / 2, y + t.width / 2))
    return out


def hover_at(fig, x: float, y: float) -> str | None:
    """The hover text of the topmost trace that hovers at data point (x, y), None when nothing hovers there."""
    for k, x0, x1, y0, y1 in reversed(bars(fig)):
        trace = fig.data[k]
        if trace.hoverinfo == "skip":
            continue
        hit = np.flatnonzero((x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1))
        if len(hit):
            return str(trace.customdata[hit[-1]])
    return None


def test_every_point_of_a_token_and_its_tracks_hovers_with_token_value_annotations_and_top5():
    """The failure this fixes: the track bars caught the mouse under each token and told only their own value."""
    table = token_table()
    values = np.linspace(-1, 1, len(TOKENS)).astype(np.float32)
    tracks = table[["in_string", "depth"]]
    fig = figures.text_figure(TOKENS, values, hover=figures.token_hover(table, VOCAB), tracks=tracks, cols=12)
    lay = figures.layout_text(TOKENS, 12)
    line_h = 1 + figures.TRACK_H * 2
    for j, token in enumerate(TOKENS):
        cx = lay.x0[j] + lay.width[j] / 2
        top, bottom = lay.row[j] * line_h - 0.45, lay.row[j] * line_h - 0.5 + line_h - 0.01
        for y in np.linspace(top, bottom, 9):  # from the top of the token's box down through its track rows
            tip = hover_at(fig, cx, y)
            assert tip is not None, (j, y)
            row = table.iloc[j]
            assert tip.startswith(f"#{row.idx} {figures.show_token(token)!r}"), tip
            assert f"value {values[j]:.3f}" in tip
            assert f"in_string={row.in_string}" in tip and f"depth={row.depth}" in tip
            top5 = " ".join(
                f"{figures.show_token(VOCAB[i])}:{p:.2f}" for i, p in zip(row.top_ids, row.top_p, strict=True)
            )
            assert tip.endswith(f"next: {top5}"), tip


def test_without_hover_lines_a_token_still_hovers_with_itself_and_its_annotations():
    tracks = pd.DataFrame({"in_string": [False, True, False]})
    fig = figures.text_figure(list("a'b"), np.array([0.5, 0.25, 0.0]), tracks=tracks, cols=10)
    assert hover_at(fig, 1.5, 0.0).split("<br>") == [repr("'"), "value 0.250", "in_string=True"]


def test_hover_is_on_the_text_even_without_tracks_and_with_missing_values():
    fig = figures.text_figure(["hi", "<eos>", "ok"], np.array([1, np.nan, 2]), joiner=" ", cols=10)
    assert hover_at(fig, 4.5, 0.0).split("<br>") == ["'<eos>'", "value nan"]
    assert hover_at(fig, 1.0, 0.0).split("<br>") == ["'hi'", "value 1.000"]


def test_each_track_row_of_each_line_is_labelled_with_its_track():
    tracks = pd.DataFrame({"in_string": [False] * 5, "bracket_depth": np.arange(5)})
    fig = figures.text_figure(list("abcde"), np.zeros(5), tracks=tracks, cols=2)
    ticks = dict(zip(np.round(fig.layout.yaxis.tickvals, 6), fig.layout.yaxis.ticktext, strict=True))
    assert fig.layout.yaxis.visible
    for k, column in enumerate(tracks.columns):
        track = fig.data[-len(tracks.columns) - 1 + k]  # the track bars, drawn before the hover layer
        for y in np.unique(np.round(np.asarray(track.y, float), 6)):
            assert ticks[y] == column  # one label at the height of every row of this track
    rows = figures.layout_text(list("abcde"), 2).n_rows
    assert sum(t in tracks.columns for t in ticks.values()) == rows * len(tracks.columns)


def test_documents_and_tracks_are_labelled_together():
    fig = figures.text_figure(list("abcd"), np.zeros(4), tracks=pd.DataFrame({"t": [1, 2, 3, 4]}), docs=[0, 0, 1, 1])
    assert [t for t in fig.layout.yaxis.ticktext if t.startswith("doc")] == ["doc 0", "doc 1"]
    assert list(fig.layout.yaxis.ticktext).count("t") == 2


@pytest.mark.parametrize("kind", sorted(names.SIGMOID_KINDS))
def test_a_gate_is_drawn_on_a_zero_to_one_sequential_scale(kind):
    """The failure this fixes: a forget gate at 0.95 everywhere was drawn at the red end of −1…1."""
    values = np.full(6, 0.95, np.float32)
    fig = figures.text_figure(list("abcdef"), values, kind=kind, zrange=(-0.97, 0.97))
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == (0, 1)
    assert axis.colorscale == expanded(figures.unit_scale(kind)[0]) != expanded(figures.DIVERGING)
    colours = [c for _, c in axis.colorscale]
    assert colours[0] != colours[-1] and len(set(colours)) == len(colours)  # one hue, light to dark: sequential


@pytest.mark.parametrize("kind", ["g", "c", "h", "n", "hp", ""])
def test_other_kinds_are_diverging_around_zero(kind):
    values = np.array([-0.2, 3.0, 1.0], np.float32)
    fig = figures.text_figure(list("abc"), values, kind=kind)
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-3, 3)
    assert fig.layout.coloraxis.colorscale == expanded(figures.DIVERGING)
    assert figures.unit_scale(kind, (-5.0, 2.0)) == (figures.DIVERGING, (-5.0, 2.0))


def test_unit_scale_ignores_a_gates_observed_range():
    scale, (lo, hi) = figures.unit_scale("f", (0.4, 0.6))
    assert (lo, hi) == (0.0, 1.0) and scale == figures.GATE_SCALE


def test_a_larger_font_gets_fewer_cells_per_line_and_taller_lines():
    tokens = list("x" * 200)
    small = figures.text_figure(tokens, np.zeros(200))
    big = figures.text_figure(tokens, np.zeros(200), font_size=26)
    assert big.layout.xaxis.range[1] == figures.TEXT_COLS[""] // 2
    assert big.data[0].textfont.size == 26 and big.layout.height > 2 * small.layout.height - 200
