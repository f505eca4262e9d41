"""The lstmviz dashboard: look inside a recorded LSTM / GRU / RNN in the browser.

    streamlit run app.py                          # runs under ./runs (recorded from the samples on first start)
    streamlit run app.py -- --runs /data/runs     # or LSTMVIZ_RUNS=/data/runs streamlit run app.py

This file is the frame: page config, the sidebar run picker and ``st.navigation``. The pages live in
``lstmviz/dashboard/pages/``; the state of a view (run, activation, unit, window, span, θ) is in the URL.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import streamlit as st

from lstmviz.dashboard import data, widgets
from lstmviz.errors import UserError
from lstmviz.store import RunError

log = logging.getLogger("lstmviz.dashboard")
st.set_page_config(page_title="lstmviz", page_icon=":material/memory:", layout="wide")


def frame() -> None:
    """Record the samples on a first start, then the sidebar and the chosen page."""
    root = data.runs_root()
    if (not data.find_runs(root) or data.samples_pending(root)) and not st.session_state.get("_samples_failed"):
        st.title("lstmviz")
        st.write(f"Recording the bundled sample models into `{root}`, once (about a minute).")
        bar = st.progress(0.0, text="Starting…")
        try:
            data.record_samples(root, lambda fraction, message: bar.progress(fraction, text=message))
        except (UserError, RunError, OSError) as e:
            st.session_state["_samples_failed"] = str(e)
        st.rerun()
    if st.session_state.get("_samples_failed"):
        st.sidebar.warning(f"Could not record the samples: {st.session_state['_samples_failed']}")

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
    widgets.run_picker(root)
    widgets.projector()
    page.run()


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
