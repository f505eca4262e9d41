"""Unit cards: per activation and unit, what a "what does this unit do?" page needs, built in the recording pass.

A recording's observers include a :class:`PassCards` per activation; the writer feeds its ``card_state`` from
its own per-chunk pass (:func:`lstmviz.chunkstats.chunk_pass`, while each unit's values are in cache) and the
observer writes ``<run>/cache/cards/<name>.n<T>.v1.npz`` at finish (docs/FORMAT.md lists its arrays). It holds,
per unit:

- **Top contexts**, both signs: the greedy de-duplicated top ``K`` positions. The order is value descending, ties to
  the earlier position (a strict total order, so "the best remaining position" is always one position); NaN is
  never chosen, ±inf is a value. Greedy: take the best remaining position, drop every position within
  ``±window`` of it, repeat.
- **Quantile bands**: 10 equal-count bands of a seeded uniform sample of positions, each with a few example
  positions drawn at random from it (as Delphi and sae_vis show examples per activation quantile).
- **Density**: the number of steps above ``THETA`` and below ``-THETA``; saturation is in stats.parquet.
- **A strip over the corpus**: per corpus bin, the mean of the unit's finite values (non-finite as 0).
- **Correlations** within the activation, for the kinds in ``CORR_KINDS``: streaming sums n, Σx, Σxxᵀ of the
  rows, one GEMM per block; another kind's on first use.

Why a bounded candidate set suffices for the greedy (exact, not approximate). Let ``M = (K − 1)(2w + 1) + 1``.
When the greedy takes its j-th position, the j − 1 positions taken before have removed at most (j − 1)(2w + 1)
positions (each itself and its ±w neighbours), and the j-th is the best of what remains, so at most
(j − 1)(2w + 1) positions rank above it: its rank is ≤ M. Run the greedy on the top M positions alone: by
induction it makes the same choices, since every removal it does inside the set is the full run's removal
intersected with the set, and the full run's next choice lies in the set. So each unit keeps only its top M keys
per sign. A card key is one int64, ``(order key + 2¹⁵) << 47 | (2⁴⁷ − 1 − position)``
(:func:`lstmviz.chunkstats.card_keys`), so the order has no ties and a per-unit threshold (the M-th best key so
far) rejects whole rows after one reduction; a stale threshold only admits more, never drops a key of the final
top M. The same holds across shards: the union of the shards' top M holds the run's top M.

The package: :mod:`.build` computes (the bound, the greedy, the bands, the correlation sums); :mod:`.inpass` is
the recording's part (:class:`PassCards`, :func:`merge_parts`, the shards' parts); :mod:`.read` answers
(:func:`~.read.load_cards`, :func:`~.read.top_contexts`, :func:`~.read.correlated_units`), building a run's
cards on first use with the same pass when the recording did not (a run recorded before, or a deleted cache).
:meth:`lstmviz.store.Run.top_contexts` and :meth:`~lstmviz.store.Run.correlated_units` delegate to :mod:`.read`.
"""

from __future__ import annotations

from .build import (
    BAND_EXAMPLES,
    BANDS,
    SAMPLE,
    SEED,
    STRIP_BINS,
    THETA,
    VERSION,
    WINDOW,
    K,
    bands,
    best_keys,
    candidates,
    card_file,
    greedy,
    key_values,
)
from .inpass import PassCards, card_observers, merge_parts
from .read import Cards, build_cards, correlated_units, correlation_row, load_cards, token_strings, top_contexts

__all__ = [
    "BANDS",
    "BAND_EXAMPLES",
    "SAMPLE",
    "SEED",
    "STRIP_BINS",
    "THETA",
    "VERSION",
    "WINDOW",
    "Cards",
    "K",
    "PassCards",
    "bands",
    "best_keys",
    "build_cards",
    "candidates",
    "card_file",
    "card_observers",
    "correlated_units",
    "correlation_row",
    "greedy",
    "key_values",
    "load_cards",
    "merge_parts",
    "token_strings",
    "top_contexts",
]
