"""open_run refuses every corrupt run with one RunError line, and so does ``lstmviz info`` (exit 2)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from corrupt_runs import CASES, make_corrupt_runs

import lstmviz
from lstmviz.cli import main
from lstmviz.store import RunError, RunWriter, open_run, tokens_frame, write_run


@pytest.fixture(scope="session")
def corrupt(tiny_run, tmp_path_factory):
    return make_corrupt_runs(tiny_run.path, tmp_path_factory.mktemp("corrupt"))


def test_every_case_is_built_and_the_good_run_still_opens(tiny_run, corrupt):
    assert tuple(corrupt) == CASES and len(CASES) >= 60
    assert open_run(tiny_run.path).names == tiny_run.names  # the copies were broken, not the original


@pytest.mark.parametrize("case", CASES)
def test_open_run_refuses_a_corrupt_run_with_one_line(corrupt, case):
    path, fragment = corrupt[case]
    with pytest.raises(RunError) as e:
        open_run(path)
    message = str(e.value)
    assert fragment in message
    assert "\n" not in message and str(path) in message


@pytest.mark.parametrize("case", CASES)
def test_info_refuses_a_corrupt_run_with_exit_2_and_one_line(corrupt, case, capsys):
    path, fragment = corrupt[case]
    assert main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("lstmviz: error: ") and err.count("\n") == 1
    assert "Traceback" not in err and " ".join(fragment.split()) in err


@pytest.mark.parametrize("case", ["n_tokens_larger", "entry_without_units", "schema_version_string", "stats_empty"])
def test_info_in_its_own_process_prints_one_line(corrupt, case):
    path, fragment = corrupt[case]
    p = subprocess.run([sys.executable, "-m", "lstmviz", "info", str(path)], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stdout == "" and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert fragment in p.stderr


def test_open_run_reads_footers_not_data(tiny_run, monkeypatch):
    """The checks cost a footer per file however long the run is: reading any column data fails the test."""

    def no_data(*args, **kwargs):
        raise AssertionError("open_run read parquet data")

    monkeypatch.setattr(pq, "read_table", no_data)
    monkeypatch.setattr(pq.ParquetFile, "read", no_data)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", no_data)
    run = open_run(tiny_run.path)
    assert run.n_tokens == 600 and len(run.names) == 12


def test_runs_the_writers_make_still_open(tmp_path):
    """The checks refuse only what is broken: dotted modules, gradients, one token, no activations."""
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    acts = {"enc.lstm.l1.rev.c": x, "enc.lstm.l1.rev.c_grad": -x, "rnn.l0.fwd.hp": x}
    assert open_run(write_run(tmp_path / "a", list("abc"), acts)).names == list(acts)
    assert open_run(write_run(tmp_path / "b", ["x"], {"rnn.l0.fwd.h": x[:1]})).n_tokens == 1
    bare = open_run(write_run(tmp_path / "c", list("ab"), {}))
    assert bare.names == [] and bare.stats.empty


def test_a_symlinked_file_inside_the_run_is_fine_and_stats_follow_the_manifest(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.path, run)
    m = json.loads((run / "manifest.json").read_text())
    (run / "stats.parquet").rename(run / "other-stats.parquet")
    m["stats"]["file"] = "other-stats.parquet"
    target = run / m["activations"][0]["file"]
    target.rename(run / "real.parquet")
    target.symlink_to(run / "real.parquet")
    (run / "manifest.json").write_text(json.dumps(m))
    opened = open_run(run)
    assert len(opened.stats) == sum(a["units"] for a in m["activations"])
    np.testing.assert_array_equal(opened.activations(opened.names[0]), tiny_run.activations(opened.names[0]))


def test_a_non_string_activation_name_is_a_run_error(tiny_run):
    with pytest.raises(RunError, match=re.escape("an activation name is a string")):
        tiny_run.activations(["rnn.l0.fwd.h"])
    assert lstmviz.RunError is RunError


# ---------------------------------------------------------------------------------------- 0-token runs


def _tree(path) -> dict:
    """Every file under ``path`` → its bytes."""
    return {f.relative_to(path): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def assert_nothing_written(out) -> None:
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_a_0_token_run_is_refused_when_written(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="a run needs at least one token; this one has none"):
        write_run(out, [], {"rnn.l0.fwd.h": np.zeros((0, 3), np.float32)})
    assert_nothing_written(out)
    with pytest.raises(RunError, match="at least one token"):
        RunWriter(out, tokens_frame([]), [], {})
    assert_nothing_written(out)


def test_a_0_token_overwrite_leaves_the_existing_run_as_it_was(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run.path, out)
    before = _tree(out)
    with pytest.raises(RunError, match="at least one token"):
        write_run(out, [], {"rnn.l0.fwd.h": np.zeros((0, 8), np.float32)}, overwrite=True)
    assert _tree(out) == before and not out.with_name("run.partial").exists()
    assert open_run(out).n_tokens == tiny_run.n_tokens


def test_a_0_token_recording_is_refused_before_anything_is_written(tiny_model, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="the corpus is empty"):
        lstmviz.record_corpus(tiny_model, np.zeros(0, np.int64), out, progress=False)
    assert_nothing_written(out)


@pytest.fixture
def empty_project(tmp_path):
    """The interop suite's LSTMVis project with every dataset cut to 0 timesteps."""
    h5py = pytest.importorskip("h5py")
    sys.path.insert(0, str(Path(__file__).parent / "interop"))
    from lstmvis_project import write_project

    folder = write_project(tmp_path / "project")
    for file in ("train.h5", "states.h5", "more_states.hdf5", "pos.h5"):
        with h5py.File(folder / file, "a") as f:
            for key in list(f):
                shape, dtype = f[key].shape, f[key].dtype
                del f[key]
                f.create_dataset(key, shape=(0, *shape[1:]), dtype=dtype)
    return folder


def test_a_0_token_import_is_refused_before_anything_is_written(empty_project, tmp_path):
    from lstmviz.interop.lstmvis import import_lstmvis

    out = tmp_path / "run"
    with pytest.raises(RunError, match=re.escape("word_sequence: train.h5:word_ids is empty")):
        import_lstmvis(empty_project, out)
    assert_nothing_written(out)


def test_a_0_token_import_through_the_cli_is_exit_2_and_one_line(empty_project, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["import-lstmvis", str(empty_project), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "there are no tokens to import" in err and "Traceback" not in err
    assert_nothing_written(out)


@pytest.mark.parametrize(
    "path, fragment",
    [
        (None, "a run is opened by its path (a str or os.PathLike), got None"),
        (3, "got 3"),
        (b"/tmp", "got b'/tmp'"),
        (["runs/x"], "got ['runs/x']"),
        ("", "no run path given"),
        ("runs/a\x00b", "'runs/a\\x00b' is not a usable path: it holds a NUL byte"),
        (Path("runs/a\x00b"), "is not a usable path"),
    ],
)
def test_open_run_refuses_what_is_not_a_path(path, fragment):
    with pytest.raises(RunError, match=re.escape(fragment)) as e:
        open_run(path)
    assert "\n" not in str(e.value) and "\x00" not in str(e.value)


@pytest.mark.parametrize("file", ["tokens.parquet", "stats.parquet", "acts/rnn.l0.fwd.h.parquet"])
def test_damage_the_footer_does_not_show_is_a_run_error_when_read(tiny_run, tmp_path, file):
    """open_run reads no values, so a run whose pages are damaged opens; reading them is then one RunError line."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.path, run_dir)
    f = run_dir / file
    data = bytearray(f.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")  # parquet ends with <footer><footer length: 4 bytes>PAR1
    for i in range(4, len(data) - 8 - footer):  # the pages, not the footer
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))
    run = open_run(run_dir)
    read = {
        "tokens.parquet": lambda: run.tokens,
        "stats.parquet": lambda: run.stats,
        "acts/rnn.l0.fwd.h.parquet": lambda: run.activations("rnn.l0.fwd.h"),
    }[file]
    with pytest.raises(RunError, match=re.escape(f"{f} is unreadable")) as e:
        read()
    assert "\n" not in str(e.value)
