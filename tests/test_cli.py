"""The command line: what works, and every bad input we could think of (exit 2, one line, nothing written)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_checks import refused

import lstmviz
from lstmviz.cli import main
from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.tokenizers import Tokenizer
from lstmviz.models.train import save_checkpoint

USER_MODELS = Path(__file__).parent / "models"
if str(USER_MODELS) not in sys.path:
    sys.path.insert(0, str(USER_MODELS))  # user_models.py, as a user's own model code
CODE = 'def f(a, b):\n    """Doc."""\n    return g(a[1], {b: "x"})  # done\n' * 3


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A native char-LSTM checkpoint over CODE's characters, CODE as a text, and other inputs."""
    torch.manual_seed(0)
    tok = Tokenizer.char(CODE)
    model = CharRNN(CharRNNConfig("lstm", len(tok), hidden=8, layers=2, embed=4)).eval()
    f = {"ckpt": tmp_path / "m.pt", "text": tmp_path / "code.py", "out": tmp_path / "runs" / "r"}
    save_checkpoint(f["ckpt"], model, tok, {"val_bpc": 3.0}, {"command": "test"})
    f["text"].write_text(CODE)
    return f


def run_ok(argv: list[str], capsys) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_record_then_info(files, capsys):
    run_ok(
        [
            "record",
            "--checkpoint",
            files["ckpt"],
            "--text",
            files["text"],
            "--out",
            files["out"],
            "--annotate",
            "code",
            "--streams",
            "2",
            "--chunk",
            "16",
            "--no-progress",
        ],
        capsys,
    )
    run = lstmviz.open_run(files["out"])
    assert run.n_tokens == len(CODE)
    assert "".join(run.tokens.token) == CODE
    for column in ("in_string", "bracket_depth", "indent_level", "loss", "top_ids"):
        assert column in run.tokens
    assert len(run.names) == 12  # 2 layers × i f g o c h
    assert run.manifest["model_source"]["source"] == "native"
    info = run_ok(["info", files["out"]], capsys)
    assert f"tokens      {len(CODE):,}" in info and "rnn.l1.fwd: i[8] f[8] g[8] o[8] c[8] h[8]" in info
    assert "val 3.0 bits/char" in info


def test_record_loss_is_the_models_cross_entropy(files, capsys):
    """Oracle: the recorded per-token loss is the module's own next-char cross-entropy."""
    run_ok(
        [
            "record",
            "--checkpoint",
            files["ckpt"],
            "--text",
            files["text"],
            "--out",
            files["out"],
            "--streams",
            "1",
            "--chunk",
            "32",
            "--no-progress",
        ],
        capsys,
    )
    loaded = lstmviz.load_model(files["ckpt"])
    ids = torch.as_tensor(loaded.tokenizer.encode(CODE))[None]
    with torch.no_grad():
        logp = torch.log_softmax(loaded.module(ids)[0], -1)  # (T, V)
    expect = -logp[:-1].gather(1, ids[0, 1:, None])[:, 0]
    got = torch.as_tensor(lstmviz.open_run(files["out"]).tokens.loss.to_numpy())
    torch.testing.assert_close(got[:-1], expect, rtol=0, atol=1e-4)
    assert torch.isnan(got[-1])


def test_record_user_model_with_vocab_and_annotations(tmp_path, capsys):
    from user_models import WordLanguageModel

    torch.save(WordLanguageModel().state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps(["<unk>", "ab", "cd", "ef"]))
    (tmp_path / "t.txt").write_text("ab cd zz ef")
    (tmp_path / "notes.csv").write_text("token,vowel\nab,1\ncd,0\n<unk>,0\nef,1\n")
    out = tmp_path / "run"
    run_ok(
        [
            "record",
            "--model",
            "user_models:wlm",
            "--weights",
            tmp_path / "sd.pt",
            "--code",
            USER_MODELS,
            "--tokenizer",
            tmp_path / "vocab.json",
            "--text",
            tmp_path / "t.txt",
            "--annotations",
            tmp_path / "notes.csv",
            "--out",
            out,
            "--no-progress",
        ],
        capsys,
    )
    run = lstmviz.open_run(out)
    assert run.tokens.token.tolist() == ["ab", "cd", "<unk>", "ef"]
    assert run.tokens.vowel.tolist() == [1, 0, 0, 1]
    assert run.manifest["model_source"]["layout"] == "seq"


def test_samples_records_every_sample(tmp_path, files, capsys):
    from lstmviz.models.samples import SAMPLES, SAMPLES_DIR

    samples_dir = tmp_path / "sm"
    (samples_dir / "corpora").mkdir(parents=True)
    for s in SAMPLES:
        if s.docs:  # a classifier's own files: its factory, weights, vocabulary and documents
            for f in s.files():
                shutil.copy(SAMPLES_DIR / f, samples_dir / f)
            continue
        (samples_dir / s.checkpoint).write_bytes(files["ckpt"].read_bytes())
        (samples_dir / s.corpus).write_text(CODE.replace("{", "(").replace("}", ")"))
    (samples_dir / "corpora" / "parens.txt").write_text(CODE)
    out = run_ok(
        ["samples", "--samples-dir", samples_dir, "--out", tmp_path / "runs", "--chars", "60", "--no-progress"], capsys
    )
    assert out.count("recorded") == len(SAMPLES)
    code = lstmviz.open_run(tmp_path / "runs" / "code_lstm").tokens
    assert "in_string" in code and len(code) <= len(CODE)
    assert "depth" in lstmviz.open_run(tmp_path / "runs" / "parens_lstm").tokens
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "runs" / "code_lstm" / "cache" / "projection").iterdir())
    assert cached == ["pca", "umap"]  # the Projection page's default maps are precomputed
    verdicts = lstmviz.open_run(tmp_path / "runs" / "balanced_gru").tokens
    assert {"doc_label", "pred", "p0", "p1", "correct"} <= set(verdicts.columns)  # recorded with --docs


def test_record_project_precomputes_the_default_map(files, capsys):
    from lstmviz.analysis.projection import default_activation, project

    argv = ["record", "--checkpoint", files["ckpt"], "--text", files["text"], "--out", files["out"]]
    run_ok([*argv, "--no-progress", "--project", "pca"], capsys)
    run = lstmviz.open_run(files["out"])
    cache = run.path / "cache" / "projection"
    assert [p.name.split("-")[0] for p in cache.iterdir()] == ["pca"]
    project(run, default_activation(run), n_samples=min(5000, run.n_tokens))
    assert len(list(cache.iterdir())) == 1  # the page's call was served from that cache


def test_sequences_mode_records_one_sequence_per_line(files, capsys):
    argv = ["record", "--checkpoint", files["ckpt"], "--text", files["text"], "--out", files["out"]]
    run_ok([*argv, "--mode", "sequences", "--no-progress"], capsys)
    tokens = lstmviz.open_run(files["out"]).tokens
    lines = CODE.splitlines()  # the line end is no part of its line's document
    assert tokens["doc"].tolist() == [d for d, line in enumerate(lines) for _ in line]
    assert tokens["pos"].tolist() == [p for line in lines for p in range(len(line))]
    assert "".join(tokens["token"]) == "".join(lines)


def test_export_csv(files, capsys):
    run_ok(
        ["record", "--checkpoint", files["ckpt"], "--text", files["text"], "--out", files["out"], "--no-progress"],
        capsys,
    )
    dest = files["out"].parent / "acts.csv"
    run_ok(["export", files["out"], "--csv", dest, "--names", "rnn.l0.fwd.h", "--start", "0", "--stop", "5"], capsys)
    assert len(dest.read_text().strip().splitlines()) == 6


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("record", "train", "info", "samples", "import-lstmvis", "export"):
        assert command in out


def test_script_entry_point_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lstmviz", "info", str(tmp_path / "none")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("lstmviz: error: no run at") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("factory", "error"),
    [("max_length", IndexError), ("max_length_value_error", ValueError), ("max_length_os_error", OSError)],
)
def test_an_error_inside_the_users_model_is_one_line_and_leaves_nothing(factory, error, tmp_path, capsys):
    from user_models import MaxLength

    from lstmviz.errors import ModelError

    torch.save(MaxLength().state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps([str(i) for i in range(10)]))
    (tmp_path / "t.txt").write_text("0123456789" * 20)
    argv = [
        "record",
        "--model",
        f"user_models:{factory}",
        "--weights",
        tmp_path / "sd.pt",
        "--code",
        USER_MODELS,
        "--tokenizer",
        tmp_path / "vocab.json",
        "--text",
        tmp_path / "t.txt",
        "--out",
        tmp_path / "run",
        "--streams",
        "2",
        "--chunk",
        "32",
        "--no-progress",
    ]
    assert main([str(a) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"lstmviz: error: the model raised {error.__name__}: position 31 is past this model's 16")
    assert "lstmviz --traceback record" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sd.pt", "t.txt", "vocab.json"]
    with pytest.raises(ModelError) as raised:
        main([str(a) for a in ["--traceback", *argv]])
    assert type(raised.value.__cause__) is error  # the traceback shows the model's own frames


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    lstmviz.write_run(tmp_path / "run", ["a", "b"], {"rnn.l0.fwd.h": torch.zeros(2, 3).numpy()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmviz", "info", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # like `lstmviz info RUN | true`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert err == ""


# --- bad inputs ------------------------------------------------------------------------------------------------


def _prepare(name: str, f: dict[str, Path], tmp: Path) -> list:
    """Build the bad input ``name`` under ``tmp``; returns argv (``OUT`` is checked for leftovers)."""
    rec = ["record", "--checkpoint", f["ckpt"], "--text", f["text"], "--out", f["out"], "--no-progress"]
    train = ["train", "--corpus", f["text"], "--out", tmp / "new.pt", "--steps", "2"]
    write = {
        "latin1.txt": "café".encode("latin-1"),
        "empty.txt": b"",
        "notes.txt": b"x\n1\n",
        "fake.pt": b"this is text",
        "empty.pt": b"",
        "vocab.json": json.dumps(list("ab")).encode(),
        "bad_vocab.json": b"[1, 2",
        "big_vocab.json": json.dumps([chr(i) for i in range(40, 140)]).encode(),
    }
    for fname, data in write.items():
        (tmp / fname).write_bytes(data)
    model_args = ["--code", USER_MODELS, "--weights", tmp / "sd.pt"]
    cases = {
        "checkpoint missing": (["record", "--checkpoint", tmp / "nope.pt", *rec[3:]], "no such file"),
        "text missing": ([*rec[:3], "--text", tmp / "nope.txt", *rec[5:]], "no such file"),
        "text empty": ([*rec[:3], "--text", tmp / "empty.txt", *rec[5:]], "is empty"),
        "text not utf-8": ([*rec[:3], "--text", tmp / "latin1.txt", *rec[5:]], "not UTF-8"),
        "text is a directory": ([*rec[:3], "--text", tmp, *rec[5:]], "is a directory"),
        "out exists": (rec, "already exists"),
        "checkpoint is text": (["record", "--checkpoint", tmp / "fake.pt", *rec[3:]], "not a PyTorch checkpoint"),
        "checkpoint empty": (["record", "--checkpoint", tmp / "empty.pt", *rec[3:]], "is empty"),
        "pickled module": (["record", "--checkpoint", tmp / "whole.pt", *rec[3:]], "--trust-pickle"),
        "bare state_dict": (["record", "--checkpoint", tmp / "sd.pt", *rec[3:]], "--model package.module:factory"),
        "no model at all": (rec[:1] + rec[3:], "nothing to load"),
        "weights without model": ([*rec, "--weights", tmp / "sd.pt"], "--weights needs --model"),
        "model spec without colon": ([*rec[:1], "--model", "user_models", *rec[3:]], "package.module:factory"),
        "model not importable": ([*rec[:1], "--model", "no_such_pkg_q:f", *model_args, *rec[3:]], "cannot import"),
        "factory returns no module": (
            [*rec[:1], "--model", "user_models:not_a_module", *model_args, *rec[3:]],
            "not an nn.Module",
        ),
        "model without recurrent module": (
            [*rec[:1], "--model", "user_models:no_recurrent", *model_args, *rec[3:]],
            "no nn.LSTM, nn.GRU or nn.RNN",
        ),
        "weights do not fit": (
            [*rec[:1], "--model", "user_models:batch_first_gru", *model_args, *rec[3:]],
            "do not fit",
        ),
        "user model without tokenizer": (
            [
                *rec[:1],
                "--model",
                "user_models:batch_first_gru",
                "--code",
                USER_MODELS,
                "--weights",
                tmp / "gru.pt",
                *rec[3:],
            ],
            "--tokenizer",
        ),
        "unknown characters": ([*rec, "--tokenizer", tmp / "vocab.json"], "not in the char vocabulary"),
        "vocab larger than embedding": ([*rec, "--tokenizer", tmp / "big_vocab.json"], "embedding has only"),
        "vocab malformed": ([*rec, "--tokenizer", tmp / "bad_vocab.json"], "does not parse"),
        "annotations length mismatch": ([*rec, "--annotations", tmp / "notes.txt"], "one row per token"),
        "annotate code with word tokenizer": (
            [
                *rec[:1],
                "--model",
                "user_models:wlm",
                *model_args[:2],
                "--weights",
                tmp / "wlm.pt",
                "--tokenizer",
                tmp / "words.txt",
                *rec[3:],
                "--annotate",
                "code",
            ],
            "needs a char tokenizer",
        ),
        "bogus device": ([*rec, "--device", "toaster"], "not a device"),
        "unknown activation name": ([*rec, "--names", "rnn.l7.fwd.q"], "no activation 'rnn.l7.fwd.q'"),
        "max tokens zero": ([*rec, "--max-tokens", "0"], "--max-tokens must be at least 1"),
        "out is a file": ([*rec[:5], "--out", f["text"], "--overwrite", "--no-progress"], "is a file, not a run dir"),
        "sequences with a word tokenizer": (
            [*rec, "--mode", "sequences", "--tokenizer", tmp / "words.txt"],
            "one sequence per line",
        ),
        "unguessable layout": (
            [
                *rec[:1],
                "--model",
                "user_models:flattening",
                "--code",
                USER_MODELS,
                "--weights",
                tmp / "flat.pt",
                "--tokenizer",
                tmp / "vocab.json",
                *rec[3:],
            ],
            "--layout",
        ),
        "train corpus missing": (["train", "--corpus", tmp / "nope.txt", *train[3:]], "no such file"),
        "train corpus too short": (train, "shorter than --seq"),
        "train zero hidden": ([*train, "--hidden", "0"], "--hidden must be at least 1"),
        "train out exists": ([*train[:3], "--out", f["ckpt"], *train[5:]], "already exists"),
        "info missing run": (["info", tmp / "none"], "does not exist"),
        "info not a run": (["info", tmp], "no manifest.json"),
        "export unknown activation": (
            ["export", tmp / "run", "--csv", tmp / "x.csv", "--names", "rnn.l9.fwd.h"],
            "no activation",
        ),
        "import missing folder": (["import-lstmvis", tmp / "nofolder", "--out", tmp / "imp"], "not a directory"),
        "samples unknown name": (["samples", "--only", "gpt5", "--out", tmp / "sruns"], "no sample model named"),
        "unknown command": (["frobnicate"], "invalid choice"),
        "missing required option": (["record", "--checkpoint", f["ckpt"], "--out", tmp / "o"], "--text"),
    }
    argv, message = cases[name]
    return [str(a) for a in argv], message


def _fixtures_for_bad_inputs(f: dict[str, Path], tmp: Path) -> None:
    import user_models as um

    torch.manual_seed(0)
    model = lstmviz.load_model(f["ckpt"]).module
    torch.save(model, tmp / "whole.pt")
    torch.save(model.state_dict(), tmp / "sd.pt")
    torch.save(um.WordLanguageModel().state_dict(), tmp / "wlm.pt")
    torch.save(um.Flattening().state_dict(), tmp / "flat.pt")
    torch.save(um.BatchFirstGRU().state_dict(), tmp / "gru.pt")
    (tmp / "words.txt").write_text("<unk>\ndef\nf\n")
    lstmviz.write_run(tmp / "run", ["a", "b"], {"rnn.l0.fwd.h": torch.zeros(2, 3).numpy()}, overwrite=True)


BAD_INPUTS = [
    "checkpoint missing",
    "text missing",
    "text empty",
    "text not utf-8",
    "text is a directory",
    "out exists",
    "checkpoint is text",
    "checkpoint empty",
    "pickled module",
    "bare state_dict",
    "no model at all",
    "weights without model",
    "model spec without colon",
    "model not importable",
    "factory returns no module",
    "model without recurrent module",
    "weights do not fit",
    "user model without tokenizer",
    "unknown characters",
    "vocab larger than embedding",
    "vocab malformed",
    "annotations length mismatch",
    "annotate code with word tokenizer",
    "bogus device",
    "max tokens zero",
    "out is a file",
    "sequences with a word tokenizer",
    "unguessable layout",
    "train corpus missing",
    "train corpus too short",
    "train zero hidden",
    "train out exists",
    "info missing run",
    "info not a run",
    "export unknown activation",
    "import missing folder",
    "samples unknown name",
    "unknown command",
    "missing required option",
]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input(case, files, tmp_path, capsys):
    tmp = tmp_path / "in"
    tmp.mkdir()
    _fixtures_for_bad_inputs(files, tmp)
    argv, message = _prepare(case, files, tmp)
    if case == "out exists":
        files["out"].mkdir(parents=True)
    line = refused(argv, tmp_path, capsys)  # exit 2, one line, no traceback, the whole tree unchanged
    assert message in line, line
    assert files["out"].exists() == (case == "out exists")


def test_info_on_a_run_without_model_or_tokenizer(tmp_path, capsys):
    """Runs written by importers or write_run carry no model or tokenizer entries: info still describes them."""
    lstmviz.write_run(tmp_path / "bare", ["a", "b", "c"], {"enc.l0.rev.h": torch.zeros(3, 2).numpy()})
    out = run_ok(["info", tmp_path / "bare"], capsys)
    assert "tokens      3 in 1 document(s)" in out
    assert "enc.l0.rev: h[2]" in out and "tokenizer" not in out
