"""LSTMVis import and export against a project built by hand (lstmvis_project.py) and a hand-built run."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from lstmvis_project import DEPTH, IDS, OUTPUT1, STATES1, STATES2, SURPRISE, TEXT, edit_config

from lstmviz import RunError, open_run, write_run
from lstmviz.interop import lstmvis, lstmvis_export
from lstmviz.interop.lstmvis import export_lstmvis, import_lstmvis, read_dict
from lstmviz.interop.lstmvis_format import lstmvis_shows
from lstmviz.store import tokens_frame

F16 = dict(rtol=1e-3, atol=1e-3)  # float16 keeps 11 significant bits: relative error ≤ 2⁻¹¹


def f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


# ------------------------------------------------------------------------------------------------- import


def test_import_values_are_what_lstmvis_shows(project: Path, tmp_path: Path) -> None:
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    assert run.names == ["lstmvis.l0.fwd.c", "lstmvis.l0.fwd.h", "lstmvis.l1.fwd.c"]
    # LSTMVis 2.1 shows tanh of every state: its client never asks for another transform, so the output
    # that declares transform: none is shown (and imported) as tanh too
    np.testing.assert_array_equal(run.activations("lstmvis.l0.fwd.c"), f16(np.tanh(STATES1)))
    np.testing.assert_array_equal(run.activations("lstmvis.l0.fwd.h"), f16(np.tanh(OUTPUT1)))
    np.testing.assert_array_equal(run.activations("lstmvis.l1.fwd.c"), f16(np.tanh(STATES2)))
    assert run.info("lstmvis.l1.fwd.c")["units"] == 4


def test_import_tokens_and_annotations(project: Path, tmp_path: Path) -> None:
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    tokens = run.tokens
    assert "".join(tokens["token"]) == TEXT  # the " 3" line of words.dict is the space token
    np.testing.assert_array_equal(tokens["token_id"], IDS)
    assert (tokens["doc"] == 0).all() and list(tokens["pos"]) == list(range(len(TEXT)))
    # "pos" is a base token column, so the meta track of that name becomes "meta_pos"
    expected_pos = ["space" if ch == " " else "c" if ch == "c" else "letter" for ch in TEXT]
    assert list(tokens["meta_pos"]) == expected_pos
    np.testing.assert_array_equal(tokens["depth"], DEPTH)
    np.testing.assert_array_equal(tokens["surprise"], SURPRISE)


def test_import_manifest_names_the_source(project: Path, tmp_path: Path) -> None:
    m = open_run(import_lstmvis(project, tmp_path / "run")).manifest
    assert m["source"]["format"] == "lstmvis" and m["source"]["name"] == "tiny chars"
    assert m["model"]["class"] == "LSTMVis import"
    first = m["source"]["states"][0]
    assert (first["type"], first["layer"], first["path"]) == ("state", 0, "states1")
    assert first["stored"] == "tanh(x)"
    assert m["annotations"]["meta_pos"]["type"] == "discrete"
    assert m["annotations"]["surprise"] == {"type": "scalar", "range": [0, 1], "lstmvis_meta": "surprise"}


def test_import_refuses_existing_output(project: Path, tmp_path: Path) -> None:
    out = import_lstmvis(project, tmp_path / "run")
    with pytest.raises(RunError, match="already exists"):
        import_lstmvis(project, out)
    assert import_lstmvis(project, out, overwrite=True) == out


def test_import_gates_reverse_and_duplicates(project: Path, tmp_path: Path) -> None:
    edit_config(
        project,
        "{file: states_b, type: state, layer: 2, path: states2, unsigned: true}",
        "{type: forget_gate, layer: 1, path: output1, transform: none},\n"
        "    {type: output_rev, layer: 1, path: output1, transform: none},\n"
        "    {type: state, layer: 1, path: output1}",
    )
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    # a (type, layer) given twice keeps both, each under module lstmvis.<position in states.types>
    assert run.names == [
        "lstmvis.0.l0.fwd.c",
        "lstmvis.l0.fwd.h",
        "lstmvis.l0.fwd.f",
        "lstmvis.l0.rev.h",
        "lstmvis.4.l0.fwd.c",
    ]
    np.testing.assert_array_equal(run.activations("lstmvis.4.l0.fwd.c"), f16(np.tanh(OUTPUT1)))


def test_import_layer_zero_means_zero_based(project: Path, tmp_path: Path) -> None:
    edit_config(project, "{type: state, layer: 1, path: states1}", "{type: state, layer: 0, path: states1}")
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    assert run.names == ["lstmvis.l0.fwd.c", "lstmvis.l1.fwd.h", "lstmvis.l2.fwd.c"]


def test_read_dict_space_line(tmp_path: Path) -> None:
    path = tmp_path / "words.dict"
    path.write_text("<s> 1\n 2\nthe 3\n\n\u00e9t\u00e9 4\n")
    assert read_dict(path) == {1: "<s>", 2: " ", 3: "the", 4: "\u00e9t\u00e9"}


def _set(folder: Path, h5: str, path: str, values: np.ndarray) -> None:
    with h5py.File(folder / h5, "a") as f:
        del f[path]
        f[path] = values


MALFORMED = {
    "no config": (lambda p: (p / "lstm.yml").unlink(), r"has no lstm\.yml"),
    "bad yaml": (lambda p: (p / "lstm.yml").write_text("name: [unclosed\n"), r"lstm\.yml is not valid YAML"),
    "no files": (lambda p: edit_config(p, "files:", "filez:"), r"field files is missing"),
    "missing file": (
        lambda p: (p / "more_states.hdf5").unlink(),
        r"states\.types\[2\]\.file: file more_states\.hdf5 \(files\.states_b\) does not exist",
    ),
    "unknown alias": (
        lambda p: edit_config(p, "dict_file: words", "dict_file: vocab"),
        r"word_sequence\.dict_file names file alias 'vocab', which is not in files",
    ),
    "wrong h5 path": (
        lambda p: edit_config(p, "path: output1", "path: outputs1"),
        r"states\.types\[1\]\.path: states\.h5 has no dataset 'outputs1' \(it has output1, ",
    ),
    "not hdf5": (
        lambda p: (p / "states.h5").write_text("text"),
        r"states\.types\[0\]\.file: states\.h5 is not a readable HDF5 file",
    ),
    "short states": (
        lambda p: _set(p, "states.h5", "output1", OUTPUT1[:-2]),
        r"states\.types\[1\]: states\.h5:output1 has 10 timesteps but the word sequence has 12",
    ),
    "1-D states": (
        lambda p: _set(p, "states.h5", "states1", STATES1[:, 0]),
        r"states\.types\[0\]: states\.h5:states1 must be 2-D",
    ),
    "no word_sequence": (
        lambda p: edit_config(p, "word_sequence:", "words_sequence:"),
        r"field word_sequence is missing",
    ),
    "float words": (lambda p: _set(p, "train.h5", "word_ids", IDS + 0.5), r"word_sequence: .* integer ids"),
    "no layer": (
        lambda p: edit_config(p, "layer: 1, path: states1}", "path: states1}"),
        r"field states\.types\[0\]\.layer is missing",
    ),
    "text layer": (
        lambda p: edit_config(p, "layer: 2", "layer: two"),
        r"field states\.types\[2\]\.layer must be an integer, got 'two'",
    ),
    "no types": (lambda p: edit_config(p, "types: [", "typs: ["), r"field states\.types is missing"),
    "type not a mapping": (
        lambda p: edit_config(p, "{type: state, layer: 1, path: states1}", "states1"),
        r"field states\.types\[0\] must be a mapping with layer, got 'states1'",
    ),
    "bad transform": (
        lambda p: edit_config(p, "transform: none", "transform: sigmoid"),
        r"field states\.types\[1\]\.transform must be tanh or none, got 'sigmoid'",
    ),
    "dict line": (
        lambda p: (p / "words.dict").write_text("a 1\nb two\n 3\nc 4\n"),
        r"words\.dict:2: expected 'token id'",
    ),
    "id not in dict": (
        lambda p: (p / "words.dict").write_text("a 1\nb 2\n 3\n"),
        r"train\.h5:word_ids \(word_sequence\) has ids missing from words\.dict, e\.g\. 4",
    ),
    "short meta": (
        lambda p: _set(p, "pos.h5", "depth", DEPTH[:5]),
        r"meta\.depth: pos\.h5:depth has 5 timesteps but the word sequence has 12",
    ),
    "meta without vis": (
        lambda p: edit_config(p, "    vis:\n      type: scalar\n      range: [0, 1]\n", ""),
        r"field meta\.surprise\.vis is missing",
    ),
    "meta vis type": (
        lambda p: edit_config(p, "type: scalar", "type: heat"),
        r"meta\.surprise\.vis\.type must be discrete, scalar or wordvec, got 'heat'",
    ),
    "meta dict id": (
        lambda p: (p / "pos.dict").write_text("letter 0\nspace 1\n"),
        r"meta\.pos has ids missing from pos\.dict, e\.g\. 2",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_project_names_field_and_writes_nothing(project: Path, tmp_path: Path, case: str) -> None:
    breaks, message = MALFORMED[case]
    breaks(project)
    with pytest.raises(RunError, match=message) as err:
        import_lstmvis(project, tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no LSTMVis project at"):
        import_lstmvis(tmp_path / "nowhere", tmp_path / "run")


def test_wordvec_meta_is_skipped_and_recorded(project: Path, tmp_path: Path) -> None:
    edit_config(project, "type: scalar", "type: wordvec")
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    assert "surprise" not in run.tokens.columns
    assert "surprise" in run.manifest["source"]["skipped_meta"]


def test_meta_indexed_through_word_ids(project: Path, tmp_path: Path) -> None:
    # one value per word id (ids 0…4), looked up through the word sequence, as LSTMVis's `index:` does
    _set(project, "pos.h5", "depth", np.array([0, 10, 20, 30, 40]))
    edit_config(project, "    path: depth\n", "    path: depth\n    index: word_sequence\n")
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    np.testing.assert_array_equal(run.tokens["depth"], IDS * 10)


# ------------------------------------------------------------------------------------------------- export

DISPLAY = ["a", " ", "b", "\n", "a", " b"]  # a char model's newline, and a word piece with a leading space
TOKEN_IDS = [0, 1, 2, 3, 0, 4]


def _gate(seed: int, units: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (len(DISPLAY), units)).astype(np.float32)  # [6, 2]


ACTS = {
    "rnn.l0.fwd.i": _gate(1),
    "rnn.l0.fwd.f": _gate(2),
    "rnn.l0.fwd.g": _gate(3) * 2 - 1,
    "rnn.l0.fwd.o": _gate(4),
    "rnn.l0.fwd.c": np.array(
        [[0.5, -1.5], [2.0, 0.25], [-3.0, 1.0], [0.0, 4.0], [1.25, -0.5], [-2.5, 0.75]], np.float32
    ),
    "rnn.l0.fwd.h": _gate(5) - 0.5,
    "rnn.l0.rev.h": _gate(6) - 0.5,
    "rnn.l1.fwd.h": _gate(7, 3) - 0.5,
    "rnn.l0.fwd.h_grad": _gate(8) * 10,
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run with every LSTM kind, a reverse direction, a gradient and four kinds of annotation column."""
    tokens = tokens_frame(DISPLAY, TOKEN_IDS)
    tokens["in_word"] = [True, False, True, False, True, True]
    tokens["depth"] = np.array([0, 0, 1, 1, 2, 2], np.int64)
    tokens["kind"] = ["letter", "space", "letter", "newline", "letter", "piece"]
    tokens["loss"] = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0], np.float32)
    tokens["top3"] = [[1, 2, 3]] * len(DISPLAY)
    return write_run(tmp_path / "run", tokens, ACTS, {"model": {"class": "CharRNN"}})


def test_export_writes_an_lstmvis_project(run_dir: Path, tmp_path: Path) -> None:
    folder = export_lstmvis(run_dir, tmp_path / "proj")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".lstmviz",  # the marker by which --overwrite knows lstmviz wrote this folder
        "kind.dict",
        "lstm.yml",
        "meta.h5",
        "states.h5",
        "train.h5",
        "words.dict",
    ]
    assert (folder / "words.dict").read_text() == "a 0\n 1\nb 2\n↵ 3\n␣b 4\n"
    config = yaml.safe_load((folder / "lstm.yml").read_text())
    assert config["name"] == "CharRNN"
    assert config["files"] == {
        "states": "states.h5",
        "train": "train.h5",
        "words": "words.dict",
        "meta": "meta.h5",
        "kind_dict": "kind.dict",
    }
    assert config["word_sequence"] == {"file": "train", "path": "word_ids", "dict_file": "words"}
    types = {t["path"]: t for t in config["states"]["types"]}
    assert "rnn.l0.fwd.h_grad" not in types  # gradients only when named
    assert types["rnn.l0.fwd.f"] == {
        "type": "forget_gate",
        "layer": 1,
        "path": "rnn.l0.fwd.f",
        "lstmviz_values": "atanh",
        "unsigned": True,
    }
    assert types["rnn.l0.fwd.c"] == {"type": "state", "layer": 1, "path": "rnn.l0.fwd.c", "lstmviz_values": "raw"}
    assert types["rnn.l0.fwd.g"]["type"] == "cell_candidate" and "unsigned" not in types["rnn.l0.fwd.g"]
    assert types["rnn.l0.rev.h"]["type"] == "output_rev"
    assert types["rnn.l1.fwd.h"]["layer"] == 2
    with h5py.File(folder / "train.h5") as f:
        np.testing.assert_array_equal(f["word_ids"][()], TOKEN_IDS)
    with h5py.File(folder / "states.h5") as f:
        for name, values in ACTS.items():
            if name in types:
                assert f[name].dtype == np.float32
                bounded = types[name]["lstmviz_values"] == "atanh"
                stored = np.arctanh(f16(values).astype(np.float64)) if bounded else f16(values)
                np.testing.assert_allclose(f[name][()], stored, rtol=1e-6)


def test_export_meta_tracks(run_dir: Path, tmp_path: Path) -> None:
    folder = export_lstmvis(run_dir, tmp_path / "proj")
    meta = yaml.safe_load((folder / "lstm.yml").read_text())["meta"]
    assert set(meta) == {"in_word", "depth", "kind", "loss"}  # the list column top3 is left out
    assert meta["depth"] == {"file": "meta", "path": "depth", "vis": {"type": "discrete", "range": [0, 1, 2]}}
    assert meta["in_word"]["vis"] == {"type": "discrete", "range": [0, 1]}
    assert meta["kind"]["dict"] == "kind_dict"
    assert meta["kind"]["vis"] == {"type": "discrete", "range": "dict"}
    assert meta["loss"]["vis"] == {"type": "scalar", "range": [0.5, 3.0]}
    assert (folder / "kind.dict").read_text() == "letter 0\nnewline 1\npiece 2\nspace 3\n"
    with h5py.File(folder / "meta.h5") as f:
        np.testing.assert_array_equal(f["in_word"][()], [1, 0, 1, 0, 1, 1])
        np.testing.assert_array_equal(f["kind"][()], [0, 3, 0, 1, 0, 2])


def test_export_then_import_round_trip(run_dir: Path, tmp_path: Path) -> None:
    folder = export_lstmvis(run_dir, tmp_path / "proj")
    back = open_run(import_lstmvis(folder, tmp_path / "back"))
    pairs = {
        "lstmvis.l0.fwd.i": "rnn.l0.fwd.i",
        "lstmvis.l0.fwd.f": "rnn.l0.fwd.f",
        "lstmvis.l0.fwd.g": "rnn.l0.fwd.g",
        "lstmvis.l0.fwd.o": "rnn.l0.fwd.o",
        "lstmvis.l0.fwd.h": "rnn.l0.fwd.h",
        "lstmvis.l0.rev.h": "rnn.l0.rev.h",
        "lstmvis.l1.fwd.h": "rnn.l1.fwd.h",
    }
    assert sorted(back.names) == sorted([*pairs, "lstmvis.l0.fwd.c"])
    for new, old in pairs.items():
        np.testing.assert_allclose(back.activations(new), ACTS[old], **F16)
    # c leaves as raw values and comes back as LSTMVis shows it, tanh(c); the others leave as atanh and come back
    np.testing.assert_allclose(back.activations("lstmvis.l0.fwd.c"), np.tanh(ACTS["rnn.l0.fwd.c"]), **F16)
    tokens = back.tokens
    assert list(tokens["token"]) == ["a", " ", "b", "↵", "a", "␣b"]
    np.testing.assert_array_equal(tokens["token_id"], TOKEN_IDS)
    assert list(tokens["kind"]) == ["letter", "space", "letter", "newline", "letter", "piece"]
    np.testing.assert_array_equal(tokens["depth"], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(tokens["in_word"], [1, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(tokens["loss"], [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_import_then_export_keeps_the_project(project: Path, tmp_path: Path) -> None:
    run = open_run(import_lstmvis(project, tmp_path / "run"))
    folder = export_lstmvis(run, tmp_path / "again")
    assert read_dict(folder / "words.dict") == {1: "a", 2: "b", 3: " ", 4: "c"}
    types = yaml.safe_load((folder / "lstm.yml").read_text())["states"]["types"]
    # imported states hold tanh(x), within [-1, 1], so they go back as atanh: LSTMVis shows them as before
    assert [(t["type"], t["layer"], t["lstmviz_values"]) for t in types] == [
        ("state", 1, "atanh"),
        ("output", 1, "atanh"),
        ("state", 2, "atanh"),
    ]
    with h5py.File(folder / "states.h5") as f:
        np.testing.assert_allclose(lstmvis_shows(f["lstmvis.l0.fwd.c"][()]), np.tanh(STATES1), **F16)


def test_export_selected_names_with_gradient(run_dir: Path, tmp_path: Path) -> None:
    folder = export_lstmvis(run_dir, tmp_path / "proj", names=["rnn.l0.fwd.h_grad"])
    (entry,) = yaml.safe_load((folder / "lstm.yml").read_text())["states"]["types"]
    assert entry == {
        "type": "h_grad",
        "layer": 1,
        "path": "rnn.l0.fwd.h_grad",
        "lstmviz_values": "raw",
        "unsigned": True,
    }


def test_export_errors_leave_nothing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RunError, match=r"has no activation 'rnn\.l9\.fwd\.h'"):
        export_lstmvis(run_dir, tmp_path / "proj", names=["rnn.l9.fwd.h"])

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(lstmvis_export, "_export_meta", fail)
    with pytest.raises(OSError, match="disk full"):
        export_lstmvis(run_dir, tmp_path / "proj")
    assert not (tmp_path / "proj").exists() and not (tmp_path / "proj.partial").exists()


def test_export_overwrite(run_dir: Path, tmp_path: Path) -> None:
    folder = export_lstmvis(run_dir, tmp_path / "proj", names=["rnn.l0.fwd.h"])
    with pytest.raises(RunError, match="already exists"):
        export_lstmvis(run_dir, folder)
    export_lstmvis(run_dir, folder, names=["rnn.l0.fwd.c"], overwrite=True)
    with h5py.File(folder / "states.h5") as f:
        assert list(f) == ["rnn.l0.fwd.c"]


def test_export_renumbers_ids_with_several_spellings(tmp_path: Path) -> None:
    # one id shown two ways (e.g. an UNK id showing the original text): ids follow the display strings
    tokens = tokens_frame(["x", "y", "x", "z"], [7, 7, 7, 8])
    run = write_run(tmp_path / "run", tokens, {"m.l0.fwd.h": np.zeros((4, 1), np.float32)})
    folder = export_lstmvis(run, tmp_path / "proj")
    assert (folder / "words.dict").read_text() == "x 0\ny 1\nz 2\n"
    with h5py.File(folder / "train.h5") as f:
        np.testing.assert_array_equal(f["word_ids"][()], [0, 1, 0, 2])


def test_dict_token_encoding() -> None:
    assert [lstmvis.dict_token(t) for t in ["a", "\n", "\t", "a b", "", "\u00a0"]] == [
        "a",
        "↵",
        "⇥",
        "a␣b",
        "∅",
        "␣",
    ]


def test_no_half_written_project_when_copy_fails(run_dir: Path, tmp_path: Path) -> None:
    run = open_run(run_dir)
    shutil.rmtree(run_dir / "acts")  # the run breaks after opening: reading an activation fails mid-export
    with pytest.raises(RunError, match="unreadable"):
        export_lstmvis(run, tmp_path / "proj")
    assert not (tmp_path / "proj").exists() and not (tmp_path / "proj.partial").exists()


def test_pandas_reads_import_annotations_as_plain_types(project: Path, tmp_path: Path) -> None:
    tokens = pd.read_parquet(import_lstmvis(project, tmp_path / "run") / "tokens.parquet")
    assert tokens["depth"].dtype == np.int64 and tokens["surprise"].dtype == np.float32
