"""Overview: the model card, corpus statistics and the list of recorded activations."""

import numpy as np
import pandas as pd
import streamlit as st

from lstmviz.dashboard import widgets

st.title("Overview")
st.write(
    "A recorded *run* is one model read over one text, with every gate, cell state and hidden state kept for "
    "every token. This page says what was recorded; the other pages let you look at it."
)

run, key = widgets.current_run()
m = run.manifest
model, source = m.get("model", {}), m.get("model_source", {})
metrics = source.get("metrics") or {}
tokens = run.tokens

cols = st.columns(4)
cols[0].metric("Tokens", f"{run.n_tokens:,}")
cols[1].metric("Documents", f"{tokens['doc'].nunique() if len(tokens) else 0:,}")
cols[2].metric("Parameters", f"{model.get('params', source.get('params', 0)):,}")
loss = tokens["loss"].to_numpy(float) if "loss" in tokens else np.array([np.nan])
cols[3].metric(
    "Loss on this text", f"{np.nanmean(loss) / np.log(2):.3f} bits/token" if np.isfinite(loss).any() else "–"
)

st.subheader("Model card")
modules = model.get("modules", [])
card = {
    "class": model.get("class", source.get("class", "?")),
    "recurrent modules": "; ".join(
        f"{d['path']}: {d['cell']}, {d['num_layers']} layer(s) × {d['hidden_size']} units"
        + (", bidirectional" if d.get("bidirectional") else "")
        for d in modules
    )
    or "?",
    "checkpoint": source.get("checkpoint", "–"),
    "validation loss": f"{metrics['val_bpc']} bits/char" if metrics.get("val_bpc") else "–",
    "tokenizer": (m.get("tokenizer") or {}).get("kind", "–"),
    "recorded": m.get("created", "?"),
}
st.table(pd.DataFrame({"": list(card), "value": [str(v) for v in card.values()]}).set_index(""))

st.subheader("Activations")
acts = pd.DataFrame(m["activations"])[["name", "module", "layer", "dir", "kind", "units"]]
if not run.stats.empty:
    summary = run.stats.groupby("name").agg(
        mean=("mean", "mean"), std=("std", "mean"), min=("min", "min"), max=("max", "max")
    )
    acts = acts.join(summary, on="name")
st.dataframe(acts, hide_index=True, width="stretch")
widgets.csv_download(acts, "activations.csv")

extra = [c for c in tokens.columns if c not in ("idx", "doc", "pos", "token_id", "token", "top_ids", "top_p")]
st.caption(f"Token columns: {', '.join(extra) if extra else 'none beyond the tokens'}.")

st.subheader("Where next")
for page, (title, icon) in widgets.PAGES.items():
    if page != "overview":
        st.page_link(widgets.page_file(page), label=title, icon=icon)
