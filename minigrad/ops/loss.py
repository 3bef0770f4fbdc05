"""Softmax, log-softmax and the fused, numerically stable cross-entropy."""

from __future__ import annotations

from minigrad import backend
from minigrad.tensor import Function, Tensor, as_tensor, tensor_method


def _log_softmax(x, axis: int):
    """log softmax computed as (x - max) - log(sum(exp(x - max))): no overflow for large logits."""
    xp = backend.namespace(x)
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


class LogSoftmax(Function):
    axis: int

    def forward(self, x):
        out = _log_softmax(x, self.axis)
        self.softmax = backend.namespace(x).exp(out)
        return out

    def backward(self, grad):
        xp = backend.namespace(grad)
        return grad - self.softmax * xp.sum(grad, axis=self.axis, keepdims=True)


class Softmax(Function):
    axis: int

    def forward(self, x):
        self.out = backend.namespace(x).exp(_log_softmax(x, self.axis))
        return self.out

    def backward(self, grad):
        xp = backend.namespace(grad)
        return self.out * (grad - xp.sum(grad * self.out, axis=self.axis, keepdims=True))


class CrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label]; gradient (softmax - one_hot) / N."""

    def forward(self, logits, labels):
        xp = backend.namespace(logits)
        log_probs = _log_softmax(logits, 1)
        classes = xp.arange(logits.shape[1], device=logits.device)
        one_hot = xp.astype(labels[:, None] == classes[None, :], logits.dtype)
        # A label outside [0, C) makes its row NaN (loss and gradient), checked on the device without a host read.
        valid = (labels >= 0) & (labels < logits.shape[1])
        self.one_hot = xp.where(valid[:, None], one_hot, backend.scalar_like(float("nan"), one_hot))
        self.softmax = xp.exp(log_probs)
        return -xp.sum(log_probs * self.one_hot) / logits.shape[0]

    def backward(self, grad):
        return grad * (self.softmax - self.one_hot) / self.one_hot.shape[0], None


@tensor_method("log_softmax")
def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log(softmax(x)) along `axis`, computed stably."""
    return LogSoftmax.apply(x, axis=axis % x.ndim)


@tensor_method("softmax")
def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`, computed stably."""
    return Softmax.apply(x, axis=axis % x.ndim)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy of `logits` (N, C) against integer class `labels` (N,).

    Fused: log-softmax and the negative log-likelihood in one op, stable for
    logits as large as ±1e4 (no NaN, no inf).

    Labels outside [0, C) raise a ValueError when they are in host memory
    (NumPy). On a device (CuPy) reading them would stop the GPU at every step,
    so the check runs there instead: such a label makes the loss and its
    gradient NaN, which the first read of the loss shows.
    """
    labels = as_tensor(labels, like=logits) if not isinstance(labels, Tensor) else labels
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (N, C), got {logits.shape}")
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: labels must have shape ({logits.shape[0]},) to match logits, got {labels.shape}")
    if backend.is_floating(labels.data) or backend.dtype_name(labels.dtype) == "bool":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {backend.dtype_name(labels.dtype)}")
    if logits.shape[0] == 0:
        raise ValueError("cross_entropy: the batch is empty (logits of shape (0, C))")
    on_host = backend.host_view(labels.data)
    if on_host is not None:  # free on the host; on a device it would be a synchronization at every step
        low, high = on_host.min().item(), on_host.max().item()
        if low < 0 or high >= logits.shape[1]:
            raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), got values from {low} to {high}")
    return CrossEntropy.apply(logits, labels)
