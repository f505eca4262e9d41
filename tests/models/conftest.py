"""Fixtures for tests/models: a small native checkpoint and the user-model directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.tokenizers import Tokenizer
from lstmviz.models.train import save_checkpoint

USER_MODELS = Path(__file__).parent


@pytest.fixture
def user_models() -> Path:
    """Directory holding user_models.py, for ``code=``."""
    return USER_MODELS


@pytest.fixture
def native(tmp_path) -> tuple[Path, CharRNN, Tokenizer]:
    """A native checkpoint of a 2-layer 8-unit char LSTM over the letters a–h and space."""
    torch.manual_seed(0)
    tok = Tokenizer.char("abcdefgh ")
    model = CharRNN(CharRNNConfig("lstm", len(tok), hidden=8, layers=2, embed=4)).eval()
    path = tmp_path / "native.pt"
    save_checkpoint(path, model, tok, {"val_bpc": 1.5}, {"command": "test"})
    return path, model, tok
