"""The CLI under a hostile user (issue #12): `--overwrite` never deletes what lstmviz did not write, errors blame
the right thing, and every bad input is exit 2 (1 for the model's own error), one line on stderr, no traceback,
and not one file written or deleted anywhere under the test's directory."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from cli_checks import refused, snapshot

import lstmviz
from lstmviz.cli import main
from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.tokenizers import Tokenizer
from lstmviz.models.train import save_checkpoint

USER_MODELS = Path(__file__).parent / "models"
if str(USER_MODELS) not in sys.path:
    sys.path.insert(0, str(USER_MODELS))  # user_models.py and raising_models.py, as a user's own model code
TEXT = "def f(a, b):\n    return (a + b) * 2  # sum\n" * 6
PRECIOUS = "my thesis, chapter 3\n"


def run_ok(argv: list, capsys) -> str:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A checkpoint, a text, a run, an LSTMVis export of it, a user's folder, a user's file and user model weights."""
    from user_models import BatchFirstGRU

    torch.manual_seed(0)
    tok = Tokenizer.char(TEXT)
    model = CharRNN(CharRNNConfig("lstm", len(tok), hidden=6, layers=1, embed=4)).eval()
    w = {name: tmp_path / name for name in ("m.pt", "t.txt", "run", "proj", "mydata", "notes.txt", "gru.pt")}
    save_checkpoint(w["m.pt"], model, tok, {"val_bpc": 3.0}, {"command": "test"})
    w["t.txt"].write_text(TEXT)
    rng = np.random.default_rng(0)
    lstmviz.write_run(w["run"], list("abcdefghij"), {"rnn.l0.fwd.h": rng.normal(size=(10, 3)).astype(np.float32)})
    from lstmviz.interop.lstmvis import export_lstmvis

    export_lstmvis(w["run"], w["proj"])
    w["mydata"].mkdir()
    (w["mydata"] / "thesis.txt").write_text(PRECIOUS)
    w["notes.txt"].write_text(PRECIOUS)
    torch.save(BatchFirstGRU().state_dict(), w["gru.pt"])
    (tmp_path / "digits.json").write_text(json.dumps([str(i) for i in range(10)]))
    (tmp_path / "digits.txt").write_text("0123456789" * 3)
    return w


def _record(w: dict[str, Path], out: Path | str, *extra) -> list:
    return ["record", "--checkpoint", w["m.pt"], "--text", w["t.txt"], "--out", out, "--no-progress", *extra]


def _user_model(w: dict[str, Path], factory: str, *extra) -> list:
    root = w["run"].parent
    return [
        "record",
        "--model",
        f"raising_models:{factory}",
        "--code",
        USER_MODELS,
        "--weights",
        w["gru.pt"],
        "--tokenizer",
        root / "digits.json",
        "--text",
        root / "digits.txt",
        "--out",
        root / "new" / "deep" / "r",
        "--no-progress",
        *extra,
    ]


def _train(w: dict[str, Path], out: Path | str, *extra) -> list:
    return [
        "train",
        "--corpus",
        w["t.txt"],
        "--out",
        out,
        "--batch",
        "2",
        "--seq",
        "8",
        "--hidden",
        "4",
        "--layers",
        "1",
        "--embed",
        "2",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--val-frac",
        "0.2",
        *extra,
    ]


def _samples_dir(w: dict[str, Path]) -> Path:
    from lstmviz.models.samples import SAMPLES, SAMPLES_DIR

    d = w["run"].parent / "sm"
    (d / "corpora").mkdir(parents=True)
    for s in SAMPLES:
        if s.docs:  # a classifier's own files: its factory, weights, vocabulary and documents
            for f in s.files():
                shutil.copy(SAMPLES_DIR / f, d / f)
            continue
        shutil.copy(w["m.pt"], d / s.checkpoint)
        (d / s.corpus).write_text(TEXT)
    return d


def _foreign_lstmvis(w: dict[str, Path]) -> Path:
    """An LSTMVis project lstmviz did not write: the export without lstmviz's marker."""
    d = w["run"].parent / "their_proj"
    shutil.copytree(w["proj"], d)
    (d / ".lstmviz").unlink()
    return d


def _user_partial(w: dict[str, Path]) -> Path:
    d = w["run"].parent / "fresh.partial"
    d.mkdir()
    (d / "thesis.txt").write_text(PRECIOUS)
    return w["run"].parent / "fresh"


def _not_ours_manifest(w: dict[str, Path]) -> Path:
    d = w["run"].parent / "webapp"
    d.mkdir()
    (d / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    return d


# case → (argv builder, exit status, words the one line must hold, words it must not hold)
Case = tuple[Callable[[dict[str, Path]], list], int, str, str | None]
CASES: dict[str, Case] = {
    # --overwrite replaces only what lstmviz wrote
    "record over a folder of the user's files": (
        lambda w: _record(w, w["mydata"], "--overwrite"),
        2,
        "is not an lstmviz run",
        None,
    ),
    "record over a folder whose manifest.json is not a run's": (
        lambda w: _record(w, _not_ours_manifest(w), "--overwrite"),
        2,
        "is not an lstmviz run",
        None,
    ),
    "record over a file": (lambda w: _record(w, w["notes.txt"], "--overwrite"), 2, "is a file", None),
    "record over an LSTMVis export": (lambda w: _record(w, w["proj"], "--overwrite"), 2, "is not an lstmviz run", None),
    "record when <out>.partial is the user's folder": (
        lambda w: _record(w, _user_partial(w)),
        2,
        "is not an interrupted lstmviz output",
        None,
    ),
    "import over a folder of the user's files": (
        lambda w: ["import-lstmvis", w["proj"], "--out", w["mydata"], "--overwrite"],
        2,
        "is not an lstmviz run",
        None,
    ),
    "import over the LSTMVis folder it reads": (
        lambda w: ["import-lstmvis", w["proj"], "--out", w["proj"], "--overwrite"],
        2,
        "is not an lstmviz run",
        None,
    ),
    "import over a file": (
        lambda w: ["import-lstmvis", w["proj"], "--out", w["notes.txt"], "--overwrite"],
        2,
        "is a file",
        None,
    ),
    "export lstmvis over a folder of the user's files": (
        lambda w: ["export", w["run"], "--lstmvis", w["mydata"], "--overwrite"],
        2,
        "is not an LSTMVis folder",
        None,
    ),
    "export lstmvis over an LSTMVis project lstmviz did not write": (
        lambda w: ["export", w["run"], "--lstmvis", _foreign_lstmvis(w), "--overwrite"],
        2,
        "is not an LSTMVis folder written by lstmviz",
        None,
    ),
    "export lstmvis over a run": (
        lambda w: ["export", w["run"], "--lstmvis", _second_run(w), "--overwrite"],
        2,
        "is not an LSTMVis folder",
        None,
    ),
    "export lstmvis over a file": (
        lambda w: ["export", w["run"], "--lstmvis", w["notes.txt"], "--overwrite"],
        2,
        "is a file",
        None,
    ),
    "export lstmvis without overwrite": (
        lambda w: ["export", w["run"], "--lstmvis", w["proj"]],
        2,
        "already exists (pass --overwrite",
        None,
    ),
    "samples over a folder of the user's files": (
        lambda w: ["samples", "--samples-dir", _samples_dir(w), "--out", _user_sample(w), "--overwrite"],
        2,
        "code_gru exists and is not an lstmviz run",
        None,
    ),
    "train over a file that is not a checkpoint": (
        lambda w: _train(w, w["notes.txt"], "--overwrite"),
        2,
        "is not an lstmviz checkpoint",
        None,
    ),
    "train over a state_dict": (lambda w: _train(w, w["gru.pt"], "--overwrite"), 2, "not an lstmviz checkpoint", None),
    # errors that blamed the wrong thing
    "checkpoint of random bytes": (
        lambda w: ["record", "--checkpoint", _random_bytes(w), "--text", w["t.txt"], "--out", w["run"].parent / "x"],
        2,
        "not a PyTorch checkpoint",
        "--trust-pickle",
    ),
    "factory raises ValueError": (
        lambda w: _user_model(w, "factory_value_error"),
        1,
        "the model raised ValueError: the config file",
        "--layout",
    ),
    "factory raises TypeError inside": (
        lambda w: _user_model(w, "factory_type_error"),
        1,
        "the model raised TypeError: input_size",
        "callable without",
    ),
    "forward always raises ValueError": (
        lambda w: _user_model(w, "forward_value_error"),
        1,
        "the model raised ValueError: this model is broken",
        "--layout",
    ),
    "forward always raises TypeError": (
        lambda w: _user_model(w, "forward_type_error"),
        1,
        "the model raised TypeError: this model is broken",
        "--convention",
    ),
    "forward raises with the layout given": (
        lambda w: _user_model(w, "forward_value_error", "--layout", "batch"),
        1,
        "the model raised ValueError",
        None,
    ),
    "convention that forward cannot take": (
        lambda w: _user_model(w, "forward_value_error", "--convention", "ids_hidden"),
        2,
        "--convention ids_hidden does not fit",
        "the model raised",
    ),
    # user mistakes that were internal errors
    "device meta": (lambda w: _record(w, w["run"].parent / "x", "--device", "meta"), 2, "--device meta", None),
    "device of no kind lstmviz records on": (
        lambda w: _record(w, w["run"].parent / "x", "--device", "xla"),
        2,
        "--device xla",
        None,
    ),
    "samples device meta": (
        lambda w: ["samples", "--samples-dir", _samples_dir(w), "--out", w["run"].parent / "sr", "--device", "meta"],
        2,
        "--device meta",
        None,
    ),
    "train threads -1": (lambda w: _train(w, w["run"].parent / "new.pt", "--threads", "-1"), 2, "--threads", None),
    "train threads 0": (lambda w: _train(w, w["run"].parent / "new.pt", "--threads", "0"), 2, "--threads", None),
    "train out in /proc": (lambda w: _train(w, "/proc/x.pt"), 2, "cannot write in /proc", None),
    "train lr 1e30 diverges": (
        lambda w: _train(w, w["run"].parent / "new.pt", "--lr", "1e30"),
        2,
        "training diverged at step",
        None,
    ),
    "train lr 0": (lambda w: _train(w, w["run"].parent / "new.pt", "--lr", "0"), 2, "--lr must be a positive", None),
    "train lr nan": (
        lambda w: _train(w, w["run"].parent / "new.pt", "--lr", "nan"),
        2,
        "--lr must be a positive",
        None,
    ),
    "record project pca umap on 3 tokens": (
        lambda w: _record(w, w["run"].parent / "x", "--max-tokens", "3", "--project", "pca", "umap"),
        2,
        "--project umap needs at least 4 tokens",
        None,
    ),
    "record project pca on 2 tokens": (
        lambda w: _record(w, w["run"].parent / "x", "--max-tokens", "2", "--project", "pca"),
        2,
        "--project pca needs at least 3 tokens",
        None,
    ),
    "samples projections on 3 chars": (
        lambda w: ["samples", "--samples-dir", _samples_dir(w), "--out", w["run"].parent / "sr", "--chars", "3"],
        2,
        "needs at least 4 tokens",
        None,
    ),
    # export
    "export csv over a file without overwrite": (
        lambda w: ["export", w["run"], "--csv", w["notes.txt"]],
        2,
        "--csv {root}/notes.txt already exists",
        "--out",
    ),
    "export csv onto a directory": (
        lambda w: ["export", w["run"], "--csv", w["mydata"], "--overwrite"],
        2,
        "--csv",
        "--out",
    ),
    "export parquet onto a directory": (
        lambda w: ["export", w["run"], "--parquet", w["mydata"], "--overwrite"],
        2,
        "is a directory, not a file",
        None,
    ),
    "export csv into a missing directory": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "nowhere" / "a.csv"],
        2,
        "does not exist",
        None,
    ),
    "export lstmvis onto the root": (
        lambda w: ["export", w["run"], "--lstmvis", "/", "--overwrite"],
        2,
        "is the root of the file system",
        None,
    ),
    "record out in an unwritable place": (
        lambda w: _record(w, "/proc/lstmviz-run"),
        2,
        "cannot write in /proc",
        None,
    ),
    "export csv inside the run": (
        lambda w: ["export", w["run"], "--csv", w["run"] / "acts.csv"],
        2,
        "inside the run",
        None,
    ),
    "export start -5": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--start", "-5"],
        2,
        "--start",
        None,
    ),
    "export stop -1": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--stop", "-1"],
        2,
        "--stop",
        None,
    ),
    "export reversed range": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--start", "6", "--stop", "2"],
        2,
        "--stop 2 must be greater than --start 6",
        None,
    ),
    "export empty range": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--start", "4", "--stop", "4"],
        2,
        "must be greater",
        None,
    ),
    "export start 1e12 written out": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--start", str(10**12)],
        2,
        "past the end: the run has 10 tokens",
        None,
    ),
    "export start 1e12": (
        lambda w: ["export", w["run"], "--csv", w["run"].parent / "a.csv", "--start", "1e12"],
        2,
        "invalid int",
        None,
    ),
    "export stop past the end": (
        lambda w: ["export", w["run"], "--parquet", w["run"].parent / "a.parquet", "--stop", "11"],
        2,
        "--stop 11 is past the end",
        None,
    ),
    "export lstmvis with a token range": (
        lambda w: ["export", w["run"], "--lstmvis", w["run"].parent / "p2", "--start", "2"],
        2,
        "--start",
        None,
    ),
    # leftovers
    "train out is a directory": (
        lambda w: _train(w, w["mydata"], "--overwrite"),
        2,
        "is a directory, not a file",
        None,
    ),
    "samples streams 0": (
        lambda w: ["samples", "--samples-dir", _samples_dir(w), "--out", w["run"].parent / "sr", "--streams", "0"],
        2,
        "--streams must be at least 1",
        None,
    ),
}


def _user_sample(w: dict[str, Path]) -> Path:
    """A runs root where the user keeps a folder of their own under a sample's name."""
    root = w["run"].parent / "sr"
    shutil.copytree(w["run"], root / "code_lstm")  # an earlier samples run: this one may be replaced
    (root / "code_gru").mkdir()
    (root / "code_gru" / "thesis.txt").write_text(PRECIOUS)
    return root


def _second_run(w: dict[str, Path]) -> Path:
    return lstmviz.write_run(w["run"].parent / "run2", ["a", "b"], {"x.l0.fwd.h": np.zeros((2, 1), np.float32)})


def _random_bytes(w: dict[str, Path]) -> Path:
    path = w["run"].parent / "random.pt"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, world, capsys):
    build, rc, message, absent = CASES[case]
    root = world["run"].parent
    argv = build(world)
    line = refused(argv, root, capsys, rc=rc)
    assert message.replace("{root}", str(root)) in line, line
    if absent is not None:
        assert absent not in line, line
    assert (world["mydata"] / "thesis.txt").read_text() == PRECIOUS
    assert not list(root.rglob("*.partial")) or case == "record when <out>.partial is the user's folder"


# --- what --overwrite may do --------------------------------------------------------------------------------------


def test_record_overwrite_replaces_a_run_whatever_lies_beside_it(world, capsys):
    root = world["run"].parent
    out = root / "rec"
    run_ok(_record(world, out), capsys)
    first = lstmviz.open_run(out).manifest["created"]
    stray = root / "rec.old"
    stray.mkdir()
    (stray / "keep.txt").write_text(PRECIOUS)  # a fixed side name would be in the way
    (out / "cache").mkdir(exist_ok=True)  # a run's derived data: the old run's goes with it
    (out / "cache" / "derived.npz").write_bytes(b"x")
    run_ok(_record(world, out, "--overwrite", "--max-tokens", "20"), capsys)
    run = lstmviz.open_run(out)
    assert run.n_tokens == 20 and run.manifest["complete"] is True and first
    assert not (out / "cache" / "derived.npz").exists()
    assert (stray / "keep.txt").read_text() == PRECIOUS
    assert sorted(p.name for p in root.iterdir() if p.name.startswith((".rec", "rec"))) == ["rec", "rec.old"]


def test_record_overwrite_replaces_an_interrupted_partial(world, capsys):
    root = world["run"].parent
    out = root / "rec"
    run_ok(_record(world, out), capsys)
    partial = root / "rec.partial"
    shutil.copytree(out, partial)  # what an interrupted recording leaves: marked, not complete
    manifest = json.loads((partial / "manifest.json").read_text())
    (partial / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    run_ok(_record(world, out, "--overwrite"), capsys)  # the stale partial is cleared first
    run_ok(_record(world, partial, "--overwrite"), capsys)  # and a partial itself may be replaced
    assert lstmviz.open_run(partial).n_tokens == len(TEXT)
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("rec")) == ["rec", "rec.partial"]


def test_export_overwrite_replaces_its_own_outputs(world, capsys):
    root = world["run"].parent
    run_ok(["export", world["run"], "--lstmvis", world["proj"], "--overwrite"], capsys)
    assert (world["proj"] / "lstm.yml").is_file() and (world["proj"] / ".lstmviz").is_file()
    csv = root / "a.csv"
    csv.write_text("an older export\n")
    run_ok(["export", world["run"], "--csv", csv, "--overwrite", "--start", "2", "--stop", "5"], capsys)
    table = pd.read_csv(csv)
    assert table["idx"].tolist() == [2, 3, 4]
    stored = lstmviz.open_run(world["run"]).activations("rnn.l0.fwd.h", [1], 2, 5)[:, 0]
    np.testing.assert_array_equal(table["rnn.l0.fwd.h.u0001"].to_numpy(np.float32), stored)
    assert sorted(p.name for p in root.iterdir() if "a.csv" in p.name) == ["a.csv"]


def test_record_overwrite_refuses_the_directory_it_stands_in(world, capsys, monkeypatch):
    monkeypatch.chdir(world["run"])
    line = refused(_record(world, ".", "--overwrite"), world["run"].parent, capsys)
    assert "holds the current directory" in line


def test_a_failed_swap_keeps_the_old_run_and_leaves_no_finished_partial(world, monkeypatch):
    import os

    from lstmviz import outputs

    seen = {}
    real_rename = os.rename

    def rename(src, dst):
        src, dst = Path(src), Path(dst)
        if src.name == "run.partial":
            seen["manifest"] = json.loads((src / "manifest.json").read_text())
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        lstmviz.write_run(world["run"], ["x", "y"], {"a.l0.fwd.h": np.zeros((2, 1), np.float32)}, overwrite=True)
    assert seen["manifest"]["complete"] is False  # a .partial never holds a finished run, even when killed
    assert lstmviz.open_run(world["run"]).n_tokens == 10
    assert sorted(p.name for p in world["run"].parent.iterdir() if "run" in p.name) == ["run"]


def test_a_failed_manifest_puts_the_old_run_back(world, monkeypatch):
    from lstmviz import location  # where the writer's last file, the manifest, is written

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(location, "write_json_atomically", full)
    with pytest.raises(OSError, match="No space"):
        lstmviz.write_run(world["run"], ["x", "y"], {"a.l0.fwd.h": np.zeros((2, 1), np.float32)}, overwrite=True)
    assert lstmviz.open_run(world["run"]).n_tokens == 10
    assert sorted(p.name for p in world["run"].parent.iterdir() if "run" in p.name) == ["run"]


def test_a_model_error_removes_the_directories_the_recording_made(world, capsys):
    """The model fails mid-recording (past 16 steps): the partial and the parents of --out it created go."""
    argv = _user_model(world, "x", "--streams", "1", "--chunk", "32")
    argv[2] = "user_models:max_length"
    line = refused(argv, world["run"].parent, capsys, rc=1)
    assert "the model raised IndexError: position 29 is past this model's 16 positions" in line
    assert not (world["run"].parent / "new").exists()


def test_train_overwrite_replaces_its_checkpoint_and_leaves_no_temporary(world, capsys):
    out = world["run"].parent / "again.pt"
    shutil.copy(world["m.pt"], out)
    run_ok(_train(world, out, "--overwrite"), capsys)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == "lstmviz" and ckpt["config"]["hidden"] == 4
    assert sorted(p.name for p in out.parent.iterdir() if "again" in p.name) == ["again.pt"]


def test_a_failing_checkpoint_save_leaves_nothing(world, monkeypatch):
    from lstmviz.models import train

    def full(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train.torch, "save", full)
    before = snapshot(world["run"].parent)
    model = CharRNN(CharRNNConfig("lstm", 3, 2, 1, 2))
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(world["m.pt"], model, Tokenizer.char("abc"), {}, {})
    assert snapshot(world["run"].parent) == before
