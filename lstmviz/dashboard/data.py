"""Cached loaders for the dashboard: runs and models with ``st.cache_resource``, results with ``st.cache_data``.

Every cached function is keyed by a :data:`RunRef` ``(path, mtime of manifest.json)``, so a run recorded again
under the same path is read afresh. Figures are never cached: they are cheap to build and plotly objects are
mutable. Nothing here writes ``st.session_state``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from ..analysis import overview as ov
from ..analysis import select_match
from ..analysis.probes import probe as rank_units
from ..analysis.projection import project
from ..analysis.saturation import saturation as gate_saturation
from ..errors import UserError
from ..models import samples
from ..record import record_text
from ..store import Run, RunError, open_run

RunRef = tuple[str, float]
"""``(resolved run path, mtime of its manifest.json)``: the cache key of a run."""

MAX_OVERVIEW_CELLS = ov.MAX_CELLS
OVERVIEW_BINS = ov.MAX_BINS
LIVE_MAX_CHARS = 5_000
GRADIENT_TOKENS = 20_000
"""Gradient flow runs on the first this many tokens of a run: its warm-up is one forward pass over them."""


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
    """Rows ``[start, stop)`` of the tokens table."""
    return run_of(key).tokens.iloc[start:stop].reset_index(drop=True)


@st.cache_data(max_entries=16, show_spinner=False)
def joined_text(key: RunRef) -> tuple[str, np.ndarray]:
    """The corpus as one string and int64 ``[tokens]`` character offsets of each token, for text search."""
    run = run_of(key)
    tok = run.tokens["token"].astype(str).tolist()
    sep = select_match.token_joiner(run)
    lengths = np.fromiter((len(t) + len(sep) for t in tok), np.int64, len(tok))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(tok) else np.zeros(0, np.int64)
    return sep.join(tok), offsets


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


# --- models and live recording ----------------------------------------------------------------------------------


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


def live_dir() -> Path:
    """Where live recordings go: a per-user folder under the system temp directory."""
    return Path(tempfile.gettempdir()) / f"lstmviz-live-{os.getuid() if hasattr(os, 'getuid') else 0}"


ModelRef = tuple[str, str, tuple[float, ...]]
"""``(kind, path, mtimes)``: the cache key of a model to record with. kind ``"run"``: the model a run was recorded
with, rebuilt from its manifest (path: the run; mtimes: its manifest's and its weight files'); kind
``"checkpoint"``: a native checkpoint file."""


def _mtime(path: str | None) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return 0.0


def live_model(run: Run, typed: str = "") -> ModelRef:
    """What live mode records with: the run's own model (rebuilt from ``model_source.rebuild`` in its manifest:
    a native checkpoint, or a factory with its weights and code directory), or a native checkpoint typed in the
    browser (``typed``, which must lie under the runs root or the sample models: see :func:`browsable`).

    Never unpickles: a run of a pickled module raises a :class:`UserError` that says so, and a typed file is read
    weights-only. A run recorded before manifests kept ``rebuild`` falls back to its native checkpoint.
    """
    if typed.strip():
        p = browsable(typed.strip(), "the checkpoint")
        if not p.is_file():
            raise UserError(f"no checkpoint file at {p}")
        return "checkpoint", str(p), (p.stat().st_mtime,)
    source = run.manifest.get("model_source") or {}
    spec = source.get("rebuild")
    if isinstance(spec, dict):
        if spec.get("pickled"):
            raise UserError(
                "this run's model is a pickled module (torch.save(model)); the dashboard never unpickles, since "
                "that runs code from the file. Record it from a state_dict with --model and --weights, or type a "
                "native checkpoint below"
            )
        files = (spec.get("checkpoint"), spec.get("weights"), spec.get("tokenizer"))
        return "run", str(run.path), (ref(run.path)[1], *(_mtime(f) for f in files))
    ckpt = checkpoint_of(run)
    if ckpt is None:
        raise UserError(
            "this run's manifest names no model that can be rebuilt (recorded before lstmviz kept one, or its "
            "checkpoint is gone): type a native checkpoint below"
        )
    return "checkpoint", str(ckpt), (ckpt.stat().st_mtime,)


@st.cache_resource(max_entries=8, show_spinner="Loading the model…")
def _live_loaded(model: ModelRef):
    from ..models.loading import rebuild
    from ..models.tokenizers import Tokenizer

    kind, path, _ = model
    if kind == "checkpoint":
        return load_model(path)  # weights-only: a pickle is refused with its reason
    manifest = open_run(path).manifest
    tok = manifest.get("tokenizer")
    return rebuild(manifest.get("model_source") or {}, tokenizer=Tokenizer.from_json(tok) if tok else None)


def live_run(model: ModelRef, text: str, annotate: str = "none") -> str:
    """Record ``text`` with ``model`` (from :func:`live_model`) into a temporary run directory; returns its path.

    ``annotate`` is ``"code"`` (Python tokenize tracks, when the text parses), ``"parens"`` or ``"none"``.
    The directory is named by a hash of (model, its files' mtimes, text), so the same text is recorded once.
    """
    if not text.strip():
        raise UserError("the text is empty: type or paste something to record")
    if len(text) > LIVE_MAX_CHARS:
        raise UserError(f"the text has {len(text):,} characters; live mode records at most {LIVE_MAX_CHARS:,}")
    return _live_run(model, text, annotate)


@st.cache_data(max_entries=32, show_spinner="Recording your text…")
def _live_run(model: ModelRef, text: str, annotate: str) -> str:
    digest = hashlib.sha1(f"{model!r}\0{annotate}\0{text}".encode()).hexdigest()[:16]
    out = live_dir() / digest
    if (out / "manifest.json").is_file():
        return str(out)
    loaded = _live_loaded(model)
    if annotate == "code":
        try:
            compile(text, "<live>", "exec")
        except (SyntaxError, ValueError):
            annotate = "none"  # Python tracks need code that tokenizes; plain text gets none
    with MODEL_LOCK:
        record_text(
            loaded,
            text,
            out,
            annotate=annotate,
            manifest={"corpus": {"live": True, "chars": len(text)}},
            streams=1,
            chunk=256,
            device="cpu",
            overwrite=True,
            progress=False,
        )
    return str(out)


# --- first start ------------------------------------------------------------------------------------------------


SAMPLES_PENDING = ".samples-pending"  # in the runs root while the first start records the samples
SAMPLES_LOCK = threading.Lock()  # sessions are threads of one process: one records, the others wait for it


def samples_pending(root: Path) -> bool:
    """Whether a first-start recording of the samples into ``root`` began and has not finished (the tab that
    started it was closed, say): the next start picks it up."""
    return (root / SAMPLES_PENDING).is_file()


def record_samples(root: Path, on_progress: Callable[[float, str], None], chars: int = 20000, **options) -> list[Path]:
    """Record every bundled sample model whose checkpoint exists and that ``root`` lacks (as ``lstmviz samples``
    does), with ``options`` for :func:`lstmviz.models.samples.record_sample`.

    ``on_progress(fraction, message)`` is called before each sample and once at the end. A marker file stays in
    ``root`` while samples are missing, so a recording cut short (the tab closed: streamlit stops the script with
    a BaseException) resumes on the next start; a recording that fails gives up the marker, so it is not retried
    by every session.
    """
    present = [s.name for s in samples.SAMPLES if (samples.SAMPLES_DIR / s.checkpoint).is_file()]
    if not present:
        raise UserError(
            f"no sample checkpoints in {samples.SAMPLES_DIR}: train them with "
            f"sample_models/train_all.sh, or record a run with `lstmviz record`"
        )
    marker = root / SAMPLES_PENDING
    with SAMPLES_LOCK:
        root.mkdir(parents=True, exist_ok=True)
        marker.touch()
        missing = [name for name in present if not (root / name).is_dir()]  # a run directory appears complete
        try:
            done = (
                samples.record_all(
                    root, on_progress, only=missing, overwrite=True, chars=chars, progress=False, **options
                )
                if missing
                else []
            )
        except Exception:
            marker.unlink(missing_ok=True)
            raise
        marker.unlink(missing_ok=True)
    return done


@st.cache_data(max_entries=32, show_spinner="Backpropagating through time…")
def _gradient_flow(key: RunRef, checkpoint: str, mtime: float, K: int, n_targets: int) -> pd.DataFrame:
    from ..analysis.gradients import gradient_flow as flow  # imports torch: only when a curve is asked for

    ids = run_of(key).tokens["token_id"].to_numpy()[:GRADIENT_TOKENS].copy()
    with MODEL_LOCK:
        return flow(_model(checkpoint, mtime).module, ids, K=K, n_targets=n_targets).summary


def gradient_flow(run: Run, K: int, n_targets: int) -> pd.DataFrame:
    """:func:`lstmviz.analysis.gradients.gradient_flow` summary for a run's model over the first
    :data:`GRADIENT_TOKENS` of its own tokens, cached."""
    ckpt = checkpoint_of(run)
    if ckpt is None:
        raise UserError(f"{run.path.name} names no checkpoint that still exists: gradient flow needs the model")
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
    (``track == value`` when a value is given, for a categorical track), strongest first."""
    return rank_units(run_of(key), track, name, value=value)


@st.cache_data(max_entries=64, show_spinner=False)
def values_at(key: RunRef, name: str, unit: int, idx: tuple[int, ...]) -> np.ndarray:
    """float32 ``[len(idx)]``: one unit's values at the given token positions."""
    return run_of(key).activations(name, [unit])[np.asarray(idx, np.int64), 0]
