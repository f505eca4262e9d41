"""A real browser walks every card of Start here from a fresh start, and finds each finding on the page it opens.

The app starts on an empty runs folder, records the sample models as a first start does, and the test waits for
every card to fill in. Then it clicks each card's link and checks that the view shows what the card says: the
Unit page's label names in_string, the gradient plot holds both runs, the map is coloured by in_string, and so
on. The units are the ones the app found (read back through :mod:`lstmviz.analysis.lessons`), never typed here.
Screenshots go to ``test-artifacts/lesson-*.png``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from serving import chromium_tab, streamlit_app
from test_browser import assert_clean, settle, snapshot

from lstmviz.analysis import lessons

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIRST_START = 1800  # seconds: a ceiling for recording every sample and its maps on two busy cores
MAIN = '[data-testid="stMain"]'


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """``streamlit run app.py`` on an empty runs folder; yields (URL, runs folder)."""
    root = tmp_path_factory.mktemp("fresh") / "runs"
    with streamlit_app(root, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url, root


@pytest.fixture(scope="module")
def tab(fresh):
    with chromium_tab(1100) as page:
        yield page


CARDS_DONE = """(n) => {
  const titles = [...document.querySelectorAll('[data-testid="stMain"] h3')];
  return titles.length === n && titles.every(h => {
    const card = h.closest('[data-testid="stVerticalBlock"]');
    const done = '[data-testid="stPageLink"], [data-testid="stAlert"], [data-testid="stAlertContainer"]';
    return card && card.querySelector(done);
  });
}"""


def wait_for_cards(tab, url: str, root: Path) -> dict[str, lessons.Lesson]:
    """Open the root, wait until the first start is over and every card is filled in and none is still being
    prepared; the lessons the app found, by key (read back from what the page measured)."""
    from lstmviz.dashboard import data

    tab.goto(url, timeout=120_000)
    end = time.time() + FIRST_START
    while time.time() < end:
        try:
            settle(tab, timeout=60)
            tab.wait_for_function(CARDS_DONE, arg=len(lessons.TITLES), timeout=120_000)
        except AssertionError:
            continue  # still recording: the first start's progress bar
        except PlaywrightTimeout:
            continue
        main = tab.locator(MAIN).inner_text()
        if main.startswith("Start here") and "being prepared" not in main:
            break
        time.sleep(5)
        tab.reload()
    else:
        raise AssertionError(f"Start here did not fill in: {tab.locator(MAIN).inner_text()[:800]}")
    assert tab.url.rstrip("/").split("/")[-1].startswith("start"), tab.url
    assert_clean(tab, "start")
    snapshot(tab, "lesson-start")

    def never(path):
        raise AssertionError("every measurement is cached by the page already")

    found = {key: lessons.lesson(key, root, data.checkpoint_of, never) for key in lessons.TITLES}
    missing = {k: v.reason for k, v in found.items() if not v.available}
    assert not missing, missing
    return found


@pytest.fixture(scope="module")
def ready(tab, fresh) -> dict[str, lessons.Lesson]:
    return wait_for_cards(tab, *fresh)


def open_card(tab, url: str, lesson: lessons.Lesson) -> str:
    """From Start here, click the card's link; the text of the page it opens once it has settled."""
    tab.goto(f"{url}/start")
    settle(tab)
    card = tab.locator('[data-testid="stVerticalBlock"]').filter(has=tab.locator("h3", has_text=lesson.title)).last
    assert lesson.evidence.split(" · ")[0] in card.inner_text()
    card.locator('[data-testid="stPageLink-NavLink"]').click()
    tab.wait_for_url(f"**/{lesson.page}?*", timeout=30_000)
    settle(tab, timeout=300)
    assert_clean(tab, lesson.key)
    snapshot(tab, f"lesson-{lesson.key}")
    return tab.locator(MAIN).inner_text()


def legend(tab) -> list[str]:
    """The legend entries of the page's charts (SVG text has no inner text, only text content)."""
    return tab.locator(f"{MAIN} .legendtext").evaluate_all("els => els.map(e => e.textContent)")


def headings(tab) -> list[str]:
    return tab.locator(f"{MAIN} h3").all_inner_texts()


def picked(tab, label: str) -> str:
    return tab.locator(f'{MAIN} input[aria-label="{label}"]').first.input_value()


def test_string_unit_card_opens_its_labelled_unit(tab, fresh, ready):
    lesson = ready["string_unit"]
    text = open_card(tab, fresh[0], lesson)
    name, u = lesson.numbers["name"], lesson.numbers["unit"]
    assert f"{name} · unit {u}" in headings(tab)
    assert "in_string (AUC" in text  # the Unit page's own label names the annotation
    assert f"unit={u}" in tab.url and f"act={name}" in tab.url


def test_depth_counter_card_ranks_its_unit_against_bracket_depth(tab, fresh, ready):
    lesson = ready["depth_counter"]
    open_card(tab, fresh[0], lesson)
    assert f"Unit {lesson.numbers['unit']} beside bracket_depth" in headings(tab)
    assert picked(tab, "Annotation") == "bracket_depth"


def test_parens_card_shows_its_cell_beside_the_depth_track(tab, fresh, ready):
    lesson = ready["parens_cell"]
    text = open_card(tab, fresh[0], lesson)
    assert f"Unit {lesson.numbers['unit']} of {lesson.numbers['name']}" in headings(tab)
    assert "run=parens_lstm" in tab.url and "tracks=depth" in tab.url and "depth" in text


def test_forget_gate_card_colours_the_text_by_the_gate(tab, fresh, ready):
    lesson = ready["forget_gate"]
    open_card(tab, fresh[0], lesson)
    assert f"Unit {lesson.numbers['unit']} of {lesson.numbers['name']}" in headings(tab)
    assert lesson.numbers["name"].endswith(".f")


def test_gradient_card_overlays_the_rnn_on_the_lstm(tab, fresh, ready):
    open_card(tab, fresh[0], ready["vanishing_gradient"])
    names = legend(tab)
    assert {"code_lstm", "code_rnn"} <= set(names), names  # one legend group per run, titled with its name


def test_island_card_colours_the_map_by_in_string(tab, fresh, ready):
    lesson = ready["string_island"]
    open_card(tab, fresh[0], lesson)
    assert picked(tab, "Colour by") == "in_string"
    assert picked(tab, "Method") == "UMAP"
    assert {"True", "False"} <= set(legend(tab)), legend(tab)


def test_clamp_card_holds_the_string_unit(tab, fresh, ready):
    lesson = ready["clamp"]
    text = open_card(tab, fresh[0], lesson)
    name, u = lesson.numbers["name"], lesson.numbers["unit"]
    assert picked(tab, "Hold (state)").split()[0] == name
    assert tab.locator(f"{MAIN} input[aria-label^='Units']").first.input_value() == str(u)
    assert float(picked(tab, "Held at")) == pytest.approx(lesson.numbers["value"], rel=1e-3)
    assert f"With {name} {u} held" in text
