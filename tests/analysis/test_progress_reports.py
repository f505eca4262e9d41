"""Progress reports: nested parts map onto the whole, and the long analyses report monotonically up to done."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstmviz.analysis import progress
from lstmviz.analysis import projection as pj
from lstmviz.analysis.gradients import gradient_flow


def heard(fn) -> list[tuple[float, str]]:
    got: list[tuple[float, str]] = []
    with progress.listening(lambda f, message: got.append((f, message))):
        fn()
    return got


def test_parts_map_onto_the_whole_and_nothing_is_heard_without_a_listener():
    progress.report(0.5, "nobody listens")  # no listener: nothing happens

    def work():
        progress.report(0.2, "a")
        with progress.part(0.5, 0.9):
            progress.report(0.5, "b")
            with progress.part(0.0, 0.5):
                progress.report(1.0, "c")
        progress.report(7, "d")  # clipped into [0, 1]

    got = heard(work)
    assert [m for _, m in got] == ["a", "b", "c", "d"]
    np.testing.assert_allclose([f for f, _ in got], [0.2, 0.7, 0.7, 1.0])


class Tiny(nn.Module):
    def __init__(self, cell: type[nn.RNNBase]):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(7, 5)
        self.rnn = cell(5, 6, 2, batch_first=True)
        self.decoder = nn.Linear(6, 7)


def test_gradient_flow_reports_its_warm_up_then_each_batch():
    ids = np.random.default_rng(0).integers(0, 7, 400)
    got = heard(lambda: gradient_flow(Tiny(nn.LSTM), ids, K=10, n_targets=12, batch_size=4))
    fractions = [f for f, _ in got]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] < 1.0
    assert any("warming up" in m for _, m in got)
    assert sum("backpropagating" in m for _, m in got) == 3  # one backward per batch of 4 targets
    assert any(f >= 0.5 + 2 * 0.5 / 3 for f, _ in got)  # the last batch's share has begun


def test_projection_reports_reading_the_states(make_run, rng):
    run = make_run({"rnn.l0.fwd.h": rng.normal(size=(40_000, 3))})
    got = heard(lambda: pj.project(run, "rnn.l0.fwd.h", n_samples=3000))
    assert got and all("reading 3,000 token states" in m for _, m in got)
    assert [f for f, _ in got] == sorted(f for f, _ in got) and got[-1][0] <= 0.8
    assert heard(lambda: pj.project(run, "rnn.l0.fwd.h", n_samples=3000)) == []  # from the cache: no work
