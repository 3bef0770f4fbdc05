"""Batch samplers: which examples go into each minibatch, for the regimes of the Batch Renorm paper.

* :class:`IIDSampler` — the usual regime: a fresh random permutation every epoch.
* :class:`NonIIDSampler` — section 4.3: each batch of B holds B/k labels drawn
  uniformly *with replacement*, and k distinct examples of each (k=2: the
  paper's 16 labels x 2 images per batch of 32; k=B: single-label batches).
* :class:`HalfSplitSampler` — the same batches rearranged so that the two
  images of each label sit in different halves of the batch; a norm layer with
  ``virtual_batch_size=B/2`` then normalizes each (more i.i.d.) half alone.
* :class:`SequentialSampler` — fixed order, for evaluation.

A sampler yields 1-D int64 arrays of example indices, one per batch;
iterating it runs (the rest of) one epoch, :meth:`Sampler.batches` cycles
epochs forever. All randomness comes from a seeded
:class:`minigrad.random.Generator` (its host NumPy generator), and a whole
epoch of batches is drawn when the epoch starts. The state is therefore the
generator's state at the start of the current epoch plus the position within
it: :meth:`Sampler.load_state_dict` redraws that epoch and carries on, so a
resumed run sees exactly the batches the uninterrupted run would have seen.
States are plain JSON-serialisable data.

The non-i.i.d. samplers have no natural epoch (labels are drawn with
replacement); their "epoch" is ``num_batches`` batches, by default
``len(labels) // batch_size`` so that one epoch sees as many examples as an
i.i.d. epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from minigrad import backend, validate
from minigrad.random import Generator

np = backend.host


def _as_labels(labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"labels: expected a 1-D array of integer labels, got shape {array.shape} and dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def _count(labels_or_n: Any) -> int:
    """Number of examples from a labels array or an int."""
    if isinstance(labels_or_n, (int, np.integer)) and not isinstance(labels_or_n, bool):
        if labels_or_n < 0:
            raise ValueError(f"labels: expected a labels array or a number of examples >= 0, got {labels_or_n}")
        return int(labels_or_n)
    return int(_as_labels(labels_or_n).shape[0])


def distinct_positions(rng: np.random.Generator, counts: np.ndarray, k: int) -> np.ndarray:
    """For each row g, k distinct random positions in [0, counts[g]), as an int64 array (G, k).

    Each row is a uniformly random ordered k-subset, drawn without
    replacement and vectorized over rows: draw j picks uniformly among the
    ``counts - j`` positions not yet chosen (``r`` in [0, counts - j)) and maps
    ``r`` to the r-th unchosen position by stepping over the chosen ones in
    ascending order. Cost is O(k^2) vector operations over the G rows.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size and counts.min() < k:
        raise ValueError(f"counts: every count must be at least k={k}, got a minimum of {counts.min()}")
    draws = rng.integers(0, counts[:, None] - np.arange(k, dtype=np.int64)[None, :])
    chosen = np.empty((counts.shape[0], k), dtype=np.int64)
    for j in range(k):
        r = draws[:, j].copy()
        if j:
            previous = np.sort(chosen[:, :j], axis=1)
            for m in range(j):
                r += r >= previous[:, m]
        chosen[:, j] = r
    return chosen


class Sampler:
    """Base class: yields the index arrays of one epoch per iteration; seeded and resumable.

    Subclasses implement :meth:`_draw_epoch` (all the batches of one epoch from
    a NumPy generator), :meth:`__len__` and :meth:`_config` (the constructor
    arguments, saved in the state and used by :meth:`with_labels`).
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int | None) -> None:
        self.num_examples = num_examples
        self.batch_size = validate.positive_int("batch_size", batch_size)
        self.seed = seed
        self._generator = Generator(seed)
        self._epoch = 0
        self._position = 0
        self._batches: list[np.ndarray] | None = None
        self._epoch_rng_state: dict | None = None

    # -- to implement -----------------------------------------------------
    def _draw_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        raise NotImplementedError

    def __len__(self) -> int:
        """Number of batches in one epoch."""
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    # -- iteration ----------------------------------------------------------
    @property
    def epoch(self) -> int:
        """Index of the current epoch (0 until the first epoch has finished and a new one starts)."""
        return self._epoch

    def _start_epoch(self) -> None:
        if self._batches is not None:
            self._epoch += 1
        self._epoch_rng_state = copy.deepcopy(self._generator.get_state())
        self._batches = self._draw_epoch(self._generator.host)
        self._position = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        """The remaining batches of the current epoch (a new epoch when the last one is finished)."""
        if self._batches is None or self._position >= len(self._batches):
            self._start_epoch()
        assert self._batches is not None
        while self._position < len(self._batches):
            batch = self._batches[self._position]
            self._position += 1
            yield batch.copy()

    def batches(self) -> Iterator[np.ndarray]:
        """Batches forever, epoch after epoch (for step-based training)."""
        if len(self) == 0:
            raise ValueError(f"{type(self).__name__}: an epoch has no batch, so there is nothing to cycle through")
        while True:
            yield from self

    # -- state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the RNG state at the start of the current epoch and the position in it."""
        started = self._batches is not None
        rng = self._epoch_rng_state if started else self._generator.get_state()
        return {
            "kind": type(self).__name__,
            "config": self._config(),
            "num_examples": self.num_examples,
            "epoch": self._epoch,
            "position": self._position,
            "started": started,
            "rng": copy.deepcopy(rng),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state` (made by :meth:`state_dict` of a sampler with the same settings and data size).

        Call it before iterating: iterators already running share the sampler's
        position and would jump to the loaded one. The seed need not match; the
        random stream comes from the state.
        """
        expected = {"kind": type(self).__name__, "config": self._config(), "num_examples": self.num_examples}
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(f"load_state_dict: the state is for {key}={state.get(key)!r}, this sampler has {value!r}")
        self._generator.set_state(copy.deepcopy(state["rng"]))
        self._epoch = int(state["epoch"])
        if state["started"]:
            self._epoch_rng_state = copy.deepcopy(state["rng"])
            self._batches = self._draw_epoch(self._generator.host)
            self._position = int(state["position"])
        else:
            self._epoch_rng_state = None
            self._batches = None
            self._position = 0

    def with_labels(self, labels: Any, *, batch_size: int | None = None, seed: int | None = 0, **overrides: Any) -> Sampler:
        """A new sampler of the same kind and settings over other `labels` (e.g. test batches built like training ones).

        This is the paper's section 4.3 diagnostic: evaluate with batch
        statistics on test batches composed like the training batches (there,
        batches of 50: 25 labels x 2). Epoch length is recomputed from the new
        data unless ``num_batches`` is given.
        """
        config = {k: v for k, v in self._config().items() if k != "num_batches"}
        config.update(batch_size=batch_size or self.batch_size, seed=seed, **overrides)
        return type(self)(labels, **config)


class SequentialSampler(Sampler):
    """Indices 0..N-1 in order, in batches; the last, smaller batch is kept unless `drop_last`. For evaluation."""

    def __init__(self, labels: Any, batch_size: int, drop_last: bool = False, seed: int | None = 0) -> None:
        super().__init__(_count(labels), batch_size, seed)
        self.drop_last = bool(drop_last)

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _draw_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = np.arange(self.num_examples, dtype=np.int64)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]

    def _config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "drop_last": self.drop_last}


class IIDSampler(Sampler):
    """A new random permutation of all examples each epoch, cut into batches; the last incomplete batch is dropped.

    Args:
        labels: the labels (only their number is used) or the number of examples.
        batch_size: examples per batch.
        seed: seed of the sampler's :class:`~minigrad.random.Generator`.
        drop_last: drop the incomplete last batch (default, so every batch has the same size).
    """

    def __init__(self, labels: Any, batch_size: int, seed: int | None = 0, drop_last: bool = True) -> None:
        super().__init__(_count(labels), batch_size, seed)
        self.drop_last = bool(drop_last)
        if len(self) == 0:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than the {self.num_examples} examples and drop_last=True: "
                "an epoch would have no batch"
            )

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def _draw_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(self.num_examples).astype(np.int64)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]

    def _config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "drop_last": self.drop_last}


class NonIIDSampler(Sampler):
    """Batches of B/k labels x k examples each (section 4.3 of the paper); the k examples of a label are consecutive.

    For each batch, B/k labels are drawn uniformly *with replacement* from the
    labels present in `labels` (so a label can appear in two groups of one
    batch), then k distinct examples of each drawn label, uniformly without
    replacement within that group. Groups are independent: an example may
    appear in two groups of one batch when its label is drawn twice.

    Args:
        labels: int labels of the data set, shape (N,).
        batch_size: B.
        examples_per_label: k, examples per drawn label; must divide B. k=2 is
            the paper's setting (default); k=B gives single-label batches.
        labels_per_batch: B/k, an alternative way to give k (give one of the two,
            or both when consistent).
        seed: seed of the sampler's :class:`~minigrad.random.Generator`.
        num_batches: batches per epoch; default ``max(1, N // B)``.
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        examples_per_label: int | None = None,
        *,
        labels_per_batch: int | None = None,
        seed: int | None = 0,
        num_batches: int | None = None,
    ) -> None:
        labels = _as_labels(labels)
        super().__init__(int(labels.shape[0]), batch_size, seed)
        batch = self.batch_size
        if labels_per_batch is not None:
            labels_per_batch = validate.positive_int("labels_per_batch", labels_per_batch)
            if batch % labels_per_batch:
                raise ValueError(
                    f"batch_size={batch} is not divisible by labels_per_batch={labels_per_batch}: "
                    "each batch holds labels_per_batch groups of batch_size / labels_per_batch examples"
                )
            k = batch // labels_per_batch
            if examples_per_label is not None and validate.positive_int("examples_per_label", examples_per_label) != k:
                raise ValueError(
                    f"examples_per_label={examples_per_label} and labels_per_batch={labels_per_batch} disagree: "
                    f"batch_size={batch} needs examples_per_label * labels_per_batch == batch_size"
                )
        else:
            k = 2 if examples_per_label is None else validate.positive_int("examples_per_label", examples_per_label)
        if batch % k:
            raise ValueError(
                f"batch_size={batch} is not divisible by examples_per_label={k}: each batch holds "
                f"batch_size / examples_per_label groups of {k} same-label examples"
            )
        self.examples_per_label = k
        self.labels_per_batch = batch // k
        self._num_batches_arg = None if num_batches is None else validate.positive_int("num_batches", num_batches)
        self.num_batches = self._num_batches_arg or max(1, self.num_examples // batch)
        if self.num_examples == 0:
            raise ValueError("labels: expected at least one example, got an empty array")
        self.classes, counts = np.unique(labels, return_counts=True)
        too_few = self.classes[counts < k]
        if too_few.size:
            raise ValueError(
                f"examples_per_label={k}: labels {too_few.tolist()[:10]} have fewer than {k} examples, "
                f"so {k} distinct examples cannot be drawn for them (use a smaller k or more data)"
            )
        order = np.argsort(labels, kind="stable")
        self._order = order.astype(np.int64)
        self._counts = counts.astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return self.num_batches

    def _draw_groups(self, rng: np.random.Generator) -> np.ndarray:
        """Example indices of shape (num_batches, B/k, k): row [b, g] holds the k examples of group g of batch b."""
        groups = self.num_batches * self.labels_per_batch
        label_slots = rng.integers(0, self.classes.shape[0], size=groups)
        positions = distinct_positions(rng, self._counts[label_slots], self.examples_per_label)
        examples = self._order[self._starts[label_slots][:, None] + positions]
        return examples.reshape(self.num_batches, self.labels_per_batch, self.examples_per_label)

    def _draw_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        return list(self._draw_groups(rng).reshape(self.num_batches, self.batch_size))

    def _config(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "examples_per_label": self.examples_per_label,
            "num_batches": self._num_batches_arg,
        }


class HalfSplitSampler(NonIIDSampler):
    """Non-i.i.d. batches (B/2 labels x 2) with each same-label pair split across the two halves of the batch.

    The first half holds one example of every drawn label, the second half the
    other, at the same position: ``labels[batch[i]] == labels[batch[i + B/2]]``.
    A norm layer with ``virtual_batch_size = B/2`` (see
    :attr:`virtual_batch_size`) then normalizes each half on its own, and each
    half is closer to i.i.d. (the paper's 77.4% variant in section 4.3).

    With ``examples_per_label=k`` the batch is split into k parts of B/k the
    same way (part j holds the j-th example of every group); the paper notes
    this only makes sense for small k.
    """

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        examples_per_label: int | None = None,
        *,
        labels_per_batch: int | None = None,
        seed: int | None = 0,
        num_batches: int | None = None,
    ) -> None:
        super().__init__(
            labels,
            batch_size,
            examples_per_label,
            labels_per_batch=labels_per_batch,
            seed=seed,
            num_batches=num_batches,
        )

    @property
    def virtual_batch_size(self) -> int:
        """Size of each part of the batch (B/2 for pairs): the norm layers' virtual batch size."""
        return self.labels_per_batch

    def _draw_epoch(self, rng: np.random.Generator) -> list[np.ndarray]:
        groups = self._draw_groups(rng)  # (num_batches, B/k, k)
        return list(groups.transpose(0, 2, 1).reshape(self.num_batches, self.batch_size))


SAMPLERS: dict[str, type[Sampler]] = {
    "iid": IIDSampler,
    "noniid": NonIIDSampler,
    "halfsplit": HalfSplitSampler,
    "sequential": SequentialSampler,
}


def make_sampler(kind: str, labels: Any, batch_size: int, seed: int | None = 0, **options: Any) -> Sampler:
    """A sampler by name: "iid", "noniid", "halfsplit" or "sequential" (for command-line options).

    `options` go to the sampler (e.g. ``examples_per_label=2``, ``num_batches``, ``drop_last``).
    """
    key = kind.lower().replace("-", "").replace("_", "").replace(".", "")
    if key not in SAMPLERS:
        raise ValueError(f"sampler: expected one of {sorted(SAMPLERS)}, got {kind!r}")
    cls = SAMPLERS[key]
    if cls is SequentialSampler:
        return SequentialSampler(labels, batch_size, seed=seed, **options)
    return cls(labels, batch_size, seed=seed, **options)
