"""Every op's gradient against central finite differences, with hypothesis drawing shapes and values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
from tests.helpers import host
from tests.strategies import arrays, broadcastable_pair, leaf, shapes

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": mg.maximum,
    "pow": lambda a, b: a**b,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data(), pair=broadcastable_pair())
def test_binary_op_gradients_with_broadcasting(name, data, pair):
    shape_a, shape_b = pair
    low = 0.5 if name in ("div", "pow") else -3.0  # keep away from poles and log(0)
    a = data.draw(arrays(shape_a, low, 3.0))
    b = data.draw(arrays(shape_b, low, 3.0))
    if name == "maximum":
        assume(np.all(np.abs(a[..., None] - b[..., None]) > 1e-3) if a.shape == b.shape else True)
        assume(np.min(np.abs(np.subtract(*np.broadcast_arrays(a, b))), initial=1.0) > 1e-3)
    assert mg.gradcheck(BINARY[name], [leaf(a), leaf(b)])


UNARY = {
    "neg": (lambda x: -x, -3.0),
    "exp": (mg.exp, -3.0),
    "log": (mg.log, 0.2),
    "sqrt": (mg.sqrt, 0.2),
    "tanh": (mg.tanh, -3.0),
    "sigmoid": (mg.sigmoid, -3.0),
    "softplus": (mg.ops.softplus, -3.0),
    "log_sigmoid": (mg.ops.log_sigmoid, -3.0),
    "relu": (mg.relu, -3.0),
    "pow_scalar": (lambda x: x**3, -3.0),
    "pow_fraction": (lambda x: x**1.5, 0.2),
    "rpow": (lambda x: 2.0**x, -3.0),
    "rsub": (lambda x: 1.0 - x, -3.0),
    "rdiv": (lambda x: 1.0 / x, 0.2),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data(), shape=shapes(min_dims=0))
def test_unary_op_gradients(name, data, shape):
    fn, low = UNARY[name]
    x = data.draw(arrays(shape, low, 3.0))
    if name == "relu":
        assume(np.min(np.abs(x), initial=1.0) > 1e-3)  # no kink inside the difference step
    assert mg.gradcheck(fn, [leaf(x)])


@given(data=st.data(), shape=shapes(min_dims=0), beta=st.floats(0.25, 4.0), threshold=st.none() | st.floats(-5, 5))
def test_softplus_with_beta_and_threshold_gradients(data, shape, beta, threshold):
    x = data.draw(arrays(shape))
    if threshold is not None:  # the switch to x is a (tiny) jump: no difference step straddles it
        assume(np.min(np.abs(beta * x - threshold), initial=1.0) > 1e-3)
    assert mg.gradcheck(lambda t: mg.ops.softplus(t, beta, threshold), [leaf(x)])
    assert mg.gradcheck(lambda t: mg.nn.functional.softplus(t, beta=beta, threshold=threshold), [leaf(x)])


@given(data=st.data(), shape=shapes(min_dims=1), keepdims=st.booleans())
def test_reduction_gradients(data, shape, keepdims):
    x = data.draw(arrays(shape))
    assume(np.min(np.diff(np.sort(x, axis=None)), initial=1.0) > 1e-3)  # max: no ties within the difference step
    axis = data.draw(st.none() | st.sampled_from(range(-len(shape), len(shape))))
    for reduce in (mg.ops.sum, mg.ops.mean, mg.ops.max, mg.logsumexp):
        assert mg.gradcheck(lambda t, reduce=reduce: reduce(t, axis=axis, keepdims=keepdims), [leaf(x)])


@given(data=st.data(), batch=shapes(min_dims=0, max_dims=2, max_side=3), n=st.integers(1, 4), k=st.integers(1, 4))
def test_batched_matmul_gradients(data, batch, n, k):
    m = data.draw(st.integers(1, 4))
    a = data.draw(arrays(batch + (n, k)))
    b = data.draw(arrays(batch[1:] + (k, m)))  # fewer batch axes: broadcasts
    assert mg.gradcheck(lambda p, q: p @ q, [leaf(a), leaf(b)])


@given(data=st.data(), k=st.integers(1, 4))
def test_matmul_with_vectors(data, k):
    a = data.draw(arrays((3, k)))
    v = data.draw(arrays((k,)))
    assert mg.gradcheck(lambda p, q: p @ q, [leaf(a), leaf(v)])
    assert mg.gradcheck(lambda q, p: q @ p.T, [leaf(v), leaf(a)])


@given(data=st.data(), shape=shapes(min_dims=2, max_dims=4))
def test_shape_op_gradients(data, shape):
    x = data.draw(arrays(shape))
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    assert mg.gradcheck(lambda t: t.reshape(-1) * 2.0, [leaf(x)])
    assert mg.gradcheck(lambda t: t.permute(perm).flatten(0), [leaf(x)])
    assert mg.gradcheck(lambda t: t.transpose(0, -1), [leaf(x)])
    widths = tuple(data.draw(st.tuples(st.integers(0, 2), st.integers(0, 2))) for _ in shape)
    assert mg.gradcheck(lambda t: t.pad(widths, value=1.5), [leaf(x)])


@given(data=st.data(), shape=shapes(min_dims=2, max_dims=3))
def test_indexing_gradients_accumulate_repeated_indices(data, shape):
    x = data.draw(arrays(shape))
    rows = np.asarray(data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6)))
    cols = np.asarray(data.draw(st.lists(st.integers(0, shape[1] - 1), min_size=len(rows), max_size=len(rows))))
    index = (mg.Tensor(rows), mg.Tensor(cols)) + (0,) * (len(shape) - 2)
    assert mg.gradcheck(lambda t: t[index], [leaf(x)])
    assert mg.gradcheck(lambda t: t.take(mg.Tensor(rows), axis=0), [leaf(x)])
    assert mg.gradcheck(lambda t: t[1:, ::2, ...], [leaf(x)])
    # Repeated indices: the gradient counts each use.
    t = leaf(x)
    t.take(mg.Tensor(rows), axis=0).sum().backward()
    counts = np.bincount(rows, minlength=shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    np.testing.assert_allclose(host(t.grad), np.broadcast_to(counts, shape))


@given(data=st.data(), shape=shapes(min_dims=1, max_dims=3), count=st.integers(1, 3))
def test_concatenate_and_stack_gradients(data, shape, count):
    xs = [data.draw(arrays(shape)) for _ in range(count)]
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert mg.gradcheck(lambda *ts: mg.concatenate(ts, axis=axis) * 3.0, [leaf(x) for x in xs])
    assert mg.gradcheck(lambda *ts: mg.stack(ts, axis=axis), [leaf(x) for x in xs])


@given(data=st.data(), n=st.integers(1, 5), c=st.integers(1, 5))
def test_softmax_family_gradients(data, n, c):
    x = data.draw(arrays((n, c), -5.0, 5.0))
    labels = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    assert mg.gradcheck(lambda t: t.log_softmax(axis=1), [leaf(x)])
    assert mg.gradcheck(lambda t: t.softmax(axis=0), [leaf(x)])
    assert mg.gradcheck(lambda t: mg.cross_entropy(t, mg.Tensor(labels)), [leaf(x)])


@given(data=st.data(), n=st.integers(1, 5), c=st.integers(2, 5))
def test_cross_entropy_matches_log_softmax_and_is_stable_for_huge_logits(data, n, c):
    x = data.draw(arrays((n, c), -1e4, 1e4))
    labels = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    logits = leaf(x)
    loss = mg.cross_entropy(logits, mg.Tensor(labels))
    loss.backward()
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(n), labels].mean()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(host(logits.grad)))
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-9, atol=1e-9)
    picked = mg.log_softmax(leaf(x, False), axis=1)[mg.Tensor(np.arange(n)), mg.Tensor(labels)]
    np.testing.assert_allclose(-picked.mean().item(), expected, rtol=1e-9, atol=1e-9)


def test_float32_cross_entropy_at_1e4_has_no_nan():
    logits = mg.Tensor(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]), requires_grad=True)
    loss = mg.cross_entropy(logits, mg.Tensor(np.array([1, 0])))
    loss.backward()
    assert np.isfinite(loss.item())
    assert np.all(np.isfinite(host(logits.grad)))
