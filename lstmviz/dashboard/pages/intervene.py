"""Intervene: hold units of the recurrent state at a value and see what the model then predicts and writes."""

import numpy as np
import streamlit as st

from lstmviz.dashboard import data, figures, intervening, state, widgets
from lstmviz.errors import UserError

st.title("Intervene")
st.write(
    "Hold one or more units at a value while the model reads the text, and see which predictions change: each "
    "token is coloured by how much more (red) or less (blue) likely the model found it with the units held. "
    "This tests what a unit *does*, where the other pages show where it is *on*."
)
st.caption(
    "Conclude: a large, targeted change (strings opened or closed, brackets mis-counted) says the model reads "
    "this unit for that decision. Do not conclude: that no change means the unit is unused (others may carry "
    "the same information), or anything from a value far outside the unit's recorded range, which the model "
    "never sees. A clamp of a lower layer also changes every layer above it."
)

run, key = widgets.current_run()
ckpt = data.checkpoint_of(run)
if ckpt is None:
    widgets.empty("This run names no checkpoint that still exists: an intervention needs the model itself.")
c1, c2, c3 = st.columns([3, 2, 2])
name = widgets.activation(run, key="iv_act", kinds=("h", "c"), label="Hold (state)", where=c1)
info = run.info(name)
stats = run.stats[run.stats["name"] == name].set_index("unit") if not run.stats.empty else None
state.init("iv_units", "0", str)
raw = c2.text_input(f"Units (0…{info['units'] - 1}, comma-separated)", key="iv_units")
try:
    units = tuple(sorted({int(u) for u in raw.replace(" ", "").split(",") if u}))
except ValueError:
    widgets.fail(f"“{raw}” is not a list of unit numbers.", "Type units like 255 or 12, 40.")
if not units:
    widgets.empty("Type the units to hold, e.g. 255.")
state.publish("iv_units", ",".join(map(str, units)))
kinds = {"number": "a number", "mean": "corpus mean", "zero": "zero"}
state.init("iv_kind", "number", str, lambda v: v in kinds, expect="number, mean or zero")
kind = kinds[c3.selectbox("Value", list(kinds), key="iv_kind", format_func=kinds.get)]
state.publish("iv_kind", st.session_state["iv_kind"])
value: float | str = "mean" if kind == "corpus mean" else "zero" if kind == "zero" else 0.0
if kind == "a number":
    top = float(stats.loc[units[0], "max"]) if stats is not None and units[0] in stats.index else 1.0
    state.init("iv_value", top, state.finite, expect="a finite number")
    value = float(
        st.number_input(
            "Held at",
            step=0.1,
            key="iv_value",
            help="Defaults to the first unit's largest recorded value: the unit fully on.",
        )
    )
    state.publish("iv_value", value)
    if stats is not None and all(u in stats.index for u in units):
        lo, hi = stats.loc[list(units), "min"].min(), stats.loc[list(units), "max"].max()
        if not lo <= value <= hi:
            st.warning(f"{value:g} is outside the recorded range {lo:.2f}…{hi:.2f}: the model never sees it.")

start, stop = widgets.window(run, key="iv_start")
tokens = data.tokens_window(key, start, stop)
if len(tokens) < 2:
    widgets.empty("This window has fewer than two tokens: widen it.")
span = st.slider("Hold over tokens (of the window)", 0, len(tokens), (0, len(tokens)), key="iv_span")
if span[1] <= span[0]:
    widgets.empty("The span is empty: drag its ends apart.")
layers = max(m["num_layers"] for m in run.manifest["model"]["modules"] if m["path"] == info["module"])
held = (name, units, value)
path, mtime = intervening.checkpoint_key(ckpt)
try:
    table, d_total, d_direct = intervening.token_effects(
        path, mtime, key, tuple(int(t) for t in tokens["token_id"]), held, tuple(span), info["layer"] == layers - 1
    )
except UserError as e:
    widgets.fail(str(e), "Pick other units or values.")

m1, m2 = st.columns(2)
m1.metric("Δ loss, total (nats per token)", f"{d_total:+.4f}", help="Mean change in −log p of each next token.")
if d_direct is not None:
    m2.metric(
        "Δ loss, direct (decoder only)",
        f"{d_direct:+.4f}",
        help="The held value reaching only the decoder, at the held steps: no recurrence. The gap to the "
        "total is what the recurrence carried on.",
    )
delta = table["total"].to_numpy()
st.plotly_chart(
    figures.text_figure(
        tokens["token"].astype(str).tolist(),
        np.nan_to_num(delta),
        hover=[f"Δ log p = {v:+.3f}" for v in np.nan_to_num(delta)],
        zrange=figures.symmetric_range(np.nan_to_num(delta)),
        title=f"Δ log p(actual token), {name} units {', '.join(map(str, units))} held",
    ),
    width="stretch",
    key="iv_text",
)
st.caption("The window is read from a zero state, without the text before it.")

st.subheader("Generate")
g1, g2, g3, g4 = st.columns([4, 1, 1, 1])
default_prompt = "".join(tokens["token"].astype(str).tolist()[:40])
prompt = g1.text_area("Prompt", value=default_prompt, key="iv_prompt", height=90)
n = int(g2.number_input("Tokens", 1, 400, 120, key="iv_n"))
temperature = float(g3.number_input("Temperature", 0.0, 2.0, 0.7, step=0.1, key="iv_temp"))
seed = int(g4.number_input("Seed", 0, 2**31 - 1, 0, key="iv_seed"))
if not prompt:
    widgets.empty("Type a prompt to continue.")
try:
    plain, clamped = intervening.generations(path, mtime, key, prompt, n, held, temperature, seed)
except UserError as e:
    widgets.fail(f"Cannot generate: {e}", "Remove symbols the model does not know from the prompt.")
left, right = st.columns(2)
left.markdown("**As trained**")
left.code(prompt + plain, language=None, wrap_lines=True)
right.markdown(f"**With {name} {', '.join(map(str, units))} held**")
right.code(prompt + clamped, language=None, wrap_lines=True)
