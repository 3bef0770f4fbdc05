"""Image folders (and tar archives of them) decoded with Pillow, including a slice of the real CIFAR-10 JPEG archive."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from minigrad import data
from minigrad.data import imagefolder

pytestmark = pytest.mark.backends("numpy")  # host-side code only
Image = pytest.importorskip("PIL.Image")

SHARED_ARCHIVE = Path("/work/shared/data/cifar10-jpeg.tar.gz")
CLASSES = ("ant", "bee", "cat")  # sorted: labels 0, 1, 2


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_folder(root: Path, per_class: int = 2, size: tuple[int, int] = (4, 5), seed: int = 0) -> dict[str, np.ndarray]:
    """PNG images (H, W) = size in root/<class>/; returns the expected pixels per class (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    expected = {}
    for cls in reversed(CLASSES):  # creation order must not matter
        images = rng.integers(0, 256, size=(per_class, *size, 3), dtype=np.uint8)
        for i, pixels in enumerate(images):
            write_png(root / cls / f"{i:03d}.png", pixels)
        expected[cls] = images
    (root / CLASSES[0] / "notes.txt").write_text("not an image")
    (root / CLASSES[0] / ".hidden.png").write_bytes(b"ignored")
    return expected


def as_nchw(expected: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([expected[c] for c in CLASSES]).transpose(0, 3, 1, 2) / 255.0


def test_class_folders(tmp_path):
    expected = make_folder(tmp_path / "pets")
    dataset = data.load_image_folder(tmp_path / "pets")
    assert isinstance(dataset, data.Dataset)
    assert dataset.name == "pets" and dataset.class_names == CLASSES and dataset.num_classes == 3
    assert dataset.images.shape == (6, 3, 4, 5) and dataset.images.dtype == np.float32
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(dataset.images, as_nchw(expected), rtol=1e-6)


def test_grey_and_jpeg_images_become_rgb(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    write_png(tmp_path / "a" / "grey.png", grey)
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((4, 5, 3), 200, dtype=np.uint8)).save(tmp_path / "b" / "x.jpg")
    write_png(tmp_path / "b" / "y.jpg", np.full((4, 5, 3), 7, dtype=np.uint8))  # a PNG named .jpg
    dataset = data.load_image_folder(tmp_path)
    np.testing.assert_allclose(dataset.images[0], np.broadcast_to(grey / 255.0, (3, 4, 5)), rtol=1e-6)
    np.testing.assert_allclose(dataset.images[1], 200 / 255.0, atol=3 / 255.0)  # JPEG is lossy
    np.testing.assert_allclose(dataset.images[2], 7 / 255.0, rtol=1e-6)


def test_train_test_layout_wrapper_folder_and_archive(tmp_path):
    root = tmp_path / "outer" / "mydata"
    train_expected = make_folder(root / "train", per_class=2, seed=1)
    rng = np.random.default_rng(2)
    test_pixels = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    write_png(root / "test" / "cat" / "0.png", test_pixels)  # test/ may lack some classes
    for path in (root, tmp_path / "outer"):
        train, test = data.load_image_folder(path)
        assert train.class_names == CLASSES and test.class_names == CLASSES
        np.testing.assert_allclose(train.images, as_nchw(train_expected), rtol=1e-6)
        np.testing.assert_array_equal(test.labels, [2])
        np.testing.assert_allclose(test.images[0], test_pixels.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    archive = tmp_path / "mydata.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="mydata")
    train_a, test_a = data.load_image_folder(archive)
    np.testing.assert_array_equal(train_a.images, train.images)
    np.testing.assert_array_equal(test_a.labels, test.labels)
    assert (train_a.name, test_a.name) == ("mydata", "mydata-test")
    train_c, test_c = data.load_dataset("cifar10", archive)  # a tar of images is detected
    assert (train_c.name, test_c.name) == ("cifar10", "cifar10-test")
    train_f, _ = data.load_dataset("imagefolder", root)
    assert len(train_f) == 6


def test_images_must_share_one_size(tmp_path):
    make_folder(tmp_path, size=(4, 5))
    write_png(tmp_path / "cat" / "zzz.png", np.zeros((6, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"zzz\.png: image size is 5x6.*all images must share one size"):
        data.load_image_folder(tmp_path)


def test_bad_layouts_and_missing_folder(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="does not exist; expected a folder with one sub-folder"):
        data.load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files found"):
        data.load_image_folder(tmp_path / "empty")
    write_png(tmp_path / "mixed" / "a" / "1.png", np.zeros((2, 2, 3), dtype=np.uint8))
    write_png(tmp_path / "mixed" / "loose.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="expected an image-folder layout"):
        data.load_image_folder(tmp_path / "mixed")
    write_png(tmp_path / "split" / "train" / "a" / "1.png", np.zeros((2, 2, 3), dtype=np.uint8))
    write_png(tmp_path / "split" / "test" / "b" / "1.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"test/ has class folders \['b'\]"):
        data.load_image_folder(tmp_path / "split")
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"x\.png: cannot decode"):
        data.load_image_folder(tmp_path / "broken")
    make_folder(tmp_path / "flat")
    with pytest.raises(ValueError, match="no train/ and test/"):
        data.load_dataset("imagefolder", tmp_path / "flat")


def test_decoded_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    make_folder(tmp_path / "pets")
    cache = tmp_path / "cache" / "pets.npz"
    first = data.load_image_folder(tmp_path / "pets", cache=cache)
    assert cache.is_file() and not list(cache.parent.glob("*.part"))
    real_decode = imagefolder._decode
    monkeypatch.setattr(imagefolder, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))
    second = data.load_image_folder(tmp_path / "pets", cache=cache)
    np.testing.assert_array_equal(second.images, first.images)
    assert second.class_names == first.class_names
    write_png(tmp_path / "pets" / "bee" / "new.png", np.zeros((4, 5, 3), dtype=np.uint8))
    calls = []
    monkeypatch.setattr(imagefolder, "_decode", lambda *a: calls.append(1) or real_decode(*a))
    third = data.load_image_folder(tmp_path / "pets", cache=cache)
    assert calls and len(third) == 7


@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason=f"{SHARED_ARCHIVE} is not on this machine")
def test_slice_of_the_real_cifar10_jpeg_archive(tmp_path):
    per_class = 2

    def few_per_class(archive: tarfile.TarFile):
        """The first `per_class` files of every split/class folder (the archive is read in one pass)."""
        taken: dict[str, int] = {}
        for member in archive:
            folder = member.name.rsplit("/", 1)[0]
            if member.isfile() and taken.get(folder, 0) < per_class:
                taken[folder] = taken.get(folder, 0) + 1
                yield member

    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(SHARED_ARCHIVE, "r:gz") as archive:
        archive.extractall(tmp_path, members=few_per_class(archive), **safe)
    train, test = data.load_dataset("cifar10", tmp_path)  # the parent of cifar10-jpeg/
    for split in (train, test):
        assert split.images.shape == (10 * per_class, 3, 32, 32)
        assert split.class_names == data.cifar10.CIFAR10_CLASSES
        np.testing.assert_array_equal(split.class_counts(), [per_class] * 10)
        assert split.images.min() >= 0.0 and split.images.max() <= 1.0 and split.images.std() > 0.05
