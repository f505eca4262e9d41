"""A real browser on the text views (Debian's chromium through Playwright, as in test_browser.py): the mouse over
each point of a token, its box and the track rows under it, reads that token; the walkthrough's Play steps on."""

from __future__ import annotations

import time

import pytest
from test_browser import page, server, settle  # noqa: F401  (fixtures)

from lstmviz.dashboard import figures, stepper

pytestmark = pytest.mark.browser

TO_PIXELS = """([x, y]) => {
  const gd = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""
HOVER = "() => [...document.querySelectorAll('.hoverlayer .hovertext')].map(e => e.textContent).join('|')"


def test_the_mouse_anywhere_over_a_token_or_its_tracks_reads_that_token(page, server):  # noqa: F811
    """The failure this fixes: under each token the track bars caught the mouse and told only their own value."""
    page.goto(f"{server}/text?run=tiny_lstm&act=rnn.l0.fwd.f&tracks=in_string,bracket_depth")
    settle(page)
    line = 1 + 2 * figures.TRACK_H
    for j, token in [(0, "d"), (4, "g")]:  # TEXT begins "def greet": token j is the j-th character
        for y in (0.0, 0.5 + figures.TRACK_H * 0.5, 0.5 + figures.TRACK_H * 1.5, line - 0.55):
            x_px, y_px = page.evaluate(TO_PIXELS, [j + 0.5, y])
            page.mouse.move(x_px, y_px)
            page.wait_for_timeout(250)
            tip = page.evaluate(HOVER)
            assert tip.startswith(f"#{j} '{token}'value "), (j, y, tip)
            assert "in_string=False" in tip and "bracket_depth=0" in tip and "next: " in tip
        page.mouse.move(5, 5)


def test_play_steps_through_the_text_by_itself(page, server):  # noqa: F811
    page.goto(f"{server}/walkthrough?run=tiny_lstm&step=3")
    settle(page)
    position = page.get_by_label("Token (0", exact=False)
    assert position.input_value() == "3"
    page.get_by_role("button", name="▶ Play").click()
    end = time.time() + 60  # a beat is PLAY_EVERY, but a loaded machine may take longer to redraw
    while int(position.input_value()) < 3 + 3 and time.time() < end:
        page.wait_for_timeout(200)
    moved = int(position.input_value())
    assert 3 + 3 <= moved < stepper.STRETCH, moved  # on by itself, one token a beat, within the stretch
    page.get_by_role("button", name="Pause").click()
    settle(page)
    # a beat already on its way when Pause lands may still show: what must hold is that no further beat comes
    page.wait_for_timeout(round(stepper.PLAY_EVERY * 1.5 * 1000))
    settle(page)
    held = position.input_value()
    assert page.get_by_role("button", name="▶ Play").count()
    page.wait_for_timeout(round(stepper.PLAY_EVERY * 3 * 1000))
    assert position.input_value() == held
    assert not page.locator('[data-testid="stException"]').count()
