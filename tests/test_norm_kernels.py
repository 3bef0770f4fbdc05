"""The array kernels of minigrad.norm.kernels and the functional forms: purity, shapes, errors, telemetry.

The mathematical properties (finite differences, null-space identities,
reference equality, ghost batches) are in test_norm_properties.py; here are
the contracts around them. Every test runs on NumPy and array-api-strict.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B
from minigrad.nn import functional as F
from minigrad.norm import functional as NF
from minigrad.norm import kernels as K


def arr(a, dtype=np.float64):
    """A copy of `a` on the active backend."""
    return B.from_numpy(np.array(a, dtype=dtype, copy=True))


def host(a) -> np.ndarray:
    return a.numpy() if isinstance(a, mg.Tensor) else B.to_numpy(a)


def sample(shape, seed=0, scale=1.5, shift=0.5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def stats(c: int, mean: float = 0.1, std: float = 1.3):
    return arr(np.full(c, mean)), arr(np.full(c, std))


# ----------------------------------------------------------------------------
# Purity: kernels never write into their inputs
# ----------------------------------------------------------------------------


def test_kernels_do_not_change_their_inputs():
    x_host, g_host = sample((6, 3, 2)), sample((6, 3, 2), seed=1)
    gamma_host, beta_host = sample((3,), seed=2), sample((3,), seed=3)
    x, dy, gamma, beta = arr(x_host), arr(g_host), arr(gamma_host), arr(beta_host)
    running_mean, running_std = stats(3)
    _, cache = K.batch_norm_forward(x, gamma, beta, 1e-5, virtual_batch_size=3)
    K.batch_norm_backward(dy, cache)
    _, cache = K.batch_renorm_forward(x, gamma, beta, running_mean, running_std, 1.5, 0.5, 1e-5, virtual_batch_size=2)
    K.batch_renorm_backward(dy, cache)
    K.running_stats_update(running_mean, running_std, cache, 0.3)
    K.clip_telemetry(cache)
    _, icache = K.norm_inference_forward(x, gamma, beta, running_mean, running_std)
    K.norm_inference_backward(dy, icache)
    for before, after in [(x_host, x), (g_host, dy), (gamma_host, gamma), (beta_host, beta)]:
        np.testing.assert_array_equal(host(after), before)
    np.testing.assert_array_equal(host(running_mean), np.full(3, 0.1))
    np.testing.assert_array_equal(host(running_std), np.full(3, 1.3))


def test_running_stats_update_returns_new_arrays_in_the_buffers_dtype():
    x = arr(sample((4, 2)), np.float64)
    running_mean, running_std = arr(np.zeros(2), np.float32), arr(np.ones(2), np.float32)
    _, cache = K.batch_norm_forward(x, None, None, 1e-5)
    new_mean, new_std = K.running_stats_update(running_mean, running_std, cache, 0.25)
    assert B.dtype_name(new_mean.dtype) == B.dtype_name(new_std.dtype) == "float32"
    mu_b, sigma_b = host(K.per_group(cache.mu_b))[0], host(K.per_group(cache.sigma_b))[0]
    np.testing.assert_allclose(host(new_mean), 0.25 * mu_b, rtol=1e-6)
    np.testing.assert_allclose(host(new_std), 1 + 0.25 * (sigma_b - 1), rtol=1e-6)
    np.testing.assert_array_equal(host(running_mean), np.zeros(2))


# ----------------------------------------------------------------------------
# Shapes and options of the kernels
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 5), (4, 3, 2, 2)])
def test_batch_statistics_are_per_channel_over_every_other_axis(shape):
    x_host = sample(shape)
    y, cache = K.batch_norm_forward(arr(x_host), None, None, 0.0)
    axes = (0,) + tuple(range(2, len(shape)))
    np.testing.assert_allclose(host(K.per_group(cache.mu_b))[0], x_host.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(host(K.per_group(cache.sigma_b))[0], x_host.std(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(host(y).mean(axis=axes), 0.0, atol=1e-12)
    np.testing.assert_allclose(host(y).std(axis=axes), 1.0, rtol=1e-12)
    assert tuple(y.shape) == shape


def test_fixed_r_and_d_may_be_numbers_per_channel_or_per_group():
    x = arr(sample((6, 2, 3)))
    running = stats(2)
    _, cache = K.batch_norm_forward(x, None, None, 1e-5, virtual_batch_size=3)
    base = host(cache.x_bn).reshape(6, 2, 3)
    y, _ = K.batch_renorm_forward(x, None, None, *running, 3.0, 5.0, 1e-5, 3, r=2.0, d=-1.0)
    np.testing.assert_allclose(host(y), base * 2.0 - 1.0, rtol=1e-12)
    y, _ = K.batch_renorm_forward(x, None, None, *running, 3.0, 5.0, 1e-5, 3, r=arr([2.0, 0.5]), d=arr([1.0, 0.0]))
    np.testing.assert_allclose(host(y), base * np.array([2.0, 0.5])[:, None] + np.array([1.0, 0.0])[:, None], rtol=1e-12)
    per_group = np.array([[2.0, 0.5], [3.0, 1.0]])
    y, _ = K.batch_renorm_forward(x, None, None, *running, 3.0, 5.0, 1e-5, 3, r=arr(per_group), d=0.0)
    expected = base.reshape(2, 3, 2, 3) * per_group[:, None, :, None]
    np.testing.assert_allclose(host(y), expected.reshape(6, 2, 3), rtol=1e-12)
    with pytest.raises(ValueError, match=r"r: expected shape \(2,\) or \(2, 2\).*got \(3,\)"):
        K.batch_renorm_forward(x, None, None, *running, 3.0, 5.0, 1e-5, 3, r=arr([1.0, 1.0, 1.0]))


def test_backward_skips_dx_when_not_needed_and_rejects_a_batchnorm_cache_for_renorm():
    x, dy = arr(sample((4, 2))), arr(sample((4, 2), seed=5))
    _, cache = K.batch_norm_forward(x, arr([1.0, 2.0]), None, 1e-5)
    dx, dgamma, dbeta = K.batch_norm_backward(dy, cache, need_dx=False)
    assert dx is None and tuple(dgamma.shape) == tuple(dbeta.shape) == (2,)
    with pytest.raises(ValueError, match="cache: expected the cache of batch_renorm_forward"):
        K.batch_renorm_backward(dy, cache)


def test_renorm_with_unit_limits_computes_r_one_and_d_zero():
    x = arr(sample((5, 3, 2)))
    running = stats(3, mean=4.0, std=0.1)
    y_bn, _ = K.batch_norm_forward(x, None, None, 1e-5)
    y_brn, cache = K.batch_renorm_forward(x, None, None, *running, 1.0, 0.0, 1e-5)
    np.testing.assert_array_equal(host(cache.r), 1.0)
    np.testing.assert_array_equal(host(cache.d), 0.0)
    np.testing.assert_array_equal(host(y_brn), host(y_bn))


# ----------------------------------------------------------------------------
# Clipping telemetry
# ----------------------------------------------------------------------------


def test_clip_telemetry_reports_clipped_fractions_and_unclipped_ranges():
    # channel 0: σ_B = 2 and μ_B = 0; channel 1: σ_B = 0.5 and μ_B = 3 (x = μ_B ± σ_B, eps = 0)
    x = arr([[2.0, 3.5], [-2.0, 2.5]])
    running_mean, running_std = arr([0.0, 0.0]), arr([1.0, 1.0])
    _, cache = K.batch_renorm_forward(x, None, None, running_mean, running_std, 1.5, 1.0, 0.0)
    record = K.clip_telemetry(cache)
    # r = σ_B/σ = (2, 0.5): both outside [1/1.5, 1.5]; d = μ_B/σ = (0, 3): one outside [-1, 1]
    assert record == pytest.approx(
        {
            "r_clipped_fraction": 1.0,
            "d_clipped_fraction": 0.5,
            "r_smallest_unclipped": 0.5,
            "r_largest_unclipped": 2.0,
            "d_smallest_unclipped": 0.0,
            "d_largest_unclipped": 3.0,
        }
    )
    assert all(type(value) is float for value in record.values())
    np.testing.assert_allclose(host(K.per_group(cache.r)), [[1.5, 1 / 1.5]])
    np.testing.assert_allclose(host(K.per_group(cache.d)), [[0.0, 1.0]])


# ----------------------------------------------------------------------------
# Bad input at the boundary (the Tensor-level training functions and the functional
# forms check; the kernels behind them assume valid input): each error names the
# argument, the expectation and what came
# ----------------------------------------------------------------------------


def test_boundary_errors_name_the_argument_the_expectation_and_what_came():
    x = mg.Tensor(sample((4, 3)), dtype="float64")
    running = stats(3)
    with pytest.raises(
        ValueError, match=r"x: expected an array of shape \(N, C, \.\.\.\) with at least 2 axes, got shape \(4,\)"
    ):
        NF.batch_norm_train(mg.Tensor(sample((4,)), dtype="float64"), None, None, 1e-5)
    with pytest.raises(ValueError, match=r"x: expected 2 channels on axis 1 .*got shape \(4, 3\)"):
        NF.batch_norm_train(x, mg.Tensor([1.0, 1.0], dtype="float64"), None, 1e-5)
    with pytest.raises(ValueError, match=r"bias: expected shape \(3,\), one value per channel, got \(2,\)"):
        NF.batch_norm_train(x, None, mg.Tensor([1.0, 1.0], dtype="float64"), 1e-5)
    with pytest.raises(ValueError, match=r"running_std: expected shape \(3,\), one value per channel, got \(4,\)"):
        F.batch_norm(x, None, None, running[0], arr(np.ones(4)), training=False)
    with pytest.raises(ValueError, match=r"virtual_batch_size: expected a divisor of the batch size 4.*got 3"):
        NF.batch_norm_train(x, None, None, 1e-5, virtual_batch_size=3)
    with pytest.raises(ValueError, match=r"x: expected more than one value per channel.*got shape \(4, 3\).*1 value"):
        NF.batch_renorm_train(x, None, None, *running, 3.0, 5.0, 1e-5, virtual_batch_size=1)
    with pytest.raises(ValueError, match=r"eps: expected a finite number >= 0, got -1e-05"):
        NF.batch_norm_train(x, None, None, -1e-5)
    with pytest.raises(ValueError, match=r"r_max: expected a number >= 1 .*got 0.5"):
        NF.batch_renorm_train(x, None, None, *running, 0.5, 5.0, 1e-5)
    with pytest.raises(ValueError, match=r"d_max: expected a number >= 0 .*got -1"):
        NF.batch_renorm_train(x, None, None, *running, 3.0, -1, 1e-5)
    with pytest.raises(ValueError, match=r"running_mean: expected finite values, got \[nan\] at channels \[1\]"):
        NF.batch_renorm_train(x, None, None, arr([0.0, np.nan, 0.0]), running[1], 3.0, 5.0, 1e-5)
    with pytest.raises(
        ValueError, match=r"running_std: expected finite positive values, got \[inf, 0.0\] at channels \[0, 2\]"
    ):
        F.batch_norm(x, None, None, running[0], arr([np.inf, 1.0, 0.0]), training=False)
    with pytest.raises(TypeError, match=r"x: expected a floating-point array, got dtype int64"):
        NF.batch_norm_train(mg.Tensor(np.ones((4, 3)), dtype="int64"), None, None, 1e-5)
    NF.batch_norm_train(x, None, None, 0.0)  # eps = 0 is allowed here (the paper's identities)


# ----------------------------------------------------------------------------
# The functional forms
# ----------------------------------------------------------------------------


def test_functional_training_updates_the_given_buffers_in_place():
    x_host = sample((6, 2, 3))
    running_mean, running_std = stats(2)
    mean_object, std_object = running_mean, running_std
    F.batch_renorm(mg.Tensor(x_host, dtype="float64"), None, None, running_mean, running_std, True, momentum=0.5)
    assert running_mean is mean_object and running_std is std_object  # the same arrays, new values
    mu_b = x_host.mean(axis=(0, 2))
    sigma_b = np.sqrt(1e-5 + x_host.var(axis=(0, 2)))
    np.testing.assert_allclose(host(running_mean), 0.1 + 0.5 * (mu_b - 0.1), rtol=1e-12)
    np.testing.assert_allclose(host(running_std), 1.3 + 0.5 * (sigma_b - 1.3), rtol=1e-12)


def test_functional_inference_leaves_buffers_alone_and_batch_norm_may_track_nothing():
    x = mg.Tensor(sample((4, 2)), dtype="float64")
    running_mean, running_std = stats(2)
    for fn in (F.batch_norm, F.batch_renorm):
        y = fn(x, None, None, running_mean, running_std, False)
        np.testing.assert_allclose(host(y), (host(x) - 0.1) / 1.3, rtol=1e-12)
    np.testing.assert_array_equal(host(running_mean), np.full(2, 0.1))
    np.testing.assert_array_equal(host(running_std), np.full(2, 1.3))
    y = F.batch_norm(x, None, None, None, None, training=True)
    np.testing.assert_allclose(host(y).mean(axis=0), 0.0, atol=1e-12)


def test_functional_errors_name_the_argument():
    x = mg.Tensor(sample((4, 2)), dtype="float64")
    running = stats(2)
    with pytest.raises(ValueError, match=r"eps: expected a finite number > 0, got 0"):
        F.batch_norm(x, None, None, *running, True, 0.1, 0)
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\].*got 1.5"):
        F.batch_renorm(x, None, None, *running, True, momentum=1.5)
    with pytest.raises(ValueError, match=r"running_mean, running_std: expected arrays in inference mode.*got None"):
        F.batch_norm(x, None, None, None, None, training=False)
    with pytest.raises(ValueError, match=r"running_mean, running_std: expected both or neither.*running_std=None"):
        F.batch_norm(x, None, None, running[0], None, training=True)
    with pytest.raises(TypeError, match=r"running_mean: expected a backend array .*got Tensor"):
        F.batch_renorm(x, None, None, mg.Tensor(np.zeros(2)), running[1], True)
    with pytest.raises(TypeError, match=r"x: expected a Tensor, got ndarray"):
        F.batch_norm(sample((4, 2)), None, None, *running, True)
    with pytest.raises(ValueError, match=r"x: expected 2 channels on axis 1.*got shape \(4, 3\)"):
        F.batch_renorm(mg.Tensor(sample((4, 3)), dtype="float64"), None, None, *running, True)
    with pytest.raises(ValueError, match=r"r_max: expected a number >= 1.*got 0.9"):
        F.batch_renorm(x, None, None, *running, False, r_max=0.9)


def test_functional_rejects_running_stats_on_another_device(backend):
    other = "cpu" if backend != "numpy" else "array_api_strict"
    x = mg.Tensor(sample((4, 2)), dtype="float64")
    running_mean = B.to_device(arr(np.zeros(2)), other)
    with pytest.raises(
        mg.DeviceMismatchError, match=rf"running_mean: expected an array on x's device .*got one on '{other}'"
    ):
        F.batch_norm(x, None, None, running_mean, arr(np.ones(2)), True)


def test_functional_exports_keep_the_existing_names():
    for name in ("cross_entropy", "log_softmax", "relu", "softmax", "batch_norm", "batch_renorm"):
        assert callable(getattr(F, name)) and name in F.__all__


def test_functional_without_affine_parameters_has_correct_gradients():
    x = mg.Tensor(sample((6, 2)), requires_grad=True, dtype="float64")
    running = stats(2)
    assert mg.gradcheck(lambda t: F.batch_norm(t, None, None, None, None, True, virtual_batch_size=3), [x])
    assert mg.gradcheck(lambda t: F.batch_renorm(t, None, None, *running, False), [x])
