"""Batch transforms: per-channel normalization and CIFAR augmentation (random crop with padding, horizontal flip).

Transforms work on whole batches of host (NumPy) float32 images in NCHW
layout, before the batch is copied to the device; the loader calls them as
``transform(images, rng)`` with the host NumPy generator of its seeded
:class:`minigrad.random.Generator`, so augmentation is reproducible and its
state is saved with the loader's. Augmenting on the host keeps the code in
plain NumPy (fancy indexing for the crops), costs little next to the model's
step, and is identical on every backend.

Order matters: crop and flip act on the [0, 1] pixels (so padding is black,
as in the usual CIFAR recipe), then :class:`Normalize`. :func:`cifar_train_transform`
builds that pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minigrad import backend
from minigrad.data.datasets import Dataset
from minigrad.tensor import Tensor

np = backend.host

Transform = Callable[..., Any]


def _check_batch(images: Any, who: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{who}: expected a batch of images of shape (N, C, H, W), got shape {images.shape}")
    return images


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel, with statistics from the training set.

    Build it with :meth:`fit` on the training set (never on the test set), or
    give `mean` and `std` (one value per channel). Works on host NumPy arrays
    and on backend arrays (any array API namespace), so it can also run on the
    device after the transfer.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_array = np.asarray(mean, dtype=np.float64).reshape(-1)
        std_array = np.asarray(std, dtype=np.float64).reshape(-1)
        if mean_array.shape != std_array.shape:
            raise ValueError(
                f"mean and std: expected one value per channel each, got {mean_array.size} and {std_array.size}"
            )
        if np.any(std_array <= 0) or not np.all(np.isfinite(std_array)):
            raise ValueError(f"std: expected finite positive values, got {std_array.tolist()}")
        self.mean = mean_array.astype(np.float32)
        self.std = std_array.astype(np.float32)

    @classmethod
    def fit(cls, data: Dataset | Any, eps: float = 1e-8) -> Normalize:
        """Per-channel mean and (population) standard deviation of `data` (a Dataset or an NCHW array).

        Sums run in float64, a channel at a time, to stay exact on 50,000
        images without a float64 copy of the whole set. A constant channel
        (std below `eps`) gets std 1, so it is only centred.
        """
        images = _check_batch(data.images if isinstance(data, Dataset) else data, "Normalize.fit")
        means, stds = [], []
        for c in range(images.shape[1]):
            channel = images[:, c]
            mean = float(np.mean(channel, dtype=np.float64))
            var = float(np.mean(np.square(channel - np.float32(mean), dtype=np.float64)))
            std = var**0.5
            means.append(mean)
            stds.append(std if std >= eps else 1.0)
        return cls(means, stds)

    def __call__(self, images: Any, rng: np.random.Generator | None = None) -> Any:
        """Normalize a batch (N, C, H, W); `rng` is accepted for the transform protocol and unused.

        Host arrays give host arrays, backend arrays stay on their device, and a
        :class:`~minigrad.Tensor` gives a Tensor (not recorded for autodiff).
        """
        if isinstance(images, Tensor):
            return Tensor(self(images.data))
        if isinstance(images, np.ndarray):
            images = _check_batch(images, "Normalize")
            channels = images.shape[1]
            mean, std = self.mean.reshape(1, -1, 1, 1), self.std.reshape(1, -1, 1, 1)
        else:
            xp = backend.namespace(images)
            if images.ndim != 4:
                raise ValueError(f"Normalize: expected a batch of images of shape (N, C, H, W), got shape {images.shape}")
            channels = images.shape[1]
            mean = backend.astype(backend.to_device(backend.from_numpy(self.mean), backend.device_of(images)), images.dtype)
            std = backend.astype(backend.to_device(backend.from_numpy(self.std), backend.device_of(images)), images.dtype)
            mean, std = xp.reshape(mean, (1, -1, 1, 1)), xp.reshape(std, (1, -1, 1, 1))
        if channels != self.mean.size:
            raise ValueError(f"Normalize: expected images with {self.mean.size} channels, got {channels}")
        out = (images - mean) / std
        return out.astype(np.float32, copy=False) if isinstance(out, np.ndarray) else out

    def state_dict(self) -> dict[str, list[float]]:
        """The statistics as plain lists (for checkpoints)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Sequence[float]]) -> Normalize:
        return cls(state["mean"], state["std"])

    def __repr__(self) -> str:
        return f"Normalize(mean={np.round(self.mean, 4).tolist()}, std={np.round(self.std, 4).tolist()})"


class RandomCrop:
    """Zero-pad each image by `padding` pixels on every side, then cut a random H x W window (one offset per image).

    Offsets are drawn uniformly in [0, 2 * padding] for rows and columns, so the
    window ``padded[:, :, dy:dy+H, dx:dx+W]`` keeps the original size.
    """

    def __init__(self, padding: int = 4) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding: expected an integer >= 0, got {padding!r}")
        self.padding = padding

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        images = _check_batch(images, "RandomCrop")
        if self.padding == 0:
            return images.copy()
        n, c, h, w = images.shape
        p = self.padding
        padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=images.dtype)
        padded[:, :, p : p + h, p : p + w] = images
        offsets = rng.integers(0, 2 * p + 1, size=(n, 2))
        rows = offsets[:, 0, None] + np.arange(h)  # (n, h)
        cols = offsets[:, 1, None] + np.arange(w)  # (n, w)
        batch = np.arange(n)[:, None, None, None]
        channel = np.arange(c)[None, :, None, None]
        return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability `p` (drawn per image)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p!r}")
        self.p = p

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        images = _check_batch(images, "RandomHorizontalFlip").copy()
        flip = rng.random(images.shape[0]) < self.p
        images[flip] = images[flip][..., ::-1]
        return images

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply `transforms` in order, each as ``t(images, rng)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, images: Any, rng: np.random.Generator | None = None) -> Any:
        for transform in self.transforms:
            images = transform(images, rng)
        return images

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def cifar_train_transform(normalize: Normalize | None, padding: int = 4, flip: bool = True) -> Compose:
    """The standard CIFAR training pipeline: random crop (zero padding), horizontal flip, then `normalize`."""
    steps: list[Transform] = [RandomCrop(padding)]
    if flip:
        steps.append(RandomHorizontalFlip())
    if normalize is not None:
        steps.append(normalize)
    return Compose(steps)
