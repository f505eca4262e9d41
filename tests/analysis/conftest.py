"""Fixtures for the analysis tests: tiny runs written from arrays, and a seeded random generator."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from lstmviz.store import Run, open_run, tokens_frame, write_run


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Run]:
    """``make_run(acts, tokens=None, **columns)``: write a run and open it.

    acts: name → float ``[T, U]`` (stored as float16, so tests compare against ``run.activations``). tokens: a
    list of display strings (default one letter per step); columns: extra annotation columns of length T.
    """
    count = iter(range(1_000_000))

    def make(acts: Mapping[str, np.ndarray], tokens: list[str] | None = None, **columns: np.ndarray) -> Run:
        T = len(next(iter(acts.values())))
        display = tokens if tokens is not None else [chr(ord("a") + i % 26) for i in range(T)]
        table = tokens_frame(display)
        for key, values in columns.items():
            table[key] = values
        out = tmp_path / f"run{next(count)}"
        return open_run(write_run(out, table, dict(acts)))

    return make
