"""What a PyTorch user types first works with the same names and meaning, or says what to write instead."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B
from tests.helpers import host, tensor
from tests.strategies import arrays, leaf, shapes

# ----------------------------------------------------------------------------
# Python conversions and small Tensor methods
# ----------------------------------------------------------------------------


def test_float_and_int_of_a_one_element_tensor():
    loss = (tensor([1.5, 2.25]) * 2).sum()
    assert float(loss) == 7.5 and isinstance(float(loss), float)
    assert int(tensor([[3.75]])) == 3
    assert int(mg.Tensor(np.array([-2], dtype=np.int64))) == -2
    assert f"{float(loss):.1f}" == "7.5"


@pytest.mark.parametrize("convert", [float, int])
def test_float_and_int_of_a_larger_tensor_name_the_shape(convert):
    with pytest.raises(TypeError, match=r"one element.*got shape \(2, 3\)"):
        convert(tensor(np.ones((2, 3))))


@given(shape=shapes(min_dims=0), data=st.data())
def test_tolist_numel_dim_match_numpy(shape, data):
    x = data.draw(arrays(shape))
    t = leaf(x, requires_grad=False)
    assert t.tolist() == x.tolist()
    assert t.numel() == x.size and t.dim() == x.ndim


@given(shape=shapes(min_dims=0), data=st.data())
def test_size_is_numpys_count_and_pytorchs_method(shape, data):
    t = leaf(data.draw(arrays(shape)), requires_grad=False)
    count = int(np.prod(shape))
    assert t.size == count and isinstance(t.size, int) and f"{t.size}" == str(count)  # NumPy's meaning
    assert t.size() == shape and isinstance(t.size(), tuple)  # PyTorch's meaning
    if shape:
        dim = data.draw(st.integers(-len(shape), len(shape) - 1))
        assert t.size(dim) == shape[dim] and t.size(dim=dim) == shape[dim]


def test_size_of_a_dim_the_tensor_lacks_names_dim():
    x = tensor(np.zeros((2, 3)))
    for error in (IndexError, ValueError):  # PyTorch raises IndexError; minigrad's axis checks ValueError
        with pytest.raises(error, match=r"size: dim: expected an axis in \[-2, 1\], got 2"):
            x.size(2)
    with pytest.raises(IndexError, match="size: dim: a 0-d tensor has no axes"):
        tensor(1.0).size(0)
    with pytest.raises(TypeError, match="size: dim: expected an int, got float"):
        x.size(1.0)


# ----------------------------------------------------------------------------
# abs and leaky_relu: values and gradients
# ----------------------------------------------------------------------------


@given(shape=shapes(min_dims=0), data=st.data())
def test_abs_values_and_gradient(shape, data):
    x = data.draw(arrays(shape))
    assume(np.min(np.abs(x), initial=1.0) > 1e-3)  # no kink inside the difference step
    np.testing.assert_array_equal(host(abs(leaf(x))), np.abs(x))
    np.testing.assert_array_equal(host(mg.abs(leaf(x))), np.abs(x))
    assert mg.gradcheck(abs, [leaf(x)])
    assert mg.gradcheck(lambda t: t.abs() * t, [leaf(x)])


def test_abs_gradient_at_zero_is_zero():
    t = tensor([-2.0, 0.0, 3.0], requires_grad=True)
    abs(t).sum().backward()
    np.testing.assert_array_equal(host(t.grad), [-1.0, 0.0, 1.0])


@given(shape=shapes(min_dims=0), slope=st.floats(-2, 2), data=st.data())
def test_leaky_relu_values_and_gradient(shape, slope, data):
    x = data.draw(arrays(shape))
    assume(np.min(np.abs(x), initial=1.0) > 1e-3)
    np.testing.assert_allclose(host(mg.nn.functional.leaky_relu(leaf(x), slope)), np.where(x > 0, x, slope * x))
    assert mg.gradcheck(lambda t: t.leaky_relu(slope), [leaf(x)])


def test_leaky_relu_default_slope_is_pytorchs():
    out = mg.nn.LeakyReLU()(tensor([-100.0, 5.0]))
    np.testing.assert_allclose(host(out), [-1.0, 5.0])


@pytest.mark.parametrize("slope", [float("nan"), "0.1", None, True])
def test_leaky_relu_refuses_a_bad_slope(slope):
    with pytest.raises(ValueError, match="negative_slope: expected a finite number"):
        mg.nn.functional.leaky_relu(tensor([1.0]), slope)
    with pytest.raises(ValueError, match="LeakyReLU: negative_slope"):
        mg.nn.LeakyReLU(slope)


# ----------------------------------------------------------------------------
# view, unsqueeze, squeeze, flatten, t
# ----------------------------------------------------------------------------


@given(shape=shapes(min_dims=1, max_dims=4), data=st.data())
def test_shape_habits_match_numpy_and_pass_gradcheck(shape, data):
    x = data.draw(arrays(shape))
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim - 1, ndim))
    np.testing.assert_array_equal(host(leaf(x).unsqueeze(dim)), np.expand_dims(x, dim))
    assert mg.gradcheck(lambda t: t.unsqueeze(dim) * 2.0, [leaf(x)])

    np.testing.assert_array_equal(host(leaf(x).squeeze()), np.squeeze(x))
    assert mg.gradcheck(lambda t: t.squeeze(), [leaf(x)])
    one = data.draw(st.integers(-ndim, ndim - 1))
    expected = np.squeeze(x, one) if shape[one] == 1 else x  # a size > 1 axis is left alone, as in PyTorch
    np.testing.assert_array_equal(host(leaf(x).squeeze(one)), expected)
    np.testing.assert_array_equal(host(leaf(x).squeeze(tuple(range(ndim)))), np.squeeze(x))

    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    merged = shape[:start] + (int(np.prod(shape[start : end + 1])),) + shape[end + 1 :]
    np.testing.assert_array_equal(host(leaf(x).flatten(start, end)), x.reshape(merged))
    np.testing.assert_array_equal(host(mg.flatten(leaf(x), start_dim=start - ndim)), x.reshape(shape[:start] + (-1,)))
    assert leaf(x).flatten().shape == (x.size,)
    assert mg.gradcheck(lambda t: t.flatten(start, end), [leaf(x)])

    np.testing.assert_array_equal(host(leaf(x).view(-1)), x.reshape(-1))
    np.testing.assert_array_equal(host(leaf(x).view(merged)), x.reshape(merged))
    assert mg.gradcheck(lambda t: t.view(*reversed(shape)), [leaf(x)])


@given(shape=shapes(min_dims=0, max_dims=2), data=st.data())
def test_t_transposes_matrices_and_returns_vectors_unchanged(shape, data):
    x = data.draw(arrays(shape))
    np.testing.assert_array_equal(host(leaf(x).t()), x.T)
    assert mg.gradcheck(lambda t: t.t() * 3.0, [leaf(x)])


def test_flatten_of_a_scalar_is_one_element():
    assert tensor(2.0).flatten().shape == (1,)


def test_shape_habit_errors_name_the_argument():
    x = tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"unsqueeze: dim: expected an axis in \[-3, 2\], got 3"):
        x.unsqueeze(3)
    with pytest.raises(ValueError, match=r"squeeze: dim: expected an axis in \[-2, 1\], got 2"):
        x.squeeze(2)
    with pytest.raises(TypeError, match="unsqueeze: dim: expected an int, got float"):
        x.unsqueeze(1.0)
    with pytest.raises(ValueError, match="flatten: start_dim must not come after end_dim"):
        x.flatten(1, 0)
    with pytest.raises(ValueError, match=r"t: expected a tensor with at most 2 axes, got shape \(1, 2, 3\)"):
        x.unsqueeze(0).t()
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\)"):
        x.view(4, 2)
    with pytest.raises(TypeError, match=r"view: shape: .*astype"):
        x.view(np.float32)


# ----------------------------------------------------------------------------
# Losses: functions and modules
# ----------------------------------------------------------------------------

NUMPY_REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}


@pytest.mark.parametrize("reduction", sorted(NUMPY_REDUCE))
@given(shape=shapes(min_dims=1), data=st.data())
def test_mse_and_l1_losses(reduction, shape, data):
    a, b = data.draw(arrays(shape)), data.draw(arrays(shape))
    assume(np.min(np.abs(a - b), initial=1.0) > 1e-3)  # l1: no kink inside the difference step
    got = mg.nn.functional.mse_loss(leaf(a), leaf(b), reduction=reduction)
    np.testing.assert_allclose(host(got), NUMPY_REDUCE[reduction]((a - b) ** 2), rtol=1e-12)
    module = mg.nn.MSELoss(reduction=reduction)(leaf(a), leaf(b))
    np.testing.assert_allclose(host(module), host(got), rtol=1e-12)
    np.testing.assert_allclose(host(mg.nn.L1Loss(reduction)(leaf(a), b)), NUMPY_REDUCE[reduction](np.abs(a - b)))
    assert mg.gradcheck(lambda p, q: mg.ops.mse_loss(p, q, reduction), [leaf(a), leaf(b)])
    assert mg.gradcheck(lambda p, q: mg.ops.l1_loss(p, q, reduction), [leaf(a), leaf(b)])


def test_mse_loss_host_target_takes_the_input_dtype():
    prediction = mg.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    loss = mg.ops.mse_loss(prediction, np.zeros(3))
    assert B.dtype_name(loss.dtype) == "float32"
    assert float(loss) == 1.0


@pytest.mark.parametrize("reduction", sorted(NUMPY_REDUCE))
@given(data=st.data(), n=st.integers(1, 5), c=st.integers(1, 5))
def test_cross_entropy_and_nll_reductions(reduction, data, n, c):
    x = data.draw(arrays((n, c), -5.0, 5.0))
    labels = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    per_example = -log_probs[np.arange(n), labels]
    expected = NUMPY_REDUCE[reduction](per_example)
    ce = mg.nn.CrossEntropyLoss(reduction=reduction)(leaf(x), mg.Tensor(labels))
    np.testing.assert_allclose(host(ce), expected, rtol=1e-9, atol=1e-12)
    nll = mg.nn.NLLLoss(reduction=reduction)(mg.nn.LogSoftmax(dim=1)(leaf(x)), labels)
    np.testing.assert_allclose(host(nll), expected, rtol=1e-9, atol=1e-12)
    assert mg.gradcheck(lambda t: mg.cross_entropy(t, mg.Tensor(labels), reduction=reduction), [leaf(x)])
    assert mg.gradcheck(lambda t: mg.ops.nll_loss(t, mg.Tensor(labels), reduction=reduction), [leaf(x)])


def test_loss_errors_name_the_argument():
    x = tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"mse_loss: reduction: expected one of 'mean', 'sum', 'none', got 'avg'"):
        mg.ops.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"MSELoss: reduction: expected one of"):
        mg.nn.MSELoss(reduction="elementwise_mean")
    with pytest.raises(ValueError, match=r"mse_loss: target must have the input's shape \(2, 3\), got \(3,\)"):
        mg.ops.mse_loss(x, tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="mse_loss: input: expected a Tensor, got ndarray"):
        mg.ops.mse_loss(np.zeros(3), x)
    with pytest.raises(ValueError, match=r"nll_loss: labels must lie in \[0, 3\), got values from 0 to 3"):
        mg.ops.nll_loss(x, np.array([0, 3]))
    with pytest.raises(TypeError, match="cross_entropy: labels must be integers"):
        mg.nn.CrossEntropyLoss()(x, tensor([0.0, 1.0]))


# ----------------------------------------------------------------------------
# Activation layers
# ----------------------------------------------------------------------------


@given(data=st.data(), shape=shapes(min_dims=2, max_dims=3))
def test_activation_layers_compute_their_function(data, shape):
    x = data.draw(arrays(shape))
    np.testing.assert_allclose(host(mg.nn.Tanh()(leaf(x))), np.tanh(x), rtol=1e-12)
    np.testing.assert_allclose(host(mg.nn.Sigmoid()(leaf(x))), 1 / (1 + np.exp(-x)), rtol=1e-12)
    exp = np.exp(x - x.max(axis=1, keepdims=True))
    softmax = exp / exp.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(host(mg.nn.Softmax(dim=1)(leaf(x))), softmax, rtol=1e-12)
    np.testing.assert_allclose(host(mg.nn.LogSoftmax(dim=1)(leaf(x))), np.log(softmax), rtol=1e-9, atol=1e-12)
    model = mg.nn.Sequential(mg.nn.Tanh(), mg.nn.Sigmoid(), mg.nn.Softmax(dim=-1))
    assert mg.gradcheck(model, [leaf(x)])


def _torch_softplus(x, beta=1.0, threshold=20.0):
    """PyTorch's documented formula: log(1 + e^(beta x)) / beta, and x where beta x > threshold."""
    return np.where(beta * x > threshold, x, np.logaddexp(0.0, beta * x) / beta)


@given(data=st.data(), shape=shapes(min_dims=0), beta=st.floats(0.25, 4.0), threshold=st.floats(-5, 25))
def test_softplus_and_logsigmoid_by_pytorchs_names(data, shape, beta, threshold):
    x = data.draw(arrays(shape, -30.0, 30.0))
    F = mg.nn.functional
    np.testing.assert_allclose(host(F.softplus(leaf(x))), _torch_softplus(x), rtol=1e-12)
    np.testing.assert_allclose(host(mg.nn.Softplus()(leaf(x))), _torch_softplus(x), rtol=1e-12)
    expected = _torch_softplus(x, beta, threshold)
    np.testing.assert_allclose(host(F.softplus(leaf(x), beta=beta, threshold=threshold)), expected, rtol=1e-12)
    np.testing.assert_allclose(host(mg.nn.Softplus(beta, threshold)(leaf(x))), expected, rtol=1e-12)
    exact = np.logaddexp(0.0, beta * x) / beta
    np.testing.assert_allclose(host(F.softplus(leaf(x), beta, threshold=None)), exact, rtol=1e-12)
    np.testing.assert_allclose(host(leaf(x).softplus(beta)), exact, rtol=1e-12)  # the op's default: exact
    for log_sigmoid in (F.logsigmoid, F.log_sigmoid, mg.nn.LogSigmoid(), lambda t: t.log_sigmoid()):
        np.testing.assert_allclose(host(log_sigmoid(leaf(x))), -np.logaddexp(0.0, -x), rtol=1e-12)


@given(shape=shapes(min_dims=1, max_dims=3), keepdim=st.booleans(), data=st.data())
def test_logsumexp_by_pytorchs_names(shape, keepdim, data):
    x = data.draw(arrays(shape))
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    expected = np.log(np.exp(x).sum(axis=dim, keepdims=keepdim))
    np.testing.assert_allclose(host(leaf(x).logsumexp(dim, keepdim=keepdim)), expected, rtol=1e-12)
    np.testing.assert_allclose(host(mg.logsumexp(leaf(x), dim=dim, keepdim=keepdim)), expected, rtol=1e-12)
    assert mg.gradcheck(lambda t: t.logsumexp(dim=dim, keepdim=keepdim), [leaf(x)])


def test_softplus_settings_errors_name_the_argument():
    x = tensor([1.0])
    with pytest.raises(ValueError, match="softplus: beta: expected a finite number > 0, got 0"):
        mg.nn.functional.softplus(x, beta=0)
    with pytest.raises(ValueError, match="Softplus: threshold: expected None or a finite number, got nan"):
        mg.nn.Softplus(threshold=float("nan"))
    with pytest.raises(ValueError, match="Softplus: beta: expected a finite number > 0, got '1'"):
        mg.nn.Softplus(beta="1")
    with pytest.raises(TypeError, match="logsumexp: pass axis or dim"):
        x.logsumexp(0, dim=0)
    assert repr(mg.nn.Softplus(2)) == "Softplus(beta=2.0, threshold=20.0)"


def test_softmax_layers_need_a_dim():
    with pytest.raises(TypeError, match=r"Softmax: dim: expected the axis to normalise over, e\.g\. Softmax\(dim=1\)"):
        mg.nn.Softmax()
    with pytest.raises(TypeError, match="LogSoftmax: dim: expected an int, got str"):
        mg.nn.LogSoftmax("1")
    with pytest.raises(ValueError, match=r"Softmax: dim=2 is out of range for an input of shape \(2, 3\)"):
        mg.nn.Softmax(dim=2)(tensor(np.zeros((2, 3))))


# ----------------------------------------------------------------------------
# ModuleList
# ----------------------------------------------------------------------------


def test_module_list_registers_its_modules_in_order():
    class Stack(mg.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = mg.nn.ModuleList(mg.nn.Linear(3, 3) for _ in range(2))
            self.layers.append(mg.nn.Tanh())

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    model = Stack()
    assert len(model.layers) == 3 and isinstance(model.layers[-1], mg.nn.Tanh)
    assert list(model.state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert model(tensor(np.ones((2, 3))).astype("float32")).shape == (2, 3)
    first = model.layers[0]
    model.layers.insert(0, mg.nn.Identity())
    assert model.layers[1] is first and "layers.1.weight" in model.state_dict()
    del model.layers[0]
    assert model.layers[0] is first and len(model.layers) == 3
    model.layers[2] = mg.nn.Linear(3, 1)
    assert model(tensor(np.ones((2, 3))).astype("float32")).shape == (2, 1)
    assert len(model.layers[:2]) == 2


def test_module_list_errors():
    layers = mg.nn.ModuleList([mg.nn.Tanh()])
    with pytest.raises(TypeError, match="ModuleList: expected Modules, got int at position 1"):
        layers.append(3)
    with pytest.raises(IndexError, match="ModuleList: index 1 is out of range for 1 modules"):
        layers[1]
    with pytest.raises(NotImplementedError, match="loop over it"):
        layers(tensor([1.0]))


# ----------------------------------------------------------------------------
# load_state_dict(strict=...)
# ----------------------------------------------------------------------------


def _two_layers():
    return mg.nn.Sequential(mg.nn.Linear(3, 4), mg.nn.ReLU(), mg.nn.Linear(4, 2))


def test_strict_load_returns_empty_key_lists():
    source, target = _two_layers(), _two_layers()
    result = target.load_state_dict(source.state_dict())
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(target[2].weight.numpy(), source[2].weight.numpy())


def test_non_strict_load_takes_the_shared_keys_and_reports_the_rest():
    source, target = _two_layers(), _two_layers()
    state = source.state_dict()
    state.pop("2.bias")
    state["head.weight"] = state["2.weight"]
    untouched = target[2].bias.numpy().copy()
    result = target.load_state_dict(state, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(target[0].weight.numpy(), source[0].weight.numpy())
    np.testing.assert_array_equal(target[2].bias.numpy(), untouched)


def test_strict_mismatch_names_the_keys_and_changes_nothing():
    source, target = _two_layers(), _two_layers()
    state = source.state_dict()
    state.pop("0.bias")
    state["extra"] = state["2.bias"]
    before = target[0].weight.numpy().copy()
    for caught in (KeyError, RuntimeError):  # minigrad's KeyError, PyTorch's RuntimeError: both catch it
        with pytest.raises(caught, match=r"missing keys \['0.bias'\], unexpected keys \['extra'\].*strict=False"):
            target.load_state_dict(state)
    np.testing.assert_array_equal(target[0].weight.numpy(), before)


@pytest.mark.parametrize("strict", [True, False])
def test_shape_mismatch_always_raises_naming_key_and_shapes(strict):
    target = _two_layers()
    state = _two_layers().state_dict()
    state["2.weight"] = B.asarray(np.zeros((3, 4), dtype=np.float32))
    before = target[0].weight.numpy().copy()
    with pytest.raises(ValueError, match=r"'2.weight' expects shape \(2, 4\), got \(3, 4\)"):
        target.load_state_dict(state, strict=strict)
    np.testing.assert_array_equal(target[0].weight.numpy(), before)


def test_load_state_dict_argument_errors():
    model = _two_layers()
    with pytest.raises(TypeError, match="strict: expected True or False, got 'no'"):
        model.load_state_dict(model.state_dict(), strict="no")
    with pytest.raises(TypeError, match="state: expected a dict of name -> array, got list"):
        model.load_state_dict([])


# ----------------------------------------------------------------------------
# Optimizers' default learning rates
# ----------------------------------------------------------------------------


def test_sgd_default_learning_rate_is_pytorchs():
    p = mg.nn.Parameter(np.array([1.0, 2.0]), dtype="float64")
    opt = mg.optim.SGD([p])
    assert opt.lr == 1e-3
    p.grad = B.asarray(np.array([10.0, -10.0]))
    opt.step()
    np.testing.assert_allclose(p.numpy(), [1.0 - 1e-2, 2.0 + 1e-2])


def _one_step(opt_class, grad):
    p = mg.nn.Parameter(np.array([1.0, 2.0]), dtype="float64")
    opt = opt_class([p])
    p.grad = B.asarray(np.asarray(grad))
    opt.step()
    return opt, p.numpy()


def test_adam_and_rmsprop_default_learning_rates_are_pytorchs():
    opt, p = _one_step(mg.optim.Adam, [10.0, -10.0])
    assert opt.lr == 1e-3
    np.testing.assert_allclose(p, [1.0 - 1e-3, 2.0 + 1e-3])  # Adam's first step moves by lr times sign(grad)
    for rmsprop, alpha in ((mg.optim.RMSProp, 0.9), (mg.optim.RMSprop, 0.99)):
        opt, p = _one_step(rmsprop, [10.0, -10.0])
        assert (opt.lr, opt.alpha) == (0.01, alpha)
        step = 0.01 * 10.0 / (np.sqrt(1 - alpha) * 10.0 + 1e-8)  # v = (1 - alpha) g^2 after one step
        np.testing.assert_allclose(p, [1.0 - step, 2.0 + step])


def test_rmsprop_under_pytorchs_spelling_has_pytorchs_defaults():
    assert issubclass(mg.optim.RMSprop, mg.optim.RMSProp)
    p = mg.nn.Parameter(np.array([1.0]))
    assert repr(mg.optim.RMSprop([p])).startswith("RMSprop(lr=0.01, alpha=0.99, eps=1e-08, momentum=0.0")
    with pytest.raises(ValueError, match=r"RMSprop: alpha: expected a number in \[0, 1\)"):
        mg.optim.RMSprop([p], alpha=1.0)


# ----------------------------------------------------------------------------
# dim= and keepdim=, casts by PyTorch's names, clone, requires_grad_
# ----------------------------------------------------------------------------


@given(shape=shapes(min_dims=1, max_dims=3), keepdim=st.booleans(), data=st.data())
def test_reductions_accept_dim_and_keepdim(shape, keepdim, data):
    x = data.draw(arrays(shape))
    assume(np.min(np.diff(np.sort(x, axis=None)), initial=1.0) > 1e-3)  # max: no ties within the difference step
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_allclose(host(leaf(x).sum(dim=dim, keepdim=keepdim)), x.sum(axis=dim, keepdims=keepdim))
    np.testing.assert_allclose(host(leaf(x).mean(dim=dim, keepdim=keepdim)), x.mean(axis=dim, keepdims=keepdim))
    values, indices = leaf(x).max(dim=dim, keepdim=keepdim)  # torch.max(x, dim) answers (values, indices)
    np.testing.assert_array_equal(host(values), x.max(axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(host(indices), np.argmax(x, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(host(leaf(x).argmax(dim=dim)), np.argmax(x, axis=dim))
    assert leaf(x).max().shape == () and leaf(x).argmax().item() == int(np.argmax(x))
    assert mg.gradcheck(lambda t: t.mean(dim=dim, keepdim=keepdim) + t.max(dim=dim, keepdim=keepdim).values, [leaf(x)])
    exp = np.exp(x - x.max(axis=dim, keepdims=True))
    np.testing.assert_allclose(host(leaf(x).softmax(dim=dim)), exp / exp.sum(axis=dim, keepdims=True), rtol=1e-12)
    assert mg.gradcheck(lambda t: mg.nn.functional.log_softmax(t, dim=dim), [leaf(x)])


def test_dim_errors_point_at_minigrads_names():
    x = tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"sum: pass axis or dim \(PyTorch's name for it\), not both"):
        x.sum(axis=0, dim=1)
    with pytest.raises(TypeError, match=r"max: axis: .*got a Tensor; for the elementwise maximum .* mg\.maximum"):
        mg.ops.max(x, x)
    with pytest.raises(TypeError, match="max: dim: expected one axis as an int, got"):
        x.max(dim=(0, 1))
    with pytest.raises(TypeError, match=r"softmax: axis: expected an int, got tuple \(0, 1\)"):
        x.softmax(dim=(0, 1))
    with pytest.raises(ValueError, match=r"mean: axis: expected an axis in \[-2, 1\], got 2"):
        x.mean(dim=2)


@given(shape=shapes(min_dims=0), data=st.data())
def test_float_double_long_and_clone(shape, data):
    x = data.draw(arrays(shape))
    t = leaf(x)
    assert B.dtype_name(t.float().dtype) == "float32" and B.dtype_name(t.float().double().dtype) == "float64"
    long = t.long()
    assert B.dtype_name(long.dtype) == "int64" and not long.requires_grad
    np.testing.assert_array_equal(host(long), x.astype(np.int64))
    copy = t.clone()
    assert copy.data is not t.data
    np.testing.assert_array_equal(host(copy), x)
    assert mg.gradcheck(lambda u: u.clone() * u, [leaf(x)])
    u = leaf(x)  # float32 in between: a finite-difference check would measure rounding, so check the chain directly
    (u.float() * 2.0).sum().backward()
    assert B.dtype_name(u.grad.dtype) == "float64"
    np.testing.assert_array_equal(host(u.grad), np.full(shape, 2.0))


def test_requires_grad_switches_a_leaf_in_place():
    t = tensor([1.0, 2.0])
    assert t.requires_grad_() is t and t.requires_grad
    (t * t).sum().backward()
    np.testing.assert_array_equal(host(t.grad), [2.0, 4.0])
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (t * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="requires_grad_: only floating tensors .* got dtype int64"):
        mg.Tensor(np.array([1, 2], dtype=np.int64)).requires_grad_()


# ----------------------------------------------------------------------------
# Factories: zeros, ones, full, arange, randn, rand, *_like
# ----------------------------------------------------------------------------


@given(shape=shapes(min_dims=0, max_dims=3, min_side=0))
def test_zeros_ones_full_take_a_shape_either_way(shape):
    for make, value in ((mg.zeros, 0.0), (mg.ones, 1.0)):
        for t in (make(*shape), make(shape), make(shape, dtype="float64")):
            assert t.shape == shape
            np.testing.assert_array_equal(host(t), np.full(shape, value))
        assert B.dtype_name(make(shape).dtype) == "float32"
        assert B.dtype_name(make(shape, dtype="float64").dtype) == "float64"
    np.testing.assert_array_equal(host(mg.full(shape, 2.5)), np.full(shape, 2.5))
    assert B.dtype_name(mg.full(shape, 2).dtype) == "int64" and B.dtype_name(mg.full(shape, 2.0).dtype) == "float32"


def test_like_factories_keep_dtype_and_device():
    x = tensor(np.ones((2, 3)))  # float64
    assert B.dtype_name(mg.zeros_like(x).dtype) == "float64" and mg.zeros_like(x).device == x.device
    np.testing.assert_array_equal(host(mg.ones_like(x, dtype="float32")), np.ones((2, 3)))
    assert B.dtype_name(mg.ones_like(x, dtype="float32").dtype) == "float32"


def test_tensor_copies_its_data_and_can_require_grad():
    source = tensor([1.0, 2.0])
    copy = mg.Tensor(source.numpy(), requires_grad=True)
    assert copy.requires_grad
    np.testing.assert_array_equal(host(mg.Tensor([[1, 2]])), [[1, 2]])
    assert B.dtype_name(mg.Tensor([1.5]).dtype) == "float32"
    assert B.dtype_name(mg.Tensor([1.5], dtype="float64").dtype) == "float64"


@pytest.mark.parametrize(
    ("args", "expected"), [((5,), np.arange(5)), ((2, 7, 2), np.arange(2, 7, 2)), ((0, 1, 0.25), np.arange(0, 1, 0.25))]
)
def test_arange(args, expected):
    np.testing.assert_array_equal(host(mg.arange(*args)), expected)


def test_random_factories_repeat_for_a_seed_and_have_the_right_range():
    saved = mg.random.default_generator().get_state()
    try:
        mg.manual_seed(7)
        a = mg.randn(4, 3)
        mg.manual_seed(7)
        np.testing.assert_array_equal(host(a), host(mg.randn((4, 3))))
    finally:
        mg.random.default_generator().set_state(saved)  # leave the global generator as the other tests expect it
    u = mg.rand(1000, generator=mg.Generator(1), dtype="float64")
    assert B.dtype_name(u.dtype) == "float64" and host(u).min() >= 0.0 and host(u).max() < 1.0
    assert mg.randn(2, requires_grad=True).requires_grad


def test_factory_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"zeros: shape: expected non-negative integers, got \(2, -1\)"):
        mg.zeros(2, -1)
    with pytest.raises(ValueError, match="ones: shape: expected non-negative integers"):
        mg.ones(2.5)
    with pytest.raises(ValueError, match="randn: dtype: expected a floating dtype, got 'int64'"):
        mg.randn(2, dtype="int64")
    with pytest.raises(ValueError, match="arange: step: expected a non-zero number, got 0"):
        mg.arange(0, 3, 0)
    with pytest.raises(TypeError, match="arange: end: expected a number, got str"):
        mg.arange(0, "3")
    with pytest.raises(TypeError, match="full: fill_value: expected a number, got str"):
        mg.full((2,), "x")


def test_parameter_groups_get_a_message_that_says_what_to_do():
    model = mg.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="params\\[0\\]: .*got a dict; parameter groups .* one optimizer per group"):
        mg.optim.SGD([{"params": model.parameters(), "lr": 0.1}])


def test_flatten_layer_takes_end_dim_too():
    x = tensor(np.zeros((2, 3, 4, 5)))
    assert mg.nn.Flatten()(x).shape == (2, 60)
    assert mg.nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    assert mg.nn.Flatten(0, -2)(x).shape == (24, 5)
    with pytest.raises(TypeError, match="Flatten: end_dim: expected an int, got str"):
        mg.nn.Flatten(1, "2")


def test_mg_tensor_is_torch_tensor_a_copy_of_its_data():
    source = np.array([1.0, -2.0, 3.0])
    t = mg.tensor(source, requires_grad=True)
    source[0] = 100.0  # the tensor holds a copy
    np.testing.assert_array_equal(t.numpy(), [1.0, -2.0, 3.0])
    assert t.requires_grad and t.dtype == mg.tensor([1.0]).dtype  # floats: minigrad's float32 default
    assert mg.tensor([[1, 2]]).shape == (1, 2) and mg.tensor(2.5).item() == 2.5
    assert mg.tensor(source, dtype="float64").dtype == mg.Tensor(source, dtype="float64").dtype
    u = mg.tensor(t)
    assert not u.requires_grad and u.data is not t.data
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad, [2.0, -4.0, 6.0])


def test_the_engine_module_keeps_its_import_path():
    import importlib

    engine = importlib.import_module("minigrad.tensor")
    assert engine.Tensor is mg.Tensor and callable(mg.tensor) and mg.tensor is not engine
