"""The bundled corpora and checkpoints: sizes, reproducibility, and that the code LSTM learned structure."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstmviz
from lstmviz.cli import main
from lstmviz.errors import UserError
from lstmviz.models import samples
from lstmviz.models.samples import SAMPLES, SAMPLES_DIR


def _make_corpora():
    spec = importlib.util.spec_from_file_location("make_corpora", SAMPLES_DIR / "make_corpora.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpora_are_small_and_utf8():
    for name in ("python_stdlib.txt", "shakespeare.txt", "parens.txt"):
        path = SAMPLES_DIR / "corpora" / name
        assert path.stat().st_size <= 2_000_000
        path.read_bytes().decode("utf-8")


def test_parens_corpus_is_regenerated_byte_for_byte():
    assert _make_corpora().parens_corpus() == (SAMPLES_DIR / "corpora" / "parens.txt").read_text()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_checkpoints_load_and_are_small(sample):
    path = SAMPLES_DIR / sample.checkpoint
    assert path.stat().st_size < 5_000_000
    loaded = lstmviz.load_model(path)
    assert loaded.description["metrics"]["val_bpc"] > 0
    assert loaded.description["training"]["command"].startswith("lstmviz train")
    text = (SAMPLES_DIR / sample.corpus).read_text()[:500]
    loaded.check_ids(loaded.tokenizer.encode(text))


def _best_r(acts: np.ndarray, track: np.ndarray) -> float:
    a = acts - acts.mean(0)
    t = track - track.mean()
    r = a.T @ t / np.sqrt((a**2).sum(0) * (t**2).sum() + 1e-12)
    return float(np.abs(r).max())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sample", "columns", "bar"),
    [("code_lstm", ("bracket_depth", "in_string"), 0.65), ("parens_lstm", ("depth",), 0.9)],
)
def test_sample_has_units_that_track_structure(tmp_path, sample, columns, bar):
    """The issue's bar: a unit clearly tracks bracket depth or being inside a string (README: r ≈ 0.7, 0.95)."""
    argv = ["samples", "--only", sample, "--out", str(tmp_path), "--chars", "6000", "--no-progress"]
    assert main(argv) == 0
    run = lstmviz.open_run(tmp_path / sample)
    best = max(
        _best_r(run.activations(name).astype(np.float64), run.tokens[col].to_numpy(np.float64))
        for name in run.names
        if name.endswith((".c", ".h"))
        for col in columns
    )
    assert best > bar


def test_excerpts_start_at_a_boundary():
    code = "# ==== a.py ====\nx = 1\n\n# ==== b.py ====\ny = (2)\n"
    assert SAMPLES[0].excerpt(code, 30) == "# ==== b.py ====\ny = (2)\n"  # the next file boundary
    assert SAMPLES[0].excerpt(code, 20) == "y = (2)\n"  # none after the cut: the next line
    assert SAMPLES[0].excerpt(code, 1000) == code
    parens = "(a)\n((b))\n(c)\n"
    assert SAMPLES[-1].excerpt(parens, 6) == "(c)\n"


def test_samples_dir_follows_the_environment(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    code = "from lstmviz.models.samples import SAMPLES_DIR; print(SAMPLES_DIR)"
    env = {**os.environ, "LSTMVIZ_SAMPLES": str(elsewhere)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(elsewhere)
    env.pop("LSTMVIZ_SAMPLES")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(Path(samples.__file__).resolve().parents[2] / "sample_models")  # the checkout's


def test_missing_samples_dir_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"no sample models at .*none: set LSTMVIZ_SAMPLES to the sample_models"):
        samples.record_all(tmp_path / "runs", samples_dir=tmp_path / "none")
    assert not (tmp_path / "runs").exists()
