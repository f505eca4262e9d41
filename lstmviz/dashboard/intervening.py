"""The intervene panel, one implementation for the Intervene page, the Unit page and live mode on the Text heatmap.

Hold units of ``h`` or ``c`` at a value over a span of a text, and show what changes: the text coloured by the
change in log p of each actual next token, the total (and, for the last layer, direct) Δloss, and the same prompt
continued with and without the clamp, side by side, seeded.

The model is the one live mode records with (:func:`lstmviz.dashboard.live.live_model`: the run's own, rebuilt
from its manifest, or a typed native checkpoint); ``"mean"`` and the observed range come from the *corpus* run's
stats, so a live text is held at the corpus mean, not its own. Running a model with a clamp swaps its modules'
forward for the call, so it holds :data:`data.MODEL_LOCK`, as recording does. Nothing is written: an
intervention is a forward pass, not a recording. The cached functions never write ``st.session_state``; the
widget functions below do, through :mod:`.state`, like every picker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ..causal import HOLDABLE, effects, generate
from ..errors import UserError
from ..store import Run
from . import data, figures, live, state, widgets

Held = tuple[str, tuple[int, ...], str | float]
"""(activation name, units, value): what the panel holds."""

VALUES = {"number": "a number", "mean": "corpus mean", "zero": "zero"}
FAR = 1.0
"""A value more than this many observed ranges beyond the range gets the stronger warning."""

CONCLUDE = (
    "Conclude: a large, targeted change (strings opened or closed, brackets mis-counted) says the model reads "
    "this unit for that decision. Do not conclude: that no change means the unit is unused (others may carry "
    "the same information), or anything from a value far outside the unit's recorded range, which the model "
    "never sees. A clamp of a lower layer also changes every layer above it."
)


def _clamp(held: Held) -> dict:
    name, units, value = held
    return {name: dict.fromkeys(units, value)}


def _loaded(model: data.ModelRef):
    """The model of a :data:`data.ModelRef`, loaded once per process (weights-only; never unpickled)."""
    return live._live_loaded(model)


@st.cache_data(max_entries=32, show_spinner="Running the model with the units held…")
def token_effects(
    model: data.ModelRef,
    stats: data.RunRef,
    ids: tuple[int, ...],
    held: Held,
    span: tuple[int, int],
    last_layer: bool,
) -> tuple[pd.DataFrame, float, float | None]:
    """Per token t ≥ 1: the change in log p(token t) from holding ``held`` over ``span`` of ``ids`` (read from a
    zero state; ``"mean"`` from the run ``stats``); → (frame with ``total`` [and ``direct``] columns ``[T]``
    (NaN at t = 0), total Δloss, direct Δloss or None)."""
    loaded = _loaded(model)
    with data.MODEL_LOCK:
        fx = effects(loaded, torch.tensor(ids), _clamp(held), span=span, run=data.run_of(stats), direct=last_layer)
    table = pd.DataFrame({"total": np.r_[np.nan, fx.delta_logp("total")[0].numpy()]})
    if fx.direct is not None:
        table["direct"] = np.r_[np.nan, fx.delta_logp("direct")[0].numpy()]
    return table, fx.delta_loss("total"), fx.delta_loss("direct") if fx.direct is not None else None


@st.cache_data(max_entries=32, show_spinner="Generating…")
def generations(
    model: data.ModelRef, stats: data.RunRef, prompt: str, n: int, held: Held, temperature: float, seed: int
) -> tuple[str, str]:
    """The same prompt continued by ``n`` sampled tokens, without and with ``held`` held at every step."""
    loaded = _loaded(model)
    ids = loaded.tokenizer.encode(prompt)
    with data.MODEL_LOCK:
        plain = generate(loaded, ids, n, temperature=temperature, seed=seed)
        clamped = generate(
            loaded, ids, n, clamp=_clamp(held), temperature=temperature, seed=seed, run=data.run_of(stats)
        )
    return loaded.tokenizer.decode(plain), loaded.tokenizer.decode(clamped)


# --- what the panel needs to know about a run --------------------------------------------------------------------


def holdable(run: Run, name: str) -> bool:
    """Whether ``name`` is a state the panel can hold: ``h``/``c`` of an LSTM, ``h`` of a GRU or RNN."""
    info = run.info(name)
    module = next((m for m in run.manifest["model"]["modules"] if m["path"] == info["module"]), None)
    return module is not None and info["kind"] in HOLDABLE.get(module.get("cell", ""), ())


def last_layer(run: Run, name: str) -> bool:
    """Whether ``name`` is in its module's last layer (the one whose h the decoder reads: a direct effect)."""
    info = run.info(name)
    layers = max(m["num_layers"] for m in run.manifest["model"]["modules"] if m["path"] == info["module"])
    return info["layer"] == layers - 1


def observed_range(run: Run, name: str, units: Sequence[int]) -> tuple[float, float] | None:
    """The smallest min and largest max the run recorded over ``units`` of ``name``, or None without stats."""
    s = run.stats
    if s.empty:
        return None
    rows = s[(s["name"] == name) & s["unit"].isin(list(units))]
    if len(rows) < len(set(units)):
        return None
    return float(rows["min"].min()), float(rows["max"].max())


def range_warning(value: float, observed: tuple[float, float]) -> str | None:
    """One line when ``value`` lies outside the observed range (stronger beyond :data:`FAR` ranges), else None."""
    lo, hi = observed
    if lo <= value <= hi:
        return None
    beyond = (lo - value if value < lo else value - hi) / max(hi - lo, 1e-12)
    where = f"{value:g} is outside the recorded range {lo:.2f}…{hi:.2f}"
    if beyond > FAR:
        return f"{where}, far beyond it: the model never sees such a value, so what it does here says little."
    return f"{where}: the model never sees it."


def parse_units(raw: str) -> tuple[int, ...]:
    """``"255, 40"`` → ``(40, 255)``; raises ValueError for anything but whole numbers and commas."""
    return tuple(sorted({int(u) for u in raw.replace(" ", "").split(",") if u}))


# --- widgets -----------------------------------------------------------------------------------------------------


def _init(key: str, default, parse, url: bool, **judge):
    """A widget's first value: from the URL and back to it (:func:`state.init`), or kept in the session only."""
    if url:
        return state.init(key, default, parse, **judge)
    return st.session_state.setdefault(key, default)


def pick_value(corpus: Run, name: str, units: tuple[int, ...], prefix: str, url: bool = True) -> str | float:
    """The value picker (a number, the corpus mean or zero) with the units' observed range and its warning.

    A number defaults to the first unit's largest recorded value: the unit fully on. Keys ``{prefix}_kind`` and
    ``{prefix}_value``, in the URL when ``url``.
    """
    _init(f"{prefix}_kind", "number", str, url, valid=lambda v: v in VALUES, expect="number, mean or zero")
    kind = st.selectbox("Value", list(VALUES), key=f"{prefix}_kind", format_func=VALUES.get)
    if url:
        state.publish(f"{prefix}_kind", kind)
    observed = observed_range(corpus, name, units)
    first = observed_range(corpus, name, units[:1])
    if kind != "number":
        if observed is not None:
            st.caption(f"Recorded range of the held units: {observed[0]:.2f}…{observed[1]:.2f}.")
        return kind
    _init(f"{prefix}_value", first[1] if first else 1.0, state.finite, url, expect="a finite number")
    value = float(
        st.number_input(
            "Held at",
            step=0.1,
            key=f"{prefix}_value",
            help="Defaults to the first unit's largest recorded value: the unit fully on.",
        )
    )
    if url:
        state.publish(f"{prefix}_value", value)
    if observed is not None:
        st.caption(f"Recorded range of the held units over the corpus: {observed[0]:.2f}…{observed[1]:.2f}.")
        warning = range_warning(value, observed)
        if warning:
            st.warning(warning)
    return value


def forget(prefix: str, ident: object, keep: Sequence[str] = ()) -> None:
    """Reset the panel's widgets (keys ``{prefix}_…`` but ``keep``) when it is drawn for another ``ident`` (another
    unit), so that its defaults (the value: that unit's largest) are the new unit's."""
    if st.session_state.get(f"_{prefix}_for") == ident:
        return
    for k in [k for k in st.session_state if str(k).startswith(f"{prefix}_") and k not in keep]:
        del st.session_state[k]
    st.session_state[f"_{prefix}_for"] = ident


def pick_span(n: int, key: str) -> tuple[int, int]:
    """A range slider over the ``n`` tokens of the text: the steps the units are held at."""
    span = st.slider("Hold over tokens (of the text)", 0, n, (0, n), key=key)
    if span[1] <= span[0]:
        widgets.empty("The span is empty: drag its ends apart.")
    return int(span[0]), int(span[1])


def show_effect(
    model: data.ModelRef,
    stats: data.RunRef,
    tokens: pd.DataFrame,
    held: Held,
    span: tuple[int, int],
    last: bool,
    key: str,
    joiner: str = "",
) -> tuple[float, float | None]:
    """Δloss metrics and the text coloured by Δ log p(actual token) for ``tokens`` (``token_id``, ``token``
    columns, ``[T]`` rows, joined by ``joiner``) with ``held`` over ``span``; returns (total, direct or None)
    Δloss."""
    name, units, _ = held
    try:
        table, d_total, d_direct = token_effects(
            model, stats, tuple(int(t) for t in tokens["token_id"]), held, span, last
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
    delta = np.nan_to_num(table["total"].to_numpy())
    st.plotly_chart(
        figures.text_figure(
            tokens["token"].astype(str).tolist(),
            delta,
            hover=[f"Δ log p = {v:+.3f}" for v in delta],
            joiner=joiner,
            zrange=figures.symmetric_range(delta),
            title=f"Δ log p(actual token), {name} units {', '.join(map(str, units))} held",
        ),
        width="stretch",
        key=key,
    )
    return d_total, d_direct


def show_generation(model: data.ModelRef, stats: data.RunRef, default_prompt: str, held: Held, prefix: str) -> None:
    """The generation box: one prompt, continued as trained and with ``held`` held, side by side, seeded."""
    name, units, _ = held
    g1, g2, g3, g4 = st.columns([4, 1, 1, 1])
    prompt = g1.text_area("Prompt", value=default_prompt, key=f"{prefix}_prompt", height=90)
    n = int(g2.number_input("Tokens", 1, 400, 120, key=f"{prefix}_n"))
    temperature = float(g3.number_input("Temperature", 0.0, 2.0, 0.7, step=0.1, key=f"{prefix}_temp"))
    seed = int(g4.number_input("Seed", 0, 2**31 - 1, 0, key=f"{prefix}_seed"))
    if not prompt:
        widgets.empty("Type a prompt to continue.")
    try:
        plain, clamped = generations(model, stats, prompt, n, held, temperature, seed)
    except UserError as e:
        widgets.fail(f"Cannot generate: {e}", "Remove symbols the model does not know from the prompt.")
    left, right = st.columns(2)
    left.markdown("**As trained**")
    left.code(prompt + plain, language=None, wrap_lines=True)
    right.markdown(f"**With {name} {', '.join(map(str, units))} held**")
    right.code(prompt + clamped, language=None, wrap_lines=True)


def panel(
    corpus: Run,
    stats: data.RunRef,
    model: data.ModelRef,
    name: str,
    unit: int,
    tokens: pd.DataFrame,
    prefix: str,
    suggest: pd.DataFrame | None = None,
) -> None:
    """The whole panel for one unit of ``name``: this unit plus optional others (picked from ``suggest``'s
    ``unit``, ``r`` rows, e.g. its correlated units, or typed), a value, a span of ``tokens`` (the text, with
    ``token_id`` and ``token`` columns), the coloured change and Δloss, and the generation box.

    ``corpus`` (with its key ``stats``) gives ``"mean"`` and the observed range; widget keys start ``prefix`` (call
    :func:`forget` before drawing any of them, so that they start afresh for another unit).
    """
    if not holdable(corpus, name):
        widgets.empty("Only the recurrent state can be held: pick h or c of an LSTM layer, or h of a GRU or RNN.")
    st.caption(CONCLUDE)
    n_units = corpus.units(name)
    c1, c2, c3 = st.columns([2, 2, 2])
    also: list[int] = []
    if suggest is not None and len(suggest):
        r = dict(zip(suggest["unit"].astype(int), suggest["r"], strict=True))
        also = c1.multiselect(
            "Also hold (units that move with it)",
            list(r),
            key=f"{prefix}_also",
            format_func=lambda v: f"{v} (r {r[v]:+.2f})",
        )
    raw = c2.text_input(f"Also hold units (0…{n_units - 1})", key=f"{prefix}_more", placeholder="e.g. 12, 40")
    try:
        more = parse_units(raw)
    except ValueError:
        widgets.fail(f"“{raw}” is not a list of unit numbers.", "Type units like 12 or 12, 40.")
    units = tuple(sorted({unit, *also, *more}))
    with c3:
        value = pick_value(corpus, name, units, prefix, url=False)
    if len(tokens) < 2:
        widgets.empty("The text has fewer than two tokens: there is no next token to score.")
    held = (name, units, value)
    span = pick_span(len(tokens), f"{prefix}_span")
    joiner = data.joiner(corpus)
    show_effect(model, stats, tokens, held, span, last_layer(corpus, name), f"{prefix}_text", joiner)
    st.caption("The text is read from a zero state, without the text before it.")
    st.markdown("**Generate**")
    prompt = joiner.join(tokens["token"].astype(str).tolist()[:40])
    show_generation(model, stats, prompt, held, prefix)


def on_text(corpus: Run, corpus_key: data.RunRef, model: data.ModelRef, text: data.RunRef, name: str, unit: int):
    """Live mode's panel: hold ``unit`` of ``name`` while the model reads the typed text (the ``text`` run),
    ``"mean"`` and the observed range from the ``corpus`` run; off until its toggle is on."""
    state.init("liv_on", False, state.flag, expect="0 or 1")
    holding = st.toggle("Hold this unit while the model reads your text", key="liv_on")
    if holding or "liv_on" in st.query_params:
        state.publish("liv_on", holding, lambda v: str(int(v)))
    if not holding:
        return
    if name not in corpus.names:
        widgets.empty(f"The corpus run has no {name}: your text was read by another model, with no stats to hold.")
    forget("liv", (name, unit), keep=("liv_on",))
    live = data.run_of(text)
    suggest = corpus.correlated_units(name, unit)  # over the corpus, as on the unit's card
    panel(corpus, corpus_key, model, name, unit, data.tokens_window(text, 0, live.n_tokens), "liv", suggest)
