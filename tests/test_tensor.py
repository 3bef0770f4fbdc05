"""The autograd engine: seeds, accumulation, broadcasting, graph freeing, dtypes, devices, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B
from tests.helpers import host
from tests.strategies import arrays, broadcastable_pair, leaf, shapes


@given(data=st.data(), shape=shapes(min_dims=0))
def test_gradient_of_sum_is_one(data, shape):
    x = leaf(data.draw(arrays(shape)))
    x.sum().backward()
    np.testing.assert_array_equal(host(x.grad), np.ones(shape))


@given(data=st.data(), shape=shapes(), scale=st.floats(-3, 3))
def test_backward_is_linear_in_the_seed(data, shape, scale):
    values = data.draw(arrays(shape))
    seed = data.draw(arrays(shape))
    grads = []
    for s in (seed, scale * seed):
        x = leaf(values)
        (x.tanh() * x).backward(mg.Tensor(s, dtype="float64"))
        grads.append(host(x.grad))
    np.testing.assert_allclose(grads[1], scale * grads[0], rtol=1e-12, atol=1e-12)


@given(data=st.data(), shape=shapes())
def test_tensor_used_twice_accumulates_both_uses(data, shape):
    values = data.draw(arrays(shape))
    x = leaf(values)
    (x * 2.0 + x.exp()).sum().backward()
    np.testing.assert_allclose(host(x.grad), 2.0 + np.exp(values), rtol=1e-12)
    # and a second backward adds to .grad instead of replacing it
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), 5.0 + np.exp(values), rtol=1e-12)


@given(data=st.data(), pair=broadcastable_pair())
def test_broadcast_gradients_are_summed_to_the_operand_shape(data, pair):
    shape_a, shape_b = pair
    a, b = leaf(data.draw(arrays(shape_a))), leaf(data.draw(arrays(shape_b)))
    (a * b).sum().backward()
    out_shape = np.broadcast_shapes(shape_a, shape_b)
    expected_a = np.broadcast_to(host(b.data), out_shape)
    extra = len(out_shape) - len(shape_a)
    expected_a = expected_a.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape_a) if n == 1 and expected_a.shape[i] != 1)
    expected_a = expected_a.sum(axis=stretched, keepdims=True)
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    np.testing.assert_allclose(host(a.grad), expected_a, rtol=1e-12, atol=1e-12)


@pytest.mark.backends("numpy")  # an engine property; the strict library only makes it slower
def test_long_chain_does_not_hit_the_recursion_limit():
    x = mg.Tensor([1.5], requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 0.0
    y.sum().backward()
    assert host(x.grad).tolist() == [1.0]


def test_diamond_graph_orders_nodes_topologically():
    x = leaf(np.array([0.3, -0.7]))
    a = x * 2.0
    b = a.exp()
    c = a * b  # a reaches c directly and through b
    c.sum().backward()
    v = host(x.data)
    np.testing.assert_allclose(host(x.grad), 2.0 * np.exp(2 * v) * (1 + 2 * v), rtol=1e-12)


def test_non_scalar_backward_needs_a_seed():
    x = mg.Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"seed gradient is needed.*\(2, 3\)"):
        (x * 2.0).backward()


def test_seed_of_the_wrong_shape_is_refused():
    x = mg.Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"shape \(2, 3\), got \(3,\)"):
        (x * 2.0).backward(np.ones(3))


def test_backward_twice_through_a_freed_graph_is_an_error_unless_retained():
    x = mg.Tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(host(x.grad), [4.0, 8.0])
    with pytest.raises(RuntimeError, match="already freed.*retain_graph=True"):
        y.backward()


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="only floating tensors.*int64"):
        mg.Tensor(np.arange(3), requires_grad=True)


def test_matmul_shape_mismatch_names_both_shapes():
    a, b = mg.Tensor(np.ones((4, 3))), mg.Tensor(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(2, 2\).*\(3\).*\(2\)"):
        a @ b


def test_broadcast_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\) cannot be broadcast"):
        mg.Tensor(np.ones((2, 3))) + mg.Tensor(np.ones(4))


def test_no_grad_records_nothing():
    x = mg.Tensor([1.0], requires_grad=True)
    with mg.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.creator is None and mg.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = mg.Tensor([2.0], requires_grad=True)
    y = x * x.detach()
    y.sum().backward()
    assert host(x.grad).tolist() == [2.0]


def test_default_dtype_is_float32_and_float64_on_request():
    assert B.dtype_name(mg.Tensor([1.0]).dtype) == "float32"
    assert B.dtype_name(mg.Tensor(np.ones(2)).dtype) == "float32"
    assert B.dtype_name(mg.Tensor([1.0], dtype="float64").dtype) == "float64"
    assert B.dtype_name(mg.Tensor(np.arange(3)).dtype) == "int64"


def test_mixed_precision_promotes_like_numpy_and_grads_keep_their_dtype():
    a = mg.Tensor([1.0, 2.0], requires_grad=True)  # float32
    b = mg.Tensor([3.0, 4.0], requires_grad=True, dtype="float64")
    out = a * b
    assert B.dtype_name(out.dtype) == "float64"
    out.sum().backward()
    assert B.dtype_name(a.grad.dtype) == "float32" and B.dtype_name(b.grad.dtype) == "float64"
    assert B.dtype_name((a * 2.5).dtype) == "float32"  # Python scalars do not promote


def test_dtype_by_library_object_and_bad_name():
    assert B.dtype_name(mg.Tensor([1.0], dtype=np.float64).dtype) == "float64"
    with pytest.raises(ValueError, match="dtype: expected one of .* got 'float128'"):
        mg.Tensor([1.0], dtype="float128")


def test_gradcheck_reports_the_worst_element():
    class WrongSquare(mg.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return grad * self.x  # should be 2 * x

    x = mg.Tensor(np.array([1.0, 3.0]), requires_grad=True)
    with pytest.raises(
        mg.GradcheckError, match=r"input 0 .* element \(1,\): analytic gradient 3 but finite differences give 6"
    ):
        mg.gradcheck(lambda t: WrongSquare.apply(t).sum(), [x])
    assert mg.gradcheck(lambda t: WrongSquare.apply(t).sum(), [x], raise_exception=False) is False


def test_gradcheck_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="requires_grad=True"):
        mg.gradcheck(lambda t: t * 2.0, [mg.Tensor([1.0])])


@pytest.mark.backends("numpy")
def test_ops_across_devices_name_both_devices():
    a = mg.Tensor(np.ones(2))
    b = a.to("array_api_strict")
    assert b.device == "array_api_strict" and a.device == "cpu"
    with pytest.raises(mg.DeviceMismatchError, match="cpu .*array_api_strict"):
        a + b
    np.testing.assert_array_equal(b.to("cpu").numpy(), a.numpy())


@pytest.mark.backends("numpy")
def test_asking_for_cupy_without_cuda_says_what_is_missing():
    if mg.cuda_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(mg.BackendUnavailableError, match="(CuPy|CUDA).*(pip install|GPU|driver|device)"):
        mg.use_backend("cupy")
    assert mg.active_backend() == "numpy"


@pytest.mark.backends("numpy")
def test_unknown_backend_name():
    with pytest.raises(ValueError, match="backend: expected one of .* got 'jax'"):
        mg.use_backend("jax")


@pytest.mark.backends("numpy")
def test_environment_variable_chooses_the_backend(monkeypatch):
    import subprocess
    import sys

    env = {"MINIGRAD_BACKEND": "array_api_strict", "PATH": ""}
    code = "import minigrad as mg; print(mg.active_backend(), mg.Tensor([1.0]).device)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["array_api_strict", "array_api_strict"]


def test_tensors_made_from_host_data_go_to_the_active_backend(backend):
    expected = {"numpy": "cpu", "array_api_strict": "array_api_strict"}.get(backend, "cuda:0")
    assert mg.Tensor(np.ones(2)).device == expected
    assert mg.Tensor([1, 2]).device == expected


def test_item_repr_and_len():
    t = mg.Tensor([[1.0, 2.0]])
    assert len(t) == 1 and t.sum().item() == 3.0
    assert "Tensor(" in repr(t) and "float32" in repr(t)
    with pytest.raises(ValueError, match="one element, got shape"):
        t.item()


def test_comparisons_give_boolean_tensors_and_broadcast():
    a = mg.Tensor(np.array([[1.0, 2.0, 3.0]]))
    b = mg.Tensor(np.array([[2.0], [1.0]]))
    expected = {
        "==": np.array([[1.0, 2.0, 3.0]]) == np.array([[2.0], [1.0]]),
        "<": np.array([[1.0, 2.0, 3.0]]) < np.array([[2.0], [1.0]]),
    }
    np.testing.assert_array_equal(host(a == b), expected["=="])
    np.testing.assert_array_equal(host(a < b), expected["<"])
    np.testing.assert_array_equal(host(a >= 2.0), [[False, True, True]])
    np.testing.assert_array_equal(host(a != 2.0), [[True, False, True]])
    np.testing.assert_array_equal(host(a <= 1.0), [[True, False, False]])
    np.testing.assert_array_equal(host(a > 2.0), [[False, False, True]])
    assert B.dtype_name((a == b).dtype) == "bool" and not (a == b).requires_grad
