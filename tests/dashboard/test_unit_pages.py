"""The Unit page and the Units catalogue: they draw the run's cards, and their widgets change what is drawn."""

from __future__ import annotations

from test_pages import app, assert_clean, visit

from lstmviz import open_run


def test_unit_page_shows_contexts_bands_and_neighbours(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.h", unit="3"), "unit")
    assert_clean(at)
    assert at.subheader[0].value == "rnn.l1.fwd.h · unit 3"
    top = open_run(runs_root / "tiny_lstm").top_contexts("rnn.l1.fwd.h", 3)
    shown = [m.value for m in at.markdown if m.value.startswith("`+") or m.value.startswith("`-")]
    assert shown[0].startswith(f"`{top['value'][0]:+.2f}`")
    assert f'title="{int(top["idx"][0])}: ' in shown[0]
    corr = [b for b in at.button if b.key and b.key.startswith("corr_")]
    assert len(corr) == 10


def test_a_correlated_unit_button_opens_that_unit(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l0.fwd.c", unit="0"), "unit")
    first = next(b for b in at.button if b.key and b.key.startswith("corr_"))
    target = int(first.key.split("_")[1])
    at = first.click().run()
    assert_clean(at)
    assert at.subheader[0].value == f"rnn.l0.fwd.c · unit {target}"


def test_measured_effect_on_the_last_layers_h(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.h", unit="2"), "unit")
    assert len(at.dataframe) == 2  # the logit lens: pushed up, pushed down
    at = at.button(key="unit_measure").click().run()
    assert_clean(at)
    assert any("direct" in m.value and "total" in m.value for m in at.markdown)


def test_search_filters_the_catalogue(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "units")
    assert_clean(at)
    every = len(at.dataframe[0].value)
    at.text_input(key="q").input("string").run()
    assert_clean(at)
    hits = at.dataframe[0].value
    assert 0 < len(hits) < every
    assert hits["label"].str.lower().str.contains("string").all()
    at.text_input(key="q").input("no unit is called this").run()
    assert not at.dataframe and "No unit" in at.info[0].value


def test_the_catalogue_search_comes_from_the_url(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", q="string"), "units")
    assert_clean(at)
    hits = at.dataframe[0].value
    assert at.text_input(key="q").value == "string" and hits["label"].str.contains("string").all()
