"""Where Select & match starts: a θ that fits the activation, and a span of the window that selects something.

The page opens on these, so a first look selects units and finds matches without any tuning (LSTMVis leaves θ
and the span to the user; a student meeting the page for the first time would see an empty selection).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..store import Run
from .match_bits import DEFAULT_THRESHOLDS, Threshold


def default_threshold(run: Run, name: str) -> Threshold:
    """The θ the Select page starts from: absolute 0.3 when every unit of ``name`` stays within [−1, 1] (gates,
    a tanh h), else each unit's 0.9-quantile (an LSTM's c, a ReLU RNN's h), where one absolute θ fits no unit:
    on a cell state that ranges over ±110, θ = 0.3 is "on" for half the steps of one unit and never for another.
    Both are among :data:`DEFAULT_THRESHOLDS`, whose indices are built while recording."""
    stats = run.stats
    part = stats[stats["name"] == name]
    lo, hi = (float(part["min"].min()), float(part["max"].max())) if len(part) else (-np.inf, np.inf)
    bounded = np.isfinite(lo) and np.isfinite(hi) and lo >= -1.0 and hi <= 1.0
    return DEFAULT_THRESHOLDS[0] if bounded else DEFAULT_THRESHOLDS[1]


def default_span(
    values: np.ndarray,
    tokens: Sequence[str],
    theta: np.ndarray,
    start: int = 0,
    pad_before: int = 1,
    pad_after: int = 1,
    lengths: Sequence[int] = (2, 3, 4, 5, 6),
) -> tuple[int, int]:
    """A span of a window worth selecting first: of the spans of non-space tokens (a word, or a piece of one)
    whose padding lies inside the window, the one that selects the most units (as
    :func:`~lstmviz.analysis.select_match.select` does); ties go to the longer span, then the earlier. A window
    where no span selects a unit gives its first span of non-space tokens.

    Args:
        values: float ``[T, units]``, the window's values (tokens ``start … start+T−1``).
        tokens: the window's T display strings.
        theta: float ``[units]``, θ per unit (:func:`~lstmviz.analysis.select_match.thresholds`).
        start: the window's first token position.
        pad_before, pad_after: the padding the selection will use.
        lengths: span lengths considered (2 is the shortest span a match returns).

    Returns:
        ``(a, b)`` token positions, b exclusive.
    """
    on = np.asarray(values, np.float32) >= np.asarray(theta, np.float32)  # (T, U)
    T = len(on)
    if T == 0:
        return start, start + 1
    cum = np.concatenate([np.zeros((1, on.shape[1]), np.int32), np.cumsum(on, 0, dtype=np.int32)])  # (T+1, U)
    solid = np.array([bool(str(t).strip()) for t in tokens])
    solid_cum = np.concatenate([[0], np.cumsum(solid)])
    best: tuple[int, int, int, int] | None = None  # (n units, length, -a, b) by which the best is the largest
    first: tuple[int, int] | None = None
    for n in sorted(set(lengths), reverse=True):
        a = np.arange(pad_before, T - n - pad_after + 1)
        if not len(a):
            continue
        b = a + n
        word = solid_cum[b] - solid_cum[a] == n
        a, b = a[word], b[word]
        if not len(a):
            continue
        if first is None or a[0] < first[0]:
            first = (int(a[0]), int(b[0]))
        all_on = cum[b] - cum[a] == n  # (C, U)
        off_before = cum[a] - cum[a - pad_before] == 0
        off_after = cum[b + pad_after] - cum[b] == 0
        count = (all_on & off_before & off_after).sum(1)
        j = int(np.argmax(count))  # the earliest of the most at this length
        if count[j] and (best is None or (int(count[j]), n, -int(a[j])) > best[:3]):
            best = (int(count[j]), n, -int(a[j]), int(b[j]))
    if best is not None:
        return start - best[2], start + best[3]
    if first is not None:
        return start + first[0], start + first[1]
    return start, start + min(3, T)
