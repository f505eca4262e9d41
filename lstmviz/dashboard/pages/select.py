"""Select & match (LSTMVis): brush a span, see the units on there, and find where else they are on together."""

import html

import pandas as pd
import streamlit as st

from lstmviz.analysis import select_defaults, select_match
from lstmviz.dashboard import data, figures, pickers, sidebar, unitview, widgets

SHOWN_HITS = 10
# Selected units drawn as lines, the strongest in the span first: more are unreadable, and each costs the page.
MAX_LINES = 20

st.title("Select & match")
st.write(
    "Drag a box over a few tokens of the heatmap (or type the span below). The units that are on (≥ θ) over "
    "the whole span and off in the padding around it are *selected*, and drawn as lines; the match list shows "
    "where else in the corpus those units switch on together, ranked as LSTMVis ranks them. “Show” moves the "
    "window to a match and keeps the selection."
)
with st.expander("How select and match work"):
    st.markdown(widgets.help_text(select_match.select))
    st.markdown(widgets.help_text(select_match.match))
    st.markdown(widgets.help_text(select_defaults.default_threshold))

run, key = sidebar.current_run()
name = pickers.activation(run)
start, stop = pickers.window(run, width=100)
fit = select_defaults.default_threshold(run, name)
th, quantile = pickers.theta(default=(fit.value, fit.quantile))
pad_before, pad_after = pickers.padding()
values = data.window(key, name, start, stop)  # (T, U)
tokens = data.tokens_window(key, start, stop)
theta = select_match.thresholds(run, name, select_match.Threshold(th, quantile))  # (U,)
first = select_defaults.default_span(values, tokens["token"].tolist(), theta, start, pad_before, pad_after)
a, b = pickers.span(run, start, stop, default=first)
track_names = pickers.tracks(run, default=1)

selection = data.select(key, name, (a, b), th, quantile, pad_before, pad_after)
units = [int(u) for u in selection.units]
shown = st.session_state.get("sel_hit")
hit = shown[1:] if shown and shown[0] == (name, tuple(units)) else None  # a match of this selection, on show
heat = figures.units_heatmap(
    values,
    start,
    range(values.shape[1]),
    tokens["token"].tolist(),
    span=(a, b),
    hit=hit,
    tracks=tokens[track_names] if track_names else None,
    kind=run.info(name)["kind"],
)
st.plotly_chart(heat, width="stretch", key="brush", on_select=pickers.set_span_from_box, selection_mode="box")

span_text = "".join(figures.show_token(t) for t in run.tokens_window(a, b, ["token"])["token"].astype(str))
st.subheader(f"Selected units for “{span_text}” [{a}, {b})")
if units:
    st.success(f"{len(units)} unit(s) selected: {', '.join(map(str, units))}")
    drawn = units[:MAX_LINES]
    lines = figures.selection_lines(
        values[:, drawn], start, drawn, tokens["token"].tolist(), theta[drawn], span=(a, b), hit=hit
    )
    st.plotly_chart(lines, width="stretch", key="sel_lines")
    if len(units) > len(drawn):
        st.caption(f"Lines of the {len(drawn)} units strongest in the span; all {len(units)} are matched below.")
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


def show(hit_start: int, hit_stop: int, selected: tuple[str, tuple[int, ...]]) -> None:
    """Move the window to a match, and outline it; the span (so the selection and this list) stays."""
    width = int(st.session_state.get("width", 100))
    st.session_state["start"] = max(hit_start - width // 4, 0)
    st.session_state["sel_hit"] = (selected, hit_start, hit_stop)


def context_html(row: pd.Series) -> str:
    """One match as a line of text: its context, the matched span highlighted."""
    part = {c: html.escape(figures.show_token(str(row[c]))) for c in ("before", "text", "after")}
    return (
        '<div style="font-family:monospace;white-space:pre;overflow:hidden;text-overflow:ellipsis;'
        f'padding-top:0.45rem">{part["before"]}<mark style="background:#fde68a;font-weight:600">'
        f"{part['text']}</mark>{part['after']}</div>"
    )


for row in hits.head(SHOWN_HITS).itertuples(index=False):
    cols = st.columns([1.3, 9, 2.2], vertical_alignment="center")
    here = hit == (row.start, row.stop)
    cols[0].button(
        f"{'▶' if here else 'Show'} #{row.rank}",
        key=f"hit_{row.rank}",
        on_click=show,
        args=(int(row.start), int(row.stop), (name, tuple(units))),
        type="primary" if here else "secondary",
        width="stretch",
    )
    cols[1].html(context_html(pd.Series(row._asdict())))
    cols[2].caption(f"token {row.start:,} · {row.n_selected}/{len(units)} on · {row.n_extra} extra")
with st.expander(f"All {len(hits)} matches as a table"):
    st.dataframe(
        hits[["rank", "start", "length", "n_selected", "n_extra", "before", "text", "after"]],
        hide_index=True,
        width="stretch",
    )
widgets.csv_download(hits, f"{name}.matches.csv", "Download matches")
