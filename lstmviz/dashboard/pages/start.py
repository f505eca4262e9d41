"""Start here: one card per finding of the sample models, each found in the runs and one click from its view."""

from pathlib import Path

import streamlit as st

from lstmviz.analysis import lessons
from lstmviz.dashboard import data, prepare, sidebar, widgets
from lstmviz.store import RunError

SLOW = ("vanishing_gradient",)  # first measured by a backward pass through two models (seconds): drawn last

st.title("Start here")
st.write(
    "Each card below is something the sample models learned, found by this app in their recordings: read the "
    "two sentences aloud, then open the view that shows it. The numbers are measured on the runs in the "
    "sidebar's runs folder, so a model trained again gives its own."
)

root = data.runs_root()
preparing = prepare.running(root)  # a preparer is at work: a missing sample is on its way
if not preparing and not data.find_runs(root):
    sidebar.current_run()  # no run at all: its empty state says how to record one
if st.session_state.get("run"):
    try:  # the lessons read the sample runs, but a run the URL or the sidebar names is checked as on every page
        data.load_run(st.session_state["run"])
    except RunError as e:
        st.error(f"{e}\n\nPick another run in the sidebar, or record this one again with `lstmviz record`.")
if preparing:
    st.info(
        "The sample models are still being recorded: their cards fill in as each is ready.",
        icon=":material/hourglass_top:",
    )


@st.cache_data(max_entries=32, show_spinner=False)
def found(key: str, root: str, stamps: tuple[float, ...], preparing: bool) -> lessons.Lesson:
    """:func:`lstmviz.analysis.lessons.lesson`, cached per runs folder and the runs' manifest times."""
    with data.MODEL_LOCK:  # a gradient measurement runs the shared cached models
        return lessons.lesson(key, Path(root), data.checkpoint_of, data.load_model, preparing=preparing)


def card(lesson: lessons.Lesson) -> None:
    """Title, the two sentences, the evidence and one link to the exact view; or why it cannot be shown."""
    st.subheader(lesson.title, anchor=False)
    if not lesson.available:
        st.info(lesson.reason, icon=":material/hourglass_top:" if "prepared" in lesson.reason else ":material/info:")
        return
    st.write(lesson.text)
    st.caption(f"Evidence: {lesson.evidence}")
    title, icon = widgets.PAGES[lesson.page]
    st.page_link(
        widgets.page_file(lesson.page),
        label=f"Open it on {title}",
        icon=icon,
        query_params=lesson.params,
    )


stamps = tuple(data.ref(root / name)[1] for name in lessons.RUNS.values())
keys = list(lessons.TITLES)
columns = st.columns(2)
slots = {key: columns[i % 2].container(border=True) for i, key in enumerate(keys)}
for key in [k for k in keys if k not in SLOW] + [k for k in keys if k in SLOW]:
    with slots[key]:
        if key in SLOW:
            with st.spinner("Measuring gradients through both models (once, about 20 s)…"):
                lesson = found(key, str(root), stamps, preparing)
        else:
            lesson = found(key, str(root), stamps, preparing)
        card(lesson)
