"""Shared fixtures: tiny models, a tiny recorded run, and the one local Ray cluster of the session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TinyCharModel

import lstmviz


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster shared by every test that records shards: starting one costs seconds."""
    ray = pytest.importorskip("ray")
    # Workers import the tests' models (and lstmviz from this checkout) by module name.
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture
def tiny_model() -> TinyCharModel:
    torch.manual_seed(0)
    return TinyCharModel().eval()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> lstmviz.Run:
    """A 600-token run of a 2-layer 8-unit LSTM over a random 12-symbol text."""
    torch.manual_seed(0)
    model = TinyCharModel().eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, 600)
    display = [chr(ord("a") + i) for i in ids]
    out = tmp_path_factory.mktemp("runs") / "tiny"
    lstmviz.record_corpus(model, ids, out, streams=3, chunk=50, display=display, progress=False)
    return lstmviz.open_run(out)
