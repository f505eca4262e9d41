"""open_run refuses every corrupt run with one RunError line, and so does ``lstmviz info`` (exit 2)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from corrupt_runs import CASES, make_corrupt_runs

import lstmviz
from lstmviz.cli import main
from lstmviz.store import RunError, open_run, write_run


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
    assert run.n_tokens == 600 and len(run._footers) == 1 + len(run.names)


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
