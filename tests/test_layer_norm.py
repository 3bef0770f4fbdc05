"""Property tests of Layer Normalization: finite differences, the null-space identities, batch independence.

Hypothesis draws the batch shape, the normalized shape (one or two trailing
axes), values, ε and γ, β. As in the batchnorm tests, inputs are an
alternating ±1 pattern over each example's normalized values plus bounded
noise, scaled and shifted per example, so no example's variance is near 0.
Every test runs on NumPy and array-api-strict (the autouse backend fixture).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backend as B
from minigrad.nn import functional as F
from minigrad.norm import layernorm as LN


@st.composite
def inputs(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    normalized = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    if math.prod(normalized) < 2:
        normalized = normalized[:-1] + (2,)
    m = math.prod(normalized)
    sign = np.where(np.arange(m) % 2 == 0, 1.0, -1.0).reshape(normalized)
    noise = draw(hnp.arrays(np.float64, batch + normalized, elements=st.floats(-0.4, 0.4, allow_subnormal=False)))
    scale = draw(hnp.arrays(np.float64, batch, elements=st.floats(0.5, 3.0)))
    shift = draw(hnp.arrays(np.float64, batch, elements=st.floats(-3.0, 3.0)))
    view = batch + (1,) * len(normalized)
    x = (sign + noise) * scale.reshape(view) + shift.reshape(view)
    return x, normalized


def vectors(shape, low=-2.0, high=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_subnormal=False))


def leaf(a):
    return mg.Tensor(a, requires_grad=True, dtype="float64")


def host(a):
    return a.numpy() if isinstance(a, mg.Tensor) else B.to_numpy(a)


@given(case=inputs(), data=st.data(), eps=st.floats(1e-5, 0.5), affine=st.booleans())
def test_layer_norm_gradients_match_finite_differences(case, data, eps: float, affine: bool):
    x, shape = case
    if affine:
        gamma, beta = data.draw(vectors(shape)), data.draw(vectors(shape))
        assert mg.gradcheck(lambda a, w, b: F.layer_norm(a, shape, w, b, eps), [leaf(x), leaf(gamma), leaf(beta)])
    else:
        assert mg.gradcheck(lambda a: F.layer_norm(a, shape, None, None, eps), [leaf(x)])


@given(case=inputs(), data=st.data(), eps=st.one_of(st.just(0.0), st.floats(1e-4, 1.0)))
def test_gradient_is_orthogonal_to_shifts_and_obeys_the_scaling_identity_per_example(case, data, eps: float):
    # With g = ∂ℓ/∂x̂ = γ ∂ℓ/∂y and S = Σ_i g_i (x_i − μ) over one example:
    #   Σ_i ∂ℓ/∂x_i = 0  and  Σ_i x_i ∂ℓ/∂x_i = ε S / σ³ (0 when ε = 0), the batchnorm identities with r = 1.
    x, shape = case
    gamma = data.draw(vectors(shape))
    dy = np.random.default_rng(data.draw(st.integers(0, 2**16))).standard_normal(x.shape)
    _, cache = LN.layer_norm_forward(B.from_numpy(x), B.from_numpy(gamma), None, len(shape), eps)
    dx, _, _ = LN.layer_norm_backward(B.from_numpy(dy), cache)
    n = x.ndim - len(shape)
    xf, dxf, gf = (a.reshape(a.shape[:n] + (-1,)) for a in (x, host(dx), dy * gamma))
    mu = xf.mean(axis=-1, keepdims=True)
    sigma = np.sqrt(eps + ((xf - mu) ** 2).mean(axis=-1))
    size = np.abs(gf).max() / sigma.min() * xf.shape[-1]
    np.testing.assert_allclose(dxf.sum(axis=-1), 0.0, atol=1e-11 * size)
    expected = eps * (gf * (xf - mu)).sum(axis=-1) / sigma**3
    np.testing.assert_allclose((xf * dxf).sum(axis=-1), expected, rtol=1e-9, atol=1e-11 * size * np.abs(xf).max())


@given(case=inputs(), data=st.data(), eps=st.floats(0.0, 0.5))
def test_layer_norm_equals_autograd_of_primitive_ops(case, data, eps: float):
    x, shape = case
    gamma, beta = data.draw(vectors(shape)), data.draw(vectors(shape))
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    ours = [leaf(x), leaf(gamma), leaf(beta)]
    theirs = [leaf(x), leaf(gamma), leaf(beta)]
    y = F.layer_norm(ours[0], shape, ours[1], ours[2], eps, allow_zero_eps=True)
    a, w, b = theirs
    centred = a - a.mean(axis=axes, keepdims=True)
    y_ref = centred / ((centred * centred).mean(axis=axes, keepdims=True) + eps).sqrt() * w + b
    np.testing.assert_allclose(host(y), host(y_ref), rtol=1e-10, atol=1e-10)
    v = B.from_numpy(np.random.default_rng(data.draw(st.integers(0, 2**16))).standard_normal(x.shape))
    y.backward(v)
    y_ref.backward(v)
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(host(mine.grad), host(reference.grad), rtol=1e-8, atol=1e-9)


@given(case=inputs(), data=st.data())
def test_each_example_is_normalized_on_its_own(case, data):
    x, shape = case
    n = x.ndim - len(shape)
    layer = mg.nn.LayerNorm(shape, dtype="float64")
    whole = host(layer(mg.Tensor(x, dtype="float64")))
    flat_x = x.reshape((-1,) + shape)
    flat_y = whole.reshape((-1,) + shape)
    i = data.draw(st.integers(0, flat_x.shape[0] - 1))
    alone = host(layer(mg.Tensor(flat_x[i : i + 1], dtype="float64")))
    np.testing.assert_allclose(alone[0], flat_y[i], rtol=1e-12, atol=1e-12)
    moments = flat_y.reshape(flat_y.shape[0], -1)
    np.testing.assert_allclose(moments.mean(axis=1), 0.0, atol=1e-12)
    assert n >= 1


def test_layer_norm_names_pytorch_arguments_and_rejects_bad_input():
    layer = mg.nn.LayerNorm(4, eps=1e-3, elementwise_affine=True)
    assert layer.normalized_shape == (4,) and layer.weight.shape == (4,) and layer.bias.shape == (4,)
    assert mg.nn.LayerNorm([2, 3], elementwise_affine=False).weight is None
    assert {name for name, _ in layer.named_parameters()} == {"weight", "bias"}
    with pytest.raises(ValueError, match="normalized_shape"):
        mg.nn.LayerNorm(0)
    with pytest.raises(ValueError, match="eps"):
        mg.nn.LayerNorm(3, eps=0.0)
    with pytest.raises(ValueError, match=r"x: expected trailing axes \(4,\)"):
        layer(mg.Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="weight"):
        F.layer_norm(mg.Tensor(np.zeros((2, 3))), 3, mg.Tensor(np.ones(4)))
