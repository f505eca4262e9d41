r"""Exact per-layer cell math for PyTorch's ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``.

Shape letters: ``B`` batch, ``T`` time, ``I`` layer input size, ``H`` hidden size, ``P`` projection size
(``P = H`` without projection). Every tensor here is batch-first, ``[B, T, ·]``.

LSTM (fused weights are stacked ``(W_ii|W_if|W_ig|W_io)``, biases likewise)::

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
    f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
    o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)                    (with proj_size > 0: h_t = W_hr (o_t ⊙ tanh(c_t)), so h is [B, T, P])

GRU (``(W_ir|W_iz|W_in)``). PyTorch's update gate is the *opposite* of Chung et al. (2014) and of Karpathy et
al. (2015): z close to 1 keeps the old state::

    r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
    h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

RNN: ``h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` (or relu).

Two ways to get the gates, both exact to float rounding (and, in the float32 step loop, the 3e-7 of
:mod:`lstmviz.fused`'s tanh):

* :func:`lstm_replay` / :func:`gru_replay` take the hidden states that torch's fused kernel already produced and
  rebuild every gate in one batched GEMM over all steps (``h_{t-1}`` is known for every t), then c by the linear
  recurrence :func:`linear_scan`. Cheap when the fused kernel is latency-bound (batch 1, GPU).
* :func:`lstm_loop` / :func:`gru_loop` run the recurrence themselves in a tight loop that keeps the gates as it
  goes: for the LSTM one GEMM per step of ``[x_t | h_{t-1}]`` with the bias fused in, then the gates and the cell
  update in one compiled loop (:mod:`lstmviz.fused`); for the GRU a blocked input projection plus one GEMM per
  step. Same FLOPs as the plain forward, so this wins when the plain forward is GEMM-bound (many streams on a
  CPU).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CELL_TYPES = {nn.LSTM: "LSTM", nn.GRU: "GRU", nn.RNN: "RNN"}


@dataclass(frozen=True)
class LayerParams:
    """The weights of one layer and direction. w_ih ``[G·H, I]``, w_hh ``[G·H, P]``, w_hr ``[P, H]``."""

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
    sfx = f"_l{layer}{'_reverse' if reverse else ''}"

    def get(kind: str) -> Tensor | None:
        return getattr(module, f"{kind}{sfx}", None)

    return LayerParams(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr"))


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
    for j in range(1, L):  # torch.cumprod over this strided axis ran 20× slower than these L small products
        torch.addcmul(b[:, :, j], a[:, :, j], local[:, :, j - 1], out=local[:, :, j])
        torch.mul(a[:, :, j], decay[:, :, j - 1], out=decay[:, :, j])
    starts = torch.empty(B, n, H, dtype=b.dtype, device=b.device)  # s just before each chunk
    s = s0
    for k in range(n):
        starts[:, k] = s
        s = torch.addcmul(local[:, k, -1], decay[:, k, -1], s)
    out = torch.addcmul(local, decay, starts.unsqueeze(2))
    return out.reshape(B, n * L, H)[:, :T]


def _packable(w: Tensor) -> bool:
    return (w.device.type == "cpu" and w.dtype == torch.float32 and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class Linear:
    """``x @ w^T + b`` over ``[…, in]`` rows; on a CPU in float32 through oneDNN with weights pre-packed for ``rows``.

    oneDNN's packed GEMM ran about 1.8× faster than the default ``F.linear`` here (bench/record.py), and it is
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


def _gemm_in(x: Tensor, p: LayerParams) -> Tensor:
    return Linear(p.w_ih, p.b_ih, x.numel() // x.shape[-1])(x)


def _gemm_hh(h: Tensor, p: LayerParams) -> Tensor:
    return Linear(p.w_hh, p.b_hh, h.numel() // h.shape[-1])(h)


def _stacked_lstm_weights(p: LayerParams) -> tuple[Tensor, Tensor | None]:
    """``[W_ih | W_hh]`` ``[4H, I+P]`` and ``b_ih + b_hh`` ``[4H]``, with the g rows doubled (tanh(x) = 2σ(2x) − 1)."""
    g_rows = slice(p.w_hh.shape[0] // 2, 3 * p.w_hh.shape[0] // 4)
    b = p.b_hh if p.b_ih is None else p.b_ih if p.b_hh is None else p.b_ih + p.b_hh
    w = torch.cat([p.w_ih.detach(), p.w_hh.detach()], dim=1)  # a fresh tensor, so doubled in place
    w[g_rows] *= 2
    return w, _doubled_rows(b, g_rows)


def lstm_replay(x: Tensor, h: Tensor, h0: Tensor, c0: Tensor, p: LayerParams) -> dict[str, Tensor]:
    """Rebuild i, f, g, o, c (and hp) of one LSTM layer from its known outputs.

    x ``[B, T, I]`` layer input; h ``[B, T, P]`` the layer's output from torch's kernel; h0 ``[B, P]``;
    c0 ``[B, H]``. Returns ``{"i","f","g","o","c"[,"hp"]}`` each ``[B, T, H]``.

    One GEMM of ``[x_t | h_{t-1}]`` against ``[W_ih | W_hh]`` for every step at once, with the bias and the
    sigmoid fused into it (g as 2σ(2x) − 1, see :func:`lstm_loop`), then c by :func:`linear_scan`.
    """
    B, T, n_in = x.shape
    xh = x.new_empty(B, T, n_in + h.shape[2])  # [x_t | h_{t-1}]
    xh[..., :n_in] = x
    xh[:, 0, n_in:] = h0
    xh[:, 1:, n_in:] = h[:, :-1]
    z = Linear(*_stacked_lstm_weights(p), B * T)(xh, sigmoid=True)  # (B, T, 4H)
    i, f, g, o = z.chunk(4, dim=2)
    _tanh_from_sigmoid_(g)
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


def _doubled_rows(w: Tensor | None, rows: slice) -> Tensor | None:
    """A copy of ``w`` with ``rows`` multiplied by 2 (see :func:`lstm_loop`)."""
    if w is None:
        return None
    w = w.detach().clone()
    w[rows] *= 2
    return w


def _tanh_from_sigmoid_(s: Tensor) -> Tensor:
    """In place: σ(2x) → tanh(x) = 2σ(2x) − 1, as one kernel (−1 + 2·s)."""
    return torch.add(s.new_full((), -1.0), s, alpha=2, out=s)


def _o_tanh(o: Tensor, c: Tensor, out: Tensor) -> Tensor:
    """``out = o ⊙ tanh(c)``, as o − 2·o ⊙ σ(−2c): three kernels, and no tanh (see :func:`lstm_loop`)."""
    return torch.addcmul(o, o, torch.mul(c, -2, out=out).sigmoid_(), value=-2, out=out)


class Pool:
    """Buffers and packed weights that a streaming caller keeps from one call of a layer to the next.

    Writing a freshly mapped multi-megabyte buffer costs a page fault per 4 KiB; in a step loop that touches
    ``[B, 4H]`` of new memory per step this was a third of the run time. Re-packing a layer's weights cost a
    few percent more.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}
        self.linears: dict[str, tuple[tuple[Tensor | None, ...], int, Linear]] = {}


def _buffer(pool: Pool | None, key: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape``, taken from ``pool`` where it holds one as long or longer.

    ``shape[0]`` is time: a shorter request (a corpus's last chunk) gets the leading rows of the pooled
    buffer, which are contiguous, instead of fresh memory.

    A fresh CPU buffer is written once here, by all of torch's threads: its first write page-faults every 4 KiB,
    and a step loop would take those faults on one core, step by step, while the other cores wait. For the
    bench/record.py LSTM at 64 streams that cut a recording's first chunk from ~350 to ~290 ms (2 cores; the
    chunks after it take ~200 ms).
    """
    buf = pool.buffers.get(key) if pool is not None else None
    if (buf is None or buf.shape[1:] != shape[1:] or buf.shape[0] < shape[0] or buf.dtype != like.dtype
            or buf.device != like.device):
        buf = torch.empty(shape, dtype=like.dtype, device=like.device)
        if buf.device.type == "cpu":
            buf.zero_()
        if pool is not None:
            pool.buffers[key] = buf
    return buf[: shape[0]]


def _same(a: Tensor | None, b: Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


def _linear(pool: Pool | None, key: str, make: Callable[[], tuple[Tensor, Tensor | None]], rows: int,
            sources: tuple[Tensor | None, ...]) -> Linear:
    """``Linear(*make(), rows)``, reused from ``pool`` while ``sources`` (the raw parameters) hold the same values.

    The values are compared in full, not by version counter: edits through ``.data``, weights recomputed on every
    forward (weight_norm) and inference tensors all escape version counters. The compare reads the weights once,
    well under 1 % of a chunk's time.
    """
    hit = pool.linears.get(key) if pool is not None else None
    if hit is not None and hit[1] == rows and all(_same(a, b) for a, b in zip(hit[0], sources, strict=True)):
        return hit[2]
    lin = Linear(*make(), rows)
    if pool is not None:
        pool.linears[key] = (tuple(None if t is None else t.detach().clone() for t in sources), rows, lin)
    return lin


def _input_blocks(x: Tensor, proj: Linear, block: int) -> Iterator[Tensor]:
    """Every step's input projection ``proj(x_t)``, ``block`` steps at a time, as ``[B, G·H]`` per step.

    x ``[B, T, I]``. One packed GEMM per block: the block's projection (a few MB) stays in cache for the steps
    that read it, and its allocation is recycled, where one ``[T, B, G·H]`` GEMM for the whole chunk paid a page
    fault per 4 KiB of fresh output and took half again as long (bench/record.py).
    """
    for k in range(0, x.shape[1], block):
        yield from proj(x[:, k : k + block].transpose(0, 1)).unbind(0)


def _cell_step(z: Tensor, c_prev: Tensor, gates: Tensor, c: Tensor, h: Tensor, h_copy: Tensor) -> None:
    """One step's gates and cell update in torch ops, with the contract of :func:`lstmviz.fused.lstm_step`."""
    i, f, g, o = torch.sigmoid(z, out=gates).unsafe_chunk(4, 1)
    _tanh_from_sigmoid_(g)
    torch.mul(f, c_prev, out=c).addcmul_(i, g)
    h_copy.copy_(_o_tanh(o, c, out=h))


def _numpy_out(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], np.ndarray]:
    return lambda x: f(x).numpy()


def fused_step(x: Tensor) -> Callable | None:
    """:func:`lstmviz.fused.lstm_step` for float32 CPU input; None for others, with ``LSTMVIZ_NO_JIT=1``, or where
    numba cannot compile it here."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    return _compiled_step()


@functools.cache
def _compiled_step() -> Callable | None:
    """Import and compile (or load from numba's disk cache) the step for both layouts :func:`lstm_loop` passes:
    ``h_copy`` a strided row of the input buffer, or a contiguous array. Any failure means torch ops instead."""
    try:
        from lstmviz.fused import lstm_step

        B, H = 2, 3
        z, gates = np.zeros((B, 4 * H), np.float32), np.empty((B, 4 * H), np.float32)
        c_prev, c, h = (np.zeros((B, H), np.float32) for _ in range(3))
        for h_copy in (np.empty((B, 2 * H), np.float32)[:, H:], np.empty((B, H), np.float32)):
            lstm_step(z, c_prev, gates, c, h, h_copy)
    except Exception:  # no numba, nowhere to cache, or a compile error: torch ops do the same work
        return None
    return lstm_step


def lstm_loop(x: Tensor, h0: Tensor, c0: Tensor, p: LayerParams, pool: Pool | None = None, block: int = 16
              ) -> dict[str, Tensor]:
    """Run one LSTM layer step by step, keeping every gate. x ``[B, T, I]`` → dict of ``[B, T, ·]``.

    Returns ``{"i","f","g","o","c","h"[,"hp"]}``; h is ``[B, T, P]``, the others ``[B, T, H]``. With ``pool``,
    the returned tensors are views of buffers that the next call with the same pool overwrites.

    Each step is one packed GEMM of ``[x_t | h_{t-1}]`` against ``[W_ih | W_hh]`` with the bias fused in, then
    the gates and the cell update on ``[B, H]``: in float32 on a CPU one compiled loop (:mod:`lstmviz.fused`; at
    64 streams it cut the loop's excess over the plain forward by a third to a half in bench/record.py),
    otherwise a sigmoid and seven torch ops. That is the work torch's fused CPU kernel does. torch's CPU ``tanh``
    ran about 5× slower than its ``sigmoid`` here, so g is taken as 2σ(2x) − 1: the g rows of the weights are
    doubled once, so one sigmoid covers all four gates; that costs ~1e-7 absolute in float32.

    The GEMM's input rows ``[x_t | h_{t-1}]`` (``[B, I+P]``) live in a buffer of ``block + 1`` steps: x is copied
    in a block at a time, and each step writes h_t into the next row. The buffer stays in cache, where one row
    per step of the chunk was a third more fresh memory for a recording's first chunk, and an extra pass of
    ``[T, B, I]`` through memory for every chunk (bench/record.py's LSTM at 64 streams, side by side: 1.13 →
    1.04× plain with a fresh Recorder, 1.01 → 0.99× with its buffers warm).
    """
    B, T, n_in = x.shape
    H, P = p.w_hh.shape[0] // 4, h0.shape[-1]
    K = max(1, min(T, block))
    step = _linear(pool, "step", lambda: _stacked_lstm_weights(p), B, (p.w_ih, p.w_hh, p.b_ih, p.b_hh))
    gates = _buffer(pool, "gates", (T, B, 4 * H), x)
    cs = _buffer(pool, "c", (T, B, H), x)
    hps = _buffer(pool, "hp", (T, B, H), x) if p.w_hr is not None else None
    hs = _buffer(pool, "h", (T, B, P), x)  # contiguous, as torch's own output is
    xh = _buffer(pool, "xh", (K + 1, B, n_in + P), x)  # row j: [x_t | h_{t-1}] for step t = k + j of a block
    xh[0, :, n_in:].copy_(h0)
    fused = fused_step(x)
    gemm = step.rows()
    if fused is None:
        cell, as_arg, c_prev = _cell_step, _as_is, c0
    else:
        cell, gemm, as_arg, c_prev = fused, _numpy_out(gemm), Tensor.numpy, c0.detach().contiguous().numpy()
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
            cell(gemm(rows[j]), c_prev, g_v[t], c_v[t], out_v[t], next_h[j] if hps is None else out_v[t])
            if hps is not None:
                xh[j + 1, :, n_in:].copy_(torch.mm(hps[t], p.w_hr.t(), out=hs[t]))
            c_prev = c_v[t]
    i, f, g, o = gates.transpose(0, 1).chunk(4, dim=2)
    out = {"i": i, "f": f, "g": g, "o": o, "c": cs.transpose(0, 1), "h": hs.transpose(0, 1)}
    if hps is not None:
        out["hp"] = hps.transpose(0, 1)
    return out


def _as_is(t: Tensor) -> Tensor:
    return t


def gru_loop(x: Tensor, h0: Tensor, p: LayerParams, pool: Pool | None = None, block: int = 16
             ) -> dict[str, Tensor]:
    """Run one GRU layer step by step, keeping every gate. x ``[B, T, I]`` → ``{"r","z","n","h"}``.

    The n rows of both weight matrices are doubled once so that tanh is taken as 2σ(2x) − 1 (see lstm_loop).
    """
    B, T, _ = x.shape
    H = p.w_hh.shape[0] // 3
    n_rows = slice(2 * H, 3 * H)
    sources = (p.w_ih, p.w_hh, p.b_ih, p.b_hh)
    ih = _linear(pool, "ih", lambda: (_doubled_rows(p.w_ih, n_rows), _doubled_rows(p.b_ih, n_rows)), B * min(block, T),
                 sources)
    hh = _linear(pool, "hh", lambda: (_doubled_rows(p.w_hh, n_rows), _doubled_rows(p.b_hh, n_rows)), B, sources)
    gates = _buffer(pool, "gates", (T, B, 3 * H), x)
    hs = _buffer(pool, "h", (T, B, H), x)
    h = h0
    for gi_t, gt, ht in zip(_input_blocks(x, ih, block), gates.unbind(0), hs.unbind(0), strict=True):
        gh = hh(h)  # (B, 3H)
        r, z, n = gt.unsafe_chunk(3, 1)
        torch.add(gi_t[:, : 2 * H], gh[:, : 2 * H], out=gt[:, : 2 * H]).sigmoid_()
        _tanh_from_sigmoid_(torch.addcmul(gi_t[:, 2 * H :], r, gh[:, 2 * H :], out=n).sigmoid_())
        torch.sub(h, n, out=ht).mul_(z).add_(n)  # h = n + z ⊙ (h₋₁ − n)
        h = ht
    r, z, n = gates.transpose(0, 1).chunk(3, dim=2)
    return {"r": r, "z": z, "n": n, "h": hs.transpose(0, 1)}


def lstm_step(x: Tensor, h: Tensor, c: Tensor, p: LayerParams) -> tuple[Tensor, Tensor]:
    """One differentiable LSTM step. x ``[B, I]``, h ``[B, P]``, c ``[B, H]`` → (h, c)."""
    i, f, g, o = (_gemm_in(x, p) + _gemm_hh(h, p)).chunk(4, dim=1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    h = o.sigmoid() * c.tanh()
    if p.w_hr is not None:
        h = h @ p.w_hr.t()
    return h, c


def gru_step(x: Tensor, h: Tensor, p: LayerParams) -> Tensor:
    """One differentiable GRU step. x ``[B, I]``, h ``[B, H]`` → h."""
    i_r, i_z, i_n = _gemm_in(x, p).chunk(3, dim=1)
    h_r, h_z, h_n = _gemm_hh(h, p).chunk(3, dim=1)
    r, z = (i_r + h_r).sigmoid(), (i_z + h_z).sigmoid()
    n = (i_n + r * h_n).tanh()
    return (1 - z) * n + z * h


def rnn_step(x: Tensor, h: Tensor, p: LayerParams, nonlinearity: str = "tanh") -> Tensor:
    """One differentiable Elman RNN step. x ``[B, I]``, h ``[B, H]`` → h."""
    pre = _gemm_in(x, p) + _gemm_hh(h, p)
    return pre.tanh() if nonlinearity == "tanh" else pre.relu()
