"""The Cell walkthrough's controls: the shared unit, find in text, a stretch to scrub, and Play.

Oracles: the recorded text itself (a char run's token i is character i of TEXT * 2, so ``str.find`` says where a
word is), and the run's own activations for the numbers the diagram shows.
"""

from __future__ import annotations

import time

from conftest import TEXT
from test_pages import app, assert_clean, figure, visit

from lstmviz.dashboard import stepper
from lstmviz.dashboard.figures import show_token
from lstmviz.store import open_run


def diagram_value(at, box: str) -> float:
    """The value printed in the diagram's ``box`` (e.g. ``"h"``)."""
    for trace in figure(at, 0)["data"]:
        for text in trace.get("text", []):
            if text.startswith(f"<b>{box}</b>"):
                return float(text.split("<br>")[1])
    raise AssertionError(f"no box {box}")


def test_walkthrough_shows_the_unit_the_other_pages_show(runs_root, monkeypatch):
    """The failure this fixes: the walkthrough kept a unit of its own (walk_unit), so it showed another unit."""
    at = app(runs_root, monkeypatch, run="tiny_lstm", act="rnn.l1.fwd.h", unit="3", step="7")
    at = visit(at, "walkthrough")
    assert_clean(at)
    assert at.selectbox(key="act").value == "rnn.l1.fwd.h" and at.number_input(key="unit").value == 3
    h = open_run(runs_root / "tiny_lstm").activations("rnn.l1.fwd.h", [3], 7, 8)[0, 0]
    assert abs(diagram_value(at, "h") - h) < 0.006  # printed to two decimals


def test_find_jumps_to_each_occurrence_in_turn_and_wraps(runs_root, monkeypatch):
    text = TEXT * 2
    hits = [i for i in range(len(text)) if text.startswith("return", i)]
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm"), "walkthrough")
    at.text_input(key="step_find").input("return").run()
    assert_clean(at)
    assert at.number_input(key="step").value == hits[0]
    for hit in [*hits[1:], hits[0]]:  # after the last, back to the first
        at.button(key="step_find_next").click().run()
        assert at.number_input(key="step").value == hit
    assert at.query_params["step"] in (str(hits[0]), [str(hits[0])])
    at.text_input(key="step_find").input("no such text").run()
    assert any("does not occur" in c.value for c in at.caption)
    assert at.number_input(key="step").value == hits[0]


def test_the_slider_scrubs_only_the_stretch_around_the_step(runs_root, monkeypatch):
    n = open_run(runs_root / "tiny_lstm").n_tokens
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", step=str(stepper.STRETCH + 5)), "walkthrough")
    scrub = at.select_slider(key="step_scrub")
    text = TEXT * 2
    assert list(scrub.options) == [
        f"{i:,} {show_token(text[i])!r}" for i in range(stepper.STRETCH, 2 * stepper.STRETCH)
    ]
    assert n > 3 * stepper.STRETCH  # a run longer than a stretch: the slider does not cover it all
    scrub.set_value(stepper.STRETCH + 40).run()
    assert_clean(at)
    assert at.number_input(key="step").value == stepper.STRETCH + 40
    spark = figure(at, 1)["layout"]["xaxis"]["range"]
    assert spark == [stepper.STRETCH - 0.5, 2 * stepper.STRETCH - 0.5]  # the lines cover the same stretch


def test_play_steps_on_by_itself_and_stops_at_the_end_of_the_stretch(runs_root, monkeypatch):
    monkeypatch.setattr(stepper, "PLAY_EVERY", 0.2)
    end = 2 * stepper.STRETCH - 1
    at = visit(app(runs_root, monkeypatch, run="tiny_lstm", step=str(end - 2)), "walkthrough")
    at.button(key="step_play_button").click().run()
    assert_clean(at)
    assert at.number_input(key="step").value == end - 2  # pressing Play is not itself a step
    assert at.button(key="step_play_button").label == "Pause"
    seen = []
    for _ in range(4):
        time.sleep(0.2)
        at.run()  # what the fragment's timer does
        seen.append(at.number_input(key="step").value)
    assert seen == [end - 1, end, end, end]
    assert at.button(key="step_play_button").label == "▶ Play"


def test_the_searched_text_is_the_tokens_joined_as_the_run_joins_them(runs_root, word_root):
    """Oracle: ``sep.join`` of the tokens as Python strings, and each token's offset counted one by one."""
    from lstmviz.analysis import select_match
    from lstmviz.dashboard import data

    for path in [runs_root / "tiny_lstm", *sorted(p for p in word_root.iterdir() if (p / "manifest.json").exists())]:
        run = open_run(path)
        tokens = run.tokens["token"].astype(str).tolist()
        sep = select_match.token_joiner(run)
        text, offsets = data.joined_text(data.ref(path))
        assert text == sep.join(tokens)
        assert offsets.tolist() == [sum(len(t) + len(sep) for t in tokens[:i]) for i in range(len(tokens))]
