"""Compare: two runs side by side on the same stretch of text, e.g. an LSTM and a GRU, or two checkpoints."""

from pathlib import Path

import pandas as pd
import streamlit as st

from lstmviz.dashboard import data, figures, pickers, sidebar, widgets
from lstmviz.store import RunError

st.title("Compare")
st.write(
    "Two models read the same text. Pick a unit in each and see whether they found the same feature: matching "
    "stripes mean both track the same thing. Runs recorded on different text are compared token by token from "
    "the same start, so check the text lines up."
)

run, key = sidebar.current_run()
others = [str(p) for p in data.find_runs(data.runs_root()) if str(p) != str(run.path)]
if not others:
    widgets.empty(
        "Only one run is available. Record another (e.g. `lstmviz samples`, or a second checkpoint) under "
        "the runs root, or type its directory in the sidebar."
    )
other = pickers.choice("other", others, "Compare with", lambda p: Path(p).name)
try:
    run_b, key_b = data.load_run(other)
except RunError as e:
    widgets.fail(str(e), "Pick another run to compare with.")

start, stop = pickers.window(run)
stop_b = min(stop, run_b.n_tokens)
left, right = st.columns(2)
tables = []
for col, r, k, suffix, end in ((left, run, key, "", stop), (right, run_b, key_b, "_b", stop_b)):
    with col:
        st.subheader(r.path.name)
        if start >= end:
            st.info(f"{r.path.name} has only {r.n_tokens:,} tokens.")
            continue
        name = pickers.activation(r, key=f"cmp_act{suffix}")
        u = pickers.unit(r, name, key=f"cmp_unit{suffix}")
        tokens = data.tokens_window(k, start, end)
        values = data.window(k, name, start, end, (u,))[:, 0]
        st.plotly_chart(
            figures.text_figure(
                tokens["token"].tolist(),
                values,
                cols=60,
                joiner=data.joiner(r),
                hover=figures.token_hover(tokens, data.vocab(r)),
                kind=r.info(name)["kind"],
            ),
            width="stretch",
            key=f"cmp_fig{suffix}",
        )
        tables.append(
            pd.DataFrame(
                {"idx": tokens["idx"], f"{r.path.name}.token": tokens["token"], f"{r.path.name}.{name}.u{u}": values}
            ).set_index("idx")
        )
if tables:
    widgets.csv_download(pd.concat(tables, axis=1).reset_index(), "compare.csv")
