"""Matrix products."""

from __future__ import annotations

from minigrad import backend
from minigrad.tensor import Function, Tensor, as_tensor, tensor_method


class MatMul(Function):
    """Batched a @ b for a, b with at least 2 axes; batch axes broadcast.

    dL/da = g @ b^T and dL/db = a^T @ g (the engine sums broadcast batch axes).
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, grad):
        xp = backend.namespace(grad)
        grad_a = grad @ xp.matrix_transpose(self.b) if self.needs_input_grad[0] else None
        grad_b = xp.matrix_transpose(self.a) @ grad if self.needs_input_grad[1] else None
        return grad_a, grad_b


@tensor_method("__matmul__", "matmul")
def matmul(a: Tensor, b: Tensor) -> Tensor:
    """Matrix product with NumPy's rules: 1-d operands are promoted to a row/column and squeezed back."""
    a, b = as_tensor(a), as_tensor(b, like=a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands need at least 1 axis, got shapes {a.shape} and {b.shape}")
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(
            f"matmul: a has shape {a.shape} and b has shape {b.shape}; the last axis of a ({a2.shape[-1]}) "
            f"must equal the {'only' if b.ndim == 1 else 'second-to-last'} axis of b ({b2.shape[-2]})"
        )
    backend.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    out = MatMul.apply(a2, b2)
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out


@tensor_method("__rmatmul__")
def rmatmul(b: Tensor, a: Tensor) -> Tensor:
    """a @ b where only b is a Tensor."""
    return matmul(as_tensor(a, like=b), b)
