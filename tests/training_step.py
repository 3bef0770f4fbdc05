"""One training step of a small normalized CNN, as ``minigrad train`` takes it, for tests that watch a step.

The step is the whole path from the loader to the updated weights: a batch
gathered and transformed on the host and moved to the active backend, the
forward, the cross-entropy, the backward, an SGD update with momentum and
weight decay, a learning-rate schedule and an EMA of the weights. Reading the
loss for a log line is the caller's, and is not part of the step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

import minigrad as mg


@dataclass
class Trainer:
    """A model, its optimizer and schedule, an EMA and an endless stream of batches."""

    model: mg.Module
    optimizer: mg.optim.Optimizer
    scheduler: mg.optim.LRScheduler
    ema: mg.optim.EMA
    batches: Iterator[tuple[mg.Tensor, mg.Tensor]]

    def step(self) -> mg.Tensor:
        """One training step; returns the loss tensor, unread."""
        images, labels = next(self.batches)
        loss = mg.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update()
        return loss


def make_trainer(model_name: str = "digits", norm: str = "brn", batch_size: int = 8, seed: int = 0) -> Trainer:
    """A :class:`Trainer` on random images: DigitsCNN (1x8x8) or a narrow CifarCNN (3x32x32)."""
    rng = np.random.default_rng(seed)
    generator = mg.random.Generator(seed)
    if model_name == "digits":
        shape, model = (1, 8, 8), mg.models.DigitsCNN(norm=norm, channels=(4, 8, 8), hidden=16, generator=generator)
    else:
        shape, model = (3, 32, 32), mg.models.CifarCNN(norm=norm, channels=(4, 8, 8), generator=generator)
    n = 4 * batch_size
    dataset = mg.data.Dataset(rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n), 10)
    transform = mg.data.Compose([mg.data.Normalize.fit(dataset), mg.data.RandomHorizontalFlip()])
    loader = mg.data.DataLoader(dataset, batch_size, transform=transform, seed=seed)
    optimizer = mg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    scheduler = mg.optim.LRScheduler(optimizer, mg.optim.CosineAnnealing(100))
    return Trainer(model, optimizer, scheduler, mg.optim.EMA(model, decay=0.9), loader.batches())
