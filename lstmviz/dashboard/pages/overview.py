"""Overview: the model card, corpus statistics and the list of recorded activations."""

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import streamlit as st

from lstmviz.dashboard import sidebar, widgets

# Per-unit counts of NaN and of ±inf values in stats.parquet (absent from runs recorded before they were kept).
NONFINITE = ("n_nan", "n_inf")

st.title("Overview")
st.write(
    "A recorded *run* is one model read over one text, with every gate, cell state and hidden state kept for "
    "every token. This page says what was recorded; the other pages let you look at it."
)


def model_source(source: dict) -> dict[str, str]:
    """The model card's rows saying where the model came from: a checkpoint, or a factory with its weights."""
    spec = source.get("rebuild") or {}
    if source.get("source") == "factory" or spec.get("model"):
        rows = {
            "factory": source.get("factory") or spec.get("model"),
            "weights": source.get("weights") or spec.get("weights"),
        }
        return {k: v for k, v in {**rows, "code": spec.get("code")}.items() if v}
    kind = " (a pickled module)" if source.get("source") == "pickle" else ""
    return {"checkpoint": f"{source.get('checkpoint') or spec.get('checkpoint') or '–'}{kind}"}


run, key = sidebar.current_run()
m = run.manifest
model, source = m.get("model", {}), m.get("model_source", {})
metrics = source.get("metrics") or {}
columns = run.token_columns

cols = st.columns(4)
cols[0].metric("Tokens", f"{run.n_tokens:,}")
cols[1].metric("Documents", f"{pc.count_distinct(run.token_table.column('doc')).as_py() if run.n_tokens else 0:,}")
cols[2].metric("Parameters", f"{model.get('params', source.get('params', 0)):,}")
loss = run.token_column("loss").to_numpy(float) if "loss" in columns else np.array([np.nan])
cols[3].metric(  # the unit in the label: a value as long as "6.668 bits/token" is cut off in a quarter column
    "Loss, bits/token",
    f"{np.nanmean(loss) / np.log(2):.3f}" if np.isfinite(loss).any() else "–",
    help="The model's mean next-token loss on this run's text, in bits per token.",
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
    **model_source(source),
    "validation loss": f"{metrics['val_bpc']} bits/char" if metrics.get("val_bpc") else "–",
    "tokenizer": (m.get("tokenizer") or {}).get("kind", "–"),
    "recorded": m.get("created", "?"),
}
st.table(pd.DataFrame({"": list(card), "value": [str(v) for v in card.values()]}).set_index(""))

st.subheader("Activations")
acts = pd.DataFrame(m["activations"])[["name", "module", "layer", "dir", "kind", "units"]]
stats = run.stats
counted = [c for c in NONFINITE if c in stats]  # runs recorded before lstmviz counted NaN/inf lack the columns
if not stats.empty:
    columns = dict(mean=("mean", "mean"), std=("std", "mean"), min=("min", "min"), max=("max", "max"))
    summary = stats.groupby("name").agg(**columns, **{c: (c, "sum") for c in counted})
    acts = acts.join(summary, on="name")
bad = stats[stats[counted].sum(axis=1) > 0] if counted else stats.iloc[:0]
if len(bad):
    where = ", ".join(f"{k} of {name}" for name, k in bad.groupby("name", sort=False).size().items())
    units = "unit holds" if len(bad) == 1 else "units hold"
    st.warning(
        f"{len(bad)} {units} NaN/inf values: {where}. The model produced them on this text (it diverged, or its "
        "weights hold NaN/inf); the n_nan and n_inf columns count them, and the table below names the units.",
        icon=":material/warning:",
    )
st.dataframe(acts, hide_index=True, width="stretch")
widgets.csv_download(acts, "activations.csv")
if len(bad):
    with st.expander(f"The {len(bad)} units holding NaN/inf values"):
        st.dataframe(bad[["name", "unit", *counted]], hide_index=True, width="stretch")

extra = [c for c in columns if c not in ("idx", "doc", "pos", "token_id", "token", "top_ids", "top_p")]
st.caption(f"Token columns: {', '.join(extra) if extra else 'none beyond the tokens'}.")

st.subheader("Where next")
for page, (title, icon) in widgets.PAGES.items():
    if page != "overview":
        st.page_link(widgets.page_file(page), label=title, icon=icon)
