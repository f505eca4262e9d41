"""Gradient flow on the bundled sample models: the vanilla RNN forgets far faster than the LSTM."""

from __future__ import annotations

import pytest
import torch

import lstmviz
from lstmviz.analysis.gradients import gradient_flow
from lstmviz.models.samples import SAMPLES_DIR


def decay_at(name: str, k: int, text: str) -> dict[str, float]:
    """Mean ‖∂ℓ_t/∂·_{t−k}‖ over mean ‖∂ℓ_t/∂·_t‖ for each series of a sample model."""
    loaded = lstmviz.load_model(SAMPLES_DIR / f"{name}.pt")
    ids = torch.as_tensor(loaded.tokenizer.encode(text))
    flow = gradient_flow(loaded.module, ids, K=k, n_targets=64, seed=0)
    mean = flow.summary.set_index(["series", "k"])["mean"]
    return {series: mean[(series, k)] / mean[(series, 0)] for series in flow.norms}


@pytest.mark.slow
def test_rnn_gradients_vanish_far_faster_than_lstm():
    text = (SAMPLES_DIR / "corpora" / "python_stdlib.txt").read_text()[-6000:]
    lstm, rnn = decay_at("code_lstm", 50, text), decay_at("code_rnn", 50, text)
    assert rnn["x"] < 0.1 * lstm["x"]  # measured: 7.6e-4 against 2.9e-2
    assert rnn["h l1"] < 1e-6 * lstm["h l1"]  # measured: 1.8e-18 against 4.3e-3
