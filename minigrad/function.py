"""The base class of every differentiable op, and the switch that turns graph recording off.

An op is one subclass of :class:`Function`: ``forward`` computes on raw backend
arrays and saves on ``self`` what the backward needs; ``backward`` takes the
gradient of the output and returns one gradient per input (``None`` where an
input needs none). The engine does the rest, once for every op: device checks,
graph recording, broadcasting undone by ``sum_to``, dtype of the gradients,
accumulation (see :mod:`minigrad.tensor`).

Backward passes are plain array code and are not themselves recorded, so
minigrad has no higher-order gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from minigrad import backend

if TYPE_CHECKING:
    from minigrad.tensor import Tensor

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


class Function:
    """One differentiable op: subclass it and write ``forward`` and ``backward``.

    Keyword arguments given to :meth:`apply` besides the tensors are op
    parameters (an axis, an exponent) and reach ``__init__``.
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
        """Given dL/d(output), return dL/d(input) for each input (None where not needed)."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run the op on tensors and record it in the graph when a gradient is needed."""
        from minigrad.tensor import Tensor

        check_same_device(cls.__name__, inputs)
        fn = cls(**params)
        output = fn.forward(*(t.data for t in inputs))
        requires_grad = _grad_enabled and any(t.requires_grad for t in inputs)
        if not requires_grad:
            return Tensor._make(output, requires_grad=False, creator=None)
        fn.inputs = inputs
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        return Tensor._make(output, requires_grad=True, creator=fn)

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
