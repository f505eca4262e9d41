"""Unit labels and cards on planted concepts: a unit built to track an annotation gets that annotation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from torch import nn

from lstmviz.analysis import probes, units
from lstmviz.analysis.overview import overview


@pytest.fixture
def planted(make_run, rng):
    """3000 tokens with strings opened by `"`; planted units: l0.h 2 = in_string, l0.h 4 = depth, l1.c 1 = not
    in_string, l0.h 5 = fires on `q`; everything else noise."""
    T = 3000
    tokens = list(rng.choice(list("abcdefgh q"), T))
    in_string = np.zeros(T, bool)
    t = 0
    while t < T - 40:
        t += int(rng.integers(20, 60))
        length = int(rng.integers(5, 25))
        tokens[t] = '"'
        in_string[t + 1 : t + 1 + length] = True
        t += length
    depth = np.cumsum(rng.choice([-1, 1], T)).astype(float)
    l0 = 0.3 * rng.normal(size=(T, 6))
    l0[:, 2] += 0.8 * in_string
    l0[:, 4] = 0.05 * depth + 0.3 * rng.normal(size=T)
    l0[:, 5] = 0.1 * rng.normal(size=T) + np.array([t == "q" for t in tokens]) * 2.0
    l1 = 0.3 * rng.normal(size=(T, 3))
    l1[:, 1] -= 0.8 * in_string
    return make_run({"rnn.l0.fwd.h": l0, "rnn.l1.fwd.c": l1}, tokens, in_string=in_string, depth=depth)


def test_planted_units_get_their_planted_labels(planted):
    table = units.catalogue(planted).set_index(["name", "unit"])
    string = table.loc[("rnn.l0.fwd.h", 2)]
    assert string["track"] == "in_string" and string["metric"] == "auc" and string["score"] > 0.9
    assert string["label"].startswith(f"in_string (AUC {string['score']:.2f})")
    assert table.loc[("rnn.l0.fwd.h", 4), "track"] == "depth"
    assert table.loc[("rnn.l0.fwd.h", 4), "label"].startswith("depth (r ")
    inverted = table.loc[("rnn.l1.fwd.c", 1)]
    assert inverted["track"] == "in_string" and inverted["score"] < 0.1
    assert inverted["label"].startswith(f"not in_string (AUC {1 - inverted['score']:.2f})")
    assert table.loc[("rnn.l0.fwd.h", 5), "top_tokens"].split(" ")[0] == "`q`"
    assert len(table) == 9


def test_search_lists_the_string_units_across_layers(planted):
    table = units.catalogue(planted)
    pd.testing.assert_frame_equal(units.catalogue(planted), table)  # the second call reads the cached table
    hits = units.search(table, "STRING")
    assert set(zip(hits["name"], hits["unit"], strict=True)) == {("rnn.l0.fwd.h", 2), ("rnn.l1.fwd.c", 1)}
    assert len(units.search(table, "")) == len(table)
    assert units.search(table, "no such thing").empty


def test_over_represented_tokens_against_counting():
    tokens = list("aaaaaaaaab" * 100) + ["x"] * 10
    idx = np.array([1000, 1001, 1002, 9, 19, 29, 0])  # x three times, b three times, a once
    assert units.over_represented(idx, tokens) == ["`b`", "`x`"]
    assert units.over_represented(np.array([0, 1, 2, 3]), tokens) == []  # a is common: no lift


def test_card_gathers_the_stored_parts(planted):
    c = units.card(planted, "rnn.l0.fwd.h", 5)
    assert (c.top[1]["token"].head(5) == "q").all()
    assert c.top[-1]["value"].is_monotonic_increasing
    assert list(c.bands["band"].unique()) == list(range(10))
    assert c.bands.groupby("band")["lo"].first().is_monotonic_increasing
    x = planted.activations("rnn.l0.fwd.h", [5])[:, 0]
    assert c.stats["frac_above"] == pytest.approx((x > 0.5).mean())
    assert len(c.strip) * c.strip_per >= planted.n_tokens
    assert c.top_tokens[0] == "`q`"
    assert units.shown(" \n") == "`␣↵`"


def test_card_of_a_run_without_tracks_reads_no_whole_column(make_run, rng, monkeypatch):
    """Without annotation tracks the label needs no column: the card reads windows only (at 10M tokens a column
    is 40 MB and a scan of every row group), and it is the card made from the column all the same."""
    x = rng.normal(size=(2000, 4))
    x[::97, 1] += 3.0
    run = make_run({"rnn.l0.fwd.h": x})
    column = run.activations("rnn.l0.fwd.h", [1])[:, 0]
    top = run.top_contexts("rnn.l0.fwd.h", 1, k=20)["idx"].to_numpy()
    oracle = units.unit_label(run, column, top)  # the label as scored from the whole column
    overview(run, "rnn.l0.fwd.h")  # the card's strip: a recording writes it, this run builds it here, once
    reads = []
    read = run.activations

    def spy(name, units_=None, start=None, stop=None):
        out = read(name, units_, start, stop)
        reads.append(len(out))
        return out

    monkeypatch.setattr(run, "activations", spy)
    c = units.card(run, "rnn.l0.fwd.h", 1)
    assert all(n < run.n_tokens for n in reads), reads
    assert c.label == oracle
    assert c.stats["frac_above"] == pytest.approx((column > 0.5).mean())
    assert list(c.top[1]["idx"]) == list(top)


def test_logit_lens_is_the_units_column():
    w = np.array([[0.5, -1.0], [2.0, 0.0], [-3.0, 1.0], [2.0, 4.0]])
    lens = units.logit_lens(w, 0, ["a", "b", "c", "d"], k=2)
    assert lens[lens["direction"] == "up"]["token"].tolist() == ["b", "d"]  # 2.0 tie: lower id first
    assert lens[lens["direction"] == "down"]["token"].tolist() == ["c", "a"]
    np.testing.assert_array_equal(lens["weight"], [2.0, 2.0, -3.0, 0.5])


def test_decoder_and_feeding_layer():
    class Char(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.rnn, self.decoder = nn.Embedding(5, 4), nn.LSTM(4, 8, 2), nn.Linear(8, 5)

    m = Char()
    assert units.decoder_of(m, 8) is m.decoder and units.decoder_of(m, 3) is None


def test_feeds_decoder_is_the_last_layers_h(planted, make_run):
    run = make_run({f"rnn.l{layer}.fwd.{k}": np.zeros((10, 2)) for layer in (0, 1) for k in ("c", "h")})
    assert [n for n in run.names if units.feeds_decoder(run, n)] == ["rnn.l1.fwd.h"]
    assert units.tracks(planted) == ["in_string", "depth"]


def test_one_units_label_agrees_with_the_catalogue(planted):
    table = units.catalogue(planted).set_index(["name", "unit"])
    for name, u in [("rnn.l0.fwd.h", 2), ("rnn.l0.fwd.h", 4), ("rnn.l1.fwd.c", 1), ("rnn.l0.fwd.h", 0)]:
        c = units.card(planted, name, u)
        row = table.loc[(name, u)]
        assert c.label["label"] == row["label"] and c.label["track"] == row["track"]
        assert c.label["score"] == pytest.approx(row["score"], abs=1e-9)


def test_unusual_ranks_the_unit_that_is_off_its_corpus_range(planted, rng):
    x = 0.3 * rng.normal(size=(200, 6)).astype(np.float32)
    x[:, 2] += 0.8  # "inside a string" all along: unit 2 sits in its corpus top band
    x[:, 4] = -5.0  # far below its corpus range
    table = units.unusual(planted, "rnn.l0.fwd.h", x)
    assert table["unit"].tolist()[:2] in ([2, 4], [4, 2])
    a = units._cards.load_cards(planted, "rnn.l0.fwd.h").a
    assert table.set_index("unit").loc[4, "bottom"] == 1.0
    np.testing.assert_allclose(table.set_index("unit").loc[2, "top"], (x[:, 2] > a["band_lo"][2, -1]).mean())
    with pytest.raises(units.RunError):
        units.unusual(planted, "rnn.l0.fwd.h", x[:, :3])


def test_unusual_against_brute_force_deciles(planted, rng):
    """3000 tokens, under the cards' 4096-position sample: the bands are the corpus's own deciles, re-derived here
    from the sorted values (ties to the earlier position), and the ranking is a plain sort."""
    name = "rnn.l0.fwd.h"
    corpus = planted.activations(name).astype(np.float64)  # [T, U]
    T, U = corpus.shape
    x = rng.normal(size=(37, U)).astype(np.float32) * corpus.std(0) + corpus.mean(0)
    x[:, 1] += 3 * corpus.std(0)[1]  # far up: every token above its 90th percentile
    x[:9, 3] -= 5 * corpus.std(0)[3]  # 9 of 37 tokens far down
    x[5, 0] = np.nan  # a token without a value counts as neither
    table = units.unusual(planted, name, x)
    want = []
    for u in range(U):
        ranked = corpus[np.lexsort((np.arange(T), corpus[:, u])), u]
        cuts = np.array_split(ranked, 10)
        p90, p10 = cuts[-1][0], cuts[0][-1]
        top = sum(v > p90 for v in x[:, u]) / len(x)
        bottom = sum(v < p10 for v in x[:, u]) / len(x)
        want.append((-max(top, bottom) / 0.1, u, top, bottom))
    want.sort()
    assert table["unit"].tolist() == [w[1] for w in want]
    np.testing.assert_allclose(table["top"], [w[2] for w in want], atol=1e-12)
    np.testing.assert_allclose(table["bottom"], [w[3] for w in want], atol=1e-12)
    np.testing.assert_allclose(table["lift"], [-w[0] for w in want], atol=1e-12)
    assert table["unit"].tolist()[:2] == [1, 3]
    np.testing.assert_allclose(table.set_index("unit").loc[3, ["max", "min"]], [x[:, 3].max(), x[:, 3].min()])


def test_histogram_covers_the_units_own_range(rng):
    x = rng.normal(size=5000) * 0.3 - 0.5
    h = units.histogram(x, bins=40)
    want, edges = np.histogram(x, bins=40, range=(x.min(), x.max()))
    np.testing.assert_array_equal(h.counts, want)
    np.testing.assert_allclose(h.edges, edges)
    assert (h.below, h.above) == (0, 0)
    assert (h.counts > 0).sum() >= 30  # not one spike


def test_histogram_cuts_long_tails_and_counts_them(rng):
    x = np.r_[rng.normal(size=4000), [300.0, -80.0, 250.0], [np.nan, np.inf]]
    h = units.histogram(x, bins=50, tail=0.005)
    finite = np.sort(x[np.isfinite(x)])
    n = len(finite)

    def quantile(q):  # numpy's default, linear between order statistics
        i = q * (n - 1)
        return finite[int(np.floor(i))] + (i - np.floor(i)) * (finite[int(np.ceil(i))] - finite[int(np.floor(i))])

    lo, hi = quantile(0.005), quantile(0.995)
    assert h.edges[0] == pytest.approx(lo) and h.edges[-1] == pytest.approx(hi)
    assert h.below == int((finite < lo).sum()) and h.above == int((finite > hi).sum())
    assert h.counts.sum() + h.below + h.above == n
    assert h.below >= 1 and h.above >= 2
    flat = units.histogram(np.full(10, 2.0), bins=4)
    assert flat.counts.sum() == 10 and flat.edges[0] < 2.0 < flat.edges[-1]


@pytest.mark.parametrize("kernels", [True, False])
@pytest.mark.parametrize("case", ["normal", "tails", "flat", "empty"])
def test_histogram_of_a_float16_column_equals_the_float64_one(rng, monkeypatch, kernels, case):
    """A column as stored (float16) is binned from the count of each float16 value: the same edges, counts and
    cut tails as binning its values one by one in float64."""
    from lstmviz.analysis import probes

    if not kernels:
        monkeypatch.setattr(probes, "jit", lambda: None)
    x = {
        "normal": rng.normal(size=20000) * 0.3 - 0.5,
        "tails": np.r_[rng.normal(size=5000), [300.0, -80.0, 250.0, -0.0, 0.0], [np.nan, np.inf, -np.inf]],
        "flat": np.full(10, 2.0),
        "empty": np.array([np.nan, np.inf]),
    }[case].astype(np.float16)
    got, want = units.histogram(x, bins=50), units.histogram(x.astype(np.float64), bins=50)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.edges, want.edges)
    assert (got.below, got.above) == (want.below, want.above)
    if case == "tails":
        assert got.below >= 1 and got.above >= 2  # the range was cut to the quantiles


def test_a_units_label_from_its_float16_column_equals_scoring_the_whole_column(planted):
    """unit_label scores the column a block at a time from value counts: AUC exactly, r as numpy's corrcoef."""
    from sklearn.metrics import roc_auc_score

    name = "rnn.l0.fwd.h"
    for u in range(planted.units(name)):
        x = planted.activations(name, [u])[:, 0]
        top = planted.top_contexts(name, u, k=20)["idx"].to_numpy()
        got = units.unit_label(planted, x.astype(np.float16), top)
        want = {}
        for t in units.tracks(planted):
            y = planted.tokens[t].to_numpy()
            if y.dtype == bool:
                s = roc_auc_score(y, x)
                want[t] = (s, abs(2 * s - 1))
            else:
                s = np.corrcoef(x, y.astype(np.float64))[0, 1]
                want[t] = (s, abs(s))
        best = max(want, key=lambda t: want[t][1])
        assert got["track"] == best
        assert got["score"] == pytest.approx(want[best][0], rel=1e-9)


def test_peak_of_a_float16_column_is_the_largest_magnitude(rng):
    """From the bit patterns, as np.nanmax(np.abs(x)) finds it: NaN left out, inf kept, −0 and an empty column."""
    x = (rng.normal(size=3000) * 7).astype(np.float16)
    for col in (x, np.r_[x, [np.nan]].astype(np.float16), np.r_[x, [-np.inf]].astype(np.float16)):
        assert units.peak(col) == float(np.nanmax(np.abs(col.astype(np.float64))))
        assert units.peak(col.astype(np.float32)) == units.peak(col)
    assert units.peak(np.array([-0.0, np.nan], np.float16)) == 0.0
    assert units.peak(np.zeros(0, np.float16)) == units.peak(np.array([np.nan], np.float16)) == 1.0


@pytest.mark.parametrize("case", ["normal", "tails", "nan", "inf", "empty", "none"])
def test_spread_of_a_float16_column_is_its_histogram_and_peak_from_float64(rng, case):
    """One count of the float16 values gives the histogram and the largest |value| that binning and taking
    np.nanmax(np.abs(·)) of the float64 values give."""
    from lstmviz.analysis.histogram import spread

    normal = rng.normal(size=5000) * 3
    x = {
        "normal": normal,
        "tails": np.r_[normal, [300.0, -80.0, -0.0]],
        "nan": np.r_[normal, [np.nan]],
        "inf": np.r_[normal, [-np.inf, np.nan]],
        "empty": np.array([np.nan]),
        "none": np.zeros(0),
    }[case].astype(np.float16)
    got, top = spread(x, bins=30)
    want = units.histogram(x.astype(np.float64), bins=30)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.edges, want.edges)
    assert (got.below, got.above) == (want.below, want.above)
    finite = x.astype(np.float64)[~np.isnan(x)]
    assert top == (float(np.abs(finite).max()) if len(finite) else 1.0)
    assert spread(x.astype(np.float32), bins=30)[1] == top


def test_a_label_from_the_held_tracks_equals_one_from_fresh_ones(planted):
    """unit_label keeps each track prepared while the run is the last one asked about: every unit's label is the
    one a run opened afresh (nothing held) gives it, and only the last run's tracks are held."""
    from lstmviz.store import open_run

    name = "rnn.l0.fwd.h"
    asked = []
    for u in range(planted.units(name)):
        x = planted.activations(name, [u], dtype=np.float16)[:, 0]
        top = planted.top_contexts(name, u, k=20)["idx"].to_numpy()
        asked.append((x, top, units.unit_label(planted, x, top)))
    assert list(units._TARGETS) == [planted] and set(units._TARGETS[planted]) == set(units.tracks(planted))
    for x, top, held in asked:
        fresh = open_run(planted.path)
        assert units.unit_label(fresh, x, top) == held
        assert list(units._TARGETS) == [fresh]


def test_a_boolean_track_with_missing_steps_is_scored_as_probe_scores_it(make_run, rng):
    """A yes/no annotation with unknown steps (True/False/None: pandas' object dtype) is a boolean track for the
    unit labels as for Neuron search: the label's score is probe's AUC of that unit, never a correlation."""
    T = 2000
    truth = rng.random(T) < 0.3
    x = 0.3 * rng.normal(size=(T, 3))
    x[:, 1] += 0.9 * truth
    known = np.where(rng.random(T) < 0.1, None, truth).astype(object)  # a tenth of the steps unannotated
    run = make_run({"rnn.l0.fwd.h": x}, marked=known)
    col = run.activations("rnn.l0.fwd.h", [1], dtype=np.float16)[:, 0]
    top = run.top_contexts("rnn.l0.fwd.h", 1, k=20)["idx"].to_numpy()
    label = units.unit_label(run, col, top)
    want = probes.probe(run, "marked", "rnn.l0.fwd.h").set_index("unit").loc[1]
    assert label["track"] == "marked" and label["metric"] == want["metric"] == "auc"
    assert label["score"] == pytest.approx(want["score"], abs=1e-12)
