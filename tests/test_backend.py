"""The backend's fast paths and the random numbers: every fast path equals its portable twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import array_extras
from minigrad import backend as B
from minigrad.ops import scatter
from tests.strategies import arrays, shapes


@given(data=st.data(), shape=shapes(min_dims=1, max_dims=3))
def test_scatter_add_matches_the_portable_version(data, shape):
    n = data.draw(st.integers(1, 6))
    key = tuple(np.asarray(data.draw(st.lists(st.integers(0, side - 1), min_size=n, max_size=n))) for side in shape)
    values = data.draw(arrays((n,)))
    active_key = tuple(B.from_numpy(k) for k in key)
    active_values = B.from_numpy(values)
    fast = B.to_numpy(scatter.scatter_add(shape, active_key, active_values))
    portable = B.to_numpy(scatter.scatter_add_portable(shape, active_key, active_values))
    expected = np.zeros(shape)
    np.add.at(expected, key, values)
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(portable, expected, rtol=1e-12, atol=1e-12)


@given(data=st.data(), rows=st.integers(1, 5), rest=shapes(min_dims=0, max_dims=2))
def test_scatter_add_rows_matches_the_portable_version(data, rows, rest):
    n = data.draw(st.integers(1, 6))
    indices = np.asarray(data.draw(st.lists(st.integers(0, rows - 1), min_size=n, max_size=n)))
    values = data.draw(arrays((n,) + rest))
    fast = B.to_numpy(scatter.scatter_add_rows(rows, B.from_numpy(indices), B.from_numpy(values)))
    portable = B.to_numpy(scatter.scatter_add_rows_portable(rows, B.from_numpy(indices), B.from_numpy(values)))
    expected = np.zeros((rows,) + rest)
    np.add.at(expected, indices, values)
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(portable, expected, rtol=1e-12, atol=1e-12)


def test_basic_keys_scatter_by_assignment():
    values = B.from_numpy(np.arange(4.0).reshape(2, 2))
    out = B.to_numpy(scatter.scatter_add((3, 4), (slice(1, 3), slice(0, 4, 2)), values))
    expected = np.zeros((3, 4))
    expected[1:3, 0:4:2] = np.arange(4.0).reshape(2, 2)
    np.testing.assert_array_equal(out, expected)


def test_generator_is_reproducible_and_restorable(backend):
    g = mg.Generator(7)
    first = B.to_numpy(g.normal((3, 2), "float64"))
    state = g.get_state()
    second = B.to_numpy(g.uniform((4,), "float32"))
    g.set_state(state)
    np.testing.assert_array_equal(B.to_numpy(g.uniform((4,), "float32")), second)
    np.testing.assert_array_equal(B.to_numpy(mg.Generator(7).normal((3, 2), "float64")), first)
    assert B.dtype_name(g.uniform((2,), "float32").dtype) == "float32"


@pytest.mark.backends("numpy")
def test_numpy_and_strict_draw_the_same_numbers():
    a = B.to_numpy(mg.Generator(3).normal((5,), "float64", library="numpy"))
    b = B.to_numpy(mg.Generator(3).normal((5,), "float64", library="array_api_strict"))
    np.testing.assert_array_equal(a, b)


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu"])
def test_bad_device_names(device):
    with pytest.raises(ValueError, match=f"device: expected .* got '{device}'"):
        B.parse_device(device)


@pytest.mark.backends("numpy")
def test_device_round_trip_keeps_values_and_dtype():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    moved = B.to_device(x, "array_api_strict")
    assert B.device_of(moved) == "array_api_strict"
    back = B.to_device(moved, "cpu")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, x)


@pytest.mark.backends("numpy")
def test_host_data_with_unsupported_dtype_is_refused():
    with pytest.raises(TypeError, match="data: expected real numbers"):
        mg.Tensor(np.array(["a", "b"]))


def test_the_random_numbers_live_in_minigrad_random_alone():
    assert mg.random.Generator is mg.Generator and mg.random.manual_seed is mg.manual_seed
    assert not hasattr(B, "Generator") and not hasattr(B, "default_generator")


def test_add_at_sums_repeated_indices_in_place_and_names_a_library_without_one(backend):
    out = B.from_numpy(np.zeros(3))
    rows, values = B.from_numpy(np.array([0, 2, 0])), B.from_numpy(np.array([1.0, 2.0, 3.0]))
    if not array_extras.has_add_at(out):
        with pytest.raises(TypeError, match=f"add_at: {B.library_of(out)} arrays have no scatter-add"):
            array_extras.add_at(out, rows, values)
        return
    array_extras.add_at(out, rows, values)
    np.testing.assert_array_equal(B.to_numpy(out), [4.0, 0.0, 2.0])
