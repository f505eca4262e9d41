"""LSTMVis select and match (Strobelt et al. 2018), over the whole corpus, through a bitset index.

A unit is *on* at step t when its value is at least θ. θ is an absolute value, or a per-unit quantile of the
unit's values over the whole run (useful for unbounded activations such as c, where one θ fits no unit).

* :func:`select` takes a span of the text and returns the units that are on at every step of the span and off
  in the padding steps around it, plus the near-misses that fail at only a few steps.
* :func:`match` takes a set of units and finds the corpus spans where they are on together, ranked as LSTMVis
  ranks them: most selected units on, then fewest extra units on, then the longest span.

Match reads the on-index of :mod:`lstmviz.analysis.match_bits` (one bit per step and unit, time-major, built
while recording for the default θs). :func:`match_scan` is the straightforward dense scan, kept as the reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..store import Run, RunError
from .match_bits import DEFAULT_THRESHOLDS, OnIndex, Threshold, as_threshold, jit, on_index

__all__ = [
    "DEFAULT_THRESHOLDS",
    "OnIndex",
    "Threshold",
    "as_threshold",
    "match",
    "match_index",
    "match_scan",
    "on_counts",
    "on_index",
    "select",
    "thresholds",
]

POP8 = np.array([bin(i).count("1") for i in range(256)], np.int64)


def thresholds(run: Run, name: str, threshold: float | Threshold) -> np.ndarray:
    """θ per unit, float32 ``[units]``: constant for an absolute θ, from the (cached) index for a quantile."""
    th = as_threshold(threshold)
    if not th.quantile:
        return np.full(run.units(name), th.value, np.float32)
    return on_index(run, name, th).theta


# ---------------------------------------------------------------------------------------------------------- select


@dataclass(frozen=True)
class Selection:
    """The result of :func:`select`.

    units: int ``[k]``, the units on throughout the span and off in the padding, by mean value in the span.
    near_misses: one row per unit that fails at 1…max_fail steps: unit, n_fail, off_in_span, on_in_padding,
    mean_in_span; fewest failures first.
    theta: float32 ``[units]``, the θ used for each unit.
    """

    units: np.ndarray
    near_misses: pd.DataFrame
    theta: np.ndarray


def select(
    run: Run,
    name: str,
    span: tuple[int, int],
    threshold: float | Threshold = 0.3,
    pad_before: int = 0,
    pad_after: int = 0,
    *,
    max_fail: int | None = None,
    n_near: int = 20,
) -> Selection:
    """Find the units that are on (≥ θ) at every step of the span [a, b) and off (< θ) in the padding around it.

    This is LSTMVis's select: mark a phrase, and see which units switch on for exactly that phrase. Padding
    steps before and after the span must be off, so a unit that is on everywhere does not qualify. Near-misses
    are units that fail at only a few steps, fewest first; they are often the same feature, slightly late.

    Args:
        run: an open run.
        name: activation name, e.g. ``rnn.l1.fwd.c``.
        span: token positions ``(a, b)``, b exclusive, in corpus order (the tokens table's ``idx``).
        threshold: absolute θ, or ``Threshold(q, quantile=True)`` for each unit's q-quantile over the run.
        pad_before, pad_after: steps before a and from b on where the unit must be off (clipped at the corpus).
        max_fail: largest number of failing steps for a near-miss; default a quarter of the steps, at least 1.
        n_near: how many near-misses to return.

    Returns:
        :class:`Selection` with ``units`` int ``[k]``, ``near_misses`` DataFrame and ``theta`` ``[units]``.
    """
    a, b = int(span[0]), int(span[1])
    if not 0 <= a < b <= run.n_tokens:
        raise RunError(f"span [{a}, {b}) is not a non-empty range inside the run's {run.n_tokens} tokens")
    lo, hi = max(a - pad_before, 0), min(b + pad_after, run.n_tokens)
    theta = thresholds(run, name, threshold)
    x = run.activations(name, start=lo, stop=hi)  # (hi - lo, U)
    on = x >= theta
    inside = on[a - lo : b - lo]
    off_in_span = (~inside).sum(0)
    on_in_pad = on[: a - lo].sum(0) + on[b - lo :].sum(0)
    n_fail = off_in_span + on_in_pad
    mean = x[a - lo : b - lo].mean(0)
    hits = np.flatnonzero(n_fail == 0)
    hits = hits[np.argsort(-mean[hits], kind="stable")]
    limit = max(1, (hi - lo) // 4) if max_fail is None else max_fail
    near = np.flatnonzero((n_fail > 0) & (n_fail <= limit))
    near = near[np.lexsort((-mean[near], n_fail[near]))][:n_near]
    table = pd.DataFrame(
        {
            "unit": near,
            "n_fail": n_fail[near],
            "off_in_span": off_in_span[near],
            "on_in_padding": on_in_pad[near],
            "mean_in_span": mean[near],
        }
    )
    return Selection(hits, table, theta)


# ----------------------------------------------------------------------------------------------------------- match

MATCH_COLUMNS = ["start", "stop", "length", "n_selected", "n_extra"]


def match(
    run: Run,
    name: str,
    units: Sequence[int] | np.ndarray,
    threshold: float | Threshold = 0.3,
    *,
    pad_before: int = 0,
    pad_after: int = 0,
    min_length: int = 2,
    min_selected: int = 1,
    top: int = 20,
    context: int = 20,
) -> pd.DataFrame:
    """Find the corpus spans where the selected units are on together, ranked as LSTMVis ranks them.

    Candidates are the maximal runs of steps where at least m of the selected units are on, for m from all of
    them down to ``min_selected``. A candidate's *on-set* is the units on at every step of it (and off in its
    padding). Results rank by the most selected units in the on-set, then the fewest other units in it, then the
    longest span. The whole corpus is searched, through a bitset index built once per activation and θ.

    Args:
        run: an open run.
        name: activation name.
        units: the selected units, e.g. ``select(...).units``.
        threshold: absolute θ, or ``Threshold(q, quantile=True)``.
        pad_before, pad_after: steps before and after a span where on-set units must be off.
        min_length: shortest span considered (LSTMVis uses 2).
        min_selected: fewest selected units that must be on at every step of a candidate.
        top: how many spans to return.
        context: tokens of context shown before and after each span.

    Returns:
        DataFrame, best first: rank, start, stop (token positions, stop exclusive), length, n_selected, n_extra,
        doc, pos, before, text, after (display strings).
    """
    index = on_index(run, name, threshold)
    found = match_index(
        index,
        units,
        pad_before=pad_before,
        pad_after=pad_after,
        min_length=min_length,
        min_selected=min_selected,
        top=top,
    )
    return with_context(run, found, context)


def _check_units(units: Sequence[int] | np.ndarray, n_units: int, min_selected: int) -> np.ndarray:
    sel = np.unique(np.asarray(units, np.int64).reshape(-1))
    if not len(sel):
        raise RunError("select at least one unit to match")
    if sel.min() < 0 or sel.max() >= n_units:
        raise RunError(f"units must lie in 0…{n_units - 1}; got {sel.min()}…{sel.max()}")
    if not 1 <= min_selected <= len(sel):
        raise RunError(f"min_selected must lie in 1…{len(sel)}, got {min_selected}")
    return sel


def on_counts(
    index: OnIndex, units: Sequence[int] | np.ndarray, start: int | None = None, stop: int | None = None
) -> np.ndarray:
    """int32 ``[stop - start]``: how many of ``units`` are on at each step of ``[start, stop)`` (default: the
    whole run, ``[T]``). A window reads its own bytes of the selected units only, so a page showing it costs
    the window, not the run (40 MB of int32 and a pass over every step at 10M tokens)."""
    sel = np.asarray(units, np.int64).reshape(-1)
    cols = np.asarray(index.cols)  # a plain view of the memory map: no per-access memmap wrapping
    if start is not None or stop is not None:
        lo, hi, _ = slice(start, stop).indices(index.n_tokens)
        count = np.zeros(max(hi - lo, 0), np.int32)
        for s in sel:
            count += (cols[s >> 3, lo:hi] >> (s & 7)) & 1
        return count
    k = jit()
    if k is not None:
        words = _word_view(index.bits)
        if words is not None and len(np.unique(sel)) == len(sel):  # a word's mask counts a unit once
            which, masks = _word_masks(sel, words.shape[1])
            if 3 * len(sel) > 8 * len(which):  # a pass over the words of the rows beats a pass per unit
                return k.count_words(words, which, masks)
        return k.count_on(cols, sel)
    count = np.zeros(index.n_tokens, np.int32)
    for s in sel:
        count += (cols[s >> 3] >> (s & 7)) & 1
    return count


def _word_view(bits: np.ndarray) -> np.ndarray | None:
    """uint64 ``[T, ⌈U/64⌉]``: the time-major bits read eight bytes at a time (units 64w … 64w+63 in word w,
    unit u at bit u & 63, as the bytes are little-endian), or None where a row is not whole words."""
    bits = np.asarray(bits)
    if bits.shape[1] % 8 or not bits.flags.c_contiguous or not np.little_endian:
        return None
    return bits.view(np.uint64)


def _word_masks(sel: np.ndarray, n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """(words holding a selected unit, int64 ``[w]``; their masks, uint64 ``[w]``)."""
    masks = np.zeros(n_words, np.uint64)
    np.bitwise_or.at(masks, sel >> 6, np.left_shift(np.uint64(1), (sel & 63).astype(np.uint64)))
    which = np.flatnonzero(masks)
    return which.astype(np.int64), masks[which]


def match_index(
    index: OnIndex,
    units: Sequence[int] | np.ndarray,
    *,
    pad_before: int = 0,
    pad_after: int = 0,
    min_length: int = 2,
    min_selected: int = 1,
    top: int = 20,
) -> pd.DataFrame:
    """:func:`match` on an :class:`OnIndex`, without context: the columns of :data:`MATCH_COLUMNS`, best first.

    Levels are visited from all selected units down. A candidate first found at level m has at most m selected
    units in its on-set (were k > m of them on throughout, it would be a maximal run at level k already), so
    once ``top`` candidates with at least m are known, lower levels cannot enter.
    """
    sel = _check_units(units, index.n_units, min_selected)
    bits = np.asarray(index.bits)  # a plain view of the memory map: no per-access memmap wrapping
    sel_mask = np.zeros(bits.shape[1], np.uint8)
    np.bitwise_or.at(sel_mask, sel >> 3, (1 << (sel & 7)).astype(np.uint8))
    count = on_counts(index, sel)
    k = jit()
    pads = int(pad_before), int(pad_after)
    found: list[tuple[np.ndarray, ...]] = []
    for m, a, b in _levels(k, count, len(sel), min_selected):
        keep = b - a >= min_length
        a, b = a[keep], b[keep]
        n_sel, n_all = (k.on_sets if k is not None else _on_sets)(bits, a, b, *pads, sel_mask)
        found.append((a, b, n_sel, n_all))
        if sum(int((f[2] >= m).sum()) for f in found) >= top:
            break
    a, b, n_sel, n_all = (np.concatenate(col) for col in zip(*found, strict=True))
    keep = n_sel > 0
    a, b, n_sel, n_extra = a[keep], b[keep], n_sel[keep], (n_all - n_sel)[keep]
    order = np.lexsort((a, -(b - a), n_extra, -n_sel))[:top]
    return pd.DataFrame(
        {
            "start": a[order],
            "stop": b[order],
            "length": (b - a)[order],
            "n_selected": n_sel[order].astype(np.int64),
            "n_extra": n_extra[order].astype(np.int64),
        }
    )


def _levels(k, count: np.ndarray, top: int, lowest: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For m from ``top`` down to ``lowest``: (m, starts, stops) of the maximal runs of ``count >= m`` that are
    not runs of level m + 1 (those whose minimum count is m), sorted by start.

    Compiled, a scan (:func:`~lstmviz.analysis._match_jit.level_spans`) lists a band of levels at once, the
    first band four deep and each next one four times deeper: match usually stops within the first few levels,
    and a scan's cost grows with the steps whose count lies in its band, most of which lie at the low levels."""
    if k is None or top > np.iinfo(np.int16).max:
        prev_a = prev_b = np.zeros(0, np.int64)
        for m in range(top, lowest - 1, -1):
            a, b, new = _level_runs(count, m, prev_a, prev_b)
            prev_a, prev_b = a, b
            yield m, a[new], b[new]
        return
    hi, depth = top, 4
    while hi >= lowest:
        lo = max(lowest, hi - depth + 1)
        a, b, level = k.level_spans(count, lo, hi)
        order = np.argsort(-level, kind="stable")  # by level, high first; each level's runs stay in order of stop
        ends = np.searchsorted(-level[order], np.arange(-hi, -lo + 2), side="left")
        for m in range(hi, lo - 1, -1):
            part = order[ends[hi - m] : ends[hi - m + 1]]
            yield m, a[part], b[part]
        hi, depth = lo - 1, 4 * depth


def _level_runs(
    count: np.ndarray, m: int, prev_a: np.ndarray, prev_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The maximal runs of ``count >= m`` (starts, stops) and whether each is new (not one of the runs prev_a,
    prev_b of level m + 1): one level's scan, the numpy path and the reference of the compiled
    :func:`lstmviz.analysis._match_jit.level_spans`."""
    mask = count >= m
    edges = np.flatnonzero(mask[1:] != mask[:-1]) + 1
    bounds = np.concatenate(
        [[0] if len(mask) and mask[0] else [], edges, [len(mask)] if len(mask) and mask[-1] else []]
    ).astype(np.int64)
    a, b = bounds[0::2], bounds[1::2]
    T = len(count) + 1
    return a, b, ~np.isin(a * T + b, prev_a * T + prev_b)


def _on_sets(
    bits: np.ndarray, a: np.ndarray, b: np.ndarray, pad_before: int, pad_after: int, sel_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of :func:`lstmviz.analysis._match_jit.on_sets`: spans sorted and apart (runs of one level),
    so one ``reduceat`` over the rows ANDs every span; the padding steps are ANDed out one offset at a time."""
    T = len(bits)
    if not len(a):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    idx = np.stack([a, b], axis=1).reshape(-1)
    acc = np.bitwise_and.reduceat(bits, idx[:-1] if idx[-1] == T else idx, axis=0)[0::2]  # (G, nb)
    for k in range(1, pad_before + 1):
        t = a - k
        ok = t >= 0
        acc[ok] &= ~bits[t[ok]]
    for k in range(pad_after):
        t = b + k
        ok = t < T
        acc[ok] &= ~bits[t[ok]]
    return POP8[acc & sel_mask].sum(1), POP8[acc].sum(1)


def match_scan(
    acts: np.ndarray,
    theta: np.ndarray,
    units: Sequence[int] | np.ndarray,
    *,
    pad_before: int = 0,
    pad_after: int = 0,
    min_length: int = 2,
    min_selected: int = 1,
    top: int = 20,
) -> pd.DataFrame:
    """The reference for :func:`match`: a direct scan of dense values, candidate by candidate, as LSTMVis does.

    Args:
        acts: float ``[T, units]``, all values of the activation (any float dtype; compared as float32).
        theta: float32 ``[units]``, θ per unit (e.g. ``on_index(...).theta``).
        units, pad_before, pad_after, min_length, min_selected, top: as for :func:`match`.

    Returns:
        DataFrame with the columns of :data:`MATCH_COLUMNS`, best first.
    """
    sel = _check_units(units, acts.shape[1], min_selected)
    T = len(acts)
    theta = np.asarray(theta, np.float32)
    count = (acts[:, sel] >= theta[sel]).sum(1)
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for m in range(len(sel), min_selected - 1, -1):
        step = np.diff((count >= m).astype(np.int8), prepend=0, append=0)
        for a, b in zip(np.flatnonzero(step == 1), np.flatnonzero(step == -1), strict=True):
            if b - a < min_length or (a, b) in found:
                continue
            on = (acts[a:b] >= theta).all(0)
            on &= ~(acts[max(a - pad_before, 0) : a] >= theta).any(0)
            on &= ~(acts[b : min(b + pad_after, T)] >= theta).any(0)
            n_sel = int(on[sel].sum())
            found[(int(a), int(b))] = (n_sel, int(on.sum()) - n_sel)
    ranked = sorted((-n_sel, extra, -(b - a), a, b) for (a, b), (n_sel, extra) in found.items() if n_sel > 0)
    rows = [(a, b, b - a, -neg, extra) for neg, extra, _, a, b in ranked[:top]]
    return pd.DataFrame(rows, columns=MATCH_COLUMNS).astype(np.int64)


# --------------------------------------------------------------------------------------------------------- context


def token_joiner(run: Run) -> str:
    """How display strings join into text: ``""`` for character tokens, ``" "`` for words."""
    kind = (run.manifest.get("tokenizer") or {}).get("kind")
    if kind in ("char", "word"):
        return "" if kind == "char" else " "
    sample = run.tokens_window(0, 1000, ["token"])["token"].astype(str)
    return "" if sample.str.len().max() <= 1 else " "


def span_text(
    run: Run, starts: np.ndarray, stops: np.ndarray, width: int = 20, max_text: int = 200
) -> tuple[list[str], list[str], list[str]]:
    """Display strings (before, text, after) of token spans [start, stop), with up to ``width`` tokens of
    context on each side that stop at document borders. A text longer than max_text tokens is shortened in the
    middle with " … "."""
    starts, stops = np.asarray(starts, np.int64), np.asarray(stops, np.int64)
    los, his = np.maximum(starts - width, 0), np.minimum(stops + width, run.n_tokens)
    # every span's rows taken from the mapped table at once: a window per span costs ~0.3 ms, 1.5 s for 5000
    offsets = np.concatenate([[0], np.cumsum(his - los)])
    rows = np.repeat(los - offsets[:-1], his - los) + np.arange(offsets[-1])
    taken = run.token_rows(rows, ["token", "doc"])
    tok, doc = taken.column("token").to_pylist(), taken.column("doc").to_numpy()
    join = token_joiner(run)
    before, text, after = [], [], []
    for a, b, lo, hi, at in zip(starts, stops, los, his, offsets[:-1], strict=True):
        base = lo - at  # tok[i - base] is token i
        lo += int(np.count_nonzero(doc[lo - base : a - base] != doc[a - base]))  # docs are contiguous: drop the
        hi -= int(np.count_nonzero(doc[b - base : hi - base] != doc[b - 1 - base]))  # other doc's tail
        window = [str(t) for t in tok[lo - base : hi - base]]
        inner = window[a - lo : b - lo]
        if len(inner) > max_text:
            inner = [*inner[: max_text // 2], " … ", *inner[-max_text // 2 :]]
        before.append(join.join(window[: a - lo]))
        text.append(join.join(inner))
        after.append(join.join(window[b - lo :]))
    return before, text, after


def with_context(run: Run, spans: pd.DataFrame, width: int = 20) -> pd.DataFrame:
    """Add rank, doc, pos and the display strings before, text and after (:func:`span_text`) to a table of
    spans with ``start`` and ``stop`` columns."""
    out = spans.reset_index(drop=True)
    starts = out["start"].to_numpy()
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    at = run.token_rows(starts, ["doc", "pos"])
    out["doc"] = at.column("doc").to_numpy()
    out["pos"] = at.column("pos").to_numpy()
    out["before"], out["text"], out["after"] = span_text(run, starts, out["stop"].to_numpy(), width)
    return out
