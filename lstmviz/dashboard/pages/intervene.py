"""Intervene: hold units of the recurrent state at a value and see what the model then predicts and writes."""

import streamlit as st

from lstmviz.dashboard import data, intervening, live, pickers, sidebar, state, widgets
from lstmviz.errors import UserError

st.title("Intervene")
st.write(
    "Hold one or more units at a value while the model reads the text, and see which predictions change: each "
    "token is coloured by how much more (red) or less (blue) likely the model found it with the units held. "
    "This tests what a unit *does*, where the other pages show where it is *on*. The Unit page has the same "
    "panel for the unit on its card."
)
st.caption(intervening.CONCLUDE)

run, key = sidebar.current_run()
try:
    model = live.live_model(run)
except UserError as e:
    widgets.empty(f"An intervention needs the model itself: {e}.")
c1, c2, c3 = st.columns([3, 2, 2])
name = pickers.activation(run, key="iv_act", kinds=("h", "c"), label="Hold (state)", where=c1)
n_units = run.units(name)
state.init("iv_units", "0", str)
raw = c2.text_input(f"Units (0…{n_units - 1}, comma-separated)", key="iv_units")
try:
    units = intervening.parse_units(raw)
except ValueError:
    widgets.fail(f"“{raw}” is not a list of unit numbers.", "Type units like 255 or 12, 40.")
if not units:
    widgets.empty("Type the units to hold, e.g. 255.")
state.publish("iv_units", ",".join(map(str, units)))
with c3:
    value = intervening.pick_value(run, name, units, "iv")

start, stop = pickers.window(run, key="iv_start")
tokens = data.tokens_window(key, start, stop)
if len(tokens) < 2:
    widgets.empty("This window has fewer than two tokens: widen it.")
span = intervening.pick_span(len(tokens), "iv_span")
held = (name, units, value)
last = intervening.last_layer(run, name)
intervening.show_effect(model, key, tokens, held, span, last, "iv_text", data.joiner(run))
st.caption("The window is read from a zero state, without the text before it.")

st.subheader("Generate")
prompt = data.joiner(run).join(tokens["token"].astype(str).tolist()[:40])
intervening.show_generation(model, key, prompt, held, "iv")
