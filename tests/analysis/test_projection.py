"""project: PCA recovers known principal directions; sampling is seeded and cached; UMAP separates clusters."""

from __future__ import annotations

import numpy as np
import pytest

from lstmviz.analysis import projection as pj
from lstmviz.store import RunError

NAME = "rnn.l0.fwd.h"


@pytest.fixture
def known(make_run, rng):
    """2000 points in 10-D with principal directions q1, q2 (standard deviations 5 and 2, the rest 0.3)."""
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    sd = np.array([5, 2, *[0.3] * 8])
    x = (rng.normal(size=(2000, 10)) * sd) @ q.T + rng.normal(size=10)
    label = np.where(x @ q[:, 0] > 0, "right", "left")
    return make_run({NAME: x}, side=label), q, sd


def test_pca_recovers_the_known_directions(known):
    run, q, sd = known
    got = pj.project(run, NAME, n_samples=5000)
    assert len(got) == 2000 and got["idx"].tolist() == list(range(2000))
    stored = run.activations(NAME).astype(np.float64)
    centred = stored - stored.mean(0)
    for axis, direction in (("x", q[:, 0]), ("y", q[:, 1])):
        want = centred @ direction
        r = np.corrcoef(got[axis], want)[0, 1]
        assert abs(r) > 0.999
        np.testing.assert_allclose(got[axis] * np.sign(r), want, atol=0.1)
    ratio = got.attrs["explained_variance_ratio"]
    np.testing.assert_allclose(ratio, sd[:2] ** 2 / (sd**2).sum(), rtol=0.1)
    assert got.attrs["method"] == "pca"


def test_sample_is_seeded_cached_and_annotated(known, monkeypatch):
    run, _, _ = known
    a = pj.project(run, NAME, n_samples=300, seed=4, context=3)
    assert len(a) == 300 and a["idx"].is_monotonic_increasing
    assert {"x", "y", "idx", "doc", "pos", "token", "side", "context"} <= set(a.columns)
    i = int(a["idx"].iloc[10])
    tokens = run.tokens["token"].tolist()
    assert a["context"].iloc[10] == "".join(tokens[max(i - 3, 0) : i]) + f"⟦{tokens[i]}⟧" + "".join(
        tokens[i + 1 : i + 4]
    )
    monkeypatch.setattr(pj, "_compute", lambda *args: pytest.fail("recomputed a cached projection"))
    b = pj.project(run, NAME, n_samples=300, seed=4, context=3)
    np.testing.assert_array_equal(a[["x", "y", "idx"]].to_numpy(), b[["x", "y", "idx"]].to_numpy())
    monkeypatch.undo()
    c = pj.project(run, NAME, n_samples=300, seed=5)
    assert a["idx"].tolist() != c["idx"].tolist()
    with pytest.raises(RunError, match="method"):
        pj.project(run, NAME, method="tsne")


def test_pca_of_selected_units(known):
    run, _, _ = known
    got = pj.project(run, NAME, units=[3], n_samples=50)
    stored = run.activations(NAME, [3])[got["idx"].to_numpy(), 0]
    np.testing.assert_allclose(np.abs(got["x"]), np.abs(stored - stored.mean()), atol=1e-5)
    assert (got["y"] == 0).all()


@pytest.mark.slow
def test_umap_separates_two_clusters_reproducibly(make_run, rng):
    centres = rng.normal(0, 6, (2, 8))
    label = rng.random(300) < 0.5
    x = centres[label.astype(int)] + rng.normal(size=(300, 8))
    run = make_run({NAME: x}, blob=label)
    a = pj.project(run, NAME, method="umap", n_samples=300, seed=1)
    xy, blob = a[["x", "y"]].to_numpy(), a["blob"].to_numpy()
    nearest = np.argsort(((xy[:, None] - xy[None]) ** 2).sum(-1), axis=1)[:, 1:6]
    assert (blob[nearest] == blob[:, None]).mean() > 0.98
    for f in (run.cache_dir / "projection").iterdir():
        f.unlink()
    b = pj.project(run, NAME, method="umap", n_samples=300, seed=1)
    np.testing.assert_allclose(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy())


SEEN: list[tuple[dict, np.ndarray]] = []


class FakeUMAP:
    """Stands in for umap.UMAP: keeps what it was given (in SEEN), reports epochs through its tqdm file, maps to
    zeros."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit_transform(self, x):
        SEEN.append((self.kwargs, x))
        self.kwargs["tqdm_kwds"]["file"].write(f"\r{self.kwargs['n_epochs']}/{self.kwargs['n_epochs']}")
        return np.zeros((len(x), 2), np.float32)


def test_umap_runs_on_the_leading_principal_components_and_reports_its_epochs(make_run, rng, monkeypatch):
    import sys
    import threading
    import types

    from lstmviz.analysis import progress

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(pj, "_umap_compiled", threading.Event())  # a fake map compiles nothing
    SEEN.clear()
    x = rng.normal(size=(300, 80)) * np.linspace(3, 0.1, 80)
    run = make_run({NAME: x})
    heard = []
    with progress.listening(lambda f, m: heard.append((f, m))):
        pj.project(run, NAME, method="umap", n_samples=300)
    ((kwargs, given),) = SEEN
    assert kwargs["n_epochs"] == pj.UMAP_EPOCHS and given.shape == (300, pj.UMAP_PCA_DIMS)
    want, _ = pj.pca_scores(run.activations(NAME), pj.UMAP_PCA_DIMS)
    np.testing.assert_allclose(given, want, rtol=1e-4, atol=1e-4)
    assert heard[-1] == (1.0, f"laying out: epoch {pj.UMAP_EPOCHS}/{pj.UMAP_EPOCHS}")
    assert [f for f, _ in heard] == sorted(f for f, _ in heard)
    pj.umap_2d(rng.normal(size=(10, 3)), 0, 15, 0.1)  # narrow data goes in as it is
    assert SEEN[-1][1].shape == (10, 3)
