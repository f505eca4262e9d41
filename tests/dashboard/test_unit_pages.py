"""The Unit page and the Units catalogue: they draw the run's cards, and their widgets change what is drawn."""

from __future__ import annotations

import numpy as np
from test_intervene_page import array
from test_pages import app, assert_clean, figure, visit

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


def direct_delta_loss(runs_root, run_name: str, start: int, stop: int, clamp: dict, span: tuple[int, int]) -> float:
    """Δloss of ``clamp`` over ``span`` of tokens [start, stop), by ``lstmviz.intervene`` and the plain forward."""
    import torch

    import lstmviz
    from lstmviz.dashboard import data

    run = open_run(runs_root / run_name)
    loaded = data.load_model(data.checkpoint_of(run))
    ids = torch.tensor(run.tokens["token_id"].to_numpy()[start:stop])[None]
    with torch.no_grad():
        plain = loaded.call(loaded.module, ids)
        held, _ = lstmviz.intervene(loaded, ids, clamp=clamp, span=span)

    def nll(logits):
        return -torch.log_softmax(logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).mean()

    return float(nll(held) - nll(plain))


def test_intervene_panel_on_the_unit_page_shows_the_libraries_delta_loss(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.c", unit="2", uiv_on="1"), "unit")
    assert_clean(at)
    assert at.toggle(key="uiv_on").value
    begin, width = int(at.number_input(key="uiv_begin").value), int(at.selectbox(key="uiv_width").value)
    also = at.multiselect(key="uiv_also")
    other = also.options[0]
    also.select(other).run()
    at.text_input(key="uiv_more").input("7").run()
    at.number_input(key="uiv_value").set_value(3.0).run()
    at.slider(key="uiv_span").set_value((5, 60)).run()
    assert_clean(at)
    other = int(str(other).split()[0])
    stop = min(begin + width, open_run(runs_root / "tiny_lstm").n_tokens)
    clamp = {"rnn.l1.fwd.c": dict.fromkeys({2, 7, other}, 3.0)}
    want = direct_delta_loss(runs_root, "tiny_lstm", begin, stop, clamp, (5, 60))
    shown = {m.label: m.value for m in at.metric}
    assert float(shown["Δ loss, total (nats per token)"]) == round(want, 4)
    assert "Δ loss, direct (decoder only)" in shown  # the last layer: its held c reaches the decoder through h
    codes = [c.value for c in at.code]
    assert len(codes) == 2 and codes[0] != codes[1]


def test_the_unit_page_warns_of_a_value_the_model_never_sees(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.h", unit="2", uiv_on="1"), "unit")
    assert_clean(at)
    s = open_run(runs_root / "tiny_lstm").stats.set_index(["name", "unit"]).loc[("rnn.l1.fwd.h", 2)]
    assert at.number_input(key="uiv_value").value == float(s["max"])  # the unit fully on
    assert not at.warning
    at.number_input(key="uiv_value").set_value(50.0).run()
    assert not at.exception
    assert "far beyond it" in at.warning[0].value and f"{s['min']:.2f}…{s['max']:.2f}" in at.warning[0].value
    labels = [m.label for m in at.metric]
    assert labels[-2:] == ["Δ loss, total (nats per token)", "Δ loss, direct (decoder only)"]


def test_a_gate_cannot_be_held(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l0.fwd.f", unit="1", uiv_on="1"), "unit")
    assert not at.exception and not at.error
    assert any("Only the recurrent state can be held" in i.value for i in at.info)


def test_the_histogram_spans_the_units_own_values(runs_root, monkeypatch):
    """Not the activation-wide range of stats.parquet, where a small cell state is one spike."""
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l0.fwd.c", unit="4"), "unit")
    assert_clean(at)
    run = open_run(runs_root / "tiny_lstm")
    x = run.activations("rnn.l0.fwd.c", [4])[:, 0].astype(np.float64)
    spec = next(f for f in (figure(at, i) for i in range(3)) if f["layout"]["title"]["text"] == "Histogram")
    centres, counts, widths = (array(spec["data"][0][k]) for k in ("x", "y", "width"))
    lo, hi = centres[0] - widths[0] / 2, centres[-1] + widths[-1] / 2
    assert x.min() - 1e-6 <= lo < hi <= x.max() + 1e-6
    assert counts.sum() == ((x >= lo - 1e-6) & (x <= hi + 1e-6)).sum()
    assert (counts > 0).sum() >= 10  # spread over its bars, not one spike
    row = run.stats.set_index(["name", "unit"]).loc[("rnn.l0.fwd.c", 4)]
    assert (row["hist_hi"] - row["hist_lo"]) > 2 * (x.max() - x.min())  # the old range was the wrong one here
