"""The unit cards built in the recording pass: :class:`PassCards`, a spill observer of the
:class:`~lstmviz.store.RunWriter`. When the recording closes, the writer hands it every stored value once
(``read_spill``), and it takes what the cards need from the activation's :class:`~lstmviz.unit_sweep.Sweep`,
the one per-unit pass it shares with a quantile θ of the match index: each unit's top-context candidates of both
signs, its values at the bands' seeded sample (4096 positions in all) and its counts beyond ±θ. ``finish`` runs the
greedy on the candidates and writes the same cards file as :func:`lstmviz.cards.build_cards` (docs/FORMAT.md,
cache/cards/). Correlations are not kept: :func:`lstmviz.cards.correlation_row` computes a unit's when asked, and
the strip over the corpus is the activation's overview (:mod:`lstmviz.analysis.overview`).

In a shard of a sharded run (``offset``, ``n_local``, ``part``), positions are the run's and the sample is the run's
sample within the shard; ``finish`` writes what :func:`merge_parts` merges into the run's cards exactly (the union of
the shards' candidates holds every pick of the run: see :mod:`lstmviz.cards`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import f16keys as _cs
from ..bins import BinSums
from ..store.format import Activation
from ..unit_sweep import Sweep, raw_key
from .build import (
    SAMPLE,
    SEED,
    THETA,
    WINDOW,
    K,
    bands,
    best_keys,
    candidates,
    card_file,
    greedy,
    key_values,
)


def sample_positions(n_tokens: int) -> np.ndarray:
    """The bands' seeded sample of a run of ``n_tokens`` tokens: int64 ``[min(SAMPLE, T)]``, sorted."""
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(n_tokens, min(SAMPLE, n_tokens), replace=False))


class PassCards:
    """The cards of one activation, from the writer's spill (``read_spill``), through ``sweep`` when one is given
    (the activation's :class:`~lstmviz.unit_sweep.Sweep`, shared with its other spill observers). ``blocks``: the
    bins of the activation's overview, whose extremes the writer's stats pass takes
    (its ``overview_state``), as the sweep's blocks (:meth:`.Sweep.want_cards`)."""

    def __init__(
        self,
        act: Activation,
        n_run: int,
        k: int = K,
        window: int = WINDOW,
        offset: int = 0,
        n_local: int | None = None,
        part: bool = False,
        sweep: Sweep | None = None,
        blocks: BinSums | None = None,
    ):
        self.act, self.n_run, self.k, self.window = act, n_run, k, window
        self.offset, self.n_local, self.part = offset, n_run if n_local is None else n_local, part
        pos = sample_positions(n_run)
        self.sample_pos = pos[(pos >= offset) & (pos < offset + self.n_local)]
        self.sweep = sweep or Sweep(act.units)
        above, below = theta_keys(THETA)
        self.sweep.want_cards(candidates(k, window), picks_floor(k), 2 * window + 1, offset, above, below,
                              self.sample_pos, blocks)  # fmt: skip
        self.swept: dict[str, np.ndarray] | None = None

    def needs_spill(self) -> bool:
        """Always: the cards are made from every stored value."""
        return True

    def read_spill(self, values: np.ndarray, tiles: np.ndarray) -> None:
        """The writer's whole spill: values uint16 ``[*]`` (float16 patterns), tiles int64 ``[k, 4]``
        (:mod:`lstmviz.unit_sweep`)."""
        self.swept = self.sweep.run(values, tiles)

    def parts(self) -> dict[str, np.ndarray]:
        """What this recording saw, in the mergeable form :func:`merge_parts` takes."""
        if self.swept is None:  # no rows: a shard or run of no tokens
            self.read_spill(np.zeros(0, np.uint16), np.zeros((0, 4), np.int64))
        s = self.swept
        return {
            "top_pos_keys": s["top"][0],
            "top_neg_keys": s["top"][1],
            "sample_pos": self.sample_pos,
            "sample": s["sample"],
            "dens": s["dens"],
        }

    def finish(self, run_dir: str | os.PathLike) -> dict:
        """Write the cards (a whole run) or, for a shard (``part``), its parts (``cache/card-parts/<name>.npz``),
        even when the shard is the whole run."""
        parts = self.parts()
        if self.part:
            path = part_path(Path(run_dir), self.act.name)
            arrays = parts
        else:
            path = Path(run_dir) / "cache" / "cards" / card_file(self.act.name, self.n_run)
            arrays = merge_parts([parts], self.n_run, self.k, self.window)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return {"cards": f"cache/cards/{path.name}"} if path.parent.name == "cards" else {}


def theta_keys(theta: float) -> tuple[int, int]:
    """Raw keys (:func:`lstmviz.unit_sweep.raw_key`) such that for a non-NaN float16 x: ``x > θ`` ⇔ its raw key
    > the first, and ``x < −θ`` ⇔ its raw key < the second (float32 comparisons, as the stored values read)."""
    ok = ~np.isnan(_cs.LUT)
    raw = raw_key(np.arange(1 << 16))
    return int(raw[ok & (np.float32(theta) >= _cs.LUT)].max()), int(raw[ok & (np.float32(-theta) <= _cs.LUT)].min())


def picks_floor(k: int) -> int:
    """2k − 1: the long blocks (each at least 2·window + 1 positions) whose bounds make the picks' floor."""
    return 2 * k - 1


def part_path(run_dir: Path, name: str) -> Path:
    """Where a shard's recording keeps the card parts of activation ``name``."""
    return run_dir / "cache" / "card-parts" / f"{name}.npz"


def merge_parts(parts: Sequence[dict], n_run: int, k: int = K, window: int = WINDOW) -> dict[str, np.ndarray]:
    """The cards file's arrays (docs/FORMAT.md) of a run from its recordings' :meth:`PassCards.parts`, one per
    shard in corpus order (one for an unsharded run): top candidates united then cut to the top M, the greedy
    on them; samples concatenated; counts added."""
    m = candidates(k, window)
    out: dict[str, np.ndarray] = {"k": np.int64(k), "window": np.int64(window)}
    for s, sign in (("pos", 1), ("neg", -1)):
        keys = np.concatenate([p[f"top_{s}_keys"] for p in parts], axis=1)
        keys = best_keys(keys, np.full(len(keys), keys.shape[1]), m)
        picked, best = greedy(keys, k, window)
        out[f"top_{s}"] = picked
        out[f"top_{s}_value"] = key_values(best, sign)
    out.update(bands(np.concatenate([p["sample_pos"] for p in parts]), np.concatenate([p["sample"] for p in parts], 1)))
    dens = sum(p["dens"] for p in parts)
    out["n_above"], out["n_below"], out["theta"] = dens[0], dens[1], np.float32(THETA)
    return out


def card_observers(n_tokens: int, offset: int = 0, n_local: int | None = None) -> Callable[[Activation], list]:
    """``observers`` for a recording: one :class:`PassCards` per activation (a shard's: ``offset``,
    ``n_local``)."""
    return lambda act: [PassCards(act, n_tokens, offset=offset, n_local=n_local)]
