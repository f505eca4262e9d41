"""Unit cards against brute force: greedy top contexts, quantile bands, correlations, density."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmviz import cards
from lstmviz import f16keys as cs
from lstmviz.store import Activation, RunError, open_run, write_run


def brute_top(x: np.ndarray, k: int, window: int) -> list[int]:
    """The definition: value descending, ties to the earlier position, NaN never; take the best remaining
    position, drop every position within ±window of it."""
    order = sorted((i for i in range(len(x)) if not np.isnan(x[i])), key=lambda i: (-float(x[i]), i))
    taken: list[int] = []
    dropped: set[int] = set()
    for i in order:
        if len(taken) == k:
            break
        if i in dropped:
            continue
        taken.append(i)
        dropped.update(range(i - window, i + window + 1))
    return taken


def spill(half: np.ndarray, pieces: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The writer's spill of ``half`` [n, U] (float16) stored as the row ``pieces`` (a, b) in the given order: each
    piece a unit-major tile appended to one flat array. Returns (values uint16 [*], tiles int64 [k, 4] in corpus
    order), what ``read_spill`` is handed."""
    flat, tiles, at = [], [], 0
    for a, b in pieces:
        tile = np.ascontiguousarray(half[a:b].T).view(np.uint16).ravel()
        tiles.append((a, b - a, at, b - a))
        flat.append(tile)
        at += tile.size
    values = np.concatenate(flat) if flat else np.zeros(0, np.uint16)
    return values, np.array(sorted(tiles), np.int64).reshape(-1, 4)


def build(half: np.ndarray, cuts: list[int], k: int, window: int, shuffle: int | None = None) -> dict:
    """The cards of ``half`` [n, U] as the writer builds them: the chunks that ``cuts`` make (stored in shuffled
    order with ``shuffle``) handed to :class:`PassCards` as the spill when the writer closes."""
    act = Activation.from_name("rnn.l0.fwd.c", half.shape[1])
    pc = cards.PassCards(act, len(half), k=k, window=window)
    edges = [0, *sorted(set(c for c in cuts if 0 < c < len(half))), len(half)]
    parts = list(itertools.pairwise(edges))
    if shuffle is not None:
        np.random.default_rng(shuffle).shuffle(parts)
    pc.read_spill(*spill(np.asarray(half, np.float16), parts))
    return cards.merge_parts([pc.parts()], len(half), k, window)


# values drawn from a handful of float16 levels so ties are everywhere, clustered maxima included
levels = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 0.5, 1.0, 1.0, -1.0, 2.0, np.nan, np.inf, -np.inf, 1e-7])


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.lists(levels, min_size=3, max_size=3), min_size=1, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=8),
    k=st.integers(1, 6),
    window=st.integers(0, 4),
    shuffle=st.none() | st.integers(0, 3),
)
def test_top_contexts_equal_brute_force_with_ties_and_chunk_boundaries(data, cuts, k, window, shuffle):
    half = np.array(data, np.float16)
    out = build(half, cuts, k, window, shuffle)
    x = half.astype(np.float32)
    for u in range(half.shape[1]):
        for sign, key in ((1, "top_pos"), (-1, "top_neg")):
            want = brute_top(sign * x[:, u], k, window)
            got = out[key][u]
            assert got[got >= 0].tolist() == want
            np.testing.assert_array_equal(out[f"{key}_value"][u][: len(want)], x[want, u])


def test_clustered_maxima_straddling_chunks_are_deduplicated():
    """A plateau of equal maxima across a chunk boundary gives its earliest position, then the next plateau."""
    n = 400
    x = np.zeros((n, 1), np.float16)
    x[95:130, 0] = 3.0  # one long plateau that crosses the chunk boundary at 100
    x[300:305, 0] = 3.0
    x[200, 0] = 2.0
    out = build(x, [100, 128, 301], k=4, window=10)
    assert out["top_pos"][0].tolist() == [95, 106, 117, 128]
    out = build(x, list(range(0, n, 7)), k=8, window=10, shuffle=1)
    assert out["top_pos"][0].tolist() == brute_top(x[:, 0].astype(np.float32), 8, 10)


def test_candidate_bound_is_tight_enough_for_the_greedy():
    """The worst case of the bound: the best positions all fall inside earlier picks' windows."""
    k, w = 4, 2
    m = cards.candidates(k, w)
    x = np.arange(100, 0, -1, dtype=np.float32)  # strictly descending: picks 0, 3, 6, 9, the last ranked 10th
    assert brute_top(x, k, w) == [0, 3, 6, 9]
    assert m >= 10
    out = build(x[:, None].astype(np.float16), [13, 50], k, w)
    assert out["top_pos"][0].tolist() == [0, 3, 6, 9]


def corr_rows(tmp_path, x: np.ndarray, name: str = "rnn.l0.fwd.c", **kw) -> tuple[np.ndarray, np.ndarray]:
    """Every row of Pearson r as correlation_row answers it on a run of x [n, U], and the stored values."""
    run = open_run(write_run(tmp_path / "r", ["a"] * len(x), {name: x}, **kw))
    got = np.stack([cards.correlation_row(run, name, u) for u in range(x.shape[1])])
    return got, run.activations(name).astype(np.float64)


def test_correlations_equal_numpy_corrcoef(tmp_path):
    """Several row groups (the last a short one), a large mean, a saturated gate: r from the streamed pass."""
    rng = np.random.default_rng(1)
    n = 2 * 16384 + 777
    base = rng.normal(size=(n, 3))
    x = np.concatenate([base, base @ rng.normal(size=(3, 6)) + 0.1 * rng.normal(size=(n, 6))], 1)
    x[:, 0] += 30.0  # a large mean: the shifted sums must not cancel it away
    x[:, 1] = 0.95 + 0.001 * x[:, 1]  # a saturated gate
    got, f = corr_rows(tmp_path, x)
    np.testing.assert_allclose(got, np.corrcoef(f, rowvar=False), atol=1e-9)
    runs = [r for _, _, r in cards.read.value_runs(open_run(tmp_path / "r"), "rnn.l0.fwd.c")]
    assert len(runs) == 3 and all(isinstance(flat, np.memmap) for r in runs for flat, _, _ in r)  # read in place


def test_correlations_are_the_same_on_any_number_of_threads(tmp_path, monkeypatch):
    """The row groups' sums are added in corpus order whichever thread made them: one thread, and more threads
    than groups in flight, give the same bits as each other and r as numpy."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3 * 16384 + 5, 4)) @ rng.normal(size=(4, 7))
    run = open_run(write_run(tmp_path / "r", ["a"] * len(x), {"rnn.l0.fwd.h": x}))
    rows = {}
    for threads in (1, 2, 5):
        monkeypatch.setattr(cards.read, "THREADS", threads)
        monkeypatch.setattr(cards.read, "_ROWS", {})
        rows[threads] = np.stack([cards.correlation_row(run, "rnn.l0.fwd.h", u) for u in range(7)])
    assert np.array_equal(rows[1], rows[2]) and np.array_equal(rows[1], rows[5])
    want = np.corrcoef(run.activations("rnn.l0.fwd.h").astype(np.float64), rowvar=False)
    np.testing.assert_allclose(rows[5], want, atol=1e-9)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # the LUT's signalling NaN patterns
def test_block_sums_against_float64_numpy():
    """The compiled step of a correlation row against numpy in float64: runs at even and odd byte offsets, a
    unit twice, an infinity and a NaN (their sums non-finite), and the checks on what the loop is given."""
    from lstmviz import f16keys
    from lstmviz.cards._sums import block_sums

    rng = np.random.default_rng(6)
    R, U = 1001, 5
    raw = rng.normal(size=U * R + 8).astype(np.float16)
    raw[3 * R + 17], raw[4 * R + 2] = np.inf, np.nan
    lut = np.ascontiguousarray(f16keys.LUT, np.float32)
    a, shift = rng.normal(size=R), rng.normal(size=U)
    for parity in (0, 1):
        buf = np.zeros(2 * U * R + 2, np.uint8)
        buf[parity : parity + 2 * U * R] = raw[: U * R].view(np.uint8)  # the same values, at an odd address for 1
        flat = buf[parity : parity + 2 * U * R].view(np.uint16)
        starts, units = np.arange(U, dtype=np.int64) * R, np.array([0, 1, 2, 3, 4], np.int64)
        starts, units = np.append(starts, 0), np.append(units, 1)  # unit 1 gets unit 0's run as well
        out = np.ones((U, 3))
        block_sums(a, flat, starts, units, lut, shift, out)
        want = np.ones((U, 3))
        for at, v in zip(starts, units, strict=True):
            d = f16keys.LUT[flat[at : at + R]].astype(np.float64) - shift[v]
            want[v] += [a @ d, d.sum(), (d * d).sum()]
        finite = np.isfinite(want)
        assert finite.sum() == 3 * (U - 2) and np.array_equal(finite, np.isfinite(out))  # units 3 and 4 not
        np.testing.assert_allclose(out[finite], want[finite], rtol=1e-12)
    flat = raw.view(np.uint16)
    ok = (a, flat, np.zeros(1, np.int64), np.zeros(1, np.int64), lut, shift, np.zeros((U, 3)))
    for i, bad in [(0, a.astype(np.float32)), (1, flat[::2]), (2, np.array([len(flat) - R + 1])), (3, np.array([U])),
                   (2, np.array([2**63 - 5])), (4, f16keys.LUT.astype(np.float64)),
                   (6, np.zeros((U, 3), np.float32))]:  # fmt: skip
        with pytest.raises(ValueError, match="block_sums"):
            block_sums(*ok[:i], bad, *ok[i + 1 :])
    empty = np.zeros((U, 3))
    block_sums(np.zeros(0), np.zeros(0, np.uint16), np.zeros(1, np.int64), np.zeros(1, np.int64), lut, shift, empty)
    assert not empty.any()  # a row group of no rows sums nothing


def test_row_groups_are_summed_in_order_and_a_bounded_few_at_a_time(monkeypatch):
    """_in_threads on two threads: items that finish out of order come back in order, with exactly THREADS + 1
    taken before each is handed back, and stopping early takes and starts nothing more."""
    import threading
    import time

    monkeypatch.setattr(cards.read, "THREADS", 2)
    delays = np.random.default_rng(7).uniform(0, 0.01, 16)
    taken, started = [], []

    def items():
        for i in range(16):
            taken.append(i)
            yield i

    def work(i):
        started.append(i)
        time.sleep(delays[i])
        return i * i

    out = [(x, len(taken)) for x in cards.read._in_threads(work, items())]
    assert out == [(i * i, min(i + 3, 16)) for i in range(16)]

    taken.clear()
    started.clear()
    hold = threading.Event()

    def held(i):
        started.append(i)
        if i:
            hold.wait(10)
        return i

    gen = cards.read._in_threads(held, items())
    assert next(gen) == 0  # items 1 and 2 are held on the two threads
    timer = threading.Timer(0.2, hold.set)
    timer.start()
    gen.close()  # waits for items 1 and 2
    timer.join()
    assert sorted(started) == [0, 1, 2] and taken == [0, 1, 2]


def test_correlations_nan_for_constant_or_non_finite_units(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 5))
    x[:, 1] = 0.5
    x[7, 2] = np.inf
    x[9, 4] = np.nan
    got, f = corr_rows(tmp_path, x)
    for bad in (1, 2, 4):
        assert np.isnan(got[bad]).all() and np.isnan(got[:, bad]).all()
    np.testing.assert_allclose(got[0, 3], np.corrcoef(f[:, 0], f[:, 3])[0, 1], atol=1e-12)


def test_correlations_of_a_file_pyarrow_wrote_and_of_8bit_gates(tmp_path):
    """A file not laid out as the writer lays it (pyarrow's, here zstd) and 8-bit gates (dictionary pages) are
    decoded by pyarrow: the same r."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 20000
    x = 1 / (1 + np.exp(-(rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4)))))
    got, f = corr_rows(tmp_path, x, "rnn.l0.fwd.f", gates="8bit")
    want = np.corrcoef(f, rowvar=False)
    np.testing.assert_allclose(got, want, atol=1e-9)
    run = open_run(tmp_path / "r")
    path = run.path / run.info("rnn.l0.fwd.f")["file"]
    pq.write_table(pq.read_table(path), path, compression="zstd", row_group_size=7000)
    again = open_run(tmp_path / "r")
    assert not any(
        isinstance(flat, np.memmap) for _, _, r in cards.read.value_runs(again, "rnn.l0.fwd.f") for flat, _, _ in r
    )
    np.testing.assert_allclose(cards.correlation_row(again, "rnn.l0.fwd.f", 2), want[2], atol=1e-9)


def test_bands_of_small_and_nan_samples_against_brute_force():
    """Fewer samples than bands or than examples, units all NaN or without NaN, ±inf and ties, side by side."""
    from lstmviz.cards.build import bands

    rng = np.random.default_rng(5)
    specials = np.array([0x7E00, 0xFE00, 0x7C00, 0xFC00, 0x0000, 0x8000, 0x3C00], np.uint16)
    for _ in range(200):
        S, U = int(rng.integers(1, 40)), int(rng.integers(1, 5))
        bits = rng.choice(specials, (U, S)) if rng.random() < 0.5 else rng.integers(0, 1 << 16, (U, S))
        bits = bits.astype(np.uint16)
        bits[rng.random(U) < 0.2] = 0x7E00  # a unit of NaN alone
        sample_pos = np.sort(rng.choice(1000, S, replace=False))
        out = bands(sample_pos, bits)
        for u in range(U):
            v = bits[u].view(np.float16).astype(np.float32)
            ranked = sorted((i for i in range(S) if not np.isnan(v[i])), key=lambda i: (float(v[i]), i))
            for b, part in enumerate(np.array_split(np.array(ranked, np.int64), cards.BANDS)):
                if not len(part):
                    assert np.isnan(out["band_lo"][u, b]) and (out["band_pos"][u, b] == -1).all()
                    continue
                assert out["band_lo"][u, b] == v[part[0]] and out["band_hi"][u, b] == v[part[-1]]
                e = min(cards.BAND_EXAMPLES, len(part))
                ranks = np.random.default_rng((cards.SEED, b, len(part))).choice(len(part), e, replace=False)
                want = sorted(sample_pos[part[ranks]].tolist()) + [-1] * (cards.BAND_EXAMPLES - e)
                assert out["band_pos"][u, b].tolist() == want


def test_bands_equal_count_with_seeded_examples_against_brute_force():
    rng = np.random.default_rng(3)
    n = 20000
    x = np.round(rng.normal(size=(n, 2)), 1).astype(np.float16)  # many ties
    x[::3, 1] = np.nan
    out = build(x, list(range(0, n, 999)), 3, 2, shuffle=4)
    sample_pos = np.sort(np.random.default_rng(cards.SEED).choice(n, cards.SAMPLE, replace=False))
    for u in range(2):
        v = x[sample_pos, u].astype(np.float32)
        ok = [i for i in range(len(v)) if not np.isnan(v[i])]
        ranked = sorted(ok, key=lambda i: (float(v[i]), int(sample_pos[i])))
        for b, part in enumerate(np.array_split(np.array(ranked), cards.BANDS)):
            assert out["band_lo"][u, b] == v[part[0]] and out["band_hi"][u, b] == v[part[-1]]
            ranks = np.random.default_rng((cards.SEED, b, len(part))).choice(
                len(part), cards.BAND_EXAMPLES, replace=False
            )
            assert out["band_pos"][u, b].tolist() == sorted(sample_pos[part[ranks]].tolist())
        sizes = [len(p) for p in np.array_split(np.array(ranked), cards.BANDS)]
        assert max(sizes) - min(sizes) <= 1


def test_density_equals_direct_computation():
    rng = np.random.default_rng(5)
    n = 3001
    x = rng.normal(size=(n, 3)).astype(np.float16)
    x[10, 0] = np.nan
    x[11, 1] = -np.inf
    x[12:20, 2] = 0.5  # θ itself is not above θ
    x[20:30, 2] = -0.5
    out = build(x, list(range(0, n, 256)), 3, 2, shuffle=6)
    f = x.astype(np.float32)
    np.testing.assert_array_equal(out["n_above"], (f > cards.THETA).sum(0))
    np.testing.assert_array_equal(out["n_below"], (f < -cards.THETA).sum(0))


def test_card_keys_order_values_then_earlier_positions():
    every = np.arange(1 << 16, dtype=np.uint16)
    value = every.view(np.float16).astype(np.float64)
    ok = ~np.isnan(value)
    pos = np.random.default_rng(0).permutation(len(every))[ok]
    keys = cs.card_keys(cs.key(every[ok]), pos)
    want = sorted(range(len(pos)), key=lambda i: (-value[ok][i], pos[i]))  # ±0 equal, ties to the earlier
    assert np.argsort(-keys, kind="stable").tolist() == want
    k, p = cs.card_order_keys(keys)
    np.testing.assert_array_equal(k, cs.key(every[ok]))
    np.testing.assert_array_equal(p, pos)
    np.testing.assert_array_equal(cards.key_values(keys, 1), value[ok].astype(np.float32))


def test_recorded_run_holds_cards_and_old_runs_fall_back(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(700, 6)).astype(np.float32)
    tokens = [str(t) for t in rng.integers(0, 9, 700)]
    with_cards = write_run(tmp_path / "a", tokens, {"rnn.l0.fwd.c": x}, observers=cards.card_observers(700))
    run = open_run(with_cards)
    assert run.info("rnn.l0.fwd.c")["cards"].startswith("cache/cards/")
    stored = cards.load_cards(run, "rnn.l0.fwd.c").a
    old = open_run(write_run(tmp_path / "b", tokens, {"rnn.l0.fwd.c": x}))
    built = cards.load_cards(old, "rnn.l0.fwd.c").a  # computed from the values, then cached
    assert (old.path / "cache" / "cards" / cards.card_file("rnn.l0.fwd.c", 700)).is_file()
    for key in stored:
        np.testing.assert_array_equal(stored[key], built[key], err_msg=key)
    with pytest.raises(RunError):
        cards.load_cards(run, "rnn.l9.fwd.c")


def test_run_api_answers_from_the_cards_and_computes_other_windows(tmp_path):
    rng = np.random.default_rng(8)
    n = 2000
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[:, 3] = x[:, 0] * 0.9 + 0.1 * x[:, 3]
    x[:, 4] = -x[:, 0]
    tokens = [chr(97 + t) for t in rng.integers(0, 26, n)]
    run = open_run(write_run(tmp_path / "r", tokens, {"rnn.l0.fwd.h": x}, observers=cards.card_observers(n)))
    f = run.activations("rnn.l0.fwd.h")
    for sign in (1, -1):
        for k, window in ((20, 10), (5, 10), (40, 10), (7, 3)):
            top = run.top_contexts("rnn.l0.fwd.h", 2, k=k, sign=sign, window=window)
            want = brute_top(sign * f[:, 2], k, window)
            assert top["idx"].tolist() == want
            np.testing.assert_array_equal(top["value"], f[want, 2])
    top = run.top_contexts("rnn.l0.fwd.h", 1)
    i = int(top["idx"][0])
    assert top["token"][0] == tokens[i] and top["context"][0] == "".join(tokens[max(0, i - 10) : i + 1])
    corr = run.correlated_units("rnn.l0.fwd.h", 0, k=3)
    want = np.corrcoef(f.astype(np.float64), rowvar=False)[0]
    assert corr["unit"].tolist()[:2] == [4, 3] and 0 not in corr["unit"].tolist()
    np.testing.assert_allclose(corr["r"], want[corr["unit"]], atol=1e-5)
    for bad in (dict(sign=0), dict(k=0), dict(window=-1)):
        with pytest.raises(RunError):
            run.top_contexts("rnn.l0.fwd.h", 0, **bad)
    with pytest.raises(RunError):
        run.correlated_units("rnn.l0.fwd.h", 5)


def test_first_use_build_reads_the_writers_file_in_place_and_any_other_through_a_copy(tmp_path):
    """A file as the writer lays it out is swept where it lies; one pyarrow wrote (other pages) goes through the
    scratch copy; both give the cards the recording gave, and no scratch file is left behind."""
    import pyarrow.parquet as pq

    from lstmviz.cards import read

    rng = np.random.default_rng(12)
    n = 20000
    x = np.tanh(np.cumsum(rng.normal(size=(n, 7)), 0) / 10).astype(np.float16)
    tokens = [str(i % 5) for i in range(n)]
    recorded = open_run(write_run(tmp_path / "a", tokens, {"rnn.l0.fwd.c": x}, observers=cards.card_observers(n)))
    want = cards.load_cards(recorded, "rnn.l0.fwd.c").a
    plain = open_run(write_run(tmp_path / "b", tokens, {"rnn.l0.fwd.c": x}))
    assert read.in_place(plain, "rnn.l0.fwd.c") is not None
    other = open_run(write_run(tmp_path / "c", tokens, {"rnn.l0.fwd.c": x}))
    path = other.path / other.info("rnn.l0.fwd.c")["file"]
    table = pq.read_table(path)
    pq.write_table(table, path, row_group_size=3000)  # pyarrow's own pages: dictionary-encoded, other groups
    assert read.in_place(other, "rnn.l0.fwd.c") is None
    for run in (plain, other):
        got = cards.load_cards(run, "rnn.l0.fwd.c").a
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert [p.name for p in (run.path / "cache" / "cards").iterdir()] == [cards.card_file("rnn.l0.fwd.c", n)]
