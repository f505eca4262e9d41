"""Gradient flow: how strongly the loss at one step depends on states k steps earlier, per model and layer."""

from pathlib import Path

import pandas as pd
import streamlit as st

from lstmviz.analysis import gradients
from lstmviz.dashboard import data, figures, state, widgets
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

run, key = widgets.current_run()
others = [str(p) for p in data.find_runs(data.runs_root()) if str(p) != str(run.path)]
cols = st.columns([3, 1, 1])
by_name = {Path(p).name: p for p in others}
state.init(
    "grad_runs",
    [],
    lambda raw: [by_name[n] for n in raw.split(",") if n in by_name],
    lambda v: isinstance(v, list) and all(p in others for p in v),
    url="overlay",
)
chosen = cols[0].multiselect(
    "Overlay other runs (their models on their own text)", others, key="grad_runs", format_func=lambda p: Path(p).name
)
state.publish("grad_runs", chosen, lambda v: ",".join(Path(p).name for p in v), url="overlay")
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
    help="h: hidden state per layer; c: LSTM cell state per layer; x: the input embedding.",
)

if run.n_tokens > data.GRADIENT_TOKENS:
    st.caption(f"Measured on each run's first {data.GRADIENT_TOKENS:,} tokens.")

tables = []
for path in [str(run.path), *chosen]:
    try:  # an overlaid run that is broken, or has no model, loses its curve, not the page
        r, _ = data.load_run(path)
        summary = data.gradient_flow(r, int(K), int(n_targets))
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
