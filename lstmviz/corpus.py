"""``record_corpus``: stream a token sequence through a model into a run directory (docs/FORMAT.md).

The one public entry for a corpus. It records in this process (:mod:`lstmviz.streaming`) or, with ``shards=``,
hands the corpus to the Ray driver (:mod:`lstmviz.distributed`), which records each shard with the same
single-process function; neither imports this module, so the dispatch lives above both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .cache import NameFilter
from .errors import UserError
from .recorder import Call
from .store import Activation, Observer
from .streaming import RowColumns, record_in_process


def record_corpus(
    model: nn.Module,
    token_ids: Sequence[int] | np.ndarray | Tensor,
    out_dir: str | Path,
    *,
    streams: int = 64,
    chunk: int = 128,
    device: str | torch.device | None = None,
    display: Sequence[str] | None = None,
    docs: Sequence[int] | np.ndarray | None = None,
    mode: str = "stateful",
    call: Call | None = None,
    names: NameFilter = None,
    strategy: str = "auto",
    tokens_extra: pd.DataFrame | None = None,
    manifest: Mapping | None = None,
    overwrite: bool = False,
    progress: bool | Callable[[int], None] = True,
    observers: Callable[[Activation], Iterable[Observer]] | None = None,
    hist_ranges: Mapping[str, tuple[float, float]] | None = None,
    shards: int | None = None,
    ray: str | None = None,
    pad_id: int = 0,
    row_columns: RowColumns | None = None,
    gates: str = "float16",
    cards: bool = True,
) -> Path:
    """Stream a token sequence through ``model`` and write a run directory (see docs/FORMAT.md).

    ``mode="stateful"`` splits the corpus into ``streams`` contiguous parallel streams (as char-rnn trains) and
    feeds them ``chunk`` steps at a time, carrying every recurrent module's state from chunk to chunk; memory is
    flat in corpus length. ``mode="sequences"`` records each document (``docs``: a document id per token,
    contiguous) independently from a zero state, batching up to ``streams`` documents, right-padded with
    ``pad_id``; the padding is invisible to the sequence modules (see :class:`Recorder`: each document's states,
    forward and reverse, are the module's on that document alone), and a ``call`` that takes lengths
    (``call.takes_lengths``) is given each document's length.

    Args:
        model: any module with nn.LSTM / nn.GRU / nn.RNN, step cells (nn.LSTMCell …) or cells calling
            ``lstmviz.tap`` inside (see docs/FORMAT.md), called as ``call(model, ids)`` with ids
            ``[streams, chunk]`` (default ``model(ids)``). If it returns ``[B, T, V]`` logits, tokens.parquet
            gets ``loss`` (next-token cross-entropy, nats) and ``top_ids`` / ``top_p`` (top-5) columns.
        token_ids: ``[N]`` ints. display: ``[N]`` display strings (default: the ids).
        out_dir: the run directory; written as ``<out_dir>.partial`` and renamed when complete.
        device: ``"cuda"`` when available, else ``"cpu"``, unless given. The model is moved there.
        names / strategy: as for :func:`run_with_cache`.
        tokens_extra: annotation columns aligned to the tokens, stored in tokens.parquet.
        manifest: extra manifest entries (tokenizer, corpus source, checkpoint metrics…).
        observers: per activation, the :class:`~lstmviz.store.Observer` s that build derived data from the
            values as they are stored (see :class:`~lstmviz.store.RunWriter`). Default: the match indices at the
            select page's default θs and the overview, built in the writer's own pass
            (:func:`lstmviz.analysis.match_pass.recording_observers`), so a fresh run answers its first query as
            fast as later ones; ``lambda act: []`` builds none.
        hist_ranges: name → (lo, hi) of the stats histograms (see :class:`~lstmviz.store.RunWriter`).
        shards / ray: record ``shards`` contiguous pieces on Ray workers into one sharded run
            (:func:`lstmviz.distributed.record_sharded`; ``ray`` is ``"local"`` or a cluster address).
        progress: a bar, or a callable given the number of tokens of each chunk once it is recorded.
        pad_id: the id that right-pads the documents of a ``"sequences"`` batch (the model's own padding id).
        row_columns: ``row_columns(output, starts, counts)`` → ``{column: values [B]}`` for each batch: token
            columns made from the model's output, one value per batch row given to each of that row's tokens
            (in ``"sequences"`` mode, per document: e.g. a classifier's prediction). Not with ``shards``.
        gates: ``"float16"`` (default) or ``"8bit"``: store the sigmoid gates (i, f, o, r, z) as 256 levels,
            1 byte per value, each within about 0.0022 of the exact value (:mod:`lstmviz.store.levels`,
            docs/FORMAT.md); a gate with a NaN then fails the recording. Not with ``shards``.
        cards: build every activation's unit cards when the recording closes (with the default observers), so a
            fresh run's Unit page answers at once (bench/e2e.py --cards-too measures what they add); with False,
            each is built on the Unit page's first visit of its activation (by the same pass). A sharded
            recording always builds them, each worker its shard's part.
    """
    from .store.levels import GATES

    if gates not in GATES:
        raise UserError(f"gates= must be one of {', '.join(GATES)}, got {gates!r}", arguments=("gates=",))
    if shards is not None:
        from .distributed import record_sharded  # Ray and the driver load only for a sharded recording

        if observers is not None or hist_ranges is not None:
            raise ValueError("a sharded recording builds its own observers and histogram ranges")
        if row_columns is not None:
            raise ValueError("row_columns= is not supported with shards= (each shard is recorded on its own worker)")
        if gates != "float16":
            raise UserError("gates='8bit' is not supported with shards=", arguments=("gates='8bit'", "shards="))
        return record_sharded(
            model,
            token_ids,
            out_dir,
            shards=shards,
            ray=ray or "local",
            streams=streams,
            chunk=chunk,
            device=device,
            display=display,
            docs=docs,
            mode=mode,
            call=call,
            names=names,
            strategy=strategy,
            tokens_extra=tokens_extra,
            manifest=manifest,
            overwrite=overwrite,
            progress=progress,
            pad_id=pad_id,
        )
    return record_in_process(
        model,
        token_ids,
        out_dir,
        streams=streams,
        chunk=chunk,
        device=device,
        display=display,
        docs=docs,
        mode=mode,
        call=call,
        names=names,
        strategy=strategy,
        tokens_extra=tokens_extra,
        manifest=manifest,
        overwrite=overwrite,
        progress=progress,
        observers=observers,
        hist_ranges=hist_ranges,
        pad_id=pad_id,
        row_columns=row_columns,
        gates=gates,
        cards=cards,
    )
