"""mg.models: the digits and CIFAR CNNs for every normalization arm, and their building helpers."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from minigrad.models import CifarCNN, DigitsCNN, conv_block, make_norm
from tests.helpers import host

HAS_NORM_LAYERS = hasattr(mg.nn, "BatchRenorm2d") and hasattr(mg.nn, "BatchNorm1d")
needs_norm_layers = pytest.mark.skipif(not HAS_NORM_LAYERS, reason="minigrad.nn.norm layers are not available")
NORMS = ["none", "bn", "brn"] if HAS_NORM_LAYERS else ["none"]

# Widths small enough that the array-api-strict run stays quick.
SMALL_CIFAR = dict(channels=(4, 8, 8))


def images(shape, seed: int = 0) -> mg.Tensor:
    return mg.Tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def labels(n: int, seed: int = 0) -> mg.Tensor:
    return mg.Tensor(np.random.default_rng(seed).integers(0, 10, n))


def train_step_grads(model: nn.Module, x: mg.Tensor) -> dict[str, tuple]:
    model.zero_grad()
    mg.cross_entropy(model(x), labels(x.shape[0])).backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("global_pool", [False, True])
def test_digits_cnn_forward_shape_and_every_parameter_gets_a_gradient(norm, global_pool):
    model = DigitsCNN(norm=norm, global_pool=global_pool, generator=mg.Generator(0))
    x = images((6, 1, 8, 8))
    assert model(x).shape == (6, 10)
    grads = train_step_grads(model, x)
    for name, param in model.named_parameters():
        assert grads[name] is not None and grads[name].shape == param.shape, name
        assert np.all(np.isfinite(host(grads[name]))), name


@pytest.mark.parametrize("norm", NORMS)
def test_cifar_cnn_forward_shape_and_every_parameter_gets_a_gradient(norm):
    model = CifarCNN(norm=norm, generator=mg.Generator(0), **SMALL_CIFAR)
    x = images((4, 3, 32, 32))
    assert model(x).shape == (4, 10)
    grads = train_step_grads(model, x)
    assert all(grads[name] is not None and grads[name].shape == p.shape for name, p in model.named_parameters())


@pytest.mark.backends("numpy", "cupy")
def test_cifar_cnn_default_widths():
    model = CifarCNN(norm="none", generator=mg.Generator(0))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    assert sum(p.size for p in model.parameters()) == 279_050
    assert model(images((2, 3, 32, 32))).shape == (2, 10)


def test_parameter_counts():
    def count(model):
        return sum(p.size for p in model.parameters())

    assert count(DigitsCNN(norm="none")) == 89_546
    assert count(DigitsCNN(norm="none", global_pool=True)) == 23_946
    if HAS_NORM_LAYERS:
        # no conv/hidden biases, plus gamma and beta per channel: 16+32+64 and 64 features
        assert count(DigitsCNN(norm="bn")) == 89_546 - (16 + 32 + 64 + 64) + 2 * (16 + 32 + 64 + 64)
        assert count(CifarCNN(norm="brn")) == 279_050 - (32 + 64 + 64 + 128 + 128) + 2 * (32 + 64 + 64 + 128 + 128)


def test_global_pool_head_accepts_other_image_sizes_and_flat_head_does_not():
    assert DigitsCNN(norm="none", global_pool=True)(images((2, 1, 12, 10))).shape == (2, 10)
    with pytest.raises(ValueError, match="DigitsCNN: x: the flattening head expects 8x8 images"):
        DigitsCNN(norm="none")(images((2, 1, 12, 12)))


def test_models_are_reproducible_by_seed_and_state_dict_round_trips():
    a = DigitsCNN(norm="none", generator=mg.Generator(1))
    b = DigitsCNN(norm="none", generator=mg.Generator(1))
    c = DigitsCNN(norm="none", generator=mg.Generator(2))
    x = images((3, 1, 8, 8))
    np.testing.assert_array_equal(host(a(x)), host(b(x)))
    assert not np.allclose(host(a(x)), host(c(x)))
    c.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(host(a(x)), host(c(x)))


@pytest.mark.parametrize("norm", NORMS)
def test_state_dict_round_trip_with_running_statistics(norm):
    """After a training step (running statistics move), a fresh model loaded from the state agrees in eval mode."""
    a = CifarCNN(norm=norm, generator=mg.Generator(0), **SMALL_CIFAR)
    train_step_grads(a, images((4, 3, 32, 32), seed=1))
    b = CifarCNN(norm=norm, generator=mg.Generator(5), **SMALL_CIFAR)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == set(b.state_dict())
    x = images((2, 3, 32, 32), seed=2)
    a.eval()
    b.eval()
    np.testing.assert_allclose(host(a(x)), host(b(x)), rtol=1e-6, atol=1e-6)


def test_dropout_option_adds_a_dropout_layer_that_eval_turns_off():
    model = DigitsCNN(norm="none", dropout=0.5, global_pool=True, generator=mg.Generator(0))
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    x = images((4, 1, 8, 8))
    model.eval()
    np.testing.assert_array_equal(host(model(x)), host(model(x)))


# ----------------------------------------------------------------------------
# make_norm and conv_block
# ----------------------------------------------------------------------------


def test_make_norm_none_is_identity_and_ignores_options():
    layer = make_norm("none", 8, dims=2, momentum=0.2, r_max=3.0)
    assert isinstance(layer, nn.Identity)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("batch", 4), {}, ValueError, r"make_norm: norm: expected one of \('bn', 'brn', 'none'\), got 'batch'"),
        (("bn", 4), {"dims": 3}, ValueError, r"make_norm: dims: expected 1 \(after Linear\) or 2"),
        (("brn", 4), {"r_maximum": 2.0}, TypeError, r"unexpected normalization option\(s\) \['r_maximum'\]"),
    ],
)
def test_make_norm_errors(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_norm(*args, **kwargs)


def test_conv_block_has_a_bias_only_without_normalization():
    block = conv_block(3, 5, norm="none", generator=mg.Generator(0))
    assert [type(m).__name__ for m in block] == ["Conv2d", "Identity", "ReLU"]
    assert block[0].bias is not None and block[0].padding == (1, 1)
    assert block(images((2, 3, 6, 6))).shape == (2, 5, 6, 6)
    with pytest.raises(ValueError, match="conv_block: norm: expected one of"):
        conv_block(3, 5, norm="group")


@needs_norm_layers
def test_make_norm_builds_the_normalization_layers_with_options():
    bn = make_norm("bn", 6, dims=2, momentum=0.05, eps=1e-3, virtual_batch_size=2, r_max=2.0, d_max=None)
    assert isinstance(bn, nn.BatchNorm2d)
    assert (bn.momentum, bn.eps, bn.virtual_batch_size, bn.num_features) == (0.05, 1e-3, 2, 6)
    brn = make_norm("brn", 7, dims=1, r_max=2.0, d_max=1.0, momentum=0.01, dtype="float64")
    assert isinstance(brn, nn.BatchRenorm1d)
    assert (brn.r_max, brn.d_max, brn.momentum, brn.num_features) == (2.0, 1.0, 0.01, 7)
    assert mg.backend.dtype_name(brn.weight.dtype) == "float64"
    assert isinstance(make_norm("brn", 3), nn.BatchRenorm2d) and isinstance(make_norm("bn", 3, dims=1), nn.BatchNorm1d)


@needs_norm_layers
def test_models_forward_norm_options_to_every_norm_layer():
    model = DigitsCNN(norm="brn", r_max=1.5, d_max=0.5, momentum=0.02, virtual_batch_size=2)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchRenorm1d, nn.BatchRenorm2d))]
    assert len(norms) == 4 and sum(isinstance(m, nn.BatchRenorm1d) for m in norms) == 1
    assert all((m.r_max, m.d_max, m.momentum, m.virtual_batch_size) == (1.5, 0.5, 0.02, 2) for m in norms)
    bn_model = CifarCNN(norm="bn", r_max=1.5, d_max=0.5, momentum=0.02, **SMALL_CIFAR)  # renorm-only options dropped
    bn_norms = [m for m in bn_model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bn_norms) == 5 and all(m.momentum == 0.02 for m in bn_norms)
    assert bn_model(images((4, 3, 32, 32))).shape == (4, 10)


@needs_norm_layers
@pytest.mark.parametrize("norm", ["bn", "brn"])
def test_normalized_models_differ_between_train_and_eval(norm):
    model = DigitsCNN(norm=norm, generator=mg.Generator(0))
    x = images((8, 1, 8, 8))
    train_out = host(model(x))
    model.eval()
    eval_out = host(model(x))
    assert train_out.shape == eval_out.shape == (8, 10)
    assert not np.allclose(train_out, eval_out)
