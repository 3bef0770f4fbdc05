"""Softmax, log-softmax, the fused and numerically stable cross-entropy, and the other losses.

Losses take ``reduction`` as PyTorch does: ``"mean"`` (the default), ``"sum"``
or ``"none"`` (one loss per example).
"""

from __future__ import annotations

from typing import Any

from minigrad import array_extras, backend, validate
from minigrad.ops import elementwise, reduce
from minigrad.tensor import Function, Tensor, as_tensor, tensor_method


def _softmax_parts(x, axis: int):
    """(log softmax, softmax) of `x` along `axis`, each accurate to a few units in the last place.

    Both start from x - max (no overflow). The log is (x - max) - log1p(the
    other terms), exact where one logit dominates; the probabilities are
    e^(x - max) / sum, not exp(log softmax), whose rounding would be magnified
    by |log p| for tiny probabilities.
    """
    xp = backend.namespace(x)
    shifted = x - reduce._finite_peak(x, (axis,))
    weights = xp.exp(shifted)
    return shifted - reduce.log_sum_exp_shifted(shifted, (axis,)), weights / xp.sum(weights, axis=axis, keepdims=True)


class LogSoftmax(Function):
    axis: int

    def forward(self, x):
        out, self.softmax = _softmax_parts(x, self.axis)
        return out

    def backward(self, grad):
        xp = backend.namespace(grad)
        return grad - self.softmax * xp.sum(grad, axis=self.axis, keepdims=True)


class Softmax(Function):
    axis: int

    def forward(self, x):
        self.out = _softmax_parts(x, self.axis)[1]
        return self.out

    def backward(self, grad):
        xp = backend.namespace(grad)
        return self.out * (grad - xp.sum(grad * self.out, axis=self.axis, keepdims=True))


class CrossEntropy(Function):
    """Mean over the batch of -log softmax(logits)[label]; gradient (softmax - one_hot) / N."""

    def forward(self, logits, labels):
        xp = backend.namespace(logits)
        log_probs, probs = _softmax_parts(logits, 1)
        classes = xp.arange(logits.shape[1], device=logits.device)
        at_label = labels[:, None] == classes[None, :]
        self.count = logits.shape[0]
        # A label outside [0, C) makes its row NaN (loss and gradient), checked on the device without a host read.
        valid = ((labels >= 0) & (labels < logits.shape[1]))[:, None]
        nan = backend.scalar_like(float("nan"), log_probs)
        # softmax - one_hot, with expm1 at the label: 1 - p cancels to 0 once p rounds to 1, expm1(log p) does not
        self.residual = xp.where(valid, xp.where(at_label, xp.expm1(log_probs), probs), nan)
        # picked with where, not a product with one_hot: a -inf log-probability elsewhere would give -inf * 0 = NaN
        picked = xp.where(valid, xp.where(at_label, log_probs, xp.zeros_like(log_probs)), nan)
        return -xp.sum(picked) / self.count

    def backward(self, grad):
        return grad * self.residual / self.count, None


def _softmax_axis(owner: str, x: Tensor, axis: int, dim: int | None) -> int:
    axis, _ = reduce.torch_axis(owner, None if dim is not None else axis, False, dim, None)
    return validate.axis(owner, axis, x.ndim)


@tensor_method("log_softmax")
def log_softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """log(softmax(x)) along `axis` (or PyTorch's ``dim``), computed stably."""
    return LogSoftmax.apply(x, axis=_softmax_axis("log_softmax", x, axis, dim))


@tensor_method("softmax")
def softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis` (or PyTorch's ``dim``), computed stably."""
    return Softmax.apply(x, axis=_softmax_axis("softmax", x, axis, dim))


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(owner: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
    return reduction


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return reduce.mean(losses)
    return reduce.sum(losses) if reduction == "sum" else losses


def _check_class_labels(owner: str, scores: Tensor, labels: Any) -> Tensor:
    """`labels` as an integer tensor of shape (N,) with values in [0, C) for `scores` of shape (N, C)."""
    if not isinstance(scores, Tensor):
        raise TypeError(f"{owner}: input: expected a Tensor of shape (N, C), got {type(scores).__name__}")
    labels = as_tensor(labels, like=scores) if not isinstance(labels, Tensor) else labels
    if scores.ndim != 2:
        raise ValueError(f"{owner}: input must have shape (N, C), got {scores.shape}")
    if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
        raise ValueError(f"{owner}: labels must have shape ({scores.shape[0]},) to match the input, got {labels.shape}")
    if backend.is_floating(labels.data) or backend.dtype_name(labels.dtype) == "bool":
        raise TypeError(f"{owner}: labels must be integers (class indices), got dtype {backend.dtype_name(labels.dtype)}")
    if scores.shape[0] == 0:
        raise ValueError(f"{owner}: the batch is empty (input of shape (0, C))")
    on_host = array_extras.host_view(labels.data)
    if on_host is not None:  # free on the host; on a device (CuPy) it would be a synchronization at every step
        low, high = on_host.min().item(), on_host.max().item()
        if low < 0 or high >= scores.shape[1]:
            raise ValueError(f"{owner}: labels must lie in [0, {scores.shape[1]}), got values from {low} to {high}")
    return labels


def cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of `logits` (N, C) against integer class `labels` (N,), as ``torch.nn.functional.cross_entropy``.

    The mean is fused: log-softmax and the negative log-likelihood in one op,
    stable for logits as large as ±1e4 (no NaN, no inf). ``"sum"`` and
    ``"none"`` go through :func:`nll_loss` of :func:`log_softmax`, equally stable.
    Labels outside [0, C) raise a ValueError when they are in host memory; on a
    device, reading them would stop the GPU at every step, so such a label
    makes the loss NaN instead, which the first read of the loss shows.
    """
    check_reduction("cross_entropy", reduction)
    labels = _check_class_labels("cross_entropy", logits, labels)
    if reduction == "mean":
        return CrossEntropy.apply(logits, labels)
    return nll_loss(log_softmax(logits, axis=1), labels, reduction=reduction)


def nll_loss(log_probs: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood: ``-log_probs[i, labels[i]]`` per example, for `log_probs` (N, C) from :func:`log_softmax`."""
    check_reduction("nll_loss", reduction)
    labels = _check_class_labels("nll_loss", log_probs, labels)
    xp = backend.namespace(log_probs.data)
    count, classes = log_probs.shape
    rows = Tensor._make(xp.arange(count, device=log_probs.data.device), False, None)
    # Indexed, not multiplied by a one-hot mask: a -inf log-probability off the label would give -inf * 0 = NaN.
    # On a device the labels are not read (that would stop the GPU): one outside [0, C) makes its loss NaN.
    valid = (labels.data >= 0) & (labels.data < classes)
    inside = Tensor._make(xp.clip(labels.data, 0, classes - 1), False, None)
    flag = Tensor._make(
        xp.where(valid, xp.zeros_like(log_probs.data[:, 0]), backend.scalar_like(float("nan"), log_probs.data)), False, None
    )
    return _reduce(flag - log_probs[rows, inside], reduction)


def _check_same_shape(owner: str, prediction: Tensor, target: Any) -> Tensor:
    if not isinstance(prediction, Tensor):
        raise TypeError(f"{owner}: input: expected a Tensor, got {type(prediction).__name__}")
    if not isinstance(target, Tensor):  # host data takes the prediction's dtype and device
        target = as_tensor(target, like=prediction)
        target = Tensor._make(backend.astype(target.data, prediction.dtype), requires_grad=False, creator=None)
    if target.shape != prediction.shape:
        raise ValueError(
            f"{owner}: target must have the input's shape {prediction.shape}, got {target.shape} "
            "(minigrad does not broadcast a loss's operands; reshape one of them)"
        )
    return target


def mse_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Squared error ``(prediction - target) ** 2``, averaged by default; both operands get gradients."""
    check_reduction("mse_loss", reduction)
    target = _check_same_shape("mse_loss", prediction, target)
    return _reduce((prediction - target) ** 2, reduction)


def l1_loss(prediction: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Absolute error ``|prediction - target|``, averaged by default (gradient 0 where they are equal)."""
    check_reduction("l1_loss", reduction)
    target = _check_same_shape("l1_loss", prediction, target)
    return _reduce(elementwise.abs(prediction - target), reduction)
