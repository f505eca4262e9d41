"""Host copies of each recorded chunk, double-buffered, so the writer's thread stores one while the model computes
the next."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .cache import ActivationCache
from .errors import RunError
from .store import RunWriter


class Staging:
    """Two float16 host copies of a chunk's activations, so the writer's thread stores one while the forward
    computes the next (the recorder reuses its buffers, so each chunk is copied out before the next forward).

    On CUDA the copies are asynchronous, into pinned memory, and the writer's thread waits on an event recorded
    after them; on the CPU ``copy_`` is the float16 conversion itself. An 8-bit gate (the writer's ``eight``) is
    quantized where it was computed, and only its uint8 level indices are copied (1 byte per value).
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.buffers: list[dict[str, Tensor]] = [{}, {}]
        self.pending: list[list] = [[], []]
        self.k = 0
        self.scaled: dict[str, Tensor] = {}  # an 8-bit gate's 255·x, on the device (one per name, reused)

    def buffer(self, slot: int, name: str, shape: torch.Size, dtype: torch.dtype = torch.float16) -> Tensor:
        """The slot's host tensor for ``name``, of ``shape`` ``[B, T, U]`` (grown as needed)."""
        n = shape.numel()
        buf = self.buffers[slot].get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype:
            buf = torch.empty(n, dtype=dtype, pin_memory=self.cuda)
            self.buffers[slot][name] = buf
        return buf[:n].view(shape)

    def levels(self, name: str, value: Tensor) -> tuple[Tensor, Tensor]:
        """(rint(clip(255·value, 0, 255)) float ``[B, T, U]`` on value's device, whether value has a NaN): the level
        indices of :mod:`lstmviz.store.levels`, computed as its numpy ``quantize`` does (float32, ties to even)."""
        scaled = self.scaled.get(name)
        if scaled is None or scaled.shape != value.shape or scaled.device != value.device:
            scaled = self.scaled[name] = torch.empty(value.shape, dtype=torch.float32, device=value.device)
        torch.mul(value, 255, out=scaled)
        nan = scaled.isnan().any()
        return scaled.clamp_(0, 255).round_(), nan

    def write(self, writer: RunWriter, cache: ActivationCache, starts: np.ndarray, counts: np.ndarray) -> None:
        """Copy every cached activation ``[B, T, U]`` out and hand it to the writer's thread."""
        slot = self.k % 2
        self.k += 1
        for future in self.pending[slot]:  # this slot's previous chunk must be stored before it is overwritten
            future.result()
        for name, value in cache.items():
            if isinstance(value, list):
                raise RunError(
                    f"{name}: its calls in one chunk differ in batch size; a corpus recording needs every call "
                    f"to step all {len(starts)} streams"
                )
            if value.shape[0] != len(starts):
                raise RunError(
                    f"{name} came back with batch {value.shape[0]} for {len(starts)} streams: the model is "
                    f"called with ids [streams, chunk]; check its layout (--layout batch|seq)"
                )
        items = [(name, value) for name, value in cache.items() if name in writer.acts]
        nans: dict[str, Tensor] = {}
        copies = []
        for name, value in items:
            if name in writer.eight:
                value, nans[name] = self.levels(name, value)
                buf = self.buffer(slot, name, value.shape, torch.uint8)
            else:
                buf = self.buffer(slot, name, value.shape)
            buf.copy_(value, non_blocking=self.cuda)
            copies.append((name, buf))
        ready = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record()
        self.pending[slot] = [
            writer.submit_blocks(name, starts, buf.numpy(), counts, ready, nans.get(name)) for name, buf in copies
        ]
