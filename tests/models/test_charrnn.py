"""CharRNN: shapes, the recurrent module's name, and agreement of forward with a step-by-step unroll."""

from __future__ import annotations

import pytest
import torch

from lstmviz.models.charrnn import CharRNN, CharRNNConfig


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn"])
def test_shapes_and_state_carry(arch):
    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(arch, vocab_size=11, hidden=6, layers=2, embed=5)).eval()
    ids = torch.randint(0, 11, (3, 8))
    assert model(ids).shape == (3, 8, 11)
    assert type(model.rnn).__name__ == arch.upper() and model.rnn.batch_first
    # Oracle: one call over 8 steps equals two calls of 4 that carry the state.
    with torch.no_grad():
        first, hidden = model.step(ids[:, :4])
        second, _ = model.step(ids[:, 4:], hidden)
        torch.testing.assert_close(torch.cat([first, second], 1), model(ids), rtol=0, atol=1e-6)


def test_param_count_matches_the_formula():
    c = CharRNNConfig("lstm", vocab_size=96, hidden=256, layers=2, embed=64)
    lstm = 4 * (256 * 64 + 256 * 256 + 2 * 256) + 4 * (256 * 256 + 256 * 256 + 2 * 256)
    assert CharRNN(c).n_params() == 96 * 64 + lstm + 256 * 96 + 96


@pytest.mark.parametrize(("kwargs", "message"), [({"arch": "tcn"}, "arch must be"), ({"hidden": 0}, "hidden")])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CharRNNConfig(**kwargs)
