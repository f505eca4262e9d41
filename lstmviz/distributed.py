"""Record one corpus as a sharded run (docs/FORMAT.md, "Sharded runs") on Ray workers.

    lstmviz record --checkpoint model.pt --text big.txt --out runs/big --shards 8 --ray local
    lstmviz.record_corpus(model, ids, "runs/big", shards=8, ray="local")   # or record_sharded(...)

Why Ray tasks (not actors, not Ray Data): a shard *is* ``record_corpus`` over a contiguous piece of the corpus
into a part directory, a unit of work with no state to keep between shards, so one task per shard is the whole
plan; Ray places it on a GPU when the cluster has one, retries it when its worker dies (``max_retries``), and
moves the model to the workers once through its object store. Ray Data would re-batch the tokens itself, which
would break the streams × chunk schedule a shard must share with a single-process recording.

The driver cuts the corpus, fixes each activation's histogram range (from the first chunk, as a single
process does), launches the tasks, and once every shard is in place merges the stats, match indices and
overviews and writes the manifest last (through :class:`lstmviz.outputs.Output`). A shard that fails for good
removes the whole ``<run>.partial``; a killed driver leaves only ``<run>.partial``, which never looks complete.

On object storage (``s3://…``, or any :class:`lstmviz.location.FsPath`) there is no rename: each task uploads
its part under its final name ``<run>/shards/<k>/`` (staging it on the worker's own disk), the driver merges
from there, and the run's ``manifest.json``, uploaded last, is what makes it complete
(:class:`lstmviz.location.RemoteOutput`).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import shard_merge
from . import shards as _shards
from .errors import ModelError, RunError, UserError
from .location import (
    AnyPath,
    FsPath,
    RemoteOutput,
    read_table,
    resolve,
    scratch_dir,
    staging_dir,
    write_manifest,
    write_table,
)
from .outputs import Output

POLL_S = 0.5


def cut_points(n: int, shards: int, docs: np.ndarray | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), …]``: ``shards`` contiguous pieces of ``[0, n)`` of near-equal length; with ``docs`` (a
    document id per token ``[n]``), every cut is moved to the nearest document start, so documents stay whole
    (fewer pieces when there are fewer documents)."""
    if shards < 1:
        raise UserError(f"shards must be at least 1, got {shards}")
    if shards > n:
        raise UserError(f"{shards} shards need at least {shards} tokens; the corpus has {n}")
    cuts = [n * k // shards for k in range(shards + 1)]
    if docs is not None:
        starts = np.r_[0, np.flatnonzero(np.diff(np.asarray(docs))) + 1, n]
        near = np.searchsorted(starts, cuts[1:-1])
        options = np.stack([starts[np.maximum(near - 1, 0)], starts[np.minimum(near, len(starts) - 1)]])
        best = options[np.abs(options - np.array(cuts[1:-1])).argmin(0), np.arange(len(cuts) - 2)]
        cuts = sorted({0, n, *best.tolist()})
    return list(itertools.pairwise(cuts))


def hist_ranges(
    model,
    ids0: np.ndarray,
    *,
    streams: int,
    chunk: int,
    call,
    names,
    strategy: str,
    mode: str,
    docs0: np.ndarray,
    pad_id: int = 0,
) -> dict[str, tuple[float, float]]:
    """The stats histograms' (lo, hi) per activation from the first chunk of shard 0 (ids0 ``[n₀]``), the same
    chunk and rule by which recording shard 0 alone would choose them, so every shard bins alike."""
    import torch

    from .batching import sequence_batches, stateful_batches
    from .recorder import Recorder, default_call
    from .store.stats import hist_range

    t = torch.as_tensor(np.array(ids0), dtype=torch.long)
    batches = stateful_batches(t, streams, chunk) if mode == "stateful" else sequence_batches(t, docs0, streams, pad_id)
    batch, _, counts, _, _ = next(iter(batches))
    call = call or default_call
    was_training = model.training
    model.cpu().eval()
    try:
        with Recorder(model, names=names, strategy=strategy) as rec, torch.inference_mode():
            # as record_corpus calls it: the padding invisible, a call that takes lengths given them
            rec.lengths = torch.as_tensor(counts) if mode == "sequences" else None
            if rec.lengths is not None and getattr(call, "takes_lengths", False):
                call(model, batch, lengths=rec.lengths)
            else:
                call(model, batch)
            rec.flush()
    except Exception as e:
        raise ModelError.wrap(e) from e
    finally:
        model.train(was_training)
    out = {}
    valid = np.arange(batch.shape[1])[None, :] < np.asarray(counts)[:, None]  # [B, T]
    kinds = {a.name: a.kind for a in rec.activations()}
    for name, value in rec.cache.items():
        if name in kinds and isinstance(value, torch.Tensor) and value.dim() == 3:
            half = value.float().numpy().astype(np.float16)[valid[:, : value.shape[1]]]
            out[name] = hist_range(kinds[name], half.astype(np.float32))
    return out


def _record_shard(
    model,
    shard: int,
    start: int,
    piece: dict,
    part: str | FsPath,
    options: dict,
    n_run: int,
    ranges: dict,
    threads: int,
    progress,
) -> int:
    """One Ray task: the single-process recording (:func:`lstmviz.streaming.record_in_process`) over tokens
    ``[start, start + len)`` into ``part``, then the tokens table given the run's ``idx`` and ``pos``. Returns the
    shard's token count. Idempotent, so a retry starts over (on object storage, by deleting what a killed try
    uploaded: the part lies inside the run, which the driver owns)."""
    import torch

    from .streaming import record_in_process

    torch.set_num_threads(threads)
    ids = np.array(piece["ids"])  # Ray hands arrays over read-only; torch wants to own a writable one
    part = resolve(part)
    if isinstance(part, FsPath):
        part.rmtree()
    report = None if progress is None else (lambda k: progress.add.remote(shard, k))
    record_in_process(
        model,
        ids,
        part,
        display=piece["display"],
        docs=piece["docs"],
        tokens_extra=piece["extra"],
        overwrite=True,
        progress=report or False,
        hist_ranges=ranges,
        observers=shard_merge.shard_observers(n_run, start, len(ids), scratch_dir(part)),
        **options,
    )
    tokens = read_table(part / "tokens.parquet")
    tokens = tokens.set_column(tokens.schema.get_field_index("idx"), "idx", pa.array(start + np.arange(len(ids))))
    tokens = tokens.set_column(tokens.schema.get_field_index("pos"), "pos", pa.array(piece["pos"], pa.int32()))
    write_table(tokens, part / "tokens.parquet")
    return len(ids)


def _progress_actor(ray_mod):
    @ray_mod.remote(num_cpus=0)
    class Progress:
        """Tokens recorded per shard, reported by the tasks after each chunk."""

        def __init__(self):
            self.done: dict[int, int] = {}

        def add(self, shard: int, tokens: int) -> None:
            self.done[shard] = self.done.get(shard, 0) + tokens

        def get(self) -> dict[int, int]:
            return self.done

    return Progress.remote()


def _connect(address: str):
    """Ray, initialised: an existing connection is used as it is; ``"local"`` starts a local cluster."""
    # Ray's driver otherwise swaps builtins.print for its progress-bar-safe one on the first worker log line, and
    # numba then cannot compile code that prints (UMAP's pynndescent), for the rest of the user's session.
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    try:
        import ray
    except ImportError:
        raise UserError("sharded recording needs Ray: pip install 'ray>=2.9'") from None
    if not ray.is_initialized():
        try:
            # a dashboard is a local cluster's option only; Ray refuses it when joining a running cluster
            local = {"include_dashboard": False} if address == "local" else {"address": address}
            ray.init(**local)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot reach the Ray cluster at {address!r}: {' '.join(str(e).split())}") from None
    return ray


def record_sharded(
    model,
    token_ids: Sequence[int] | np.ndarray,
    out_dir: str | os.PathLike | FsPath,
    *,
    shards: int,
    ray: str = "local",
    streams: int = 64,
    chunk: int = 128,
    device: str | None = None,
    display: Sequence[str] | None = None,
    docs: Sequence[int] | np.ndarray | None = None,
    mode: str = "stateful",
    call=None,
    names=None,
    strategy: str = "auto",
    tokens_extra: pd.DataFrame | None = None,
    manifest: Mapping | None = None,
    overwrite: bool = False,
    progress: bool = True,
    pad_id: int = 0,
    max_retries: int = 3,
    cpus_per_shard: int = 1,
) -> Path:
    """Record ``token_ids`` ``[N]`` as ``shards`` contiguous pieces, one Ray task each, into one sharded run.

    Each shard is exactly ``record_corpus`` (same streams, chunk, mode, names…) over its piece from a zero
    state, into ``<run>/shards/<k>``; with ``docs`` (or ``mode="sequences"``) the pieces are whole documents.
    Tasks ask for ``cpus_per_shard`` CPUs (and as many torch threads) and one GPU when the cluster has GPUs
    (``device`` then defaults to the GPU Ray assigned). A task whose worker dies is retried up to
    ``max_retries`` times; an error inside the model is not retried. ``ray`` is ``"local"`` (start a local
    cluster unless Ray is already initialised) or a cluster address (``"auto"``, ``"ray://host:10001"``).
    ``progress``: a bar over all tokens, with each shard's share. ``pad_id`` right-pads ``"sequences"`` batches.
    ``out_dir`` may be on object storage (a URI or an :class:`~lstmviz.location.FsPath`, see the module doc);
    every worker must reach it, and the local directory of a local run must be shared storage on a cluster.
    Returns the run directory.
    """
    from .batching import check_corpus

    ids = np.asarray(token_ids, np.int64).reshape(-1)
    n = len(ids)
    doc_ids = check_corpus(n, mode, streams, chunk, display, tokens_extra, docs)
    bounds = cut_points(n, shards, doc_ids if docs is not None or mode == "sequences" else None)
    from .store import tokens_frame

    pos = tokens_frame([""] * n, ids, doc_ids)["pos"].to_numpy()
    target = resolve(out_dir)
    remote = isinstance(target, FsPath)
    output = (
        RemoteOutput(target, name="output directory")
        if remote
        else Output(target, "run", overwrite, name="output directory")
    )
    try:
        ray_mod = _connect(ray)
        root = output.target if remote else output.partial  # the parts go under their final names on a store
        if not remote:
            (root / _shards.PARTS).mkdir()
        parts = [_shards.part_dir(root, k) for k in range(len(bounds))]
        gpus = 1 if ray_mod.cluster_resources().get("GPU", 0) > 0 else 0
        model_ref = ray_mod.put(model.cpu())
        # On a worker, not here: the user's model runs only where a crash is retried, not in the driver.
        probe = ray_mod.remote(hist_ranges).options(
            num_cpus=cpus_per_shard, max_retries=max_retries, retry_exceptions=False
        )
        n0 = bounds[0][1]
        ranges = probe.remote(
            model_ref,
            ids[:n0],
            streams=streams,
            chunk=chunk,
            call=call,
            names=names,
            strategy=strategy,
            mode=mode,
            docs0=doc_ids[:n0],
            pad_id=pad_id,
        )
        _wait(ray_mod, [ranges], [(0, n0)], None, max_retries, what="the first chunk of shard")
        options = dict(
            streams=streams,
            chunk=chunk,
            device=device,
            mode=mode,
            call=call,
            names=names,
            strategy=strategy,
            manifest=manifest,
            pad_id=pad_id,
        )
        task = ray_mod.remote(_record_shard).options(
            num_cpus=cpus_per_shard, num_gpus=gpus, max_retries=max_retries, retry_exceptions=False
        )
        tracker = _progress_actor(ray_mod) if progress else None
        refs = []
        for k, (a, b) in enumerate(bounds):
            piece = {
                "ids": ids[a:b],
                "display": None if display is None else list(display[a:b]),
                "docs": doc_ids[a:b],
                "pos": pos[a:b],
                "extra": None if tokens_extra is None else tokens_extra.iloc[a:b].reset_index(drop=True),
            }
            part = parts[k] if remote else str(parts[k])
            refs.append(task.remote(model_ref, k, a, piece, part, options, n, ranges, cpus_per_shard, tracker))
        _wait(ray_mod, refs, bounds, tracker, max_retries)
        final = _merge(output.partial, parts, bounds, ray)
        output.publish(finish=lambda run: write_manifest(run, {**final, "complete": True}))
    except BaseException:
        output.discard()
        raise
    return output.target


def _wait(ray_mod, refs: list, bounds: list[tuple[int, int]], tracker, max_retries: int, what: str = "shard") -> None:
    """Wait for every shard, showing progress; the first shard that fails for good cancels the rest and raises
    its error (a model's own error as itself, a dead worker as a RunError)."""
    from ray.exceptions import RayTaskError

    bars = _Bars(bounds) if tracker is not None else None
    pending = list(refs)
    try:
        while pending:
            done, pending = ray_mod.wait(pending, num_returns=len(pending), timeout=POLL_S)
            for ref in done:
                try:
                    ray_mod.get(ref)
                except RayTaskError as e:
                    raise e.cause from None
                except ray_mod.exceptions.RayError as e:
                    k = refs.index(ref)
                    why = (
                        f"its worker died on each of {max_retries + 1} tries"
                        if isinstance(e, ray_mod.exceptions.WorkerCrashedError)
                        else " ".join(str(e).splitlines()[0].split())
                    )
                    raise RunError(
                        f"{what} {k} (tokens {bounds[k][0]}…{bounds[k][1]}) failed: {why}; no run was written"
                    ) from None
            if bars is not None:
                bars.update(ray_mod.get(tracker.get.remote()))
    except BaseException:
        for ref in pending:
            ray_mod.cancel(ref, force=True)
        raise
    finally:
        if bars is not None:
            bars.close()


class _Bars:
    """One tqdm bar for all tokens and, for up to 8 shards, one per shard."""

    def __init__(self, bounds: list[tuple[int, int]]):
        from tqdm.auto import tqdm

        total = bounds[-1][1]
        self.total = tqdm(total=total, desc="recording", unit="tok", position=0)
        self.each = (
            [
                tqdm(total=b - a, desc=f"shard {k}", unit="tok", position=k + 1, leave=False)
                for k, (a, b) in enumerate(bounds)
            ]
            if len(bounds) <= 8
            else []
        )

    def update(self, done: dict[int, int]) -> None:
        for k, bar in enumerate(self.each):
            bar.update(done.get(k, 0) - bar.n)
        self.total.update(sum(done.values()) - self.total.n)

    def close(self) -> None:
        for bar in [*self.each, self.total]:
            bar.close()


def _merge(run: Path, parts: list[AnyPath], bounds: list[tuple[int, int]], address: str) -> dict:
    """Merge the shards' stats and derived data into ``run`` (the local partial or staging directory) and return
    its complete manifest (written to ``run/manifest.json`` now with ``"complete": false``)."""
    import datetime as _dt

    from . import __version__

    shard_manifests = [json.loads((p / "manifest.json").read_text()) for p in parts]
    base = shard_manifests[0]
    for k, m in enumerate(shard_manifests[1:], 1):
        if [a["name"] for a in m["activations"]] != [a["name"] for a in base["activations"]]:
            raise RunError(f"shard {k} recorded other activations than shard 0")
    stats = shard_merge.merge_stats([read_table(p / "stats.parquet").to_pandas() for p in parts])
    pq.write_table(pa.Table.from_pandas(stats, preserve_index=False), run / "stats.parquet")
    acts = [{**a, "file": _shards.act_glob(a["name"])} for a in base["activations"]]
    if isinstance(parts[0], FsPath):
        _merge_remote_cache(run, parts, bounds, acts)
    else:
        shard_merge.merge_cache(run, parts, bounds, acts)
    manifest = {
        **base,
        "schema_version": _shards.SHARDED_VERSION,
        "lstmviz_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "n_tokens": bounds[-1][1],
        "recording": {**base.get("recording", {}), "shards": [list(b) for b in bounds], "ray": address},
        "tokens": {"file": _shards.TOKENS_GLOB},
        "activations": acts,
        "complete": False,
    }
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    return manifest


def _merge_remote_cache(run: Path, parts: list[FsPath], bounds: list[tuple[int, int]], acts: list[dict]) -> None:
    """:func:`lstmviz.shard_merge.merge_cache` for parts on object storage: their caches are downloaded (the
    merges read them as memory maps), merged into ``run``, then deleted from the parts."""
    import shutil

    import pyarrow.fs as pafs

    local = staging_dir(".lstmviz-parts-")
    try:
        copies = []
        for p in parts:
            copy = local / p.name
            pafs.copy_files((p / "cache").path, str(copy / "cache"), p.fs, pafs.LocalFileSystem())
            copies.append(copy)
        shard_merge.merge_cache(run, copies, bounds, acts)
        for p in parts:
            (p / "cache").rmtree()
    finally:
        shutil.rmtree(local, ignore_errors=True)
