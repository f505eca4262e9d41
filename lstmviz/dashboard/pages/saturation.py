"""Gate saturation (Karpathy, Johnson & Fei-Fei 2015, §4.2): how often each gate unit is nearly shut or open."""

import streamlit as st

from lstmviz.analysis import saturation
from lstmviz.dashboard import data, figures, sidebar, widgets
from lstmviz.names import GRU_Z_CAVEAT

st.title("Gate saturation")
st.write(
    "Each dot is one gate unit. Its x is the fraction of steps where the gate is above *high* (wide open), "
    "its y the fraction below *low* (shut). Dots in the corners are gates that act like switches; dots near "
    "the origin are gates that stay in between. Click a dot to see that unit colour the text."
)
with st.expander("How saturation is counted"):
    st.markdown(widgets.help_text(saturation.saturation))

run, key = sidebar.current_run()
gates = saturation.gate_names(run)
if not gates:
    widgets.empty(
        "This run has no sigmoid gates (i, f, o of an LSTM; r, z of a GRU): a vanilla RNN has none, and a custom "
        "cell has those it taps with `lstmviz.tap(self, kind, value, gate=True)`."
    )
if any(saturation.gate_cell(run, n) == "GRU" for n in gates):
    st.caption(GRU_Z_CAVEAT)
cols = st.columns(2)
low = cols[0].slider("low", 0.0, 0.5, 0.1, 0.05, key="sat_low", help="Left-saturated: the gate is below low.")
high = cols[1].slider("high", 0.5, 1.0, 0.9, 0.05, key="sat_high", help="Right-saturated: the gate is above high.")
table = data.saturation(key, low, high)
if table["source"].eq("scan").any():
    st.caption(f"Counted over all {run.n_tokens:,} tokens at these thresholds (the recorded stats use 0.1 and 0.9).")


def open_unit() -> None:
    """Remember the clicked unit; the page switch happens in the script body (not allowed in a callback)."""
    points = st.session_state["sat_fig"].selection.points
    if points:
        name, u = points[0]["customdata"]
        st.session_state["_sat_open"] = (str(name), int(u))


st.plotly_chart(
    figures.saturation_figure(table), width="stretch", key="sat_fig", on_select=open_unit, selection_mode="points"
)
widgets.csv_download(table, "saturation.csv")
if "_sat_open" in st.session_state:
    name, u = st.session_state.pop("_sat_open")
    widgets.goto("text", act=name, unit=u)
