"""One LSTM step's gates and cell update as one compiled loop (numba), for the float32 CPU step loop.

In torch ops the same work is a sigmoid and seven more kernels per step
(:func:`lstmviz.kernels.pointwise.lstm_pointwise_torch`), each a dispatch, a pass over memory and, for the larger
ones, an OpenMP fork. Here it is one pass per row, vectorised by LLVM (bench/record.py prints the step loop's
ratio with and without it). tanh is the rational approximation Eigen uses for float32 (Eigen's
``generic_fast_tanh_float``): a degree 13/6 odd/even polynomial ratio, clamped to ``[-7.9988, 7.9988]``, at most
3e-7 from the true tanh (torch's own kernels differ by ~1e-7); σ(x) = (1 + tanh(x/2)) / 2.

Importing this module compiles nothing; the first call compiles (about a second) and caches the machine code
on disk (``cache=True``), so later processes load it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_CLAMP = np.float32(7.99881172180175781)
# Numerator (odd powers 1…13) and denominator (even powers 0…6) coefficients.
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (
    np.float32(a)
    for a in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
_B0, _B2, _B4, _B6 = (
    np.float32(b)
    for b in (
        4.89352518554385e-03,
        2.26843463243900e-03,
        1.18534705686654e-04,
        1.19825839466702e-06,
    )
)
_HALF, _ONE, _TWO = np.float32(0.5), np.float32(1), np.float32(2)

# error_model="numpy": no ZeroDivisionError branch per division, which would stop LLVM from vectorising.
# fastmath without nnan/ninf: a NaN (a diverged model) must come out as NaN, as torch's own kernels give it.
# nogil: Streamlit sessions recording at once run side by side, as they do in torch ops.
_JIT = {"fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}, "error_model": "numpy", "cache": True, "nogil": True}


@njit(inline="always", **_JIT)
def tanh(x: float) -> float:
    """tanh of a float32 scalar, vectorisable (a rational function; see the module docstring)."""
    x = _CLAMP if x > _CLAMP else x  # written so that NaN passes through
    x = -_CLAMP if x < -_CLAMP else x
    x2 = x * x
    p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
    q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
    return p / q


@njit(inline="always", **_JIT)
def sigmoid(x: float) -> float:
    """σ(x) = (1 + tanh(x/2)) / 2 of a float32 scalar, vectorisable."""
    return _HALF + _HALF * tanh(_HALF * x)


@njit(**_JIT)
def lstm_pointwise(
    z: np.ndarray, c_prev: np.ndarray, gates: np.ndarray, c: np.ndarray, h: np.ndarray, h_copy: np.ndarray
) -> None:
    """One step's gates and cell update, float32.

    z ``[B, 4H]``: the pre-activations of i, f, 2·g, o (the g rows of the weights are doubled, so that
    tanh(g) = 2σ(2g) − 1 and one sigmoid covers all four); c_prev ``[B, H]``. Writes the gates i, f, g, o into
    gates ``[B, 4H]``, c ``[B, H]``, and h = o ⊙ tanh(c) ``[B, H]`` into both ``h`` and ``h_copy`` (the next
    step's input row). Any strides work; contiguous rows are what vectorise. Each loop writes one array from
    a few others, which LLVM vectorises behind one runtime overlap check; the same loops written as one loop
    with four stores stayed scalar and ran several times slower.
    """
    B, H = c.shape
    for b in range(B):
        for j in range(4 * H):
            gates[b, j] = sigmoid(z[b, j])
        for j in range(2 * H, 3 * H):
            gates[b, j] = _TWO * gates[b, j] - _ONE
        for j in range(H):
            c[b, j] = gates[b, H + j] * c_prev[b, j] + gates[b, j] * gates[b, 2 * H + j]
        for j in range(H):
            h[b, j] = gates[b, 3 * H + j] * tanh(c[b, j])
        for j in range(H):
            h_copy[b, j] = h[b, j]
