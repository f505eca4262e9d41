"""AppTest on runs of models built on cells: a custom LayerNorm-LSTM recorded with lstmviz.tap, and nn.LSTMCell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_pages import app, assert_clean, figure, visit
from tiny_models import CellCharModel, LayerNormLSTMCell
from torch import nn

import lstmviz
from lstmviz.dashboard import helptext, widgets
from lstmviz.names import equations

TEXT = "def f(x):\n    return [x, (x + 1) * 2]\n" * 6


@pytest.fixture(scope="module")
def cell_runs(tmp_path_factory) -> Path:
    """``root/tapped`` (LayerNorm-LSTM, gates declared with tap) and ``root/stepped`` (nn.LSTMCell), on TEXT."""
    root = tmp_path_factory.mktemp("cells") / "runs"
    vocab = sorted(set(TEXT))
    ids = np.array([vocab.index(ch) for ch in TEXT])
    for name, cell in (("tapped", LayerNormLSTMCell), ("stepped", nn.LSTMCell)):
        torch.manual_seed(0)
        model = CellCharModel(cell, vocab=len(vocab), hidden=6).eval()
        with torch.no_grad():  # gates that saturate, as in a trained model (see conftest.WEIGHT_SCALE)
            for p in model.cell.parameters():
                p.mul_(5)
        lstmviz.record_corpus(model, ids, root / name, streams=2, chunk=40, display=list(TEXT), progress=False)
    return root


@pytest.mark.parametrize("page", list(widgets.PAGES))
@pytest.mark.parametrize("run", ["tapped", "stepped"])
def test_every_page_runs_on_a_cell_run(cell_runs, monkeypatch, page, run):
    at = visit(app(cell_runs, monkeypatch, run=str(cell_runs / run)), page)
    assert_clean(at)


def test_saturation_shows_the_gates_a_tapped_cell_declared(cell_runs, monkeypatch):
    at = visit(app(cell_runs, monkeypatch, run=str(cell_runs / "tapped")), "saturation")
    assert_clean(at)
    titles = [a["text"] for a in figure(at)["layout"]["annotations"]]
    assert titles == ["gate i", "gate f", "gate o"]  # g, c and h are not gates, though tapped


def test_the_walkthrough_says_what_it_cannot_show_for_a_tapped_cell(cell_runs, monkeypatch):
    at = visit(app(cell_runs, monkeypatch, run=str(cell_runs / "tapped"), act="cell.l0.fwd.f"), "walkthrough")
    assert_clean(at)
    assert any("does not know its equations" in i.value for i in at.info)
    assert not at.code


def test_the_walkthrough_draws_a_stepped_cell_with_its_equations(cell_runs, monkeypatch):
    at = visit(app(cell_runs, monkeypatch, run=str(cell_runs / "stepped"), act="cell.l0.fwd.f"), "walkthrough")
    assert_clean(at)
    assert [m.value.strip("$\n") for m in at.latex] == [helptext.equation(e) for e in equations("LSTM")]
    assert not any("does not know" in i.value for i in at.info)
