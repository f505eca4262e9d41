"""Text heatmap: the text coloured by one unit, a units × tokens window, and an overview of the whole run."""

import numpy as np
import pandas as pd
import streamlit as st

from lstmviz import names
from lstmviz.dashboard import (
    attribution_panel,
    data,
    figures,
    intervening,
    livetext,
    pickers,
    sidebar,
    unitview,
    widgets,
)
from lstmviz.dashboard.live import live_model, live_run
from lstmviz.errors import UserError

st.title("Text heatmap")
st.write(
    "Each character (or word) is coloured by the value of one unit as the model read it: red is positive, blue "
    "negative, white near zero. A unit that lights up inside strings, or counts brackets, shows up as stripes "
    "that follow the text. Hover a token for its value, its annotations and the model's next-token guesses."
)

run, key = sidebar.current_run()
corpus, corpus_key = run, key  # live mode reads a typed text; the corpus run stays the reference
live = st.toggle(
    "Live mode: type your own text",
    key="live",
    help="Records your text on the spot with the model this run was recorded with.",
)
if live:
    typed = st.text_input(
        "Another checkpoint (optional)",
        key="live_ckpt",
        placeholder="empty: this run's own model",
        help="Empty: the run's own model, rebuilt from its manifest (a native checkpoint, or a factory with its "
        "weights); a pickled module is never loaded here. Or a native checkpoint (from `lstmviz train`) under "
        "the runs root or the sample models.",
    )
    text = livetext.live_text_area("Your text", "live_text", placeholder="def f(x):\n    return (x + 1)")
    if not text.strip():
        widgets.empty("Type or paste some text above; it is recorded as you type, when you pause.")
    ann = "code" if "in_string" in run.token_columns else "parens" if "depth" in run.token_columns else "none"
    try:
        model = live_model(run, typed)
        recorded = live_run(model, text, ann)
    except UserError as e:
        widgets.fail(
            f"Cannot record this text: {e}",
            "Leave the checkpoint empty for this run's own model, or remove symbols the model does not know.",
        )
    if recorded.note:
        st.info(recorded.note, icon=":material/info:")
    run, key = data.load_run(recorded.path)

c1, c2 = st.columns([3, 1])
name = pickers.activation(run, where=c1)
u = pickers.unit(run, name, where=c2)
unitview.unit_link(name, u)
start, stop = (0, min(run.n_tokens, max(pickers.WIDTHS))) if live else pickers.window(run)
track_names = pickers.tracks(run)

tokens = data.tokens_window(key, start, stop)
values = data.window(key, name, start, stop)  # (T, U)
if not len(tokens):
    widgets.empty("This run has no tokens in this window.")
hover = figures.token_hover(tokens, data.vocab(run))  # the figure adds the value and the drawn tracks' values
tracks = tokens[track_names] if track_names else None
stats = run.stats[(run.stats["name"] == name) & (run.stats["unit"] == u)] if not run.stats.empty else None
zrange = None if stats is None or stats.empty else figures.symmetric_range(stats[["min", "max"]].to_numpy(np.float32))
kind = run.info(name)["kind"]
if kind in names.SIGMOID_KINDS:
    st.caption("A gate lies in 0…1: white where it is shut, dark green where it is open.")

last_doc = run.token_table.column("doc")[run.n_tokens - 1].as_py() if run.n_tokens else 0  # docs count from 0
docs = tokens["doc"].to_numpy() if last_doc > 0 else None

st.subheader(f"Unit {u} of {name}")
st.plotly_chart(
    figures.text_figure(
        tokens["token"].tolist(),
        values[:, u],
        hover=hover,
        tracks=tracks,
        joiner=data.joiner(run),
        docs=docs,
        zrange=zrange,
        kind=kind,
        font_size=sidebar.font_size(),
    ),
    width="stretch",
    key="text_fig",
)
widgets.csv_download(
    pd.DataFrame({"idx": tokens["idx"], "token": tokens["token"], "value": values[:, u]}),
    f"{name}.u{u}.{start}-{stop}.csv",
)

st.subheader("Attribution: what the model's next guess rests on")
attribution_panel.show(run, key, start, stop)

st.subheader("All units in this window")
st.plotly_chart(
    figures.units_heatmap(
        values, start, range(values.shape[1]), tokens["token"].tolist(), tracks=tracks, select=False, kind=kind
    ),
    width="stretch",
    key="units_fig",
)
widgets.csv_download(
    pd.DataFrame(values, columns=[f"u{j}" for j in range(values.shape[1])]).assign(
        idx=tokens["idx"].to_numpy(), token=tokens["token"].to_numpy()
    ),
    f"{name}.{start}-{stop}.csv",
    key="dl_window",
)

if not live:
    st.subheader("The whole run, downsampled")
    binned, per = data.overview(key, name)
    st.caption(f"Each column is the mean of {per} tokens; the box is the window above.")
    st.plotly_chart(figures.overview_figure(binned, per, (start, stop), kind=kind), width="stretch", key="ov_fig")
    widgets.csv_download(
        pd.DataFrame(binned, columns=[f"u{j}" for j in range(binned.shape[1])]).assign(
            first_token=np.arange(len(binned)) * per
        ),
        f"{name}.overview.csv",
        key="dl_overview",
    )

if live:
    st.subheader("Units unusual on your text")
    unitview.prompt_view(corpus, corpus_key, key, name)
    st.subheader("Intervene on your text")
    intervening.on_text(corpus, corpus_key, model, key, name, u)
