"""Data pipeline: datasets in host memory, the paper's batch samplers, batch transforms and a loader.

For example::

    import minigrad as mg
    train, test = mg.data.load_dataset("digits")
    norm = mg.data.Normalize.fit(train)
    sampler = mg.data.NonIIDSampler(train.labels, batch_size=32, examples_per_label=2, seed=0)
    loader = mg.data.DataLoader(train, sampler=sampler, transform=norm, seed=0)
    for images, labels in loader:  # mg.Tensor float32 (32, 1, 8, 8), int64 (32,)
        ...

Data stays in NumPy on the host (``backend.host``); only finished batches go
to the active backend. scikit-learn (digits) and Pillow (image folders) are
optional: ``pip install 'minigrad[data]'``.
"""

from minigrad.data.catalog import DATASETS, load_dataset
from minigrad.data.cifar10 import (
    CIFAR10_MD5,
    CIFAR10_URL,
    default_cache_dir,
    download_cifar10,
    load_cifar10,
    read_cifar10_archive,
    read_cifar10_folder,
    verify_archive,
)
from minigrad.data.datasets import (
    CorruptArchiveError,
    Dataset,
    DatasetNotFoundError,
    load_digits,
    stratified_indices,
)
from minigrad.data.imagefolder import load_image_folder
from minigrad.data.loader import DataLoader, eval_loader, sampled_eval_loader
from minigrad.data.samplers import (
    HalfSplitSampler,
    IIDSampler,
    NonIIDSampler,
    Sampler,
    SequentialSampler,
    make_sampler,
)
from minigrad.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    cifar_train_transform,
)

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "DATASETS",
    "Compose",
    "CorruptArchiveError",
    "DataLoader",
    "Dataset",
    "DatasetNotFoundError",
    "HalfSplitSampler",
    "IIDSampler",
    "NonIIDSampler",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Sampler",
    "SequentialSampler",
    "cifar_train_transform",
    "default_cache_dir",
    "download_cifar10",
    "eval_loader",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "make_sampler",
    "read_cifar10_archive",
    "read_cifar10_folder",
    "sampled_eval_loader",
    "stratified_indices",
    "verify_archive",
]
