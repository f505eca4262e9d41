"""Nesting depth of a bracket language (the LSTMVis toy), one value per character."""

from __future__ import annotations

import numpy as np
import pandas as pd


def floored_sum(delta: np.ndarray) -> np.ndarray:
    """Running sum of ``delta [n]`` that never goes below 0 (steps below 0 are ignored): int32 ``[n]``.

    The floored walk is ``s_t − min(0, min_{k≤t} s_k)`` for the plain running sum ``s`` (the Skorokhod
    reflection), which needs no Python loop.
    """
    s = np.cumsum(delta, dtype=np.int64)  # (n,)
    if not len(s):
        return s.astype(np.int32)
    return (s - np.minimum(np.minimum.accumulate(s), 0)).astype(np.int32)


def bracket_depth(opens: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Depth per position from bool ``opens [n]`` and ``closes [n]``: int32 ``[n]``.

    A bracket counts as inside its own pair, so ``a(b(c))`` gives ``0 1 1 2 2 2 1``; a closer with nothing
    open is ignored.
    """
    after = floored_sum(opens.astype(np.int64) - closes.astype(np.int64))  # depth after each char
    before = np.r_[0, after[:-1]] if len(after) else after
    return (after + (closes & (before > 0))).astype(np.int32)


def paren_depth(text: str, open: str = "(", close: str = ")") -> pd.DataFrame:
    """Column ``depth`` per character of ``text``: how many brackets enclose it (see :func:`bracket_depth`).

    ``open`` and ``close`` may list several bracket characters (``"([{"``, ``")]}"``); their kinds are not
    matched against each other.
    """
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (n,) code points
    opens = np.isin(chars, [ord(c) for c in open])
    closes = np.isin(chars, [ord(c) for c in close])
    return pd.DataFrame({"depth": bracket_depth(opens, closes)})
