"""Page plumbing every page shares: the page list, switching pages with pickers preset, one-line errors and
explicit empty states, help text from docstrings, and CSV downloads of a figure's data."""

from __future__ import annotations

from typing import Any, NoReturn

import pandas as pd
import streamlit as st

from . import helptext

PAGES_DIR = "lstmviz/dashboard/pages"
PAGES = {
    "start": ("Start here", ":material/flag:"),
    "overview": ("Overview", ":material/dashboard:"),
    "text": ("Text heatmap", ":material/text_fields:"),
    "select": ("Select & match", ":material/select_all:"),
    "saturation": ("Gate saturation", ":material/scatter_plot:"),
    "gradients": ("Gradient flow", ":material/trending_down:"),
    "projection": ("Projection", ":material/bubble_chart:"),
    "neurons": ("Neuron search", ":material/search:"),
    "compare": ("Compare", ":material/compare:"),
    "walkthrough": ("Cell walkthrough", ":material/school:"),
    "intervene": ("Intervene", ":material/tune:"),
    "units": ("Units", ":material/view_list:"),
    "unit": ("Unit", ":material/neurology:"),
}
"""url path → (title, icon); the page lives in ``lstmviz/dashboard/pages/<url path>.py``."""


def page_file(page: str) -> str:
    """The page's script path, relative to app.py (what ``st.Page`` and ``st.switch_page`` take)."""
    return f"{PAGES_DIR}/{page}.py"


def goto(page: str, **state: Any) -> NoReturn:
    """Switch to another page with some pickers preset (e.g. ``goto("text", act=name, unit=3, start=120)``)."""
    st.session_state["_goto"] = dict(state)
    for key, value in state.items():
        st.session_state[f"_keep_{key}"] = value
    st.switch_page(page_file(page))


def fail(message: str, hint: str = "") -> NoReturn:
    """Show a one-line error with guidance, and stop the page (never a traceback)."""
    st.error(message + (f"\n\n{hint}" if hint else ""), icon=":material/error:")
    st.stop()


def empty(message: str) -> NoReturn:
    """An explicit empty state: say what is missing and how to get it, then stop the page."""
    st.info(message, icon=":material/info:")
    st.stop()


def help_text(obj: Any) -> str:
    """The description part of ``obj``'s docstring as Markdown with typeset math (:func:`helptext.doc_markdown`),
    for ``st.markdown``."""
    return helptext.doc_markdown(obj)


def csv_download(table: pd.DataFrame, filename: str, label: str = "Download CSV", key: str | None = None) -> None:
    """A download button for the data behind a figure. The CSV is written when the button is clicked, not on every
    rerun: a 1000-token window of 128 units and the run's overview take ~0.4 s to format, every interaction."""
    st.download_button(
        label,
        lambda: table.to_csv(index=False).encode(),
        file_name=filename,
        mime="text/csv",
        key=key or f"dl_{filename}",
        icon=":material/download:",
    )
