"""The attribution view of the Text heatmap: pick a position and a target, see which tokens before it made the
model predict that target there. The position is typed, or clicked in the view's own text (an invisible marker
per token: plotly heatmaps report no click to streamlit). Widgets and their URL keys (``attr``, ``attr_at``,
``attr_target``, ``attr_method``, ``attr_window``, ``attr_budget``) live here, so the page itself holds one call."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from ..errors import UserError
from ..store import Run
from . import attributing, data, figures, state, widgets

AFTER = 80
"""Tokens drawn after the position, so a click can move it on."""
EXPLAIN = (
    "Pick a token: the text before it is coloured by each token's share of log p(target) there, the model's "
    "log-probability of the chosen next token. Red tokens pushed the model towards the target, blue ones away. "
    "Integrated gradients shares out exactly the change from an all-zero input, so the scores add up to "
    "log p − log p(baseline) up to the completeness gap shown below; gradient × input is its first-order guess."
)
CONCLUDE = (
    "Conclude: the tokens with the largest scores are what this prediction rests on (an opening bracket for a "
    "closing one, a quote for a string's end). Do not conclude: that a white token is unused (the text before the "
    "window is read but not scored, and the zero baseline is not a real token, so scores are relative to "
    "nothing at all), or anything from scores whose completeness gap is large."
)


def _flag(v: bool) -> str:
    return "1" if v else "0"


def show(run: Run, key: data.RunRef, start: int, stop: int) -> None:
    """Draw the view for a position in the token window ``[start, stop)`` of ``run``."""
    st.write(EXPLAIN)
    state.init("attr", False, state.flag, expect="0 or 1")
    on = st.toggle("Attribute a prediction", key="attr", help="Runs the model (a second or a few).")
    state.publish("attr", bool(on), _flag)
    if not on:
        return
    ckpt = data.checkpoint_of(run)
    if ckpt is None:
        st.info("This run names no checkpoint that still exists: attribution needs the model itself.")
        return
    last = stop - 1
    c1, c2, c3, c4, c5 = st.columns([2, 3, 2, 1, 1])
    state.init(
        "attr_at",
        last,
        state.whole,
        lambda v: start <= v <= last,
        expect=f"a token of the window ({start}…{last})",
        clamp=state.clamp_int(start, last),
    )
    idx = int(
        c1.number_input(
            f"Position ({start}…{last})",
            start,
            last,
            step=1,
            key="attr_at",
            help="The token whose next-token prediction is attributed: its top-5 guesses are the targets.",
        )
    )
    state.publish("attr_at", idx)
    rows = run.tokens_window(idx, idx + 2)
    row = rows.iloc[0]
    vocab = data.vocab(run)
    nxt = str(rows["token"].iat[1]) if len(rows) > 1 else None
    tops = [int(i) for i in row["top_ids"]] if "top_ids" in rows and row["top_ids"] is not None else []
    probs = dict(zip(tops, [float(p) for p in row["top_p"]], strict=False)) if tops else {}
    options = (["next"] if nxt is not None else []) + [str(i) for i in tops]
    if not options:
        st.info("The last token of a run without top-5 predictions has no next token to attribute.")
        return

    def label(o: str) -> str:
        if o == "next":
            return f"the actual next token {figures.show_token(nxt)!r}"
        name = vocab[int(o)] if vocab and int(o) < len(vocab) else o
        return f"top: {figures.show_token(name)!r} (p = {probs[int(o)]:.2f})"

    state.init("attr_target", options[0], str, lambda v: v in options, expect="next or a top-5 token id here")
    target = c2.selectbox("Target", options, key="attr_target", format_func=label)
    state.publish("attr_target", target)
    state.init("attr_method", "ig", str, lambda v: v in attributing.METHODS, expect="ig or gxi")
    method = c3.selectbox(
        "Method", list(attributing.METHODS), key="attr_method", format_func=attributing.METHOD_LABELS.get
    )
    state.publish("attr_method", method)
    state.init(
        "attr_window",
        attributing.DEFAULT_WINDOW,
        state.whole,
        lambda v: 1 <= v <= attributing.MAX_SHOWN,
        expect=f"1…{attributing.MAX_SHOWN} tokens",
        clamp=state.clamp_int(1, attributing.MAX_SHOWN),
    )
    window = int(
        c4.number_input(
            "Window",
            1,
            attributing.MAX_SHOWN,
            step=5,
            key="attr_window",
            help="Tokens scored before the position. The text before them is read as it is and carries its "
            "state in. On the sample code_lstm, 20 tokens reached a 1 % gap within 512 steps at every "
            "position we sampled; 40 tokens often need 2048.",
        )
    )
    state.publish("attr_window", window)
    state.init(
        "attr_budget",
        512,
        state.whole,
        lambda v: v in attributing.BUDGETS,
        expect=f"one of {', '.join(map(str, attributing.BUDGETS))}",
        clamp=state.nearest(attributing.BUDGETS),
    )
    budget = int(
        c5.selectbox(
            "Max steps",
            attributing.BUDGETS,
            key="attr_budget",
            disabled=method != "ig",
            help="Most gradient evaluations integrated gradients spends to bring its gap under 1 %.",
        )
    )
    state.publish("attr_budget", budget)

    try:
        first, a = attributing.attribution(
            str(ckpt), ckpt.stat().st_mtime, key, idx, None if target == "next" else int(target), method, window, budget
        )
    except UserError as e:
        widgets.fail(f"Cannot attribute this prediction: {e}", "Pick another position or method.")
    lo = max(first, start, idx - attributing.MAX_SHOWN + 1)  # the text of the window above, around the position
    hi = min(stop, idx + 1 + AFTER)
    shown = data.tokens_window(key, lo, hi)["token"].astype(str).tolist()
    scores = a.scores[lo - first : idx - first + 1]
    wanted = label(target)
    st.plotly_chart(
        attributing.figure(shown, scores, lo, min(window, idx - first + 1), f"Attribution to {wanted} after #{idx}"),
        width="stretch",
        key="attr_fig",
        on_select=functools.partial(_clicked, start, last),
        selection_mode="points",
    )
    st.caption("Click a token of this text (or type its position above) to attribute the prediction made there.")
    _summary(a)
    widgets.csv_download(
        pd.DataFrame({"idx": range(lo, idx + 1), "token": shown[: len(scores)], "score": scores}),
        f"attribution.{idx}.{a.target}.{method}.csv",
        key="dl_attr",
    )
    st.caption(CONCLUDE)


def _clicked(start: int, last: int) -> None:
    """A click on a token's marker moves the position there (before the widget is drawn again)."""
    points = st.session_state["attr_fig"]["selection"]["points"]
    picked = [p["customdata"] for p in points if p.get("customdata") is not None]
    if picked and start <= int(picked[0]) <= last:
        st.session_state["attr_at"] = int(picked[0])


def _summary(a) -> None:
    """log p, the baseline, the sum of scores and the completeness gap, with a warning when the gap is large."""
    m = st.columns(4)
    m[0].metric("log p(target)", f"{a.logp:.4f}")
    if a.method == "grad_x_input":
        m[1].metric("Σ scores", f"{a.scores.sum():+.4f}")
        st.caption("Gradient × input has no baseline and no completeness: its sum need not match any change in log p.")
        return
    m[1].metric("log p at the zero baseline", f"{a.baseline:.4f}")
    m[2].metric("Σ scores", f"{a.scores.sum():+.4f}", help="Should equal log p − log p(baseline).")
    m[3].metric(
        "Completeness gap",
        f"{100 * a.relative_delta:.2f} %",
        help=f"|Σ scores − (log p − baseline)| = {abs(a.delta):.2g} nats, after {a.steps} gradient evaluations.",
    )
    if a.relative_delta > 0.01:
        st.warning(
            f"The scores miss {100 * a.relative_delta:.1f} % of the change they share out even after {a.steps} "
            "gradient evaluations: along the path from the zero input the model is too rough to integrate. Read "
            "them as rough; a shorter window or a larger step budget usually helps."
        )
