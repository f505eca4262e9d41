"""A real browser: Debian's chromium, driven by Playwright, against ``streamlit run app.py`` on 127.0.0.1.

It visits every page (no error element, no exception text), brushes a span on the Select & match heatmap and
checks that units get selected, types live text and checks that the heatmap and the activation picker show it.
Screenshots go to ``test-artifacts/`` (gitignored). Needs ``apt-get install chromium``; Playwright never downloads a
browser here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import ARTIFACTS, chromium_tab, streamlit_app

from lstmviz.dashboard import widgets

pytestmark = pytest.mark.browser

ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


@pytest.fixture(scope="module")
def server(runs_root: Path, tmp_path_factory) -> Iterator[str]:
    """``streamlit run app.py`` on a free localhost port, serving the tiny runs; yields its URL."""
    with streamlit_app(runs_root, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    with chromium_tab(1000) as tab:
        yield tab


BUSY = """() => {
  const running = [...document.querySelectorAll('[data-testid="stStatusWidget"]')]
      .some(e => /Running|Connecting/i.test(e.innerText));
  const waiting = document.querySelectorAll('[data-testid="stSkeleton"], [data-testid="stSpinner"]').length;
  const charts = [...document.querySelectorAll('[data-testid="stPlotlyChart"]')];
  const unrendered = charts.filter(c => !c.querySelector('.main-svg')).length;
  return running || waiting > 0 || unrendered > 0;
}"""


def settle(tab, timeout: float = 90) -> None:
    """Wait until the script run is over and every chart is drawn, and stays so for a second."""
    tab.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout * 1000)
    end, calm_since = time.time() + timeout, None
    while time.time() < end:
        if tab.evaluate(BUSY):
            calm_since = None
        elif calm_since is None:
            calm_since = time.time()
        elif time.time() - calm_since > 1.0:
            return
        time.sleep(0.2)
    raise AssertionError("the app did not settle")


def heatmap_texts(tab, want: set[str], timeout: float = 60) -> list[str]:
    """The characters drawn in the first chart once they include ``want`` (polled: a debounced commit and its
    rerun may land after any fixed wait on a loaded machine); fails with what was drawn."""
    end, texts = time.time() + timeout, []
    while time.time() < end:
        chart = tab.locator('[data-testid="stPlotlyChart"]').first
        if chart.count():
            texts = chart.locator("text").evaluate_all("els => els.map(e => e.textContent)")
            if want <= set(texts):
                return texts
        time.sleep(0.3)
    raise AssertionError(f"{sorted(want)} not drawn: {texts[:40]}")


def snapshot(tab, name: str) -> None:
    """Save ``test-artifacts/<name>.png`` of the whole page: the window is made as tall as the content (Streamlit
    scrolls inside its main block, so a full-page screenshot alone stops at the window)."""
    size = tab.viewport_size
    height = tab.evaluate("""() => Math.max(...[...document.querySelectorAll('[data-testid="stMain"] *')]
        .map(e => e.scrollHeight)).valueOf()""")
    tab.set_viewport_size({"width": size["width"], "height": min(max(int(height) + 120, size["height"]), 8000)})
    settle(tab)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    tab.set_viewport_size(size)


def assert_clean(tab, where: str) -> None:
    assert tab.locator(ERRORS).count() == 0, f"{where}: {tab.locator(ERRORS).first.inner_text()}"
    text = tab.locator('[data-testid="stMain"]').inner_text()
    assert "Traceback" not in text and "Error" not in text, f"{where}: {text[:500]}"


@pytest.mark.parametrize("key", list(widgets.PAGES))
def test_every_page_renders(page, server, key):
    page.goto(f"{server}/{key}?run=tiny_gru")  # every page at its own address, a run named in the URL
    settle(page)
    title = page.locator('[data-testid="stMain"] h1').first
    title.wait_for(timeout=30_000)
    assert widgets.PAGES[key][0] in title.inner_text()
    assert "page not found" not in page.locator("body").inner_text().lower()
    assert_clean(page, key)
    snapshot(page, f"page-{key}")


def test_the_root_url_opens_start_here_at_its_own_address(page, server):
    page.goto(f"{server}/?run=tiny_gru")
    settle(page)
    assert page.locator('[data-testid="stMain"] h1').first.inner_text().startswith("Start here")
    assert page.url.endswith("/start?run=tiny_gru"), page.url  # so a copied link names the page
    assert_clean(page, "root")


def test_box_select_brush_selects_units(page, server):
    page.goto(f"{server}/select?theta=0.0&pad_before=0&pad_after=0&width=100")
    settle(page)
    plot = page.locator('[data-testid="stPlotlyChart"]').first
    plot.scroll_into_view_if_needed()
    area = plot.locator(".nsewdrag").first
    box = area.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.52, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.56, y + 5, steps=8)
    page.mouse.up()
    settle(page)
    snapshot(page, "select-brush")
    span = page.locator('[data-testid="stNumberInput"]').filter(has_text="Span start").locator("input")
    assert span.input_value() != "33", "the brush did not move the span"  # default: a third into the window
    assert page.get_by_text("unit(s) selected").count(), "no unit selected after the brush"
    assert_clean(page, "select after brush")


def test_live_text_is_drawn(page, server):
    page.goto(f"{server}/text")
    settle(page)
    picker = page.locator('[data-testid="stMain"] input[aria-label="Activation"]').first
    picker.click()
    page.get_by_role("option").filter(has_text="rnn.l0.fwd.z").first.click()
    settle(page)
    page.get_by_text("Live mode: type your own text").click()
    settle(page)
    area = page.locator("textarea").first
    area.fill("print('zebra')\n")
    area.press("Control+Enter")
    settle(page)
    heat = page.locator('[data-testid="stPlotlyChart"]').first
    heat.scroll_into_view_if_needed()
    texts = heat.locator("text").evaluate_all("els => els.map(e => e.textContent)")
    assert {"z", "e", "b", "r", "a"} <= set(texts), texts[:40]
    heading = page.locator('[data-testid="stMain"] h3').first.inner_text()
    assert heading == "Unit 0 of rnn.l0.fwd.z", heading
    assert picker.input_value().split()[0] == "rnn.l0.fwd.z", "the picker shows another activation than the page"
    assert_clean(page, "live text")
    snapshot(page, "text-live")


def test_live_text_is_recorded_when_typing_pauses(page, server):
    """No Ctrl+Enter, no blur: the box commits a pause after the last keystroke, and the heatmap shows the text."""
    page.goto(f"{server}/text")
    settle(page)
    page.get_by_text("Live mode: type your own text").click()
    settle(page)
    area = page.locator("textarea").first
    area.press_sequentially("qux = 1\n", delay=30)
    heatmap_texts(page, {"q", "u", "x"})  # the pause, then the recording
    settle(page)
    assert area.evaluate("el => el === el.getRootNode().activeElement"), "typing lost the focus"
    area.press_sequentially("zz", delay=30)
    heatmap_texts(page, {"z"})
    settle(page)
    assert_clean(page, "live text after a pause")


@pytest.mark.parametrize(
    ("path", "alert", "says"),
    [
        ("select?run=tiny_lstm&theta=500&unit=abc&start=-5&span=x-y", "stAlertContentWarning", "`theta=500`"),
        ("text?run=%00x", "stAlertContentError", "NUL character"),
    ],
)
def test_bad_url_is_explained_without_a_traceback(page, server, path, alert, says):
    page.goto(f"{server}/{path}")
    settle(page)
    main = page.locator('[data-testid="stMain"]')
    assert page.locator('[data-testid="stException"]').count() == 0
    text = main.inner_text()
    assert "Traceback" not in text and 'File "' not in text and "failed unexpectedly" not in text, text[:500]
    alerts = page.locator(f'[data-testid="{alert}"]').all_inner_texts()
    assert any(says.strip("`") in a for a in alerts), alerts
    snapshot(page, f"bad-url-{path.split('?')[0]}")
