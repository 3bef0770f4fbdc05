"""Every op that takes an axis checks it as NumPy does, and reductions over nothing say so.

An axis the tensor does not have is an error naming the op, the argument and
the valid range (never wrapped modulo ndim, which silently normalised another
axis); negative axes in range count from the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
from tests.helpers import host, tensor
from tests.strategies import arrays, leaf, shapes


def _reference_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# op name -> (minigrad call, NumPy reference) for one int axis
SINGLE_AXIS_OPS = {
    "sum": (lambda t, a: t.sum(axis=a), lambda x, a: x.sum(axis=a)),
    "mean": (lambda t, a: t.mean(axis=a), lambda x, a: x.mean(axis=a)),
    "max": (lambda t, a: t.max(axis=a), lambda x, a: x.max(axis=a)),
    "min": (lambda t, a: t.min(axis=a), lambda x, a: x.min(axis=a)),
    "logsumexp": (lambda t, a: t.logsumexp(axis=a), lambda x, a: np.log(np.exp(x).sum(axis=a))),
    "argmax": (lambda t, a: t.argmax(axis=a), lambda x, a: x.argmax(axis=a)),
    "softmax": (lambda t, a: mg.softmax(t, axis=a), lambda x, a: np.exp(_reference_log_softmax(x, a))),
    "log_softmax": (lambda t, a: mg.log_softmax(t, axis=a), _reference_log_softmax),
    "take": (lambda t, a: t.take([0], axis=a), lambda x, a: np.take(x, [0], axis=a)),
    "concatenate": (lambda t, a: mg.concatenate([t, t], axis=a), lambda x, a: np.concatenate([x, x], axis=a)),
    "unsqueeze": (lambda t, a: t.unsqueeze(a), None),  # range [-ndim-1, ndim]: checked separately
}


@pytest.mark.parametrize("op", sorted(set(SINGLE_AXIS_OPS) - {"unsqueeze"}))
@given(shape=shapes(min_dims=1, max_dims=3), data=st.data())
def test_axes_in_range_match_numpy_and_others_are_refused(op, shape, data):
    call, reference = SINGLE_AXIS_OPS[op]
    x = data.draw(arrays(shape))
    ndim = len(shape)
    axis = data.draw(st.integers(-ndim - 3, ndim + 2))
    if -ndim <= axis < ndim:
        np.testing.assert_allclose(host(call(tensor(x), axis)), reference(x, axis), rtol=1e-12, atol=1e-12)
    else:
        with pytest.raises(ValueError, match=rf"^{op}: axis: expected an axis in \[{-ndim}, {ndim - 1}\], got {axis}$"):
            call(tensor(x), axis)


def test_softmax_on_an_axis_the_tensor_lacks_is_an_error_not_axis_zero():
    x = tensor(np.arange(6.0).reshape(2, 3))
    for fn in (mg.softmax, mg.log_softmax):
        with pytest.raises(ValueError, match=r"axis: expected an axis in \[-2, 1\], got 2"):
            fn(x, axis=2)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: x.sum(axis=(0, 3)), r"sum: axis: expected an axis in \[-2, 1\], got 3"),
        (lambda x: x.mean(axis=(0, -2)), r"mean: axis: repeated axis in \(0, -2\)"),
        (lambda x: x.max(axis=True), r"max: axis: expected None, an int or a sequence of ints, got bool"),
        (lambda x: x.sum(axis=1.0), r"sum: axis: expected None, an int or a sequence of ints, got float"),
        (lambda x: x.sum(axis=(0, 1.0)), r"sum: axis: expected an int, got float"),
        (lambda x: mg.softmax(x, axis="1"), r"softmax: axis: expected an int, got str"),
        (lambda x: x.transpose(0, 5), r"transpose: axis1: expected an axis in \[-2, 1\], got 5"),
        (lambda x: x.permute(0, 2), r"permute: axes: expected an axis in \[-2, 1\], got 2"),
        (lambda x: x.permute(0, -2), r"permute: axes: expected a permutation of range\(2\)"),
        (lambda x: mg.stack([x, x], axis=3), r"stack: axis: expected an axis in \[-3, 2\], got 3"),
        (lambda x: mg.stack([x, x], axis=-4), r"stack: axis: expected an axis in \[-3, 2\], got -4"),
        (lambda x: x.unsqueeze(-4), r"unsqueeze: dim: expected an axis in \[-3, 2\], got -4"),
        (lambda x: x.flatten(0, 2), r"flatten: dim: expected an axis in \[-2, 1\], got 2"),
    ],
)
def test_bad_axes_name_the_op_the_argument_and_the_range(call, message):
    x = tensor(np.zeros((2, 3)))
    with pytest.raises((ValueError, TypeError), match=message):
        call(x)


def test_numpy_integers_and_negative_axes_work():
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(host(tensor(x).sum(axis=np.int64(1))), x.sum(axis=1))
    np.testing.assert_array_equal(host(tensor(x).max(axis=(-1, 0))), x.max(axis=(0, 2)))
    np.testing.assert_array_equal(host(mg.stack([tensor(x), tensor(x)], axis=-1)), np.stack([x, x], axis=-1))
    np.testing.assert_array_equal(host(tensor(x).transpose(-3, -1)), np.swapaxes(x, 0, 2))


@pytest.mark.parametrize("op", ["max", "min", "argmax", "logsumexp"])
@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 3), None), ((0, 3), 0), ((2, 0), -1), ((2, 0), 1)])
def test_reductions_over_no_elements_are_a_clear_error(op, shape, axis):
    x = tensor(np.zeros(shape))
    where = "over all axes" if axis is None else f"along axis={axis}"
    with pytest.raises(ValueError, match=rf"^{op}: expected at least one element to reduce over, got zero {where}"):
        getattr(x, op)(axis=axis)


def test_max_along_a_non_empty_axis_of_an_empty_tensor_is_empty_as_in_numpy():
    assert tensor(np.zeros((0, 3))).max(axis=1).shape == (0,)
    assert tensor(np.zeros((0, 3))).argmax(axis=1).shape == (0,)


def test_softmax_of_a_scalar_is_a_clear_error():
    for fn, name in ((mg.softmax, "softmax"), (mg.log_softmax, "log_softmax")):
        with pytest.raises(ValueError, match=rf"^{name}: axis: a 0-d tensor has no axes, got axis=-1"):
            fn(tensor(1.5))


@given(shape=shapes(min_dims=1, max_dims=3), data=st.data())
def test_min_and_logsumexp_gradients_match_finite_differences(shape, data):
    x = data.draw(arrays(shape))
    axis = data.draw(st.none() | st.integers(-len(shape), len(shape) - 1))
    assume(np.min(np.diff(np.sort(x, axis=None)), initial=1.0) > 1e-3)  # min: no ties within the difference step
    assert mg.gradcheck(lambda t: t.logsumexp(axis=axis).sum(), [leaf(x)])
    assert mg.gradcheck(lambda t: (t.min(axis=axis, keepdims=True) * 2.0).sum(), [leaf(x)])
