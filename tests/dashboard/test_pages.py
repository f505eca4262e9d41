"""AppTest: every page runs on a tiny recorded run without an exception, and widgets change what is drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from lstmviz.dashboard import figures, livetext, pickers, widgets
from lstmviz.store import open_run

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = list(widgets.PAGES)


def app(runs_root: Path, monkeypatch, **params: str) -> AppTest:
    """The app on ``runs_root``, run once (on the Overview page), with URL query parameters."""
    monkeypatch.setenv("LSTMVIZ_RUNS", str(runs_root))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def visit(at: AppTest, page: str) -> AppTest:
    return at.switch_page(widgets.page_file(page)).run()


def figure(at: AppTest, index: int = 0) -> dict:
    """The plotly spec of the index-th chart on the page."""
    charts = [e for e in at.main if getattr(e, "type", "") == "plotly_chart"] or at.get("plotly_chart")
    return json.loads(charts[index].proto.spec)


def type_live(at: AppTest, text: str) -> AppTest:
    """Type ``text`` into live mode's box and pause, as a browser does: through the component's own state."""
    at.session_state[livetext.box_key("live_text")] = {"value": text}
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs(runs_root, monkeypatch, page):
    at = visit(app(runs_root, monkeypatch), page)
    assert_clean(at)
    assert at.title[0].value == widgets.PAGES[page][0]


def test_no_runs_and_no_samples_is_an_empty_state(tmp_path, monkeypatch):
    monkeypatch.setattr("lstmviz.models.samples.SAMPLES_DIR", tmp_path / "none")
    at = app(tmp_path / "empty", monkeypatch)
    assert not at.exception
    assert any("No run is open" in i.value for i in at.info)


def test_corrupt_run_shows_guidance(runs_root, tmp_path, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    at = app(tmp_path, monkeypatch, run=str(bad))
    assert not at.exception
    assert any("corrupt" in e.value for e in at.error)


def test_incomplete_run_shows_guidance(runs_root, tmp_path, monkeypatch):
    bad = tmp_path / "half"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"schema_version": 1, "n_tokens": 3, "activations": []}))
    at = visit(app(tmp_path, monkeypatch, run=str(bad)), "text")
    assert not at.exception
    assert any("incomplete" in e.value for e in at.error)


def test_text_page_unit_and_window_change_the_figures(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "text")
    before = figure(at, 0)["data"][0]["marker"]["color"]
    at.number_input(key="unit").set_value(3).run()
    assert_clean(at)
    assert figure(at, 0)["data"][0]["marker"]["color"] != before
    x0 = figure(at, 1)["data"][0]["x"]
    at.selectbox(key="width").set_value(100).run()
    at.button(key="start_next").click().run()
    assert_clean(at)
    assert at.number_input(key="start").value == 100
    assert figure(at, 1)["data"][0]["x"] != x0
    assert at.query_params["start"] in ("100", ["100"])


def test_text_page_lays_out_words_by_document(word_root, monkeypatch):
    """A word run reads as text: one box per word, as wide as the word, each document on lines of its own."""
    at = visit(app(word_root, monkeypatch, width="100"), "text")
    assert_clean(at)
    spec = figure(at, 0)
    boxes = spec["data"][0]
    tokens = open_run(word_root / "tiny_words").tokens.iloc[:100]
    assert boxes["text"] == tokens["token"].tolist()
    assert spec["layout"]["yaxis"]["ticktext"][:3] == ["doc 0", "doc 1", "doc 2"]
    assert spec["layout"]["xaxis"]["range"] == [0, 90]


def test_url_reproduces_the_view(runs_root, monkeypatch):
    run = str(runs_root / "tiny_gru")
    at = visit(app(runs_root, monkeypatch, run=run, act="rnn.l0.fwd.z", unit="5", start="100", width="100"), "text")
    assert_clean(at)
    assert at.selectbox(key="act").value == "rnn.l0.fwd.z"
    assert at.number_input(key="unit").value == 5
    assert at.number_input(key="start").value == 100


def test_url_names_runs_relative_to_the_root(runs_root, monkeypatch):
    """A copied link says ``?run=tiny_lstm``, not a machine-specific absolute path, and opens that run."""
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "overview")
    assert_clean(at)
    assert at.selectbox(key="run").value == str(runs_root / "tiny_lstm")
    assert at.query_params["run"] in ("tiny_lstm", ["tiny_lstm"])


def test_find_in_text_jumps(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, width="100"), "text")
    at.text_input(key="start_find").input("class Box").run()
    assert_clean(at)
    assert at.number_input(key="start").value == 124 - 100 // 4  # "class Box" starts at token 124
    at.text_input(key="start_find").input("no such text").run()
    assert any("does not occur" in c.value for c in at.caption)


def test_find_next_steps_through_every_occurrence_and_wraps(runs_root, monkeypatch):
    import lstmviz

    text = "".join(lstmviz.open_run(runs_root / "tiny_lstm").tokens["token"].astype(str))  # one char per token
    needle = "self.items"
    hits = [i for i in range(len(text)) if text.startswith(needle, i)]
    assert len(hits) == 6
    at = visit(app(runs_root, monkeypatch, width="100"), "text")
    at.text_input(key="start_find").input(needle).run()
    seen = [at.number_input(key="start").value]
    for _ in hits:
        at.button(key="start_find_next").click().run()
        assert_clean(at)
        seen.append(at.number_input(key="start").value)
    assert seen == [max(h - 25, 0) for h in [*hits, hits[0]]]
    at.number_input(key="start").set_value(0).run()
    at.text_input(key="start_find").input("def add")  # typed, and "Find next" clicked without pressing Enter
    at.button(key="start_find_next").click().run()
    assert at.number_input(key="start").value == max(text.index("def add") - 25, 0)


def test_select_span_and_theta_change_the_selection(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "select")
    assert_clean(at)
    outline = figure(at, 0)["layout"]["shapes"][0]
    first = [m.value for m in at.markdown] + [s.value for s in at.subheader]
    at.number_input(key="span_a").set_value(10).run()
    at.number_input(key="span_b").set_value(12).run()
    assert_clean(at)
    assert figure(at, 0)["layout"]["shapes"][0] != outline
    assert at.query_params["span"] in ("10-12", ["10-12"])
    at.number_input(key="theta").set_value(-1.0).run()  # every unit is on everywhere: no unit is off in the padding
    assert_clean(at)
    assert any("No unit is on" in i.value for i in at.info)
    at.number_input(key="pad_before").set_value(0).run()
    at.number_input(key="pad_after").set_value(0).run()
    assert_clean(at)
    assert [s.value for s in at.success] and [m.value for m in at.markdown] + [s.value for s in at.subheader] != first


def test_select_box_brush_callback_sets_the_span():
    state = {"brush": {"selection": {"box": [{"x": [3.4, 7.6], "y": [0, 5]}], "points": []}}}
    original = st.session_state
    try:
        st.session_state = state  # the callback reads and writes session_state as a mapping
        pickers.set_span_from_box("brush")
    finally:
        st.session_state = original
    assert (state["span_a"], state["span_b"]) == (4, 8)


def test_compare_shows_both_runs(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "compare")
    assert_clean(at)
    assert {s.value for s in at.subheader} >= {"tiny_gru", "tiny_lstm"}


def test_walkthrough_steps(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "walkthrough")
    spec = figure(at, 0)["data"][0]["text"]
    at.button(key="step_fwd").click().run()
    at.button(key="step_fwd").click().run()
    assert_clean(at)
    assert at.number_input(key="step").value == 2
    assert figure(at, 0)["data"][0]["text"] != spec


def test_live_mode_records_typed_text(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "text")
    at.toggle(key="live").set_value(True).run()
    assert any("Type or paste" in i.value for i in at.info)
    type_live(at, "def f(x):\n    return x\n")
    assert_clean(at)
    assert figure(at, 0)["data"][0]["text"][:3] == ["d", "e", "f"]


def shown(widget) -> str:
    """What the browser shows in a widget (first word): the value the backend sends, else the widget's default."""
    proto = widget.proto
    if proto.set_value:
        return str(widget.value)
    return str(widget.options[proto.default] if hasattr(widget, "options") else proto.default).split()[0]


def test_live_mode_widgets_show_the_value_the_page_uses(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "text")
    at.selectbox(key="act").set_value("rnn.l0.fwd.z").run()
    at.number_input(key="unit").set_value(3).run()
    at.toggle(key="live").set_value(True).run()  # no text yet: the page stops before drawing the pickers
    type_live(at, "def f(x):\n    return x\n")
    assert_clean(at)
    assert at.subheader[0].value == "Unit 3 of rnn.l0.fwd.z"
    assert shown(at.selectbox(key="act")) == "rnn.l0.fwd.z"
    assert shown(at.number_input(key="unit")) == "3"


def test_saturation_thresholds_change_the_scatter(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "saturation")
    assert_clean(at)
    spec = figure(at)
    assert [a["text"] for a in spec["layout"]["annotations"]] == ["gate r", "gate z"]  # the GRU run comes first
    before = [(d["x"], d["y"]) for d in spec["data"]]
    at.slider(key="sat_high").set_value(0.6).run()
    at.slider(key="sat_low").set_value(0.3).run()
    assert_clean(at)
    assert [(d["x"], d["y"]) for d in figure(at)["data"]] != before
    assert any("Counted over all" in c.value for c in at.caption)


def test_saturation_of_a_run_without_gates_is_an_empty_state(runs_root, tmp_path, monkeypatch):
    from lstmviz.store import Activation, RunWriter, tokens_frame

    out = tmp_path / "rnn"
    tokens = tokens_frame(list("abcab"), [0, 1, 2, 0, 1])
    with RunWriter(out, tokens, [Activation.from_name("rnn.l0.fwd.h", 4)], {}, overwrite=True) as w:
        w.write("rnn.l0.fwd.h", 0, np.zeros((5, 4), np.float32))
    at = visit(app(tmp_path, monkeypatch, run=str(out)), "saturation")
    assert_clean(at)
    assert any("no sigmoid gates" in i.value for i in at.info)


def test_neuron_search_annotation_changes_the_ranking(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "neurons")
    assert_clean(at)
    spec = figure(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "ROC-AUC"
    at.selectbox(key="track").set_value("in_comment").run()
    assert_clean(at)
    assert figure(at)["data"][0] != spec["data"][0]
    assert "in_comment" in figure(at)["layout"]["title"]["text"]
    at.selectbox(key="track").set_value("bracket_depth").run()
    assert_clean(at)
    assert figure(at)["layout"]["xaxis"]["title"]["text"] == "Pearson r"


def test_neuron_search_scores_a_categorical_annotation_by_value(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "neurons")
    at.selectbox(key="track").set_value("token_type").run()
    assert_clean(at)
    values = at.selectbox(key="track_value").options
    assert len(values) > 1
    first = figure(at)["data"][0]
    at.selectbox(key="track_value").set_value(values[1]).run()
    assert_clean(at)
    assert f"token_type == {values[1]}" in figure(at)["layout"]["title"]["text"]
    assert figure(at)["data"][0] != first


def test_neuron_search_bar_click_picks_the_unit(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "neurons")
    best = at.number_input(key="unit").value
    assert at.subheader[0].value.startswith(f"Unit {best} beside")
    at.number_input(key="unit").set_value((best + 1) % 12).run()
    assert_clean(at)
    assert at.subheader[0].value.startswith(f"Unit {(best + 1) % 12} beside")


def test_projection_colour_and_sample_change_the_map(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "projection")
    assert_clean(at)
    spec = figure(at)
    assert spec["layout"]["xaxis"]["title"]["text"].startswith("PC1 (")
    assert {d["name"] for d in spec["data"]} >= {"letter", "space"}
    assert len({d["marker"]["color"] for d in spec["data"]}) == len(spec["data"])  # one hue per token class
    at.selectbox(key="color").set_value("in_string").run()
    assert_clean(at)
    assert {d["name"]: d["marker"]["color"] for d in figure(at)["data"]} == figures.BOOLEAN_COLORS
    at.selectbox(key="color").set_value("unit value").run()
    assert_clean(at)
    assert len(figure(at)["data"]) == 1 and figure(at)["data"][0]["marker"]["colorbar"]["title"]["text"] == "unit value"
    assert any("all of them are shown" in c.value for c in at.caption)
    at.number_input(key="proj_n").set_value(200).run()
    assert_clean(at)
    assert not any("all of them are shown" in c.value for c in at.caption)


def test_gradient_flow_quantities_and_overlay(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "gradients")
    assert_clean(at)
    names = {(d["legendgroup"], d["name"]) for d in figure(at)["data"] if d.get("name")}
    assert names == {("tiny_gru", "x"), ("tiny_gru", "h l0"), ("tiny_gru", "h l1")}
    at.multiselect(key="grad_q").unselect("x").run()
    assert at.multiselect(key="overlay").options == ["tiny_lstm"]  # the run on show is not offered
    at.multiselect(key="overlay").select("tiny_lstm").run()
    assert_clean(at)
    assert at.query_params["overlay"] in ("tiny_lstm", ["tiny_lstm"])
    curves = [d for d in figure(at)["data"] if d.get("name")]
    groups = {(d["legendgroup"], d["name"]) for d in curves}
    assert groups == {("tiny_gru", f"h l{j}") for j in (0, 1)} | {
        ("tiny_lstm", f"{q} l{j}") for q in "hc" for j in (0, 1)
    }


def test_gradient_flow_overlay_from_the_url_one_hue_per_run_one_dash_per_quantity(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", overlay="tiny_gru"), "gradients")
    assert_clean(at)
    assert at.multiselect(key="overlay").value == ["tiny_gru"]
    spec = figure(at)
    curves = {(d["legendgroup"], d["name"]): d["line"] for d in spec["data"] if d.get("name")}
    assert {g for g, _ in curves} == {"tiny_lstm", "tiny_gru"}
    top = {run: curves[(run, "h l1")]["color"] for run in ("tiny_lstm", "tiny_gru")}
    assert top["tiny_lstm"] != top["tiny_gru"]
    assert curves[("tiny_lstm", "c l1")]["color"] == top["tiny_lstm"]  # one hue per run …
    assert curves[("tiny_lstm", "h l0")]["color"] != top["tiny_lstm"]  # … its lower layer lighter
    assert {curves[("tiny_lstm", n)]["dash"] for n in ("h l1", "c l1", "x")} == {"solid", "dash", "dot"}
    assert spec["layout"]["yaxis"]["exponentformat"] == "power" and spec["layout"]["legend"]["y"] < 0
    bad = visit(app(runs_root, monkeypatch, run="tiny_lstm", overlay="tiny_lstm,nope"), "gradients")
    assert_clean(bad)
    assert any("overlay=tiny_lstm,nope" in w.value for w in bad.warning)


def test_walkthrough_reading_line(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "walkthrough")
    assert_clean(at)
    reading = [m.value for m in at.markdown if m.value.startswith("Reading:")]
    assert reading == ["Reading: **`d`** (token 0)"]  # nothing read before the first token: no empty code span
    at.button(key="step_fwd").click().run()
    reading = [m.value for m in at.markdown if m.value.startswith("Reading:")]
    assert reading == ["Reading: `d` **`e`** (token 1)"]


def test_select_from_its_defaults_selects_units_and_finds_matches(runs_root, monkeypatch):
    import html

    from lstmviz.analysis import select_match as sm
    from lstmviz.analysis.select_defaults import default_threshold
    from lstmviz.dashboard.figures import show_token

    at = visit(app(runs_root, monkeypatch), "select")
    assert_clean(at)
    run = open_run(runs_root / "tiny_gru")
    name = at.selectbox(key="act").value
    fit = default_threshold(run, name)
    assert (at.number_input(key="theta").value, at.toggle(key="theta_q").value) == (fit.value, fit.quantile)
    a, b = at.number_input(key="span_a").value, at.number_input(key="span_b").value
    assert all(t.strip() for t in run.tokens["token"].iloc[a:b])  # a real token span, not spaces
    units = sm.select(run, name, (a, b), fit, 1, 1).units.tolist()
    assert units and any(f"{len(units)} unit(s) selected" in s.value for s in at.success)
    lines = figure(at, 1)
    assert [d["name"] for d in lines["data"]] == [f"unit {u}" for u in units]
    assert lines["layout"]["xaxis"]["ticktext"][a:b] == [show_token(t) for t in run.tokens["token"][a:b]]
    ticks = figure(at, 0)["layout"]
    tick_axis = [v for k, v in ticks.items() if k.startswith("xaxis") and "ticktext" in v]
    assert tick_axis and tick_axis[0]["ticktext"][0] == show_token(run.tokens["token"].iloc[0])
    hits = sm.match(run, name, units, fit, pad_before=1, pad_after=1)
    shown = [h.proto.body for h in at.get("html")]
    assert len(shown) == min(len(hits), 10) >= 1
    marked = html.escape(show_token(hits.iloc[0]["text"]))
    assert f'<mark style="background:#fde68a;font-weight:600">{marked}</mark>' in shown[0]
    assert at.button(key="hit_1").label.endswith("#1")
    last = hits.iloc[min(len(hits), 10) - 1]
    at.button(key=f"hit_{int(last['rank'])}").click().run()  # jump to a match: the window moves, the selection stays
    assert_clean(at)
    assert (at.number_input(key="span_a").value, at.number_input(key="span_b").value) == (a, b)
    assert at.number_input(key="start").value == max(int(last["start"]) - 25, 0)
    assert any(f"{len(units)} unit(s) selected: {', '.join(map(str, units))}" in s.value for s in at.success)
    assert at.button(key=f"hit_{int(last['rank'])}").label.startswith("▶")  # the marker is on the hit on show
    assert at.button(key="hit_1").label.startswith("Show") or len(hits) == 1


def test_projection_lasso_rows_open_the_text_heatmap_there(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch), "projection")
    name = at.selectbox(key="act").value
    assert_clean(at)
    at.session_state["proj_fig"] = {"selection": {"points": [{"customdata": 300}, {"customdata": 310}]}}
    at.run()
    assert_clean(at)
    assert at.subheader[0].value == "2 selected contexts"
    at.session_state["proj_rows"] = {"selection": {"rows": [1], "columns": []}}  # a click on the second row
    at.run()
    assert_clean(at)
    assert at.title[0].value == "Text heatmap"
    assert at.selectbox(key="act").value == name
    assert at.number_input(key="start").value == 310 - 20  # every token is in the map: row label = position


def test_overview_metrics_state_the_recorded_loss_in_bits_and_fit_their_column(runs_root, monkeypatch):
    """The loss metric is the tokens' mean next-token loss in bits; each value is short enough that a quarter
    column (about ten characters at the metric's size) shows it whole."""
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "overview")
    assert_clean(at)
    loss = open_run(runs_root / "tiny_lstm").tokens["loss"].to_numpy(float)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Loss, bits/token"]) == pytest.approx(np.nanmean(loss) / np.log(2), abs=5e-4)
    assert all(len(str(v)) <= 10 for v in metrics.values()), metrics
