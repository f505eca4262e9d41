"""Progress of a long computation, told to whoever listens, without the computation knowing who that is.

Analysis code calls :func:`report` at points it can count (a row group read, a batch of targets done). A caller
that wants to show it (the dashboard's progress bar) wraps the call in :func:`listening`; without a listener a
report costs one context-variable lookup. :func:`part` maps a sub-step's own 0…1 onto a slice of the whole, so a
function that reports 0…1 can run as one phase of a larger one. Listeners are context variables, so two sessions
computing at once (threads of one server) each hear only their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Listener = Callable[[float, str], None]
"""``listener(fraction in [0, 1], message)``."""

_listener: ContextVar[Listener | None] = ContextVar("lstmviz_progress", default=None)


def report(fraction: float, message: str = "") -> None:
    """Tell the listener (if any) that ``fraction`` of the work is done; ``message`` names the current phase."""
    listener = _listener.get()
    if listener is not None:
        listener(min(max(float(fraction), 0.0), 1.0), message)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every :func:`report` made inside the block (in this context) to ``listener``."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


@contextlib.contextmanager
def part(lo: float, hi: float) -> Iterator[None]:
    """Inside the block, a report of f means ``lo + f·(hi − lo)`` of the whole."""
    outer = _listener.get()
    if outer is None:
        yield
        return
    with listening(lambda f, message: outer(lo + f * (hi - lo), message)):
        yield
