"""Gradient-flow curves of a run's own model on its own tokens, stored beside the run like its projections.

:func:`lstmviz.analysis.gradients.gradient_flow` costs a warm-up forward and K backward steps per batch of
targets: seconds to a minute per model on a CPU. The Gradients page overlays several models, so the curves of
the bundled samples are computed once, in the background at the app's first start (``prepare.py``), and stored
under ``<run>/cache/gradients/`` keyed by every parameter that changes them (K, targets, seed, tokens used). A
stored curve also names the checkpoint's size and mtime: one trained again is measured afresh.

Only :func:`compute` imports torch, so reading a stored curve stays cheap.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..store import Run

TOKENS = 20_000
"""Gradient flow runs on the first this many tokens of a run: its warm-up is one forward pass over them."""
DEFAULT_K, DEFAULT_TARGETS = 100, 32
"""The curve the Gradients page opens on (largest distance K, sampled target steps), precomputed for samples."""
SEED = 0
VERSION = 1


def _path(run: Run, K: int, n_targets: int) -> Path:
    tokens = min(run.n_tokens, TOKENS)
    return run.cache_dir / "gradients" / f"flow-K{K}-n{n_targets}-s{SEED}-t{tokens}-v{VERSION}.parquet"


def _stamp(checkpoint: Path) -> str:
    st = checkpoint.stat()
    return f"{checkpoint.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def stored(run: Run, checkpoint: Path, K: int, n_targets: int) -> pd.DataFrame | None:
    """The stored summary (:attr:`GradientFlow.summary`) for these parameters and this checkpoint, or None."""
    path = _path(run, K, n_targets)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None
    meta = json.loads((table.schema.metadata or {}).get(b"lstmviz", b"{}"))
    if meta.get("checkpoint") != _stamp(checkpoint):
        return None
    return table.to_pandas()


def compute(run: Run, module: object, checkpoint: Path, K: int, n_targets: int) -> pd.DataFrame:
    """:func:`~lstmviz.analysis.gradients.gradient_flow` of ``module`` (the run's model, loaded from
    ``checkpoint``) over the run's first :data:`TOKENS` token ids, seed :data:`SEED`; the summary is stored
    (written to a temporary file and renamed, so a killed process never leaves half a table) and returned."""
    from .gradients import gradient_flow

    ids = run.tokens_window(0, TOKENS, ["token_id"])["token_id"].to_numpy().copy()
    summary = gradient_flow(module, ids, K=K, n_targets=n_targets, seed=SEED).summary
    path = _path(run, K, n_targets)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(summary, preserve_index=False)
    meta = {"checkpoint": _stamp(checkpoint), "K": K, "n_targets": n_targets, "seed": SEED}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"lstmviz": json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return summary
