"""Differentiable ops, one module per family; importing this package attaches them to Tensor.

To add an op: write a :class:`~minigrad.tensor.Function` subclass (forward and
backward on arrays) and a public function decorated with ``@tensor_method``
in the module of its family, then export the function here.
"""

from minigrad.ops.conv import avg_pool2d, conv2d, dropout, global_avg_pool2d, max_pool2d
from minigrad.ops.elementwise import (
    abs,
    add,
    div,
    equal,
    exp,
    greater,
    leaky_relu,
    less,
    log,
    maximum,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sqrt,
    sub,
    tanh,
)
from minigrad.ops.linalg import matmul
from minigrad.ops.loss import cross_entropy, l1_loss, log_softmax, mse_loss, nll_loss, softmax
from minigrad.ops.reduce import argmax, max, mean, sum
from minigrad.ops.shape import (
    concatenate,
    flatten,
    pad,
    permute,
    reshape,
    squeeze,
    stack,
    t,
    take,
    transpose,
    unsqueeze,
    view,
)

__all__ = [
    "abs",
    "add",
    "argmax",
    "avg_pool2d",
    "concatenate",
    "conv2d",
    "cross_entropy",
    "div",
    "dropout",
    "equal",
    "exp",
    "flatten",
    "global_avg_pool2d",
    "greater",
    "l1_loss",
    "leaky_relu",
    "less",
    "log",
    "log_softmax",
    "matmul",
    "max",
    "max_pool2d",
    "maximum",
    "mean",
    "mse_loss",
    "mul",
    "neg",
    "nll_loss",
    "pad",
    "permute",
    "pow",
    "relu",
    "reshape",
    "sigmoid",
    "softmax",
    "sqrt",
    "squeeze",
    "stack",
    "sub",
    "sum",
    "t",
    "take",
    "tanh",
    "transpose",
    "unsqueeze",
    "view",
]
