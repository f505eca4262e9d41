"""Cached interventions for the Intervene page: the per-token change in log p, and generations with a clamp.

Models come from :func:`lstmviz.dashboard.data.load_model` (native checkpoints, read weights-only). Running a model
with a clamp swaps its modules' forward for the call, so it holds :data:`data.MODEL_LOCK`, as recording does.
Nothing is written: an intervention is a forward pass, not a recording. Nothing here writes ``st.session_state``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ..causal import effects, generate
from . import data

Held = tuple[str, tuple[int, ...], str | float]
"""(activation name, units, value): what the page holds."""


def _clamp(held: Held) -> dict:
    name, units, value = held
    return {name: dict.fromkeys(units, value)}


@st.cache_data(max_entries=32, show_spinner="Running the model with the units held…")
def token_effects(
    checkpoint: str,
    mtime: float,
    key: data.RunRef,
    ids: tuple[int, ...],
    held: Held,
    span: tuple[int, int],
    last_layer: bool,
) -> tuple[pd.DataFrame, float, float | None]:
    """Per token t ≥ 1: the change in log p(token t) from holding ``held`` over ``span`` of ``ids`` (read from a
    zero state); → (frame with ``total`` [and ``direct``] columns, total Δloss, direct Δloss or None)."""
    loaded = data.load_model(checkpoint)
    with data.MODEL_LOCK:
        fx = effects(loaded, torch.tensor(ids), _clamp(held), span=span, run=data.run_of(key), direct=last_layer)
    table = pd.DataFrame({"total": np.r_[np.nan, fx.delta_logp("total")[0].numpy()]})
    if fx.direct is not None:
        table["direct"] = np.r_[np.nan, fx.delta_logp("direct")[0].numpy()]
    return table, fx.delta_loss("total"), fx.delta_loss("direct") if fx.direct is not None else None


@st.cache_data(max_entries=32, show_spinner="Generating…")
def generations(
    checkpoint: str, mtime: float, key: data.RunRef, prompt: str, n: int, held: Held, temperature: float, seed: int
) -> tuple[str, str]:
    """The same prompt continued by ``n`` sampled tokens, without and with ``held`` held at every step."""
    loaded = data.load_model(checkpoint)
    ids = loaded.tokenizer.encode(prompt)
    with data.MODEL_LOCK:
        plain = generate(loaded, ids, n, temperature=temperature, seed=seed)
        clamped = generate(loaded, ids, n, clamp=_clamp(held), temperature=temperature, seed=seed, run=data.run_of(key))
    return loaded.tokenizer.decode(plain), loaded.tokenizer.decode(clamped)


def checkpoint_key(path: Path) -> tuple[str, float]:
    """(resolved path, mtime): the cache key of a checkpoint."""
    p = path.resolve()
    return str(p), p.stat().st_mtime
