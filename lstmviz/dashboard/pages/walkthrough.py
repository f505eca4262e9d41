"""Cell walkthrough (for class): step through a text one token at a time and watch one unit's gates and states."""

import numpy as np
import streamlit as st

from lstmviz.dashboard import cellview, data, figures, helptext, pickers, sidebar, stepper, unitview, widgets
from lstmviz.errors import UserError
from lstmviz.names import GRU_Z_CAVEAT, equations

st.title("Cell walkthrough")
st.write(
    "Pick one unit and read the text with it, one token at a time. The diagram shows that unit's numbers at "
    "the current token: how much the input pushes (x), what it remembers (h₋₁, c₋₁), each gate, and the new "
    "cell and hidden state. The lines below show the same numbers over the stretch of text around it. Type a "
    "token number or find a word to go there; ▶ Play steps on by itself."
)

run, key = sidebar.current_run()
c1, c2 = st.columns([3, 1])
name = pickers.activation(run, where=c1)
u = pickers.unit(run, name, where=c2)
unitview.unit_link(name, u)
group = cellview.layer_group(run, name)
cell = cellview.cell_type(group)
font = sidebar.font_size()

weights = None
ckpt = data.checkpoint_of(run)
if ckpt is not None:
    try:
        weights = cellview.recurrent_weights(data.load_model(ckpt).module, name)
    except UserError as e:
        st.caption(f"Without the model ({e}), the input's part x is not shown.")


def walk() -> None:
    """The controls and everything drawn at the current token: what Play redraws."""
    step = stepper.stepper(run)
    lo, hi = stepper.stretch(step, run.n_tokens)
    trace = data.unit_trace(key, name, u, lo, hi, weights)
    tokens = data.tokens_window(key, lo, hi)["token"].astype(str).tolist()
    now = trace.iloc[step - lo]
    before = "".join(figures.show_token(t) for t in tokens[max(step - lo - 29, 0) : step - lo])
    now_read = f"**{figures.code_span(figures.show_token(tokens[step - lo]))}**"
    st.markdown(f"Reading: {figures.code_span(before) + ' ' if before else ''}{now_read} (token {step:,})")

    if cellview.tapped(run, name):
        st.info(
            "This is a custom cell recorded with `lstmviz.tap`: lstmviz does not know its equations, so there is "
            "no diagram, no equations and no input part x here. The lines below show every kind it tapped, and "
            "h₋₁ (c₋₁) where it tapped h (c)."
        )
    else:
        # in projector mode the typeset equations are too wide for a column beside the diagram: they go under it
        left, right = st.columns([3, 2]) if font == figures.FONT else (st.container(), st.container())
        values = {k: float(now[k]) for k in trace.columns if k != "idx" and np.isfinite(now[k])}
        left.plotly_chart(
            figures.cell_figure(cell, values, f"{cell} unit {u}, layer {run.info(name)['layer']}", font_size=font),
            width="stretch",
            key="cell_fig",
        )
        with right:
            for line in equations(cell):
                st.latex(helptext.equation(line))
            if cell == "GRU":
                st.caption(GRU_Z_CAVEAT)
    st.plotly_chart(
        figures.sparklines(
            {k: trace[k].to_numpy() for k in trace.columns if k != "idx"}, step - lo, tokens, start=lo, font_size=font
        ),
        width="stretch",
        key="spark_fig",
    )
    widgets.csv_download(trace.assign(token=tokens), f"walkthrough.{name}.u{u}.{lo}-{hi}.csv")


stepper.playing_fragment(walk)
