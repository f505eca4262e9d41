"""Projection: token states of one activation in 2-D (PCA or UMAP), coloured by annotation, token or a unit."""

import pandas as pd
import streamlit as st

from lstmviz.dashboard import data, figures, widgets

st.title("Projection")
st.write(
    "Every dot is the state of one layer after reading one token, squeezed from many units to two "
    "dimensions. Tokens the model treats alike land close together. Colour the dots by an annotation to see "
    "whether, say, 'inside a string' forms its own island; lasso a group to list the contexts."
)

run, key = widgets.current_run()
c1, c2, c3 = st.columns([3, 1, 1])
name = widgets.activation(run, where=c1)
method = widgets.choice("method", ["pca", "umap"], "Method", str.upper, where=c2)
n = int(
    c3.number_input(
        "Tokens sampled", min_value=100, max_value=50_000, value=min(5_000, run.n_tokens), step=500, key="proj_n"
    )
)
if method == "umap":
    st.caption("UMAP's first use in a process compiles numba code (about a minute); later views come from cache.")
table = data.projection(key, name, method, min(n, run.n_tokens))
if table.empty:
    widgets.empty("Nothing to project: this run has no tokens.")

skip = {"x", "y", "hover", "top_ids", "top_p", "idx", "doc", "token_id"}
options = ["token class", "position", "unit value", *[c for c in table.columns if c not in skip]]
color = widgets.choice("color", list(dict.fromkeys(options)), "Colour by")
if color == "unit value":
    u = widgets.unit(run, name)
    table = table.assign(**{"unit value": data.values_at(key, name, u, tuple(table["idx"]))})
elif color == "token class":
    table = table.assign(**{"token class": figures.token_class(table["token"])})
elif color == "position":
    table = table.assign(position=table["pos"] if "pos" in table else table["idx"])

st.plotly_chart(
    figures.projection_figure(table, color),
    width="stretch",
    key="proj_fig",
    on_select="rerun",
    selection_mode=("lasso", "box"),
)
widgets.csv_download(table.drop(columns=[c for c in ("top_ids", "top_p") if c in table]), f"{name}.{method}.csv")
picked = st.session_state["proj_fig"].selection.points if st.session_state.get("proj_fig") else []
if picked:
    rows = pd.DataFrame(picked)
    chosen = (
        table.loc[table.index.isin(rows.get("customdata", pd.Series(dtype=int)))]
        if "customdata" in rows
        else table.iloc[rows["point_index"].to_numpy()]
    )
    st.subheader(f"{len(chosen)} selected contexts")
    st.dataframe(chosen[["idx", "hover"]].rename(columns={"hover": "context"}), hide_index=True, width="stretch")
