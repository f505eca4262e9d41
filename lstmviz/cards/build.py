"""The unit cards' computations (see :mod:`lstmviz.cards` for what they hold, and why a bounded candidate set makes
the greedy exact): the candidate bound, the greedy over card keys (:func:`lstmviz.f16keys.card_keys`) and the
quantile bands of a sample."""

from __future__ import annotations

import numpy as np

from .. import f16keys as _cs

K = 20  # top contexts stored per unit and sign (the API's k is at most this when answered from the cards)
WINDOW = 10  # the de-duplication window of the stored top contexts
BANDS = 10
BAND_EXAMPLES = 5
SAMPLE = 4096  # positions sampled for the quantile bands
THETA = 0.5
SEED = 0
VERSION = 2  # 2: the candidates from the closing sweep, and no strip (the overview is the strip)
POS_BITS = _cs.POS_BITS
_POS_MAX = _cs.POS_MAX


def candidates(k: int, window: int) -> int:
    """M = (k − 1)(2·window + 1) + 1: the top positions per unit that provably hold the greedy's k picks."""
    return (k - 1) * (2 * window + 1) + 1


def greedy(keys: np.ndarray, k: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy de-duplicated picks of each row of card keys ``keys`` int64 ``[U, M]`` (descending, 0 = empty): the
    best remaining key, then every position within ±window of it dropped, k times. Returns the positions int64
    ``[U, k]`` (−1 where fewer remain) and their card keys int64 ``[U, k]`` (0 pads)."""
    from ._jit import greedy as compiled

    keys = np.ascontiguousarray(keys, np.int64)
    picked = np.empty((len(keys), k), np.int64)
    best = np.empty((len(keys), k), np.int64)
    compiled(keys, k, window, picked, best)
    return picked, best


def best_keys(keys: np.ndarray, length: np.ndarray, m: int, floor: np.ndarray | None = None) -> np.ndarray:
    """Per row of ``keys`` int64 ``[U, W]``, the m largest of its first ``length[u]`` that are above ``floor[u]``
    (default 0: all), descending, 0 padded ``[U, m]``."""
    from ._jit import best_keys as compiled

    out = np.empty((len(keys), m), np.int64)
    floor = np.zeros(len(keys), np.int64) if floor is None else np.asarray(floor, np.int64)
    compiled(np.ascontiguousarray(keys, np.int64), np.asarray(length, np.int64), floor, m, out)
    return out


def key_values(keys: np.ndarray, sign: int) -> np.ndarray:
    """float32 values of card keys int64 (of sign·x): NaN where the key is 0 (no pick)."""
    k, _ = _cs.card_order_keys(keys)
    v = sign * _cs.LUT[_cs.key_bits(np.where(keys > 0, k, 0x7E00))]
    return v.astype(np.float32)


_ORDER = np.where(np.abs(_cs.key(np.arange(1 << 16))) <= 0x7C00, _cs.key(np.arange(1 << 16)) + 0x8000, 0).astype(
    np.uint16
)  # float16 bits → their value's rank key, ≥ 1 for a value (±0 alike), 0 for NaN (ranked first)


def bands(sample_pos: np.ndarray, sample: np.ndarray) -> dict[str, np.ndarray]:
    """Equal-count bands of the sampled values of each unit, with example positions.

    sample_pos: int64 ``[S]`` sorted corpus positions; sample: uint16 ``[U, S]`` their values' float16 bit
    patterns, unit-major. The finite sampled values of a unit, in the top contexts' order (value ascending here,
    ties to the earlier position), are cut into ``BANDS`` runs of equal count (``np.array_split``: sizes differ
    by at most one). Band b's examples are its members at ``BAND_EXAMPLES`` ranks drawn without replacement by
    ``default_rng((SEED, b, size))`` (a uniform draw from the band), in corpus order. Returns
    ``band_lo``/``band_hi`` float32 ``[U, BANDS]`` (the band's smallest and largest sampled value) and
    ``band_pos`` int64 ``[U, BANDS, BAND_EXAMPLES]`` (−1 padded).
    """
    U, S = sample.shape
    lo = np.full((U, BANDS), np.nan, np.float32)
    hi = np.full((U, BANDS), np.nan, np.float32)
    pos = np.full((U, BANDS, BAND_EXAMPLES), -1, np.int64)
    from ._jit import bands as compiled
    from ._jit import nan_counts

    bits = np.ascontiguousarray(sample, np.uint16)  # [U, S]
    nans = np.empty(U, np.int64)
    nan_counts(bits, _ORDER, nans)
    nans = np.unique(nans)
    which = np.zeros(S + 1, np.int64)
    which[nans] = np.arange(len(nans))
    draws = np.full((max(len(nans), 1), BANDS, BAND_EXAMPLES), -1, np.int64)  # [the NaN counts, bands, examples]
    for row, nan in enumerate(nans.tolist()):
        for b, size in enumerate(len(c) for c in np.array_split(np.arange(S - nan), BANDS)):
            e = min(BAND_EXAMPLES, size)
            if e:
                draws[row, b, :e] = np.random.default_rng((SEED, b, size)).choice(size, e, replace=False)
    compiled(bits, _ORDER, _cs.LUT, np.asarray(sample_pos, np.int64), draws, which, lo, hi, pos)
    return {"band_lo": lo, "band_hi": hi, "band_pos": pos}


def card_file(name: str, n_tokens: int) -> str:
    """The cards file name of an activation in a run of ``n_tokens`` tokens."""
    return f"{name}.n{n_tokens}.v{VERSION}.npz"
