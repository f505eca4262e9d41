"""Stepping through a text one token at a time (the Cell walkthrough): a position, a stretch around it, find, play.

A run holds tens of thousands of tokens, so one slider over all of them moves hundreds of tokens a pixel. Here
the position is typed, or found by text; the slider scrubs only the stretch of :data:`STRETCH` tokens the
position is in; ◀ / ▶ step one token; Play steps on by itself, once every :data:`PLAY_EVERY` seconds, to the
end of that stretch. The position is ``step`` in the URL; the other keys are this session's (``step_play``,
``step_until``, ``step_moved``, ``step_find``, ``step_scrub``).

Play redraws only the part of the page inside :func:`playing_fragment`, with ``st.fragment(run_every=…)``: its
timer is set when the fragment is defined, so starting or stopping play reruns the whole page once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import streamlit as st

from ..store import Run
from . import data, figures, state

STRETCH = 60
"""Tokens in the stretch the slider scrubs and the lines below the diagram draw."""
PLAY_EVERY = 0.8
"""Seconds between two steps while playing: time to read the diagram, short enough to see a state build up."""


def stretch(step: int, n_tokens: int) -> tuple[int, int]:
    """``[lo, hi)``: the :data:`STRETCH` tokens that ``step`` falls in (aligned, so a stretch keeps still while
    stepping within it)."""
    lo = step // STRETCH * STRETCH
    return lo, min(lo + STRETCH, n_tokens)


def _top(run: Run) -> int:
    return max(run.n_tokens - 1, 0)


def _set(key: str, value: int, top: int) -> None:
    st.session_state[key] = int(min(max(value, 0), top))


def _play(key: str, top: int) -> None:
    """Play from here to the end of this stretch, or pause."""
    playing = not st.session_state.get(f"{key}_play", False)
    st.session_state[f"{key}_play"] = playing
    if playing:
        st.session_state[f"{key}_moved"] = time.monotonic()
        here = int(st.session_state[key])
        end = stretch(here, top + 1)[1] - 1
        st.session_state[f"{key}_until"] = end if end > here else min(here + STRETCH, top)  # at the end: the next


def _find(run: Run, key: str, after: bool) -> None:
    """Move to the next occurrence of the find box's text: from the current token on (Enter), or after it."""
    needle = st.session_state.get(f"{key}_find", "")
    here = int(st.session_state[key])
    hit = data.find_text(data.ref(run.path), needle, here + 1 if after else here)
    st.session_state[f"{key}_missing"] = bool(needle) and hit is None
    if hit is not None:
        st.session_state[key] = hit
        st.session_state[f"{key}_play"] = False


def is_playing(key: str = "step") -> bool:
    """Whether Play is on for the position ``key``."""
    return bool(st.session_state.get(f"{key}_play", False))


def stepper(run: Run, key: str = "step") -> int:
    """The position controls; returns the token index. While playing, each call moves one token on first (and
    stops at the end of the stretch Play was pressed in)."""
    top = _top(run)
    state.init(
        key,
        0,
        state.whole,
        lambda v: isinstance(v, int) and 0 <= v <= top,
        expect=f"a token position (0…{top:,})",
        clamp=state.clamp_int(0, top),
    )
    if is_playing(key) and time.monotonic() - st.session_state.get(f"{key}_moved", 0.0) >= PLAY_EVERY / 2:
        # only a run of the timer moves on: the reruns that starting play itself causes come at once
        st.session_state[f"{key}_moved"] = time.monotonic()
        if st.session_state[key] >= min(int(st.session_state.get(f"{key}_until", top)), top):
            st.session_state[f"{key}_play"] = False
        else:
            st.session_state[key] += 1
    cols = st.columns([2, 1, 1, 1, 3, 1], vertical_alignment="bottom")
    cols[0].number_input(f"Token (0…{top:,})", min_value=0, max_value=top, step=1, key=key)
    here = int(st.session_state[key])
    cols[1].button("◀ Back", key=f"{key}_back", on_click=_set, args=(key, here - 1, top), width="stretch")
    cols[2].button("Step ▶", key=f"{key}_fwd", on_click=_set, args=(key, here + 1, top), width="stretch")
    cols[3].button(
        "Pause" if is_playing(key) else "▶ Play",
        key=f"{key}_play_button",
        on_click=_play,
        args=(key, top),
        width="stretch",
        help=f"Steps on by itself, one token every {PLAY_EVERY:g} s, to the end of this stretch.",
    )
    cols[4].text_input(
        "Find in text",
        key=f"{key}_find",
        on_change=_find,
        args=(run, key, False),
        placeholder="e.g. return",
        help="Press Enter to jump to the next place the text occurs (wrapping around); “Find next” steps on.",
    )
    cols[5].button("Find next", key=f"{key}_find_next", on_click=_find, args=(run, key, True), width="stretch")
    if st.session_state.get(f"{key}_missing"):
        st.caption(f"“{st.session_state[f'{key}_find']}” does not occur in this run.")
    lo, hi = stretch(here, run.n_tokens)
    if hi - lo > 1:
        tokens = data.tokens_window(data.ref(run.path), lo, hi)["token"].astype(str).tolist()
        st.session_state[f"{key}_scrub"] = here
        st.select_slider(
            f"Within tokens {lo:,}…{hi - 1:,}",
            options=list(range(lo, hi)),
            key=f"{key}_scrub",
            format_func=lambda i: f"{i:,} {figures.show_token(tokens[i - lo])!r}",
            on_change=lambda: _set(key, st.session_state[f"{key}_scrub"], top),
        )
    state.publish(key, here)
    return here


def playing_fragment(body: Callable[[], None], key: str = "step") -> None:
    """Run ``body`` as a fragment that reruns itself every :data:`PLAY_EVERY` seconds while playing; when play
    starts or stops inside it, the whole page reruns so the fragment gets (or loses) its timer."""
    was = is_playing(key)

    def run() -> None:
        body()
        if is_playing(key) != was:
            st.rerun()

    st.fragment(run_every=PLAY_EVERY if was else None)(run)()
