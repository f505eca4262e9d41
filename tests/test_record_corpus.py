"""Streaming a corpus into a run directory, and reading it back."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import polars as pl
import pytest
import torch
from tiny_models import TinyCharModel
from torch import nn

import lstmviz
from lstmviz.store import HIGH, LOW, RunError

N = 517  # not a multiple of the stream count


@pytest.fixture(params=[nn.LSTM, nn.GRU, nn.RNN], ids=["lstm", "gru", "rnn"])
def model(request):
    torch.manual_seed(1)
    return TinyCharModel(cell=request.param).eval()


def streams_oracle(model, ids, S):
    """torch's own forward over each whole stream: h of the top layer ``[N, H]`` and the logits."""
    L = -(-len(ids) // S)
    padded = torch.cat([ids, ids.new_zeros(S * L - len(ids))]).reshape(S, L)
    with torch.no_grad():
        h, _ = model.rnn(model.embed(padded))
        logits = model.decoder(h)
    return h.reshape(S * L, -1)[: len(ids)], logits.reshape(S * L, -1)[: len(ids)]


def test_stateful_chunks_equal_a_forward_over_whole_streams(model, tmp_path):
    ids = torch.randint(0, 12, (N,))
    path = lstmviz.record_corpus(model, ids, tmp_path / "run", streams=4, chunk=13, progress=False)
    run = lstmviz.open_run(path)
    h, logits = streams_oracle(model, ids, 4)
    got = run.activations("rnn.l1.fwd.h")
    assert got.shape == (N, 8)
    np.testing.assert_allclose(got, h.numpy(), rtol=2**-11, atol=1e-6)  # float16 keeps 11 significant bits
    loss = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    np.testing.assert_allclose(run.tokens["loss"].to_numpy()[:-1], loss.numpy(), atol=1e-5)
    assert np.isnan(run.tokens["loss"].iloc[-1])
    top = logits.topk(5, dim=1)
    assert np.array_equal(np.stack(run.tokens["top_ids"].to_numpy()), top.indices.numpy())


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
def test_weights_recomputed_on_every_forward(cell, tmp_path):
    """weight_norm recomputes the recurrent weights on every call (inside inference_mode while recording, so
    they carry no version counter); the step loop must use them, not a stale packed copy."""
    torch.manual_seed(3)
    model = TinyCharModel(cell=cell).eval()
    nn.utils.parametrizations.weight_norm(model.rnn, "weight_hh_l0")
    ids = torch.randint(0, 12, (N,))
    run = lstmviz.open_run(lstmviz.record_corpus(model, ids, tmp_path / "run", streams=4, chunk=13, progress=False))
    h, _ = streams_oracle(model, ids, 4)
    np.testing.assert_allclose(run.activations("rnn.l1.fwd.h"), h.numpy(), rtol=2**-11, atol=1e-6)


def test_sequences_mode_records_each_document_from_a_zero_state(tmp_path):
    torch.manual_seed(2)
    model = TinyCharModel().eval()
    lengths = [5, 9, 1, 7, 9]
    ids = torch.randint(0, 12, (sum(lengths),))
    docs = np.repeat(np.arange(len(lengths)), lengths)
    run = lstmviz.open_run(
        lstmviz.record_corpus(model, ids, tmp_path / "r", mode="sequences", docs=docs, streams=2, progress=False)
    )
    got = run.activations("rnn.l0.fwd.c")
    start = 0
    for n in lengths:
        _, cache = lstmviz.run_with_cache(model, ids[start : start + n].unsqueeze(0))
        np.testing.assert_allclose(got[start : start + n], cache["rnn.l0.fwd.c"][0].numpy(), atol=2e-3)
        start += n
    assert run.tokens["pos"].tolist() == [p for n in lengths for p in range(n)]


def test_stats_equal_a_direct_computation(tiny_run):
    stats = tiny_run.stats
    for name in tiny_run.names:
        x = tiny_run.activations(name)
        s = stats[stats["name"] == name].sort_values("unit")
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(s["min"], x.min(0))
        np.testing.assert_array_equal(s["max"], x.max(0))
        np.testing.assert_array_equal(s["n_low"], (x < LOW).sum(0))
        np.testing.assert_array_equal(s["n_high"], (x > HIGH).sum(0))
        assert (np.stack(s["hist"]).sum(1) == len(x)).all()


def test_lazy_reads_match_full_reads(tiny_run):
    full = tiny_run.activations("rnn.l0.fwd.g")
    part = tiny_run.activations("rnn.l0.fwd.g", units=[5, 1], start=123, stop=321)
    np.testing.assert_array_equal(part, full[123:321][:, [5, 1]])
    assert tiny_run.activations("rnn.l0.fwd.g", start=10, stop=10).shape == (0, 8)


def test_files_open_with_duckdb_polars_and_pandas(tiny_run):
    f = tiny_run.path / tiny_run.info("rnn.l1.fwd.o")["file"]
    expected = tiny_run.activations("rnn.l1.fwd.o", units=[3])[:, 0]
    got = duckdb.sql(f"select u0003 from read_parquet('{f}')").fetchnumpy()["u0003"]
    np.testing.assert_allclose(got.astype(np.float32), expected)
    assert pl.read_parquet(f).shape == (600, 8)
    tokens = duckdb.sql(f"select token from read_parquet('{tiny_run.path / 'tokens.parquet'}')").fetchall()
    assert [t for (t,) in tokens] == tiny_run.tokens["token"].tolist()


def test_interrupted_recording_never_looks_complete_and_rerun_restarts(tmp_path):
    torch.manual_seed(0)
    model = TinyCharModel().eval()
    calls = {"n": 0}

    def dying(model, ids):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return model(ids)

    out = tmp_path / "run"
    ids = torch.randint(0, 12, (300,))
    with pytest.raises(KeyboardInterrupt):
        lstmviz.record_corpus(model, ids, out, streams=2, chunk=20, call=dying, progress=False)
    assert not out.exists()
    with pytest.raises(RunError, match=r"does not exist"):
        lstmviz.open_run(out)
    lstmviz.record_corpus(model, ids, out, streams=2, chunk=20, progress=False)
    assert lstmviz.open_run(out).n_tokens == 300
    assert not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize("layout", ["legacy spill", "in place"])
def test_an_interrupted_recordings_partial_is_cleared_by_the_next_one(tmp_path, layout):
    """A partial left by a killed recording is started over: one from before the marker (its tiles in a spill
    folder) and one written in place (marked, half-written activation files)."""
    part = tmp_path / "run.partial"
    (part / "acts").mkdir(parents=True)
    if layout == "legacy spill":
        (part / "spill").mkdir()
        (part / "spill" / "rnn.l0.fwd.h.f16").write_bytes(b"\0" * 64)
    else:
        (part / ".lstmviz").write_text('{"written_by": "lstmviz", "kind": "run"}\n')
        (part / "acts" / "rnn.l0.fwd.h.parquet").write_bytes(b"PAR1" + b"\0" * 60)
    lstmviz.write_run(tmp_path / "run", ["a", "b"], {"rnn.l0.fwd.h": np.ones((2, 3), np.float32)})
    assert lstmviz.open_run(tmp_path / "run").n_tokens == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_partial_directory_is_refused(tmp_path):
    part = tmp_path / "run.partial"
    part.mkdir()
    with pytest.raises(RunError, match="interrupted recording"):
        lstmviz.open_run(part)


def test_existing_output_is_not_overwritten_without_asking(tiny_run, tiny_model):
    with pytest.raises(RunError, match="already exists"):
        lstmviz.record_corpus(tiny_model, [1, 2, 3], tiny_run.path, progress=False)
    assert lstmviz.open_run(tiny_run.path).n_tokens == 600


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "manifest.json").write_text("{not json"), "corrupt"),
        (lambda p: (p / "manifest.json").write_bytes(b"\xff\xfe\x00"), "corrupt"),
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
        (lambda p: (p / "tokens.parquet").unlink(), "missing tokens.parquet"),
        (lambda p: (p / "acts" / "rnn.l0.fwd.h.parquet").unlink(), "missing acts/rnn.l0.fwd.h.parquet"),
        (lambda p: _edit(p, complete=False), "incomplete"),
        (lambda p: _edit(p, schema_version=99), "version 99"),
    ],
)
def test_open_run_names_the_problem(tiny_run, tmp_path, damage, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    damage(copy)
    with pytest.raises(RunError, match=message) as err:
        lstmviz.open_run(copy)
    assert "\n" not in str(err.value)


def test_truncated_activation_file_is_a_clear_error(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    f = copy / "acts" / "rnn.l0.fwd.h.parquet"
    run = lstmviz.open_run(copy)
    f.write_bytes(f.read_bytes()[:100])  # after opening: the footers were read, the data were not
    with pytest.raises(RunError, match="unreadable"):
        run.activations("rnn.l0.fwd.h")
    with pytest.raises(RunError, match=r"acts/rnn\.l0\.fwd\.h\.parquet is not a readable parquet file"):
        lstmviz.open_run(copy)  # before opening


def test_bad_inputs(tiny_model, tmp_path):
    with pytest.raises(RunError, match="empty"):
        lstmviz.record_corpus(tiny_model, [], tmp_path / "a", progress=False)
    with pytest.raises(RunError, match="display has 2 entries for 3 tokens"):
        lstmviz.record_corpus(tiny_model, [1, 2, 3], tmp_path / "b", display=["a", "b"], progress=False)
    with pytest.raises(RunError, match=r"matches no activation.*'rnn\.l0\.fwd\.i'"):
        lstmviz.record_corpus(tiny_model, [1, 2, 3], tmp_path / "c", names=["lstm.l0.fwd.h"], progress=False)
    with pytest.raises(ValueError, match="row_columns= is not supported with shards="):
        lstmviz.record_corpus(
            tiny_model, [1, 2, 3], tmp_path / "d", shards=2, row_columns=lambda *_: {}, progress=False
        )
    assert not any(tmp_path.iterdir())


def _edit(path, **changes):
    mf = path / "manifest.json"
    manifest = json.loads(mf.read_text())
    manifest.update(changes)
    mf.write_text(json.dumps(manifest))


class SteppedDecoder(nn.Module):
    """A GRU called once per token inside forward, as attention decoders do."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.dec = nn.GRU(6, 8, batch_first=True)
        self.out = nn.Linear(8, 12)

    def forward(self, ids):
        x, h, outs = self.embed(ids), None, []
        for t in range(ids.shape[1]):
            o, h = self.dec(x[:, t : t + 1], h)
            outs.append(o)
        return self.out(torch.cat(outs, dim=1))


@pytest.mark.parametrize("strategy", ["loop", "replay"])
def test_a_module_called_per_step_records_like_one_forward(tmp_path, strategy):
    """Each call keeps its own buffers: a stepped decoder streams exactly like the module over the whole text."""
    torch.manual_seed(4)
    model = SteppedDecoder().eval()
    ids = torch.randint(0, 12, (96,))
    run = lstmviz.open_run(
        lstmviz.record_corpus(model, ids, tmp_path / "r", streams=32, chunk=2, strategy=strategy, progress=False)
    )
    with torch.no_grad():
        whole, _ = model.dec(model.embed(ids.view(32, 3)))  # (S, L, H): one forward per stream
        logits = model.out(whole).reshape(96, 12)
    np.testing.assert_allclose(run.activations("dec.l0.fwd.h"), whole.reshape(96, 8).numpy(), rtol=2**-11, atol=1e-6)
    loss = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")
    np.testing.assert_allclose(run.tokens["loss"].to_numpy()[:-1], loss.numpy(), atol=1e-5)


def test_a_call_that_transposes_the_batch_is_a_clear_error(tiny_model, tmp_path):
    with pytest.raises(RunError, match="layout"):
        lstmviz.record_corpus(
            tiny_model,
            torch.randint(0, 12, (60,)),
            tmp_path / "r",
            streams=3,
            chunk=5,
            call=lambda m, ids: m(ids.t()),
            progress=False,
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["start", "close"])
def test_a_full_disk_keeps_the_old_run_and_leaves_nothing_partial(tiny_run, tmp_path, monkeypatch, where):
    """The disk fills when the activation files reserve their blocks (the start), or when a footer is written
    (the close, after every value is in place): either way the old run is whole and nothing else is left."""
    import shutil

    from lstmviz.store import mapped

    copy = tmp_path / "run"
    shutil.copytree(tiny_run.path, copy)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(*((mapped, "reserve") if where == "start" else (mapped.MappedF16File, "close")), full_disk)
    with pytest.raises(OSError, match="No space"):
        lstmviz.write_run(copy, ["a", "b"], {"rnn.l0.fwd.h": np.zeros((2, 3), np.float32)}, overwrite=True)
    assert lstmviz.open_run(copy).n_tokens == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_output_that_is_a_file_is_refused(tiny_model, tmp_path):
    f = tmp_path / "afile"
    f.write_text("keep me")
    with pytest.raises(RunError, match="is a file"):
        lstmviz.record_corpus(tiny_model, [1, 2, 3], f, overwrite=True, progress=False)
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


class _Collect:
    """An observer that keeps every row it sees, and checks it is finished before the manifest exists."""

    def __init__(self, act, seen):
        self.act, self.seen = act, seen
        self.rows = {}

    def update(self, start, values):
        assert values.dtype == np.float16 and values.shape[1] == self.act.units
        for r, row in enumerate(values):
            assert start + r not in self.rows, "a row was observed twice"
            self.rows[start + r] = row.copy()

    def finish(self, run_dir):
        assert run_dir.name.endswith(".partial") and not (run_dir / "manifest.json").exists()
        assert (run_dir / self.act.file).is_file()
        self.seen[self.act.name] = np.stack([self.rows[r] for r in range(len(self.rows))])
        return {"observed_rows": len(self.rows)}


def test_observers_see_every_value_as_stored_and_extend_the_manifest(tmp_path):
    torch.manual_seed(4)
    model = TinyCharModel().eval()
    ids = torch.randint(0, 12, (N,))
    seen = {}
    path = lstmviz.record_corpus(
        model, ids, tmp_path / "run", streams=4, chunk=13, progress=False, observers=lambda act: [_Collect(act, seen)]
    )
    run = lstmviz.open_run(path)
    assert set(seen) == set(run.names)
    for name in run.names:
        np.testing.assert_array_equal(seen[name].astype(np.float32), run.activations(name))
        assert run.info(name)["observed_rows"] == N


def test_streams_past_the_corpus_end_are_skipped(tmp_path):
    """100 tokens in 64 streams of 2: the last streams start past the end and hold nothing."""
    torch.manual_seed(5)
    model = TinyCharModel().eval()
    ids = torch.randint(0, 12, (100,))
    run = lstmviz.open_run(lstmviz.record_corpus(model, ids, tmp_path / "run", streams=64, chunk=1, progress=False))
    h, _ = streams_oracle(model, ids, 64)
    np.testing.assert_allclose(run.activations("rnn.l1.fwd.h"), h.numpy(), rtol=2**-11, atol=1e-6)


def test_a_cpu_recording_leaves_the_writer_a_core_and_restores_torchs_threads(tmp_path):
    seen = []

    def call(model, ids):
        seen.append(torch.get_num_threads())
        return model(ids)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lstmviz.record_corpus(TinyCharModel().eval(), torch.randint(0, 12, (60,)), tmp_path / "r", streams=2,
                              chunk=10, device="cpu", call=call, progress=False)  # fmt: skip
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
        with pytest.raises(lstmviz.ModelError):
            lstmviz.record_corpus(TinyCharModel().eval(), torch.full((60,), 99), tmp_path / "x", device="cpu",
                                  progress=False)  # fmt: skip
        assert torch.get_num_threads() == 2  # also after the model raised
    finally:
        torch.set_num_threads(before)
