"""The lstmviz dashboard: look inside a recorded LSTM / GRU / RNN in the browser.

    streamlit run app.py                          # runs under ./runs (the samples are recorded on first start)
    streamlit run app.py -- --runs /data/runs     # or LSTMVIZ_RUNS=/data/runs streamlit run app.py

This file is the frame: page config, the sidebar run picker and ``st.navigation``. The pages live in
``lstmviz/dashboard/pages/``; the state of a view (run, activation, unit, window, span, θ) is in the URL.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import streamlit as st

from lstmviz.dashboard import data, prepare, sidebar, widgets
from lstmviz.errors import UserError
from lstmviz.store import RunError

log = logging.getLogger("lstmviz.dashboard")
st.set_page_config(page_title="lstmviz", page_icon=":material/memory:", layout="wide")


def frame() -> None:
    """Start preparing the samples on a first start (waiting only for the first one), then the sidebar, the
    preparation's progress and the chosen page."""
    root = data.runs_root()
    try:
        prepare.ensure(root)
    except OSError as e:  # a runs root that cannot be written: the app still opens what is there
        st.sidebar.warning(f"Could not prepare the samples in {root}: {e.strerror or e}")
    if not data.find_runs(root) and prepare.running(root):
        st.title("lstmviz")
        st.write(f"Recording the teaching model into `{root}`; the other samples follow in the background.")
        bar = st.progress(0.0, text="Starting…")
        if prepare.wait_for_first(root, lambda fraction, message: bar.progress(fraction, text=message)):
            st.rerun()

    pages = {
        key: st.Page(widgets.page_file(key), title=title, icon=icon, url_path=key)
        for key, (title, icon) in widgets.PAGES.items()
    }

    def home() -> None:
        """The root URL opens Start here at its own address, so ``/start?run=…`` links work too (Streamlit
        serves a default page only at the root, never under its own url_path)."""
        st.switch_page(pages["start"], query_params=st.query_params.to_dict())

    root_page = st.Page(home, title="lstmviz", url_path="home", default=True, visibility="hidden")
    page = st.navigation([root_page, *pages.values()])
    st.sidebar.title("lstmviz")
    sidebar.run_picker(root)
    status = prepare.Status.read(root)
    if status is not None and status.steps:
        with st.sidebar:  # a fragment draws into the container it is called in, never into st.sidebar itself
            (preparing_live if not status.finished else preparing)(root)
    sidebar.projector()
    page.run()


def preparing(root: Path) -> None:
    """The sidebar's note on what the background preparation of the samples does, with an estimate, while it
    runs; its errors once it is done. When a new run appears the whole app reruns, so the run picker lists it."""
    status = prepare.Status.read(root)
    if status is None:
        return
    runs = len(data.find_runs(root))
    if st.session_state.setdefault("_prepared_runs", runs) != runs:
        st.session_state["_prepared_runs"] = runs
        st.rerun(scope="app")
    if not status.finished and prepare.running(root):
        step, left = status.current(), status.seconds_left()
        eta = f"about {left / 60:.0f} min" if left >= 90 else f"about {max(5, round(left, -1)):.0f} s"
        st.progress(
            status.done / len(status.steps),
            text=f"Preparing the samples in the background: {step.label if step else 'finishing'} "
            f"({status.done} of {len(status.steps)} steps, {eta} left).",
        )
        st.caption("Pages work meanwhile; a map or gradient curve not prepared yet is computed when asked for.")
    for error in status.errors:
        st.warning(f"Could not prepare {error}", icon=":material/warning:")


preparing_live = st.fragment(run_every=2.0)(preparing)  # polls only while a preparation is unfinished


# Streamlit's own st.stop / st.rerun / st.switch_page raise BaseExceptions, which pass through these handlers.
try:
    frame()
except (RunError, UserError) as e:
    st.error(
        f"{e}\n\nPick another run or fix the input above; other pages and sessions are unaffected.",
        icon=":material/error:",
    )
except (OSError, pa.ArrowException) as e:
    reason = getattr(e, "strerror", None) or e
    st.error(
        f"Could not read a file of this run ({reason}). It may be incomplete or was moved: record it again "
        f"with `lstmviz record`.",
        icon=":material/error:",
    )
except Exception as e:  # the last resort: whatever was not foreseen is still one line, never a traceback
    log.exception("page failed")  # the traceback goes to the server's log, for whoever runs the app
    message = " ".join(str(e).split())[:300] or "no message"
    st.error(
        f"This page failed unexpectedly ({type(e).__name__}: {message}).\n\nPick another run or change the "
        "input above, or reload; if it happens again, report it with this page's URL (the traceback is in the "
        "log of `streamlit run`).",
        icon=":material/error:",
    )
finally:
    data.release_memory()
