"""Neuron search: which units track an annotation, e.g. 'inside a string' or bracket depth?"""

import streamlit as st

from lstmviz.dashboard import data, figures, widgets

st.title("Neuron search")
st.write(
    "Pick an annotation of the text, and every unit is scored by how well its value follows it: ROC-AUC for "
    "yes/no annotations (0.5 is chance, 1 perfect, 0 perfectly inverted) and correlation for numbers. Click a "
    "bar to see that unit colour the text next to the annotation."
)

run, key = widgets.current_run()
skip = {"idx", "doc", "pos", "token_id", "token", "loss", "top_ids", "top_p"}
tracks = [c for c in run.tokens.columns if c not in skip]
if not tracks:
    widgets.empty(
        "This run has no annotation tracks. Record it with `--annotate code` or `--annotate parens`, or "
        "add your own with `--annotations file.csv`."
    )
c1, c2 = st.columns(2)
track = widgets.choice("track", tracks, "Annotation", where=c1)
name = widgets.activation(run, where=c2)
ranking = data.probe(key, name, track)
if ranking.empty:
    widgets.empty(f"No unit could be scored against {track}: it is constant over this run.")
score = "score"


def pick_unit() -> None:
    points = st.session_state["probe_fig"].selection.points
    if points:
        st.session_state["unit"] = int(points[0]["customdata"])


st.plotly_chart(
    figures.ranking_figure(ranking, score, title=f"Units of {name} ranked against {track}"),
    width="stretch",
    key="probe_fig",
    on_select=pick_unit,
    selection_mode="points",
)
widgets.csv_download(ranking, f"{name}.{track}.ranking.csv")

u = widgets.unit(run, name, default=int(ranking["unit"].iloc[0]))
start, stop = widgets.window(run)
tokens = data.tokens_window(key, start, stop)
values = data.window(key, name, start, stop, (u,))[:, 0]
st.subheader(f"Unit {u} beside {track}")
st.plotly_chart(
    figures.text_figure(
        tokens["token"].tolist(),
        values,
        tracks=tokens[[track]],
        hover=figures.token_hover(tokens, data.vocab(run), [track]),
    ),
    width="stretch",
    key="probe_text",
)
