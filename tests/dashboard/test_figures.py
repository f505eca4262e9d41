"""The figure builders make plain plotly figures from arrays: shapes, ranges, casts and layout, without streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz.dashboard import figures


def test_text_figure_wraps_lines_and_colours_by_value():
    tokens = list("ab\ncd")
    fig = figures.text_figure(tokens, np.array([1, -1, 0, 0.5, 2], np.float16), cols=10)
    boxes = fig.data[0]
    assert np.asarray(boxes.marker.color).dtype == np.float32
    assert np.asarray(boxes.marker.color).tolist() == [1, -1, 0, 0.5, 2]
    assert np.asarray(boxes.y).tolist() == [0, 0, 0, 1, 1]  # the newline ends the first line
    assert np.round(np.asarray(boxes.base, float), 2).tolist() == [0.05, 1.05, 2.05, 0.05, 1.05]
    assert list(boxes.text) == ["a", "b", "↵", "c", "d"]
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (-2, 2)
    assert not fig.layout.yaxis.visible  # one document: no labels


def test_text_figure_draws_tracks_under_each_token():
    tokens = list("abcd")
    tracks = pd.DataFrame({"in_string": [False, True, True, False], "kind": ["A", "B", "A", "C"]})
    fig = figures.text_figure(tokens, np.zeros(4), tracks=tracks, cols=2)
    text, in_string, kind, hover = fig.data
    assert np.asarray(in_string.marker.color).tolist() == [0, 1, 1, 0]
    assert np.asarray(kind.marker.color).tolist() == [0, 0.5, 0, 1]
    line = 1 + 2 * figures.TRACK_H
    assert np.asarray(text.y).tolist() == [0, 0, line, line]  # 2 lines of text, each with its 2 tracks under it
    assert all(text.y[j] + 0.5 < in_string.y[j] < kind.y[j] < text.y[j] + line for j in range(4))
    assert [t.split("<br>")[2] for t in hover.customdata] == [f"in_string={v}" for v in tracks["in_string"]]


def test_word_tokens_take_their_own_width_and_never_overlap():
    """The failure this layout fixes: each word squeezed into one character cell, its letters over the next."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
    lay = figures.layout_text(words, cols=16, joiner=" ")
    assert lay.width.tolist() == [len(w) for w in words]
    rows = [[w for w, r in zip(words, lay.row, strict=True) if r == k] for k in range(lay.n_rows)]
    assert rows == [["the", "quick", "brown"], ["fox", "jumps", "over"], ["the", "lazy", "dog"]]
    assert lay.x0[:3].tolist() == [0, 4, 10]  # one cell of space between words, as the text reads
    fig = figures.text_figure(words, np.arange(9.0), joiner=" ", cols=16)
    assert np.round(np.asarray(fig.data[0].x, float), 2).tolist() == [len(w) - 0.1 for w in words]


def test_documents_begin_lines_under_a_rule_and_are_labelled():
    words = ["a", "b", "c", "d", "e"]
    docs = np.array([3, 3, 4, 4, 9])
    lay = figures.layout_text(words, cols=80, joiner=" ", docs=docs)
    assert lay.row.tolist() == [0, 0, 1, 1, 2]
    assert lay.doc_rows == [(0, 3), (1, 4), (2, 9)]
    fig = figures.text_figure(words, np.zeros(5), joiner=" ", docs=docs)
    assert fig.layout.yaxis.visible and list(fig.layout.yaxis.ticktext) == ["doc 3", "doc 4", "doc 9"]
    rules = fig.data[-2]  # under the hover layer
    assert [y for y in rules.y if y is not None] == [0.5, 0.5, 1.5, 1.5]  # between lines 0|1 and 1|2


def test_line_ends_long_tokens_and_missing_values():
    tokens = ["hi", "<eos>", "x" * 30, "ok"]
    lay = figures.layout_text(tokens, cols=10, joiner=" ")
    assert lay.row.tolist() == [0, 0, 1, 2]  # a new line after <eos>; a token wider than a line has its own
    assert lay.x0.tolist() == [0, 3, 0, 0]
    fig = figures.text_figure(tokens, np.array([1, np.nan, 2, 3]), joiner=" ", cols=10)
    assert len(fig.data[0].text) == 3 and list(fig.data[1].text) == ["<eos>"]  # NaN: a grey box of its own
    assert fig.data[1].marker.color == "#bbb" and "value nan" in fig.data[-1].customdata[1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=14), max_size=60),
    st.integers(1, 40),
    st.sampled_from(["", " "]),
    st.lists(st.integers(0, 2), max_size=60),
)
def test_layout_reads_in_order_without_overlap(tokens, cols, joiner, doc_steps):
    """Brute force: every token is on the page in reading order, none overlaps another, none passes the right
    edge unless it is wider than a whole line (and then it is alone), and documents never share a line."""
    docs = np.cumsum((doc_steps + [0] * len(tokens))[: len(tokens)]) if tokens else None
    lay = figures.layout_text(tokens, cols, joiner, docs)
    order = list(zip(lay.row.tolist(), lay.x0.tolist(), strict=True))
    assert order == sorted(order)
    for j in range(1, len(tokens)):
        if lay.row[j] == lay.row[j - 1]:
            assert lay.x0[j] >= lay.x0[j - 1] + lay.width[j - 1] + len(joiner)
            assert docs[j] == docs[j - 1]
    for j in range(len(tokens)):
        alone = np.count_nonzero(lay.row == lay.row[j]) == 1
        assert lay.x0[j] + lay.width[j] <= cols or (alone and lay.x0[j] == 0)
        assert lay.width[j] == max(1, len(figures.show_token(tokens[j])))


def test_units_heatmap_is_box_select_over_tokens():
    values = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float16)
    fig = figures.units_heatmap(values, 100, range(4), list("x" * 30), span=(105, 108))
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (4, 30) and np.asarray(heat.z).dtype == np.float32
    assert list(heat.x[[0, -1]]) == [100, 129]
    assert fig.layout.dragmode == "select"
    shape = fig.layout.shapes[0]
    assert (shape.x0, shape.x1) == (104.5, 107.5)


def test_units_heatmap_adds_track_rows():
    tracks = pd.DataFrame({"depth": np.arange(10)})
    fig = figures.units_heatmap(np.zeros((10, 3)), 0, range(3), tracks=tracks, select=False)
    assert len(fig.data) == 2 and fig.layout.dragmode == "zoom"
    assert np.asarray(fig.data[1].z).max() == 1.0


def test_overview_figure_x_is_token_position():
    fig = figures.overview_figure(np.ones((5, 3)), 200, (400, 600))
    assert list(fig.data[0].x) == [0, 200, 400, 600, 800]
    assert fig.layout.shapes[0].x0 == 400


def test_saturation_figure_one_panel_per_gate_and_a_trace_per_layer():
    table = pd.DataFrame(
        {
            "name": ["a.l0.fwd.f", "a.l1.fwd.f", "a.l0.fwd.i"],
            "layer": [0, 1, 0],
            "kind": ["f", "f", "i"],
            "unit": [0, 0, 0],
            "frac_low": [0.1, 0.2, 0.3],
            "frac_high": [0.5, 0.4, 0.3],
        }
    )
    fig = figures.saturation_figure(table)
    assert [a.text for a in fig.layout.annotations] == ["gate f", "gate i"]
    f_layer0 = fig.data[0]
    assert list(f_layer0.x) == [0.5] and list(f_layer0.y) == [0.1]


def test_gradient_figure_is_log_scale_with_bands():
    table = pd.DataFrame(
        {"series": ["h"] * 3, "k": [0, 1, 2], "mean": [1, 0.1, 0.01], "lo": [0.5, 0.05, 0.005], "hi": [2, 0.2, 0.02]}
    )
    fig = figures.gradient_figure(table)
    assert fig.layout.yaxis.type == "log"
    assert fig.data[0].fill == "toself" and list(fig.data[1].y) == [1, 0.1, 0.01]


def test_projection_figure_uses_webgl_and_lasso():
    table = pd.DataFrame({"x": [0, 1], "y": [1, 0], "c": ["a", "b"], "hover": ["h0", "h1"]})
    fig = figures.projection_figure(table, "c")
    assert {type(t).__name__ for t in fig.data} == {"Scattergl"} and fig.layout.dragmode == "lasso"
    numeric = figures.projection_figure(table.assign(v=[0.5, 1.5]), "v")
    assert len(numeric.data) == 1


def test_cell_figure_marks_missing_values():
    fig = figures.cell_figure("LSTM", {"f": 0.9, "c": -0.4})
    text = {t.split("</b>")[0][3:]: t for trace in fig.data for t in trace.text}
    assert set(text) == {"x", "h₋₁", "c₋₁", "f", "i", "g", "o", "c", "h"}
    assert "+0.90" in text["f"] and "–" in text["i"]


def test_cell_figure_draws_gates_on_zero_to_one_and_states_on_minus_one_to_one():
    """A forget gate at 0.9 is not the far end of a signed scale: the gates have their own 0…1 one."""
    fig = figures.cell_figure("GRU", {"r": 0.9, "z": 0.1, "n": -0.5, "h": 0.2})
    by_box = {t.split("</b>")[0][3:]: trace for trace in fig.data for t in trace.text}
    assert by_box["r"] is by_box["z"] and by_box["n"] is by_box["h"] is not by_box["r"]
    assert (by_box["r"].marker.cmin, by_box["r"].marker.cmax) == (0, 1)
    assert (by_box["h"].marker.cmin, by_box["h"].marker.cmax) == (-1, 1)


def test_token_class_and_hover():
    assert figures.token_class(["a", "1", " ", "\n", "(", '"', ";"]) == [
        "letter",
        "digit",
        "space",
        "newline",
        "bracket",
        "quote",
        "punctuation",
    ]
    tokens = pd.DataFrame(
        {"idx": [0], "token": ["a"], "loss": [1.0], "top_ids": [[1, 0]], "top_p": [[0.6, 0.3]], "depth": [2]}
    )
    (line,) = figures.token_hover(tokens, ["a", "b"], ["depth"])
    assert "depth=2" in line and "next: b:0.60 a:0.30" in line


def test_saturation_figure_tells_directions_apart():
    table = pd.DataFrame(
        {
            "name": ["a.l0.fwd.f", "a.l0.rev.f"],
            "module": ["a", "a"],
            "layer": [0, 0],
            "dir": ["fwd", "rev"],
            "kind": ["f", "f"],
            "unit": [0, 0],
            "frac_low": [0.1, 0.2],
            "frac_high": [0.5, 0.4],
        }
    )
    fig = figures.saturation_figure(table)
    assert [t.name for t in fig.data] == ["layer 0 fwd", "layer 0 rev"]


def test_ranking_figure_bars_start_at_chance():
    table = pd.DataFrame({"name": ["h", "h"], "unit": [3, 1], "auc": [0.1, 0.8]})
    fig = figures.ranking_figure(table, "auc", center=0.5)
    bar = fig.data[0]
    assert bar.base == 0.5
    assert np.allclose(bar.x, [0.3, -0.4]) and list(bar.customdata) == [1, 3]  # best on top: drawn last


def test_code_span_survives_backticks_and_spaces():
    assert figures.code_span("abc") == "`abc`"
    assert figures.code_span("a`b") == "``a`b``"
    assert figures.code_span(" x ") == "`  x  `"
    assert figures.code_span(" ") == "` `"


def test_gate_heatmaps_are_drawn_on_zero_to_one():
    """A gate's window and its downsampled run use the gate scale over exactly 0…1, as its text does; a signed
    kind stays diverging over its symmetric range."""
    gate = np.random.default_rng(0).random((30, 5)).astype(np.float32) * 0.5 + 0.5  # all in [0.5, 1)
    for kind, scale, bounds in (("f", figures.GATE_SCALE, (0.0, 1.0)), ("c", figures.DIVERGING, None)):
        heat = figures.units_heatmap(gate, 0, range(5), kind=kind).data[0]
        over = figures.overview_figure(gate, 3, kind=kind).data[0]
        for trace in (heat, over):
            assert trace.colorscale == go.Heatmap(colorscale=scale).colorscale
            lo, hi = bounds or figures.symmetric_range(gate)
            assert (trace.zmin, trace.zmax) == (lo, hi)


def test_selection_lines_draw_each_unit_its_theta_and_the_marked_spans():
    """One line per selected unit holding its values; θ one dashed line (or a dotted one per unit when θ differs
    by unit) spanning the plot; the span and the hit shaded over the tokens they cover, clipped to the window."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(50, 3)).astype(np.float32)
    fig = figures.selection_lines(values, 100, [4, 9, 2], list("ab" * 25), 0.25, span=(90, 103), hit=(140, 160))
    assert [t.name for t in fig.data] == ["unit 4", "unit 9", "unit 2"]
    for j, trace in enumerate(fig.data):
        np.testing.assert_array_equal(trace.y, values[:, j])
        np.testing.assert_array_equal(trace.x, np.arange(100, 150))
    theta, span, hit = fig.layout.shapes
    assert (theta.type, theta.y0, theta.y1, theta.x0, theta.x1, theta.xref) == ("line", 0.25, 0.25, 0, 1, "x domain")
    assert theta.line.dash == "dash" and fig.layout.annotations[0].text == "θ = 0.25"
    assert (span.type, span.x0, span.x1, span.y0, span.y1, span.yref) == ("rect", 99.5, 102.5, 0, 1, "y domain")
    assert (hit.x0, hit.x1) == (139.5, 149.5)
    per_unit = figures.selection_lines(values, 100, [4, 9, 2], None, np.array([0.1, 0.2, 0.3]))
    assert [s.y0 for s in per_unit.layout.shapes] == pytest.approx([0.1, 0.2, 0.3])
    assert {s.line.dash for s in per_unit.layout.shapes} == {"dot"} and not per_unit.layout.annotations
    outside = figures.selection_lines(values, 100, [4, 9, 2], None, 0.25, span=(10, 20), hit=(150, 160))
    assert len(outside.layout.shapes) == 1  # θ alone: both marks lie outside the window
