"""lstmviz's match ranks what LSTMVis's match ranks, on the cell states of a trained model.

The oracle is ``lstmvis_server.match``, LSTMVis 2.1's ``query_similar_activations`` restated, which was checked
result for result against the real handler (docs/LSTMVIS.md). Selections are made the way a user makes them: a
span of text, the units ``select`` finds on it, then match at the client's defaults (θ = 0.3, the step before a
span off). LSTMVis shows tanh(c), so its θ is atanh(θ) on c in lstmviz.
"""

from __future__ import annotations

import lstmvis_server as lstmvis
import numpy as np
import pytest

from lstmviz import open_run
from lstmviz.analysis.select_match import match, select
from lstmviz.interop.lstmvis import export_lstmvis
from lstmviz.models.samples import SAMPLES, record_sample

THETA = 0.3
NAMES = ("rnn.l0.fwd.c", "rnn.l1.fwd.c")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    """code_lstm (the trained sample) on 6,000 held-out chars, and its LSTMVis export of both c."""
    root = tmp_path_factory.mktemp("lstmvis_match")
    [sample] = [s for s in SAMPLES if s.name == "code_lstm"]
    run = open_run(record_sample(sample, root / "run", chars=6000, progress=False, projections=()))
    return run, export_lstmvis(run, root / "proj", names=list(NAMES))


def _key(row: tuple) -> tuple:
    _start, length, n_selected, n_union = row
    return -n_selected, n_union, -length


def _same_up_to_ties(ours: list, theirs: list) -> bool:
    """Equal rank by rank in (n_selected, n_union, length), and the same spans outside the tie group that the
    cut at rank 10 splits (both rank ties by a rule of their own: lstmviz by position, LSTMVis by hash order)."""
    if [_key(r) for r in ours] != [_key(r) for r in theirs]:
        return False
    cut = _key(theirs[-1])
    return {r for r in ours if _key(r) != cut} == {r for r in theirs if _key(r) != cut}


def _selections(run, name: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    while n:
        a = int(rng.integers(1, run.n_tokens - 10))
        units = select(run, name, (a, a + int(rng.integers(2, 6))), float(np.arctanh(THETA)), pad_before=1).units
        if len(units):
            n -= 1
            yield sorted(int(u) for u in units)


def _ours(run, name: str, cells: list[int]) -> list:
    """lstmviz's top 10 as LSTMVis writes results, without the spans LSTMVis never returns (those touching the
    first step, or ending at the last two)."""
    found = match(run, name, cells, float(np.arctanh(THETA)), pad_before=1, top=40)
    rows = [
        (int(s), int(n), int(k), len(cells) + int(e))
        for s, n, k, e in zip(found.start, found.length, found.n_selected, found.n_extra, strict=True)
        if s >= 1 and s + n + 1 <= run.n_tokens
    ]
    return rows[:10]


@pytest.mark.parametrize("name", NAMES)
def test_top_ten_equal_lstmvis_precise_match(exported, name: str) -> None:
    run, folder = exported
    for cells in _selections(run, name, 12, seed=NAMES.index(name)):
        theirs, _ = lstmvis.match(folder, name, cells, THETA, mode="precise")
        assert len(theirs) >= 10, cells
        assert _same_up_to_ties(_ours(run, name, cells), theirs[:10]), cells


@pytest.mark.parametrize("name", NAMES)
def test_top_ten_equal_lstmvis_fast_match_unless_it_cut_candidates(exported, name: str) -> None:
    """The client's fast mode keeps 1,000 candidates in hash order and can drop better spans: where it kept
    every candidate, the top 10 agree; where it cut, lstmviz's list is at least as good rank by rank."""
    run, folder = exported
    cut = 0
    for cells in _selections(run, name, 12, seed=10 + NAMES.index(name)):
        theirs, n_candidates = lstmvis.match(folder, name, cells, THETA, mode="fast")
        ours = _ours(run, name, cells)
        if n_candidates <= 1000:
            assert _same_up_to_ties(ours, theirs[:10]), cells
        else:
            cut += 1
            assert all(_key(o) <= _key(t) for o, t in zip(ours, theirs[:10], strict=True)), cells
    assert cut < 12  # the comparison above ran on some selections
