"""Neuron search: which units track an annotation, e.g. 'inside a string' or bracket depth?"""

import pandas as pd
import streamlit as st

from lstmviz.analysis import probes
from lstmviz.dashboard import data, figures, pickers, sidebar, unitview, widgets

MAX_VALUES = 50
METRICS = {"auc": ("ROC-AUC", 0.5), "pearson_r": ("Pearson r", 0.0)}  # metric → (axis title, chance level)

st.title("Neuron search")
st.write(
    "Pick an annotation of the text, and every unit is scored by how well its value follows it: ROC-AUC for "
    "yes/no annotations (0.5 is chance, 1 perfect, 0 perfectly inverted) and correlation for numbers. Click a "
    "bar to see that unit colour the text next to the annotation."
)
with st.expander("How units are scored"):
    st.markdown(widgets.help_text(probes.probe))

run, key = sidebar.current_run()
skip = {"idx", "doc", "pos", "token_id", "token", "loss", "top_ids", "top_p"}
columns = run.token_columns
ORDER = {"boolean": 0, "numeric": 1, "other": 2}  # the order the annotations are offered in


def kind(column: str) -> int:
    """0 boolean, 1 numeric, 2 categorical."""
    return ORDER[run.token_kind(column)]


tracks = sorted((c for c in columns if c not in skip), key=kind)
if not tracks:
    widgets.empty(
        "This run has no annotation tracks. Record it with `--annotate code` or `--annotate parens`, or "
        "add your own with `--annotations file.csv`."
    )
c1, c2, c3 = st.columns([2, 2, 3])
track = pickers.choice("track", tracks, "Annotation", where=c1)
value = None
if kind(track) == 2:
    common = run.token_column(track).dropna().astype(str).value_counts().index[:MAX_VALUES].tolist()
    if not common:
        widgets.empty(f"The annotation {track} has no values in this run.")
    value = pickers.choice("track_value", common, f"{track} equal to", where=c2)
name = pickers.activation(run, where=c3)
ranking = data.probe(key, name, track, value)
target = track if value is None else f"{track} == {value}"
if ranking.empty or not ranking["strength"].notna().any():
    widgets.empty(f"No unit could be scored against {target}: it is constant over this run.")
metric = str(ranking["metric"].iloc[0])
axis, chance = METRICS.get(metric, (metric, 0.0))


def pick_unit() -> None:
    points = st.session_state["probe_fig"].selection.points
    if points:
        st.session_state["unit"] = int(points[0]["customdata"])


st.plotly_chart(
    figures.ranking_figure(
        ranking.rename(columns={"score": axis}), axis, title=f"Units of {name} ranked against {target}", center=chance
    ),
    width="stretch",
    key="probe_fig",
    on_select=pick_unit,
    selection_mode="points",
)
widgets.csv_download(ranking, f"{name}.{track}.ranking.csv")

u = pickers.unit(run, name, default=int(ranking["unit"].iloc[0]))
unitview.unit_link(name, u)
start, stop = pickers.window(run)
tokens = data.tokens_window(key, start, stop)
values = data.window(key, name, start, stop, (u,))[:, 0]
shown = tokens[[track]] if value is None else pd.DataFrame({target: tokens[track].astype(str) == value})
st.subheader(f"Unit {u} beside {target}")
st.plotly_chart(
    figures.text_figure(
        tokens["token"].tolist(),
        values,
        tracks=shown,
        joiner=data.joiner(run),
        hover=figures.token_hover(tokens, data.vocab(run)),  # the figure adds the drawn track's value
        kind=run.info(name)["kind"],
    ),
    width="stretch",
    key="probe_text",
)
