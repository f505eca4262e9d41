"""Independent documents (``record --docs``, ``--mode sequences``) and users' own models, with torch as the oracle:
every document's states, forward and reverse, are the module's on that document alone, and its recorded output
is the model's on that document alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_checks import refused

import lstmviz
from lstmviz.cli import main
from lstmviz.documents import doc_table, lines_documents, read_docs
from lstmviz.errors import UserError

USER_MODELS = Path(__file__).parent / "models"
if str(USER_MODELS) not in sys.path:
    sys.path.insert(0, str(USER_MODELS))  # user_models.py, as a user's own model code
import user_models as um  # noqa: E402

TOL = {"rtol": 2**-10, "atol": 2e-4}  # float16 storage
REVIEWS = [
    ("the movie was good", 2, "r1"),
    ("awful", 0, "r2"),
    ("a film is not bad", 1, "r3"),
    ("the film was great great great", 2, "r4"),
    ("bad bad", 0, "r5"),
    ("the movie is not good the film is not great", 0, "r6"),
    ("a movie", 1, "r7"),
]


def record(argv: list, capsys) -> lstmviz.Run:
    rc = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert rc == 0, err
    return lstmviz.open_run(argv[argv.index("--out") + 1])


def classifier_files(tmp_path: Path, factory: str) -> dict:
    model = getattr(um, factory)().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps(um.SENTIMENT_VOCAB))
    lines = [json.dumps({"text": t, "label": y, "id": i}) for t, y, i in REVIEWS]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    return {
        "model": model,
        "argv": [
            "record",
            "--model",
            f"user_models:{factory}",
            "--weights",
            tmp_path / "sd.pt",
            "--code",
            USER_MODELS,
            "--tokenizer",
            tmp_path / "vocab.json",
            "--docs",
            tmp_path / "docs.jsonl",
            "--streams",
            "4",
            "--no-progress",
        ],
    }


def word_ids(text: str) -> torch.Tensor:
    return torch.tensor([um.SENTIMENT_VOCAB.index(w) for w in text.split()])


def check_alone(run: lstmviz.Run, doc: int, rnn: torch.nn.Module, x: torch.Tensor) -> None:
    """The run's rows of ``doc`` against ``rnn`` on that document's input ``x`` alone (``[T, 1, E]``, or
    ``[1, T, E]`` when batch-first): the last layer's h at every step, forward and reverse, and every layer's
    final h and c, where each direction ends (the forward at the last token, the reverse at the first)."""
    rows = np.flatnonzero(run.tokens.doc.to_numpy() == doc)
    with torch.no_grad():
        out, state = rnn(x)
    out = out[0] if rnn.batch_first else out[:, 0]  # (T, 2H)
    H = rnn.hidden_size
    top = rnn.num_layers - 1
    for d, half in (("fwd", out[:, :H]), ("rev", out[:, H:])):
        np.testing.assert_allclose(run.activations(f"rnn.l{top}.{d}.h")[rows], half.numpy(), **TOL)
    finals = {"h": state[0], "c": state[1]} if isinstance(state, tuple) else {"h": state}
    for layer in range(rnn.num_layers):
        for k, final in finals.items():
            np.testing.assert_allclose(run.activations(f"rnn.l{layer}.fwd.{k}")[rows[-1]], final[2 * layer, 0], **TOL)
            np.testing.assert_allclose(
                run.activations(f"rnn.l{layer}.rev.{k}")[rows[0]], final[2 * layer + 1, 0], **TOL
            )


def check_outputs(run: lstmviz.Run, logits_alone: list[torch.Tensor]) -> None:
    table = doc_table(run)
    assert table.doc_id.tolist() == [i for _, _, i in REVIEWS]
    assert table.doc_label.tolist() == [y for _, y, _ in REVIEWS]
    assert table.doc_line.tolist() == [1, 2, 3, 5, 6, 7, 8]  # the blank line 4 is no document
    for d, logits in enumerate(logits_alone):
        p = torch.softmax(logits, -1).numpy()
        got = table.loc[d, [f"p{k}" for k in range(len(p))]].to_numpy(float)
        np.testing.assert_allclose(got, p, rtol=1e-5, atol=1e-6)
        assert table.pred[d] == p.argmax() and table.correct[d] == (p.argmax() == REVIEWS[d][1])
        np.testing.assert_allclose(table.pred_p[d], p.max(), rtol=1e-5)


def test_a_packed_bidirectional_classifier_through_record_docs(tmp_path, capsys):
    f = classifier_files(tmp_path, "sentiment_packed")
    run = record([*f["argv"], "--out", tmp_path / "run"], capsys)
    model = f["model"]
    assert run.manifest["model_source"]["convention"] == "ids_lengths"
    assert table_texts(run) == [t for t, _, _ in REVIEWS]
    logits = []
    for d, (text, _, _) in enumerate(REVIEWS):
        ids = word_ids(text)[:, None]  # (T, 1): the tutorial's text is [sent len, batch]
        check_alone(run, d, model.rnn, model.embedding(ids))
        with torch.no_grad():
            logits.append(model(ids, torch.tensor([len(ids)]))[0])
    check_outputs(run, logits)


def test_an_unpacked_bidirectional_classifier_does_not_see_the_padding(tmp_path, capsys):
    f = classifier_files(tmp_path, "sentiment_unpacked")
    run = record([*f["argv"], "--out", tmp_path / "run"], capsys)
    model = f["model"]
    logits = []
    for d, (text, _, _) in enumerate(REVIEWS):
        ids = word_ids(text)[None]  # (1, T)
        check_alone(run, d, model.rnn, model.embedding(ids))
        with torch.no_grad():
            logits.append(model(ids)[0])
    check_outputs(run, logits)
    # the oracle can tell: in a right-padded batch the model itself gives the short review another verdict
    padded = torch.full((2, 6), um.SENTIMENT_VOCAB.index("<pad>"))
    padded[0], padded[1, :1] = word_ids(REVIEWS[3][0]), word_ids(REVIEWS[1][0])
    with torch.no_grad():
        assert (model(padded)[1] - logits[1]).abs().max() > 1e-3


def table_texts(run: lstmviz.Run) -> list[str]:
    return doc_table(run).text.tolist()


def test_a_model_that_counts_its_padding_is_probed_with_real_symbols_and_padded_with_its_pad(tmp_path, capsys):
    """Char vocabulary with specials (still split by character), forward(ids) packing by ids != <pad>: the
    probe must not feed <pad>, and documents must be padded with it; a text file is one document a line."""
    model = um.pad_counting_gru().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps(um.CHAR_SPECIALS_VOCAB))
    lines = ["abc de", "h", "", "bad face bead", "ccc"]
    (tmp_path / "docs.txt").write_text("\r\n".join(lines) + "\r\n")
    argv = [
        "record",
        "--model",
        "user_models:pad_counting_gru",
        "--weights",
        tmp_path / "sd.pt",
        "--code",
        USER_MODELS,
        "--tokenizer",
        tmp_path / "vocab.json",
        "--streams",
        "3",
        "--no-progress",
    ]
    run = record([*argv, "--docs", tmp_path / "docs.txt", "--out", tmp_path / "docs"], capsys)
    texts = [s for s in lines if s]
    assert table_texts(run) == texts and run.manifest["tokenizer"]["kind"] == "char"
    for d, text in enumerate(texts):
        ids = torch.tensor([um.CHAR_SPECIALS_VOCAB.index(ch) for ch in text])[None]  # (1, T)
        check_alone(run, d, model.rnn, model.embedding(ids))
        with torch.no_grad():
            p = torch.softmax(model(ids)[0], -1).numpy()
        np.testing.assert_allclose(doc_table(run).loc[d, ["p0", "p1", "p2"]].to_numpy(float), p, rtol=1e-5)
    # --mode sequences over the same text: one document a line, the line end not part of it
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    seq = record([*argv, "--text", tmp_path / "text.txt", "--mode", "sequences", "--out", tmp_path / "seq"], capsys)
    assert "\n" not in seq.tokens.token.tolist() and table_texts(seq) == texts
    for d, text in enumerate(texts):
        ids = torch.tensor([um.CHAR_SPECIALS_VOCAB.index(ch) for ch in text])[None]
        check_alone(seq, d, model.rnn, model.embedding(ids))


# --- word_language_model: the token stream and the loss of its own data.py and main.py ----------------------

CORPUS = "the cat sat on the mat\nthe dog ate a bone\n\na cat and a dog sat on a log\nthe end of it all\n" * 3


def data_py_tokenize(path: Path) -> tuple[list[str], torch.Tensor]:
    """word_language_model/data.py's Corpus.tokenize: its dictionary (in order of first appearance) and ids."""
    idx2word: list[str] = []
    word2idx: dict[str, int] = {}
    with open(path, encoding="utf8") as f:
        for line in f:
            for word in [*line.split(), "<eos>"]:
                if word not in word2idx:
                    idx2word.append(word)
                    word2idx[word] = len(idx2word) - 1
    with open(path, encoding="utf8") as f:
        idss = [torch.tensor([word2idx[w] for w in [*line.split(), "<eos>"]]).type(torch.int64) for line in f]
    return idx2word, torch.cat(idss)


def main_py_token_losses(model, data: torch.Tensor, bsz: int, bptt: int) -> torch.Tensor:
    """main.py's evaluate() on batchify(data, bsz), per target: NLL ``[len - 1, bsz]`` (time, stream)."""
    nbatch = data.size(0) // bsz
    source = data.narrow(0, 0, nbatch * bsz).view(bsz, -1).t().contiguous()  # batchify
    hidden = model.init_hidden(bsz)
    losses = []
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            seq_len = min(bptt, len(source) - 1 - i)  # get_batch
            x, targets = source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)
            output, hidden = model(x, hidden)
            hidden = tuple(h.detach() for h in hidden)  # repackage_hidden
            losses.append(torch.nn.functional.nll_loss(output, targets, reduction="none").view(seq_len, bsz))
    return torch.cat(losses)


@pytest.fixture
def word_lm(tmp_path) -> dict:
    model = um.word_lm().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "train.txt").write_text(CORPUS)
    vocab, ids = data_py_tokenize(tmp_path / "train.txt")
    assert len(vocab) <= um.WORD_LM_VOCAB
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    argv = [
        "record",
        "--model",
        "user_models:word_lm",
        "--weights",
        tmp_path / "sd.pt",
        "--code",
        USER_MODELS,
        "--tokenizer",
        tmp_path / "vocab.txt",
        "--text",
        tmp_path / "train.txt",
        "--chunk",
        "7",
        "--no-progress",
    ]
    return {"model": model, "ids": ids, "argv": argv}


def test_word_language_model_token_stream_and_loss_are_its_own(word_lm, tmp_path, capsys):
    model, ids = word_lm["model"], word_lm["ids"]
    run = record([*word_lm["argv"], "--streams", "1", "--out", tmp_path / "one"], capsys)
    assert run.tokens.token_id.tolist() == ids.tolist()
    own = main_py_token_losses(model, ids, 1, 7)
    total = own.sum().item() / (len(ids) - 1)  # evaluate(): total_loss / (len(data_source) - 1)
    assert np.nanmean(run.tokens.loss.to_numpy(float)) == pytest.approx(total, rel=1e-5)
    # three streams, as batchify(data, 3) cuts them: every loss main.py computes is the recorded one
    n = len(ids) - len(ids) % 3
    run = record([*word_lm["argv"], "--streams", "3", "--max-tokens", n, "--out", tmp_path / "three"], capsys)
    own = main_py_token_losses(model, ids[:n], 3, 7)  # (L - 1, 3)
    L = n // 3
    got = run.tokens.loss.to_numpy(float).reshape(3, L)[:, : L - 1].T
    np.testing.assert_allclose(got, own.numpy(), rtol=1e-5, atol=1e-6)


def test_a_pickled_word_language_model_loads_with_code(word_lm, tmp_path, capsys):
    """torch.save(model) of a class importable only from --code DIR."""
    import importlib
    import inspect

    code = tmp_path / "code"
    code.mkdir()
    name = f"wlm_pickled_{abs(hash(str(tmp_path)))}"
    (code / f"{name}.py").write_text(
        "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n\n" + inspect.getsource(um.RNNModel)
    )
    sys.path.insert(0, str(code))
    try:
        model = importlib.import_module(name).RNNModel("GRU", um.WORD_LM_VOCAB, 12, 10, 2, dropout=0.2).eval()
        torch.save(model, tmp_path / "model.pt")
    finally:
        sys.path.remove(str(code))
        del sys.modules[name]
    argv = [a for a in word_lm["argv"] if a not in ("--model", "user_models:word_lm", "--weights", tmp_path / "sd.pt")]
    argv = [*argv[:1], "--checkpoint", tmp_path / "model.pt", "--trust-pickle", *argv[1:], "--streams", "1"]
    argv = [a for i, a in enumerate(argv) if a != "--code" and (i == 0 or argv[i - 1] != "--code")]
    assert "needs code that is not importable" in refused([*argv, "--out", tmp_path / "x"], tmp_path, capsys)
    run = record([*argv, "--code", code, "--out", tmp_path / "run"], capsys)
    try:
        ids = word_lm["ids"]
        with torch.no_grad():
            out, _ = model.rnn(model.encoder(ids[:, None]), model.init_hidden(1))  # (T, 1, H)
        np.testing.assert_allclose(run.activations("rnn.l1.fwd.h"), out[:, 0].numpy(), **TOL)
        assert run.manifest["model_source"]["rebuild"]["pickled"] is True
    finally:
        sys.modules.pop(name, None)


# --- the notebook API for the same models ------------------------------------------------------------------


def test_run_with_cache_with_a_loaded_models_call(word_lm, tmp_path):
    loaded = lstmviz.load_model(model="user_models:word_lm", weights=tmp_path / "sd.pt", code=USER_MODELS)
    ids = word_lm["ids"][:24].view(2, 12)  # (B, T)
    out, cache = lstmviz.run_with_cache(loaded.module, ids, call=loaded.call, names="rnn.l1.fwd.h")
    assert list(cache) == ["rnn.l1.fwd.h"]
    model = word_lm["model"]
    with torch.no_grad():
        expect, _ = model.rnn(model.encoder(ids.t()), model.init_hidden(2))  # (T, B, H)
    torch.testing.assert_close(cache["rnn.l1.fwd.h"], expect.transpose(0, 1), rtol=0, atol=1e-6)
    assert out.shape == (2, 12, um.WORD_LM_VOCAB)
    with pytest.raises(UserError, match=r"no activation 'rnn\.l9\.fwd\.h'; its activations are rnn\.l0\.fwd\.i"):
        lstmviz.run_with_cache(loaded.module, ids, call=loaded.call, names=["rnn.l1.fwd.h", "rnn.l9.fwd.h"])


@pytest.mark.parametrize("factory", ["sentiment_packed", "sentiment_unpacked"])
def test_run_with_cache_on_a_padded_batch_of_documents(factory, tmp_path):
    model = getattr(um, factory)().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = lstmviz.load_model(model=f"user_models:{factory}", weights=tmp_path / "sd.pt", code=USER_MODELS)
    texts = [t for t, _, _ in REVIEWS[:4]]
    lengths = torch.tensor([len(t.split()) for t in texts])
    ids = torch.full((4, int(lengths.max())), loaded.pad_id)
    for r, t in enumerate(texts):
        ids[r, : lengths[r]] = word_ids(t)
    out, cache = lstmviz.run_with_cache(loaded.module, ids, call=loaded.call, lengths=lengths)
    H = model.rnn.hidden_size
    for r, t in enumerate(texts):
        x = model.embedding(word_ids(t)[:, None] if not model.rnn.batch_first else word_ids(t)[None])
        with torch.no_grad():
            alone, _ = model.rnn(x)
        alone = alone[:, 0] if not model.rnn.batch_first else alone[0]  # (T, 2H)
        n = int(lengths[r])
        torch.testing.assert_close(cache["rnn.l1.fwd.h"][r, :n], alone[:, :H], rtol=0, atol=1e-6)
        torch.testing.assert_close(cache["rnn.l1.rev.h"][r, :n], alone[:, H:], rtol=0, atol=1e-6)
        with torch.no_grad():
            single = loaded.call(loaded.module, word_ids(t)[None])
        torch.testing.assert_close(out[r], single.reshape(out[r].shape), rtol=0, atol=1e-6)


# --- reading documents files ---------------------------------------------------------------------------------


def test_documents_files(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a b", "label": 1, "tags": ["x"]}\n\n{"text": "c", "label": 0}\n')
    docs = read_docs(tmp_path / "d.jsonl")
    assert docs.texts == ["a b", "c"] and docs.source == "jsonl"
    assert docs.fields.line.tolist() == [1, 3] and docs.fields.tags[0] == '["x"]'
    assert lines_documents("one\r\ntwo\n\n three\n").texts == ["one", "two", " three"]
    bad = {
        '{"text": "a"}\n[1, 2]\n': "line 2 is a JSON list",
        '{"label": 1}\n': "line 1 has no string 'text' field",
        '{"text": "a"}\n{"text": \n': "line 2 is not JSON",
        '{"text": "a", "line": 3}\n': "the field 'line' is lstmviz's own",
        '{"text": "  "}\n': "the document's text is empty",
    }
    for content, message in bad.items():
        (tmp_path / "bad.jsonl").write_text(content)
        with pytest.raises(UserError, match=message):
            read_docs(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="every line is blank"):
        lines_documents("\n \n")


def test_record_docs_refuses_bad_documents_without_writing(tmp_path, capsys):
    f = classifier_files(tmp_path, "sentiment_packed")
    (tmp_path / "docs.jsonl").write_text('{"label": 1}\n')
    line = refused([*f["argv"], "--out", tmp_path / "run"], tmp_path, capsys)
    assert "has no string 'text' field" in line
    line = refused([*f["argv"], "--text", tmp_path / "docs.jsonl", "--out", tmp_path / "run"], tmp_path, capsys)
    assert "not allowed with argument" in line


def test_options_for_a_text_are_refused_with_docs(tmp_path, capsys):
    f = classifier_files(tmp_path, "sentiment_packed")
    for extra, option in (
        (["--annotate", "code"], "--annotate"),
        (["--max-tokens", "3"], "--max-tokens"),
        (["--mode", "sequences"], "--mode"),
        (["--shards", "2"], "--shards"),
    ):
        line = refused([*f["argv"], *extra, "--out", tmp_path / "run"], tmp_path, capsys)
        assert f"{option} applies to --text, not to --docs" in line


def test_help_says_how_a_vocabulary_file_splits_text(capsys):
    with pytest.raises(SystemExit):
        main(["record", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "by character when every entry but special symbols like <pad>, <unk> is one character" in text
    assert "a word vocabulary listing <eos> ends every line with it" in text


@pytest.mark.parametrize("form", ["logits", "probabilities", "log-probabilities", "one-token batch"])
def test_output_columns_read_a_classifiers_output(form):
    from lstmviz.documents import output_columns

    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]])
    p = torch.softmax(logits, 1)
    given = {"logits": logits, "probabilities": p, "log-probabilities": p.log(), "one-token batch": logits[:, None]}
    cols = output_columns(given[form], 2, labels=np.array([0, 1]))
    np.testing.assert_allclose(np.stack([cols["p0"], cols["p1"], cols["p2"]], 1), p.numpy(), rtol=1e-6)
    assert cols["pred"].tolist() == [0, 2] and cols["correct"].tolist() == [True, False]
    one = output_columns(torch.tensor([[0.3], [-2.0]]), 2)
    assert one["pred"].tolist() == [1, 0]
    np.testing.assert_allclose(one["p1"], torch.sigmoid(torch.tensor([0.3, -2.0])).numpy(), rtol=1e-6)
    assert output_columns(torch.zeros(2, 4, 5), 2) == {} and output_columns(logits, 3) == {}


def test_record_docs_from_python_records(tmp_path):
    from lstmviz.documents import from_records

    model = um.sentiment_packed().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps(um.SENTIMENT_VOCAB))
    loaded = lstmviz.load_model(
        model="user_models:sentiment_packed",
        weights=tmp_path / "sd.pt",
        code=USER_MODELS,
        tokenizer=tmp_path / "vocab.json",
    )
    records = [{"text": t, "label": y, "id": i} for t, y, i in REVIEWS]
    run = lstmviz.open_run(
        lstmviz.record_docs(loaded, from_records(records), tmp_path / "run", streams=3, progress=False)
    )
    assert doc_table(run).doc_id.tolist() == [i for _, _, i in REVIEWS]
    for d, (text, _, _) in enumerate(REVIEWS):
        check_alone(run, d, model.rnn, model.embedding(word_ids(text)[:, None]))
    assert from_records(["one text", "two"]).texts == ["one text", "two"]
    with pytest.raises(UserError, match="record 2 has no string 'text' field"):
        from_records([{"text": "a"}, {"label": 1}])


def test_a_classifier_stepping_a_cell_gets_each_documents_own_verdict(tmp_path):
    """A model that steps nn.LSTMCell over every column and reads its last step: a document batched with longer
    ones would be read through their padding, so documents are batched only with others of their length."""
    model = um.cell_classifier().eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    (tmp_path / "vocab.json").write_text(json.dumps(um.SENTIMENT_VOCAB))
    loaded = lstmviz.load_model(
        model="user_models:cell_classifier",
        weights=tmp_path / "sd.pt",
        code=USER_MODELS,
        tokenizer=tmp_path / "vocab.json",
    )
    docs = lstmviz.documents.from_records([t for t, _, _ in REVIEWS])
    run = lstmviz.open_run(lstmviz.record_docs(loaded, docs, tmp_path / "run", streams=4, progress=False))
    h, doc = run.activations("cell.l0.fwd.h"), run.tokens["doc"].to_numpy()
    logits = []
    for d, (text, _, _) in enumerate(REVIEWS):
        ids = word_ids(text)[None]  # (1, T)
        x, hx, hs = model.embedding(ids), None, []
        with torch.no_grad():
            for t in range(ids.shape[1]):
                hx = model.cell(x[:, t], hx)
                hs.append(hx[0][0])
            logits.append(model(ids)[0])
        np.testing.assert_allclose(h[doc == d], torch.stack(hs).numpy(), atol=2e-3)  # float16 as stored
    table = doc_table(run)
    for d, one in enumerate(logits):
        p = torch.softmax(one, -1).numpy()
        np.testing.assert_allclose(table.loc[d, ["p0", "p1"]].to_numpy(float), p, rtol=1e-5, atol=1e-6)
        assert table.pred[d] == p.argmax()
