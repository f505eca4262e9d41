"""How a corpus is cut into the batches a recording feeds the model, and the checks made before any is.

``"stateful"``: ``S`` contiguous streams stepped ``chunk`` tokens at a time (as char-rnn trains); ``"sequences"``:
whole documents, batched with others of their length. Each batch is a :data:`BatchItem`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .errors import RunError

# (ids [B, T], corpus start of each row [B], valid count per row [B], next-token targets [B, T], reset flag)
BatchItem = tuple[Tensor, np.ndarray, np.ndarray, Tensor, bool]


def check_corpus(
    n: int,
    mode: str,
    streams: int,
    chunk: int,
    display: Sequence[str] | None,
    tokens_extra: pd.DataFrame | None,
    docs: np.ndarray | None,
) -> np.ndarray:
    """Check a corpus of ``n`` tokens and what comes with it before anything is recorded; returns the document
    id of each token, int64 ``[n]`` (all 0 without ``docs``)."""
    if n == 0:
        raise RunError("the corpus is empty: there are no tokens to record")
    if mode not in ("stateful", "sequences"):
        raise ValueError(f"mode must be 'stateful' or 'sequences', got {mode!r}")
    if streams < 1 or chunk < 1:
        raise ValueError("streams and chunk must be positive")
    if display is not None and len(display) != n:
        raise RunError(f"display has {len(display)} entries for {n} tokens")
    if tokens_extra is not None and len(tokens_extra) != n:
        raise RunError(f"annotations have {len(tokens_extra)} rows for {n} tokens")
    doc_ids = np.zeros(n, np.int64) if docs is None else np.asarray(docs, np.int64)
    if len(doc_ids) != n:
        raise RunError(f"docs has {len(doc_ids)} entries for {n} tokens")
    return doc_ids


def stateful_batches(ids: Tensor, streams: int, chunk: int) -> Iterator[BatchItem]:
    """Split ids ``[N]`` into ``S`` contiguous streams of length ``L = ceil(N/S)`` and yield ``[S, chunk]`` steps.

    Yields (ids ``[S, c]``, corpus start of each row ``[S]``, valid count per row ``[S]``, next-token targets
    ``[S, c]`` (−1 past the corpus end), reset flag).
    """
    n = len(ids)
    S = min(streams, n)
    L = -(-n // S)
    padded = torch.cat([ids, ids.new_zeros(S * L - n)]).reshape(S, L)  # (S, L)
    nxt = torch.cat([ids[1:], ids.new_full((S * L - n + 1,), -1)]).reshape(S, L)  # (S, L)
    base = np.arange(S) * L
    for k in range(0, L, chunk):
        c = min(chunk, L - k)
        starts = base + k
        counts = np.clip(n - starts, 0, c)
        yield padded[:, k : k + c], starts, counts, nxt[:, k : k + c], k == 0


def sequence_batches(ids: Tensor, docs: np.ndarray, streams: int, pad_id: int = 0) -> Iterator[BatchItem]:
    """Batch whole documents, up to ``streams`` at a time, each batch of documents of one length.

    Equal lengths mean no padding at all, so a model that reads its last step (``output[:, -1]``), or steps a
    cell over every column, computes each document's verdict as it would on that document alone (``pad_id``
    then fills no cell).
    """
    bounds = np.r_[0, np.flatnonzero(np.diff(docs)) + 1, len(docs)]
    spans = sorted(itertools.pairwise(bounds), key=lambda s: (s[1] - s[0], s[0]))
    groups = [list(g) for _, g in itertools.groupby(spans, key=lambda s: s[1] - s[0])]
    for group in (same[i : i + streams] for same in groups for i in range(0, len(same), streams)):
        T = max(b - a for a, b in group)
        batch = ids.new_full((len(group), T), pad_id)
        targets = ids.new_full((len(group), T), -1)
        for r, (a, b) in enumerate(group):
            batch[r, : b - a] = ids[a:b]
            targets[r, : b - a - 1] = ids[a + 1 : b]
        starts = np.array([a for a, _ in group])
        counts = np.array([b - a for a, b in group])
        yield batch, starts, counts, targets, True


def valid_rows(starts: np.ndarray, counts: np.ndarray, T: int) -> tuple[np.ndarray, Tensor]:
    """Corpus rows of the valid cells of a ``[B, T]`` batch, and their flat indices into it."""
    t = np.arange(T)
    valid = t[None, :] < counts[:, None]  # (B, T)
    rows = (starts[:, None] + t[None, :])[valid]
    return rows, torch.from_numpy(np.flatnonzero(valid))


def progress(items: Iterable, enabled: bool | Callable[[int], None]) -> Iterable:
    """The batches with a bar (True), as they are (False), or reporting each one's token count to ``enabled``."""
    if callable(enabled):
        return _reporting(items, enabled)
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="recording", unit="chunk")


def _reporting(items: Iterable, report: Callable[[int], None]) -> Iterator:
    """Yield each batch, then report its token count (the valid cells) once the caller has recorded it."""
    for item in items:
        yield item
        report(int(np.asarray(item[2]).sum()))
