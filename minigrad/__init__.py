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
    active_backend,
    cuda_available,
    use_backend,
    using_backend,
)
from minigrad.checkpoint import CheckpointError, load, save
from minigrad.creation import arange, full, ones, ones_like, rand, randn, zeros, zeros_like
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
    logsumexp,
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
from minigrad.random import Generator, manual_seed
from minigrad.tensor import Function, Tensor, is_grad_enabled, no_grad, sum_to, tensor_method

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "DeviceMismatchError",
    "Function",
    "Generator",
    "GradcheckError",
    "Tensor",
    "abs",
    "active_backend",
    "arange",
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
    "full",
    "gradcheck",
    "is_grad_enabled",
    "load",
    "log",
    "log_softmax",
    "logsumexp",
    "manual_seed",
    "matmul",
    "max_pool2d",
    "maximum",
    "mean",
    "no_grad",
    "ones",
    "ones_like",
    "ops",
    "pad",
    "rand",
    "randn",
    "relu",
    "save",
    "sigmoid",
    "softmax",
    "sqrt",
    "squeeze",
    "stack",
    "sum_to",
    "tanh",
    "tensor",
    "tensor_method",
    "unsqueeze",
    "use_backend",
    "using_backend",
    "zeros",
    "zeros_like",
]

# ``mg.tensor(data)`` is the factory, as ``torch.tensor`` is; the engine module stays importable by its path
# (``from minigrad.tensor import Tensor``). Bound last, after every submodule import has set ``minigrad.tensor``.
from minigrad.creation import tensor
