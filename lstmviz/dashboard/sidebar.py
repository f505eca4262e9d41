"""The sidebar every page shares: the run picker (and the run it opens for the page), and projector mode."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ..errors import UserError
from ..store import Run, RunError
from . import data, figures, state
from .widgets import empty, fail

PROJECTOR_FONT = 22
"""The figures' font size in px in projector mode (the pages' text grows by about the same factor)."""
PROJECTOR_CSS = """<style>
html { font-size: 22px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li,
[data-testid="stCaptionContainer"], [data-testid="stWidgetLabel"] p, [data-testid="stAlertContentInfo"] p
  { font-size: 1.25rem; line-height: 1.45; }
[data-testid="stExpander"] summary p { font-size: 1.2rem; }
.stButton button, .stDownloadButton button { padding-left: 0.25rem; padding-right: 0.25rem; }
.stButton button p, .stDownloadButton button p { font-size: 0.75rem; line-height: 1.15; }
</style>"""
"""Projector mode's stylesheet: Streamlit sizes its text in rem, so the root size scales the whole page; body text,
captions and labels, which Streamlit sets smaller than the root, are raised further for the back row. Button
labels stay near their usual size, with less padding: in a row of narrow columns ("◀ Prev", "Find next") a larger one
is cut off."""


def projector() -> int:
    """Sidebar: projector mode, large fonts for a class on a projector (``?projector=1`` keeps it in the URL).

    Enlarges the page's text (:data:`PROJECTOR_CSS`) and returns the figures' font size in px, which
    :func:`font_size` hands to the pages afterwards. Call it once per run, before the page (app.py does).
    """
    state.init("projector", False, state.flag, lambda v: isinstance(v, bool), expect="0 or 1", show=_flag)
    on = st.sidebar.toggle("Projector mode", key="projector", help="Large fonts, for a room reading a projector.")
    if on:  # in the URL only when on, so the links of an ordinary session stay as they were
        state.publish("projector", True, _flag)
        st.html(PROJECTOR_CSS)
    else:
        st.session_state["_keep_projector"] = False
        st.session_state.pop("_url_projector", None)
        if "projector" in st.query_params:
            del st.query_params["projector"]
    return font_size()


def font_size() -> int:
    """The figures' font size in px: :data:`PROJECTOR_FONT` in projector mode, else ``figures.FONT``."""
    return PROJECTOR_FONT if st.session_state.get("projector") else figures.FONT


def _flag(v: bool) -> str:
    return "1" if v else "0"


DEFAULT_RUN = "code_lstm"
"""The run the app opens on when the URL names none: the teaching model, when the runs root has it."""


def run_picker(root: Path) -> str:
    """Sidebar: pick a run found under ``root`` (:data:`DEFAULT_RUN` first), or type a run directory. Returns the
    chosen path ("" if none).

    The URL's ``run`` is relative to ``root`` for runs under it (``?run=code_lstm``), else a full path.
    """
    found = [str(p) for p in data.find_runs(root)]
    default = next((p for p in found if Path(p).name == DEFAULT_RUN), found[0] if found else "")
    state.init("run", default, str)
    current, refused = st.session_state["run"], st.session_state.pop("_run_refused", "")
    try:
        current = _reachable(current, root)
    except UserError as e:
        refused, current = str(e), default
    st.session_state["run"] = current
    options = found + ([current] if current and current not in found else [])

    def label(path: str) -> str:
        p = Path(path)
        try:
            return str(p.relative_to(root))
        except ValueError:
            return str(p)

    def use_typed() -> None:
        typed = st.session_state.get("run_typed", "").strip()
        if typed:
            try:
                st.session_state["run"] = _reachable(typed, root)
            except UserError as e:
                st.session_state["_run_refused"] = str(e)
            st.session_state["run_typed"] = ""

    if options:
        st.sidebar.selectbox(
            "Run",
            options,
            key="run",
            format_func=label,
            help=f"Runs found under {root}. Set LSTMVIZ_RUNS or pass `-- --runs DIR` to change.",
        )
    st.sidebar.text_input(
        "…or open a run directory",
        key="run_typed",
        on_change=use_typed,
        placeholder="/path/to/run",
        help="Type a path and press Enter.",
    )
    state.publish("run", st.session_state["run"], label)
    state.carry()
    if refused:
        fail(f"Not opened: {refused}", "Pick a run in the sidebar.")
    return st.session_state["run"]


def _reachable(path: str, root: Path) -> str:
    """A run path from the browser, as the picker keeps it: relative to ``root`` when the URL names it so (a
    copied link says ``?run=code_lstm``), and never outside what :func:`data.browsable` allows."""
    if path and not Path(path).expanduser().is_absolute() and not Path(path).exists():
        path = str(root / path)
    if path:
        data.browsable(path, root=root)
    return path


def current_run() -> tuple[Run, data.RunRef]:
    """The run picked in the sidebar, opened (cached); an empty state or a guided error otherwise."""
    path = st.session_state.get("run", "")
    if not path:
        empty(
            "No run is open. Pick one in the sidebar, type a run directory, or record one with "
            "`lstmviz record --checkpoint model.pt --text file.txt --out runs/mine`."
        )
    try:
        return data.load_run(path)
    except RunError as e:
        fail(str(e), "Pick another run in the sidebar, or record this one again with `lstmviz record`.")
