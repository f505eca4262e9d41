"""The lessons on the bundled sample models, recorded here on the held-out tail of their corpora: each finds the
unit that a brute-force search over every state unit finds, and the findings the Start here page promises hold."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from lstmviz.analysis import lessons
from lstmviz.models import samples

pytestmark = pytest.mark.slow
CHARS = 8000


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    samples.record_all(root, only=["code_lstm", "parens_lstm"], chars=CHARS, progress=False, projections=())
    return root


def brute_force(run, track: str, kinds: tuple[str, ...], boolean: bool) -> tuple[str, int, float]:
    """(name, unit, score) of the strongest state unit by a plain search: rank-sum AUC or Pearson r per unit."""
    y = run.tokens[track].to_numpy(bool if boolean else np.float64)
    best = ("", -1, 0.0, -1.0)
    for name in (n for n in run.names if run.info(n)["kind"] in kinds):
        x = run.activations(name).astype(np.float64)  # (T, U)
        for u in range(x.shape[1]):
            if boolean:
                ranks = rankdata(x[:, u])  # ties get their mean rank: counted half, as AUC does
                n1 = y.sum()
                score = (ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * (~y).sum())
                strength = abs(2 * score - 1)
            else:
                score = float(np.corrcoef(x[:, u], y)[0, 1])
                strength = abs(score)
            if strength > best[3]:
                best = (name, u, float(score), strength)
    return best[:3]


def test_string_unit_and_clamp_are_the_brute_force_best(sample_root):
    run = lessons.find_run(sample_root, "code_lstm")
    name, u, score = brute_force(run, "in_string", lessons.STATE_KINDS, boolean=True)
    found = lessons.string_unit(run)
    assert (found.numbers["name"], found.numbers["unit"]) == (name, u)
    assert found.numbers["score"] == pytest.approx(score, abs=1e-9)
    assert max(score, 1 - score) > 0.85  # a real detector, not the best of noise
    held = lessons.clamp(run, has_model=True)
    assert (held.params["iv_act"], held.params["iv_units"]) == (name, str(u))


def test_depth_counter_is_the_brute_force_best(sample_root):
    run = lessons.find_run(sample_root, "code_lstm")
    name, u, r = brute_force(run, "bracket_depth", lessons.STATE_KINDS, boolean=False)
    found = lessons.depth_counter(run)
    assert (found.numbers["name"], found.numbers["unit"]) == (name, u)
    assert found.numbers["score"] == pytest.approx(r, abs=1e-6) and abs(r) > 0.6


def test_parens_cell_is_the_brute_force_best_cell(sample_root):
    run = lessons.find_run(sample_root, "parens_lstm")
    name, u, r = brute_force(run, "depth", ("c",), boolean=False)
    found = lessons.parens_cell(run)
    assert (found.numbers["name"], found.numbers["unit"]) == (name, u) and abs(r) > 0.9


def test_a_forget_gate_is_right_saturated_most_of_the_time(sample_root):
    run = lessons.find_run(sample_root, "code_lstm")
    found = lessons.forget_gate(run)
    x = run.activations(found.numbers["name"], [found.numbers["unit"]])[:, 0]
    assert found.numbers["frac_high"] == pytest.approx(float((x > 0.9).mean())) and found.numbers["frac_high"] > 0.5
    every = [(float((run.activations(n) > 0.9).mean(0).max()), n) for n in run.names if n.endswith(".f")]
    assert max(every)[0] == pytest.approx(found.numbers["frac_high"])
