"""probe: a planted unit comes first, and the scores equal sklearn's ROC-AUC and numpy's Pearson r."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from lstmviz.analysis.probes import auc, probe, stored_probe
from lstmviz.store import RunError

T, U = 6000, 12


@pytest.fixture
def planted(make_run, rng):
    in_string = np.repeat(rng.random(T // 20) < 0.3, 20)  # runs of 20 tokens
    depth = np.clip(np.cumsum(rng.choice([-1, 0, 1], T)), 0, None) % 7
    x = rng.normal(0, 0.5, (T, U))
    x[:, 5] += 1.5 * in_string  # tracks "inside a string"
    x[:, 2] -= 1.0 * in_string  # tracks it by switching off
    x[:, 9] = np.tanh(depth / 3) + rng.normal(0, 0.2, T)  # tracks bracket depth
    x[:, 11] = np.round(x[:, 11])  # heavy ties
    kind = np.where(in_string, "str", np.where(depth > 3, "deep", "code"))
    run = make_run(
        {"rnn.l0.fwd.c": x, "rnn.l1.fwd.h": rng.normal(size=(T, 3))},
        in_string=in_string,
        depth=depth.astype(float),
        kind=kind,
    )
    return run


def test_boolean_track_ranks_the_planted_unit_and_equals_sklearn(planted):
    got = probe(planted, "in_string", "rnn.l0.fwd.c")
    assert got["unit"].tolist()[:2] == [5, 2]
    assert got.iloc[0]["score"] > 0.95 and got.iloc[1]["score"] < 0.1
    y = planted.tokens["in_string"].to_numpy()
    x = planted.activations("rnn.l0.fwd.c")
    want = [roc_auc_score(y, x[:, u]) for u in range(U)]
    np.testing.assert_allclose(got.sort_values("unit")["score"].to_numpy(), want, rtol=1e-12)
    row = got.set_index("unit").loc[5]
    assert row["mean_true"] == pytest.approx(x[y, 5].mean()) and row["mean_false"] == pytest.approx(x[~y, 5].mean())


def test_numeric_track_equals_numpy_pearson(planted):
    got = probe(planted, "depth")
    assert (got.iloc[0]["name"], got.iloc[0]["unit"]) == ("rnn.l0.fwd.c", 9)
    assert len(got) == U + 3 and set(got["metric"]) == {"pearson_r"}
    y = planted.tokens["depth"].to_numpy()
    for _, row in got.iterrows():
        x = planted.activations(row["name"], [row["unit"]])[:, 0]
        assert row["score"] == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)


def test_categorical_track_with_value_and_missing_values(make_run, rng):
    x = rng.normal(size=(400, 4))
    kind = pd.array(np.where(x[:, 3] > 0.5, "str", "code"), dtype="string")
    kind[:50] = pd.NA
    run = make_run({"rnn.l0.fwd.h": x}, kind=kind)
    got = probe(run, "kind", value="str", top=1)
    assert got["unit"].tolist() == [3] and got.iloc[0]["n"] == 350
    with pytest.raises(RunError, match="value="):
        probe(run, "kind")
    with pytest.raises(RunError, match="no token column"):
        probe(run, "nope")


def test_auc_counts_ties_half():
    x = np.array([[0.0], [0.0], [1.0], [1.0]], np.float32)
    y = np.array([False, True, False, True])
    assert auc(x, y)[0] == pytest.approx(roc_auc_score(y, x[:, 0])) == pytest.approx(0.5)
    assert auc(np.array([[-0.0], [0.0]], np.float32), np.array([True, False]))[0] == 0.5


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("column", ["in_string", "depth", "kind"])
def test_blockwise_scores_equal_the_whole_column_brute_force(planted, monkeypatch, kernels, column):
    """Read in blocks of 1,000 steps and 5 units at a time (so blocks and unit groups both split), the scores,
    means and ranking equal those computed on each unit's whole column at once."""
    from lstmviz.analysis import probes

    monkeypatch.setattr(probes, "ROWS", 1000)
    monkeypatch.setattr(probes, "HIST_BYTES", 5 * 2 * probes.N_KEYS * 8 if column != "depth" else 5 * probes.N_KEYS * 8)
    if not kernels:
        monkeypatch.setattr(probes, "jit", lambda: None)
    value = "str" if column == "kind" else None
    got = probe(planted, column, value=value)
    col = planted.tokens[column]
    y = (col == value).to_numpy(bool) if value else col.to_numpy()
    rows = []
    for name in planted.names:
        x = planted.activations(name)  # [T, units]: the whole activation, as the brute force reads it
        if y.dtype == bool:
            score, extra = (
                probes.auc(x, y),
                {"mean_true": x[y].mean(0, np.float64), "mean_false": x[~y].mean(0, np.float64)},
            )
            strength = np.abs(2 * score - 1)
        else:
            score, extra = probes.pearson(x, y.astype(np.float64)), {}
            strength = np.abs(score)
        rows.append(
            pd.DataFrame({"name": name, "unit": np.arange(x.shape[1]), "score": score, "strength": strength, **extra})
        )
    want = pd.concat(rows, ignore_index=True).sort_values("strength", ascending=False, kind="stable")
    assert list(zip(got["name"], got["unit"], strict=True)) == list(zip(want["name"], want["unit"], strict=True))
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-10 if y.dtype != bool else 0)
    for c in ("mean_true", "mean_false"):
        if c in want:
            np.testing.assert_allclose(got[c], want[c], rtol=1e-9)


def test_a_stored_ranking_is_read_back_and_rescored_when_the_tokens_change(planted, monkeypatch):
    """stored_probe is probe, computed once: a second call (another session) reads the stored table without
    scoring, and a tokens table rewritten in place (other annotations, same manifest) is scored afresh."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lstmviz.analysis import probes
    from lstmviz.store import open_run

    name = "rnn.l0.fwd.c"
    first = stored_probe(planted, "in_string", name)
    pd.testing.assert_frame_equal(first, probe(planted, "in_string", name))
    assert len(list((planted.cache_dir / "probes").glob("*.parquet"))) == 1
    scored = []
    monkeypatch.setattr(probes, "scores", lambda *a, **k: scored.append(1) or pytest.fail("scored again"))
    pd.testing.assert_frame_equal(stored_probe(open_run(planted.path), "in_string", name), first)
    assert not scored
    monkeypatch.undo()
    tokens = planted.tokens.assign(in_string=~planted.tokens["in_string"])  # the annotation flipped: AUC → 1 − AUC
    pq.write_table(pa.Table.from_pandas(tokens, preserve_index=False), planted.path / "tokens.parquet")
    fresh = open_run(planted.path)
    again = stored_probe(fresh, "in_string", name)
    pd.testing.assert_frame_equal(again, probe(fresh, "in_string", name))
    top = first.set_index("unit")["score"]
    np.testing.assert_allclose(again.set_index("unit")["score"].loc[top.index], 1 - top, atol=1e-12)


def test_stored_rankings_of_one_value_in_two_types_are_kept_apart(make_run, rng):
    """value=1 and value="1" select different tokens of an integer column (the string matches none), so the
    stored rankings are two, each equal to probe's, whichever is asked first."""
    from lstmviz.analysis.probes import stored_probe

    T = 1500
    kind = rng.integers(0, 3, T)
    x = 0.3 * rng.normal(size=(T, 2))
    x[:, 0] += kind == 1
    run = make_run({"rnn.l0.fwd.h": x}, kind=kind)
    for value in ("1", 1):
        pd.testing.assert_frame_equal(
            stored_probe(run, "kind", "rnn.l0.fwd.h", value), probe(run, "kind", "rnn.l0.fwd.h", value=value)
        )
    assert stored_probe(run, "kind", "rnn.l0.fwd.h", 1).set_index("unit").loc[0, "score"] > 0.9


def test_a_damaged_stored_ranking_is_scored_again(planted):
    """A stored ranking cut short (a crash before it reached the disk) is not read as one: it is scored anew and
    stored again."""
    from lstmviz.analysis.probes import stored_probe

    name = "rnn.l0.fwd.c"
    first = stored_probe(planted, "in_string", name)
    (path,) = (planted.cache_dir / "probes").glob("*.parquet")
    path.write_bytes(path.read_bytes()[:100])
    pd.testing.assert_frame_equal(stored_probe(planted, "in_string", name), first)
    pd.testing.assert_frame_equal(pd.read_parquet(path), first)
