"""Projection: token states of one activation in 2-D (PCA or UMAP), coloured by annotation, token or a unit."""

import pandas as pd
import streamlit as st

from lstmviz.analysis import projection
from lstmviz.dashboard import data, figures, pickers, progress, sidebar, widgets

st.title("Projection")
st.write(
    "Every dot is the state of one layer after reading one token, squeezed from many units to two "
    "dimensions. Tokens the model treats alike land close together. Colour the dots by an annotation to see "
    "whether, say, 'inside a string' forms its own island; lasso a group to list the contexts."
)
with st.expander("How the map is made"):
    st.markdown(widgets.help_text(projection.project))

run, key = sidebar.current_run()
c1, c2, c3 = st.columns([3, 1, 1])
name = pickers.activation(run, where=c1)
method = pickers.choice("method", list(projection.METHODS), "Method", str.upper, where=c2)
n = int(
    c3.number_input(
        "Tokens sampled",
        min_value=100,
        max_value=50_000,
        value=5_000,
        step=500,
        key="proj_n",
        help="A seeded uniform sample of the run's tokens (all of them when the run is smaller).",
    )
)
if run.n_tokens < 3:
    widgets.empty("Nothing to project: a map needs at least 3 tokens.")
if method == "umap":
    st.caption("UMAP's first use in a process compiles numba code (a minute or more); later views come from cache.")
table, explained = progress.run(
    lambda: data.projection(key, name, method, min(n, run.n_tokens)),
    f"Making the {method.upper()} map of {min(n, run.n_tokens):,} tokens",
    expected_s=projection.expected_seconds(run, name, method, n),
)
if len(table) < n:
    st.caption(f"The run has {run.n_tokens:,} tokens: all of them are shown.")
axes = (
    (f"PC1 ({explained[0]:.0%} of the variance)", f"PC2 ({explained[1]:.0%})")
    if len(explained) == 2
    else (f"{method.upper()} 1", f"{method.upper()} 2")
)

skip = {"x", "y", "hover", "context", "top_ids", "top_p", "idx", "doc", "pos", "token_id"}
options = ["token class", "position", "unit value", *[c for c in table.columns if c not in skip]]
color = pickers.choice("color", list(dict.fromkeys(options)), "Colour by")
if color == "unit value":
    u = pickers.unit(run, name)
    table = table.assign(**{"unit value": data.values_at(key, name, u, tuple(table["idx"]))})
elif color == "token class":
    table = table.assign(**{"token class": figures.token_class(table["token"])})
elif color == "position":
    table = table.assign(position=table["pos"])

st.plotly_chart(
    figures.projection_figure(table, color, axes=axes),
    width="stretch",
    key="proj_fig",
    on_select="rerun",
    selection_mode=("lasso", "box"),
)
widgets.csv_download(table.drop(columns=[c for c in ("top_ids", "top_p") if c in table]), f"{name}.{method}.csv")
picked = ((st.session_state.get("proj_fig") or {}).get("selection") or {}).get("points") or []
if not picked:
    st.stop()
chosen = table.loc[table.index.isin(pd.DataFrame(picked)["customdata"])].reset_index(drop=True)
st.subheader(f"{len(chosen)} selected contexts")
st.caption("Click a row to open the Text heatmap at that token.")
rows = st.dataframe(
    chosen[["idx", "token", "context"]],
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key="proj_rows",
).selection.rows
if rows:  # the table is not drawn on the Text page, so its selection is gone when the user comes back
    at = int(chosen["idx"].iloc[rows[0]])
    widgets.goto("text", act=name, start=max(at - 20, 0), **({"unit": u} if color == "unit value" else {}))
