"""Shared pickers, bound to ``st.query_params`` so that a copied URL reproduces the view.

Each picker owns one session-state key (``act``, ``unit``, ``start``, ``width``, ``span``, ``theta``, …).
The sidebar's ``run`` (:mod:`.sidebar`), ``act`` and ``unit`` are the current unit of the whole app
(:data:`state.CURRENT`): every page's main pickers use them, and a picker with a key of its own (the Intervene
page's, the Compare page's) opens on the current activation and unit whenever its page is entered.
On a session's first run its value comes from the URL; afterwards from the widget, and every run writes it back to
the URL. A value is also kept under ``_keep_<key>`` so it survives a page switch (Streamlit forgets the state of
widgets a page does not draw), and :func:`.widgets.goto` hands values to another page before switching to it.
Where a first value comes from, and how a bad URL value is reported and clamped, is :mod:`lstmviz.dashboard.state`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

from ..analysis.projection import default_activation
from ..store import Run
from . import data, state
from .widgets import empty

WIDTHS = (100, 200, 500, 1000, 2000)
THETA_RANGE = (-100.0, 100.0)
"""The range an absolute θ is typed in (a URL's θ beyond it is clamped into it)."""
MAX_PADDING = 50


def _within(lo: int, hi: int) -> Callable[[Any], bool]:
    """Whether a value is an int in ``[lo, hi]`` (a bool is not a position)."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _listed(options: Sequence[Any], most: int = 4) -> str:
    """``"a, b, c, d, … (12 in all)"``: the first few options, for a warning."""
    shown = ", ".join(map(str, options[:most]))
    return shown + (f", … ({len(options)} in all)" if len(options) > most else "")


def _span_text(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"


def choice(
    key: str, options: Sequence[str], label: str, format_func: Callable[[str], str] = str, where: Any = st
) -> str:
    """A selectbox over ``options`` bound to the URL parameter ``key``."""
    state.init(key, options[0], str, lambda v: v in options, expect=f"one of {_listed(options)}")
    value = where.selectbox(label, options, key=key, format_func=format_func)
    state.publish(key, value)
    return value


def activation(
    run: Run, key: str = "act", kinds: Sequence[str] | None = None, label: str = "Activation", where: Any = st
) -> str:
    """Pick an activation name (optionally only of some kinds, e.g. gates); see ``default_activation``."""
    names = [n for n in run.names if kinds is None or run.info(n)["kind"] in kinds]
    if not names:
        empty(f"This run has no activations of kind {', '.join(kinds or [])}.")
    start = default_activation(run)
    default = start if start in names else names[-1]
    _follow_current(key, "act", lambda v: v in names)
    state.init(key, default, str, lambda v: v in names, expect=f"an activation of this run ({_listed(names)})")
    name = where.selectbox(label, names, key=key, format_func=lambda n: f"{n}  ({run.info(n)['units']} units)")
    state.publish(key, name)
    return name


def unit(run: Run, name: str, key: str = "unit", where: Any = st, default: int = 0) -> int:
    """Pick one unit of ``name``."""
    n = run.units(name)
    _follow_current(key, "unit", _within(0, n - 1))
    state.init(
        key,
        default,
        state.whole,
        _within(0, n - 1),
        expect=f"a unit of {name} (0…{n - 1})",
        clamp=state.clamp_int(0, n - 1),
    )
    u = where.number_input(f"Unit (0…{n - 1})", min_value=0, max_value=n - 1, step=1, key=key)
    state.publish(key, int(u))
    return int(u)


def _follow_current(key: str, current: str, valid: Callable[[Any], bool]) -> None:
    """A picker with a key of its own opens on the current value (``act`` or ``unit``) when its page is entered
    (its widget is not in the session), where that value is valid for it."""
    shared = st.session_state.get(f"_keep_{current}")
    if key != current and key not in st.session_state and shared is not None and valid(shared):
        st.session_state[f"_keep_{key}"] = shared


def _shift(key: str, delta: int, top: int) -> None:
    st.session_state[key] = int(min(max(st.session_state[key] + delta, 0), top))


def window(run: Run, key: str = "start", width: int = 500) -> tuple[int, int]:
    """A window of tokens: jump to a position, step previous/next, or search the text. Returns (start, stop).

    ``width``: the window's first width (one of :data:`WIDTHS`), when neither the URL nor another page set one.
    """
    n = run.n_tokens
    top = max(n - 1, 0)
    state.init(
        "width",
        width if n > width else 100,
        state.whole,
        lambda v: v in WIDTHS,
        expect=f"one of {_listed(WIDTHS)}",
        clamp=state.nearest(WIDTHS),
    )
    state.init(
        key, 0, state.whole, _within(0, top), expect=f"a token position (0…{top:,})", clamp=state.clamp_int(0, top)
    )
    cols = st.columns([2, 2, 1, 1, 3, 1], vertical_alignment="bottom")
    width = cols[1].selectbox("Window (tokens)", WIDTHS, key="width")
    cols[2].button("◀ Prev", key=f"{key}_prev", on_click=_shift, args=(key, -width, top), width="stretch")
    cols[3].button("Next ▶", key=f"{key}_next", on_click=_shift, args=(key, width, top), width="stretch")
    start = cols[0].number_input(f"Start token (0…{top:,})", min_value=0, max_value=top, step=width, key=key)

    def search(again: bool) -> None:
        """Jump to the first hit at the window's start or later; ``again``: the one after the hit on show."""
        if again and st.session_state.pop(f"{key}_fresh", False):
            return  # the text changed in this same click: its own search found the first hit, so stay there
        st.session_state[f"{key}_fresh"] = not again
        here, last = int(st.session_state[key]), st.session_state.get(f"{key}_found")
        begin = last + 1 if again and last is not None and here <= last < here + width else here
        hit = data.find_text(data.ref(run.path), st.session_state.get(f"{key}_find", ""), begin)
        st.session_state[f"{key}_found"] = hit
        if hit is not None:
            st.session_state[key] = max(hit - width // 4, 0)

    cols[4].text_input(
        "Find in text",
        key=f"{key}_find",
        on_change=search,
        args=(False,),
        placeholder="e.g. def ",
        help="Press Enter to jump to the first occurrence from the current start token on (wrapping around); "
        "“Find next” steps to the one after.",
    )
    cols[5].button("Find next", key=f"{key}_find_next", on_click=search, args=(True,), width="stretch")
    st.session_state.pop(f"{key}_fresh", None)  # callbacks run before this line: the flag lives for one click
    if st.session_state.get(f"{key}_find") and st.session_state.get(f"{key}_found", 0) is None:
        st.caption(f"“{st.session_state[f'{key}_find']}” does not occur in this run.")
    state.publish(key, int(start))
    state.publish("width", int(width))
    return int(start), int(min(start + width, n))


def span(run: Run, start: int, stop: int, key: str = "span", default: tuple[int, int] | None = None) -> tuple[int, int]:
    """The selected span [a, b): typed, or brushed on the heatmap (see :func:`set_span_from_box`).

    Defaults to ``default``, else three tokens a third into the window. In the URL as ``span=a-b``.
    """
    n = run.n_tokens
    if default is not None and 0 <= default[0] < default[1] <= n:
        a0, b0 = int(default[0]), int(default[1])
    else:
        a0 = min(start + (stop - start) // 3, max(n - 1, 0))
        b0 = min(a0 + 3, n)
    first, after = _within(0, max(n - 1, 0)), _within(1, max(n, 1))
    keys = (f"{key}_a", f"{key}_b")
    if all(k in st.session_state for k in keys):  # the widgets' values, or a brush's
        a, b = (st.session_state[k] for k in keys)
    else:  # one URL parameter fills both widgets, so it is judged (and reported) once
        a, b = state.first_value(
            key,
            (a0, b0),
            state.span_pair,
            lambda v: first(v[0]) and after(v[1]),
            expect=f"a span within 0-{n}",
            clamp=lambda v: (min(max(v[0], 0), max(n - 1, 0)), min(max(v[1], 1), max(n, 1))),
            show=_span_text,
        )
    st.session_state[keys[0]] = a if first(a) else a0
    st.session_state[keys[1]] = b if after(b) else b0
    cols = st.columns(2)
    a = int(cols[0].number_input("Span start", min_value=0, max_value=max(n - 1, 0), step=1, key=f"{key}_a"))
    b = int(cols[1].number_input("Span end (exclusive)", min_value=1, max_value=max(n, 1), step=1, key=f"{key}_b"))
    if b <= a:
        st.warning(f"The span end must come after its start; using [{a}, {a + 1}).")
        b = a + 1
    state.publish(key, (a, b), _span_text)
    return a, b


def set_span_from_box(chart_key: str = "brush", span_key: str = "span") -> None:
    """on_select callback: a box brush on a units × tokens heatmap sets the span to the tokens it covers."""
    event = st.session_state.get(chart_key) or {}
    boxes = (event.get("selection") or {}).get("box") or []
    xs = boxes[-1].get("x") or [] if boxes else []
    if len(xs) < 2:
        return
    a, b = int(np.ceil(min(xs))), int(np.floor(max(xs))) + 1
    if b > a:
        st.session_state[f"{span_key}_a"], st.session_state[f"{span_key}_b"] = a, b


def theta(key: str = "theta", default: tuple[float, bool] = (0.3, False)) -> tuple[float, bool]:
    """θ for "on", absolute or as a per-unit quantile. Returns (value, quantile).

    ``default``: (value, quantile) the picker starts from (see
    :func:`lstmviz.analysis.select_defaults.default_threshold`); a URL that asks for the other kind of θ
    (``theta_q``) without a value starts at 0.9 for a quantile, 0.3 for an absolute θ.
    """
    quantile = state.init(
        f"{key}_q", bool(default[1]), state.flag, lambda v: isinstance(v, bool), show=lambda v: str(int(v))
    )
    lo, hi = (0.0, 1.0) if quantile else THETA_RANGE
    state.init(
        key,
        float(default[0]) if quantile == bool(default[1]) else (0.9 if quantile else 0.3),
        state.finite,
        lambda v: isinstance(v, float) and lo <= v <= hi,
        expect=f"in {lo:g}…{hi:g}" + (" (a quantile)" if quantile else ""),
        clamp=lambda v: min(max(v, lo), hi),
        show=lambda v: f"{v:g}",
    )
    cols = st.columns(2)
    quantile = cols[1].toggle(
        "θ as a per-unit quantile",
        key=f"{key}_q",
        help="For unbounded activations (c) one absolute θ fits no unit; a quantile does.",
    )
    value = cols[0].number_input(
        "θ (on when value ≥ θ)",
        min_value=0.0 if quantile else THETA_RANGE[0],
        max_value=1.0 if quantile else THETA_RANGE[1],
        step=0.05,
        key=key,
        format="%.2f",
    )
    state.publish(key, float(value))
    state.publish(f"{key}_q", bool(quantile), lambda v: "1" if v else "0")
    return float(value), bool(quantile)


def padding(key: str = "pad") -> tuple[int, int]:
    """Steps before and after the span where selected units must be off."""
    for side in ("before", "after"):
        state.init(
            f"{key}_{side}",
            1,
            state.whole,
            _within(0, MAX_PADDING),
            expect=f"in 0…{MAX_PADDING}",
            clamp=state.clamp_int(0, MAX_PADDING),
        )
    cols = st.columns(2)
    before = cols[0].number_input("Padding before", min_value=0, max_value=MAX_PADDING, step=1, key=f"{key}_before")
    after = cols[1].number_input("Padding after", min_value=0, max_value=MAX_PADDING, step=1, key=f"{key}_after")
    state.publish(f"{key}_before", int(before))
    state.publish(f"{key}_after", int(after))
    return int(before), int(after)


def tracks(run: Run, key: str = "tracks", default: int = 2) -> list[str]:
    """Pick annotation columns of the tokens table to draw under the text."""
    skip = {"idx", "doc", "pos", "token_id", "token", "loss", "top_ids", "top_p"}
    columns = [c for c in run.token_columns if c not in skip]
    if not columns:
        return []
    state.init(
        key,
        columns[:default],
        lambda raw: list(dict.fromkeys(c for c in raw.split(",") if c)),  # a track named twice is drawn once
        lambda v: isinstance(v, list) and all(c in columns for c in v),
        expect=f"a list of this run's annotation tracks ({_listed(columns)})",
        clamp=lambda v: [c for c in v if c in columns],
        show=",".join,
    )
    chosen = st.multiselect("Annotation tracks", columns, key=key)
    state.publish(key, list(chosen), ",".join)
    return list(chosen)
