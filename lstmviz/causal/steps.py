r"""One layer and direction of a recurrent module, run with some of its state held.

The steps outside the held span are torch's own fused kernel (the ``_VF`` call the module itself makes, one layer
and direction at a time), so they are the module's output. The held span is a step loop over the equations of
:mod:`lstmviz.cells`, with the input projection of the whole span taken in one GEMM and the clamp written at each
step:

* LSTM ``c``: ``c_t ← c_t`` with the held units replaced, *before* the read-out ``h_t = o_t ⊙ tanh(c_t)``, so the
  held cell is what ``h_t`` reads at the same step, and every recorded step satisfies the cell equations;
* LSTM / GRU / RNN ``h``: ``h_t`` with the held units replaced (after the projection, when proj_size > 0), which
  is what the next step and the layer above see.

``cells.lstm_cell`` is the reference for these equations but not the loop's body: it has no place for a write
between ``c_t`` and its read-out, and it re-packs its weights on every call (it is built for autograd unrolls).

With ``direct=True`` the clamp reaches only this layer's output, never the state carried to the next step: the
*direct* effect of the unit through whatever reads the module's output (for the last layer, the decoder).

Every tensor is batch-first: x ``[B, T, I]``, h ``[B, T, P]``, c ``[B, T, H]``, states ``[B, P]`` / ``[B, H]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import _VF, Tensor

from .. import cells
from .clamp import LayerHold


@dataclass
class Track:
    """One layer and direction's run: its output h ``[B, T, P]``, final states h_n ``[B, P]`` and c_n ``[B, H]``
    (LSTM, else None), and the other activations it was asked to keep (``c``, gates; each ``[B, T, H]``)."""

    h: Tensor
    h_n: Tensor
    c_n: Tensor | None
    acts: dict[str, Tensor]


def kernel(cell: str, nonlinearity: str, p: cells.LayerParams, x: Tensor, h0: Tensor, c0: Tensor | None):
    """torch's fused kernel for one layer and direction: ``(out [B, T, P], h_T [B, P], c_T [B, H] or None)``."""
    weights = [w for w in (p.w_ih, p.w_hh, p.b_ih, p.b_hh, p.w_hr) if w is not None]
    bias = p.b_ih is not None
    if cell == "LSTM":
        out, h_n, c_n = _VF.lstm(x, (h0[None], c0[None]), weights, bias, 1, 0.0, False, False, True)
        return out, h_n[0], c_n[0]
    fn = _VF.gru if cell == "GRU" else _VF.rnn_tanh if nonlinearity == "tanh" else _VF.rnn_relu
    out, h_n = fn(x, h0[None], weights, bias, 1, 0.0, False, False, True)
    return out, h_n[0], None


def lstm_held(x: Tensor, h: Tensor, c: Tensor, p: cells.LayerParams, hold: LayerHold):
    """Step an LSTM layer over x ``[B, S, I]`` from (h ``[B, P]``, c ``[B, H]``), holding ``hold`` at every step.

    Returns (h ``[B, S, P]``, c ``[B, S, H]``, h_S, c_S).
    """
    gi = F.linear(x, p.w_ih, p.b_ih)  # (B, S, 4H)
    hs, cs = [], []
    for t in range(x.shape[1]):
        i, f, g, o = (gi[:, t] + F.linear(h, p.w_hh, p.b_hh)).chunk(4, dim=1)  # each (B, H)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        if hold.c is not None:
            c = hold.c.write(c)
        h = o.sigmoid() * c.tanh()
        if p.w_hr is not None:
            h = F.linear(h, p.w_hr)  # (B, P)
        if hold.h is not None:
            h = hold.h.write(h)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, 1), torch.stack(cs, 1), h, c


def gru_rnn_held(cell: str, nonlinearity: str, x: Tensor, h: Tensor, p: cells.LayerParams, hold: LayerHold):
    """Step a GRU or RNN layer over x ``[B, S, I]`` from h ``[B, H]``, holding ``hold.h``. → (h ``[B, S, H]``, h_S)."""
    gi = F.linear(x, p.w_ih, p.b_ih)  # (B, S, G·H)
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    hs = []
    for t in range(x.shape[1]):
        gh = F.linear(h, p.w_hh, p.b_hh)  # (B, G·H)
        if cell == "GRU":
            i_r, i_z, i_n = gi[:, t].chunk(3, dim=1)
            h_r, h_z, h_n = gh.chunk(3, dim=1)
            r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
            n = (i_n + r * h_n).tanh()
            h = n + z * (h - n)  # (1 − z) ⊙ n + z ⊙ h₋₁
        else:
            h = act(gi[:, t] + gh)
        if hold.h is not None:
            h = hold.h.write(h)
        hs.append(h)
    return torch.stack(hs, 1), h


def run_direction(
    cell: str,
    nonlinearity: str,
    p: cells.LayerParams,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    hold: LayerHold | None,
    span: tuple[int, int],
    *,
    direct: bool = False,
    keep: frozenset[str] = frozenset(),
) -> Track:
    """Run one layer and direction over x ``[B, T, I]`` (already reversed for ``rev``), holding ``hold`` over
    steps ``[a, b)`` of this time axis. ``keep``: the kinds wanted besides h (``c``, gates), rebuilt for the cache.
    """
    a, b = span
    if hold is None or b <= a:
        out, h_n, c_n = kernel(cell, nonlinearity, p, x, h0, c0)
        return Track(out, h_n, c_n, _only(_rebuilt(cell, p, x, out, h0, c0, keep), keep))
    if direct:
        return _direct(cell, nonlinearity, p, x, h0, c0, hold, span, keep)
    parts = []
    h, c = h0, c0
    if a > 0:
        out, h, c = kernel(cell, nonlinearity, p, x[:, :a], h, c)
        parts.append(out)
    if cell == "LSTM":
        out, c_span, h, c = lstm_held(x[:, a:b], h, c, p, hold)
    else:
        (out, h), c_span = gru_rnn_held(cell, nonlinearity, x[:, a:b], h, p, hold), None
    parts.append(out)
    if b < x.shape[1]:
        out, h, c = kernel(cell, nonlinearity, p, x[:, b:], h, c)
        parts.append(out)
    out = torch.cat(parts, 1)
    acts = _rebuilt(cell, p, x, out, h0, c0, keep)
    if c_span is not None and "c" in acts:
        acts["c"] = _cell_around(acts, c_span, span)
        if "hp" in acts:
            acts["hp"] = acts["o"] * acts["c"].tanh()
    return Track(out, h, c, _only(acts, keep))


def _only(acts: dict[str, Tensor], keep: frozenset[str]) -> dict[str, Tensor]:
    return {k: v for k, v in acts.items() if k in keep}


def _direct(cell, nonlinearity, p, x, h0, c0, hold: LayerHold, span, keep: frozenset[str]) -> Track:
    """The plain run, with the clamp written into the output over the span and nowhere else."""
    a, b = span
    out, h_n, c_n = kernel(cell, nonlinearity, p, x, h0, c0)
    acts = _rebuilt(cell, p, x, out, h0, c0, keep | ({"o", "c"} if hold.c is not None else set()))
    h = out.clone()
    if hold.c is not None:
        acts["c"] = acts["c"].clone()
        acts["c"][:, a:b] = hold.c.write(acts["c"][:, a:b])
        hp = acts["o"][:, a:b] * acts["c"][:, a:b].tanh()  # the held cell's read-out, at its own step only
        h[:, a:b] = hp if p.w_hr is None else F.linear(hp, p.w_hr)
        if "hp" in acts:
            acts["hp"] = acts["hp"].clone()
            acts["hp"][:, a:b] = hp
    if hold.h is not None:
        h[:, a:b] = hold.h.write(h[:, a:b])
    return Track(h, h_n, c_n, _only(acts, keep))


@torch.no_grad()
def _rebuilt(
    cell: str,
    p: cells.LayerParams,
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    keep: frozenset[str] | set[str],
) -> dict[str, Tensor]:
    """The kinds in ``keep`` (gates, the LSTM's c) of a run, from its input x and output h.

    The gates at every step are functions of ``(x_t, h_{t-1})``, and h holds the clamp, so
    :func:`cells.lstm_replay` / :func:`cells.gru_replay` over the whole run give them exactly, held span included.
    """
    if cell == "RNN" or not set(keep) - {"h"}:
        return {}
    if cell == "LSTM":
        return cells.lstm_replay(x, h.detach(), h0.detach(), c0.detach(), p)
    return cells.gru_replay(x, h.detach(), h0.detach(), p)


@torch.no_grad()
def _cell_around(acts: dict[str, Tensor], c_span: Tensor, span: tuple[int, int]) -> Tensor:
    """c ``[B, T, H]`` around a held span: the replay's before it, the loop's inside it, and after it the linear
    recurrence ``c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t`` restarted from the span's last c (the replay's c never saw the
    clamp)."""
    a, b = span
    f, i, g = acts["f"][:, b:], acts["i"][:, b:], acts["g"][:, b:]
    after = cells.linear_scan(f, i * g, c_span[:, -1].detach()) if f.shape[1] else f
    return torch.cat([acts["c"][:, :a], c_span.detach(), after], 1)
