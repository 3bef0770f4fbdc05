"""Batch transforms: normalization statistics, random crop with zero padding, horizontal flip."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B
from minigrad import data


def images(n: int = 16, c: int = 3, h: int = 6, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32) + np.float32(0.1)


@pytest.mark.backends("numpy")
def test_normalize_fit_gives_zero_mean_unit_std_per_channel():
    x = images(50)
    x[:, 1] = x[:, 1] * 5 + 3
    x[:, 2] = 0.25  # constant channel: only centred
    norm = data.Normalize.fit(data.Dataset(x, np.zeros(50, np.int64)))
    np.testing.assert_allclose(norm.mean, x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(norm.std[:2], x[:, :2].std(axis=(0, 2, 3)), rtol=1e-4)
    assert norm.std[2] == 1.0
    out = norm(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3))[:2], 1.0, rtol=1e-4)
    assert data.Normalize.from_state_dict(norm.state_dict()).state_dict() == norm.state_dict()


def test_normalize_on_backend_arrays_matches_host(backend):
    x = images(4)
    norm = data.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    device_out = norm(B.from_numpy(x))
    assert B.library_of(device_out) == backend
    np.testing.assert_allclose(B.to_numpy(device_out), norm(x), rtol=1e-6)
    tensor_out = norm(mg.Tensor(x))
    assert isinstance(tensor_out, mg.Tensor) and tensor_out.device == mg.Tensor(x).device
    np.testing.assert_allclose(tensor_out.numpy(), norm(x), rtol=1e-6)


@pytest.mark.backends("numpy")
def test_normalize_errors():
    with pytest.raises(ValueError, match="expected images with 3 channels, got 1"):
        data.Normalize([0.5] * 3, [1.0] * 3)(images(c=1))
    with pytest.raises(ValueError, match="std: expected finite positive values"):
        data.Normalize([0.0], [0.0])
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        data.Normalize([0.0], [1.0])(np.zeros((3, 4), np.float32))


@pytest.mark.backends("numpy")
def test_random_crop_is_a_window_of_the_zero_padded_image():
    x = images(200, h=5, w=6)
    out = data.RandomCrop(padding=2)(x, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == np.float32
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(out[i], padded[i, :, dy : dy + 5, dx : dx + 6])
        ]
        assert len(matches) == 1  # values are > 0.1, so only one window fits
        seen.add(matches[0])
    assert len(seen) == 25  # every offset in [0, 2 * padding] occurs
    np.testing.assert_array_equal(data.RandomCrop(0)(x, np.random.default_rng(0)), x)


@pytest.mark.backends("numpy")
def test_flip_is_an_exact_mirror():
    x = images(400)
    out = data.RandomHorizontalFlip()(x, np.random.default_rng(1))
    flipped = np.array([not np.array_equal(o, i) for o, i in zip(out, x)])
    np.testing.assert_array_equal(out[flipped], x[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], x[~flipped])
    assert 0.4 < flipped.mean() < 0.6
    np.testing.assert_array_equal(data.RandomHorizontalFlip(p=1.0)(x, np.random.default_rng(0)), x[..., ::-1])
    np.testing.assert_array_equal(data.RandomHorizontalFlip(p=0.0)(x, np.random.default_rng(0)), x)
    assert out is not x and np.array_equal(x, images(400))  # the input is not modified


@pytest.mark.backends("numpy")
def test_augmentation_is_determined_by_the_seed():
    x = images(32)
    norm = data.Normalize([0.5] * 3, [0.25] * 3)
    transform = data.cifar_train_transform(norm, padding=4)
    a = transform(x, mg.Generator(3).host)
    b = transform(x, mg.Generator(3).host)
    c = transform(x, mg.Generator(4).host)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # crop and flip act on [0, 1] pixels, normalization last: padding is black before normalizing
    raw = data.Compose([data.RandomCrop(4), data.RandomHorizontalFlip()])(x, mg.Generator(3).host)
    np.testing.assert_allclose(a, norm(raw), rtol=1e-6)


@pytest.mark.backends("numpy")
def test_transform_argument_errors():
    with pytest.raises(ValueError, match="padding: expected an integer >= 0, got -1"):
        data.RandomCrop(-1)
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\], got 2"):
        data.RandomHorizontalFlip(2)
    with pytest.raises(ValueError, match=r"RandomCrop: expected a batch of images of shape \(N, C, H, W\)"):
        data.RandomCrop(1)(np.zeros((3, 4, 4)), np.random.default_rng(0))
