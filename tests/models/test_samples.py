"""The bundled corpora and checkpoints: sizes, reproducibility, and that the code LSTM learned structure."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("sample", [s for s in SAMPLES if not s.docs], ids=lambda s: s.name)
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


def _classifier():
    """The bracket classifier sample, as ``lstmviz record --docs`` loads it, and its own module on the side."""
    sample = next(s for s in SAMPLES if s.docs)
    loaded = lstmviz.load_model(
        model=sample.factory,
        weights=SAMPLES_DIR / sample.checkpoint,
        code=SAMPLES_DIR,
        tokenizer=SAMPLES_DIR / sample.tokenizer,
    )
    return sample, loaded


def test_the_classifier_sample_is_small_and_knows_balanced_strings():
    sample, loaded = _classifier()
    path = SAMPLES_DIR / sample.checkpoint
    assert path.stat().st_size < 1_000_000
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["metrics"]["test_accuracy"] >= 0.95 and ckpt["command"].startswith("python sample_models/")
    import balanced_gru as bg  # importable now: load_model put the samples folder on the path

    for s in ("(a(b)c)", "())(()", "((", "ab", ")("):  # the checker's verdict, by the model on each string alone
        with torch.no_grad():
            pred = loaded.module(torch.as_tensor(loaded.tokenizer.encode(s))[None]).argmax(1).item()
        assert pred == bg.balanced(s), s


def test_the_classifier_sample_records_each_document_alone_with_its_verdict(tmp_path):
    """Recorded as a sample (``--docs``): every document's states are the GRU's on that document alone, both
    directions, and its ``pred`` is the model's own verdict on it, next to the true label."""
    from test_documents import check_alone

    from lstmviz.documents import doc_table, read_docs

    sample, loaded = _classifier()
    run = lstmviz.open_run(samples.record_sample(sample, tmp_path / "b", progress=False, projections=()))
    assert run.manifest["sample"] == "balanced_gru"
    table = doc_table(run)
    docs = read_docs(SAMPLES_DIR / sample.corpus)
    assert table.text.tolist() == docs.texts and table.doc_label.tolist() == docs.fields.label.tolist()
    model = loaded.module
    for d in range(0, len(docs), 7):
        ids = torch.as_tensor(loaded.tokenizer.encode(docs.texts[d]))[None]  # (1, T): batch-first
        check_alone(run, d, model.rnn, model.embedding(ids))
        with torch.no_grad():
            p = torch.softmax(model(ids)[0], -1).numpy()
        assert table.pred[d] == p.argmax() and table.correct[d] == (p.argmax() == table.doc_label[d])
        np.testing.assert_allclose(table.loc[d, ["p0", "p1"]].to_numpy(float), p, rtol=1e-5, atol=1e-6)
    assert table.correct.mean() >= 0.95
