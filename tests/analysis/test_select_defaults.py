"""Where Select & match starts: the default span against a brute-force search with select, and the default θ."""

from __future__ import annotations

import numpy as np
import pytest

from lstmviz.analysis import select_match as sm
from lstmviz.analysis.select_defaults import default_span, default_threshold

NAME = "rnn.l0.fwd.c"


def brute_force(run, theta, tokens, start, stop, pads, lengths):
    """The best span by trying every candidate with select: (units selected, length, −start) largest."""
    best, first = None, None
    for n in lengths:
        for a in range(start + pads[0], stop - n - pads[1] + 1):
            if not all(t.strip() for t in tokens[a : a + n]):
                continue
            first = (a, a + n) if first is None or a < first[0] else first
            k = len(sm.select(run, NAME, (a, a + n), theta, *pads).units)
            if k and (best is None or (k, n, -a) > best[0]):
                best = ((k, n, -a), (a, a + n))
    return best[1] if best else first


@pytest.mark.parametrize("seed", range(6))
def test_default_span_is_the_span_that_selects_most(make_run, seed):
    rng = np.random.default_rng(seed)
    T, U = 120, 10
    x = rng.normal(size=(T, U)).astype(np.float32)
    a0 = int(rng.integers(10, 90))
    x[a0 : a0 + 4, :4] = 5.0  # four units on over a planted 4-token word, off around it
    x[a0 - 1, :4] = x[a0 + 4, :4] = -5.0
    tokens = [" " if rng.random() < 0.2 else chr(97 + int(rng.integers(26))) for _ in range(T)]
    tokens[a0 : a0 + 4] = "word"
    run = make_run({NAME: x}, tokens=tokens)
    theta = sm.Threshold(1.5)
    start, stop, pads, lengths = 5, 115, (1, 1), (2, 3, 4, 5, 6)
    values = run.activations(NAME, start=start, stop=stop)
    got = default_span(values, tokens[start:stop], sm.thresholds(run, NAME, theta), start, *pads, lengths=lengths)
    assert got == brute_force(run, theta, tokens, start, stop, pads, lengths)
    assert len(sm.select(run, NAME, got, theta, *pads).units) >= 4
    hits = sm.match(run, NAME, sm.select(run, NAME, got, theta, *pads).units, theta, pad_before=1, pad_after=1)
    assert tuple(hits.iloc[0][["start", "stop"]]) == got  # the span itself is the best match of its own units


def test_default_span_without_any_selection_is_the_first_word(make_run):
    tokens = list("  ab cd   ")
    x = np.zeros((10, 3), np.float32)  # nothing is ever on
    run = make_run({NAME: x}, tokens=tokens)
    th = sm.thresholds(run, NAME, sm.Threshold(0.5))
    assert default_span(run.activations(NAME), tokens, th, 100, 1, 1) == (102, 104)


def test_default_threshold_fits_the_scale(make_run, rng):
    gate = 1 / (1 + np.exp(-rng.normal(size=(50, 4))))
    cell = 100 * rng.normal(size=(50, 4))
    run = make_run({"rnn.l0.fwd.f": gate, NAME: cell})
    assert default_threshold(run, "rnn.l0.fwd.f") == sm.Threshold(0.3)
    assert default_threshold(run, NAME) == sm.Threshold(0.9, quantile=True)
