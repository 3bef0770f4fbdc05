"""Optimizers, learning-rate schedules and weight averaging.

A training loop with all three::

    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = mg.optim.LRScheduler(opt, mg.optim.Warmup(100, mg.optim.CosineAnnealing(10_000)))
    ema = mg.optim.EMA(model, decay=0.999)
    for x, y in batches:
        opt.zero_grad()
        mg.cross_entropy(model(x), y).backward()
        opt.step(); sched.step(); ema.update()
    with ema.swapped():
        evaluate(model)

Every object here has ``state_dict()``/``load_state_dict()`` returning flat dicts of
backend arrays and Python numbers, ready for a checkpoint file.
"""

from minigrad.optim.adam import Adam
from minigrad.optim.ema import EMA
from minigrad.optim.optimizer import Optimizer
from minigrad.optim.rmsprop import RMSProp, RMSprop
from minigrad.optim.schedules import CosineAnnealing, LRScheduler, Schedule, StepDecay, Warmup
from minigrad.optim.sgd import SGD

__all__ = [
    "EMA",
    "SGD",
    "Adam",
    "CosineAnnealing",
    "LRScheduler",
    "Optimizer",
    "RMSProp",
    "RMSprop",
    "Schedule",
    "StepDecay",
    "Warmup",
]
