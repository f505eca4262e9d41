"""The numbers behind the cell walkthrough: one unit's gates and states over a stretch of text.

For a unit of one layer (module, layer, direction) this gathers every recorded kind (i f g o c h, r z n h, or h),
and the previous step's h and c. With the recurrent weights it also splits the candidate's pre-activation into the
input's part and the recurrent part, inverting the recorded tanh:

    LSTM  W_ig·x + b_ig = atanh(g) − (W_hg·h₋₁ + b_hg)
    GRU   W_in·x + b_in = atanh(n) − r ⊙ (W_hn·h₋₁ + b_hn)
    RNN   W_ih·x + b_ih = atanh(h) − (W_hh·h₋₁ + b_hh)

Values are stored as float16, so near-saturated candidates (|g| ≈ 1) give an imprecise input part; it is clipped.
h₋₁ is the recorded h one step back in reading order (the next position for a reverse direction); at the very
start of the run, and where recording streams were joined, the true previous state may differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import names as _names
from ..store import Run


def layer_group(run: Run, name: str) -> dict[str, str]:
    """kind → activation name for every kind recorded in the same module, layer and direction as ``name``."""
    n = _names.parse(name)
    out = {}
    for other in run.names:
        o = _names.parse(other)
        if (o.module, o.layer, o.dir, o.grad) == (n.module, n.layer, n.dir, False):
            out[o.kind] = other
    return out


def tapped(run: Run, name: str) -> bool:
    """Is ``name`` from a custom cell recorded with ``lstmviz.tap``? Its equations are the user's, unknown here."""
    module = _names.parse(name).module
    entries = run.manifest.get("model", {}).get("modules", [])
    return any(m.get("path") == module and m.get("cell") == "custom" for m in entries)


def cell_type(kinds: set[str] | dict) -> str:
    """``"LSTM"``, ``"GRU"`` or ``"RNN"`` from the kinds recorded for a layer."""
    return _names.cell_of_kinds(kinds)


def unit_trace(
    run: Run,
    name: str,
    unit: int,
    start: int,
    stop: int,
    w_hh: np.ndarray | None = None,
    b_hh: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per step of [start, stop): every kind of the unit's layer, h₋₁, c₋₁ (LSTM) and x (input part).

    w_hh: float ``[blocks·H, P]`` and b_hh ``[blocks·H]``, the layer's recurrent weights (PyTorch's gate order);
    without them the x column is NaN. Without a recorded h (a tapped cell need not tap one), h₋₁ is NaN.
    """
    group = layer_group(run, name)
    cell = cell_type(group)
    rev = _names.parse(name).dir == "rev"
    lo, hi = max(start - 1, 0), min(stop + 1, run.n_tokens)
    cols = {kind: run.activations(n, [unit], lo, hi)[:, 0] for kind, n in group.items() if kind != "hp"}
    h_all = run.activations(group["h"], None, lo, hi) if "h" in group else np.full((hi - lo, 0), np.nan)  # (·, P)
    shift = 1 if rev else -1
    rows = np.arange(start, stop) - lo
    prev = np.clip(rows + shift, 0, hi - lo - 1)
    edge = (rows + shift < 0) | (rows + shift >= hi - lo)  # before the first step: the zero state
    table = pd.DataFrame({kind: v[rows] for kind, v in cols.items()})
    h_prev = np.where(edge[:, None], 0.0, h_all[prev])  # (T, P)
    table.insert(0, "h₋₁", h_prev[:, unit] if h_prev.shape[1] > unit else np.nan)
    if "c" in cols:
        table.insert(1, "c₋₁", np.where(edge, 0.0, cols["c"][prev]))
    table["x"] = np.nan
    if w_hh is not None and b_hh is not None and h_prev.shape[1]:
        kind = _names.CANDIDATE_KIND[cell]
        block, blocks = _names.WEIGHT_BLOCKS[cell].index(kind), len(_names.WEIGHT_BLOCKS[cell])
        H = len(b_hh) // blocks
        r = block * H + unit
        recurrent = h_prev @ w_hh[r] + b_hh[r]  # (T,)
        if cell == "GRU":
            recurrent = recurrent * table["r"].to_numpy()
        table["x"] = np.arctanh(np.clip(table[kind].to_numpy(np.float64), -0.999, 0.999)) - recurrent
    table.insert(0, "idx", np.arange(start, stop))
    return table


def recurrent_weights(module, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(W_hh ``[blocks·H, P]``, b_hh) of the layer of ``name`` in a loaded model, or None when not found.

    A step cell (nn.LSTMCell …) has one layer, and its weights carry no layer suffix.
    """
    import torch.nn as nn

    n = _names.parse(name)
    rnn = dict(module.named_modules()).get(n.module)
    suffix = "" if isinstance(rnn, nn.RNNCellBase) else _names.weight_suffix(n.layer, n.dir == "rev")
    w, b = getattr(rnn, f"weight_hh{suffix}", None), getattr(rnn, f"bias_hh{suffix}", None)
    if w is None:
        return None
    w = w.detach().float().cpu().numpy()
    return w, (np.zeros(len(w), np.float32) if b is None else b.detach().float().cpu().numpy())
