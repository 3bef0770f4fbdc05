"""DataLoader: gathers the batches a sampler chooses, transforms them on the host, and moves them to the backend.

Each batch is one fancy-indexing gather from the dataset's host arrays, an
optional batch transform (augmentation, normalization) run with the loader's
seeded augmentation generator, and one copy to the active backend, wrapped as
``(images, labels)`` :class:`minigrad.Tensor`\\ s (float32 and int64). There is
no background prefetching, so the sampler and augmentation states saved by
:meth:`DataLoader.state_dict` always match the batches already handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from minigrad import backend
from minigrad.data.datasets import Dataset
from minigrad.data.samplers import IIDSampler, Sampler, SequentialSampler
from minigrad.data.transforms import Transform
from minigrad.random import Generator
from minigrad.tensor import Tensor

np = backend.host


def _augmentation_seed(seed: int | None) -> int | None:
    """A seed for the augmentation stream, independent of the sampler's stream of the same `seed`."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), 0xA06]).generate_state(1, np.uint64)[0])


class DataLoader:
    """Batches of `dataset` as ``(images, labels)`` tensors on the active backend.

    Args:
        dataset: the :class:`Dataset`.
        batch_size: examples per batch, to build the default sampler (ignored
            when `sampler` is given, except that it must then match).
        sampler: a :class:`~minigrad.data.samplers.Sampler` choosing the examples
            of each batch (non-i.i.d. regimes, ...).
        transform: a batch transform called as ``transform(images, rng)`` on host
            float32 NCHW arrays (see :mod:`minigrad.data.transforms`).
        shuffle: without a sampler: :class:`IIDSampler` (True, default) or
            :class:`SequentialSampler` (False).
        seed: seeds the default sampler and the augmentation generator.
        drop_last: without a sampler: drop the incomplete last batch; defaults
            to `shuffle` (drop when training, keep every example when evaluating).

    Iterating gives (the rest of) one epoch; :meth:`batches` cycles epochs forever.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int | None = None,
        *,
        sampler: Sampler | None = None,
        transform: Transform | None = None,
        shuffle: bool = True,
        seed: int | None = 0,
        drop_last: bool | None = None,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset: expected a minigrad.data.Dataset, got {type(dataset).__name__}")
        if sampler is None:
            if batch_size is None:
                raise ValueError("DataLoader: give batch_size or sampler")
            drop = shuffle if drop_last is None else drop_last
            if shuffle:
                sampler = IIDSampler(len(dataset), batch_size, seed=seed, drop_last=drop)
            else:
                sampler = SequentialSampler(len(dataset), batch_size, drop_last=drop)
        else:
            if not isinstance(sampler, Sampler):
                raise TypeError(f"sampler: expected a minigrad.data.Sampler, got {type(sampler).__name__}")
            if batch_size is not None and batch_size != sampler.batch_size:
                raise ValueError(f"batch_size={batch_size} disagrees with the sampler's batch_size={sampler.batch_size}")
            if sampler.num_examples != len(dataset):
                raise ValueError(
                    f"sampler: built for {sampler.num_examples} examples, but the dataset has {len(dataset)}; "
                    "build it from this dataset's labels"
                )
        self.dataset = dataset
        self.sampler = sampler
        self.transform = transform
        self.batch_size = sampler.batch_size
        self.augmentation_generator = Generator(_augmentation_seed(seed))

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.sampler)

    def collate(self, indices: np.ndarray) -> tuple[Tensor, Tensor]:
        """The batch of examples `indices`: gathered, transformed on the host, then moved to the backend."""
        images = self.dataset.images[indices]
        labels = self.dataset.labels[indices]
        if self.transform is not None:
            images = self.transform(images, self.augmentation_generator.host)
        images = np.ascontiguousarray(images, dtype=np.float32)
        return Tensor(images, dtype="float32"), Tensor(labels, dtype="int64")

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for indices in self.sampler:
            yield self.collate(indices)

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches forever, epoch after epoch (for step-based training: ``next(it)`` per step)."""
        for indices in self.sampler.batches():
            yield self.collate(indices)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the sampler's and the augmentation generator's."""
        return {"sampler": self.sampler.state_dict(), "augmentation_rng": self.augmentation_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where the loader that made `state` was (call before iterating)."""
        self.sampler.load_state_dict(state["sampler"])
        self.augmentation_generator.set_state(state["augmentation_rng"])


def eval_loader(dataset: Dataset, batch_size: int, transform: Transform | None = None) -> DataLoader:
    """Every example of `dataset` once, in fixed order, in batches (the last one may be smaller)."""
    return DataLoader(dataset, batch_size, transform=transform, shuffle=False, drop_last=False)


def sampled_eval_loader(
    dataset: Dataset,
    like: Sampler,
    batch_size: int | None = None,
    *,
    num_batches: int | None = None,
    seed: int | None = 0,
    transform: Transform | None = None,
) -> DataLoader:
    """Test batches composed like the training batches of sampler `like` (the paper's section 4.3 diagnostic).

    The paper evaluates its non-i.i.d. model with batch statistics on test
    batches of 50 built like the training batches (25 labels x 2 images). Give
    the training sampler as `like`, and optionally another `batch_size` and
    `num_batches` (default: about one pass over the test set).
    """
    extra = {} if num_batches is None else {"num_batches": num_batches}
    sampler = like.with_labels(dataset.labels, batch_size=batch_size, seed=seed, **extra)
    return DataLoader(dataset, sampler=sampler, transform=transform, seed=seed)
