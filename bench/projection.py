"""A UMAP map of sampled token states: umap-learn's defaults versus the Projection page's settings.

    nice python bench/projection.py --run runs/code_lstm                 # its default activation, 5,000 tokens
    nice python bench/projection.py --run runs/code_lstm --rounds 3 --n 2000

Both settings map the same seeded sample, in one process, in interleaved rounds, after the warm-up map of
:func:`~lstmviz.analysis.projection.warm_umap` that pays numba's compiling (about a minute on first use in a
process; it is printed, not compared):

* defaults: the raw states (all units), umap-learn's own epochs (500 below 10,000 points);
* page: the first :data:`~lstmviz.analysis.projection.UMAP_PCA_DIMS` principal components, and
  :data:`~lstmviz.analysis.projection.UMAP_EPOCHS` epochs (what :func:`~lstmviz.analysis.projection.umap_2d` does).

How well each map keeps neighbourhoods is printed as the share of each token's 10 nearest neighbours in the map
that are among its 10 nearest in the states themselves (all units, Euclidean; over 1,500 sampled tokens). Prints
``metric: value`` lines, the speed ratio first.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from lstmviz.analysis import projection as pj
from lstmviz.store import open_run


def neighbours(xy: np.ndarray, k: int = 10) -> np.ndarray:
    """int ``[n, k]``: each point's k nearest others."""
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def default_umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--name", default=None, help="activation (default: the page's default)")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    run = open_run(args.run)
    name = args.name or pj.default_activation(run)
    idx = pj.sample_tokens(run.n_tokens, args.n, 0)
    x = pj.gather_rows(run, name, idx, np.arange(run.units(name)))  # (n, U)
    t = time.perf_counter()
    pj.warm_umap()  # pays the compiling of both neighbour searches, so neither setting's first round does
    compile_s = time.perf_counter() - t
    times: dict[str, list[float]] = {"defaults": [], "page": []}
    maps: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for label, fn in (("defaults", lambda: default_umap(x, 0)), ("page", lambda: pj.umap_2d(x, 0, 15, 0.1))):
            t = time.perf_counter()
            maps[label] = fn()
            times[label].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    sample = np.random.default_rng(0).choice(len(x), size=min(1500, len(x)), replace=False)
    truth = neighbours(x[sample].astype(np.float64))
    kept = {
        k: np.mean([len(set(p) & set(q)) / len(p) for p, q in zip(neighbours(m[sample]), truth, strict=True)])
        for k, m in maps.items()
    }
    print(f"umap_speedup_page_vs_defaults: {med['defaults'] / med['page']:.2f}")
    print(f"umap_defaults_s: {med['defaults']:.1f}")
    print(f"umap_page_s: {med['page']:.1f}")
    print(f"first_use_compile_s: {compile_s:.1f}")
    print(f"neighbours_kept_k10_defaults: {kept['defaults']:.2f}")
    print(f"neighbours_kept_k10_page: {kept['page']:.2f}")
    print(f"tokens: {len(x)}  units: {x.shape[1]}  activation: {name}  rounds: {args.rounds}")


if __name__ == "__main__":
    main()
