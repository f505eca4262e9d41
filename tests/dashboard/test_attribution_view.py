"""AppTest: the Text heatmap's attribution view shows lstmviz.attribute's scores for the chosen position and target,
read from the start of the token's recording stream, and its state round-trips through the URL."""

from __future__ import annotations

import numpy as np
import pytest
from test_intervene_page import array
from test_pages import app, assert_clean, figure, visit

from lstmviz.causal import attribute
from lstmviz.dashboard import attributing, attribution_panel, data, figures


def in_second_stream(run) -> tuple[int, int]:
    """(a token of the second recording stream, that stream's first token), from the recorder's split."""
    streams = run.manifest["recording"]["streams"]
    assert streams == 2
    length = -(-run.n_tokens // streams)
    return length + 37, length


def test_scores_shown_are_the_library_scores_for_a_top_5_target(runs_root, monkeypatch):
    run, _ = data.load_run(str(runs_root / "tiny_lstm"))
    idx, first = in_second_stream(run)
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", start=str(idx - 50), width="100"), "text")
    at.toggle(key="attr").set_value(True).run()
    at.number_input(key="attr_at").set_value(idx).run()
    assert_clean(at)
    top = [int(i) for i in run.tokens["top_ids"].iat[idx]]
    at.selectbox(key="attr_target").set_value(str(top[1])).run()
    assert_clean(at)
    loaded = data.load_model(data.checkpoint_of(run))
    ids = run.tokens["token_id"].to_numpy()[first : idx + 2]
    a = attribute(loaded, ids, idx - first, top[1], window=attributing.DEFAULT_WINDOW, max_steps=512)
    # The model read the token as the recording did: its log p is the recorded top-5 probability.
    assert np.exp(a.logp) == pytest.approx(float(run.tokens["top_p"].iat[idx][1]), abs=1e-5)
    shown = array(figure(at, 1)["data"][0]["marker"]["color"]).astype(float)  # one box per token shown
    upto = idx - first + 1  # the whole stream so far (shorter than attributing.MAX_SHOWN), then the window's rest
    assert len(shown) == upto + min(attribution_panel.AFTER, idx + 50 - idx - 1)
    np.testing.assert_allclose(shown[:upto], a.scores[:upto], atol=1e-6)
    assert np.all(shown[upto:] == 0)
    assert np.count_nonzero(shown) == attributing.DEFAULT_WINDOW
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["log p(target)"]) == round(a.logp, 4)
    assert metrics["Completeness gap"] == f"{100 * a.relative_delta:.2f} %"

    at.selectbox(key="attr_method").set_value("gxi").run()
    at.selectbox(key="attr_target").set_value("next").run()
    assert_clean(at)
    g = attribute(loaded, ids, idx - first, method="grad_x_input", window=attributing.DEFAULT_WINDOW)
    assert g.target == int(run.tokens["token_id"].iat[idx + 1])
    shown = array(figure(at, 1)["data"][0]["marker"]["color"]).astype(float)
    np.testing.assert_allclose(shown[:upto], g.scores[:upto], atol=1e-6)
    assert [m.label for m in at.metric] == ["log p(target)", "Σ scores"]


def test_the_url_round_trip(runs_root, monkeypatch):
    run, _ = data.load_run(str(runs_root / "tiny_gru"))
    idx, _ = in_second_stream(run)
    target = str(int(run.tokens["top_ids"].iat[idx][2]))
    params = {"attr": "1", "attr_at": str(idx), "attr_target": target, "attr_method": "gxi", "attr_window": "7"}
    at = visit(app(runs_root, monkeypatch, run="tiny_gru", start=str(idx - 20), width="100", **params), "text")
    assert_clean(at)
    assert at.toggle(key="attr").value is True
    assert at.number_input(key="attr_at").value == idx
    assert at.selectbox(key="attr_target").value == target
    assert at.selectbox(key="attr_method").value == "gxi"
    assert at.number_input(key="attr_window").value == 7
    z = array(figure(at, 1)["data"][0]["marker"]["color"]).astype(float)
    assert np.count_nonzero(z[~np.isnan(z)]) == 7
    at.selectbox(key="attr_method").set_value("ig").run()
    at.number_input(key="attr_window").set_value(12).run()
    assert_clean(at)
    for k, v in {**params, "attr_method": "ig", "attr_window": "12"}.items():
        assert at.query_params[k] in (v, [v]), k


def test_a_position_outside_the_window_is_clamped_with_a_warning(runs_root, monkeypatch):
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", start="0", width="100", attr="1", attr_at="5000"), "text")
    assert not at.exception
    assert at.number_input(key="attr_at").value == 99
    assert any("attr_at=5000" in w.value for w in at.warning)


def test_each_token_has_a_marker_on_its_cell_naming_its_position():
    """The click layer: marker j sits on the box that shows token j and carries its corpus position."""
    tokens = list("def f(x):\n    return (x + 1)\n") * 3
    scores = np.linspace(-1, 1, 40)
    fig = attributing.figure(tokens, scores, 500, 20)
    boxes, marks = fig.data[0], fig.data[-1]
    assert list(marks.customdata) == list(range(500, 500 + len(tokens)))
    starts, widths, rows = np.asarray(boxes.base), np.asarray(boxes.x), np.asarray(boxes.y)
    for j, (mx, my) in enumerate(zip(marks.x, marks.y, strict=True)):  # every token has a finite value: one box each
        assert starts[j] < mx < starts[j] + widths[j] and rows[j] == my
        assert boxes.text[j] == figures.show_token(tokens[j])
    values = np.asarray(boxes.marker.color, dtype=float)
    np.testing.assert_allclose(values[:40], scores, atol=1e-6)
    assert list(values[40:]) == [0] * (len(tokens) - 40)
    box = fig.layout.shapes[0]
    assert box.x0 < marks.x[39] < box.x1 and box.y0 < marks.y[39] < box.y1  # the position, outlined
