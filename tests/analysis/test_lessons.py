"""The Start here lessons find planted answers: the unit that tracks a planted annotation, the planted saturated
forget gate, a planted island on the map; a missing run is a reason, never an exception."""

from __future__ import annotations

import numpy as np
import pytest

from lstmviz.analysis import lessons, phrasing, projection

T, U = 600, 8


def brackets(rng: np.random.Generator) -> np.ndarray:
    """A random walk of depths ≥ 0: the planted bracket depth."""
    steps = rng.choice([-1, 0, 1], size=T)
    return (np.abs(np.cumsum(steps)) % 7).astype(np.float64)


def code_like(rng: np.random.Generator):
    """States where c unit 5 follows in_string and h unit 2 is minus the bracket depth, and forget-gate unit 6
    is above 0.9 on 80 % of steps, the rest noise."""
    in_string = (np.arange(T) // 25) % 3 == 1
    depth = brackets(rng)
    c = rng.normal(0, 1, (T, U))
    c[:, 5] = np.where(in_string, 1.0, -1.0) + rng.normal(0, 0.3, T)
    h = rng.normal(0, 1, (T, U))
    h[:, 2] = -depth + rng.normal(0, 0.5, T)
    f = rng.uniform(0.2, 0.8, (T, U))
    f[:, 6] = np.where(rng.random(T) < 0.8, 0.95, 0.5)
    acts = {"rnn.l0.fwd.f": f, "rnn.l0.fwd.c": c, "rnn.l0.fwd.h": h}
    return acts, {"in_string": in_string, "bracket_depth": depth.astype(np.int64)}


def test_string_unit_and_depth_counter_find_the_planted_units(make_run, rng):
    acts, columns = code_like(rng)
    run = make_run(acts, **columns)
    s = lessons.string_unit(run)
    assert (s.numbers["name"], s.numbers["unit"]) == ("rnn.l0.fwd.c", 5)
    assert s.numbers["score"] > 0.95 and "Unit 5 of rnn.l0.fwd.c" in s.text and "high inside" in s.text
    assert s.page == "unit" and s.params == {"run": run.path.name, "act": "rnn.l0.fwd.c", "unit": "5"}
    d = lessons.depth_counter(run)
    assert (d.numbers["name"], d.numbers["unit"]) == ("rnn.l0.fwd.h", 2)
    assert d.numbers["score"] < -0.8 and "falls as brackets open" in d.text
    assert d.params["track"] == "bracket_depth" and d.params["unit"] == "2"


def test_an_inverted_string_unit_is_read_the_right_way_round(make_run, rng):
    acts, columns = code_like(rng)
    acts["rnn.l0.fwd.c"][:, 5] *= -1
    s = lessons.string_unit(make_run(acts, **columns))
    assert s.numbers["unit"] == 5 and s.numbers["score"] < 0.05
    assert "low inside string literals and high outside" in s.text
    assert f"ROC-AUC of {1 - s.numbers['score']:.2f}" in s.text


def test_the_result_is_kept_for_the_next_process(make_run, rng):
    acts, columns = code_like(rng)
    run = make_run(acts, **columns)
    first = lessons.string_unit(run)
    kept = list((run.path / "cache" / "lessons").glob("best.in_string.*.json"))
    assert len(kept) == 1
    assert lessons.string_unit(run) == first


def test_forget_gate_finds_the_planted_saturated_unit(make_run, rng):
    acts, columns = code_like(rng)
    run = make_run(acts, **columns)
    g = lessons.forget_gate(run)
    expected = float((acts["rnn.l0.fwd.f"][:, 6].astype(np.float16) > 0.9).mean())
    assert (g.numbers["name"], g.numbers["unit"]) == ("rnn.l0.fwd.f", 6)
    assert g.numbers["frac_high"] == pytest.approx(expected)
    assert f"{100 * expected:.0f}% of the steps" in g.text


def test_no_saturated_forget_gate_is_a_reason(make_run, rng):
    acts, columns = code_like(rng)
    acts["rnn.l0.fwd.f"][:, 6] = 0.5
    with pytest.raises(lessons.Unavailable, match=r"no forget-gate unit .* most of the time"):
        lessons.forget_gate(make_run(acts, **columns))


def test_parens_cell_finds_the_planted_depth_cell(make_run, rng):
    depth = brackets(rng)
    c = rng.normal(0, 1, (T, U))
    c[:, 3] = 0.5 * depth + rng.normal(0, 0.2, T)
    h = rng.normal(0, 1, (T, U))
    h[:, 1] = depth  # a stronger h unit: the lesson is about the cell, so it must not be chosen
    run = make_run({"rnn.l0.fwd.c": c, "rnn.l0.fwd.h": h}, depth=depth.astype(np.int64))
    p = lessons.parens_cell(run)
    assert (p.numbers["name"], p.numbers["unit"]) == ("rnn.l0.fwd.c", 3)
    assert p.params["tracks"] == "depth" and int(p.params["start"]) == max(int(np.argmax(depth)) - 250, 0)
    assert "step up at every (" in p.text


def test_string_island_measures_neighbour_purity_on_the_map(make_run, rng):
    in_string = (np.arange(T) // 25) % 3 == 1
    c = rng.normal(0, 1, (T, U))
    c[in_string, :2] += 8.0  # strings sit far off along two directions: PCA puts them apart
    run = make_run({"rnn.l0.fwd.c": c}, in_string=in_string)
    with pytest.raises(lessons.Unavailable, match="still being prepared"):
        lessons.string_island(run, method="pca")  # no map made yet, and none is made unasked
    island = lessons.string_island(run, method="pca", compute=True)
    assert projection.cached(run, "rnn.l0.fwd.c", "pca", T)
    assert island.numbers["base"] == pytest.approx(in_string.mean())
    assert island.numbers["purity"] > 0.95
    assert island.params == {"run": run.path.name, "act": "rnn.l0.fwd.c", "method": "pca", "color": "in_string"}


def test_no_island_when_the_states_ignore_strings(make_run, rng):
    in_string = (np.arange(T) // 25) % 3 == 1
    run = make_run({"rnn.l0.fwd.c": rng.normal(0, 1, (T, U))}, in_string=in_string)
    with pytest.raises(lessons.Unavailable, match="do not gather"):
        lessons.string_island(run, method="pca", compute=True)


def test_clamp_holds_the_string_unit_at_its_string_side_extreme(make_run, rng):
    acts, columns = code_like(rng)
    run = make_run(acts, **columns)
    c = lessons.clamp(run, has_model=True)
    stored = run.activations("rnn.l0.fwd.c", [5])[:, 0]
    assert c.params["iv_act"] == "rnn.l0.fwd.c" and c.params["iv_units"] == "5"
    assert float(c.params["iv_value"]) == pytest.approx(float(stored.max()), rel=1e-3)
    assert int(c.params["iv_start"]) == max(int(np.flatnonzero(columns["in_string"])[0]) - 40, 0)
    with pytest.raises(lessons.Unavailable, match="checkpoint"):
        lessons.clamp(run, has_model=False)


def test_missing_or_preparing_runs_are_reasons(tmp_path):
    def never(*args):
        raise AssertionError("nothing is loaded without a run")

    for key in lessons.TITLES:
        found = lessons.lesson(key, tmp_path, never, never)
        assert not found.available and "lstmviz samples" in found.reason and found.title == lessons.TITLES[key]
    (tmp_path / "code_lstm.partial").mkdir()
    assert "still being prepared" in lessons.lesson("string_unit", tmp_path, never, never).reason
    assert "still being prepared" in lessons.lesson("parens_cell", tmp_path, never, never, preparing=True).reason


@pytest.mark.parametrize(("x", "shown"), [(0.87, "87%"), (0.043, "4.3%"), (0.0029, "0.29%"), (2.1e-11, "2.1 × 10⁻⁹%")])
def test_percentages_read_aloud(x, shown):
    assert phrasing.percent(x) == shown
