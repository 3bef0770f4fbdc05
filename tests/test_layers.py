"""Layers (Linear, Conv2d, pooling, ReLU, Dropout, Flatten, Sequential) and initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B
from minigrad import nn
from minigrad.nn import init
from tests.helpers import host, tensor

# ----------------------------------------------------------------------------
# Linear and Conv2d
# ----------------------------------------------------------------------------


def test_linear_shapes_and_values():
    layer = nn.Linear(4, 3, generator=mg.Generator(0))
    assert layer.weight.shape == (3, 4) and layer.bias.shape == (3,)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    out = layer(mg.Tensor(x))
    assert out.shape == (5, 3) and B.dtype_name(out.dtype) == "float32"
    np.testing.assert_allclose(host(out), x @ host(layer.weight).T + host(layer.bias), rtol=1e-5, atol=1e-6)


def test_linear_without_bias_in_float64_and_with_batch_axes():
    layer = nn.Linear(2, 6, bias=False, dtype="float64")
    assert layer.bias is None and len(layer.parameters()) == 1
    assert B.dtype_name(layer.weight.dtype) == "float64"
    assert layer(tensor(np.ones((3, 4, 2)))).shape == (3, 4, 6)


def test_linear_gradients():
    layer = nn.Linear(3, 2, dtype="float64")
    x = tensor(np.random.default_rng(0).standard_normal((4, 3)), True)
    assert mg.gradcheck(lambda a, w, b: a @ w.T + b, [x, layer.weight, layer.bias])
    layer(x).sum().backward()
    assert layer.weight.grad.shape == (2, 3) and layer.bias.grad.shape == (2,)


def test_linear_rejects_a_wrong_input_size():
    with pytest.raises(ValueError, match=r"Linear: x: expected a last axis of size in_features=3, got shape \(2, 4\)"):
        nn.Linear(3, 1)(tensor(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="Linear: out_features: expected a positive integer, got 0"):
        nn.Linear(3, 0)


def test_conv2d_layer_shapes():
    layer = nn.Conv2d(3, 8, kernel_size=(3, 5), stride=2, padding=(1, 2))
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    assert layer.kernel_size == (3, 5) and layer.stride == (2, 2) and layer.padding == (1, 2)
    out = layer(mg.Tensor(np.zeros((2, 3, 9, 10))))
    assert out.shape == (2, 8, 5, 5)
    assert nn.Conv2d(1, 2, 3, bias=False).bias is None
    assert "kernel_size=(3, 5)" in repr(layer)


def test_conv2d_layer_rejects_wrong_channels():
    with pytest.raises(ValueError, match="x has 1 channels .* in_channels=3"):
        nn.Conv2d(3, 4, 3)(mg.Tensor(np.zeros((1, 1, 5, 5))))
    with pytest.raises(ValueError, match="Conv2d: kernel_size: expected positive values, got 0"):
        nn.Conv2d(3, 4, 0)


def test_layers_are_reproducible_by_seed(monkeypatch):
    a = nn.Conv2d(2, 4, 3, generator=mg.Generator(7))
    b = nn.Conv2d(2, 4, 3, generator=mg.Generator(7))
    c = nn.Conv2d(2, 4, 3, generator=mg.Generator(8))
    np.testing.assert_array_equal(host(a.weight), host(b.weight))
    assert not np.array_equal(host(a.weight), host(c.weight))
    monkeypatch.setattr(mg.random, "_default_generator", mg.random.default_generator())  # restored after the test
    mg.manual_seed(5)
    d = nn.Linear(3, 3)
    mg.manual_seed(5)
    e = nn.Linear(3, 3)
    np.testing.assert_array_equal(host(d.weight), host(e.weight))


def test_default_init_is_he_uniform_with_zero_bias():
    layer = nn.Linear(400, 300, generator=mg.Generator(0))
    weight = host(layer.weight)
    bound = math.sqrt(6 / 400)
    assert np.abs(weight).max() <= bound
    assert abs(weight.std() - math.sqrt(2 / 400)) < 0.02 * math.sqrt(2 / 400)
    assert np.all(host(layer.bias) == 0)


# ----------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------


def test_fan_in_and_fan_out():
    assert init.calculate_fan_in_and_fan_out((30, 20)) == (20, 30)
    assert init.calculate_fan_in_and_fan_out((16, 8, 3, 5)) == (8 * 15, 16 * 15)
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.calculate_fan_in_and_fan_out((5,))


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("linear") == 1.0
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="nonlinearity: expected one of"):
        init.calculate_gain("softplus")


@pytest.mark.parametrize(
    ("function", "shape", "expected_std"),
    [
        (init.kaiming_normal_, (256, 64, 3, 3), math.sqrt(2 / (64 * 9))),
        (init.kaiming_uniform_, (256, 64, 3, 3), math.sqrt(2 / (64 * 9))),
        (init.kaiming_normal_, (600, 500), math.sqrt(2 / 500)),
        (init.xavier_normal_, (600, 500), math.sqrt(2 / 1100)),
        (init.xavier_uniform_, (64, 32, 3, 3), math.sqrt(2 / ((32 + 64) * 9))),
    ],
)
def test_init_std_matches_the_formula(function, shape, expected_std):
    weight = nn.Parameter(np.zeros(shape))
    out = function(weight, generator=mg.Generator(0))
    assert out is weight and weight.shape == shape and B.dtype_name(weight.dtype) == "float32"
    values = host(weight)
    assert abs(values.mean()) < 0.05 * expected_std
    assert abs(values.std() - expected_std) < 0.02 * expected_std


def test_kaiming_fan_out_mode_and_uniform_bounds():
    weight = nn.Parameter(np.zeros((300, 100)))
    init.kaiming_normal_(weight, mode="fan_out", generator=mg.Generator(1))
    assert abs(host(weight).std() - math.sqrt(2 / 300)) < 0.03 * math.sqrt(2 / 300)
    init.xavier_uniform_(weight, gain=2.0, generator=mg.Generator(1))
    assert np.abs(host(weight)).max() <= 2.0 * math.sqrt(6 / 400)
    with pytest.raises(ValueError, match="mode: expected 'fan_in' or 'fan_out'"):
        init.kaiming_uniform_(weight, mode="fan_avg")


def test_constant_inits_keep_dtype_and_device():
    weight = nn.Parameter(np.ones((2, 3)), dtype="float64")
    init.zeros_(weight)
    assert np.all(host(weight) == 0) and B.dtype_name(weight.dtype) == "float64"
    init.ones_(weight)
    assert np.all(host(weight) == 1)
    init.constant_(weight, 0.5)
    assert np.all(host(weight) == 0.5)
    init.uniform_(weight, -1.0, 1.0, generator=mg.Generator(0))
    assert np.all(np.abs(host(weight)) <= 1)
    assert weight.device == mg.Tensor(0.0).device


# ----------------------------------------------------------------------------
# Stateless layers
# ----------------------------------------------------------------------------


def test_pooling_relu_flatten_layers():
    x = tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))
    assert nn.MaxPool2d(2)(x).shape == (2, 3, 3, 3)
    assert nn.MaxPool2d(3, stride=1, padding=1)(x).shape == (2, 3, 6, 6)
    assert nn.AvgPool2d((2, 3))(x).shape == (2, 3, 3, 2)
    assert nn.GlobalAvgPool2d()(x).shape == (2, 3)
    assert nn.Flatten()(x).shape == (2, 108)
    assert nn.Flatten(start_dim=2)(x).shape == (2, 3, 36)
    assert np.all(host(nn.ReLU()(x)) >= 0)
    assert nn.Identity()(x) is x
    with pytest.raises(ValueError, match="Flatten: start_dim=4 is out of range"):
        nn.Flatten(4)(x)


def test_dropout_layer_train_and_eval():
    layer = nn.Dropout(0.25, generator=mg.Generator(0))
    x = mg.Tensor(np.ones((100, 100)))
    out = host(layer(x))
    assert abs((out == 0).mean() - 0.25) < 0.02
    np.testing.assert_allclose(out[out != 0], 1 / 0.75, rtol=1e-6)
    layer.eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match=r"Dropout: p: expected a probability in \[0, 1\), got 1"):
        nn.Dropout(1)


# ----------------------------------------------------------------------------
# Sequential
# ----------------------------------------------------------------------------


def make_sequential(seed: int = 0) -> nn.Sequential:
    gen = mg.Generator(seed)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, generator=gen),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 3, generator=gen),
    )


def test_sequential_is_indexable_iterable_and_sized():
    model = make_sequential()
    assert len(model) == 5
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Linear)
    assert [type(m).__name__ for m in model] == ["Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"]
    head = model[3:]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[1] is model[4]
    with pytest.raises(IndexError, match="index 5 is out of range for 5 modules"):
        model[5]
    with pytest.raises(TypeError, match="expected Modules, got int"):
        nn.Sequential(nn.ReLU(), 3)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "4.weight", "4.bias"]
    assert len(model.append(nn.ReLU())) == 6


def test_sequential_forward_backward_and_modes():
    model = make_sequential()
    x = mg.Tensor(np.random.default_rng(0).standard_normal((4, 1, 4, 4)))
    out = model(x)
    assert out.shape == (4, 3)
    expected = x
    for layer in model:
        expected = layer(expected)
    np.testing.assert_array_equal(host(out), host(expected))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())


def test_sequential_state_dict_round_trip():
    a, b = make_sequential(0), make_sequential(1)
    x = mg.Tensor(np.random.default_rng(0).standard_normal((2, 1, 4, 4)))
    assert not np.allclose(host(a(x)), host(b(x)))
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(host(a(x)), host(b(x)))
    assert sorted(a.state_dict()) == ["0.bias", "0.weight", "4.bias", "4.weight"]
