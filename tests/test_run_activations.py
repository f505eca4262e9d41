"""Run.activations against the oracle ``full[start:stop][:, units]`` of numpy, and the unit ids it refuses."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from lstmviz.store import RunError, open_run, reader, write_run
from lstmviz.store import writer as store

T, U, NAME = 300, 9, "rnn.l0.fwd.c"


@pytest.fixture(scope="module")
def run_and_full(tmp_path_factory):
    """A run of random values over 5 row groups of 64 rows, and its full matrix float32 ``[T, U]`` (as stored)."""
    x = np.random.default_rng(0).normal(size=(T, U)).astype(np.float32)
    mp = pytest.MonkeyPatch()
    mp.setattr(store, "ROW_GROUP", 64)  # row groups small enough that windows cross their seams
    try:
        path = write_run(tmp_path_factory.mktemp("acts") / "run", [str(i) for i in range(T)], {NAME: x})
    finally:
        mp.undo()
    return open_run(path), x.astype(np.float16).astype(np.float32)


MASK = np.array([True, False, False, True, True, False, False, False, True])
GOOD_UNITS = {
    "repeated": [3, 3, 5, 3],
    "unsorted": [8, 0, 4, 1],
    "repeated_unsorted_array": np.array([7, 2, 7, 7, 0, 2]),
    "every_unit_twice": list(range(U)) * 2,
    "mask": MASK,
    "mask_as_list": MASK.tolist(),
    "mask_all_false": np.zeros(U, bool),
    "mask_all_true": [True] * U,
    "int32_array": np.array([1, 2], np.int32),
    "uint8_array": np.array([8, 0], np.uint8),
    "numpy_scalars": [np.int64(4), np.int16(4)],
    "tuple": (6, 5),
    "range": range(2, 7),
    "series": pd.Series([5, 1, 5]),
    "tensor": torch.tensor([0, 8, 0]),
    "empty": [],
    "empty_array": np.array([]),
}


def oracle_columns(units) -> np.ndarray:
    """The column selection numpy makes of ``units``: ids as they are, a mask by mask."""
    u = np.asarray(units)
    return np.flatnonzero(u) if u.dtype == bool else u.astype(np.int64)


@pytest.mark.parametrize("case", list(GOOD_UNITS))
@pytest.mark.parametrize("window", [(None, None), (60, 70), (0, 1), (63, 200), (299, None), (-5, None)])
def test_activations_equal_numpy_indexing_of_the_full_matrix(run_and_full, case, window):
    run, full = run_and_full
    units = GOOD_UNITS[case]
    got = run.activations(NAME, units, *window)
    want = full[slice(*window)][:, oracle_columns(units)]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", ["repeated_unsorted_array", "every_unit_twice", "mask", "range", "unsorted"])
@pytest.mark.parametrize("window", [(None, None), (63, 200), (5, 12)])
def test_activations_transposed_in_tiles_equal_numpy_indexing(run_and_full, case, window, monkeypatch):
    """Reads are placed through unit-major tiles: tiles of 7 rows (not dividing the windows, the row groups of 64
    or the run) give numpy's ``full[start:stop][:, units]`` too."""
    run, full = run_and_full
    monkeypatch.setattr(reader, "TILE_ROWS", 7)
    units = GOOD_UNITS[case]
    np.testing.assert_array_equal(run.activations(NAME, units, *window), full[slice(*window)][:, oracle_columns(units)])


def test_one_integer_id_gives_one_column(run_and_full):
    run, full = run_and_full
    np.testing.assert_array_equal(run.activations(NAME, 4), full[:, [4]])
    np.testing.assert_array_equal(run.activations(NAME, np.int32(2), 10, 20), full[10:20, [2]])
    np.testing.assert_array_equal(run.activations(NAME, torch.tensor(7), np.int64(-3)), full[-3:, [7]])
    np.testing.assert_array_equal(run.activations(NAME, np.array(0)), full[:, [0]])


BAD_UNITS = {
    "float_id": ([1.0], "must be integer unit ids, got 1.0 (float)"),
    "float_among_ids": ([1, 2.5], "got 2.5 (float)"),
    "float_array": (np.array([1.0, 2.0]), "an array of float64"),
    "float_tensor": (torch.tensor([1.0]), "an array of float32"),
    "float_scalar": (2.0, "must be unit ids or a boolean mask, got 2.0 (float)"),
    "numpy_float_scalar": (np.float32(2), "got np.float32(2.0)"),
    "string": ("3", "got '3' (str)"),
    "string_ids": (["3"], "got '3' (str)"),
    "string_array": (np.array(["a", "b"]), "an array of <U1"),
    "bytes": (b"\x01", "(bytes)"),
    "bool_scalar": (True, "got True (bool)"),
    "bool_among_ids": ([True, 1], "got True (bool)"),
    "id_then_bool": ([2, False], "got False (bool)"),
    "none_among_ids": ([1, None], "got None (NoneType)"),
    "nested_list": ([[1, 2]], "got [1, 2] (list)"),
    "matrix": (np.array([[1, 2]]), "must be 1-D, got an array of shape [1, 2]"),
    "object_array": (np.array([1, "a"], dtype=object), "an array of object"),
    "set": ({1, 2}, "got {1, 2} (set)"),
    "dict": ({1: 2}, "(dict)"),
    "short_mask": (MASK[:-1], f"needs {U} entries, got {U - 1}"),
    "long_mask": (np.r_[MASK, True], f"needs {U} entries, got {U + 1}"),
    "short_mask_list": ([True, False], f"needs {U} entries, got 2"),
    "id_too_large": ([0, U], f"has units 0…{U - 1}; asked for {U}"),
    "id_far_too_large": (np.array([2**40]), "asked for 1099511627776"),
    "negative_id": ([-1], "asked for -1"),
    "huge_uint": (np.array([2**63 + 5], np.uint64), "asked for"),
}


@pytest.mark.parametrize("case", list(BAD_UNITS))
def test_activations_refuses_units_that_are_not_ids_or_a_mask(run_and_full, case):
    run, _ = run_and_full
    units, fragment = BAD_UNITS[case]
    with pytest.raises(RunError, match=re.escape(fragment)) as e:
        run.activations(NAME, units)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "window, fragment",
    [
        ((1.5, None), "start must be an integer token position or None, got 1.5"),
        ((None, "9"), "stop must be an integer token position or None, got '9'"),
        ((True, None), "start must be an integer token position or None, got True"),
        ((0, np.float64(3)), "stop must be an integer"),
    ],
)
def test_activations_refuses_a_window_that_is_not_integer(run_and_full, window, fragment):
    run, _ = run_and_full
    with pytest.raises(RunError, match=re.escape(fragment)):
        run.activations(NAME, [0], *window)
