"""The Unit page's pieces: cached card and catalogue loaders, Karpathy-style coloured text, the link to a card,
and the prompt view of live mode.

Loaders use streamlit only for ``st.cache_data``; :func:`context_html` is pure; :func:`unit_link` is the one line
every other page uses to open the card of the unit in view; :func:`prompt_view` ranks the units of a typed text
against the corpus, each row a link to its card.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from ..analysis import units
from ..analysis.histogram import spread as spread_of
from ..cards import token_strings
from ..store import Run
from . import data, widgets


@st.cache_data(max_entries=64, show_spinner="Reading the unit's card…")
def card(key: data.RunRef, name: str, unit: int) -> units.Card:
    """The unit's card (see :func:`lstmviz.analysis.units.card`), its label scored on the column the page holds."""
    return units.card(data.run_of(key), name, unit, column=column(key, name, unit))


@st.cache_data(max_entries=4, show_spinner="Labelling every unit of the run…")
def catalogue(key: data.RunRef) -> pd.DataFrame:
    """Every unit of the run, labelled (see :func:`lstmviz.analysis.units.catalogue`)."""
    return units.catalogue(data.run_of(key))


def tokens(key: data.RunRef) -> list[str]:
    """The run's display tokens (cached per run file by :func:`lstmviz.cards.token_strings`)."""
    return token_strings(data.run_of(key))


@st.cache_resource(max_entries=4, show_spinner=False)
def column(key: data.RunRef, name: str, unit: int) -> np.ndarray:
    """float16 ``[tokens]``, read-only: the unit's value at every token as stored, for colouring its contexts, its
    histogram and its label. 20 MB at 10M tokens: held once (a resource, not a pickled copy per rerun) and few of
    them, so a long browse stays within the app's memory."""
    values = data.run_of(key).activations(name, [unit], dtype=np.float16)[:, 0]
    values.flags.writeable = False
    return values


@st.cache_data(max_entries=64, show_spinner=False)
def spread(key: data.RunRef, name: str, unit: int) -> tuple[units.Histogram, float]:
    """The unit's histogram (:func:`lstmviz.analysis.units.histogram`) and its largest |value| (the contexts'
    colour scale), once per unit rather than on every rerun of its page."""
    return spread_of(column(key, name, unit))


def context_html(
    tokens: Sequence[str], values: np.ndarray, center: int, scale: float, before: int = 12, after: int = 4
) -> str:
    """Tokens ``[center − before, center + after]`` as HTML spans, each on a background whose colour is its value
    (red positive, blue negative, full at ``|value| ≥ scale``), the centre token outlined; the value on hover."""
    lo, hi = max(0, center - before), min(len(tokens), center + after + 1)
    spans = []
    for i in range(lo, hi):
        v = float(values[i])
        a = 0.0 if not np.isfinite(v) or scale <= 0 else min(abs(v) / scale, 1.0)
        rgb = "220,50,47" if v > 0 else "38,110,200"
        border = "outline:2px solid #222;" if i == center else ""
        text = html.escape(tokens[i]).replace("\n", "↵").replace(" ", "&nbsp;")
        spans.append(
            f'<span title="{i}: {v:+.3f}" style="background:rgba({rgb},{a:.2f});{border}'
            f'font-family:monospace;padding:1px 0">{text}</span>'
        )
    return "".join(spans)


def unit_link(name: str, unit: int, key: str = "to_unit") -> None:
    """A button that opens the Unit page of ``unit`` of ``name``."""
    if st.button(f"Unit card of {name} · {unit} ↗", key=key):
        widgets.goto("unit", act=name, unit=int(unit))


PROMPT_ROWS = 12


@st.cache_data(max_entries=16, show_spinner="Comparing your text with the corpus…")
def unusual(corpus: data.RunRef, text: data.RunRef, name: str) -> pd.DataFrame:
    """:func:`lstmviz.analysis.units.unusual` of activation ``name`` of the ``text`` run against the ``corpus``."""
    live = data.run_of(text)
    return units.unusual(data.run_of(corpus), name, live.activations(name))


def prompt_view(corpus: Run, corpus_key: data.RunRef, text_key: data.RunRef, name: str) -> None:
    """The units of ``name`` most unusual on the typed text against their corpus deciles, each a link to its card
    (on the corpus run). Says so and draws nothing when the text was recorded with another model."""
    live = data.run_of(text_key)
    if name not in corpus.names or corpus.units(name) != live.units(name):
        st.caption(f"The corpus run has no {name} of this width: your text was read by another model.")
        return
    st.write(
        "Which units your text drives out of their usual range: the share of its tokens in each unit's top or "
        "bottom tenth of the corpus, against the tenth each would hold on text like the corpus (lift 1). "
        "Conclude: a unit with a high lift responds to something your text has more of than the corpus. Do not "
        "conclude what that is from the ranking alone: open the unit's card and read its contexts."
    )
    table = unusual(corpus_key, text_key, name).head(PROMPT_ROWS)
    catalogue = units.cached_catalogue(corpus)
    labels = {} if catalogue is None else catalogue[catalogue["name"] == name].set_index("unit")["label"].to_dict()
    for row in table.itertuples():
        label = labels.get(row.unit)
        c1, c2 = st.columns([1, 5], vertical_alignment="center")
        if c1.button(f"unit {row.unit} ↗", key=f"unusual_{row.unit}", help="Open its Unit card (on the corpus)"):
            widgets.goto("unit", act=name, unit=int(row.unit))
        c2.markdown(
            f"lift **{row.lift:.1f}**: {row.top:.0%} of your tokens in its corpus top tenth, {row.bottom:.0%} in its "
            f"bottom tenth; on your text {row.min:+.2f}…{row.max:+.2f}" + (f" · *{label}*" if label else "")
        )
