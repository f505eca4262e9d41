"""Live mode on the Text heatmap: the prompt view (units unusual on the typed text, each a link to its card) and the
intervene panel on the typed text, against the library computed directly."""

from __future__ import annotations

import torch
from test_pages import app, assert_clean, figure, type_live, visit

import lstmviz
from lstmviz.analysis import units
from lstmviz.dashboard import data, live

TYPED = 'x = "a string" + "another"\nprint((x, [x]))\n'
NAME = "rnn.l0.fwd.h"


def live_page(runs_root, monkeypatch, text: str = TYPED, **params: str):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", act=NAME, **params), "text")
    at.toggle(key="live").set_value(True).run()
    return type_live(at, text)


def recorded(text: str):
    """The typed text as live mode records it, read back: its run."""
    corpus, _ = data.load_run(data.runs_root() / "tiny_lstm")
    return lstmviz.open_run(live._live_run(live.live_model(corpus), text, "code")), corpus


def test_the_prompt_view_ranks_units_against_the_corpus_and_links_to_cards(runs_root, monkeypatch):
    at = live_page(runs_root, monkeypatch)
    assert_clean(at)
    shown = [int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("unusual_")]
    live, corpus = recorded(TYPED)
    x = live.activations(NAME)
    assert x.shape[0] == len(TYPED)
    want = units.unusual(corpus, NAME, x)["unit"].tolist()
    assert shown == want[: len(shown)] and len(shown) == min(12, corpus.units(NAME))
    table = units.catalogue(corpus)  # once built (the Units page builds it), each row shows the unit's label
    label = table[(table["name"] == NAME) & (table["unit"] == shown[0])]["label"].iloc[0]
    at.run()
    row = next(m.value for m in at.markdown if m.value.startswith("lift "))
    assert label and row.endswith(f"*{label}*")
    at = at.button(key=f"unusual_{shown[0]}").click().run()
    assert_clean(at)
    assert at.title[0].value == "Unit" and at.subheader[0].value == f"{NAME} · unit {shown[0]}"


def test_the_intervene_panel_on_typed_text_shows_the_libraries_delta_loss(runs_root, monkeypatch):
    at = live_page(runs_root, monkeypatch, unit="3")
    at.toggle(key="liv_on").set_value(True).run()
    assert_clean(at)
    at.number_input(key="liv_value").set_value(2.5).run()
    assert at.multiselect(key="liv_also").options  # the unit's correlated units over the corpus
    at.text_input(key="liv_more").input("1").run()
    assert_clean(at)
    corpus, _ = data.load_run(runs_root / "tiny_lstm")
    loaded = data.load_model(data.checkpoint_of(corpus))
    ids = torch.tensor(loaded.tokenizer.encode(TYPED))[None]
    with torch.no_grad():
        plain = loaded.call(loaded.module, ids)
        held, _ = lstmviz.intervene(loaded, ids, clamp={NAME: {1: 2.5, 3: 2.5}})

    def nll(logits):
        return -torch.log_softmax(logits[0, :-1].double(), -1).gather(1, ids[0, 1:, None]).mean()

    total = next(m for m in at.metric if m.label == "Δ loss, total (nats per token)")
    assert float(total.value) == round(float(nll(held) - nll(plain)), 4)
    codes = [c.value for c in at.code]
    assert len(codes) == 2 and codes[0].startswith(TYPED[:40])


def test_the_mean_of_a_live_clamp_is_the_corpus_mean(runs_root, monkeypatch):
    at = live_page(runs_root, monkeypatch, unit="3")
    at.toggle(key="liv_on").set_value(True).run()
    at.selectbox(key="liv_kind").set_value("mean").run()
    assert_clean(at)
    corpus, _ = data.load_run(runs_root / "tiny_lstm")
    mean = float(corpus.stats.set_index(["name", "unit"]).loc[(NAME, 3), "mean"])
    loaded = data.load_model(data.checkpoint_of(corpus))
    ids = torch.tensor(loaded.tokenizer.encode(TYPED))
    fx = lstmviz.effects(loaded, ids, {NAME: {3: mean}}, direct=False)
    total = next(m for m in at.metric if m.label == "Δ loss, total (nats per token)")
    assert float(total.value) == round(fx.delta_loss(), 4)


def test_a_new_text_is_recorded_again(runs_root, monkeypatch):
    """The box commits after a pause (in the browser); each new text is recorded and drawn, the view follows it."""
    at = live_page(runs_root, monkeypatch, text="abc = 1\n")
    assert_clean(at)
    assert figure(at, 0)["data"][0]["text"][:3] == ["a", "b", "c"]
    first = [b.key for b in at.button if b.key and b.key.startswith("unusual_")]
    at = type_live(at, "xyz = [(2)]\n")
    assert_clean(at)
    assert figure(at, 0)["data"][0]["text"][:3] == ["x", "y", "z"]
    live, corpus = recorded("xyz = [(2)]\n")
    assert live.n_tokens == len("xyz = [(2)]\n")
    shown = [int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("unusual_")]
    assert shown == units.unusual(corpus, NAME, live.activations(NAME))["unit"].tolist()[: len(shown)]
    assert at.session_state["live_text"] == "xyz = [(2)]\n" and first
