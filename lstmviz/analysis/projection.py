"""2-D maps of token states: PCA (exact, fast) and UMAP (umap-learn, imported only when asked for).

A seeded sample of tokens is drawn, their state vectors read in row blocks, and the 2-D coordinates cached in
``<run>/cache/projection/`` under a hash of every parameter, so a page shows a map it has made before at once.
UMAP's first call in a process spends about a minute compiling with numba; precompute the default maps when
recording so the page finds them in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import ROW_GROUP, Run, RunError
from . import progress
from .select_match import span_text

CACHE_VERSION = 1
UMAP_VERSION = 2
"""Part of a UMAP map's cache key: version 2 reduces to :data:`UMAP_PCA_DIMS` first and runs
:data:`UMAP_EPOCHS` epochs."""
UMAP_PCA_DIMS = 50
"""UMAP runs on the first this many principal components (as is usual for wide data): the neighbour search then
compares 50 numbers per pair, not 512, and the map keeps as many of each token's neighbours as one made from
every unit (``bench/projection.py``)."""
UMAP_EPOCHS = 200
"""umap-learn's own choice for large data; below 10,000 points its default is 500 epochs."""
UMAP_COMPILE_S = 120.0
UMAP_S_PER_TOKEN = 5e-3
"""What a UMAP map costs on the shared 2-core development machine (``bench/projection.py``): minutes of numba
compiling on first use in a process (2 to 7 under load), then about 5 ms per token. Used only to estimate the
time left."""
METHODS = ("pca", "umap")
SAMPLES = 5000
"""Tokens a map samples by default (the Projection page's first view, and what recording precomputes)."""
MIN_TOKENS = {"pca": 3, "umap": 4}
"""Fewest tokens each method maps: PCA's 2 components need 3 points, UMAP's spectral start 2 + 2."""


def project(
    run: Run,
    name: str,
    *,
    method: str = "pca",
    n_samples: int = SAMPLES,
    seed: int = 0,
    units: Sequence[int] | None = None,
    context: int = 20,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
) -> pd.DataFrame:
    """A 2-D map of the states of sampled tokens: nearby points are tokens the layer represents alike.

    PCA shows the directions of largest variance (x = first principal component, y = second); UMAP keeps
    neighbourhoods and tends to show clusters. Colour the points by an annotation column to see what the layer
    separates. The sample is seeded, and the result is cached under the run's cache/ for these parameters.

    Args:
        run: an open run.
        name: activation name, e.g. ``rnn.l1.fwd.h``.
        method: ``"pca"`` or ``"umap"``.
        n_samples: tokens sampled uniformly without replacement (all of them if the run is smaller).
        seed: seed of the sample and of UMAP.
        units: project only these units (default all).
        context: tokens of context shown on each side of the token.
        n_neighbors, min_dist: UMAP's parameters.

    Returns:
        DataFrame, one row per sampled token in corpus order: x, y, then the tokens table's columns (idx, doc,
        pos, token_id, token, annotations …) and context (the text around the token, the token in ⟦ ⟧).
        ``attrs``: method, and explained_variance_ratio (PCA, 2 floats).
    """
    cols, params, path = _cache_entry(run, name, method, n_samples, seed, units, n_neighbors, min_dist)
    if not path.exists():
        _compute(run, name, cols, params, path)
    with np.load(path) as cached:
        idx, xy, explained = cached["idx"], cached["xy"], cached["explained"]
    frame = run.token_rows(idx).to_pandas().reset_index(drop=True)
    frame.insert(0, "x", xy[:, 0])
    frame.insert(1, "y", xy[:, 1])
    before, text, after = span_text(run, idx, idx + 1, context)
    frame["context"] = [f"{b}⟦{t}⟧{a}" for b, t, a in zip(before, text, after, strict=True)]
    frame.attrs = {"method": method, "explained_variance_ratio": explained.tolist()}
    return frame


def cached(run: Run, name: str, method: str, n_samples: int = SAMPLES, seed: int = 0) -> bool:
    """Whether :func:`project` with these arguments (and the other defaults) reads its map from the cache."""
    return _cache_entry(run, name, method, n_samples, seed, None, 15, 0.1)[2].exists()


def _cache_entry(
    run: Run,
    name: str,
    method: str,
    n_samples: int,
    seed: int,
    units: Sequence[int] | None,
    n_neighbors: int,
    min_dist: float,
) -> tuple[np.ndarray, dict, Path]:
    """(units ``[k]``, the parameters that key the cache, the cache file) of a projection."""
    if method not in METHODS:
        raise RunError(f"projection method must be one of {', '.join(METHODS)}, got {method!r}")
    n_units = run.units(name)
    cols = np.arange(n_units) if units is None else np.asarray(units, np.int64).reshape(-1)
    params = {
        "name": name,
        "method": method,
        "n_samples": int(n_samples),
        "seed": int(seed),
        "units": cols.tolist(),
        "n_tokens": run.n_tokens,
        "version": CACHE_VERSION,
    }
    if method == "umap":
        params |= {
            "n_neighbors": int(n_neighbors),
            "min_dist": float(min_dist),
            "umap_version": UMAP_VERSION,
            "pca_dims": UMAP_PCA_DIMS,
            "n_epochs": UMAP_EPOCHS,
        }
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    return cols, params, run.cache_dir / "projection" / f"{method}-{digest}.npz"


def default_activation(run: Run) -> str:
    """The activation a view starts on: the last layer's cell state, else its hidden state, else the last name."""
    kinds = {n: run.info(n)["kind"] for n in run.names}
    for kind in ("c", "h"):
        named = [n for n, k in kinds.items() if k == kind]
        if named:
            return named[-1]
    return run.names[-1]


def precompute(run: Run, methods: Sequence[str] = METHODS, n_samples: int = SAMPLES) -> None:
    """Fill the cache with the maps the Projection page opens on (default activation, seed 0, each method)."""
    for method in methods:
        project(run, default_activation(run), method=method, n_samples=min(n_samples, run.n_tokens))


def sample_tokens(n_tokens: int, n_samples: int, seed: int) -> np.ndarray:
    """int ``[min(n_samples, n_tokens)]``: token positions drawn without replacement, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_tokens, size=min(n_samples, n_tokens), replace=False))


def expected_seconds(run: Run, name: str, method: str, n_samples: int) -> float:
    """A rough estimate of the seconds :func:`project` takes for a map not in the cache (for a progress bar)."""
    n = min(n_samples, run.n_tokens)
    read = 1e-6 * n * run.units(name)  # a row group per sampled token at most; about a second for 5k × 256
    if method != "umap":
        return read + 1.0
    return read + (0.0 if _umap_compiled.is_set() else UMAP_COMPILE_S) + UMAP_S_PER_TOKEN * n


def gather_rows(run: Run, name: str, idx: np.ndarray, units: np.ndarray) -> np.ndarray:
    """float32 ``[len(idx), len(units)]``: the rows idx (sorted), read one row group at a time."""
    out = np.empty((len(idx), len(units)), np.float32)
    groups = idx // ROW_GROUP
    unique = np.unique(groups)
    for i, g in enumerate(unique):
        progress.report(i / len(unique), f"reading {len(idx):,} token states")
        here = np.flatnonzero(groups == g)
        block = run.activations(name, units, start=int(g) * ROW_GROUP, stop=(int(g) + 1) * ROW_GROUP)
        out[here] = block[idx[here] - int(g) * ROW_GROUP]
    return out


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact PCA by SVD of the centred data. x ``[n, U]`` → (scores ``[n, 2]``, explained variance ratio ``[2]``).

    Signs are fixed so each component's largest-magnitude loading is positive (as scikit-learn does).
    """
    return pca_scores(x, 2)


def pca_scores(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first k principal component scores ``[n, k]`` of x ``[n, U]`` (zero columns beyond rank), and the
    explained variance ratio ``[k]``; signs as :func:`pca_2d` says."""
    xc = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    vt = vt[:k]  # (k', U), k' = k unless there are fewer units or tokens
    vt = vt * np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    scores, ratio = np.zeros((len(x), k)), np.zeros(k)
    scores[:, : len(vt)] = xc @ vt.T
    total = float((s**2).sum())
    if total:
        ratio[: len(vt)] = s[: len(vt)] ** 2 / total
    return scores, ratio


_umap_compiled = threading.Event()  # set after the first UMAP of this process: its numba code is compiled


WARM_TOKENS = 4200
"""umap-learn searches neighbours exactly below 4,096 points and with NN-descent above: a warm-up map must be
larger, or the first real map still compiles NN-descent."""


def warm_umap() -> None:
    """Compile UMAP's numba code now (about a minute on first use in a process) on a random map of
    :data:`WARM_TOKENS` points, so that the first map a page asks for costs only its own time. Meant for a
    background thread at start; a no-op once a map was made in this process."""
    if not _umap_compiled.is_set():
        umap_2d(np.random.default_rng(0).normal(size=(WARM_TOKENS, 8)).astype(np.float32), 0, 15, 0.1, n_epochs=10)


class _EpochCounter:
    """A file for umap-learn's tqdm bar (its only progress hook): each write carries ``n/total`` epochs done."""

    def write(self, text: str) -> None:
        done = re.findall(r"(\d+)/(\d+)", text)
        if done:
            n, total = map(int, done[-1])
            progress.report(EPOCH_START + (1 - EPOCH_START) * n / max(total, 1), f"laying out: epoch {n}/{total}")

    def flush(self) -> None:
        pass


EPOCH_START = 0.5
"""The share of a UMAP map's progress given to what comes before its epochs (compiling, the neighbour graph)."""


def umap_2d(x: np.ndarray, seed: int, n_neighbors: int, min_dist: float, n_epochs: int = UMAP_EPOCHS) -> np.ndarray:
    """UMAP to 2-D, seeded (umap-learn then runs single-threaded and reproducibly). x ``[n, U]`` → ``[n, 2]``.

    Data wider than :data:`UMAP_PCA_DIMS` is first reduced to that many principal components.
    """
    import umap  # a heavy import (numba): only when a UMAP map is asked for

    if x.shape[1] > UMAP_PCA_DIMS:
        x, _ = pca_scores(x, UMAP_PCA_DIMS)
    first = "" if _umap_compiled.is_set() else " (compiling UMAP: its first use in this process)"
    progress.report(0.0, f"finding each token's neighbours{first}")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=min(n_neighbors, len(x) - 1),
        min_dist=min_dist,
        random_state=seed,
        n_jobs=1,
        n_epochs=n_epochs,
        tqdm_kwds={"disable": False, "file": _EpochCounter(), "bar_format": "{n}/{total}", "mininterval": 0.25},
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded means 1 job
        xy = reducer.fit_transform(x.astype(np.float32)).astype(np.float64)
    _umap_compiled.set()
    return xy


def _compute(run: Run, name: str, cols: np.ndarray, params: dict, path: Path) -> None:
    idx = sample_tokens(run.n_tokens, params["n_samples"], params["seed"])
    if len(idx) < MIN_TOKENS[params["method"]]:
        raise RunError(
            f"a {params['method']} projection needs at least {MIN_TOKENS[params['method']]} tokens; "
            f"the run has {run.n_tokens}"
        )
    umap_ = params["method"] == "umap"
    with progress.part(0.0, 0.1 if umap_ else 0.8):
        x = gather_rows(run, name, idx, cols)  # (n, U)
    if not umap_:
        xy, explained = pca_2d(x)
    else:
        with progress.part(0.1, 1.0):
            xy = umap_2d(x, params["seed"], params["n_neighbors"], params["min_dist"], params["n_epochs"])
        explained = np.zeros(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npz")
    np.savez(tmp, idx=idx, xy=xy, explained=explained)
    os.replace(tmp, path)
