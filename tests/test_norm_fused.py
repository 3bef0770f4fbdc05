"""The fused NumPy twin of the training kernels agrees with the readable ones (minigrad.norm.kernels).

Hypothesis draws ranks, memory layouts (C-contiguous, channel-major as the
convolutions hand over, any permutation), ghost batches, γ/β presence and
the Batch Renorm limits; forward outputs, batch statistics, r, d and the
three gradients must match the reference in float64.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigrad.norm import fused, kernels
from minigrad.norm.reduction import LOCAL, GroupReduction

pytestmark = pytest.mark.backends("numpy")  # the fused path is NumPy's


@st.composite
def inputs(draw):
    rank = draw(st.integers(2, 4))
    c = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 3))
    k = draw(st.integers(2, 4))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(rank - 2))
    shape = (groups * k, c, *spatial)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3, size=(1, c) + (1,) * (rank - 2)) + rng.uniform(-3, 3)
    layout = draw(st.sampled_from(["contiguous", "channel-major", "permuted"]))
    if layout == "channel-major":
        order = (1, *range(2, rank), 0)  # C, spatial..., N in memory
    elif layout == "permuted":
        order = tuple(draw(st.permutations(range(rank))))
    else:
        order = tuple(range(rank))
    x = np.ascontiguousarray(x.transpose(order)).transpose(np.argsort(order))
    dy = rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 2, c) if draw(st.booleans()) else None
    beta = rng.uniform(-1, 1, c) if draw(st.booleans()) else None
    vbs = k if groups > 1 or draw(st.booleans()) else None
    return x, dy, gamma, beta, vbs


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


HAS_NUMBA = importlib.util.find_spec("numba") is not None
LOOPS = [
    "numpy",
    pytest.param("compiled", marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed (the fast extra)")),
]


@pytest.fixture(params=LOOPS)
def loops(request):
    """Each test runs with the block stages as NumPy calls and as compiled loops (numba)."""
    saved = fused.COMPILED
    fused.use_compiled(request.param == "compiled")
    assert (fused._loops() is not None) == (request.param == "compiled")
    yield request.param
    fused.use_compiled(saved)


@settings(max_examples=60, deadline=None)
@given(
    case=inputs(),
    renorm=st.sampled_from(["bn", "brn-clipped", "brn-free", "brn-fixed"]),
    block_bytes=st.sampled_from([8, 64, fused.BLOCK_BYTES]),  # one row per block, a few, all rows at once
    threads=st.sampled_from([1, 2, 3]),
)
def test_fused_training_forward_and_backward_equal_the_reference(loops, case, renorm, block_bytes, threads):
    saved = fused.BLOCK_BYTES, fused.THREADS
    fused.BLOCK_BYTES = block_bytes
    fused.set_threads(threads)
    try:
        _compare(*case, renorm)
    finally:
        fused.BLOCK_BYTES = saved[0]
        fused.set_threads(saved[1])


def _compare(x, dy, gamma, beta, vbs, renorm):
    if not fused.applies(x, vbs, LOCAL):
        assert vbs is not None and x.shape[0] // vbs > 1  # only ghost batches across a non-outer batch axis fall back
        return
    x_before = x.copy()
    c = x.shape[1]
    if renorm == "bn":
        args, kwargs = (x, gamma, beta, 1e-5, vbs), {}
        y_ref, ref = kernels.batch_norm_forward(*args)
        y, got = fused.batch_norm_forward(*args)
    else:
        limits = {"brn-clipped": (1.1, 0.1), "brn-free": (math.inf, math.inf), "brn-fixed": (3.0, 5.0)}[renorm]
        running = (np.full(c, 0.3), np.full(c, 1.7))
        kwargs = {"r": 1.3, "d": np.linspace(-0.5, 0.5, c)} if renorm == "brn-fixed" else {}
        args = (x, gamma, beta, *running, *limits, 1e-5, vbs)
        y_ref, ref = kernels.batch_renorm_forward(*args, **kwargs)
        y, got = fused.batch_renorm_forward(*args, **kwargs)
        _close(got.r, ref.r)
        _close(got.d, ref.d)
        if renorm != "brn-fixed":
            _close(kernels.clip_statistics(got), kernels.clip_statistics(ref))
    _close(y, y_ref)
    assert y.strides == x.strides  # the output keeps the input's memory layout
    _close(got.mu_b, ref.mu_b)
    _close(got.sigma_b, ref.sigma_b)
    _close(got.x_bn, ref.x_bn)
    for need_dx in (True, False):
        dx, dgamma, dbeta = fused.training_backward(dy, got, need_dx)
        dx_ref, dgamma_ref, dbeta_ref = kernels.training_backward(dy, ref, need_dx)
        _close(dgamma, dgamma_ref)
        _close(dbeta, dbeta_ref)
        if need_dx:
            _close(dx, dx_ref)
        else:
            assert dx is None
    np.testing.assert_array_equal(x, x_before)  # the input is never written


@pytest.mark.parametrize("tiled", [True, False])
def test_short_rows_tile_their_factors_and_agree_with_the_reference(monkeypatch, tiled, loops):
    """A C-contiguous x has rows of H·W: its factors are tiled into blocks that start at multiples of C."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 2, 5)) * 2 + 1
    dy = rng.standard_normal(x.shape)
    monkeypatch.setattr(fused, "BLOCK_BYTES", 3 * 10 * 8 * 4)  # tiled blocks take half: two samples (6 rows)
    if not tiled:
        monkeypatch.setattr(fused, "SHORT_ROW", 0)
    rows = fused._rows(x, None)
    assert rows.tile_rows() == (6 if tiled else None)
    spread = rows.spread(np.arange(3.0)[None, :])
    assert isinstance(spread, fused._Tiled) == tiled
    if tiled:  # row r of any block holds channel r mod C, repeated along the row
        np.testing.assert_array_equal(spread[slice(6, 12)], np.repeat(np.tile(np.arange(3.0), 2)[:, None], 10, axis=1))
        assert rows.spread(np.ones((1, 3)))[slice(42, 48)].shape == (6, 10)
    _compare(x, dy, rng.uniform(0.5, 2, 3), rng.uniform(-1, 1, 3), None, "bn")
    _compare(x, dy, None, None, None, "brn-clipped")


def test_fused_applies_to_numpy_rows_alone():
    x = np.ones((4, 3, 2, 2))
    assert fused.applies(x, None, LOCAL) and fused.applies(x, 2, LOCAL)
    channel_major = np.ones((3, 2, 2, 4)).transpose(3, 0, 1, 2)
    assert fused.applies(channel_major, None, LOCAL)
    assert not fused.applies(channel_major, 2, LOCAL)  # ghost batches would cut across rows
    assert not fused.applies(x[:, :, ::2], None, LOCAL)  # a strided view has no row layout
    assert not fused.applies(x, None, GroupReduction(type("G", (), {"size": 2, "allreduce_host": None})()))


def test_set_threads_refuses_a_bad_count():
    with pytest.raises(ValueError, match="count: expected a positive integer, got 0"):
        fused.set_threads(0)


@pytest.mark.parametrize("offset", [0.0, 100.0, 1000.0])
def test_float32_error_stays_at_the_references_for_inputs_far_from_zero(offset, loops):
    """Folding μ_B into the shift rounds μ_B·s apart: the error must stay of the reference's size, |μ_B|/σ_B large."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((32, 8, 6, 6)) + offset).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    exact_y, exact = kernels.batch_norm_forward(x.astype(np.float64), None, None, 1e-5)
    exact_dx = kernels.training_backward(dy.astype(np.float64), exact)[0]
    for layout in (x, np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)):
        y_ref, ref = kernels.batch_norm_forward(layout, None, None, 1e-5)
        y, got = fused.batch_norm_forward(layout, None, None, 1e-5)
        dx_ref, dx = kernels.training_backward(dy, ref)[0], fused.training_backward(dy, got)[0]
        assert np.abs(y - exact_y).max() <= 3 * np.abs(y_ref - exact_y).max() + 1e-6
        assert np.abs(dx - exact_dx).max() <= 3 * np.abs(dx_ref - exact_dx).max() + 1e-6


@pytest.mark.parametrize("loops", ["compiled"], indirect=True)
def test_compiled_loops_propagate_nan_like_numpy(loops):
    """fastmath reorders sums but keeps NaN: a NaN in one channel makes that channel's outputs NaN, and only it."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 5))
    x[1, 2, 3] = np.nan
    y, cache = fused.batch_norm_forward(x, None, None, 1e-5)
    dx = fused.training_backward(rng.standard_normal(x.shape), cache)[0]
    assert np.isnan(y[:, 2]).all() and np.isnan(dx[:, 2]).all()
    assert np.isfinite(y[:, :2]).all() and np.isfinite(dx[:, :2]).all()


def test_use_compiled_off_runs_without_numba(monkeypatch):
    """Switched off (or with numba missing) the NumPy calls run: the compiled module is never asked for."""
    monkeypatch.setattr(fused, "COMPILED", False)
    assert fused._loops() is None
