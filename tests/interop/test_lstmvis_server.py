"""An export, read the way the LSTMVis 2.1 server and client read it (lstmvis_server.py), shows what lstmviz shows.

Two bugs these guard: a discrete meta written as ``range: "0...N"`` reached the client without a range (a blank
page: ``TypeError … ColorManager._categoricalScale``), and h and gates declared ``transform: none`` were shown as
tanh(h), because LSTMVis applies tanh to every state whatever a type declares.
"""

from __future__ import annotations

from pathlib import Path

import lstmvis_server as lstmvis
import numpy as np
import pytest
import yaml
from test_lstmvis import ACTS

from lstmviz import open_run, write_run
from lstmviz.analysis.select_match import on_index
from lstmviz.interop.lstmvis import export_lstmvis
from lstmviz.store import tokens_frame

THETAS = (0.05, 0.3, 0.6, 0.9)


@pytest.fixture(scope="module")
def recorded(tiny_run, tmp_path_factory) -> tuple:
    """tests/conftest.py's tiny LSTM run with annotation tracks of every meta kind and one c beyond ±1, and
    its export."""
    rng = np.random.default_rng(0)
    tokens = tiny_run.tokens.copy()
    n = len(tokens)
    tokens["depth"] = rng.integers(0, 4, n)  # a few ints: discrete
    tokens["position"] = np.arange(n)  # many ints: scalar
    tokens["in_word"] = rng.random(n) < 0.5
    tokens["kind"] = rng.choice(["letter", "digit", "space"], n)
    acts = {name: tiny_run.activations(name) for name in tiny_run.names}
    acts["rnn.l0.fwd.c"] *= 4  # a trained model's c leaves [-1, 1]; this untrained one's does not
    root = tmp_path_factory.mktemp("lstmvis_server")
    run = open_run(write_run(root / "run", tokens, acts, dict(tiny_run.manifest)))
    return run, export_lstmvis(run, root / "proj")


def test_the_client_gets_a_range_for_every_discrete_meta(recorded):
    run, folder = recorded
    domains = lstmvis.categorical_domains(lstmvis.info(folder))
    assert set(domains) == {"depth", "in_word", "kind"}
    for key, domain in domains.items():
        assert set(lstmvis.meta_values(folder, key)) <= set(domain), key  # every value has its colour
    assert domains["depth"] == sorted(set(run.tokens["depth"]))
    assert sorted(domains["kind"]) == ["digit", "letter", "space"]
    meta = lstmvis.info(folder)["meta"]
    assert meta["position"]["vis"] == {"type": "scalar", "range": [0.0, float(run.n_tokens - 1)]}


def test_a_dotted_range_string_is_what_left_the_page_blank(recorded, tmp_path):
    """The model of LSTMVis is right about the reported failure: ``range: "0...4"`` never reaches the client."""
    _, folder = recorded
    config = lstmvis.config(folder)
    config["meta"]["depth"]["vis"]["range"] = "0...4"
    (tmp_path / "lstm.yml").write_text(yaml.safe_dump(config))
    for name in ("meta.h5", "kind.dict"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    assert "range" not in lstmvis.info(tmp_path)["meta"]["depth"]["vis"]
    with pytest.raises(TypeError, match="_categoricalScale"):
        lstmvis.categorical_domains(lstmvis.info(tmp_path))


def test_lstmvis_shows_h_and_gates_as_lstmviz_does_and_c_as_its_tanh(recorded):
    run, folder = recorded
    types = {t["path"]: t for t in lstmvis.config(folder)["states"]["types"]}
    assert set(types) == set(run.names)
    for name in run.names:
        values = run.activations(name)  # float32 [T, units], what every lstmviz page shows
        unbounded = np.abs(values).max() > 1
        assert types[name]["lstmviz_values"] == ("raw" if unbounded else "atanh")
        expected = np.tanh(values) if unbounded else values
        np.testing.assert_allclose(lstmvis.shown(folder, name), expected, atol=1e-6, err_msg=name)
    assert types["rnn.l0.fwd.c"]["lstmviz_values"] == "raw" and types["rnn.l1.fwd.c"]["lstmviz_values"] == "atanh"


def test_lstmvis_matches_on_the_cells_lstmviz_selects(recorded):
    """On at θ in LSTMVis is on at θ in lstmviz's select & match for h and gates, and at atanh(θ) for a c
    beyond ±1 (LSTMVis shows tanh(c))."""
    run, folder = recorded
    for name in ("rnn.l0.fwd.h", "rnn.l1.fwd.o", "rnn.l1.fwd.g", "rnn.l1.fwd.c", "rnn.l0.fwd.c"):
        for theta in THETAS:
            ours = np.arctanh(theta) if name == "rnn.l0.fwd.c" else theta
            index = on_index(run, name, float(ours))
            units = run.units(name)
            bits = np.unpackbits(np.asarray(index.bits), axis=1, bitorder="little")[:, :units].astype(bool)  # [T, U]
            np.testing.assert_array_equal(lstmvis.on(folder, name, theta), bits, err_msg=f"{name} at {theta}")


def test_saturated_values_are_shown_exactly_and_stored_finite(tmp_path: Path):
    gate = np.array([[0.0, 1.0], [1.0, 0.5], [0.999, 1e-4], [0.25, 0.0]], np.float32)
    h = np.array([[-1.0, 1.0], [0.0, -0.999], [0.5, -0.5], [1.0, -1.0]], np.float32)
    run = open_run(
        write_run(tmp_path / "run", tokens_frame(list("abcd"), [0, 1, 2, 3]), {"x.l0.fwd.f": gate, "x.l0.fwd.h": h}, {})
    )
    folder = export_lstmvis(run, tmp_path / "proj")
    for name in run.names:
        np.testing.assert_allclose(lstmvis.shown(folder, name), run.activations(name), atol=1e-6)
        assert np.isfinite(lstmvis.stored(folder, name)).all()


def test_the_hand_built_run_round_trips_through_what_lstmvis_shows(tmp_path: Path):
    tokens = tokens_frame(["a", "b", "a", "c", "a", "b"], [0, 1, 0, 2, 0, 1])
    run = open_run(write_run(tmp_path / "run", tokens, ACTS, {}))
    folder = export_lstmvis(run, tmp_path / "proj")
    for name in lstmvis.config(folder)["states"]["types"]:
        path = name["path"]
        expected = run.activations(path)
        expected = np.tanh(expected) if name["lstmviz_values"] == "raw" else expected
        np.testing.assert_allclose(lstmvis.shown(folder, path), expected, atol=1e-6)
