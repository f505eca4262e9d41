"""One LSTM step's gates and cell update after its GEMM: in torch ops, or compiled by numba where it can be.

Both take the same arguments and write the same arrays (:func:`lstm_pointwise_torch` on tensors, the compiled
:func:`lstmviz.kernels.compiled.lstm_pointwise` on their numpy views); :func:`compiled_pointwise` says which one a
step loop gets.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .linear import tanh_from_sigmoid_


def o_tanh(o: Tensor, c: Tensor, out: Tensor) -> Tensor:
    """``out = o ⊙ tanh(c)``, as o − 2·o ⊙ σ(−2c): three kernels, and no tanh (see :mod:`.linear`)."""
    return torch.addcmul(o, o, torch.mul(c, -2, out=out).sigmoid_(), value=-2, out=out)


def lstm_pointwise_torch(z: Tensor, c_prev: Tensor, gates: Tensor, c: Tensor, h: Tensor, h_copy: Tensor) -> None:
    """One step's gates and cell update in torch ops, with the contract of :func:`.compiled.lstm_pointwise`.

    z ``[B, 4H]``: the pre-activations of i, f, 2·g, o; c_prev ``[B, H]``. Writes the gates into gates ``[B, 4H]``,
    c ``[B, H]``, and o ⊙ tanh(c) ``[B, H]`` into both h and h_copy.
    """
    i, f, g, o = torch.sigmoid(z, out=gates).unsafe_chunk(4, 1)
    tanh_from_sigmoid_(g)
    torch.mul(f, c_prev, out=c).addcmul_(i, g)
    h_copy.copy_(o_tanh(o, c, out=h))


def compiled_pointwise(x: Tensor) -> Callable | None:
    """:func:`lstmviz.kernels.compiled.lstm_pointwise` for float32 CPU input ``x``; None for others, with
    ``LSTMVIZ_NO_JIT=1``, or where numba cannot compile it here."""
    if x.dtype != torch.float32 or x.device.type != "cpu" or os.environ.get("LSTMVIZ_NO_JIT", "") not in ("", "0"):
        return None
    return _load_compiled()


@functools.cache
def _load_compiled() -> Callable | None:
    """Import and compile (or load from numba's disk cache) the pointwise update for both layouts the LSTM loop
    passes: ``h_copy`` a strided row of the input buffer, or a contiguous array. Any failure means torch ops."""
    try:
        from .compiled import lstm_pointwise

        B, H = 2, 3
        z, gates = np.zeros((B, 4 * H), np.float32), np.empty((B, 4 * H), np.float32)
        c_prev, c, h = (np.zeros((B, H), np.float32) for _ in range(3))
        for h_copy in (np.empty((B, 2 * H), np.float32)[:, H:], np.empty((B, H), np.float32)):
            lstm_pointwise(z, c_prev, gates, c, h, h_copy)
    except Exception:  # no numba, nowhere to cache, or a compile error: torch ops do the same work
        return None
    return lstm_pointwise
