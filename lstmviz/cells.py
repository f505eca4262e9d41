"""Exact per-layer cell math for PyTorch's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``: the equations, one step of each
cell, and the replay that rebuilds every gate of a layer from the outputs torch's own kernel produced.

Shape letters: ``B`` batch, ``T`` time, ``I`` layer input size, ``H`` hidden size, ``P`` projection size
(``P = H`` without projection). Every tensor here is batch-first, ``[B, T, ·]``. In the equations x is the
layer's input at step t, h₋₁ and c₋₁ the states at step t − 1 (the initial state h0, c0 at the first step), σ the
sigmoid and ⊙ the elementwise product.

LSTM. Fused weights are stacked ``(W_ii|W_if|W_ig|W_io)``: ``weight_ih`` is ``[4H, I]``, ``weight_hh``
``[4H, P]``, the biases ``[4H]``::

{LSTM}

With ``proj_size > 0`` the last line is replaced by ``{projection}``,
with ``weight_hr`` ``[P, H]``: h is then ``[B, T, P]``, and the pre-projection value is recorded as ``hp``.

GRU. Fused weights are stacked ``(W_ir|W_iz|W_in)``, ``[3H, ·]``::

{GRU}

{gru_z}

RNN (relu for tanh with ``nonlinearity="relu"``)::

{RNN}

The equations are :data:`lstmviz.names.EQUATIONS`, written once there and filled into this docstring.

Two ways to get the gates, both exact to float rounding:

* :func:`lstm_replay` / :func:`gru_replay` take the hidden states that torch's fused kernel already produced and
  rebuild every gate in one batched GEMM over all steps (h₋₁ is known for every t), then c by the linear
  recurrence :func:`linear_scan`. Cheap when the fused kernel is latency-bound (batch 1, GPU).
* :func:`lstmviz.kernels.loop.lstm_loop` / :func:`~lstmviz.kernels.loop.gru_loop` run the recurrence themselves
  in a tight loop that keeps the gates as it goes, at the FLOPs of the plain forward: they win when the plain
  forward is GEMM-bound (many streams on a CPU).

:func:`lstm_cell`, :func:`gru_cell` and :func:`rnn_cell` are one differentiable step of each, written as the
equations read, for the gradient analysis that unrolls a layer step by step.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import names as _names
from .kernels.linear import Linear, stacked_lstm_weights, tanh_from_sigmoid_

if __doc__:  # None under python -OO
    __doc__ = __doc__.format(
        **{cell: textwrap.indent("\n".join(_names.equations(cell)), "    ") for cell in _names.CELLS},
        projection="; ".join(f"{k} = {v}" for k, v in _names.PROJECTION.items()),
        gru_z=textwrap.fill(_names.GRU_Z_CAVEAT, 116),
    )

CELL_TYPES = {nn.LSTM: "LSTM", nn.GRU: "GRU", nn.RNN: "RNN"}
"""torch's recurrent module classes → their cell names (:data:`lstmviz.names.CELLS`)."""


@dataclass(frozen=True)
class LayerParams:
    """The weights of one layer and direction. w_ih ``[G·H, I]``, w_hh ``[G·H, P]``, w_hr ``[P, H]``; G = 4 for an
    LSTM, 3 for a GRU, 1 for an RNN, stacked in :data:`lstmviz.names.WEIGHT_BLOCKS` order."""

    w_ih: Tensor
    w_hh: Tensor
    b_ih: Tensor | None
    b_hh: Tensor | None
    w_hr: Tensor | None = None


def cell_type(module: nn.Module) -> str | None:
    """``"LSTM" | "GRU" | "RNN"`` for torch's recurrent modules (and subclasses), else None."""
    for cls, name in CELL_TYPES.items():
        if isinstance(module, cls):
            return name
    return None


def layer_params(module: nn.RNNBase, layer: int, reverse: bool) -> LayerParams:
    """The parameters of ``layer`` (and direction) of a torch recurrent module."""
    sfx = _names.weight_suffix(layer, reverse)

    def get(kind: str) -> Tensor | None:
        return getattr(module, f"{kind}{sfx}", None)

    return LayerParams(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr"))


def _gemm_in(x: Tensor, p: LayerParams) -> Tensor:
    return Linear(p.w_ih, p.b_ih, x.numel() // x.shape[-1])(x)


def _gemm_hh(h: Tensor, p: LayerParams) -> Tensor:
    return Linear(p.w_hh, p.b_hh, h.numel() // h.shape[-1])(h)


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, p: LayerParams) -> tuple[Tensor, Tensor]:
    """One differentiable LSTM step. x ``[B, I]``, h ``[B, P]``, c ``[B, H]`` → (h, c)."""
    i, f, g, o = (_gemm_in(x, p) + _gemm_hh(h, p)).chunk(4, dim=1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    if p.w_hr is not None:
        h = h @ p.w_hr.t()
    return h, c


def gru_cell(x: Tensor, h: Tensor, p: LayerParams) -> Tensor:
    """One differentiable GRU step. x ``[B, I]``, h ``[B, H]`` → h."""
    i_r, i_z, i_n = _gemm_in(x, p).chunk(3, dim=1)
    h_r, h_z, h_n = _gemm_hh(h, p).chunk(3, dim=1)
    r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return (1 - z) * n + z * h


def rnn_cell(x: Tensor, h: Tensor, p: LayerParams, nonlinearity: str = "tanh") -> Tensor:
    """One differentiable Elman RNN step. x ``[B, I]``, h ``[B, H]`` → h."""
    pre = _gemm_in(x, p) + _gemm_hh(h, p)
    return pre.tanh() if nonlinearity == "tanh" else pre.relu()


def shift_prev(h: Tensor, h0: Tensor) -> Tensor:
    """``h_{t-1}`` for every t: ``[h0, h_0, …, h_{T-2}]``. h ``[B, T, P]``, h0 ``[B, P]`` → ``[B, T, P]``."""
    return torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)


def linear_scan(a: Tensor, b: Tensor, s0: Tensor, chunk: int | None = None) -> Tensor:
    """Solve ``s_t = a_t ⊙ s_{t-1} + b_t`` for all t, with ``s_{-1} = s0``. a, b ``[B, T, H]``, s0 ``[B, H]``.

    A chunked scan: a sequential pass inside chunks of length L (all chunks at once), a pass over the T/L chunk
    ends, then one vectorised fix-up. About 2√T small steps instead of T, with no division (so no blow-up when
    forget gates are tiny, as a log-space cumulative product would have).
    """
    B, T, H = a.shape
    if T == 0:
        return b.clone()
    L = chunk or max(1, int(T**0.5))
    n = -(-T // L)
    pad = n * L - T
    if pad:
        a = torch.cat([a, a.new_ones(B, pad, H)], dim=1)
        b = torch.cat([b, b.new_zeros(B, pad, H)], dim=1)
    a = a.reshape(B, n, L, H)
    b = b.reshape(B, n, L, H)
    local = torch.empty_like(b)  # scan inside each chunk from a zero start  # (B, n, L, H)
    decay = torch.empty_like(a)  # product of a within the chunk up to j  # (B, n, L, H)
    local[:, :, 0] = b[:, :, 0]
    decay[:, :, 0] = a[:, :, 0]
    for j in range(1, L):  # torch.cumprod over this strided axis is far slower than these L small products
        torch.addcmul(b[:, :, j], a[:, :, j], local[:, :, j - 1], out=local[:, :, j])
        torch.mul(a[:, :, j], decay[:, :, j - 1], out=decay[:, :, j])
    starts = torch.empty(B, n, H, dtype=b.dtype, device=b.device)  # s just before each chunk
    s = s0
    for k in range(n):
        starts[:, k] = s
        s = torch.addcmul(local[:, k, -1], decay[:, k, -1], s)
    out = torch.addcmul(local, decay, starts.unsqueeze(2))
    return out.reshape(B, n * L, H)[:, :T]


def lstm_replay(x: Tensor, h: Tensor, h0: Tensor, c0: Tensor, p: LayerParams) -> dict[str, Tensor]:
    """Rebuild i, f, g, o, c (and hp) of one LSTM layer from its known outputs.

    x ``[B, T, I]`` layer input; h ``[B, T, P]`` the layer's output from torch's kernel; h0 ``[B, P]``;
    c0 ``[B, H]``. Returns ``{"i","f","g","o","c"[,"hp"]}`` each ``[B, T, H]``.

    One GEMM of ``[x_t | h_{t-1}]`` against ``[W_ih | W_hh]`` for every step at once, with the bias and the
    sigmoid fused into it (g as 2σ(2x) − 1, see :mod:`lstmviz.kernels.linear`), then c by :func:`linear_scan`.
    """
    B, T, n_in = x.shape
    xh = x.new_empty(B, T, n_in + h.shape[2])  # [x_t | h_{t-1}]
    xh[..., :n_in] = x
    xh[:, 0, n_in:] = h0
    xh[:, 1:, n_in:] = h[:, :-1]
    z = Linear(*stacked_lstm_weights(p.w_ih, p.w_hh, p.b_ih, p.b_hh), B * T)(xh, sigmoid=True)  # (B, T, 4H)
    i, f, g, o = z.chunk(4, dim=2)
    tanh_from_sigmoid_(g)
    c = linear_scan(f, i * g, c0)
    out = {"i": i, "f": f, "g": g, "o": o, "c": c}
    if p.w_hr is not None:
        out["hp"] = o * c.tanh()
    return out


def gru_replay(x: Tensor, h: Tensor, h0: Tensor, p: LayerParams) -> dict[str, Tensor]:
    """Rebuild r, z, n of one GRU layer. x ``[B, T, I]``, h ``[B, T, H]``, h0 ``[B, H]`` → each ``[B, T, H]``."""
    gi = _gemm_in(x, p)  # (B, T, 3H)
    gh = _gemm_hh(shift_prev(h, h0), p)  # (B, T, 3H)
    H = gi.shape[2] // 3
    rz = gi[..., : 2 * H].add_(gh[..., : 2 * H]).sigmoid_()
    r, z = rz.chunk(2, dim=2)
    n = gi[..., 2 * H :].addcmul_(r, gh[..., 2 * H :]).tanh_()
    return {"r": r, "z": z, "n": n}
