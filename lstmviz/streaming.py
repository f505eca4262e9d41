"""One process records a corpus: the model called batch by batch under the :class:`~lstmviz.recorder.Recorder`, each
chunk's activations staged and handed to a :class:`~lstmviz.store.RunWriter`, the predictions written last.

:func:`lstmviz.corpus.record_corpus` is the public entry; a sharded recording (:mod:`lstmviz.distributed`) runs
this same function on each shard, so a shard is exactly a single-process recording of its piece.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from . import batching
from .cache import NameFilter, check_names, listed
from .errors import ModelError, UserError
from .location import AnyPath, FsPath, resolve
from .recorder import Call, Recorder, default_call
from .recurrent import RecurrentModule
from .staging import Staging
from .store import Activation, Observer, RunError, RunWriter, tokens_frame

RowColumns = Callable[[object, np.ndarray, np.ndarray], Mapping[str, np.ndarray]]


def _logits(output: object, batch: int, time: int) -> Tensor | None:
    """The ``[B, T, V]`` float logits in a model's output (itself, or the first element of a tuple), if any."""
    if isinstance(output, tuple | list) and output:
        output = output[0]
    if (
        isinstance(output, Tensor)
        and output.is_floating_point()
        and output.dim() == 3
        and output.shape[:2] == (batch, time)
    ):
        return output
    return None


@dataclass
class _Predictions:
    """Per-token next-token loss and top-k predictions, filled as chunks are recorded."""

    n: int
    k: int = 5
    loss: np.ndarray = field(init=False)
    top_ids: np.ndarray = field(init=False)
    top_p: np.ndarray = field(init=False)
    seen: bool = False

    def __post_init__(self) -> None:
        self.loss = np.full(self.n, np.nan, np.float32)
        self.top_ids = np.zeros((self.n, self.k), np.int32)
        self.top_p = np.zeros((self.n, self.k), np.float32)

    def add(self, logits: Tensor, targets: Tensor, rows: np.ndarray) -> None:
        """logits ``[M, V]`` for corpus rows ``rows [M]``; targets ``[M]`` (−1 where there is no next token)."""
        self.seen = True
        logp = torch.log_softmax(logits.float(), dim=-1)
        valid = targets >= 0
        loss = -logp.gather(1, targets.clamp(min=0).unsqueeze(1)).squeeze(1)
        loss = torch.where(valid, loss, torch.full_like(loss, float("nan")))
        top = logp.topk(min(self.k, logp.shape[-1]), dim=-1)
        k = top.indices.shape[1]
        self.loss[rows] = loss.cpu().numpy()
        self.top_ids[rows, :k] = top.indices.cpu().numpy()
        self.top_p[rows, :k] = top.values.exp().cpu().numpy()


def _manifest(model: nn.Module, modules: Sequence[RecurrentModule], extra: Mapping | None, **recording) -> dict:
    return {
        "model": {
            "class": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": sum(p.numel() for p in model.parameters()),
            "modules": [rm.describe() for rm in modules],
        },
        "recording": recording,
        **(extra or {}),
    }


def record_in_process(
    model: nn.Module,
    token_ids: Sequence[int] | np.ndarray | Tensor,
    out_dir: str | Path | FsPath,
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
    pad_id: int = 0,
    row_columns: RowColumns | None = None,
    gates: str = "float16",
    cards: bool = False,
) -> AnyPath:
    """Record ``token_ids`` ``[N]`` into the run ``out_dir`` in this process; the arguments are
    :func:`lstmviz.corpus.record_corpus`'s (``observers`` None: the default observers of a recording)."""
    out_dir = resolve(out_dir)  # once: resolving an s3:// URI asks the bucket's region
    ids = torch.as_tensor(np.asarray(token_ids), dtype=torch.long).reshape(-1)
    n = len(ids)
    doc_ids = batching.check_corpus(n, mode, streams, chunk, display, tokens_extra, docs)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    call = call or default_call
    was_training = model.training
    model.to(device).eval()
    try:
        with (
            _threads_beside_the_writer(device),
            Recorder(model, names=names, strategy=strategy, carry=(mode == "stateful"), reuse_buffers=True) as rec,
        ):
            tokens = tokens_frame(
                list(display) if display is not None else [str(i) for i in ids.tolist()], ids.numpy(), doc_ids
            )
            if tokens_extra is not None:
                for col in tokens_extra.columns:
                    tokens[col] = tokens_extra[col].to_numpy()
            preds = _Predictions(n)
            if observers is None:
                from .analysis.match_pass import recording_observers

                observers = recording_observers(n, cards)
            staging = Staging(device)
            with contextlib.ExitStack() as opened:
                writer = None  # opened after the first chunk: a tapped kind's units come from its tensor
                batches = (
                    batching.stateful_batches(ids, streams, chunk)
                    if mode == "stateful"
                    else batching.sequence_batches(ids, doc_ids, streams, pad_id)
                )
                for batch, starts, counts, targets, fresh in batching.progress(batches, progress):
                    if fresh:
                        rec.reset()
                        getattr(call, "reset", lambda: None)()  # a call that carries the model's own state
                    cache = rec.new_cache()
                    rec.lengths = torch.as_tensor(counts) if mode == "sequences" else None
                    with torch.inference_mode():
                        try:
                            if rec.lengths is not None and getattr(call, "takes_lengths", False):
                                out = call(model, batch.to(device), lengths=rec.lengths)
                            else:
                                out = call(model, batch.to(device))
                        except (UserError, RunError):
                            raise
                        except Exception as e:
                            raise ModelError.wrap(e) from e
                        rec.flush()  # for a call that steps the model's parts without calling the model itself
                    if writer is None:
                        meta = _manifest(
                            model,
                            rec.recorded(),
                            manifest,
                            mode=mode,
                            streams=streams,
                            chunk=chunk,
                            device=str(device),
                            strategy=strategy,
                            gates=gates,
                        )
                        writer = opened.enter_context(
                            RunWriter(
                                out_dir,
                                tokens,
                                _kept(rec, names),
                                meta,
                                overwrite=overwrite,
                                observers=observers,
                                hist_ranges=hist_ranges,
                                gates=gates,
                            )
                        )
                    staging.write(writer, cache, starts, counts)
                    for column, values in (row_columns(out, starts, counts) if row_columns else {}).items():
                        _set_rows(writer, column, np.asarray(values), starts, counts)
                    logits = _logits(out, *batch.shape)
                    if logits is not None:
                        rows, sel = batching.valid_rows(starts, counts, batch.shape[1])
                        preds.add(logits.reshape(-1, logits.shape[-1])[sel], targets.reshape(-1)[sel], rows)
                if preds.seen:
                    writer.set_column("loss", 0, preds.loss)
                    writer.set_column("top_ids", 0, preds.top_ids)
                    writer.set_column("top_p", 0, preds.top_p)
                return writer.out
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _threads_beside_the_writer(device: torch.device):
    """On a CPU, torch runs on one thread fewer than it was set to (at least one) while recording: the writer's
    thread takes a core of its own. With as many torch threads as cores, each of the forward's parallel regions
    waits for a thread the writer has pushed off its core (bench/e2e.py --record-threads measures it)."""
    before = torch.get_num_threads()
    if device.type == "cpu" and before > 1:
        torch.set_num_threads(before - 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _kept(rec: Recorder, names: NameFilter) -> list[Activation]:
    """The activations a corpus recording writes, or the error that says why there are none."""
    every = [a for m in rec.recorded() for a in m.activations()]
    if not every:
        raise rec.nothing_found()
    kept = rec.activations()
    if kept:
        check_names(names, [a.name for a in every])
        return kept
    unknown = sorted(listed(names) or ())
    why = f"names=: this model has no activation {unknown[0]!r}, so " if unknown else ""
    raise RunError(
        f"{why}names= matches no activation of this model (they look like {every[0].name!r})", arguments=("names=",)
    )


def _set_rows(writer: RunWriter, column: str, values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> None:
    """Give ``values[b]`` (one per batch row) to the row's tokens ``[starts[b], starts[b] + counts[b])``."""
    if len(values) != len(starts):
        raise RunError(f"row column {column!r} has {len(values)} values for a batch of {len(starts)} rows")
    for value, start, count in zip(values, starts, counts, strict=True):
        if count:
            writer.set_column(column, int(start), np.repeat(value[None], count, axis=0))
