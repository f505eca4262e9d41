"""Packed GEMMs, and the weights they are given so that one sigmoid computes every gate.

torch's CPU ``tanh`` runs several times slower than its ``sigmoid``, so a tanh of a pre-activation is taken as
tanh(x) = 2σ(2x) − 1: the rows of the weights (and bias) that feed a tanh are doubled once, one sigmoid covers
all of a step's gates, and :func:`tanh_from_sigmoid_` turns the candidate's block back into a tanh. That costs
about 1e-7 absolute in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _packable(w: Tensor) -> bool:
    return (
        w.device.type == "cpu"
        and w.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


class Linear:
    """``x @ w^T + b`` over ``[…, in]`` rows; on a CPU in float32 through oneDNN with weights pre-packed for ``rows``.

    oneDNN's packed GEMM is faster than the default ``F.linear`` at these shapes (bench/record.py), and it is
    what torch's own fused CPU LSTM uses, so recording keeps pace with the plain forward.
    """

    def __init__(self, w: Tensor, b: Tensor | None, rows: int):
        self.w, self.b, self.packed = w, b, None
        if _packable(w):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), rows)
            except RuntimeError:
                self.packed = None

    def __call__(self, x: Tensor, sigmoid: bool = False) -> Tensor:
        """``x @ w^T + b``, then σ if asked (fused into the GEMM on the packed path); x ``[…, in]``."""
        if self.packed is None:
            y = F.linear(x, self.w, self.b)
            return y.sigmoid_() if sigmoid else y
        flat = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
        y = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.b, "sigmoid" if sigmoid else "none", [], "")
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], y.shape[-1])

    def rows(self) -> Callable[[Tensor], Tensor]:
        """The bare GEMM ``[rows, in] → [rows, out]``, with no Python between a step loop and the kernel."""
        if self.packed is None:
            return functools.partial(F.linear, weight=self.w, bias=self.b)
        op, packed, b = torch.ops.mkldnn._linear_pointwise.default, self.packed, self.b
        return lambda x: op(x, packed, b, "none", [], "")


def doubled_rows(w: Tensor | None, rows: slice) -> Tensor | None:
    """A copy of ``w`` with ``rows`` multiplied by 2 (the rows that feed a tanh; see the module docstring)."""
    if w is None:
        return None
    w = w.detach().clone()
    w[rows] *= 2
    return w


def stacked_lstm_weights(
    w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """``[W_ih | W_hh]`` ``[4H, I+P]`` and ``b_ih + b_hh`` ``[4H]``, with the g rows doubled (tanh(x) = 2σ(2x) − 1).

    One GEMM of ``[x_t | h_{t-1}]`` against these gives all four gates' pre-activations, bias included.
    """
    g_rows = slice(w_hh.shape[0] // 2, 3 * w_hh.shape[0] // 4)
    b = b_hh if b_ih is None else b_ih if b_hh is None else b_ih + b_hh
    w = torch.cat([w_ih.detach(), w_hh.detach()], dim=1)  # a fresh tensor, so doubled in place
    w[g_rows] *= 2
    return w, doubled_rows(b, g_rows)


def tanh_from_sigmoid_(s: Tensor) -> Tensor:
    """In place: σ(2x) → tanh(x) = 2σ(2x) − 1, as one kernel (−1 + 2·s)."""
    return torch.add(s.new_full((), -1.0), s, alpha=2, out=s)
