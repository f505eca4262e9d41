"""The progress bar: it shows the phase, the share done and an estimate of the time left, then goes away."""

from __future__ import annotations

import time

import pytest

from lstmviz.analysis import progress as reports
from lstmviz.dashboard import progress


class Bar:
    """Stands in for the ``st.empty()`` slot the bar is drawn in: keeps every text it is given."""

    def __init__(self):
        self.texts: list[str] = []
        self.emptied = False

    def progress(self, value: float, text: str = "") -> Bar:
        assert 0.0 <= value <= 1.0
        self.texts.append(text)
        return self

    def empty(self) -> None:
        self.emptied = True


@pytest.fixture
def bars(monkeypatch) -> list[Bar]:
    made: list[Bar] = []

    def make() -> Bar:
        made.append(Bar())
        return made[-1]

    monkeypatch.setattr(progress.st, "empty", make)
    monkeypatch.setattr(progress, "TICK_S", 0.05)
    return made


def test_a_slow_computation_shows_its_phase_share_and_time_left(bars):
    def work() -> int:
        reports.report(0.0, "warming up")
        time.sleep(0.6)
        reports.report(0.5, "half way")
        time.sleep(0.6)
        return 42

    assert progress.run(work, "Computing") == 42
    (bar,) = bars
    assert bar.emptied
    half = [t for t in bar.texts if "half way" in t]
    assert half and half[-1].startswith("Computing · half way — 50%, about ") and half[-1].endswith(" s left")
    left = int(half[-1].split("about ")[1].split(" s")[0])
    assert 0 <= left <= 2  # half done after ~0.6 s: ~0.6 s left


def test_an_answer_at_once_draws_no_bar_and_errors_reach_the_page(bars):
    assert progress.run(lambda: "cached", "Computing") == "cached"
    assert bars[0].texts == []  # no bar drawn

    def broken():
        raise ValueError("no model")

    with pytest.raises(ValueError, match="no model"):
        progress.run(broken, "Computing")


def test_without_reports_the_bar_counts_against_the_expected_time(bars):
    progress.run(lambda: time.sleep(0.8), "Mapping", expected_s=10)
    assert any("about 9 s left" in t for t in bars[0].texts)


def test_eta_text():
    assert progress.eta_text(10, 0.5) == "about 10 s left"
    assert progress.eta_text(100, 0.25) == "about 5.0 min left"
    assert progress.eta_text(1, 0.0) == "estimating the time left…"
    assert progress.eta_text(1, 0.0, expected_s=31) == "about 30 s left"
    assert progress.eta_text(10, 0.99) == "almost done"
