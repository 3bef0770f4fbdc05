"""Neural-network building blocks: Module, Parameter, layers, normalization and initialisation.

Where things live: ``minigrad/module.py`` (Module, Parameter), ``layers.py`` (Linear,
Conv2d, pooling, ...), ``init.py`` (He and Glorot), ``functional.py``
(stateless functions of tensors), ``recurrent.py`` (RNN, LSTM and their cells, with
normalization inside the recurrence). BatchNorm and Batch Renorm layers, the
r_max/d_max schedule and clipping telemetry live in :mod:`minigrad.norm`
and are re-exported here.
"""

from minigrad.module import Module, Parameter
from minigrad.nn import functional, init
from minigrad.nn.layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
from minigrad.nn.recurrent import LSTM, RNN, LSTMCell, RNNCell
from minigrad.norm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchRenorm1d,
    BatchRenorm2d,
    LayerNorm,
    RenormSchedule,
    renorm_schedule,
    renorm_telemetry,
)

__all__ = [
    "LSTM", "RNN", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "BatchRenorm1d", "BatchRenorm2d", "Conv2d", "Dropout",
    "Flatten", "GlobalAvgPool2d", "Identity", "LSTMCell", "LayerNorm", "Linear", "MaxPool2d", "Module", "Parameter",
    "RNNCell", "ReLU", "RenormSchedule", "Sequential", "functional", "init", "renorm_schedule", "renorm_telemetry",
]  # fmt: skip
