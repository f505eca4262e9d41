"""Gradient flow: how strongly the loss at one step depends on states k steps earlier, per model and layer."""

from pathlib import Path

import pandas as pd
import streamlit as st

from lstmviz.analysis import gradients
from lstmviz.dashboard import data, figures, progress, sidebar, state, widgets
from lstmviz.errors import UserError
from lstmviz.store import RunError

st.title("Gradient flow")
st.write(
    "Training can only teach a model what its gradients reach. Each curve is the size of ∂loss(t)/∂state(t−k) "
    "against the distance k, on a log scale, with a 10–90 % band over sampled steps t. A vanilla RNN's curve "
    "falls off a cliff; an LSTM's cell state keeps it up for much longer."
)
with st.expander("How it is computed"):
    st.markdown(widgets.help_text(gradients))

run, key = sidebar.current_run()
root = data.runs_root()
here = Path(key[0])
names = {}  # name in the URL (relative to the runs root) → path, every run but the one on show
for p in data.find_runs(root):
    if p.resolve() != here:
        names[str(p.relative_to(root)) if p.is_relative_to(root) else str(p)] = str(p)
state.init(
    "overlay",
    [],
    lambda raw: list(dict.fromkeys(n for n in raw.split(",") if n)),
    lambda v: isinstance(v, list) and all(n in names for n in v),
    expect=f"a list of other runs under {root} ({', '.join(list(names)[:4]) or 'none'})",
    clamp=lambda v: [n for n in v if n in names],
    show=",".join,
)
cols = st.columns([3, 1, 1])
chosen = cols[0].multiselect("Overlay other runs (their models on their own text)", list(names), key="overlay")
state.publish("overlay", list(chosen), ",".join)
K = cols[1].number_input(
    "Largest distance K",
    min_value=5,
    max_value=400,
    value=max(5, min(100, run.n_tokens // 4)),
    step=5,
    key="grad_K",
    help="Needs a run of more than K + 1 tokens.",
)
n_targets = cols[2].number_input("Target steps", min_value=4, max_value=512, value=32, step=4, key="grad_n")
quantities = st.multiselect(
    "Quantities",
    ["h", "c", "x"],
    default=["h", "c", "x"],
    key="grad_q",
    help="h: hidden state per layer (solid); c: LSTM cell state per layer (dashed); x: the input embedding "
    "(dotted). Each run has one colour, its lower layers lighter.",
)

if run.n_tokens > data.GRADIENT_TOKENS:
    st.caption(f"Measured on each run's first {data.GRADIENT_TOKENS:,} tokens.")

tables = []
for path in [str(run.path), *(names[n] for n in chosen)]:
    try:  # an overlaid run that is broken, or has no model, loses its curve, not the page
        r, _ = data.load_run(path)
        summary = progress.run(
            lambda r=r: data.gradient_flow(r, int(K), int(n_targets)),
            f"Backpropagating through time on {r.path.name}",
        )
    except (UserError, RunError) as e:
        st.warning(f"{Path(path).name}: {e}")
        continue
    part = summary[summary["quantity"].isin(quantities)]
    tables.append(part.assign(series=r.path.name + " " + part["series"], run=r.path.name))
if not tables:
    widgets.empty("No curve to draw: pick a run whose checkpoint exists, and at least one quantity.")
table = pd.concat(tables, ignore_index=True)
bands = [c for c in table.columns if c[0] == "q" and c[1:].isdigit()]
lo, hi = (bands[0], bands[-1]) if bands else ("mean", "mean")
st.plotly_chart(figures.gradient_figure(table.assign(lo=table[lo], hi=table[hi])), width="stretch", key="grad_fig")
widgets.csv_download(table, "gradient_flow.csv")
