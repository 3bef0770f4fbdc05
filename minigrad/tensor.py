"""Tensor and Function: the whole autodiff engine.

A :class:`Tensor` holds a backend array, an optional gradient and the
:class:`Function` that made it. An op is one subclass of :class:`Function`:
``forward`` computes on raw arrays and saves on ``self`` what the backward
needs; ``backward`` takes dℓ/d(output) and returns one gradient per input
(``None`` where an input needs none). Everything else is done here, once for
every op: device checks, graph recording, broadcasting undone by
:func:`sum_to`, gradient dtypes, accumulation with ``+`` (a tensor used twice
receives both contributions).

:meth:`Tensor.backward` orders the graph by an iterative depth-first
topological sort (no recursion: chains of 100,000 ops work) and runs each
node's ``backward`` once, in reverse order. Backward passes are plain array
code and are not recorded, so minigrad has no higher-order gradients.

Methods such as ``exp``, ``astype`` or ``__add__`` are attached by the op
modules through :func:`tensor_method`, so an op is defined in one place; so are
the host copies and moves and the sizes (``numpy``, ``item``, ``tolist``, ``to``, ``repr``,
``size``, ``numel``: :mod:`minigrad.ops.conversion`).

Dtypes: floating data takes float32 unless ``dtype`` is given (``"float64"``
for gradient checks); integer and boolean data keep their kind. float32 with
float64 promotes to float64; a Python scalar takes the dtype of the tensor it meets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from minigrad import backend

DEFAULT_FLOAT = "float32"

# ----------------------------------------------------------------------------
# Graph recording on and off
# ----------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True when ops record the graph needed for backward."""
    return _grad_enabled


@contextmanager
def no_grad() -> Iterator[None]:
    """Run ops without recording a graph (evaluation, optimizer updates, finite differences)."""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


# ----------------------------------------------------------------------------
# Function: one differentiable op
# ----------------------------------------------------------------------------


class Function:
    """One differentiable op: subclass it and write ``forward`` and ``backward``.

    ``Op.apply(*tensors, **params)`` runs it; the keyword arguments are op
    parameters (an axis, an exponent) and become attributes. An op whose
    caller needs what the forward computed (e.g. batch statistics) makes the
    instance itself, ``op = Op(**params)``, calls ``op(*tensors)`` and reads
    the attributes the forward saved.
    """

    inputs: tuple[Tensor, ...] = ()
    needs_input_grad: tuple[bool, ...] = ()
    released = False

    def __init__(self, **params: Any) -> None:
        for name, value in params.items():
            setattr(self, name, value)

    def forward(self, *arrays: Any) -> Any:
        """Compute the output array from the input arrays; save what backward needs on ``self``."""
        raise NotImplementedError

    def backward(self, grad: Any) -> tuple[Any, ...] | Any:
        """Given dℓ/d(output), return dℓ/d(input) for each input (None where not needed)."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run the op on tensors and record it in the graph when a gradient is needed."""
        return cls(**params)(*inputs)

    def __call__(self, *inputs: Tensor) -> Tensor:
        check_same_device(type(self).__name__, inputs)
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        output = self.forward(*(t.data for t in inputs))
        if not (_grad_enabled and any(self.needs_input_grad)):
            return Tensor._make(output, requires_grad=False, creator=None)
        self.inputs = inputs
        return Tensor._make(output, requires_grad=True, creator=self)

    def release(self) -> None:
        """Drop the inputs and saved arrays once backward has used them, to free memory."""
        self.__dict__.clear()
        self.released = True


def check_same_device(op_name: str, tensors: tuple[Tensor, ...]) -> None:
    """Raise DeviceMismatchError when `tensors` do not all live on one device."""
    devices = {backend.device_of(t.data) for t in tensors}
    if len(devices) > 1:
        shown = ", ".join(f"{backend.device_of(t.data)} (shape {t.shape})" for t in tensors)
        raise backend.DeviceMismatchError(
            f"{op_name}: all tensors must be on one device, got tensors on {shown}; move them with .to(device)"
        )


# ----------------------------------------------------------------------------
# Tensor
# ----------------------------------------------------------------------------


def sum_to(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum `grad` over the axes that broadcasting added or stretched, so it has `shape`."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    xp = backend.namespace(grad)
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = xp.sum(grad, axis=tuple(range(extra)))
    stretched = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if stretched:
        grad = xp.sum(grad, axis=stretched, keepdims=True)
    if tuple(grad.shape) != tuple(shape):
        raise RuntimeError(f"sum_to: gradient of shape {tuple(grad.shape)} cannot be reduced to shape {tuple(shape)}")
    return grad


class Tensor:
    """An n-dimensional array that can record the ops applied to it and differentiate through them.

    Args:
        data: a backend array, NumPy array, Python number or nested list, or a Tensor.
            Host data goes to the active backend; CuPy and array-api-strict arrays stay
            on their device.
        requires_grad: record ops on this tensor and fill ``.grad`` on backward.
            Only floating tensors can require gradients.
        dtype: a name ("float32", "float64", "int64", ...) or a library dtype.
            Floating data defaults to float32.
    """

    __array_priority__ = 1000  # make `ndarray + Tensor` defer to Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        array = backend.asarray(data, dtype)
        if dtype is None and backend.is_floating(array) and backend.dtype_name(array.dtype) != DEFAULT_FLOAT:
            array = backend.astype(array, DEFAULT_FLOAT)
        self._init(array, requires_grad, creator=None)

    def _init(self, array: Any, requires_grad: bool, creator: Function | None) -> None:
        if requires_grad and not backend.is_floating(array):
            raise TypeError(
                f"requires_grad: only floating tensors can require gradients, got dtype {backend.dtype_name(array.dtype)}"
            )
        self.data = array
        self.requires_grad = bool(requires_grad)
        self.grad: Any = None
        self.creator = creator

    @classmethod
    def _make(cls, array: Any, requires_grad: bool, creator: Function | None) -> Tensor:
        """Wrap an op's output array without copying or casting it."""
        tensor = cls.__new__(cls)
        tensor._init(array, requires_grad, creator)
        return tensor

    # -- properties --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op that records gradients."""
        return self.creator is None

    def __hash__(self) -> int:
        return id(self)

    def detach(self) -> Tensor:
        """The same data, cut from the graph (no gradient flows through it)."""
        return Tensor._make(self.data, requires_grad=False, creator=None)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Switch gradient recording on (or off) for this leaf, in place; returns the tensor."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad; use .detach() first")
        if requires_grad and not backend.is_floating(self.data):
            raise TypeError(
                f"requires_grad_: only floating tensors can require gradients, got dtype {backend.dtype_name(self.dtype)}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self) -> None:
        """Forget the accumulated gradient."""
        self.grad = None

    # -- backward ----------------------------------------------------------
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires grad.

        Args:
            grad: the seed dL/d(self); defaults to 1 for a one-element tensor and is
                required otherwise. A Tensor or an array of ``self``'s shape.
            retain_graph: keep the graph so that backward can run through it again.
                By default each node frees its saved arrays once used.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input had requires_grad=True)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward: a seed gradient is needed for a non-scalar tensor; got shape {self.shape}, "
                    "pass grad= with that shape (or reduce to a scalar first)"
                )
            xp = backend.namespace(self.data)
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad)
            grad = backend.to_device(grad, self.device)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward: grad must have the tensor's shape {self.shape}, got {tuple(grad.shape)}")
            grad = backend.astype(grad, self.dtype)

        grads: dict[int, Any] = {id(self): grad}
        for node in _topological_order(self):
            node_grad = grads.pop(id(node), None)
            if node_grad is None:
                continue
            if node.creator is None:
                node.grad = node_grad if node.grad is None else node.grad + node_grad
            fn = node.creator
            if fn is None:
                continue
            if fn.released:
                raise RuntimeError(
                    "backward: the graph was already freed by an earlier backward; "
                    "pass retain_graph=True to the first call to run backward twice"
                )
            input_grads = fn.backward(node_grad)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            if len(input_grads) != len(fn.inputs):
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned {len(input_grads)} gradients for {len(fn.inputs)} inputs"
                )
            for parent, needed, parent_grad in zip(fn.inputs, fn.needs_input_grad, input_grads):
                if not needed or parent_grad is None:
                    continue
                parent_grad = backend.astype(sum_to(parent_grad, parent.shape), parent.dtype)
                previous = grads.get(id(parent))
                grads[id(parent)] = parent_grad if previous is None else previous + parent_grad
            if not retain_graph:
                fn.release()

    # Python operators, named ops and conversions are attached by minigrad.ops via tensor_method.


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors that need a gradient, each after every tensor that uses it (iterative DFS)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node.creator is not None and not node.creator.released:
            for parent in node.creator.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order


def tensor_method(*names: str) -> Callable[[Callable], Callable]:
    """Decorator: attach a function to Tensor under `names` (e.g. "exp" or "__add__")."""

    def register(function: Callable) -> Callable:
        for name in names:
            setattr(Tensor, name, function)
        return function

    return register


def as_tensor(value: Any, like: Tensor | None = None) -> Tensor:
    """`value` as a Tensor; a Python number takes the dtype and device of `like`."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool)):
        return Tensor._make(backend.scalar_like(value, like.data), requires_grad=False, creator=None)
    if like is not None and backend.is_array(value):
        return Tensor._make(backend.to_device(backend.asarray(value), like.device), requires_grad=False, creator=None)
    return Tensor(value)
