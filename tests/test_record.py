"""lstmviz.record.record_text, the library call behind ``lstmviz record``, the samples and live mode: its errors
name the arguments at fault (never a CLI flag), the CLI spells the same errors as flags, and the manifest says
what the model is once."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch

import lstmviz
from lstmviz.cli import describe_run, main
from lstmviz.errors import ModelError, RunError, UserError
from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.loading import load_model
from lstmviz.models.tokenizers import Tokenizer
from lstmviz.models.train import save_checkpoint
from lstmviz.record import record_text

USER_MODELS = Path(__file__).parent / "models"
if str(USER_MODELS) not in sys.path:
    sys.path.insert(0, str(USER_MODELS))
TEXT = "abc cab bca\nacb bac\n" * 4
FLAG = re.compile(r"(?<![\w-])--[a-z]")


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """A native char-LSTM checkpoint over TEXT's characters."""
    torch.manual_seed(0)
    tok = Tokenizer.char(TEXT)
    model = CharRNN(CharRNNConfig("lstm", len(tok), hidden=6, layers=2, embed=4)).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, tok, {"val_bpc": 2.0}, {"command": "test"})
    return path


def _message(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    return str(e.value)


def _cli_error(argv: list, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    return capsys.readouterr().err


def test_library_errors_name_arguments_and_the_cli_names_flags(ckpt, tmp_path, capsys):
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "sd.pt").write_bytes(b"")
    loaded = load_model(ckpt)
    words = dataclasses.replace(loaded, tokenizer=Tokenizer.word("abc cab bca", unk="<unk>"))
    out = tmp_path / "run"
    rec = ["record", "--checkpoint", ckpt, "--text", tmp_path / "text.txt", "--out", out, "--no-progress"]
    # (library call, its words, CLI argv, the CLI's words)
    cases = [
        (lambda: load_model(weights="x.pt"), "weights= needs model=", None, None),
        (
            lambda: load_model(model="user_models:batch_first_gru", code=USER_MODELS),
            'model="user_models:batch_first_gru" needs weights="FILE"',
            ["record", "--model", "user_models:batch_first_gru", "--code", USER_MODELS, *rec[3:]],
            "--model user_models:batch_first_gru needs --weights FILE",
        ),
        (
            lambda: load_model(model="no_colon"),
            "model= must look like package.module:factory",
            ["record", "--model", "no_colon", *rec[3:]],
            "--model must look like package.module:factory",
        ),
        (
            lambda: record_text(words, "abc cab", out, annotate="parens", progress=False),
            "annotate='parens' needs a char tokenizer",
            None,
            None,
        ),
        (
            lambda: record_text(loaded, TEXT, out, names=["rnn.l7.fwd.q"], progress=False),
            "names=: this model has no activation 'rnn.l7.fwd.q'",
            [*rec, "--names", "rnn.l7.fwd.q"],
            "--names: this model has no activation 'rnn.l7.fwd.q'",
        ),
        (
            lambda: record_text(words, "abc cab", out, mode="sequences", progress=False),
            "mode='sequences' records one sequence per line",
            None,
            None,
        ),
        (
            lambda: record_text(loaded, TEXT, out, device="toaster", progress=False),
            "device='toaster' is not a device",
            [*rec, "--device", "toaster"],
            "--device toaster is not a device",
        ),
        (
            lambda: record_text(loaded, TEXT, out, max_tokens=2, projections=["pca"], progress=False),
            "projections='pca' needs at least 3 tokens; this recording has 2",
            [*rec, "--max-tokens", "2", "--project", "pca"],
            "--project pca needs at least 3 tokens; this recording has 2",
        ),
        (
            lambda: record_text(dataclasses.replace(loaded, tokenizer=None), TEXT, out, progress=False),
            'load it with tokenizer="FILE"',
            None,
            None,
        ),
    ]
    for call, words_, argv, flag_words in cases:
        message = _message(call)
        assert words_ in message
        assert not FLAG.search(message), message
        if argv is not None:
            err = _cli_error(argv, capsys)
            assert flag_words in err, err
            assert words_ not in err
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_reworded_spells_each_named_argument_as_its_flag():
    e = UserError(
        "cannot tell how to call M: pass layout='batch'|'seq' or convention='ids'|'ids_hidden'; "
        'or model="pkg.mod:f" with weights=, and trust_pickle=True, code=',
        arguments=(
            "layout='batch'|'seq'",
            "convention='ids'|'ids_hidden'",
            'model="pkg.mod:f"',
            "weights=",
            "trust_pickle=True",
            "code=",
        ),
    )
    flags = {
        "layout": "--layout",
        "convention": "--convention",
        "model": "--model",
        "weights": "--weights",
        "trust_pickle": "--trust-pickle",
    }
    assert e.reworded(flags) == (
        "cannot tell how to call M: pass --layout batch|seq or --convention ids|ids_hidden; "
        "or --model pkg.mod:f with --weights, and --trust-pickle, code="
    )
    assert str(e).startswith("cannot tell how to call M: pass layout='batch'|'seq'")
    assert UserError("weights= is plain text here").reworded(flags) == "weights= is plain text here"


def test_one_error_hierarchy():
    assert issubclass(RunError, UserError) and issubclass(ModelError, UserError)
    assert lstmviz.UserError is UserError and lstmviz.RunError is RunError


def test_no_recurrent_module_is_one_error(tmp_path):
    import user_models as um

    from lstmviz.analysis.gradients import find_parts

    torch.save(um.NoRecurrent().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError) as loading:
        load_model(model="user_models:no_recurrent", weights=tmp_path / "sd.pt", code=USER_MODELS)
    with pytest.raises(UserError) as gradients:
        find_parts(um.NoRecurrent())
    assert type(loading.value) is type(gradients.value) is UserError
    message = "NoRecurrent has no nn.LSTM, nn.GRU or nn.RNN module: lstmviz records only those"
    assert str(loading.value) == str(gradients.value) == message
    with pytest.raises(UserError, match=r"contains no nn\.LSTM, nn\.GRU"):  # a RunError, which is a UserError
        lstmviz.record_corpus(um.NoRecurrent(), [1, 2, 3], tmp_path / "run", progress=False)


def test_manifest_names_the_model_once(ckpt, tmp_path):
    loaded = load_model(ckpt)
    out = record_text(loaded, TEXT, tmp_path / "run", streams=2, chunk=16, progress=False)
    manifest = lstmviz.open_run(out).manifest
    module = loaded.module
    assert manifest["model"]["class"] == f"{type(module).__module__}.{type(module).__qualname__}"
    assert manifest["model"]["params"] == sum(p.numel() for p in module.parameters())
    assert [m["path"] for m in manifest["model"]["modules"]] == ["rnn"]
    assert not {"class", "params", "recurrent_modules"} & set(manifest["model_source"])
    assert manifest["model_source"]["source"] == "native"


def test_older_runs_that_repeat_the_model_in_model_source_still_open(ckpt, tmp_path):
    loaded = load_model(ckpt)
    out = record_text(loaded, TEXT, tmp_path / "run", streams=2, chunk=16, progress=False)
    path = out / "manifest.json"
    manifest = json.loads(path.read_text())
    params = manifest["model"]["params"]
    manifest["model_source"] |= {"class": manifest["model"]["class"], "params": params, "recurrent_modules": ["rnn"]}
    path.write_text(json.dumps(manifest))
    assert lstmviz.open_run(out).manifest["model_source"]["params"] == params
    assert any(line.startswith("model") and f"{params:,} parameters" in line for line in describe_run(out))
    manifest["model_source"]["params"] = "many"
    path.write_text(json.dumps(manifest))
    with pytest.raises(RunError, match=r"model_source\.params must be an integer"):
        lstmviz.open_run(out)
