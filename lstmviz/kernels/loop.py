"""Step loops: run one LSTM or GRU layer step by step and keep every gate, at the cost of the plain forward.

Same FLOPs as the plain forward, so this wins when the plain forward is GEMM-bound (many streams on a CPU); the
recorder's ``"replay"`` strategy (:func:`lstmviz.cells.lstm_replay`) wins when it is latency-bound. Every result
satisfies :mod:`lstmviz.cells`' equations to float rounding (and, with the compiled update, the 3e-7 of
:mod:`.compiled`'s tanh).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .linear import Linear, doubled_rows, stacked_lstm_weights, tanh_from_sigmoid_
from .pointwise import compiled_pointwise, lstm_pointwise_torch
from .pool import Pool, pooled_buffer, pooled_linear

if TYPE_CHECKING:
    from ..cells import LayerParams


def _input_blocks(x: Tensor, proj: Linear, block: int) -> Iterator[Tensor]:
    """Every step's input projection ``proj(x_t)``, ``block`` steps at a time, as ``[B, G·H]`` per step.

    x ``[B, T, I]``. One packed GEMM per block: the block's projection (a few MB) stays in cache for the steps
    that read it, and its allocation is recycled, where one ``[T, B, G·H]`` GEMM for the whole chunk pays a page
    fault per 4 KiB of fresh output and is slower (bench/record.py).
    """
    for k in range(0, x.shape[1], block):
        yield from proj(x[:, k : k + block].transpose(0, 1)).unbind(0)


def _numpy_out(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], np.ndarray]:
    return lambda x: f(x).numpy()


def _as_is(t: Tensor) -> Tensor:
    return t


def lstm_loop(
    x: Tensor, h0: Tensor, c0: Tensor, p: LayerParams, pool: Pool | None = None, block: int = 16
) -> dict[str, Tensor]:
    """Run one LSTM layer step by step, keeping every gate. x ``[B, T, I]`` → dict of ``[B, T, ·]``.

    Returns ``{"i","f","g","o","c","h"[,"hp"]}``; h is ``[B, T, P]``, the others ``[B, T, H]``. With ``pool``,
    the returned tensors are views of buffers that the next call with the same pool overwrites.

    Each step is one packed GEMM of ``[x_t | h_{t-1}]`` against ``[W_ih | W_hh]`` with the bias fused in, then
    the gates and the cell update on ``[B, H]``: in float32 on a CPU one compiled loop (:mod:`.compiled`),
    otherwise a sigmoid and seven torch ops (:func:`.pointwise.lstm_pointwise_torch`). That is the work torch's
    fused CPU kernel does. The g rows of the weights are doubled once, so one sigmoid covers all four gates
    (tanh(x) = 2σ(2x) − 1, see :mod:`.linear`).

    The GEMM's input rows ``[x_t | h_{t-1}]`` (``[B, I+P]``) live in a buffer of ``block + 1`` steps: x is copied
    in a block at a time, and each step writes h_t into the next row. The buffer stays in cache, where one row
    per step of the chunk would be more fresh memory for a recording's first chunk, and an extra pass of
    ``[T, B, I]`` through memory for every chunk.
    """
    B, T, n_in = x.shape
    H, P = p.w_hh.shape[0] // 4, h0.shape[-1]
    K = max(1, min(T, block))
    stacked = pooled_linear(
        pool,
        "stacked",
        lambda: stacked_lstm_weights(p.w_ih, p.w_hh, p.b_ih, p.b_hh),
        B,
        (p.w_ih, p.w_hh, p.b_ih, p.b_hh),
    )
    gates = pooled_buffer(pool, "gates", (T, B, 4 * H), x)
    cs = pooled_buffer(pool, "c", (T, B, H), x)
    hps = pooled_buffer(pool, "hp", (T, B, H), x) if p.w_hr is not None else None
    hs = pooled_buffer(pool, "h", (T, B, P), x)  # contiguous, as torch's own output is
    xh = pooled_buffer(pool, "xh", (K + 1, B, n_in + P), x)  # row j: [x_t | h_{t-1}] for step t = k + j of a block
    xh[0, :, n_in:].copy_(h0)
    compiled = compiled_pointwise(x)
    gemm = stacked.rows()
    if compiled is None:
        pointwise, as_arg, c_prev = lstm_pointwise_torch, _as_is, c0
    else:
        pointwise, gemm, as_arg, c_prev = compiled, _numpy_out(gemm), Tensor.numpy, c0.detach().contiguous().numpy()
    # Each step writes o ⊙ tanh(c) to `h_out[t]` and to a copy: h_t into the next input row, or (with a
    # projection) the pre-projection value twice, projected below.
    h_out = hs if hps is None else hps
    g_v, c_v, out_v, next_h = (as_arg(v) for v in (gates, cs, h_out, xh[1:, :, n_in:]))
    rows = xh.unbind(0)
    for k in range(0, T, K):
        n = min(K, T - k)
        if k:
            xh[0, :, n_in:].copy_(xh[K, :, n_in:])  # h of the block before's last step
        xh[:n, :, :n_in].copy_(x[:, k : k + n].transpose(0, 1))
        for j in range(n):
            t = k + j
            pointwise(gemm(rows[j]), c_prev, g_v[t], c_v[t], out_v[t], next_h[j] if hps is None else out_v[t])
            if hps is not None:
                xh[j + 1, :, n_in:].copy_(torch.mm(hps[t], p.w_hr.t(), out=hs[t]))
            c_prev = c_v[t]
    i, f, g, o = gates.transpose(0, 1).chunk(4, dim=2)
    out = {"i": i, "f": f, "g": g, "o": o, "c": cs.transpose(0, 1), "h": hs.transpose(0, 1)}
    if hps is not None:
        out["hp"] = hps.transpose(0, 1)
    return out


def gru_loop(x: Tensor, h0: Tensor, p: LayerParams, pool: Pool | None = None, block: int = 16) -> dict[str, Tensor]:
    """Run one GRU layer step by step, keeping every gate. x ``[B, T, I]`` → ``{"r","z","n","h"}``.

    A blocked input projection (:func:`_input_blocks`) plus one packed GEMM per step. The n rows of both weight
    matrices are doubled once so that tanh is taken as 2σ(2x) − 1 (see :mod:`.linear`).
    """
    B, T, _ = x.shape
    H = p.w_hh.shape[0] // 3
    n_rows = slice(2 * H, 3 * H)
    sources = (p.w_ih, p.w_hh, p.b_ih, p.b_hh)
    ih = pooled_linear(
        pool, "ih", lambda: (doubled_rows(p.w_ih, n_rows), doubled_rows(p.b_ih, n_rows)), B * min(block, T), sources
    )
    hh = pooled_linear(pool, "hh", lambda: (doubled_rows(p.w_hh, n_rows), doubled_rows(p.b_hh, n_rows)), B, sources)
    gates = pooled_buffer(pool, "gates", (T, B, 3 * H), x)
    hs = pooled_buffer(pool, "h", (T, B, H), x)
    h = h0
    for gi_t, gt, ht in zip(_input_blocks(x, ih, block), gates.unbind(0), hs.unbind(0), strict=True):
        gh = hh(h)  # (B, 3H)
        r, z, n = gt.unsafe_chunk(3, 1)
        torch.add(gi_t[:, : 2 * H], gh[:, : 2 * H], out=gt[:, : 2 * H]).sigmoid_()
        tanh_from_sigmoid_(torch.addcmul(gi_t[:, 2 * H :], r, gh[:, 2 * H :], out=n).sigmoid_())
        torch.sub(h, n, out=ht).mul_(z).add_(n)  # h = n + z ⊙ (h₋₁ − n)
        h = ht
    r, z, n = gates.transpose(0, 1).chunk(3, dim=2)
    return {"r": r, "z": z, "n": n, "h": hs.transpose(0, 1)}
