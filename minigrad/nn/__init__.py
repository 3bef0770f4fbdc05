"""Neural-network building blocks: Module, Parameter, layers, normalization and initialisation.

Where things live: ``minigrad/module.py`` (Module, Parameter), ``layers.py`` (Linear,
Conv2d, pooling, containers, ...), ``activations.py`` (Tanh, Sigmoid, ...), ``losses.py``
(CrossEntropyLoss, MSELoss, ...), ``init.py`` (He and Glorot), ``functional.py``
(stateless functions of tensors), ``recurrent.py`` (RNN, LSTM and their cells, with
normalization inside the recurrence). BatchNorm and Batch Renorm layers, the
r_max/d_max schedule and clipping telemetry live in :mod:`minigrad.norm`
and are re-exported here.
"""

from minigrad.module import Module, Parameter
from minigrad.nn import functional, init
from minigrad.nn.activations import LeakyReLU, LogSigmoid, LogSoftmax, Sigmoid, Softmax, Softplus, Tanh
from minigrad.nn.layers import (
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Linear,
    MaxPool2d,
    ModuleList,
    ReLU,
    Sequential,
)
from minigrad.nn.losses import CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from minigrad.nn.recurrent import LSTM, RNN, LSTMCell, RNNCell
from minigrad.norm import (
    BatchNorm1d,
    BatchNorm2d,
    BatchRenorm1d,
    BatchRenorm2d,
    LayerNorm,
    RenormSchedule,
    renorm_schedule,
    renorm_schedule_for_run,
    renorm_telemetry,
)

__all__ = [
    "LSTM", "RNN", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "BatchRenorm1d", "BatchRenorm2d", "Conv2d",
    "CrossEntropyLoss", "Dropout", "Flatten", "GlobalAvgPool2d", "Identity", "L1Loss", "LSTMCell", "LayerNorm",
    "LeakyReLU", "Linear", "LogSigmoid", "LogSoftmax", "MSELoss", "MaxPool2d", "Module", "ModuleList", "NLLLoss",
    "Parameter", "RNNCell", "ReLU", "RenormSchedule", "Sequential", "Sigmoid", "Softmax", "Softplus", "Tanh",
    "functional", "init", "renorm_schedule", "renorm_schedule_for_run", "renorm_telemetry",
]  # fmt: skip
