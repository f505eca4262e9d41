"""Hostile input to the dashboard: broken runs on every page, and bad URL values, never give a traceback.

A broken run gives one guided ``st.error`` (never the last-resort "failed unexpectedly" one, which would mean the
failure was not foreseen). A bad URL value gives one ``st.warning`` naming the parameter, the value and what is used
instead, and the widget shows the value used: clamped into range, or the default when nothing is near.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from corrupt_runs import CASES, CorruptRun, make_corrupt_runs
from streamlit.testing.v1 import AppTest

from lstmviz.dashboard import pickers, widgets

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = list(widgets.PAGES)
UNEXPECTED = "failed unexpectedly"
N_TOKENS = 628  # the fixture's text, twice, one token per character
UNITS = 12
DEFAULT_ACT = "rnn.l1.fwd.c"  # what default_activation picks for an LSTM: the top layer's cell state


def open_page(root: Path, monkeypatch, page: str, **params: str) -> AppTest:
    """The app on the runs root ``root``, run once on ``page``, with URL query parameters."""
    monkeypatch.setenv("LSTMVIZ_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    return at.switch_page(widgets.page_file(page)).run()


def no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not any(UNEXPECTED in e.value for e in at.error), [e.value for e in at.error]


def guided_error(at: AppTest, *fragments: str) -> str:
    """The page's one error, which holds every fragment; no exception element, no last-resort message."""
    no_traceback(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert all(f in errors[0] for f in fragments), errors[0]
    return errors[0]


# --- broken runs ------------------------------------------------------------------------------------------------


def _short_default_act(good: Path, dest: Path) -> CorruptRun:
    """The activation file a page reads first (the default activation's) ends 100 tokens early."""
    shutil.copytree(good, dest)
    table = pq.read_table(dest / "acts" / f"{DEFAULT_ACT}.parquet")
    pq.write_table(table.slice(0, 100), dest / "acts" / f"{DEFAULT_ACT}.parquet")
    return CorruptRun(dest, f"acts/{DEFAULT_ACT}.parquet has 100 rows but n_tokens is {N_TOKENS}")


@pytest.fixture(scope="module")
def broken(tiny_run, runs_root: Path, tmp_path_factory) -> dict[str, CorruptRun]:
    """Every broken copy of tests/conftest.py's tiny run from tests/corrupt_runs.py (whose message fragments are
    written for that run's shape), and the dashboard's own, of the tiny LSTM run."""
    root = tmp_path_factory.mktemp("broken")
    cases = make_corrupt_runs(tiny_run.path, root)
    return {**cases, "default_act_short": _short_default_act(runs_root / "tiny_lstm", root / "default_act_short")}


@pytest.mark.parametrize("case", [*CASES, "default_act_short"])
def test_broken_run_is_a_guided_error_on_every_page(broken, runs_root, monkeypatch, case):
    path, message = broken[case]
    monkeypatch.setenv("LSTMVIZ_RUNS", str(path.parent))  # the dashboard opens only runs under its root
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = str(path)
    for page in PAGES:  # one session through every page: each opens the run afresh and refuses it
        at.switch_page(widgets.page_file(page)).run()
        guided_error(at, message, "Pick another run")


def test_every_page_opens_beside_a_folder_of_broken_runs(broken, runs_root, tmp_path, monkeypatch):
    """The sidebar lists the broken runs; a good one opens on every page, and Compare refuses a broken other."""
    root = tmp_path / "runs"
    root.mkdir()
    (root / "good").symlink_to(runs_root / "tiny_lstm")
    for case, (path, _) in broken.items():
        (root / case).symlink_to(path)
    monkeypatch.setenv("LSTMVIZ_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = "good"
    for page in PAGES:
        at.switch_page(widgets.page_file(page)).run()
        no_traceback(at)
        if page == "compare":  # the first other run in the folder is a broken one
            guided_error(at, "Pick another run to compare with")
        else:
            assert not at.error, (page, [e.value for e in at.error])
    at.switch_page(widgets.page_file("gradients")).run()
    at.multiselect(key="overlay").select("act_file_short").run()
    no_traceback(at)
    assert any("act_file_short" in w.value and "rows" in w.value for w in at.warning), [w.value for w in at.warning]


@pytest.mark.parametrize("page", PAGES)
def test_nul_in_the_url_run_is_a_guided_error(runs_root, monkeypatch, page):
    at = open_page(runs_root, monkeypatch, page, run="\0x")
    guided_error(at, "NUL character", "type the path again")


def test_nul_typed_into_the_sidebar_path_box_is_a_guided_error(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "text")
    at.text_input(key="run_typed").input(f"{runs_root}/tiny_lstm\0").run()
    guided_error(at, "NUL character")
    at.selectbox(key="run").set_value(str(runs_root / "tiny_lstm")).run()  # and the user gets out of it
    no_traceback(at)
    assert not at.error and at.title[0].value == "Text heatmap"


def test_an_unforeseen_exception_is_one_line_and_goes_to_the_log(runs_root, monkeypatch, caplog):
    from lstmviz.dashboard import data

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(data, "tokens_window", broken)
    with caplog.at_level(logging.ERROR, logger="lstmviz.dashboard"):
        at = open_page(runs_root, monkeypatch, "text")
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert f"{UNEXPECTED} (ZeroDivisionError: division by zero second line)" in error
    assert "Traceback" not in error and "report it" in error
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


# --- bad URL values ---------------------------------------------------------------------------------------------

TOP = N_TOKENS - 1
BAD_URLS = [
    # (page, bad URL parameter, its value, other parameters, widget key, the value the widget must show)
    ("select", "theta", "500", {"theta_q": "0"}, "theta", 100.0),
    ("select", "theta", "-1e9", {"theta_q": "0"}, "theta", -100.0),
    ("select", "theta", "NaN", {"theta_q": "0"}, "theta", 0.3),
    ("select", "theta", "inf", {"theta_q": "0"}, "theta", 0.3),
    ("select", "theta", "high", {"theta_q": "0"}, "theta", 0.3),
    ("select", "theta", "high", {}, "theta", 0.9),  # the default for an unbounded c: its 0.9-quantile
    ("select", "theta", "5", {"theta_q": "1"}, "theta", 1.0),
    ("select", "theta_q", "maybe", {}, "theta_q", True),
    ("select", "span", "abc", {}, "span_a", 97),  # the default: the span of the 100-token window that selects most
    ("select", "span", "-3-4", {}, "span_a", 97),
    ("select", "span", "5-9999", {}, "span_b", N_TOKENS),
    ("select", "pad_before", "100", {}, "pad_before", 50),
    ("select", "pad_after", "-1", {}, "pad_after", 0),
    ("text", "act", "nope", {}, "act", DEFAULT_ACT),
    ("text", "unit", "99", {}, "unit", UNITS - 1),
    ("text", "unit", "-3", {}, "unit", 0),
    ("text", "unit", "abc", {}, "unit", 0),
    ("text", "unit", "2.5", {}, "unit", 0),
    ("text", "start", "-5", {}, "start", 0),
    ("text", "start", "1e12", {}, "start", TOP),
    ("text", "start", "NaN", {}, "start", 0),
    ("text", "width", "300", {}, "width", 200),
    ("text", "width", "wide", {}, "width", 500),
    ("text", "tracks", "nope,in_string", {}, "tracks", ["in_string"]),
    ("walkthrough", "step", "99999", {}, "step", TOP),
    ("walkthrough", "unit", "99", {}, "unit", UNITS - 1),
    ("walkthrough", "act", "nope", {}, "act", DEFAULT_ACT),
    ("projection", "method", "tsne", {}, "method", "pca"),
    ("projection", "color", "nope", {}, "color", "token class"),
    ("neurons", "track", "nope", {}, "track", "in_string"),
    ("compare", "other", "nope", {}, "other", None),  # None: the first other run, whichever it is
    ("compare", "cmp_unit", "99", {}, "cmp_unit", UNITS - 1),
]


def widget_value(at: AppTest, key: str):
    """The value of the widget with ``key``, whatever its type."""
    for kind in ("number_input", "selectbox", "toggle", "slider", "multiselect"):
        try:
            return getattr(at, kind)(key=key).value
        except KeyError:
            continue
    raise AssertionError(f"no widget {key!r} on the page")


@pytest.mark.parametrize(("page", "param", "raw", "other", "key", "used"), BAD_URLS)
def test_bad_url_value_is_named_and_replaced(runs_root, monkeypatch, page, param, raw, other, key, used):
    at = open_page(runs_root, monkeypatch, page, run="tiny_lstm", **other, **{param: raw})
    no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    about = [w.value for w in at.warning if f"`{param}=" in w.value]
    assert len(about) == 1, [w.value for w in at.warning]  # one line, once (the span fills two widgets)
    assert about[0].startswith(f"URL parameter `{param}={raw}` ") and "instead" in about[0], about[0]
    if used is not None:
        assert widget_value(at, key) == used
    now = at.query_params[param]
    assert (now[-1] if isinstance(now, list) else now) != raw  # the URL now holds the value used


URL_PARAMS = {  # every URL parameter a page reads, besides run
    "text": ["act", "unit", "start", "width", "tracks"],
    "select": ["act", "start", "width", "span", "theta", "theta_q", "pad_before", "pad_after", "tracks"],
    "walkthrough": ["act", "unit", "step"],
    "projection": ["act", "method", "color"],
    "neurons": ["track", "act", "unit", "start", "width"],
    "compare": ["other", "start", "width", "cmp_act", "cmp_unit", "cmp_act_b", "cmp_unit_b"],
}
ODD = ["", "\0", "1e309", "-1", "x" * 300]


@pytest.mark.parametrize("raw", ODD, ids=["empty", "nul", "huge", "minus_one", "long"])
@pytest.mark.parametrize("page", list(URL_PARAMS))
def test_every_url_parameter_of_a_page_at_once(runs_root, monkeypatch, page, raw):
    """All of a page's parameters set to the same odd value: warnings that each name a parameter, no error."""
    at = open_page(runs_root, monkeypatch, page, run="tiny_lstm", **dict.fromkeys(URL_PARAMS[page], raw))
    no_traceback(at)
    assert not at.error, [e.value for e in at.error]
    named = [w.value for w in at.warning if w.value.startswith("URL parameter `")]
    assert all(any(w.startswith(f"URL parameter `{p}=") for p in URL_PARAMS[page]) for w in named), named
    assert len(named) == len({w.split("=")[0] for w in named})  # one line per parameter


def test_a_good_url_warns_of_nothing(runs_root, monkeypatch):
    params = dict(run="tiny_lstm", act="rnn.l0.fwd.c", unit="4", start="120", width="100", theta="0.5")
    at = open_page(runs_root, monkeypatch, "select", **params, span="130-133", pad_before="0", theta_q="0")
    no_traceback(at)
    assert not at.error and not at.warning, [w.value for w in at.warning]
    assert (widget_value(at, "start"), widget_value(at, "theta"), widget_value(at, "span_b")) == (120, 0.5, 133)


def test_a_track_named_twice_in_the_url_is_drawn_once(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "text", run="tiny_lstm", tracks="in_string,in_string")
    no_traceback(at)
    assert not at.error and not at.warning
    assert widget_value(at, "tracks") == ["in_string"]


def test_a_bad_url_value_is_reported_once_not_on_every_rerun(runs_root, monkeypatch):
    at = open_page(runs_root, monkeypatch, "text", run="tiny_lstm", unit="99")
    assert len(at.warning) == 1
    at.number_input(key="unit").set_value(3).run()
    no_traceback(at)
    assert not at.warning and widget_value(at, "unit") == 3


def test_url_parsers_refuse_what_is_not_a_value():
    from lstmviz.dashboard import state

    assert [state.whole(r) for r in ("12", "-3", "1e3", "12.0", " 7 ")] == [12, -3, 1000, 12, 7]
    for raw in ("2.5", "NaN", "inf", "", "0x10", "1e400"):
        with pytest.raises(ValueError, match="whole number"):
            state.whole(raw)
    assert state.finite("-1e9") == -1e9
    for raw in ("nan", "-inf", "1e400", "x"):
        with pytest.raises(ValueError, match="number"):
            state.finite(raw)
    assert [state.flag(r) for r in ("1", "TRUE", "0", "false")] == [True, True, False, False]
    assert state.span_pair("3-7") == (3, 7)
    for raw in ("3", "3-", "-3-4", "a-b", "1-2-3"):
        with pytest.raises(ValueError, match="span"):
            state.span_pair(raw)
    assert [state.nearest(pickers.WIDTHS)(v) for v in (0, 150, 300, 10**9)] == [100, 100, 200, 2000]


# --- NaN / inf on the Overview ----------------------------------------------------------------------------------


def _with_counts(runs_root: Path, out: Path, counts: dict[tuple[str, int], tuple[int, int]]) -> Path:
    """A copy of the tiny LSTM run whose stats carry n_nan / n_inf, zero but for ``counts`` ((name, unit) → both)."""
    shutil.copytree(runs_root / "tiny_lstm", out)
    stats = pd.read_parquet(out / "stats.parquet")
    pairs = [counts.get((n, int(u)), (0, 0)) for n, u in zip(stats["name"], stats["unit"], strict=True)]
    stats["n_nan"] = np.array([p[0] for p in pairs], np.int64)
    stats["n_inf"] = np.array([p[1] for p in pairs], np.int64)
    stats.to_parquet(out / "stats.parquet")
    return out


def test_overview_counts_units_holding_nan_or_inf(runs_root, tmp_path, monkeypatch):
    counts = {("rnn.l0.fwd.c", 3): (5, 0), ("rnn.l1.fwd.h", 0): (0, 2), ("rnn.l1.fwd.h", 7): (1, 1)}
    run = _with_counts(runs_root, tmp_path / "runs" / "diverged", counts)
    at = open_page(tmp_path / "runs", monkeypatch, "overview", run=str(run))
    no_traceback(at)
    [warning] = [w.value for w in at.warning]
    assert warning.startswith("3 units hold NaN/inf values: 1 of rnn.l0.fwd.c, 2 of rnn.l1.fwd.h.")
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["rnn.l0.fwd.c", ["n_nan", "n_inf"]].tolist() == [5, 0]
    assert table.loc["rnn.l1.fwd.h", ["n_nan", "n_inf"]].tolist() == [1, 3]
    assert table.drop(["rnn.l0.fwd.c", "rnn.l1.fwd.h"])[["n_nan", "n_inf"]].eq(0).all().all()
    units = at.dataframe[1].value
    assert sorted(zip(units["name"], units["unit"], units["n_nan"], units["n_inf"], strict=True)) == sorted(
        (n, u, a, b) for (n, u), (a, b) in counts.items()
    )


def test_overview_of_a_finite_run_with_counts_warns_of_nothing(runs_root, tmp_path, monkeypatch):
    run = _with_counts(runs_root, tmp_path / "runs" / "finite", {})
    at = open_page(tmp_path / "runs", monkeypatch, "overview", run=str(run))
    no_traceback(at)
    assert not at.warning and len(at.dataframe) == 1
    assert at.dataframe[0].value[["n_nan", "n_inf"]].eq(0).all().all()


def test_overview_of_a_run_without_counts_shows_none(runs_root, tmp_path, monkeypatch):
    """A run recorded before stats counted NaN and inf has no such columns: the page shows none."""
    root = tmp_path / "runs"  # a root of its own, so the shared one keeps its runs
    run = root / "old_stats"
    shutil.copytree(runs_root / "tiny_lstm", run)
    stats = pd.read_parquet(run / "stats.parquet")
    stats.drop(columns=["n_nan", "n_inf"], errors="ignore").to_parquet(run / "stats.parquet")
    at = open_page(root, monkeypatch, "overview", run=str(run))
    no_traceback(at)
    assert not at.error and not at.warning
    assert {"n_nan", "n_inf"}.isdisjoint(at.dataframe[0].value.columns)
    assert {"mean", "std", "min", "max"} <= set(at.dataframe[0].value.columns)
