"""Start here and the one current unit: the cards link to their views, and a unit picked on one page is the unit
of every other page, in the session and in the URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from streamlit.testing.v1 import AppTest
from test_pages import APP, assert_clean, visit

from lstmviz.analysis import lessons
from lstmviz.analysis.gradients import gradient_flow
from lstmviz.dashboard import data, prepare, widgets


@pytest.fixture(scope="module")
def lesson_root(runs_root: Path, tmp_path_factory) -> Path:
    """A runs root where the tiny LSTM and GRU stand in for code_lstm and code_rnn (links, as an operator may
    place them), and parens_lstm is missing."""
    root = tmp_path_factory.mktemp("lessons") / "runs"
    root.mkdir()
    (root / "code_lstm").symlink_to(runs_root / "tiny_lstm")
    (root / "code_rnn").symlink_to(runs_root / "tiny_gru")
    return root


def start(root: Path, monkeypatch, **params: str) -> AppTest:
    monkeypatch.setenv("LSTMVIZ_RUNS", str(root))
    monkeypatch.setattr(prepare, "ensure", lambda root, **options: None)  # the root holds sample names: no preparer
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def follow(at: AppTest, link) -> AppTest:
    """What clicking a page link does: the page, with the link's query parameters in the URL."""
    at.switch_page(widgets.page_file(link.proto.page))
    for k in list(at.query_params):
        del at.query_params[k]
    for k, v in parse_qsl(link.proto.query_string):
        at.query_params[k] = v
    return at.run()


def test_the_root_opens_start_here_with_a_card_per_lesson(lesson_root, monkeypatch):
    at = start(lesson_root, monkeypatch)
    assert_clean(at)
    assert at.title[0].value == "Start here"
    assert sorted(s.value for s in at.subheader) == sorted(lessons.TITLES.values())
    assert any("parens_lstm" in i.value and "lstmviz samples" in i.value for i in at.info)
    links = at.get("page_link")
    assert links and all(link.proto.page in widgets.PAGES for link in links)
    assert len(links) + len(at.info) == len(lessons.TITLES)


def test_the_string_card_opens_the_unit_page_on_the_found_unit(lesson_root, monkeypatch):
    at = start(lesson_root, monkeypatch)
    link = next(link for link in at.get("page_link") if link.proto.page == "unit")
    params = dict(parse_qsl(link.proto.query_string))
    found = lessons.best_unit(data.run_of(data.ref(lesson_root / "code_lstm")), "in_string")
    assert (params["act"], int(params["unit"])) == (found["name"], found["unit"])
    at = follow(at, link)
    assert_clean(at)
    assert at.subheader[0].value == f"{found['name']} · unit {found['unit']}"


def test_a_unit_picked_on_one_page_is_the_unit_of_every_page(runs_root, monkeypatch):
    monkeypatch.setenv("LSTMVIZ_RUNS", str(runs_root))
    at = visit(AppTest.from_file(APP, default_timeout=120).run(), "text")
    at.selectbox(key="act").set_value("rnn.l0.fwd.h").run()
    at.number_input(key="unit").set_value(7).run()
    for page in ("walkthrough", "unit", "neurons", "text"):
        at = visit(at, page)
        assert_clean(at)
        assert at.selectbox(key="act").value == "rnn.l0.fwd.h", page
        assert at.number_input(key="unit").value == 7, page
        assert at.query_params["unit"] in ("7", ["7"]), page
    at.number_input(key="unit").set_value(4).run()  # picked on the walkthrough's neighbour, seen on the walkthrough
    at = visit(at, "walkthrough")
    assert at.number_input(key="unit").value == 4
    at = visit(at, "overview")  # a page without a unit still names it in its URL
    assert at.query_params["unit"] in ("4", ["4"]) and at.query_params["act"] in ("rnn.l0.fwd.h", ["rnn.l0.fwd.h"])
    at = visit(at, "intervene")  # a picker of its own opens on the current activation
    assert at.selectbox(key="iv_act").value == "rnn.l0.fwd.h"


def test_a_link_followed_mid_session_wins_over_the_session(runs_root, monkeypatch):
    monkeypatch.setenv("LSTMVIZ_RUNS", str(runs_root))
    at = visit(AppTest.from_file(APP, default_timeout=120).run(), "text")
    at.number_input(key="unit").set_value(3).run()
    at.query_params["unit"] = "9"  # as a lesson's link or an edited address does
    at.run()
    assert at.number_input(key="unit").value == 9
    at.number_input(key="unit").set_value(2).run()  # and the widget rules again afterwards
    assert at.number_input(key="unit").value == 2 and at.query_params["unit"] in ("2", ["2"])


def test_vanishing_gradient_reports_gradient_flow_own_numbers(runs_root):
    """The tiny dashboard runs (an LSTM and a GRU of native checkpoints) stand in for the samples: the lesson's
    ratios are gradient_flow's own mean at k = K over k = 0 for the top layer's h."""
    from lstmviz.dashboard import data

    lstm, gru = lessons.find_run(runs_root, "tiny_lstm"), lessons.find_run(runs_root, "tiny_gru")
    K = 10

    def model(run):
        return data.load_model(data.checkpoint_of(run)).module

    def oracle(run) -> float:
        ids = run.tokens["token_id"].to_numpy()[: lessons.GRADIENT_TOKENS].copy()
        mean = gradient_flow(model(run), ids, K=K, n_targets=lessons.GRADIENT_TARGETS, seed=0).summary
        mean = mean.set_index(["series", "k"])["mean"]
        return float(mean[("h l1", K)] / mean[("h l1", 0)])

    a, b = oracle(lstm), oracle(gru)
    if a > b:
        found = lessons.vanishing_gradient(lstm, gru, model, K)
        assert found.numbers["lstm"] == pytest.approx(a) and found.numbers["rnn"] == pytest.approx(b)
        assert found.params == {"run": "tiny_lstm", "overlay": "tiny_gru"}
    else:
        with pytest.raises(lessons.Unavailable, match="does not fall faster"):
            lessons.vanishing_gradient(lstm, gru, model, K)
    assert lessons.gradient_decay(lstm, lambda: None, K)["ratio"] == pytest.approx(a)  # kept: no model needed
