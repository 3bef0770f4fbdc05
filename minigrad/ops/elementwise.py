"""Elementwise ops: arithmetic, powers, exp/log, activations, comparisons.

Binary ops broadcast like NumPy; their backward returns gradients of the
broadcast shape and the engine sums them back to each operand's shape.
"""

from __future__ import annotations

import math
from typing import Any

from minigrad import backend, validate
from minigrad.tensor import Function, Tensor, as_tensor, tensor_method


def _binary(fn_class: type[Function], a: Any, b: Any) -> Tensor:
    """Apply a broadcasting binary op, turning Python numbers into tensors like the other operand."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    backend.broadcast_shapes(a.shape, b.shape)  # a clear error naming both shapes
    return fn_class.apply(a, b)


class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return grad * self.b, grad * self.a


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        grad_a = grad / self.b
        return grad_a, -grad_a * self.a / self.b


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return -grad


class PowScalar(Function):
    """x ** p for a constant number p."""

    exponent: float

    def forward(self, x):
        self.x = x
        return x**self.exponent

    def backward(self, grad):
        return grad * self.exponent * self.x ** (self.exponent - 1)


class Pow(Function):
    """a ** b with both operands tensors: d/da = b a^(b-1), d/db = a^b log(a)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, grad):
        xp = backend.namespace(grad)
        grad_a = grad * self.b * self.a ** (self.b - 1) if self.needs_input_grad[0] else None
        grad_b = grad * self.out * xp.log(self.a) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Exp(Function):
    def forward(self, x):
        self.out = backend.namespace(x).exp(x)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    def forward(self, x):
        self.x = x
        return backend.namespace(x).log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    def forward(self, x):
        self.out = backend.namespace(x).sqrt(x)
        return self.out

    def backward(self, grad):
        return grad / (2 * self.out)


def _sigmoid_pair(x):
    """(sigmoid(x), sigmoid(-x)), each to full relative precision: built from z = exp(-|x|), which never overflows.

    sigmoid(x) = 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0; the pair
    lets gradients use sigmoid(x) * sigmoid(-x) instead of s * (1 - s), which
    cancels to 0 once s rounds to 1 (x > 37 in float64, x > 17 in float32).
    """
    xp = backend.namespace(x)
    z = xp.exp(-xp.abs(x))
    big = 1 / (1 + z)
    small = z * big
    positive = x >= 0
    return xp.where(positive, big, small), xp.where(positive, small, big)


def _softplus(x):
    """log(1 + e^x) as max(x, 0) + log1p(e^-|x|): no overflow, no loss of the tiny values for very negative x."""
    xp = backend.namespace(x)
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


class Tanh(Function):
    """tanh(x); the gradient sech(x)^2 = 4z / (1 + z)^2 with z = e^(-2|x|), accurate where 1 - tanh^2 cancels."""

    def forward(self, x):
        xp = backend.namespace(x)
        self.x = x
        return xp.tanh(x)

    def backward(self, grad):
        xp = backend.namespace(grad)
        half = xp.exp(-xp.abs(self.x))
        z = half * half  # e^(-2|x|), without overflowing 2|x| for the largest floats
        return grad * (4 * z / ((1 + z) * (1 + z)))


class Sigmoid(Function):
    def forward(self, x):
        self.out, self.mirror = _sigmoid_pair(x)
        return self.out

    def backward(self, grad):
        return grad * self.out * self.mirror


class Softplus(Function):
    """log(1 + e^(beta x)) / beta; the gradient is sigmoid(beta x). Where beta x > threshold, x itself (slope 1)."""

    beta: float = 1.0
    threshold: float | None = None

    def forward(self, x):
        xp = backend.namespace(x)
        self.z = x if self.beta == 1 else x * self.beta
        out = _softplus(self.z) if self.beta == 1 else _softplus(self.z) / self.beta
        if self.threshold is None:
            return out
        self.linear = self.z > self.threshold
        return xp.where(self.linear, x, out)

    def backward(self, grad):
        slope = _sigmoid_pair(self.z)[0]
        if self.threshold is not None:
            xp = backend.namespace(slope)
            slope = xp.where(self.linear, xp.ones_like(slope), slope)
        return grad * slope


class LogSigmoid(Function):
    """log(sigmoid(x)) = -softplus(-x); the gradient is sigmoid(-x)."""

    def forward(self, x):
        self.x = x
        return -_softplus(-x)

    def backward(self, grad):
        return grad * _sigmoid_pair(self.x)[1]


class Relu(Function):
    """max(x, 0). A multiply by a 0/1 mask rather than ``where``: NumPy runs it several times faster."""

    def forward(self, x):
        xp = backend.namespace(x)
        self.mask = xp.astype(x > 0, x.dtype)
        return xp.maximum(x, 0.0)  # NaN stays NaN, so a diverging run shows it

    def backward(self, grad):
        return grad * self.mask


class Abs(Function):
    """``|x|``; the gradient is sign(x), 0 at x = 0 (as PyTorch)."""

    def forward(self, x):
        xp = backend.namespace(x)
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, grad):
        return grad * self.sign


class LeakyRelu(Function):
    """x for x > 0, negative_slope * x otherwise; the gradient at exactly 0 is negative_slope."""

    negative_slope: float

    def forward(self, x):
        xp = backend.namespace(x)
        positive = xp.astype(x > 0, x.dtype)
        self.slope = positive + self.negative_slope * (1 - positive)
        return x * self.slope

    def backward(self, grad):
        return grad * self.slope


class Maximum(Function):
    """Elementwise maximum; at ties the gradient is split equally between the operands."""

    def forward(self, a, b):
        xp = backend.namespace(a, b)
        self.a_wins = xp.astype(a > b, a.dtype) + 0.5 * xp.astype(a == b, a.dtype)
        return xp.maximum(a, b)

    def backward(self, grad):
        return grad * self.a_wins, grad * (1 - self.a_wins)


class Cast(Function):
    dtype: Any

    def forward(self, x):
        self.source_dtype = x.dtype
        return backend.astype(x, self.dtype)

    def backward(self, grad):
        return backend.astype(grad, self.source_dtype)


class Clone(Function):
    def forward(self, x):
        return backend.namespace(x).asarray(x, copy=True)

    def backward(self, grad):
        return grad


@tensor_method("astype")
def astype(x: Tensor, dtype: Any) -> Tensor:
    """`x` cast to `dtype`; differentiable to a floating dtype (the gradient is cast back), cut from the graph otherwise."""
    if not backend.dtype_name(dtype).startswith("float"):
        return Tensor._make(backend.astype(x.data, dtype), requires_grad=False, creator=None)
    return Cast.apply(x, dtype=dtype)


@tensor_method("float")
def to_float32(x: Tensor) -> Tensor:
    """``x.astype("float32")``, by PyTorch's name."""
    return astype(x, "float32")


@tensor_method("double")
def to_float64(x: Tensor) -> Tensor:
    """``x.astype("float64")``, by PyTorch's name."""
    return astype(x, "float64")


@tensor_method("long")
def to_int64(x: Tensor) -> Tensor:
    """``x.astype("int64")``, by PyTorch's name (not differentiable)."""
    return astype(x, "int64")


@tensor_method("clone")
def clone(x: Tensor) -> Tensor:
    """A copy of `x` that stays in the graph (gradients flow back to `x`), as ``torch.clone``."""
    return Clone.apply(x)


@tensor_method("__add__", "__radd__")
def add(a: Any, b: Any) -> Tensor:
    """a + b with broadcasting."""
    return _binary(Add, a, b)


@tensor_method("__sub__")
def sub(a: Any, b: Any) -> Tensor:
    """a - b with broadcasting."""
    return _binary(Sub, a, b)


@tensor_method("__rsub__")
def rsub(a: Any, b: Any) -> Tensor:
    """b - a (the reflected operator)."""
    return _binary(Sub, b, a)


@tensor_method("__mul__", "__rmul__")
def mul(a: Any, b: Any) -> Tensor:
    """a * b with broadcasting."""
    return _binary(Mul, a, b)


@tensor_method("__truediv__")
def div(a: Any, b: Any) -> Tensor:
    """a / b with broadcasting."""
    return _binary(Div, a, b)


@tensor_method("__rtruediv__")
def rdiv(a: Any, b: Any) -> Tensor:
    """b / a (the reflected operator)."""
    return _binary(Div, b, a)


@tensor_method("__neg__", "neg")
def neg(x: Tensor) -> Tensor:
    """-x."""
    return Neg.apply(x)


@tensor_method("__pow__", "pow")
def pow(x: Tensor, exponent: Any) -> Tensor:  # noqa: A001 - mirrors the operator's name
    """x ** exponent; a Python-number exponent is a constant, a tensor exponent gets a gradient."""
    if isinstance(exponent, (int, float)):
        return PowScalar.apply(x, exponent=exponent)
    return _binary(Pow, x, exponent)


@tensor_method("__rpow__")
def rpow(x: Tensor, base: Any) -> Tensor:
    """base ** x (the reflected operator)."""
    return _binary(Pow, base, x)


@tensor_method("exp")
def exp(x: Tensor) -> Tensor:
    """e ** x."""
    return Exp.apply(x)


@tensor_method("log")
def log(x: Tensor) -> Tensor:
    """Natural logarithm."""
    return Log.apply(x)


@tensor_method("sqrt")
def sqrt(x: Tensor) -> Tensor:
    """Square root."""
    return Sqrt.apply(x)


@tensor_method("tanh")
def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(x)


@tensor_method("sigmoid")
def sigmoid(x: Tensor) -> Tensor:
    """Logistic function 1 / (1 + e^-x)."""
    return Sigmoid.apply(x)


@tensor_method("softplus")
def softplus(x: Tensor, beta: float = 1.0, threshold: float | None = None) -> Tensor:
    """log(1 + e^(beta x)) / beta, computed without overflow and accurately in both tails.

    With a `threshold`, x itself where beta x > threshold, as ``torch.nn.functional.softplus``
    (whose default 20 :func:`minigrad.nn.functional.softplus` keeps); None (here the
    default) gives the exact value everywhere.
    """
    beta, threshold = softplus_settings("softplus", beta, threshold)
    return Softplus.apply(x, beta=beta, threshold=threshold)


def softplus_settings(owner: str, beta: Any, threshold: Any) -> tuple[float, float | None]:
    """`beta` as a finite float > 0 and `threshold` as None or a finite float; `owner` starts the message."""
    beta = validate.positive_number(f"{owner}: beta", beta)
    if threshold is not None and not (validate.is_real(threshold) and math.isfinite(threshold)):
        raise ValueError(f"{owner}: threshold: expected None or a finite number, got {threshold!r}")
    return beta, None if threshold is None else float(threshold)


@tensor_method("log_sigmoid")
def log_sigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), accurate for very negative and very positive x."""
    return LogSigmoid.apply(x)


@tensor_method("relu")
def relu(x: Tensor) -> Tensor:
    """max(x, 0); the gradient at exactly 0 is 0."""
    return Relu.apply(x)


@tensor_method("abs", "__abs__")
def abs(x: Tensor) -> Tensor:  # noqa: A001 - the op's name, as abs(tensor) calls it
    """``|x|`` elementwise; ``abs(t)`` works too. The gradient at 0 is 0."""
    return Abs.apply(x)


@tensor_method("leaky_relu")
def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    """x where x > 0, else ``negative_slope * x`` (PyTorch's default slope 0.01)."""
    if not (validate.is_real(negative_slope) and math.isfinite(negative_slope)):
        raise ValueError(f"leaky_relu: negative_slope: expected a finite number, got {negative_slope!r}")
    return LeakyRelu.apply(x, negative_slope=float(negative_slope))


@tensor_method("maximum")
def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum with broadcasting."""
    return _binary(Maximum, a, b)


def _compare(name: str, a: Any, b: Any) -> Tensor:
    """A boolean tensor from comparing a with b elementwise (not differentiable)."""
    like = a if isinstance(a, Tensor) else b
    a, b = as_tensor(a, like), as_tensor(b, like)
    backend.broadcast_shapes(a.shape, b.shape)
    xp = backend.namespace(a.data, b.data)
    return Tensor._make(getattr(xp, name)(a.data, b.data), requires_grad=False, creator=None)


def _comparison(name: str, symbol: str):
    """A public comparison function for the array-API function `name`, e.g. ``equal`` for ``==``."""

    def compare(a: Any, b: Any) -> Tensor:
        return _compare(name, a, b)

    compare.__name__ = name
    compare.__doc__ = f"Elementwise a {symbol} b as a boolean tensor (not differentiable)."
    return compare


equal = tensor_method("__eq__")(_comparison("equal", "=="))
not_equal = tensor_method("__ne__")(_comparison("not_equal", "!="))
less = tensor_method("__lt__")(_comparison("less", "<"))
less_equal = tensor_method("__le__")(_comparison("less_equal", "<="))
greater = tensor_method("__gt__")(_comparison("greater", ">"))
greater_equal = tensor_method("__ge__")(_comparison("greater_equal", ">="))
