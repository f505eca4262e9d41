"""The unit cards built in the recording pass: :class:`PassCards`, an :class:`~lstmviz.store.Observer` whose
``card_state`` (a :class:`lstmviz.chunkstats.CardState`) the writer feeds from its own per-chunk pass, so the
top-context candidates, the rows of the bands' seeded sample (4096 positions in all), the counts beyond ±θ and
the strip sums cost no second look at the values: ``update`` has nothing left to do. ``finish`` runs the greedy
on the candidates and writes the same cards file as :func:`lstmviz.cards.build_cards` (docs/FORMAT.md,
cache/cards/). Correlations are not kept: :func:`lstmviz.cards.correlation_row` computes a unit's when asked.

In a shard of a sharded run (``offset``, ``n_local``, ``part``), positions are the run's, the sample is the run's sample
within the shard and the strip bins are the run's; ``finish`` writes what :func:`merge_parts` merges into the
run's cards exactly (the union of the shards' candidates holds every pick of the run: see :mod:`lstmviz.cards`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .. import chunkstats as _cs
from ..store.format import Activation
from .build import (
    SAMPLE,
    SEED,
    STRIP_BINS,
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


def strip_shape(n_tokens: int) -> tuple[int, int]:
    """(tokens per strip bin, bins) of a run of ``n_tokens`` tokens."""
    per = -(-n_tokens // STRIP_BINS)
    return per, -(-n_tokens // per)


class PassCards:
    """The cards of one activation, fed by the writer's chunk pass (``card_state``) and by ``update``."""

    def __init__(
        self,
        act: Activation,
        n_run: int,
        k: int = K,
        window: int = WINDOW,
        offset: int = 0,
        n_local: int | None = None,
        part: bool = False,
    ):
        self.act, self.n_run, self.k, self.window = act, n_run, k, window
        self.offset, self.n_local, self.part = offset, n_run if n_local is None else n_local, part
        per, bins = strip_shape(n_run)
        pos = sample_positions(n_run)
        self.sample_pos = pos[(pos >= offset) & (pos < offset + self.n_local)]
        self.card_state = _cs.CardState(
            act.units, candidates(k, window), THETA, per, bins, offset, blocks(k), 2 * window + 1, self.sample_pos
        )

    def update(self, start: int, values: np.ndarray) -> None:
        """Nothing: the writer's chunk pass feeds ``card_state`` (the bands' sample rows included)."""

    def parts(self) -> dict[str, np.ndarray]:
        """What this recording saw, in the mergeable form :func:`merge_parts` takes."""
        s = self.card_state
        floor = s.floor()
        out = {
            "top_pos_keys": best_keys(s.buf[0], s.length[0], s.m, floor[0]),
            "top_neg_keys": best_keys(s.buf[1], s.length[1], s.m, floor[1]),
            "sample_pos": self.sample_pos,
            "sample": s.sample,
            "dens": s.dens,
            "strip_sum": s.strip_sum,
        }
        return out

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
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return {"cards": f"cache/cards/{path.name}"} if path.parent.name == "cards" else {}


def blocks(k: int) -> int:
    """2k − 1: the long rows (each at least 2·window + 1 positions) whose bounds make the picks' floor."""
    return 2 * k - 1


def part_path(run_dir: Path, name: str) -> Path:
    """Where a shard's recording keeps the card parts of activation ``name``."""
    return run_dir / "cache" / "card-parts" / f"{name}.npz"


def merge_parts(parts: Sequence[dict], n_run: int, k: int = K, window: int = WINDOW) -> dict[str, np.ndarray]:
    """The cards file's arrays (docs/FORMAT.md) of a run from its recordings' :meth:`PassCards.parts`, one per
    shard in corpus order (one for an unsharded run): top candidates united then cut to the top M, the greedy
    on them; samples concatenated; counts and strip sums added."""
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
    per, bins = strip_shape(n_run)
    out["strip_per"] = np.int64(per)
    counts = np.diff(np.minimum(np.arange(bins + 1) * per, n_run))
    out["strip_mean"] = (sum(p["strip_sum"] for p in parts).T / counts[:, None]).astype(np.float32)
    return out


def card_observers(n_tokens: int, offset: int = 0, n_local: int | None = None) -> Callable[[Activation], list]:
    """``observers`` for a recording: one :class:`PassCards` per activation (a shard's: ``offset``,
    ``n_local``)."""
    return lambda act: [PassCards(act, n_tokens, offset=offset, n_local=n_local)]
