"""AppTest: the Intervene page on the tiny LSTM and GRU runs: Δ log p text, Δ loss, and the two generations."""

from __future__ import annotations

import base64

import numpy as np
import torch
from test_pages import app, assert_clean, figure, visit

from lstmviz.causal import effects
from lstmviz.dashboard import data


def array(value) -> np.ndarray:
    """A plotly array from a figure's JSON: a list, or a typed array ``{dtype, bdata (base64), shape}``."""
    if not isinstance(value, dict):
        return np.asarray(value, dtype=float)
    flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return flat.reshape([int(s) for s in str(value.get("shape", len(flat))).split(",")])


def open_page(runs_root, monkeypatch, run: str):
    return visit(app(runs_root, monkeypatch, run=run), "intervene")


def test_intervene_page_shows_the_change_and_two_generations(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "tiny_lstm")
    assert_clean(at)
    at.selectbox(key="iv_act").set_value("rnn.l1.fwd.c").run()
    at.text_input(key="iv_units").input("2, 5").run()
    at.number_input(key="iv_value").set_value(3.0).run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert labels == ["Δ loss, total (nats per token)", "Δ loss, direct (decoder only)"]
    # The coloured text is the library's own per-token answer for this window.
    run, _ = data.load_run(str(runs_root / "tiny_lstm"))
    loaded = data.load_model(data.checkpoint_of(run))
    width = int(at.selectbox(key="width").value)
    ids = torch.tensor(run.tokens["token_id"].to_numpy()[:width])
    fx = effects(loaded, ids, {"rnn.l1.fwd.c": {2: 3.0, 5: 3.0}}, direct=False)
    shown = array(figure(at)["data"][0]["marker"]["color"])  # one box per token, in order
    np.testing.assert_allclose(shown[1 : len(ids)], fx.delta_logp()[0].numpy(), atol=1e-5)
    assert float(at.metric[0].value) == round(fx.delta_loss(), 4)
    codes = [c.value for c in at.code]
    assert len(codes) == 2 and codes[0] != codes[1]
    prompt = at.text_area(key="iv_prompt").value  # a text area: a one-line input drops the prompt's newlines
    assert "\n" in prompt and codes[0].startswith(prompt)


def test_a_lower_layer_and_a_gru_show_the_total_effect_only(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "tiny_gru")
    at.selectbox(key="iv_act").set_value("rnn.l0.fwd.h").run()
    at.selectbox(key="iv_kind").set_value("mean").run()
    assert_clean(at)
    assert [m.label for m in at.metric] == ["Δ loss, total (nats per token)"]
    assert all(o != "rnn.l0.fwd.c" for o in at.selectbox(key="iv_act").options)


def test_bad_units_are_a_guided_error(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "tiny_lstm")
    at.text_input(key="iv_units").input("two").run()
    assert not at.exception
    assert "is not a list of unit numbers" in at.error[0].value
    at.text_input(key="iv_units").input("99").run()
    assert not at.exception
    assert "has units 0…11; got unit 99" in at.error[0].value


def test_the_url_holds_the_clamp(runs_root, monkeypatch):
    """A link reproduces the intervention: units, kind and value come from the URL and go back to it."""
    params = {"iv_act": "rnn.l1.fwd.c", "iv_units": "2,5", "iv_kind": "number", "iv_value": "3.0"}
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", **params), "intervene")
    assert_clean(at)
    assert at.text_input(key="iv_units").value == "2,5"
    assert at.number_input(key="iv_value").value == 3.0
    run, _ = data.load_run(str(runs_root / "tiny_lstm"))
    width = int(at.selectbox(key="width").value)
    ids = torch.tensor(run.tokens["token_id"].to_numpy()[:width])
    fx = effects(data.load_model(data.checkpoint_of(run)), ids, {"rnn.l1.fwd.c": {2: 3.0, 5: 3.0}}, direct=False)
    assert float(at.metric[0].value) == round(fx.delta_loss(), 4)
    at.selectbox(key="iv_kind").set_value("zero").run()
    at.text_input(key="iv_units").input("5, 1").run()
    assert_clean(at)
    assert at.query_params["iv_kind"] in ("zero", ["zero"])
    assert at.query_params["iv_units"] in ("1,5", ["1,5"])


def test_a_word_model_shows_words_and_continues_a_word_prompt(word_root, monkeypatch):
    at = open_page(word_root, monkeypatch, "tiny_words")
    assert_clean(at)
    run, _ = data.load_run(str(word_root / "tiny_words"))
    words = run.tokens["token"].astype(str).tolist()
    assert at.text_area(key="iv_prompt").value == " ".join(words[:40])  # words, not glued characters
    shown = figure(at)["data"][0]["text"]
    assert shown[:5] == words[:5]
    codes = [c.value for c in at.code]
    assert len(codes) == 2 and all(c.startswith(" ".join(words[:40])) for c in codes)
