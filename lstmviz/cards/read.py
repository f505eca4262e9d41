"""Reading the unit cards: :func:`load_cards` (built from the run's values on first use, then cached), and the
answers made from them, :func:`top_contexts` and :func:`correlated_units`."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import chunkstats as _cs
from ..errors import RunError
from ..location import AnyPath, read_table
from ..shards import expand, tokens_file
from ..store.format import Activation
from ..store.reader import RunReader
from ..store.stats import Stats
from ..validate import unit_ids
from .build import WINDOW, Moments, candidates, card_file, correlation, greedy, key_values
from .inpass import PassCards


def load_cards(run: RunReader, name: str) -> Cards:
    """The cards of one activation: from ``cache/cards/`` when the recording built them, else built now from the
    run's values (a run recorded before cards existed, or a deleted cache) and cached for next time."""
    run.info(name)  # a RunError for an unknown name
    path = run.cache_dir / "cards" / card_file(name, run.n_tokens)
    if not path.is_file():
        build_cards(run, name)
    return _load(str(path), path.stat().st_mtime_ns)


def build_cards(run: RunReader, name: str, rows: int = 16384) -> None:
    """Build and cache the cards of a finished run's activation: its rows, streamed in blocks, through the same
    chunk pass and :class:`~.inpass.PassCards` as a recording's, so the cards are the ones it would have built."""
    act = Activation.from_name(name, run.units(name))
    cards = PassCards(act, run.n_tokens)
    stats = Stats(act)
    stats.range = (0.0, 1.0)  # the histogram is not kept
    tiles = np.empty((1, act.units * rows), np.uint16)
    for start in range(0, run.n_tokens, rows):
        x = run.activations(name, start=start, stop=start + rows).astype(np.float16)
        stats.update(x.view(np.uint16)[None], np.array([len(x)]), tiles, np.array([start]), cards.card_state)
        cards.update(start, x)
    cards.finish(run.cache_dir.parent)


class Cards:
    """The arrays of one cards file (names as in docs/FORMAT.md), read-only."""

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.a = dict(arrays)
        self.k, self.window = int(self.a["k"]), int(self.a["window"])

    def top(self, unit: int, sign: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions int64 ``[k]`` and values float32 ``[k]`` of the stored greedy top contexts of ``unit`` (sign
        +1 or −1), in rank order."""
        s = "top_pos" if sign > 0 else "top_neg"
        p = self.a[s][unit]
        return p[p >= 0], self.a[f"{s}_value"][unit][p >= 0]

    def corr(self, unit: int) -> np.ndarray:
        """Pearson r float32 ``[U]`` of ``unit`` with every unit of the activation."""
        return self.a["corr"][unit]


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> Cards:
    with np.load(path) as z:
        return Cards({key: z[key] for key in z.files})


def top_contexts(
    run: RunReader, name: str, unit: int, k: int = 20, sign: int = 1, window: int = WINDOW, context: int = 10
) -> pd.DataFrame:
    """The greedy de-duplicated top ``k`` positions of one unit (see the module docstring), in rank order.

    Answered from the cards when ``k ≤`` the stored k and ``window`` is the stored window, else computed from
    the unit's column (one column read). Returns columns ``rank, idx, value, token, context``: ``context`` is the
    tokens ``[idx − context, idx]`` joined, the top token last.
    """
    (unit,) = unit_ids(unit, run.units(name), name)
    if sign not in (1, -1):
        raise RunError(f"sign is 1 (the most positive contexts) or -1 (the most negative), got {sign!r}")
    if not isinstance(k, int) or k < 1 or not isinstance(window, int) or window < 0:
        raise RunError(f"k must be a positive integer and window a non-negative one, got k={k!r}, window={window!r}")
    c = load_cards(run, name)
    if k <= c.k and window == c.window:
        idx, value = c.top(unit, sign)
        idx, value = idx[:k], value[:k]
    else:
        keys = sign * _cs.key(run.activations(name, [unit])[:, 0].astype(np.float16).view(np.uint16))
        pos = np.flatnonzero(np.abs(keys) <= 0x7C00)  # NaN is never a top context
        ck = _cs.card_keys(keys[pos], pos)
        m = candidates(k, window)
        top = ck if len(ck) <= m else np.partition(ck, len(ck) - m)[len(ck) - m :]
        picked, best = greedy(np.sort(top)[::-1][None], k, window)
        idx = picked[0][picked[0] >= 0]
        value = key_values(best[0][: len(idx)], sign)
    tokens = token_strings(run)
    return pd.DataFrame(
        {
            "rank": np.arange(len(idx)),
            "idx": idx,
            "value": value,
            "token": [tokens[i] for i in idx],
            "context": ["".join(tokens[max(0, i - context) : i + 1]) for i in idx],
        }
    )


def correlated_units(run: RunReader, name: str, unit: int, k: int = 10) -> pd.DataFrame:
    """The ``k`` units of the same activation most correlated with ``unit`` (Pearson r over the run, from the
    cards), by |r| descending, ties to the lower unit; columns ``unit, r``. The unit itself is left out."""
    (unit,) = unit_ids(unit, run.units(name), name)
    c = load_cards(run, name)
    r = (c.corr(unit) if "corr" in c.a else correlations(run, name)[unit]).astype(np.float64)
    others = np.delete(np.arange(len(r)), unit)
    strength = np.abs(r[others])
    order = others[np.lexsort((others, -np.nan_to_num(strength, nan=-1.0)))][:k]
    return pd.DataFrame({"unit": order, "r": r[order]})


def correlations(run: RunReader, name: str, rows: int = 16384) -> np.ndarray:
    """Pearson r float32 ``[U, U]`` of an activation whose cards hold none (a kind outside ``CORR_KINDS``):
    computed from its file with the cards' streaming sums once, then cached as ``<cards file>.corr.npy``."""
    path = run.cache_dir / "cards" / (card_file(name, run.n_tokens) + ".corr.npy")
    if not path.is_file():
        moments = Moments(run.units(name))
        for start in range(0, run.n_tokens, rows):
            moments.add(run.activations(name, start=start, stop=start + rows))
        m = moments.sums()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, correlation(np.int64(m["count"]), m["s1"], m["sxx"], m["bad"]))
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def token_strings(run: RunReader) -> list[str]:
    """The run's display tokens, read once per run (the column alone, not the whole tokens table); a sharded
    run's come from its parts in order."""
    files = tuple(run.path / f for f in expand(run.path, tokens_file(run.manifest)))
    return _tokens(files, tuple(f.stat().st_mtime_ns for f in files))


@functools.lru_cache(maxsize=4)
def _tokens(files: tuple[AnyPath, ...], mtimes_ns: tuple[int, ...]) -> list[str]:
    return [t for f in files for t in read_table(f, columns=["token"]).column("token").to_pylist()]
