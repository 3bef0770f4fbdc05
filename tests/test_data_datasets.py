"""Dataset container, subsets, the digits loader and load_dataset dispatch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minigrad import data

pytestmark = pytest.mark.backends("numpy")  # host-side code only


def test_dataset_validates_its_arrays():
    images = np.zeros((4, 1, 2, 2), np.float64)
    dataset = data.Dataset(images, [0, 1, 2, 1], name="x")
    assert dataset.images.dtype == np.float32 and dataset.labels.dtype == np.int64
    assert (len(dataset), dataset.num_classes, dataset.image_shape) == (4, 3, (1, 2, 2))
    np.testing.assert_array_equal(dataset.class_counts(), [1, 2, 1])
    with pytest.raises(TypeError, match="scale integer pixels to"):
        data.Dataset(np.zeros((4, 1, 2, 2), np.uint8), [0] * 4)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\), got shape \(4, 2, 2\)"):
        data.Dataset(np.zeros((4, 2, 2)), [0] * 4)
    with pytest.raises(ValueError, match=r"expected shape \(4,\)"):
        data.Dataset(images, [0] * 3)
    with pytest.raises(ValueError, match=r"values in \[0, 2\)"):
        data.Dataset(images, [0, 1, 2, 1], num_classes=2)
    with pytest.raises(ValueError, match="class_names: expected 3 names"):
        data.Dataset(images, [0, 1, 2, 1], class_names=["a"])


def test_stratified_subset_keeps_class_shares_and_is_deterministic():
    labels = np.repeat(np.arange(3), [50, 30, 20])
    dataset = data.Dataset(np.arange(100, dtype=np.float32).reshape(100, 1, 1, 1), labels, name="d")
    small = dataset.subset(10, seed=1)
    assert small.name == "d-subset10" and len(small) == 10
    np.testing.assert_array_equal(small.class_counts(), [5, 3, 2])
    positions = small.images.ravel().astype(int)
    assert (np.diff(positions) > 0).all()  # original order kept
    np.testing.assert_array_equal(dataset.subset(10, seed=1).images, small.images)
    assert not np.array_equal(dataset.subset(10, seed=2).images, small.images)
    np.testing.assert_array_equal(dataset.subset(7, seed=0).class_counts(), [4, 2, 1])  # largest remainders
    plain = dataset.subset(10, seed=1, stratified=False)
    assert len(np.unique(plain.images)) == 10
    assert len(dataset.subset(100)) == 100
    for bad in (0, 101, 2.5):
        with pytest.raises(ValueError, match=r"n must be an integer in \[1, 100\]"):
            dataset.subset(bad)


def test_digits():
    pytest.importorskip("sklearn")
    train, test = data.load_digits()
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape == (1437, 1, 8, 8) and train.images.dtype == np.float32
    assert train.labels.dtype == np.int64 and train.num_classes == test.num_classes == 10
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    assert set(np.unique(train.images * 16)) <= set(range(17))  # 0..16 scaled by 1/16
    assert (test.class_counts() >= 35).all() and (train.class_counts() >= 139).all()  # stratified
    again, _ = data.load_digits()
    np.testing.assert_array_equal(again.images, train.images)
    sub, _ = data.load_dataset("digits", train_subset=100)
    assert len(sub) == 100 and (sub.class_counts() >= 9).all()


def test_missing_optional_dependency_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"scikit-learn.*pip install 'minigrad\[data\]'"):
        data.load_digits()


def test_load_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match=r"dataset: expected one of \['digits', 'cifar10', 'imagefolder'\], got 'mnist'"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="digits is bundled with scikit-learn and takes no path"):
        data.load_dataset("digits", tmp_path)
    with pytest.raises(ValueError, match="imagefolder needs the folder"):
        data.load_dataset("imagefolder")
    with pytest.raises(data.DatasetNotFoundError, match=r"download=True.*cifar-10-python\.tar\.gz"):
        data.load_dataset("CIFAR-10", tmp_path / "missing")
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.load_dataset("imagefolder", tmp_path / "missing")
