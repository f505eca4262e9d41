"""Units: every unit of every layer and kind in one table, labelled; search it, click a row to open its card."""

import streamlit as st

from lstmviz.analysis import units
from lstmviz.dashboard import sidebar, state, unitview, widgets

st.title("Units")
st.write(
    "Every unit of the run, each with an automatic label: the annotation it tracks best (ROC-AUC for yes/no "
    "annotations, correlation for numbers) and the tokens that stand out in its strongest contexts. Type to "
    "search (e.g. string, bracket, a token), sort by a column, and click a row to open the unit's card."
)
with st.expander("How units are labelled"):
    st.markdown(widgets.help_text(units.label_units))

run, key = sidebar.current_run()
table = unitview.catalogue(key)
state.init("q", "", str)
query = st.text_input("Search", key="q", placeholder="e.g. string")
state.publish("q", query)
shown = units.search(table, query).reset_index(drop=True)
st.caption(f"{len(shown):,} of {len(table):,} units")
if shown.empty:
    widgets.empty(f"No unit's name, label or top tokens contain “{query}”.")
columns = ["name", "unit", "label", "score", "strength", "kind", "layer", "dir"]
picked = st.dataframe(
    shown[columns], hide_index=True, on_select="rerun", selection_mode="single-row", key="units_table", height=600
)
rows = picked.selection.rows
if rows:
    row = shown.iloc[rows[0]]
    widgets.goto("unit", act=str(row["name"]), unit=int(row["unit"]))
