"""Buffers and packed weights that a streaming caller keeps from one call of a layer to the next."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .linear import Linear


class Pool:
    """What one layer and direction keeps between the chunks of a corpus: output buffers and packed weights.

    Writing a freshly mapped multi-megabyte buffer costs a page fault per 4 KiB, and a step loop that touches
    ``[B, 4H]`` of new memory per step spends a large share of its time on them; re-packing a layer's weights for
    every chunk would cost a little more.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}
        self.linears: dict[str, tuple[tuple[Tensor | None, ...], int, Linear]] = {}


def pooled_buffer(pool: Pool | None, key: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape``, taken from ``pool`` where it holds one as long or longer.

    ``shape[0]`` is time: a shorter request (a corpus's last chunk) gets the leading rows of the pooled
    buffer, which are contiguous, instead of fresh memory.

    A fresh CPU buffer is written once here, by all of torch's threads: its first write page-faults every 4 KiB,
    and a step loop would take those faults on one core, step by step, while the other cores wait.
    """
    buf = pool.buffers.get(key) if pool is not None else None
    if (
        buf is None
        or buf.shape[1:] != shape[1:]
        or buf.shape[0] < shape[0]
        or buf.dtype != like.dtype
        or buf.device != like.device
    ):
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


def pooled_linear(
    pool: Pool | None,
    key: str,
    make: Callable[[], tuple[Tensor, Tensor | None]],
    rows: int,
    sources: tuple[Tensor | None, ...],
) -> Linear:
    """``Linear(*make(), rows)``, reused from ``pool`` while ``sources`` (the raw parameters) hold the same values.

    The values are compared in full, not by version counter: edits through ``.data``, weights recomputed on every
    forward (weight_norm) and inference tensors all escape version counters. The compare reads the weights once,
    a small fraction of a chunk's time.
    """
    hit = pool.linears.get(key) if pool is not None else None
    if hit is not None and hit[1] == rows and all(_same(a, b) for a, b in zip(hit[0], sources, strict=True)):
        return hit[2]
    lin = Linear(*make(), rows)
    if pool is not None:
        pool.linears[key] = (tuple(None if t is None else t.detach().clone() for t in sources), rows, lin)
    return lin
