"""Unit: what does this one unit do? Its strongest contexts over the whole corpus, bands, stats, neighbours, effect."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from lstmviz.analysis import units
from lstmviz.dashboard import data, intervening, live, pickers, sidebar, state, unitview, widgets
from lstmviz.errors import UserError
from lstmviz.store import RunError

st.title("Unit")
st.write(
    "One unit over the whole corpus: where it is most positive and most negative (each context coloured by the "
    "unit, red positive, blue negative, the top token outlined), examples from each tenth of its values, where "
    "in the corpus it is on, the units that move with it, and what it does to the next token. At the bottom, "
    "hold it (and others) at a value and see what the model then predicts and writes."
)
with st.expander("How the label and the contexts are made"):
    st.markdown(widgets.help_text(units.label_units))

run, key = sidebar.current_run()
c1, c2 = st.columns([3, 1])
name = pickers.activation(run, where=c1)
u = pickers.unit(run, name, where=c2)
try:
    card = unitview.card(key, name, u)
except RunError as e:
    widgets.fail(str(e), "Record the run again with `lstmviz record` to rebuild its unit cards.")
tokens = unitview.tokens(key)
values = unitview.column(key, name, u)
s = card.stats
st.subheader(f"{name} · unit {u}")
st.markdown(f"**{card.label['label'] or 'no label: it tracks no annotation and no token stands out'}**")

cols = st.columns(6)
for col, (title, v) in zip(
    cols,
    [
        ("mean", s.get("mean")),
        ("std", s.get("std")),
        ("min", s.get("min")),
        ("max", s.get("max")),
        (f"> {s['theta']:g}", s["frac_above"]),
        (f"< −{s['theta']:g}", s["frac_below"]),
    ],
    strict=True,
):
    col.metric(title, "–" if v is None else (f"{v:.1%}" if title[0] in "<>" else f"{v:.3f}"))

hist, scale = unitview.spread(key, name, u)
left, right = st.columns(2)
for where, sign, title in ((left, 1, "Most positive"), (right, -1, "Most negative")):
    where.markdown(f"**{title}** (at most one per ±{card.window} tokens)")
    for row in card.top[sign].itertuples():
        where.markdown(
            f"`{row.value:+.2f}` " + unitview.context_html(tokens, values, int(row.idx), scale), unsafe_allow_html=True
        )

st.markdown("**Examples from each tenth of its values** (top band first)")
for b, band in card.bands.sort_values("band", ascending=False).groupby("band", sort=False):
    lo, hi = band["lo"].iloc[0], band["hi"].iloc[0]
    text = " · ".join(unitview.context_html(tokens, values, int(i), scale, before=6, after=2) for i in band["idx"])
    st.markdown(f"`{b + 1:>2}` `{lo:+.2f}…{hi:+.2f}` {text}", unsafe_allow_html=True)

h1, h2 = st.columns(2)
fig = go.Figure(go.Bar(x=(hist.edges[:-1] + hist.edges[1:]) / 2, y=hist.counts, width=np.diff(hist.edges)))
h1.plotly_chart(fig.update_layout(title="Histogram", height=260, margin=dict(t=40, b=20)), key="unit_hist")
if hist.below or hist.above:
    cut = f"{100 * units.TAIL:g}–{100 * (1 - units.TAIL):g} %"
    h1.caption(
        f"Over its {cut} range; not drawn: {hist.below:,} steps below {hist.edges[0]:.2f} and "
        f"{hist.above:,} above {hist.edges[-1]:.2f} (min {s.get('min', np.nan):.2f}, max {s.get('max', np.nan):.2f})."
    )


def open_text() -> None:
    points = st.session_state["unit_strip"].selection.points
    if points:
        st.session_state["_unit_jump"] = int(points[0]["x"]) * card.strip_per


strip = go.Figure(go.Heatmap(z=[card.strip], colorscale="RdBu_r", zmid=0, showscale=False))
strip.update_layout(title="Where it is on (mean per stretch; click to read there)", height=160, margin=dict(t=40, b=20))
strip.update_yaxes(visible=False)
h2.plotly_chart(strip, key="unit_strip", on_select=open_text, selection_mode="points")
if "_unit_jump" in st.session_state:
    widgets.goto("text", act=name, unit=u, start=st.session_state.pop("_unit_jump"))

st.markdown("**Units that move with it** (Pearson r over the corpus)")
links = st.columns(5)
for i, row in enumerate(card.correlated.itertuples()):
    links[i % 5].button(
        f"unit {row.unit}  r {row.r:+.2f}",
        key=f"corr_{row.unit}",
        on_click=lambda v=int(row.unit): st.session_state.update(unit=v),
    )

st.markdown("**What it does to the next token**")
ckpt = data.checkpoint_of(run)
if not units.feeds_decoder(run, name):
    st.caption("Only the last layer's h feeds the output layer directly; pick it to see the unit's output effect.")
elif ckpt is None:
    st.caption("This run names no checkpoint that still exists: the output effect needs the model itself.")
else:
    try:
        loaded = data.load_model(ckpt)
    except UserError as e:
        widgets.fail(str(e), "Record the run again from a checkpoint that loads.")
    decoder = units.decoder_of(loaded.module, run.units(name))
    if decoder is not None:
        vocab = data.vocab(run) or [str(i) for i in range(decoder.out_features)]
        lens = units.logit_lens(decoder.weight.detach().numpy(), u, vocab)
        up, down = st.columns(2)
        up.dataframe(lens[lens["direction"] == "up"][["token", "weight"]], hide_index=True)
        down.dataframe(lens[lens["direction"] == "down"][["token", "weight"]], hide_index=True)
    if st.button("Measure: hold it at its mean over the first 2,000 tokens", key="unit_measure"):
        with data.MODEL_LOCK:
            fx = units.measured_effect(loaded, run, name, u)
        st.write(
            f"Mean Δ log p(next token): direct {fx['direct']:+.4f} nats (through the output layer alone), "
            f"total {fx['total']:+.4f} nats (through the recurrence as well)."
        )

st.markdown("**Intervene: hold it, and see what the model then predicts and writes**")
state.init("uiv_on", False, state.flag, expect="0 or 1")
holding = st.toggle("Hold this unit (and others) over a stretch of the corpus", key="uiv_on")
if holding or "uiv_on" in st.query_params:
    state.publish("uiv_on", holding, lambda v: str(int(v)))
if not holding:
    st.stop()
try:
    model = live.live_model(run)
except UserError as e:
    widgets.empty(f"An intervention needs the model itself: {e}.")
intervening.forget("uiv", (name, u), keep=("uiv_on",))
top = int(card.top[1]["idx"].iloc[0]) if len(card.top[1]) else 0
w1, w2 = st.columns(2)
begin = int(
    w1.number_input(
        f"Text from token (0…{run.n_tokens - 1:,})",
        0,
        max(run.n_tokens - 1, 0),
        max(0, top - 100),
        key="uiv_begin",
        help="Starts 100 tokens before the unit's strongest positive context.",
    )
)
width = int(w2.selectbox("Tokens", pickers.WIDTHS, index=1, key="uiv_width"))
tokens = data.tokens_window(key, begin, min(begin + width, run.n_tokens))
intervening.panel(run, key, model, name, u, tokens, "uiv", suggest=card.correlated)
