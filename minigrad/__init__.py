"""minigrad: a readable autodiff engine on NumPy and CuPy, built around Batch Renormalization.

For example::

    import minigrad as mg
    x = mg.Tensor([[1.0, 2.0]], requires_grad=True)
    (x * x).sum().backward()
    x.grad  # array([[2., 4.]])
"""

from minigrad import (
    data,
    models,
    nn,
    norm,
    ops,
    optim,
)
from minigrad.backend import (
    BackendUnavailableError,
    DeviceMismatchError,
    Generator,
    active_backend,
    cuda_available,
    manual_seed,
    use_backend,
    using_backend,
)
from minigrad.gradcheck import GradcheckError, gradcheck
from minigrad.ops import (
    abs,
    argmax,
    avg_pool2d,
    concatenate,
    conv2d,
    cross_entropy,
    exp,
    flatten,
    log,
    log_softmax,
    matmul,
    max_pool2d,
    maximum,
    mean,
    pad,
    relu,
    sigmoid,
    softmax,
    sqrt,
    squeeze,
    stack,
    tanh,
    unsqueeze,
)
from minigrad.tensor import Function, Tensor, is_grad_enabled, no_grad, sum_to, tensor_method

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "DeviceMismatchError",
    "Function",
    "Generator",
    "GradcheckError",
    "Tensor",
    "abs",
    "active_backend",
    "nn",
    "norm",
    "models",
    "argmax",
    "avg_pool2d",
    "concatenate",
    "conv2d",
    "cross_entropy",
    "cuda_available",
    "exp",
    "flatten",
    "gradcheck",
    "is_grad_enabled",
    "log",
    "log_softmax",
    "manual_seed",
    "matmul",
    "max_pool2d",
    "maximum",
    "mean",
    "no_grad",
    "ops",
    "pad",
    "relu",
    "sigmoid",
    "softmax",
    "sqrt",
    "squeeze",
    "stack",
    "sum_to",
    "tanh",
    "tensor_method",
    "unsqueeze",
    "use_backend",
    "using_backend",
]
