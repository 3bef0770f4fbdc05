"""Convolution, pooling and dropout: forward against nested-loop references on the host,
gradients against finite differences (float64), im2col/col2im fast paths against the
portable versions, and the errors users see."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B
from minigrad.ops import im2col as I
from minigrad.ops.conv import avg_pool2d, conv2d, dropout, global_avg_pool2d, max_pool2d
from tests.helpers import host, tensor

# ----------------------------------------------------------------------------
# Host references: plain loops over output positions, written for clarity
# ----------------------------------------------------------------------------


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pad_host(x: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def conv2d_reference(x, w, b, stride, padding) -> np.ndarray:
    (sh, sw), (ph, pw) = stride, padding
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp_ = pad_host(x, ph, pw, 0.0)
    oh, ow = out_size(h, kh, sh, ph), out_size(wd, kw, sw, pw)
    out = np.zeros((n, o, oh, ow))
    for bi in range(n):
        for oc in range(o):
            for i in range(oh):
                for j in range(ow):
                    window = xp_[bi, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
                    out[bi, oc, i, j] = np.sum(window * w[oc]) + (0.0 if b is None else b[oc])
    return out


def pool_reference(x, kernel, stride, padding, reduce, pad_value) -> np.ndarray:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp_ = pad_host(x, ph, pw, pad_value)
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(xp_[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw], axis=(2, 3))
    return out


def im2col_reference(x, kernel, stride, padding, pad_value=0.0) -> np.ndarray:
    """cols[(c, i, j), (oh, ow, n)] = padded[n, c, oh*sh + i, ow*sw + j], by loops."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp_ = pad_host(x, ph, pw, pad_value)
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    cols = np.zeros((c, kh, kw, oh, ow, n))
    for i in range(kh):
        for j in range(kw):
            for a in range(oh):
                for b in range(ow):
                    cols[:, i, j, a, b, :] = xp_[:, :, a * sh + i, b * sw + j].T
    return cols.reshape(c * kh * kw, oh * ow * n)


# ----------------------------------------------------------------------------
# Strategies: small shapes, every combination of stride and padding
# ----------------------------------------------------------------------------


@st.composite
def conv_cases(draw, max_size: int = 6):
    """(x shape, weight shape, stride, padding) with at least one window."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    assume(kh <= h + 2 * padding[0] and kw <= w + 2 * padding[1])
    return (n, c, h, w), (o, c, kh, kw), stride, padding


@st.composite
def pool_cases(draw, max_size: int = 6):
    """(x shape, kernel, stride, padding) with padding at most half the kernel."""
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    assume(kernel[0] <= h + 2 * padding[0] and kernel[1] <= w + 2 * padding[1])
    return (n, c, h, w), kernel, stride, padding


def distinct_values(shape, seed: int) -> np.ndarray:
    """Values at least 0.05 apart (no ties, so max pooling is differentiable at them)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.05 - size * 0.025 + rng.uniform(0, 0.01, size)).reshape(shape)


# ----------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------


@given(case=pool_cases(max_size=5), pad_value=st.sampled_from([0.0, -np.inf]), seed=st.integers(0, 100))
def test_im2col_matches_loop_reference(case, pad_value, seed):
    shape, kernel, stride, padding = case
    x = np.random.default_rng(seed).standard_normal(shape)
    cols = I.im2col(B.from_numpy(x), kernel, stride, padding, pad_value)
    np.testing.assert_array_equal(host(cols), im2col_reference(x, kernel, stride, padding, pad_value))


@given(case=conv_cases(max_size=5), seed=st.integers(0, 100))
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    """<im2col(x), y> == <x, col2im(y)> for every x and y: col2im is im2col's transpose."""
    shape, (_, _, kh, kw), stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = I.im2col(B.from_numpy(x), (kh, kw), stride, padding)
    y = rng.standard_normal(tuple(cols.shape))
    back = I.col2im(B.from_numpy(y), shape, (kh, kw), stride, padding)
    assert tuple(back.shape) == shape
    np.testing.assert_allclose(np.sum(host(cols) * y), np.sum(x * host(back)), rtol=1e-10)


@pytest.mark.backends("numpy", "cupy")
@given(case=conv_cases(max_size=6), pad_value=st.sampled_from([0.0, -np.inf]), seed=st.integers(0, 100))
def test_fast_paths_equal_portable_versions(case, pad_value, seed):
    """The strided im2col and in-place col2im of NumPy/CuPy give the portable results exactly."""
    shape, (_, _, kh, kw), stride, padding = case
    rng = np.random.default_rng(seed)
    x = B.from_numpy(rng.standard_normal(shape))
    fast = I.im2col(x, (kh, kw), stride, padding, pad_value)
    portable = I.im2col_portable(x, (kh, kw), stride, padding, pad_value)
    np.testing.assert_array_equal(host(fast), host(portable))
    y = B.from_numpy(rng.standard_normal(tuple(fast.shape)))
    np.testing.assert_allclose(
        host(I.col2im(y, shape, (kh, kw), stride, padding)),
        host(I.col2im_portable(y, shape, (kh, kw), stride, padding)),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.backends("numpy", "cupy")
@pytest.mark.parametrize("axes", [(0, 1, 2, 3), (1, 2, 3, 0), (3, 2, 1, 0), (2, 0, 3, 1)])
@pytest.mark.parametrize("padding", [(0, 0), (1, 0)])
def test_im2col_reads_any_memory_layout(axes, padding):
    """Inputs whose memory is ordered differently (views of transposed arrays) give the same columns."""
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 4))
    inverse = tuple(np.argsort(axes))
    view = np.ascontiguousarray(x.transpose(axes)).transpose(inverse)  # same values, other memory order
    assert np.array_equal(view, x)
    expected = im2col_reference(x, (2, 3), (1, 2), padding)
    np.testing.assert_array_equal(host(I.im2col(B.from_numpy(view), (2, 3), (1, 2), padding)), expected)


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 2, 5, 7), (3, 1, 3, 2)])
@pytest.mark.parametrize("kernel", [(2, 2), (1, 2), (3, 2)])
def test_col2im_of_tiling_windows_is_the_loop_sum(shape, kernel):
    """Windows that tile the input (stride = kernel, no padding, odd sizes leaving a margin) reorder, not add."""
    assert I._windows_tile(kernel, kernel, (0, 0))
    cols_shape = tuple(I.im2col(B.from_numpy(np.zeros(shape)), kernel, kernel).shape)
    y = B.from_numpy(np.random.default_rng(0).standard_normal(cols_shape))
    np.testing.assert_array_equal(
        host(I.col2im(y, shape, kernel, kernel)), host(I.col2im_portable(y, shape, kernel, kernel))
    )


def test_im2col_rejects_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match=r"kernel_size \(4, 1\) is larger than the padded input \(3, 3\)"):
        I.im2col(B.from_numpy(np.zeros((1, 1, 3, 3))), (4, 1))


def test_col2im_checks_the_column_shape():
    with pytest.raises(ValueError, match="col2im: expected columns of shape"):
        I.col2im(B.from_numpy(np.zeros((4, 5))), (1, 1, 3, 3), (2, 2))


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------


@given(case=conv_cases(), use_bias=st.booleans(), seed=st.integers(0, 100))
def test_conv2d_forward_matches_nested_loops(case, use_bias, seed):
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    out = conv2d(tensor(x), tensor(w), tensor(b) if use_bias else None, stride=stride, padding=padding)
    expected = conv2d_reference(x, w, b if use_bias else None, stride, padding)
    assert out.shape == expected.shape
    np.testing.assert_allclose(host(out), expected, rtol=1e-10, atol=1e-10)


@given(case=conv_cases(max_size=5), use_bias=st.booleans(), seed=st.integers(0, 100))
def test_conv2d_gradients_match_finite_differences(case, use_bias, seed):
    x_shape, w_shape, stride, padding = case
    rng = np.random.default_rng(seed)
    inputs = [tensor(rng.standard_normal(x_shape), True), tensor(rng.standard_normal(w_shape), True)]
    if use_bias:
        inputs.append(tensor(rng.standard_normal(w_shape[0]), True))
    assert mg.gradcheck(lambda *a: conv2d(*a, stride=stride, padding=padding), inputs)


@given(case=conv_cases(max_size=6), seed=st.integers(0, 100))
def test_the_two_input_gradients_of_a_stride_1_convolution_agree(case, seed):
    """dx as a convolution of the output gradient (the fast path) equals col2im(W.T @ g), the textbook form."""
    from minigrad.ops import conv as C

    x_shape, w_shape, _, padding = case
    kernel = w_shape[2:]
    assume(C.transposed_convolution_applies(kernel, (1, 1), padding))
    rng = np.random.default_rng(seed)
    n, _, h, w = x_shape
    oh, ow = out_size(h, kernel[0], 1, padding[0]), out_size(w, kernel[1], 1, padding[1])
    grad = B.from_numpy(rng.standard_normal((n, w_shape[0], oh, ow)))
    weight_matrix = B.from_numpy(rng.standard_normal((w_shape[0], int(np.prod(w_shape[1:])))))
    fast = C.input_grad_convolution(grad, weight_matrix, x_shape, kernel, padding)
    g = C._from_nchw(grad)
    textbook = C.input_grad_col2im(g, weight_matrix, x_shape, kernel, (1, 1), padding)
    assert tuple(fast.shape) == x_shape
    np.testing.assert_allclose(host(fast), host(textbook), rtol=1e-10, atol=1e-10)


def test_the_convolution_form_of_dx_is_used_only_where_it_applies():
    from minigrad.ops import conv as C

    assert C.transposed_convolution_applies((3, 3), (1, 1), (1, 1))
    assert C.transposed_convolution_applies((3, 1), (1, 1), (2, 0))
    assert not C.transposed_convolution_applies((3, 3), (2, 1), (1, 1))  # stride 2: col2im
    assert not C.transposed_convolution_applies((1, 3), (1, 1), (1, 1))  # padding >= kernel: col2im


def test_conv2d_skips_gradients_nobody_needs():
    """Only the weight requires grad: the input gets no gradient (and none is computed)."""
    x = tensor(np.ones((1, 1, 3, 3)))
    w = tensor(np.ones((1, 1, 2, 2)), True)
    conv2d(x, w).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(host(w.grad), np.full((1, 1, 2, 2), 4.0))


def test_conv2d_keeps_float32_and_accepts_tuples():
    rng = np.random.default_rng(0)
    x = mg.Tensor(rng.standard_normal((2, 3, 7, 5)), requires_grad=True)
    w = mg.Tensor(rng.standard_normal((4, 3, 3, 1)), requires_grad=True)
    out = conv2d(x, w, stride=(2, 1), padding=(1, 0))
    assert out.shape == (2, 4, 4, 5)
    assert B.dtype_name(out.dtype) == "float32"
    out.sum().backward()
    assert B.dtype_name(x.grad.dtype) == "float32" and x.grad.shape == x.shape


def test_conv2d_output_feeds_further_ops():
    """The output is a view of channel-major memory; reshapes, reductions and a second conv see NCHW values."""
    rng = np.random.default_rng(1)
    x, w1, w2 = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 3, 2, 2))
    out = conv2d(conv2d(tensor(x), tensor(w1), padding=1), tensor(w2), stride=2)
    expected = conv2d_reference(conv2d_reference(x, w1, None, (1, 1), (1, 1)), w2, None, (2, 2), (0, 0))
    np.testing.assert_allclose(host(out.reshape(2, -1)), expected.reshape(2, -1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "error", "message"),
    [
        ((1, 3, 4), (2, 3, 1, 1), {}, ValueError, r"conv2d: x: expected a 4-d input \(N, C, H, W\), got shape \(1, 3, 4\)"),
        ((1, 3, 4, 4), (2, 3, 1), {}, ValueError, r"conv2d: weight: expected a 4-d Tensor"),
        ((1, 3, 4, 4), (2, 2, 1, 1), {}, ValueError, r"x has 3 channels .* weight expects in_channels=2"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"stride": 0}, ValueError, r"conv2d: stride: expected positive values, got 0"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"padding": -1}, ValueError, r"conv2d: padding: expected non-negative"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"stride": (1, 2, 3)}, TypeError, r"conv2d: stride: expected an int or a pair"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"stride": 1.5}, TypeError, r"conv2d: stride: expected an int or a pair"),
        ((1, 1, 2, 4), (1, 1, 3, 3), {}, ValueError, r"kernel_size \(3, 3\) is larger than the padded input \(2, 4\)"),
    ],
)
def test_conv2d_errors_name_the_argument(x_shape, w_shape, kwargs, error, message):
    with pytest.raises(error, match=message):
        conv2d(tensor(np.zeros(x_shape)), tensor(np.zeros(w_shape)), **kwargs)


def test_conv2d_checks_the_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias: expected a Tensor of shape \(2,\), got \(3,\)"):
        conv2d(tensor(np.zeros((1, 1, 3, 3))), tensor(np.zeros((2, 1, 1, 1))), tensor(np.zeros(3)))


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------


@given(case=pool_cases(), seed=st.integers(0, 100))
def test_max_pool2d_forward_matches_nested_loops(case, seed):
    shape, kernel, stride, padding = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = max_pool2d(tensor(x), kernel, stride, padding)
    np.testing.assert_array_equal(host(out), pool_reference(x, kernel, stride, padding, np.max, -np.inf))


@given(case=pool_cases(), seed=st.integers(0, 100))
def test_avg_pool2d_forward_matches_nested_loops(case, seed):
    shape, kernel, stride, padding = case
    x = np.random.default_rng(seed).standard_normal(shape)
    out = avg_pool2d(tensor(x), kernel, stride, padding)
    np.testing.assert_allclose(host(out), pool_reference(x, kernel, stride, padding, np.mean, 0.0), rtol=1e-12)


@given(case=pool_cases(max_size=5), seed=st.integers(0, 100))
def test_max_pool2d_gradient_matches_finite_differences(case, seed):
    shape, kernel, stride, padding = case
    x = tensor(distinct_values(shape, seed), True)
    assert mg.gradcheck(lambda a: max_pool2d(a, kernel, stride, padding), [x])


@given(case=pool_cases(max_size=5), seed=st.integers(0, 100))
def test_avg_pool2d_gradient_matches_finite_differences(case, seed):
    shape, kernel, stride, padding = case
    x = tensor(np.random.default_rng(seed).standard_normal(shape), True)
    assert mg.gradcheck(lambda a: avg_pool2d(a, kernel, stride, padding), [x])


def test_max_pool2d_sends_a_tied_gradient_to_the_first_maximum():
    """All four elements of the window are equal: the first (top-left) one gets the whole gradient."""
    x = tensor(np.ones((1, 1, 2, 2)), True)
    max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_max_pool2d_routes_a_nan_window_like_argmax():
    """A NaN makes the window's maximum NaN, and the gradient goes to the first NaN (what argmax picks)."""
    x = tensor(np.array([[[[1.0, np.nan], [3.0, np.nan]]]]), True)
    out = max_pool2d(x, 2)
    assert np.isnan(host(out)).all()
    out.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[[[0.0, 1.0], [0.0, 0.0]]]])


def test_max_pool2d_padding_never_wins():
    """Padding is -inf, so an all-negative input gives negative maxima and no gradient is lost."""
    x = tensor(-1.0 - np.arange(9.0).reshape(1, 1, 3, 3), True)
    out = max_pool2d(x, 3, stride=1, padding=1)
    assert np.all(host(out) < 0)
    out.sum().backward()
    assert host(x.grad).sum() == 9.0  # nine windows, each routes 1 to a real element


def test_overlapping_max_windows_accumulate_at_a_shared_winner():
    x = tensor(np.array([[[[0.0, 5.0, 1.0]]]]), True)
    max_pool2d(x, (1, 2), stride=1).sum().backward()  # both windows pick the 5
    np.testing.assert_array_equal(host(x.grad), [[[[0.0, 2.0, 0.0]]]])


def test_pool_stride_defaults_to_kernel_size():
    x = tensor(np.arange(36.0).reshape(1, 1, 6, 6))
    assert max_pool2d(x, 3).shape == (1, 1, 2, 2)
    assert avg_pool2d(x, (2, 3)).shape == (1, 1, 3, 2)
    np.testing.assert_array_equal(host(max_pool2d(x, 3)), [[[[14.0, 17.0], [32.0, 35.0]]]])


def test_global_avg_pool2d_averages_each_channel():
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    out = global_avg_pool2d(tensor(x, True))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(host(out), x.mean(axis=(2, 3)), rtol=1e-12)
    assert mg.gradcheck(global_avg_pool2d, [tensor(x, True)])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x: max_pool2d(x, 0), ValueError, r"max_pool2d: kernel_size: expected positive values, got 0"),
        (lambda x: max_pool2d(x, 2, stride=-1), ValueError, r"max_pool2d: stride: expected positive values"),
        (lambda x: max_pool2d(x, 2, padding=2), ValueError, r"max_pool2d: padding: expected at most half"),
        (lambda x: avg_pool2d(x, 5), ValueError, r"avg_pool2d: kernel_size \(5, 5\) is larger than the padded input"),
        (lambda x: avg_pool2d(x.reshape(1, 4, 4), 2), ValueError, r"avg_pool2d: x: expected a 4-d input"),
        (lambda x: global_avg_pool2d(x.reshape(1, 4, 4)), ValueError, r"global_avg_pool2d: x: expected a 4-d input"),
    ],
)
def test_pool_errors_name_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call(tensor(np.zeros((1, 1, 4, 4))))


def test_max_pool2d_rejects_integer_input():
    with pytest.raises(TypeError, match="max_pool2d: x: expected a floating dtype, got int64"):
        max_pool2d(mg.Tensor(np.zeros((1, 1, 2, 2), dtype=np.int64)), 2)


# ----------------------------------------------------------------------------
# Dropout
# ----------------------------------------------------------------------------


def test_dropout_is_the_identity_in_eval_and_for_p_zero():
    x = tensor(np.ones((4, 5)), True)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x


def test_dropout_zeroes_a_fraction_p_and_scales_the_rest():
    x = mg.Tensor(np.ones((200, 500)))
    out = host(dropout(x, 0.3, training=True, generator=mg.Generator(0)))
    kept = out != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.02  # the expectation is preserved


def test_dropout_is_reproducible_by_seed_and_its_gradient_uses_the_mask():
    x = tensor(np.random.default_rng(0).standard_normal((6, 7)), True)
    a = dropout(x, 0.5, training=True, generator=mg.Generator(3))
    b = dropout(x, 0.5, training=True, generator=mg.Generator(3))
    np.testing.assert_array_equal(host(a), host(b))
    a.sum().backward()
    mask = (host(a) != 0) * 2.0
    np.testing.assert_array_equal(host(x.grad), mask)
    assert mg.gradcheck(lambda t: dropout(t, 0.5, training=True, generator=mg.Generator(3)), [x])


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, True, "0.5"])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match=r"dropout: p: expected a probability in \[0, 1\)"):
        dropout(tensor(np.ones(3)), p, training=True)
