"""DataLoader: batches as tensors on the active backend, transforms, resume, evaluation helpers."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B
from minigrad import data


def toy(n: int = 40, classes: int = 4, seed: int = 0) -> data.Dataset:
    rng = np.random.default_rng(seed)
    images = rng.random((n, 3, 4, 4), dtype=np.float32)
    images[:, 0, 0, 0] = np.arange(n)  # example id, to find each example in a batch
    return data.Dataset(images, np.arange(n) % classes, num_classes=classes, name="toy")


def ids(images: mg.Tensor) -> np.ndarray:
    return images.numpy()[:, 0, 0, 0].astype(np.int64)


def test_batches_are_tensors_on_the_active_backend(backend):
    dataset = toy()
    loader = data.DataLoader(dataset, 8, seed=0)
    assert len(loader) == 5
    seen = []
    for images, labels in loader:
        assert isinstance(images, mg.Tensor) and isinstance(labels, mg.Tensor)
        assert B.library_of(images.data) == backend and B.library_of(labels.data) == backend
        assert B.dtype_name(images.dtype) == "float32" and B.dtype_name(labels.dtype) == "int64"
        assert images.shape == (8, 3, 4, 4) and labels.shape == (8,)
        np.testing.assert_array_equal(labels.numpy(), dataset.labels[ids(images)])
        seen.extend(ids(images))
    assert sorted(seen) == list(range(40))


def test_eval_loader_keeps_order_and_the_last_small_batch(backend):
    dataset = toy(23)
    loader = data.eval_loader(dataset, 5, transform=data.Normalize([0.0] * 3, [1.0] * 3))
    batches = list(loader)
    assert [len(x) for x, _ in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([ids(x) for x, _ in batches]), np.arange(23))
    assert len(list(loader)) == 5  # a second pass works the same


def test_transform_runs_on_the_host_batch_with_the_loader_rng(backend):
    dataset = toy()
    calls = []

    def transform(images, rng):
        calls.append(isinstance(images, np.ndarray) and isinstance(rng, np.random.Generator))
        return images * 2

    loader = data.DataLoader(dataset, sampler=data.SequentialSampler(dataset.labels, 10), transform=transform)
    images, _ = next(iter(loader))
    np.testing.assert_allclose(images.numpy(), dataset.images[:10] * 2)
    assert calls == [True]


def test_batches_cycle_epochs(backend):
    loader = data.DataLoader(toy(20), 8, seed=1)
    got = [ids(x) for x, _ in itertools.islice(loader.batches(), 5)]
    assert loader.epoch == 2 and all(len(g) == 8 for g in got)


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("regime", ["iid", "noniid", "halfsplit"])
def test_state_dict_resumes_sampler_and_augmentation_exactly(regime):
    dataset = toy(40)

    def make(seed):
        sampler = data.make_sampler(regime, dataset.labels, 8, seed=seed)
        return data.DataLoader(dataset, sampler=sampler, transform=data.cifar_train_transform(None, padding=1), seed=seed)

    loader = make(0)
    stream = loader.batches()
    for _ in range(7):
        next(stream)
    state = json.loads(json.dumps(loader.state_dict()))
    expected = [next(stream) for _ in range(6)]
    resumed = make(123)
    resumed.load_state_dict(state)
    for (x, y), (rx, ry) in zip(expected, itertools.islice(resumed.batches(), 6)):
        np.testing.assert_array_equal(x.numpy(), rx.numpy())
        np.testing.assert_array_equal(y.numpy(), ry.numpy())


@pytest.mark.backends("numpy")
def test_same_seed_same_augmented_batches_and_streams_are_independent():
    dataset = toy(40)
    transform = data.cifar_train_transform(None, padding=1)
    a = [x.numpy() for x, _ in data.DataLoader(dataset, 8, transform=transform, seed=5)]
    b = [x.numpy() for x, _ in data.DataLoader(dataset, 8, transform=transform, seed=5)]
    c = [x.numpy() for x, _ in data.DataLoader(dataset, 8, transform=transform, seed=6)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_sampled_eval_loader_composes_test_batches_like_training(backend):
    train, test = toy(80), toy(60, seed=1)
    sampler = data.NonIIDSampler(train.labels, 8, examples_per_label=2, seed=0)
    loader = data.sampled_eval_loader(test, sampler, batch_size=6, num_batches=4, seed=2)
    batches = list(loader)
    assert len(batches) == 4
    for images, labels in batches:
        pairs = labels.numpy().reshape(3, 2)
        assert (pairs[:, 0] == pairs[:, 1]).all()
        np.testing.assert_array_equal(labels.numpy(), test.labels[ids(images)])


@pytest.mark.backends("numpy")
def test_loader_argument_errors():
    dataset = toy(40)
    with pytest.raises(ValueError, match="give batch_size or sampler"):
        data.DataLoader(dataset)
    with pytest.raises(ValueError, match="batch_size=4 disagrees with the sampler's batch_size=8"):
        data.DataLoader(dataset, 4, sampler=data.IIDSampler(dataset.labels, 8))
    with pytest.raises(ValueError, match="built for 30 examples, but the dataset has 40"):
        data.DataLoader(dataset, sampler=data.IIDSampler(30, 8))
    with pytest.raises(TypeError, match="expected a minigrad.data.Dataset, got ndarray"):
        data.DataLoader(dataset.images, 8)
