"""The Text heatmap page end to end: gate scale, labelled tracks, one hover per token, and projector mode."""

from __future__ import annotations

import pytest
from test_pages import app, assert_clean, figure, visit

from lstmviz.dashboard import figures, sidebar
from lstmviz.store import open_run


@pytest.mark.parametrize(("act", "gate"), [("rnn.l0.fwd.f", True), ("rnn.l1.fwd.i", True), ("rnn.l0.fwd.c", False)])
def test_the_text_of_a_gate_is_coloured_on_zero_to_one(runs_root, monkeypatch, act, gate):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act=act, unit="2"), "text")
    assert_clean(at)
    axis = figure(at)["layout"]["coloraxis"]
    if gate:
        assert (axis["cmin"], axis["cmax"]) == (0, 1)
    else:  # the unit's symmetric range over the whole run, from its stats
        stats = open_run(runs_root / "tiny_lstm").stats
        row = stats[(stats["name"] == act) & (stats["unit"] == 2)].iloc[0]
        m = max(abs(row["min"]), abs(row["max"]))
        assert axis["cmin"] == pytest.approx(-m, rel=1e-3) and axis["cmax"] == pytest.approx(m, rel=1e-3)


def test_tracks_are_labelled_and_hover_once_with_the_token(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", tracks="in_string,bracket_depth"), "text")
    assert_clean(at)
    spec = figure(at)
    assert {"in_string", "bracket_depth"} <= set(spec["layout"]["yaxis"]["ticktext"])
    hovering = [t for t in spec["data"] if t.get("hoverinfo") != "skip" and t["type"] == "bar"]
    assert len(hovering) == 1  # one layer hovers: nothing else can catch the mouse
    tip = hovering[0]["customdata"][0]
    assert tip.count("in_string=") == 1 and "bracket_depth=" in tip and "next: " in tip


def test_neuron_search_text_hovers_each_annotation_once(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "neurons")
    assert_clean(at)
    (text,) = [f for f in (figure(at, k) for k in range(2)) if f["layout"].get("coloraxis2")]
    (hover,) = [t for t in text["data"] if t.get("hoverinfo") != "skip" and t["type"] == "bar"]
    assert all(tip.count("in_string=") == 1 for tip in hover["customdata"])


def test_projector_mode_enlarges_the_page_and_the_figures_and_stays_in_the_url(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "text")
    small = figure(at)
    assert not at.toggle(key="projector").value and "projector" not in at.query_params
    at.toggle(key="projector").set_value(True).run()
    assert_clean(at)
    assert at.query_params["projector"] in ("1", ["1"])
    styles = [h.proto.body for h in at.get("html")]
    assert sidebar.PROJECTOR_CSS in styles
    big = figure(at)
    assert big["data"][0]["textfont"]["size"] == sidebar.PROJECTOR_FONT > small["data"][0]["textfont"]["size"]
    assert big["layout"]["font"]["size"] == sidebar.PROJECTOR_FONT
    assert big["layout"]["xaxis"]["range"][1] < small["layout"]["xaxis"]["range"][1]  # fewer, larger cells
    at.toggle(key="projector").set_value(False).run()
    assert "projector" not in at.query_params and sidebar.PROJECTOR_CSS not in [h.proto.body for h in at.get("html")]
    assert figure(at)["layout"]["font"]["size"] == figures.FONT


def test_projector_mode_from_a_link(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", projector="1"), "walkthrough")
    assert_clean(at)
    assert at.toggle(key="projector").value
    assert figure(at, 0)["layout"]["font"]["size"] == sidebar.PROJECTOR_FONT != figures.FONT
