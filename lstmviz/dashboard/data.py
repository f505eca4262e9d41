"""Cached loaders for the dashboard: runs and models with ``st.cache_resource``, results with ``st.cache_data``.

Every cached function is keyed by a :data:`RunRef` ``(path, mtime of manifest.json)``, so a run recorded again
under the same path is read afresh. Figures are never cached: they are cheap to build and plotly objects are
mutable. Nothing here writes ``st.session_state``, and nothing here records: live text is recorded by
:mod:`lstmviz.dashboard.live`, the samples at first start by :mod:`lstmviz.dashboard.prepare`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from ..analysis import gradient_cache, select_match
from ..analysis import overview as ov
from ..analysis.probes import stored_probe
from ..analysis.projection import project
from ..analysis.saturation import saturation as gate_saturation
from ..errors import UserError
from ..models import samples
from ..store import Run, RunError, open_run
from ..store.reader import drop_mapped_pages

RunRef = tuple[str, float]
"""``(resolved run path, mtime of its manifest.json)``: the cache key of a run."""

MAX_OVERVIEW_CELLS = ov.MAX_CELLS
OVERVIEW_BINS = ov.MAX_BINS
GRADIENT_TOKENS = gradient_cache.TOKENS
"""Gradient flow runs on the first this many tokens of a run: its warm-up is one forward pass over them."""


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere (macOS, musl)."""
    try:
        return getattr(ctypes.CDLL("libc.so.6"), "malloc_trim", None) if sys.platform.startswith("linux") else None
    except OSError:
        return None


def release_memory() -> None:
    """Give the C heap's freed pages back to the system, once per script run. Reading parquet leaves many small
    freed blocks across malloc's arenas (about 200 MB after a few whole columns at 10M tokens) that glibc keeps,
    so each next read would peak that much higher; a trim costs a few milliseconds. The pages the run read from
    the memory maps of the tokens and the match indices leave the resident set too (:func:`drop_mapped_pages`)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    drop_mapped_pages()


# --- where runs live ------------------------------------------------------------------------------------------


def runs_root(argv: Sequence[str] | None = None) -> Path:
    """The runs root: ``--runs DIR`` after ``streamlit run app.py --``, else ``$LSTMVIZ_RUNS``, else ``runs/``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    for i, arg in enumerate(argv):
        if arg == "--runs" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser()
        if arg.startswith("--runs="):
            return Path(arg.split("=", 1)[1]).expanduser()
    return Path(os.environ.get("LSTMVIZ_RUNS", "runs")).expanduser()


def browsable(path: str | os.PathLike, what: str = "the run", root: Path | None = None) -> Path:
    """``path`` made absolute, when it lies under the runs root or the sample models; a :class:`UserError` saying
    why otherwise. Every path that arrives from the browser (the sidebar's box, ``?run=``, live mode's
    checkpoint) passes here first, because the app may serve a network (a classroom LAN): whoever reaches it must
    not read arbitrary files of the machine. The check is on the path as written, with ``..`` folded, so links
    the operator placed under the runs root are followed."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    roots = [Path(os.path.abspath(r)) for r in (root or runs_root(), samples.SAMPLES_DIR)]
    if any(p == r or r in p.parents for r in roots):
        return p
    raise UserError(
        f"{what} {os.fspath(path)!r} is outside the runs root ({roots[0]}) and the sample models ({roots[1]}): "
        "the dashboard opens only what lies under them, since anyone who can reach it could type any path. "
        "Move or link it under the runs root, or start the app with `-- --runs DIR`."
    )


def find_runs(root: Path, depth: int = 3) -> list[Path]:
    """Run directories (holding a manifest.json) under ``root``, at most ``depth`` levels down, sorted."""
    found: list[Path] = []

    def walk(d: Path, level: int) -> None:
        if (d / "manifest.json").is_file():
            found.append(d)
            return
        if level >= depth:
            return
        try:
            children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
        except OSError:
            return
        for c in children:
            if c.name not in ("cache", "acts") and not c.name.endswith(".partial"):
                walk(c, level + 1)

    if root.is_dir():
        walk(root, 0)
    return found


def ref(path: str | os.PathLike) -> RunRef:
    """The cache key of the run at ``path``; a missing manifest gives mtime 0 (open_run then explains)."""
    p = Path(path).expanduser().resolve()
    try:
        mtime = (p / "manifest.json").stat().st_mtime
    except OSError:
        mtime = 0.0
    return str(p), mtime


@st.cache_resource(max_entries=16, show_spinner=False)
def _open(path: str, mtime: float) -> Run:
    return open_run(path)


def run_of(key: RunRef) -> Run:
    """The open :class:`Run` of a key (one shared object per path and mtime, across sessions)."""
    return _open(*key)


def load_run(path: str | os.PathLike) -> tuple[Run, RunRef]:
    """Open (cached) the run at ``path``; raises :class:`RunError` with a one-line reason."""
    if "\0" in os.fspath(path):  # from a URL or a paste: no file system can hold it, and os calls raise on it
        raise RunError(
            f"the run path {os.fspath(path)!r} contains a NUL character (\\0), which no directory name can hold: "
            "type the path again without it"
        )
    key = ref(path)
    return run_of(key), key


# --- activations ----------------------------------------------------------------------------------------------


@st.cache_data(max_entries=64, show_spinner=False)
def window(key: RunRef, name: str, start: int, stop: int, units: tuple[int, ...] | None = None) -> np.ndarray:
    """float32 ``[stop-start, units]`` values of one activation for a token window."""
    return run_of(key).activations(name, None if units is None else list(units), start, stop)


@st.cache_data(max_entries=16, show_spinner="Downsampling the whole run…")
def overview(key: RunRef, name: str, max_cells: int = MAX_OVERVIEW_CELLS) -> tuple[np.ndarray, int]:
    """:func:`lstmviz.analysis.overview.overview`: (float32 ``[bins, units]`` bin means, tokens per bin), at
    most :data:`OVERVIEW_BINS` bins and bins × units ≤ max_cells (recorded with the run, else built once)."""
    return ov.overview(run_of(key), name, max_cells, OVERVIEW_BINS)


@st.cache_data(max_entries=64, show_spinner=False)
def tokens_window(key: RunRef, start: int, stop: int) -> pd.DataFrame:
    """Rows ``[start, stop)`` of the tokens table (from its memory map: the window's pages alone)."""
    return run_of(key).tokens_window(start, stop)


@st.cache_data(max_entries=16, show_spinner=False)
def joined_text(key: RunRef) -> tuple[str, np.ndarray]:
    """The corpus as one string and int64 ``[tokens]`` character offsets of each token, for text search."""
    run = run_of(key)
    # in arrow, not as a list: 10M tokens as Python strings would hold ~500 MB for one search box
    tok = run.token_table.column("token").cast(pa.large_string()).combine_chunks()
    sep = select_match.token_joiner(run)
    lengths = pc.add(pc.utf8_length(tok), len(sep)).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(tok) else np.zeros(0, np.int64)
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(tok)], pa.int64()), tok)
    return (pc.binary_join(whole, pa.scalar(sep, pa.large_string()))[0].as_py() if len(tok) else ""), offsets


def find_text(key: RunRef, needle: str, start: int) -> int | None:
    """Token index of the first occurrence of ``needle`` that begins at token ``start`` or later (wrapping
    around to the beginning), or None when it does not occur."""
    text, offsets = joined_text(key)
    if not needle:
        return None
    begin = int(offsets[start]) if 0 <= start < len(offsets) else 0
    at = text.find(needle, begin)
    if at < 0:
        at = text.find(needle)
    if at < 0:
        return None
    return int(np.searchsorted(offsets, at, side="right") - 1)


def joiner(run: Run) -> str:
    """How the run's display strings join into text: ``""`` for characters, ``" "`` for words."""
    return select_match.token_joiner(run)


def vocab(run: Run) -> list[str] | None:
    """The run's vocabulary (id → display string) from its manifest, if recorded with a tokenizer."""
    tok = run.manifest.get("tokenizer") or {}
    v = tok.get("vocab")
    return list(v) if isinstance(v, list) else None


# --- analyses (thin cached wrappers; the analysis modules hold the logic and the help text) ---------------------


@st.cache_data(max_entries=64, show_spinner="Selecting units…")
def select(
    key: RunRef, name: str, span: tuple[int, int], theta: float, quantile: bool, pad_before: int, pad_after: int
) -> select_match.Selection:
    """:func:`lstmviz.analysis.select_match.select`, cached."""
    th = select_match.Threshold(theta, quantile)
    return select_match.select(run_of(key), name, span, th, pad_before, pad_after)


@st.cache_data(max_entries=64, show_spinner="Matching across the corpus…")
def match(
    key: RunRef,
    name: str,
    units: tuple[int, ...],
    theta: float,
    quantile: bool,
    pad_before: int,
    pad_after: int,
    top: int = 20,
) -> pd.DataFrame:
    """:func:`lstmviz.analysis.select_match.match`, cached."""
    th = select_match.Threshold(theta, quantile)
    return select_match.match(run_of(key), name, list(units), th, pad_before=pad_before, pad_after=pad_after, top=top)


@st.cache_data(max_entries=64, show_spinner=False)
def on_counts(
    key: RunRef, name: str, units: tuple[int, ...], theta: float, quantile: bool, start: int, stop: int
) -> np.ndarray:
    """int ``[stop - start]``: how many of ``units`` are on (≥ θ) at each step of a window, from the match index."""
    index = select_match.on_index(run_of(key), name, select_match.Threshold(theta, quantile))
    return select_match.on_counts(index, units, start, stop).astype(np.int64)


# --- models -------------------------------------------------------------------------------------------------------


def checkpoint_of(run: Run) -> Path | None:
    """The checkpoint a run was recorded from, when its manifest names one that still exists."""
    source = run.manifest.get("model_source") or {}
    ckpt = source.get("checkpoint")
    if not ckpt:
        return None
    for p in (Path(ckpt), samples.SAMPLES_DIR.parent / ckpt, run.path / ckpt):  # relative: to the checkout, or the run
        if p.is_file():
            return p.resolve()
    return None


MODEL_LOCK = threading.Lock()
"""Cached models are shared by every session; recording swaps a module's forward, so one user at a time."""


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _model(path: str, mtime: float):
    from ..models.loading import load_model

    return load_model(path)


def load_model(path: str | os.PathLike):
    """The :class:`~lstmviz.models.loading.LoadedModel` of a checkpoint (cached by path and mtime)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"no checkpoint file at {p}")
    return _model(str(p.resolve()), p.stat().st_mtime)


@st.cache_data(max_entries=32, show_spinner="Backpropagating through time…")
def _gradient_flow(key: RunRef, checkpoint: str, mtime: float, K: int, n_targets: int) -> pd.DataFrame:
    run = run_of(key)
    with MODEL_LOCK:
        return gradient_cache.compute(run, _model(checkpoint, mtime).module, Path(checkpoint), K, n_targets)


def gradient_flow(run: Run, K: int, n_targets: int) -> pd.DataFrame:
    """:func:`lstmviz.analysis.gradients.gradient_flow` summary for a run's model over the first
    :data:`GRADIENT_TOKENS` of its own tokens: the curve stored with the run when there is one (the samples'
    are precomputed at first start), else computed, stored and cached."""
    ckpt = checkpoint_of(run)
    if ckpt is None:
        raise UserError(f"{run.path.name} names no checkpoint that still exists: gradient flow needs the model")
    done = gradient_cache.stored(run, ckpt, K, n_targets)
    if done is not None:
        return done
    return _gradient_flow(ref(run.path), str(ckpt), ckpt.stat().st_mtime, K, n_targets)


@st.cache_data(max_entries=64, show_spinner=False)
def unit_trace(
    key: RunRef, name: str, unit: int, start: int, stop: int, weights: tuple[np.ndarray, np.ndarray] | None
) -> pd.DataFrame:
    """:func:`lstmviz.dashboard.cellview.unit_trace`, cached."""
    from .cellview import unit_trace as trace

    w_hh, b_hh = weights if weights is not None else (None, None)
    return trace(run_of(key), name, unit, start, stop, w_hh, b_hh)


@st.cache_data(max_entries=32, show_spinner="Counting saturated gates…")
def saturation(key: RunRef, low: float, high: float) -> pd.DataFrame:
    """:func:`lstmviz.analysis.saturation.saturation` of every gate of the run: one row per gate unit with
    frac_low (< ``low``) and frac_high (> ``high``). Thresholds are rounded to 4 decimals, so a slider's 0.1
    finds the counts recorded while streaming."""
    return gate_saturation(run_of(key), low=round(float(low), 4), high=round(float(high), 4))


@st.cache_data(max_entries=32, show_spinner="Projecting token states…")
def projection(key: RunRef, name: str, method: str, n: int) -> tuple[pd.DataFrame, tuple[float, ...]]:
    """:func:`lstmviz.analysis.projection.project` of ``n`` sampled token states (seed 0), with a hover column.

    Returns (table, explained variance ratio of x and y: two floats for PCA, none for UMAP).
    """
    table = project(run_of(key), name, method=method, n_samples=n, seed=0)
    explained = tuple(float(v) for v in table.attrs.get("explained_variance_ratio", ()))
    hover = [f"#{i} {c}" for i, c in zip(table["idx"], table["context"], strict=True)]
    return table.assign(hover=[h.replace("\n", "↵").replace("\t", "→") for h in hover]), explained


@st.cache_data(max_entries=32, show_spinner="Scoring every unit…")
def probe(key: RunRef, name: str, track: str, value: str | None = None) -> pd.DataFrame:
    """:func:`lstmviz.analysis.probes.probe`: the units of ``name`` ranked against the annotation ``track``
    (``track == value`` when a value is given, for a categorical track), strongest first; stored with the run
    (:func:`~lstmviz.analysis.probes.stored_probe`), so a later session reads it back."""
    return stored_probe(run_of(key), track, name, value=value)


@st.cache_data(max_entries=64, show_spinner=False)
def values_at(key: RunRef, name: str, unit: int, idx: tuple[int, ...]) -> np.ndarray:
    """float32 ``[len(idx)]``: one unit's values at the given token positions."""
    return run_of(key).activations(name, [unit])[np.asarray(idx, np.int64), 0]
