"""Select & match (LSTMVis): brush a span, see the units on there, and find where else they are on together."""

import pandas as pd
import streamlit as st

from lstmviz.analysis import select_match
from lstmviz.dashboard import data, figures, unitview, widgets

st.title("Select & match")
st.write(
    "Drag a box over a few tokens of the heatmap (or type the span below). The units that are on (≥ θ) over "
    "the whole span and off in the padding around it are *selected*; the match list shows where else in the "
    "corpus those units switch on together, ranked as LSTMVis ranks them. Click a hit to jump there."
)
with st.expander("How select and match work"):
    st.markdown(select_match.select.__doc__.split("Args:")[0])
    st.markdown(select_match.match.__doc__.split("Args:")[0])

run, key = widgets.current_run()
name = widgets.activation(run)
start, stop = widgets.window(run)
a, b = widgets.span(run, start, stop)
th, quantile = widgets.theta()
pad_before, pad_after = widgets.padding()
track_names = widgets.tracks(run, default=1)

values = data.window(key, name, start, stop)  # (T, U)
tokens = data.tokens_window(key, start, stop)
heat = figures.units_heatmap(
    values,
    start,
    range(values.shape[1]),
    tokens["token"].tolist(),
    span=(a, b),
    tracks=tokens[track_names] if track_names else None,
)
st.plotly_chart(heat, width="stretch", key="brush", on_select=widgets.set_span_from_box, selection_mode="box")

selection = data.select(key, name, (a, b), th, quantile, pad_before, pad_after)
units = [int(u) for u in selection.units]
span_text = "".join(figures.show_token(t) for t in run.tokens["token"].iloc[a:b].astype(str))
st.subheader(f"Selected units for “{span_text}” [{a}, {b})")
if units:
    st.success(f"{len(units)} unit(s) selected: {', '.join(map(str, units))}")
    unitview.unit_link(name, units[0])
else:
    st.info(
        "No unit is on over the whole span and off in the padding. Lower θ, shorten the span or the "
        "padding, or look at the near-misses below."
    )
if len(selection.near_misses):
    st.caption("Near-misses: units that fail at only a few steps")
    st.dataframe(selection.near_misses, hide_index=True, width="stretch", height=160)
widgets.csv_download(pd.DataFrame({"unit": units}), f"{name}.selected.{a}-{b}.csv", "Download selected units")
if not units:
    st.stop()

st.subheader("Matches across the corpus")
hits = data.match(key, name, tuple(units), th, quantile, pad_before, pad_after)
if hits.empty:
    widgets.empty("No other span has these units on together.")
counts = data.on_counts(key, name, tuple(units), th, quantile, start, stop)
st.plotly_chart(
    figures.counts_figure(counts, start, len(units), "Selected units on, in this window"),
    width="stretch",
    key="counts_fig",
)


def jump() -> None:
    """A clicked hit moves the window and the span there."""
    rows = st.session_state["hits"].selection.rows
    if rows:
        hit = hits.iloc[rows[0]]
        st.session_state["start"] = max(int(hit["start"]) - 20, 0)
        st.session_state["span_a"], st.session_state["span_b"] = int(hit["start"]), int(hit["stop"])


st.dataframe(
    hits[["rank", "start", "length", "n_selected", "n_extra", "before", "text", "after"]],
    hide_index=True,
    width="stretch",
    on_select=jump,
    selection_mode="single-row",
    key="hits",
)
widgets.csv_download(hits, f"{name}.matches.csv", "Download matches")
