"""A progress bar with an estimate of the time left, for any long computation a page waits on.

:func:`run` calls a loader (usually a cached one from :mod:`lstmviz.dashboard.data`) in a worker thread and, while
it works, redraws one ``st.progress`` bar from what the computation :func:`~lstmviz.analysis.progress.report` s:
the phase, the fraction done, and the seconds left (elapsed × (1 − f) / f). A computation that cannot count its
own work yet (a first UMAP compiling) is given an ``expected_s`` to count against instead. A loader that answers
at once (a cache hit) shows no bar at all.

Why a thread: a progress bar is drawn from the script thread, but the work happens inside ``st.cache_data``
functions, which must not touch elements created outside them (their output is replayed on a cache hit). So
the work runs beside the script thread, which only reads the latest report and redraws.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from ..analysis import progress

T = TypeVar("T")
QUIET_S = 0.4
"""A loader that finishes within this long draws no bar (a cache hit would only flicker)."""
TICK_S = 0.25


def eta_text(elapsed: float, fraction: float, expected_s: float | None = None) -> str:
    """``"about 12 s left"``: from the fraction done once it is telling (≥ 3 %), else from ``expected_s``."""
    if fraction >= 0.03:
        left = elapsed * (1 - fraction) / fraction
    elif expected_s is not None:
        left = max(expected_s - elapsed, 1.0)
    else:
        return "estimating the time left…"
    if left < 1:
        return "almost done"
    return f"about {left:.0f} s left" if left < 90 else f"about {left / 60:.1f} min left"


def run(fn: Callable[[], T], label: str, *, expected_s: float | None = None) -> T:
    """``fn()``, with a progress bar under ``label`` while it runs longer than :data:`QUIET_S`.

    Reports made by the computation (through :mod:`lstmviz.analysis.progress`) move the bar; without any, the bar
    moves against ``expected_s`` (when given) and never past 95 %. An exception raised by ``fn`` is raised here.
    """
    latest: list[tuple[float, str]] = [(0.0, "")]
    outcome: dict[str, object] = {}

    slot = st.empty()  # the bar, drawn once the loader is seen to take a while
    below = st.container()  # the loader's own spinner goes here, under the bar, not on top of its text

    def work() -> None:
        try:
            with below, progress.listening(lambda f, message: latest.__setitem__(0, (f, message))):
                outcome["value"] = fn()
        except BaseException as e:  # handed to the script thread, which raises it where the page can catch it
            outcome["error"] = e

    context = contextvars.copy_context()  # the worker's own copy: entering ``below`` there moves only its cursor
    worker = threading.Thread(target=context.run, args=(work,), daemon=True, name="lstmviz-progress")
    ctx = get_script_run_ctx()
    if ctx is not None:
        add_script_run_ctx(worker, ctx)  # the loader's own spinner and caches belong to this session
    t0 = time.monotonic()
    worker.start()
    worker.join(QUIET_S)
    if worker.is_alive():
        bar = slot.progress(0.0, text=f"{label}…")
        while worker.is_alive():
            elapsed = time.monotonic() - t0
            f, message = latest[0]
            if f <= 0 and expected_s:
                shown = min(elapsed / expected_s, 0.95)
                eta = eta_text(elapsed, 0.0, expected_s)
            else:
                shown, eta = f, eta_text(elapsed, f, expected_s)
            phase = f" · {message}" if message else ""
            bar.progress(shown, text=f"{label}{phase} — {shown:.0%}, {eta}")
            worker.join(TICK_S)
        slot.empty()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
