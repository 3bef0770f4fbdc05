"""Saturating functions are accurate to their dtype's precision over the whole domain, gradients included.

The references are computed with Python's decimal module at 50 significant
digits from the exact value of each float32 or float64 input, with formulas
that never subtract nearly equal numbers (e^-x / (1 + e^-x)^2 for the
sigmoid's slope, not s (1 - s)), so they are exact to far beyond float64.
Each result must match its reference to a few units in the last place
(relative), or be below the dtype's smallest normal number where the true
value underflows. Inputs reach ±1e4, where exp overflows both dtypes.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minigrad as mg
from tests.helpers import host, tensor

decimal.getcontext().prec = 50
ULPS = 8
DTYPES = ("float32", "float64")


def _values(dtype: str, size: int = 8) -> st.SearchStrategy:
    """Inputs over the whole domain, dense in the tails that break naive formulas (|x| from 10 to 1e4)."""
    width = 32 if dtype == "float32" else 64
    wide = st.floats(-1e4, 1e4, width=width)
    tails = st.floats(10, 800, width=width).flatmap(lambda v: st.sampled_from([v, -v]))
    return st.lists(st.one_of(wide, tails, st.floats(-30, 30, width=width)), min_size=1, max_size=size)


def _close(got: np.ndarray, reference: list[Decimal], dtype: str, what: str, condition=None) -> None:
    """|got - reference| within ULPS units of `dtype`'s precision of |reference| + `condition` (+ the smallest normal).

    `condition` (per element) is sum_j |x_j| |df/dx_j|: how much rounding x_j by one unit moves f. A function of
    several inputs whose result is tiny next to them (log-softmax of a dominant logit) cannot be more accurate
    than that, since x_j - max is itself rounded; elementwise functions of one exact input get no such allowance.
    """
    info = np.finfo(dtype)
    want = np.array([float(r) for r in reference])
    error = np.abs(got.astype(np.float64) - want)
    extra = np.zeros_like(want) if condition is None else np.array([float(c) for c in condition])
    allowed = ULPS * float(info.eps) * (np.abs(want) + extra) + float(info.tiny)
    worst = int(np.argmax(error - allowed))
    assert np.all(error <= allowed), f"{what} ({dtype}): got {got[worst]!r}, expected {reference[worst]:.17e}"


def _log1p(z: Decimal) -> Decimal:
    """ln(1 + z) without rounding 1 + z: its series for tiny z (error below z^4), else ln directly."""
    if abs(z) < Decimal("1e-12"):
        return z - z * z / 2 + z * z * z / 3
    return (1 + z).ln()


def _sigmoid(x: Decimal) -> Decimal:
    return 1 / (1 + (-x).exp())


def _sigmoid_slope(x: Decimal) -> Decimal:
    z = (-abs(x)).exp()
    return z / ((1 + z) * (1 + z))


def _softplus(x: Decimal) -> Decimal:
    return max(x, Decimal(0)) + _log1p((-abs(x)).exp())


def _tanh(x: Decimal) -> Decimal:
    if abs(x) < Decimal("1e-12"):
        return x - x * x * x / 3  # (1 - z) / (1 + z) would round z to 1
    z = (-2 * abs(x)).exp()
    return (1 - z) / (1 + z) * (1 if x >= 0 else -1)


def _tanh_slope(x: Decimal) -> Decimal:
    z = (-2 * abs(x)).exp()
    return 4 * z / ((1 + z) * (1 + z))


# op -> (minigrad function, value reference, derivative reference)
ELEMENTWISE = {
    "sigmoid": (mg.sigmoid, _sigmoid, _sigmoid_slope),
    "tanh": (mg.tanh, _tanh, _tanh_slope),
    "softplus": (mg.ops.softplus, _softplus, _sigmoid),
    "log_sigmoid": (mg.ops.log_sigmoid, lambda x: -_softplus(-x), lambda x: _sigmoid(-x)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
@given(data=st.data())
def test_saturating_functions_and_their_slopes_in_both_tails(op, dtype, data):
    fn, value, slope = ELEMENTWISE[op]
    values = data.draw(_values(dtype))
    values += [-1e4, -745.0, -100.0, -40.0, -17.5, 0.0, 17.5, 40.0, 100.0, 745.0, 1e4]  # the tails, always
    x = tensor(np.asarray(values), requires_grad=True, dtype=dtype)
    exact = [+Decimal(float(v)) for v in host(x)]  # unary + rounds to the context's 50 digits
    out = fn(x)
    assert out.dtype == x.dtype
    _close(host(out), [value(v) for v in exact], dtype, op)
    out.sum().backward()
    _close(host(x.grad), [slope(v) for v in exact], dtype, f"{op} gradient")


def _peak_and_log_rest(row: list[Decimal]) -> tuple[Decimal, Decimal]:
    """(max, ln(1 + rest)): ln(sum(e^v)) = max + ln(1 + rest), rest the terms after the first maximum, kept apart."""
    first = row.index(max(row))
    rest = sum(((v - row[first]).exp() for j, v in enumerate(row) if j != first), Decimal(0))
    return row[first], _log1p(rest)


def _log_sum_exp(row: list[Decimal]) -> Decimal:
    peak, log_rest = _peak_and_log_rest(row)
    return peak + log_rest


def _one_minus_exp(log_p: Decimal) -> Decimal:
    """1 - e^log_p without rounding e^log_p to 1 when log_p is tiny."""
    if abs(log_p) < Decimal("1e-12"):
        return -(log_p + log_p * log_p / 2)
    return 1 - log_p.exp()


def _log_softmax_row(row: list[Decimal]) -> list[Decimal]:
    peak, log_rest = _peak_and_log_rest(row)
    return [(v - peak) - log_rest for v in row]  # not v - (peak + log_rest), which would round the tiny log_rest


def _softmax_minus_one_hot(row: list[Decimal], label: int) -> list[Decimal]:
    """softmax(row) - one_hot(label), the label's entry as -(sum of the others' weights) / total (no cancellation)."""
    weights = [(v - row[label]).exp() for v in row]
    others = sum((w for j, w in enumerate(weights) if j != label), Decimal(0))
    total = 1 + others  # weights[label] is exactly 1; `others` is kept apart, unrounded
    return [-others / total if j == label else w / total for j, w in enumerate(weights)]


def _rows(dtype: str) -> st.SearchStrategy:
    width = 32 if dtype == "float32" else 64
    logit = st.one_of(st.floats(-1e4, 1e4, width=width), st.floats(-60, 60, width=width))
    return st.integers(1, 5).flatmap(lambda c: st.lists(st.lists(logit, min_size=c, max_size=c), min_size=1, max_size=4))


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
@example(data=None)
def test_log_softmax_logsumexp_and_cross_entropy_where_one_logit_dominates(dtype, data):
    if data is None:  # the cases that round log(1 + tiny) to 0 in a naive formula
        rows = [[0.0, -40.0, -45.0], [1e4, 1e4 - 30.0, -1e4], [-1e4, -1e4, -1e4], [5.0, 5.0, -80.0]]
    else:
        rows = data.draw(_rows(dtype))
    x = np.asarray(rows)
    n, c = x.shape
    labels = np.argmax(x, axis=1)  # the confident, correct predictions where losses are tiny
    logits = tensor(x, requires_grad=True, dtype=dtype)
    exact = [[+Decimal(float(v)) for v in row] for row in host(logits)]  # unary + rounds to 50 digits
    reference = [_log_softmax_row(row) for row in exact]
    probs = [[v.exp() for v in row] for row in reference]
    scale = [max(abs(v) for v in row) for row in exact]  # the largest |x_j| of each row
    # sum_j |x_j| |df/dx_j| <= scale * (1-norm of the gradient), for f = log p_i, p_i and logsumexp
    rest = [[_one_minus_exp(v) for v in row] for row in reference]  # 1 - p, unrounded where p is near 1
    cond_log = [2 * scale[r] * q for r, row in enumerate(rest) for q in row]
    cond_p = [2 * scale[r] * p * q for r in range(n) for p, q in zip(probs[r], rest[r])]
    flat = [v for row in reference for v in row]
    _close(host(mg.log_softmax(logits, axis=1)).ravel(), flat, dtype, "log_softmax", cond_log)
    _close(host(mg.softmax(logits, axis=1)).ravel(), [p for row in probs for p in row], dtype, "softmax", cond_p)
    _close(host(logits.logsumexp(axis=1)), [_log_sum_exp(row) for row in exact], dtype, "logsumexp", scale)
    picked = [i * c + int(labels[i]) for i in range(n)]
    losses = mg.cross_entropy(logits, labels, reduction="none")
    reference_losses = [-reference[i][labels[i]] for i in range(n)]
    _close(host(losses), reference_losses, dtype, "cross_entropy (none)", [cond_log[k] for k in picked])
    loss = mg.cross_entropy(logits, labels)
    mean = sum(reference_losses, Decimal(0)) / n
    cond_mean = sum((cond_log[k] for k in picked), Decimal(0)) / n
    _close(np.atleast_1d(host(loss)), [mean], dtype, "cross_entropy (mean)", [cond_mean])
    loss.backward()
    grad = [g / n for i, row in enumerate(exact) for g in _softmax_minus_one_hot(row, int(labels[i]))]
    _close(host(logits.grad).ravel(), grad, dtype, "cross_entropy gradient", [v / n for v in cond_p])


@pytest.mark.filterwarnings("ignore:overflow encountered in subtract")  # -max - max is -inf: the true log p
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_overflow_nan_or_inf_at_the_extremes(dtype):
    big = float(np.finfo(dtype).max)
    x = tensor([-big, -1e4, 1e4, big], requires_grad=True, dtype=dtype)
    for fn in (mg.sigmoid, mg.tanh, mg.ops.log_sigmoid):
        out = fn(x)
        assert np.all(np.isfinite(host(out))), fn.__name__
        x.grad = None
        out.sum().backward()
        assert np.all(np.isfinite(host(x.grad))), fn.__name__
    rows = tensor([[-big, big], [1e4, -1e4]], dtype=dtype)
    assert np.all(np.isfinite(host(mg.cross_entropy(rows, np.array([1, 0]), reduction="none"))))
    np.testing.assert_array_equal(host(mg.log_softmax(rows, axis=1))[:, :1], [[-np.inf], [0.0]])
