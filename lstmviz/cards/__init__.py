"""Unit cards: per activation and unit, what a "what does this unit do?" page needs, built when a recording closes.

A recording's observers include a :class:`PassCards` per activation; when the writer closes, it reads its
candidates, sample and counts from the pass over every stored value that the activation's spill observers share
(:class:`lstmviz.unit_sweep.Sweep`), and writes ``<run>/cache/cards/<name>.n<T>.v2.npz`` at finish (docs/FORMAT.md
lists its arrays). It holds, per unit:

- **Top contexts**, both signs: the greedy de-duplicated top ``K`` positions. The order is value descending, ties to
  the earlier position (a strict total order, so "the best remaining position" is always one position); NaN is
  never chosen, ±inf is a value. Greedy: take the best remaining position, drop every position within
  ``±window`` of it, repeat.
- **Quantile bands**: 10 equal-count bands of a seeded uniform sample of positions, each with a few example
  positions drawn at random from it (as Delphi and sae_vis show examples per activation quantile).
- **Density**: the number of steps above ``THETA`` and below ``-THETA``; saturation is in stats.parquet.
- **Correlations** are not stored: :func:`~.read.correlation_row` computes one unit's row of Pearson r when asked,
  in one streamed pass over the stored values (2 flops per value, where the U × U matrix in the pass would cost
  2·U), and exactly (float64 sums, against ``numpy.corrcoef``).

Why a bounded candidate set suffices for the greedy (exact, not approximate). Two bounds, each a floor every pick
lies above, so the greedy run on the positions above either (or both) makes the full run's choices: by induction,
every removal it does inside the set is the full run's removal intersected with the set, and the full run's next
choice lies in the set.

- *By rank.* Let ``M = (K − 1)(2w + 1) + 1``. When the greedy takes its j-th position, the j − 1 positions taken
  before have removed at most (j − 1)(2w + 1) positions (each itself and its ±w neighbours), and the j-th is the
  best of what remains, so at most (j − 1)(2w + 1) positions rank above it: its rank is ≤ M. So each unit keeps
  only its top M keys per sign.
- *By long blocks.* The sweep sees the corpus as blocks, disjoint intervals of positions: in a recording the
  overview's bins (the writer's stats pass takes each bin's extremes with its sums), in a file swept after its
  recording runs of 64 rows. Call a block long if it holds at least 2w + 1 positions; the ±w window of a pick (2w + 1
  consecutive positions) then meets at most two long blocks (a third between them would lie inside it with room to
  spare). After j − 1 picks at most 2(j − 1) long blocks are touched, so one of the 2j − 1 long blocks with the best
  maxima is untouched and its best position remains: the j-th pick is at least the (2j − 1)-th best long-block
  maximum, and every pick at least the (2K − 1)-th, which is a floor on the picks' values. Blocks of a sharded run
  are disjoint across shards too, so each shard's floor is below the run's. On a random corpus it sits near the
  ~40th best value instead of the 400th, and a block whose largest value is below it (most blocks) is never read
  again.

A card key is one int64, ``(order key + 2¹⁵) << 47 | (2⁴⁷ − 1 − position)`` (:func:`lstmviz.f16keys.card_keys`),
so the order has no ties. The candidates the sweep keeps are the keys above both bounds, an upper set of the order
(:mod:`lstmviz.unit_sweep`), and the greedy run on such a set makes the full run's choices. The same holds across
shards: the union of the shards' candidates holds every pick of the run.

The package: :mod:`.build` computes (the bound, the greedy, the bands); :mod:`.inpass` is the recording's part
(:class:`PassCards`, :func:`merge_parts`, the shards' parts); :mod:`.read` answers (:func:`~.read.load_cards`,
:func:`~.read.top_contexts`, :func:`~.read.correlated_units`), building a run's cards on first use with the same
pass when the recording did not (a run recorded without ``cards`` or before, or a deleted cache).
:meth:`lstmviz.store.Run.top_contexts` and :meth:`~lstmviz.store.Run.correlated_units` delegate to :mod:`.read`.
"""

from __future__ import annotations

from .build import (
    BAND_EXAMPLES,
    BANDS,
    SAMPLE,
    SEED,
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
