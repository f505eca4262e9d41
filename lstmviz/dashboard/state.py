"""Page state in ``st.session_state`` and the URL: where a picker's first value comes from, and how a URL value is
judged.

The current run, activation and unit (``run``, ``act``, ``unit``: :data:`CURRENT`) are one notion for the whole
app: every page's main pickers use these keys, so a unit picked on one page is the unit of the next, and the
sidebar keeps them in the URL of every page (:func:`carry`). A URL that names a value the session did not publish
(a lesson's link, a pasted link, an edited address) wins over the session's own: see :func:`first_value`.

A URL is typed, edited and shared by hand, so every value read from it goes through :func:`from_url`, the one place
that parses and checks a query parameter for all pages. A value that does not parse falls back to the picker's
default; one that parses but is out of range is clamped into it (or, for a choice, falls back to the default). In
both cases the page shows one ``st.warning`` naming the parameter, the bad value and the value used instead: a
view is never changed silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st

MAX_SHOWN = 60
"""A bad URL value is quoted up to this many characters in the warning."""
CURRENT = ("run", "act", "unit")
"""The keys of the current run, activation and unit, shared by every page."""


# --- parsers: raw URL text → value, or ValueError whose message says what the text is not ---------------------


def whole(raw: str) -> int:
    """A whole number: ``"12"``, ``"-3"``, also ``"1e3"`` or ``"12.0"`` (what a spreadsheet or a script writes)."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a whole number") from None
    if not math.isfinite(value) or not value.is_integer():
        raise ValueError("is not a whole number")
    return int(value)


def finite(raw: str) -> float:
    """A finite float; NaN and ±inf are refused (no threshold or range means anything with them)."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def flag(raw: str) -> bool:
    """``1``/``0``, ``true``/``false`` (any case)."""
    text = raw.strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError("is not 0 or 1")


def span_pair(raw: str) -> tuple[int, int]:
    """``"a-b"``: two whole numbers, the first token of a span and the one after its last."""
    parts = raw.split("-")
    if len(parts) != 2:
        raise ValueError("is not a span a-b of two token positions")
    try:
        return whole(parts[0]), whole(parts[1])
    except ValueError:
        raise ValueError("is not a span a-b of two token positions") from None


def clamp_int(lo: int, hi: int) -> Callable[[int], int]:
    """Clamp a whole number into ``[lo, hi]``."""
    return lambda v: int(min(max(v, lo), hi))


def nearest(options: tuple[int, ...]) -> Callable[[int], int]:
    """The option closest to a number (ties go to the smaller one)."""
    return lambda v: min(options, key=lambda o: (abs(o - v), o))


# --- judging a URL value ----------------------------------------------------------------------------------------


def _quote(raw: str) -> str:
    """``raw`` as it can be shown inside a code span: control characters escaped, backticks dropped, shortened."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw).replace("`", "'")
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def from_url(
    param: str,
    raw: str,
    default: Any,
    parse: Callable[[str], Any],
    valid: Callable[[Any], bool],
    expect: str,
    clamp: Callable[[Any], Any] | None = None,
    show: Callable[[Any], str] = str,
) -> Any:
    """The value of URL parameter ``param`` given as ``raw``; warns (one line) when ``raw`` is not used as given.

    ``parse`` turns the text into a value or raises ValueError saying what the text is not; ``valid`` says whether
    a parsed value is in range, ``expect`` names the range for the warning (``"0…11"``, ``"an activation of this
    run"``), and ``clamp`` maps an out-of-range value to the nearest valid one (without it the default is used).
    """
    try:
        value = parse(raw)
    except ValueError as e:
        reason, value = str(e), default
    else:
        if valid(value):
            return value
        reason = f"is not {expect}" if expect else "is out of range"
        value = clamp(value) if clamp is not None else default
        if not valid(value):
            value = default
    st.warning(
        f"URL parameter `{param}={_quote(raw)}` {reason}: using `{param}={_quote(show(value))}` instead.",
        icon=":material/warning:",
    )
    return value


def init(
    key: str,
    default: Any,
    parse: Callable[[str], Any],
    valid: Callable[[Any], bool] = lambda v: True,
    *,
    expect: str = "",
    clamp: Callable[[Any], Any] | None = None,
    url: str | None = None,
    show: Callable[[Any], str] = str,
) -> Any:
    """Give ``key`` its value before its widget is drawn, and return it: a pending ``goto`` value, else the current
    one, else the URL's (parameter ``url``, default ``key``, judged by :func:`from_url`), else the kept one, else
    ``default``. A value from anywhere but the URL that is not ``valid`` (a unit kept from a wider run, say) falls
    back to ``default`` without a word: the user did not ask for it.

    The value is written back on every run, even when unchanged. A widget that one run did not draw (a page that
    stopped early, e.g. live mode waiting for text) is otherwise mounted again at its default in the browser
    while the script reads the kept value, so the widget would show one thing and the page another.
    """
    value = first_value(key, default, parse, valid, expect=expect, clamp=clamp, url=url, show=show)
    st.session_state[key] = value
    return value


def first_value(
    key: str,
    default: Any,
    parse: Callable[[str], Any],
    valid: Callable[[Any], bool] = lambda v: True,
    *,
    expect: str = "",
    clamp: Callable[[Any], Any] | None = None,
    url: str | None = None,
    show: Callable[[Any], str] = str,
) -> Any:
    """The value :func:`init` gives ``key``, without writing it: for a picker that fills several widgets from one
    URL parameter (the span's start and end).

    A URL value that differs from what this session last wrote there (:func:`publish`) came from outside: a
    link was followed or the address edited, so it wins over the session's value. The URL the session wrote
    itself is behind its widgets by one run, so the session's value wins over that.
    """
    pending = st.session_state.get("_goto", {})
    param = url or key
    raw = st.query_params.get(param)
    if key in pending:
        value = pending.pop(key)
    elif raw is not None and raw != st.session_state.get(f"_url_{param}"):
        st.session_state[f"_url_{param}"] = raw  # judged once: later runs keep what the widget then says
        return from_url(param, raw, default, parse, valid, expect, clamp, show)
    elif key in st.session_state:
        value = st.session_state[key]
    else:
        value = st.session_state.get(f"_keep_{key}", default)
    return value if valid(value) else default


def publish(key: str, value: Any, fmt: Callable[[Any], str] = str, url: str | None = None) -> None:
    """Write a picker's value to the URL (parameter ``url``, default ``key``) and keep it for other pages."""
    st.session_state[f"_keep_{key}"] = value
    text, param = fmt(value), url or key
    st.session_state[f"_url_{param}"] = text
    if st.query_params.get(param) != text:
        st.query_params[param] = text


def carry() -> None:
    """Put the current activation and unit (kept from the page that last showed them) into this page's URL, so
    that every page's address names them and a copied link opens the next page on them too."""
    for key in CURRENT[1:]:
        kept = st.session_state.get(f"_keep_{key}")
        if kept is not None and key not in st.query_params:
            st.query_params[key] = st.session_state[f"_url_{key}"] = str(kept)
