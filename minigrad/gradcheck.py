"""Gradient checking by central finite differences in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from minigrad import backend
from minigrad.tensor import Tensor, no_grad

np = backend.host


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with finite differences; the message names the worst element."""


def _as_float64_leaf(value: Any) -> Any:
    if not isinstance(value, Tensor):
        return value
    if not backend.is_floating(value.data):
        return value
    return Tensor(backend.astype(value.data, "float64"), requires_grad=value.requires_grad)


def _weighted_output(output: Any, weights: Any) -> float:
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    return float(np.sum(backend.to_numpy(output.data).astype(np.float64) * weights))


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
    raise_exception: bool = True,
) -> bool:
    """Compare the autograd gradient of `fn` with central finite differences, in float64.

    Floating tensor inputs are copied to float64 (so float32 models can be
    checked too). A non-scalar output is reduced to the scalar sum(output * v)
    with a fixed random v, which checks the vector-Jacobian product in a random
    direction. Every element of every input with ``requires_grad`` is
    perturbed by ±eps. An element passes when
    ``|analytic - numeric| <= atol + rtol * |numeric|``.

    Returns True when every element passes. Otherwise raises
    :class:`GradcheckError` naming the input, the element index and both values
    of the worst element (or returns False when ``raise_exception=False``).
    """
    args = [_as_float64_leaf(v) for v in inputs]
    checked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not checked:
        raise ValueError("gradcheck: inputs: expected at least one Tensor with requires_grad=True, got none")

    output = fn(*args)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    weights = np.random.default_rng(seed).standard_normal(output.shape) if output.size > 1 else np.ones(output.shape)
    for i in checked:
        args[i].grad = None
    if output.requires_grad:
        output.backward(backend.from_numpy(weights, backend.library_of(output.data)))

    worst = None  # (excess over tolerance, input index, element index, analytic, numeric)
    for i in checked:
        leaf = args[i]
        library = backend.library_of(leaf.data)
        analytic = np.zeros(leaf.shape) if leaf.grad is None else backend.to_numpy(leaf.grad).astype(np.float64)
        base = backend.to_numpy(leaf.data).astype(np.float64)
        for index in np.ndindex(*leaf.shape):
            values = []
            for step in (eps, -eps):
                probe = base.copy()
                probe[index] += step
                shifted = list(args)
                shifted[i] = Tensor(backend.from_numpy(probe, library), dtype="float64")
                with no_grad():
                    values.append(_weighted_output(fn(*shifted), weights))
            numeric = (values[0] - values[1]) / (2 * eps)
            excess = abs(analytic[index] - numeric) - (atol + rtol * abs(numeric))
            if worst is None or excess > worst[0]:
                worst = (excess, i, index, analytic[index], numeric)
    if worst is not None and worst[0] > 0:
        _, i, index, analytic_value, numeric_value = worst
        message = (
            f"gradcheck: input {i} (shape {args[i].shape}), element {index}: analytic gradient {analytic_value:.8g}"
            f" but finite differences give {numeric_value:.8g} (atol={atol}, rtol={rtol}, eps={eps})"
        )
        if raise_exception:
            raise GradcheckError(message)
        return False
    return True
