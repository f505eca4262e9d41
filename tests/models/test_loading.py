"""load_model: the three sources, the calling conventions, and the refusals, against the original modules."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from user_models import VOCAB, BatchFirstGRU, WordLanguageModel

from lstmviz.errors import UserError
from lstmviz.models.charrnn import CharRNN, CharRNNConfig
from lstmviz.models.loading import CallConvention, load_model


def test_native_checkpoint_gives_the_same_logits(native):
    path, model, tok = native
    loaded = load_model(path)
    ids = torch.as_tensor(tok.encode("abc defgh ab")).view(2, 6)
    assert isinstance(loaded.module, CharRNN)
    assert loaded.tokenizer.vocab == tok.vocab
    assert (loaded.call.convention, loaded.call.layout) == ("ids", "batch")
    with torch.no_grad():
        assert torch.equal(loaded.call(loaded.module, ids), model(ids))
    assert loaded.description["source"] == "native"
    assert loaded.description["metrics"] == {"val_bpc": 1.5}
    assert loaded.vocab_size == len(tok)


def test_word_language_model_is_called_sequence_first(tmp_path, user_models):
    torch.manual_seed(1)
    original = WordLanguageModel().eval()
    torch.save(original.state_dict(), tmp_path / "sd.pt")
    loaded = load_model(model="user_models:wlm", weights=tmp_path / "sd.pt", code=user_models)
    assert (loaded.call.convention, loaded.call.layout) == ("ids_hidden", "seq")
    ids = torch.randint(0, VOCAB, (3, 5))  # (B, T)
    with torch.no_grad():
        expect = original(ids.t(), original.init_hidden(3))[0].view(5, 3, VOCAB).transpose(0, 1)
        got = loaded.call(loaded.module, ids)
    assert got.shape == (3, 5, VOCAB)
    torch.testing.assert_close(got, expect, rtol=0, atol=1e-6)


def test_init_hidden_is_used_when_hidden_none_fails(tmp_path, user_models):
    torch.save(WordLanguageModel().state_dict(), tmp_path / "sd.pt")
    loaded = load_model(model="user_models:strict_hidden", weights=tmp_path / "sd.pt", code=user_models)
    assert loaded.call.hidden_none is False
    assert loaded.call(loaded.module, torch.zeros(2, 4, dtype=torch.long)).shape == (2, 4, VOCAB)


def test_batch_first_factory(tmp_path, user_models):
    torch.manual_seed(2)
    original = BatchFirstGRU().eval()
    torch.save({"state_dict": original.state_dict()}, tmp_path / "sd.pt")  # a wrapped state_dict also loads
    loaded = load_model(model="user_models:batch_first_gru", weights=tmp_path / "sd.pt", code=user_models)
    assert (loaded.call.convention, loaded.call.layout) == ("ids", "batch")
    ids = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded.call(loaded.module, ids), original(ids))


def test_unguessable_layout_names_the_option(tmp_path, user_models):
    torch.save(torch.nn.Module().state_dict(), tmp_path / "sd.pt")
    import user_models as um

    torch.save(um.Flattening().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError, match="layout="):
        load_model(model="user_models:flattening", weights=tmp_path / "sd.pt", code=user_models)
    forced = load_model(model="user_models:flattening", weights=tmp_path / "sd.pt", code=user_models, layout="batch")
    assert forced.call.layout == "batch"


class Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_malicious_pickle_does_not_run_without_trust(tmp_path):
    target = tmp_path / "pwned"
    torch.save(Evil(target), tmp_path / "evil.pt")
    with pytest.raises(UserError, match="trust_pickle=True") as e:
        load_model(tmp_path / "evil.pt")
    assert "arbitrary code" in str(e.value)
    assert not target.exists()
    # The oracle that the file really is malicious: with trust it runs, and is then refused as no module.
    with pytest.raises(UserError, match=r"not an nn\.Module"):
        load_model(tmp_path / "evil.pt", trust_pickle=True)
    assert target.exists()


def test_trusted_pickled_module_loads(tmp_path, native):
    _, model, tok = native
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(UserError, match="trust"):
        load_model(tmp_path / "whole.pt")
    loaded = load_model(tmp_path / "whole.pt", trust_pickle=True, tokenizer=tok)
    assert loaded.description["source"] == "pickle"
    ids = torch.as_tensor(tok.encode("abcabc")).view(1, 6)
    with torch.no_grad():
        assert torch.equal(loaded.call(loaded.module, ids), model(ids))


def test_ids_beyond_the_embedding_fail_before_work(native):
    loaded = load_model(native[0])
    loaded.check_ids(np.arange(len(native[2])))
    with pytest.raises(UserError, match="beyond the model's embedding of 9"):
        loaded.check_ids(np.array([0, 9]))
    with pytest.raises(UserError, match="negative"):
        loaded.check_ids(np.array([-1]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nothing to load"),
        ({"weights": "x.pt"}, "weights= needs model="),
        ({"model": "no_colon"}, "package.module:factory"),
        ({"model": "surely_not_a_module_xyz:f", "weights": "x.pt"}, "cannot import"),
        ({"model": "user_models:missing", "weights": "x.pt"}, "no callable 'missing'"),
        ({"model": "user_models:not_a_module", "weights": "x.pt"}, "not an nn.Module"),
        ({"model": "user_models:needs_arguments", "weights": "x.pt"}, "without arguments"),
        ({"model": "user_models:batch_first_gru"}, "needs weights="),
        ({"convention": "magic"}, "convention must be"),
    ],
)
def test_bad_arguments(kwargs, message, user_models):
    with pytest.raises(UserError, match=message):
        load_model(code=user_models if "model" in kwargs else None, **kwargs)


def test_model_without_recurrent_module(tmp_path, user_models):
    import user_models as um

    torch.save(um.NoRecurrent().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError, match=r"no nn\.LSTM, nn\.GRU or nn\.RNN"):
        load_model(model="user_models:no_recurrent", weights=tmp_path / "sd.pt", code=user_models)


def test_mismatched_weights_are_named(tmp_path, user_models):
    torch.save(CharRNN(CharRNNConfig(vocab_size=5, hidden=4, layers=1)).state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError, match="do not fit BatchFirstGRU: missing"):
        load_model(model="user_models:batch_first_gru", weights=tmp_path / "sd.pt", code=user_models)
    other = BatchFirstGRU()
    other.gru = torch.nn.GRU(5, 9, batch_first=True)
    torch.save(other.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(UserError, match="size mismatch"):
        load_model(model="user_models:batch_first_gru", weights=tmp_path / "sd.pt", code=user_models)


def test_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps([1, 2]))
    torch.save([1, 2], tmp_path / "junk.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pt")
    torch.save({"format": "lstmviz", "model": {}}, tmp_path / "broken.pt")
    cases = {
        "text.pt": "not a PyTorch checkpoint",
        "empty.pt": "empty",
        "missing.pt": "no such file",
        "bare.pt": "bare state_dict",
        "broken.pt": "no 'config' entry",
        "junk.pt": "not an lstmviz",
        "raw.pkl": "not a PyTorch checkpoint: it is a pickle of plain data",  # it names no code to run
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message):
            load_model(tmp_path / name)


def test_tokenizer_larger_than_embedding(native, tmp_path):
    (tmp_path / "vocab.json").write_text('["' + '", "'.join("abcdefghijklm") + '"]')
    with pytest.raises(UserError, match="13 symbols but the model's embedding has only 9"):
        load_model(native[0], tokenizer=tmp_path / "vocab.json")


def test_call_convention_unflattens_batch_first_outputs():
    conv = CallConvention("ids", "batch")
    flat = conv(lambda ids: torch.arange(ids.numel() * 2.0).view(-1, 2), torch.zeros(2, 3, dtype=torch.long))
    assert flat.shape == (2, 3, 2)
    assert flat[1, 0, 0] == 6.0  # row-major: batch 1, time 0 is the fourth row of the flattened output


def test_state_is_carried_across_chunks_for_a_model_that_needs_its_hidden(tmp_path, user_models):
    """A model that refuses hidden=None still records as one continuous stream: the call carries its state."""
    import lstmviz

    torch.manual_seed(3)
    torch.save(WordLanguageModel().state_dict(), tmp_path / "sd.pt")
    loaded = load_model(model="user_models:strict_hidden", weights=tmp_path / "sd.pt", code=user_models)
    ids = torch.randint(0, VOCAB, (40,))
    run = lstmviz.open_run(
        lstmviz.record_corpus(
            loaded.module, ids, tmp_path / "run", streams=2, chunk=7, call=loaded.call, progress=False
        )
    )
    model = loaded.module
    with torch.no_grad():
        whole, _ = model.rnn(model.encoder(ids.view(2, 20).t()), model.init_hidden(2))  # (T, B, H)
    expect = whole.transpose(0, 1).reshape(40, -1).numpy()
    np.testing.assert_allclose(
        run.activations(f"rnn.l{model.rnn.num_layers - 1}.fwd.h"), expect, rtol=2**-11, atol=1e-6
    )
