"""Tests of mg.optim: optimizer updates against hand-written formulas, checkpoint round trips,
the EMA of weights and buffers, learning-rate schedules, and argument errors.

Expected values are computed here with plain NumPy in float64, independently of the
library code, for a few steps with fixed gradients.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B
from tests.helpers import host

P0 = np.array([1.0, -2.0, 0.5, 0.0])
GRADS = [
    np.array([0.5, -1.0, 2.0, 0.1]),
    np.array([-0.25, 0.75, 1.5, -0.2]),
    np.array([1.0, 0.5, -3.0, 0.3]),
]


def param(values=P0, dtype: str = "float64") -> mg.nn.Parameter:
    return mg.nn.Parameter(np.asarray(values), dtype=dtype)


def run(make_optimizer, grads=GRADS, dtype: str = "float64") -> np.ndarray:
    """Apply `make_optimizer([p])` to a parameter starting at P0 with the given gradients."""
    p = param(dtype=dtype)
    opt = make_optimizer([p])
    for g in grads:
        p.grad = B.asarray(g, dtype)
        opt.step()
    assert opt.step_count == len(grads)
    return host(p)


def close(actual, expected) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def to_npz_and_back(state: dict) -> dict:
    """What a checkpoint module does: host arrays into an .npz, then numpy.load (numbers come back 0-d)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: B.to_numpy(v) if B.is_array(v) else np.asarray(v) for k, v in state.items()})
    buffer.seek(0)
    with np.load(buffer) as data:
        return {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------


def sgd_reference(lr, momentum=0.0, nesterov=False, weight_decay=0.0, grads=GRADS):
    p, buf = P0.copy(), np.zeros_like(P0)
    for grad in grads:
        g = grad + weight_decay * p
        if momentum:
            buf = momentum * buf + g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    return p


def test_sgd_plain_by_hand():
    g1, g2 = GRADS[0], GRADS[1]
    expected = P0 - 0.1 * g1 - 0.1 * g2
    close(run(lambda ps: mg.optim.SGD(ps, lr=0.1), GRADS[:2]), expected)


def test_sgd_momentum_by_hand():
    g1, g2, g3 = GRADS
    p1 = P0 - 0.1 * g1  # buf = g1
    p2 = p1 - 0.1 * (0.9 * g1 + g2)  # buf = 0.9 g1 + g2
    p3 = p2 - 0.1 * (0.9 * (0.9 * g1 + g2) + g3)
    close(run(lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=0.9)), p3)


def test_sgd_nesterov_by_hand():
    g1, g2 = GRADS[0], GRADS[1]
    p1 = P0 - 0.1 * (g1 + 0.9 * g1)  # buf = g1, direction g + m buf
    buf2 = 0.9 * g1 + g2
    p2 = p1 - 0.1 * (g2 + 0.9 * buf2)
    close(run(lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), GRADS[:2]), p2)


def test_sgd_weight_decay_by_hand():
    g1, g2 = GRADS[0], GRADS[1]
    p1 = P0 - 0.1 * (g1 + 0.01 * P0)
    p2 = p1 - 0.1 * (g2 + 0.01 * p1)
    close(run(lambda ps: mg.optim.SGD(ps, lr=0.1, weight_decay=0.01), GRADS[:2]), p2)


@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    nesterov=st.booleans(),
    weight_decay=st.sampled_from([0.0, 1e-4, 0.1]),
)
def test_sgd_matches_reference(lr, momentum, nesterov, weight_decay):
    nesterov = nesterov and momentum > 0
    hyper = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    close(run(lambda ps: mg.optim.SGD(ps, **hyper)), sgd_reference(**hyper))


# ----------------------------------------------------------------------------
# RMSProp
# ----------------------------------------------------------------------------


def rmsprop_reference(lr, alpha=0.9, eps=1e-8, momentum=0.0, weight_decay=0.0, centered=False, eps_inside_sqrt=False):
    p = P0.copy()
    v, m, buf = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for grad in GRADS:
        g = grad + weight_decay * p
        v = alpha * v + (1 - alpha) * g**2
        s = v
        if centered:
            m = alpha * m + (1 - alpha) * g
            s = v - m**2
        den = np.sqrt(s + eps) if eps_inside_sqrt else np.sqrt(s) + eps
        if momentum:
            buf = momentum * buf + g / den
            p = p - lr * buf
        else:
            p = p - lr * g / den
    return p


def test_rmsprop_by_hand():
    g1, g2 = GRADS[0], GRADS[1]
    v1 = 0.1 * g1**2
    p1 = P0 - 0.01 * g1 / (np.sqrt(v1) + 1e-8)
    v2 = 0.9 * v1 + 0.1 * g2**2
    p2 = p1 - 0.01 * g2 / (np.sqrt(v2) + 1e-8)
    close(run(lambda ps: mg.optim.RMSProp(ps, lr=0.01), GRADS[:2]), p2)


def test_rmsprop_inception_recipe_by_hand():
    """eps = 1.0 inside the square root, momentum 0.9 (TensorFlow's placement)."""
    g1, g2 = GRADS[0], GRADS[1]
    v1 = 0.1 * g1**2
    buf1 = g1 / np.sqrt(v1 + 1.0)
    p1 = P0 - 0.045 * buf1
    v2 = 0.9 * v1 + 0.1 * g2**2
    buf2 = 0.9 * buf1 + g2 / np.sqrt(v2 + 1.0)
    p2 = p1 - 0.045 * buf2
    recipe = dict(lr=0.045, alpha=0.9, eps=1.0, momentum=0.9, eps_inside_sqrt=True)
    close(run(lambda ps: mg.optim.RMSProp(ps, **recipe), GRADS[:2]), p2)


def test_rmsprop_centered_by_hand():
    g1 = GRADS[0]
    v1, m1 = 0.5 * g1**2, 0.5 * g1
    expected = P0 - 0.01 * g1 / (np.sqrt(v1 - m1**2) + 1e-3)
    close(run(lambda ps: mg.optim.RMSProp(ps, lr=0.01, alpha=0.5, eps=1e-3, centered=True), GRADS[:1]), expected)


@given(
    lr=st.floats(1e-4, 0.1),
    alpha=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    eps=st.sampled_from([1e-8, 1e-3, 1.0]),
    momentum=st.sampled_from([0.0, 0.9]),
    weight_decay=st.sampled_from([0.0, 0.01]),
    centered=st.booleans(),
    eps_inside_sqrt=st.booleans(),
)
def test_rmsprop_matches_reference(lr, alpha, eps, momentum, weight_decay, centered, eps_inside_sqrt):
    hyper = dict(
        lr=lr,
        alpha=alpha,
        eps=eps,
        momentum=momentum,
        weight_decay=weight_decay,
        centered=centered,
        eps_inside_sqrt=eps_inside_sqrt,
    )
    close(run(lambda ps: mg.optim.RMSProp(ps, **hyper)), rmsprop_reference(**hyper))


# ----------------------------------------------------------------------------
# Adam
# ----------------------------------------------------------------------------


def adam_reference(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    p, m, v = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    for t, grad in enumerate(GRADS, start=1):
        g = grad
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = grad + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_adam_first_step_by_hand():
    """After bias correction the first step is lr * g / (|g| + eps): about lr in size."""
    g1 = GRADS[0]
    expected = P0 - 0.01 * g1 / (np.abs(g1) + 1e-8)
    close(run(lambda ps: mg.optim.Adam(ps, lr=0.01), GRADS[:1]), expected)


def test_adam_two_steps_by_hand():
    g1, g2 = GRADS[0], GRADS[1]
    p1 = P0 - 0.01 * g1 / (np.abs(g1) + 1e-8)
    m2 = 0.9 * 0.1 * g1 + 0.1 * g2
    v2 = 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    p2 = p1 - 0.01 * (m2 / (1 - 0.9**2)) / (np.sqrt(v2 / (1 - 0.999**2)) + 1e-8)
    close(run(lambda ps: mg.optim.Adam(ps, lr=0.01), GRADS[:2]), p2)


def test_adamw_decay_by_hand():
    g1 = GRADS[0]
    expected = P0 * (1 - 0.01 * 0.1) - 0.01 * g1 / (np.abs(g1) + 1e-8)
    close(run(lambda ps: mg.optim.Adam(ps, lr=0.01, weight_decay=0.1, decoupled=True), GRADS[:1]), expected)


@given(
    lr=st.floats(1e-4, 0.1),
    betas=st.sampled_from([(0.9, 0.999), (0.0, 0.99), (0.5, 0.0), (0.95, 0.9)]),
    eps=st.sampled_from([1e-8, 1e-3]),
    weight_decay=st.sampled_from([0.0, 0.01, 0.5]),
    decoupled=st.booleans(),
)
def test_adam_matches_reference(lr, betas, eps, weight_decay, decoupled):
    hyper = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=decoupled)
    close(run(lambda ps: mg.optim.Adam(ps, **hyper)), adam_reference(**hyper))


def test_adam_counts_steps_per_parameter():
    """A parameter without a gradient on step 1 gets first-step bias correction on step 2."""
    a, b = param(), param()
    opt = mg.optim.Adam([a, b], lr=0.01)
    a.grad = B.asarray(GRADS[0], "float64")
    opt.step()
    assert 1 not in opt.state
    close(host(b), P0)
    b.grad = B.asarray(GRADS[1], "float64")
    a.grad = None
    opt.step()
    close(host(b), P0 - 0.01 * GRADS[1] / (np.abs(GRADS[1]) + 1e-8))
    assert opt.state[0]["step"] == 1 and opt.state[1]["step"] == 1


# ----------------------------------------------------------------------------
# Behaviour shared by all optimizers
# ----------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "rmsprop": lambda ps: mg.optim.RMSProp(ps, lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
    "adam": lambda ps: mg.optim.Adam(ps, lr=0.01, weight_decay=0.01, decoupled=True),
}


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_keeps_dtype_replaces_array_and_skips_missing_grads(kind):
    p, frozen = param(dtype="float32"), param(dtype="float32")
    before, frozen_before = p.data, frozen.data
    opt = OPTIMIZERS[kind]([p, frozen])
    p.grad = B.asarray(GRADS[0], "float32")
    opt.step()
    assert B.dtype_name(p.dtype) == "float32"
    assert p.data is not before  # a new array: the old one is untouched
    np.testing.assert_array_equal(B.to_numpy(before), P0.astype(np.float32))
    assert frozen.data is frozen_before and 1 not in opt.state
    opt.zero_grad()
    assert p.grad is None and frozen.grad is None


def test_step_runs_without_recording_a_graph():
    p = param()
    p.grad = B.asarray(GRADS[0], "float64")
    mg.optim.SGD([p], lr=0.1).step()
    assert p.creator is None and p.requires_grad


def test_lr_change_applies_to_next_step():
    p = param()
    opt = mg.optim.SGD([p], lr=0.1, momentum=0.5)
    p.grad = B.asarray(GRADS[0], "float64")
    opt.step()
    opt.lr = 0.01
    p.grad = B.asarray(GRADS[1], "float64")
    opt.step()
    p1 = P0 - 0.1 * GRADS[0]
    close(host(p), p1 - 0.01 * (0.5 * GRADS[0] + GRADS[1]))


def test_accepts_named_parameters_and_names_them_in_errors():
    model = Tiny()
    opt = mg.optim.SGD(model.named_parameters(), lr=0.1)
    assert all(a is b for a, b in zip(opt.params, model.parameters(), strict=True))
    assert opt.param_names == ["w", "b"]
    model.w.grad = B.asarray(np.zeros(3))
    with pytest.raises(ValueError, match=r"parameter 0 \('w'\)\.grad must have the parameter's shape \(2, 2\), got \(3,\)"):
        opt.step()


# ----------------------------------------------------------------------------
# State dicts: a run restored mid-way continues exactly like an uninterrupted one
# ----------------------------------------------------------------------------


class Tiny(mg.nn.Module):
    """Two parameters, a floating buffer, an integer-array buffer and a Python-number buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = mg.nn.Parameter(np.array([[0.5, -1.0], [1.5, 2.0]]))
        self.b = mg.nn.Parameter(np.array([0.1, -0.2]))
        self.register_buffer("running_mean", B.asarray(np.zeros(2, dtype=np.float32)))
        self.register_buffer("count", B.asarray(np.zeros((), dtype=np.int64)))
        self.register_buffer("calls", 0)

    def forward(self, x: mg.Tensor) -> mg.Tensor:
        y = x @ self.w + self.b
        xp = B.namespace(y.data)
        self.running_mean = 0.9 * self.running_mean + 0.1 * xp.mean(y.data, axis=0)
        self.count = self.count + 1
        self.calls += 1
        return y


X = np.array([[1.0, 2.0], [-0.5, 0.3], [0.7, -1.2]], dtype=np.float32)
Y = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)


def train(model: Tiny, opt, steps: int, scheduler=None, ema=None) -> None:
    x, y = mg.Tensor(X), mg.Tensor(Y)
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update()


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_state_dict_round_trip_continues_identically(kind):
    def schedule():
        return mg.optim.Warmup(2, mg.optim.CosineAnnealing(6, min_factor=0.1))

    model_a = Tiny()
    opt_a = OPTIMIZERS[kind](model_a.parameters())
    sched_a = mg.optim.LRScheduler(opt_a, schedule())
    train(model_a, opt_a, 6, sched_a)

    model_b = Tiny()
    opt_b = OPTIMIZERS[kind](model_b.parameters())
    sched_b = mg.optim.LRScheduler(opt_b, schedule())
    train(model_b, opt_b, 3, sched_b)
    saved_model = to_npz_and_back(model_b.state_dict())
    saved_opt = to_npz_and_back(opt_b.state_dict())
    saved_sched = to_npz_and_back(sched_b.state_dict())

    model_c = Tiny()
    opt_c = OPTIMIZERS[kind](model_c.parameters())
    sched_c = mg.optim.LRScheduler(opt_c, schedule())
    model_c.load_state_dict(saved_model)
    opt_c.load_state_dict(saved_opt)
    sched_c.load_state_dict(saved_sched)
    assert opt_c.lr == opt_b.lr and opt_c.step_count == 3
    train(model_c, opt_c, 3, sched_c)

    for name in ("w", "b"):
        np.testing.assert_array_equal(host(getattr(model_c, name)), host(getattr(model_a, name)))
    assert opt_c.lr == opt_a.lr
    state_a, state_c = opt_a.state_dict(), opt_c.state_dict()
    assert sorted(state_a) == sorted(state_c)
    for key, value in state_a.items():
        if B.is_array(value):
            np.testing.assert_array_equal(B.to_numpy(state_c[key]), B.to_numpy(value))
            assert B.device_of(state_c[key]) == B.device_of(value)
        else:
            assert state_c[key] == value and type(state_c[key]) is type(value)


def test_state_dict_is_plain_data_with_documented_keys():
    model = Tiny()
    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, 2)
    state = opt.state_dict()
    assert set(state) == {
        "step",
        "lr",
        "num_params",
        "momentum",
        "nesterov",
        "weight_decay",
        "state.0.momentum",
        "state.1.momentum",
    }
    assert state["step"] == 2 and state["lr"] == 0.1 and state["num_params"] == 2
    for value in state.values():
        assert B.is_array(value) or isinstance(value, (int, float, bool))
    assert state["state.0.momentum"] is not opt.state[0]["momentum"]  # a copy


def test_load_state_dict_restores_hyperparameters():
    opt = mg.optim.Adam([param()], lr=0.5, betas=(0.5, 0.6), decoupled=True)
    other = mg.optim.Adam([param()])
    other.load_state_dict(to_npz_and_back(opt.state_dict()))
    assert other.betas == (0.5, 0.6) and other.decoupled is True and other.lr == 0.5


def test_load_state_dict_rejects_mismatches_and_changes_nothing():
    model = Tiny()
    opt = mg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, 1)
    good = opt.state_dict()
    before = opt.state_dict()

    bad_shape = dict(good, **{"state.1.momentum": B.asarray(np.zeros(3))})
    with pytest.raises(ValueError, match=r"'state.1.momentum': expected an array of shape \(2,\), got \(3,\)"):
        opt.load_state_dict(bad_shape)
    with pytest.raises(KeyError, match="refers to parameter 5, but there are 2"):
        opt.load_state_dict(dict(good, **{"state.5.momentum": B.asarray(np.zeros(2))}))
    with pytest.raises(KeyError, match="expected a state name among"):
        opt.load_state_dict(dict(good, **{"state.0.exp_avg": B.asarray(np.zeros((2, 2)))}))
    with pytest.raises(ValueError, match="the state is for 3 parameters, this optimizer has 2"):
        opt.load_state_dict(dict(good, num_params=3))
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\), got 1.5"):
        opt.load_state_dict(dict(good, momentum=1.5, lr=7.0))
    with pytest.raises(KeyError, match="missing keys"):
        mg.optim.Adam(model.parameters()).load_state_dict(good)

    after = opt.state_dict()
    assert opt.lr == 0.1 and opt.momentum == 0.9
    np.testing.assert_array_equal(B.to_numpy(after["state.0.momentum"]), B.to_numpy(before["state.0.momentum"]))


# ----------------------------------------------------------------------------
# Argument errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda ps: mg.optim.SGD(ps, lr=0.0), ValueError, r"SGD: lr: expected a number > 0, got 0.0"),
        (lambda ps: mg.optim.SGD(ps, lr=-1), ValueError, r"SGD: lr: expected a number > 0, got -1.0"),
        (lambda ps: mg.optim.SGD(ps, lr=float("nan")), ValueError, r"SGD: lr: expected a number > 0, got nan"),
        (lambda ps: mg.optim.SGD(ps, lr="0.1"), TypeError, r"SGD: lr: expected a number > 0, got str '0.1'"),
        (lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=1.0), ValueError, r"momentum: expected a number in \[0, 1\), got 1.0"),
        (lambda ps: mg.optim.SGD(ps, lr=0.1, momentum=-0.1), ValueError, r"momentum: expected a number in \[0, 1\)"),
        (lambda ps: mg.optim.SGD(ps, lr=0.1, nesterov=True), ValueError, r"nesterov: expected momentum > 0"),
        (lambda ps: mg.optim.SGD(ps, lr=0.1, nesterov=1), TypeError, r"nesterov: expected True or False, got int 1"),
        (lambda ps: mg.optim.SGD(ps, lr=0.1, weight_decay=-1e-4), ValueError, r"weight_decay: expected a number >= 0"),
        (lambda ps: mg.optim.RMSProp(ps, lr=0.1, alpha=1.0), ValueError, r"RMSProp: alpha: expected a number in \[0, 1\)"),
        (lambda ps: mg.optim.RMSProp(ps, lr=0.1, eps=0.0), ValueError, r"RMSProp: eps: expected a number > 0, got 0.0"),
        (lambda ps: mg.optim.RMSProp(ps, lr=0.1, centered="yes"), TypeError, r"centered: expected True or False"),
        (lambda ps: mg.optim.Adam(ps, betas=(0.9, 1.0)), ValueError, r"Adam: betas\[1\]: expected a number in \[0, 1\)"),
        (lambda ps: mg.optim.Adam(ps, betas=0.9), TypeError, r"Adam: betas: expected a pair"),
        (lambda ps: mg.optim.Adam(ps, eps=-1.0), ValueError, r"Adam: eps: expected a number > 0"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make([param()])


def test_bad_params_raise_clear_errors():
    model = Tiny()
    with pytest.raises(
        TypeError, match=r"params: expected an iterable of Parameters such as model.parameters\(\), got a Tiny"
    ):
        mg.optim.SGD(model, lr=0.1)
    with pytest.raises(TypeError, match="got a Parameter itself"):
        mg.optim.SGD(model.w, lr=0.1)
    with pytest.raises(ValueError, match="expected at least one parameter, got an empty iterable"):
        mg.optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[1\]: expected a Parameter \(or Tensor\), got float"):
        mg.optim.SGD([model.w, 1.0], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[2\]: the same parameter already appears at position 0"):
        mg.optim.SGD([model.w, model.b, model.w], lr=0.1)


def test_lr_attribute_may_reach_zero_but_not_negative():
    opt = mg.optim.SGD([param()], lr=0.1)
    opt.lr = 0.0
    with pytest.raises(ValueError, match=r"SGD: lr: expected a number >= 0, got -0.5"):
        opt.lr = -0.5
    assert opt.lr == 0.0


# ----------------------------------------------------------------------------
# EMA
# ----------------------------------------------------------------------------


def set_values(model: Tiny, k: int) -> dict:
    """Give the model new values (as a training step would) and return them on the host."""
    values = {
        "w": np.array([[0.5, -1.0], [1.5, 2.0]], dtype=np.float32) + k,
        "b": np.array([0.1, -0.2], dtype=np.float32) * (k + 1),
        "running_mean": np.array([1.0, 2.0], dtype=np.float32) * k,
        "count": np.array(k, dtype=np.int64),
    }
    model.w.data = B.asarray(values["w"])
    model.b.data = B.asarray(values["b"])
    model.running_mean = B.asarray(values["running_mean"])
    model.count = B.asarray(values["count"])
    model.calls = 10 * k
    return values


def test_ema_follows_the_formula_and_copies_non_float_values():
    model = Tiny()
    start = {name: B.to_numpy(v) if B.is_array(v) else v for name, v in model.state_dict().items()}
    ema = mg.optim.EMA(model, decay=0.9)
    expected = {name: start[name].astype(np.float64) for name in ("w", "b", "running_mean")}
    for k in range(1, 4):
        values = set_values(model, k)
        ema.update()
        for name in expected:
            expected[name] = 0.9 * expected[name] + 0.1 * values[name]
            np.testing.assert_allclose(B.to_numpy(ema.shadow[name]), expected[name], rtol=1e-6)
            assert B.dtype_name(ema.shadow[name].dtype) == "float32"
        np.testing.assert_array_equal(B.to_numpy(ema.shadow["count"]), values["count"])  # copied, not averaged
        assert B.dtype_name(ema.shadow["count"].dtype) == "int64"
        assert ema.shadow["calls"] == 10 * k
    assert ema.num_updates == 3


def test_ema_decay_warmup():
    model = Tiny()
    ema = mg.optim.EMA(model, decay=0.999, warmup=True)
    shadow = B.to_numpy(model.b.data).astype(np.float64)
    for n in range(3):
        d = min(0.999, (1 + n) / (10 + n))
        assert ema.next_decay == pytest.approx(d)
        values = set_values(model, n + 1)
        ema.update()
        shadow = d * shadow + (1 - d) * values["b"]
        np.testing.assert_allclose(B.to_numpy(ema.shadow["b"]), shadow, rtol=1e-6)
    assert mg.optim.EMA(model, decay=0.5, warmup=True).next_decay == 0.1
    ema.num_updates = 10_000
    assert ema.next_decay == 0.999


def test_ema_constant_value_stays_exact():
    model = Tiny()
    ema = mg.optim.EMA(model, decay=0.7)
    for _ in range(5):
        ema.update()
    np.testing.assert_array_equal(B.to_numpy(ema.shadow["w"]), host(model.w))


def test_ema_swap_and_restore_are_exact():
    model = Tiny()
    ema = mg.optim.EMA(model, decay=0.5)
    set_values(model, 1)
    ema.update()
    set_values(model, 2)
    originals = {"w": model.w.data, "b": model.b.data, "running_mean": model.running_mean, "count": model.count}
    host_originals = {name: B.to_numpy(v).copy() for name, v in originals.items()}

    with ema.swapped() as swapped:
        assert swapped is model
        for name in ("w", "b"):
            np.testing.assert_array_equal(host(getattr(model, name)), B.to_numpy(ema.shadow[name]))
        np.testing.assert_array_equal(B.to_numpy(model.running_mean), B.to_numpy(ema.shadow["running_mean"]))
        assert model.calls == 10
        model.w.data = model.w.data * 0  # changes made while swapped do not reach the averages
        with pytest.raises(RuntimeError, match="restore"):
            ema.update()
    assert model.w.data is originals["w"] and model.running_mean is originals["running_mean"]
    assert model.b.data is originals["b"] and model.count is originals["count"]
    assert model.calls == 20
    for name, value in host_originals.items():
        np.testing.assert_array_equal(B.to_numpy(originals[name]), value)
    assert not np.all(B.to_numpy(ema.shadow["w"]) == 0)

    with pytest.raises(ZeroDivisionError), ema.swapped():
        _ = 1 / 0
    assert model.w.data is originals["w"]  # restored on error too

    ema.apply()
    with pytest.raises(RuntimeError, match="already swapped"):
        ema.apply()
    ema.restore()
    with pytest.raises(RuntimeError, match="nothing to restore"):
        ema.restore()


def test_ema_averaged_state_dict_loads_into_a_model():
    model = Tiny()
    ema = mg.optim.EMA(model, decay=0.5)
    set_values(model, 3)
    ema.update()
    inference = Tiny()
    inference.load_state_dict(ema.averaged_state_dict())
    np.testing.assert_array_equal(host(inference.w), B.to_numpy(ema.shadow["w"]))


def test_ema_state_dict_round_trip_continues_identically():
    model_a, model_b = Tiny(), Tiny()
    opt_a, opt_b = mg.optim.SGD(model_a.parameters(), lr=0.1), mg.optim.SGD(model_b.parameters(), lr=0.1)
    ema_a = mg.optim.EMA(model_a, decay=0.9, warmup=True)
    ema_b = mg.optim.EMA(model_b, decay=0.9, warmup=True)
    train(model_a, opt_a, 4, ema=ema_a)
    train(model_b, opt_b, 2, ema=ema_b)

    model_c = Tiny()
    model_c.load_state_dict(to_npz_and_back(model_b.state_dict()))
    opt_c = mg.optim.SGD(model_c.parameters(), lr=0.1)
    opt_c.load_state_dict(to_npz_and_back(opt_b.state_dict()))
    ema_c = mg.optim.EMA(model_c)
    ema_c.load_state_dict(to_npz_and_back(ema_b.state_dict()))
    assert ema_c.decay == 0.9 and ema_c.warmup is True and ema_c.num_updates == 2
    train(model_c, opt_c, 2, ema=ema_c)

    for name, value in ema_a.shadow.items():
        if B.is_array(value):
            np.testing.assert_array_equal(B.to_numpy(ema_c.shadow[name]), B.to_numpy(value))
            assert B.device_of(ema_c.shadow[name]) == B.device_of(value)
        else:
            assert ema_c.shadow[name] == value


def test_ema_errors():
    model = Tiny()
    with pytest.raises(ValueError, match=r"EMA: decay: expected a number in \[0, 1\], got 1.5"):
        mg.optim.EMA(model, decay=1.5)
    with pytest.raises(TypeError, match="EMA: model: expected a minigrad Module, got list"):
        mg.optim.EMA(model.parameters())
    ema = mg.optim.EMA(model)
    state = ema.state_dict()
    with pytest.raises(ValueError, match=r"'shadow.w': expected an array of shape \(2, 2\), got \(3,\)"):
        ema.load_state_dict(dict(state, **{"shadow.w": B.asarray(np.zeros(3))}))
    with pytest.raises(KeyError, match=r"missing keys \['shadow.b'\]"):
        ema.load_state_dict({k: v for k, v in state.items() if k != "shadow.b"})
    model.extra = mg.nn.Parameter(np.zeros(2))
    with pytest.raises(RuntimeError, match=r"changed since the EMA was made \(added \['extra'\]"):
        ema.update()


# ----------------------------------------------------------------------------
# Learning-rate schedules
# ----------------------------------------------------------------------------

steps = st.integers(0, 10_000)


@given(every=st.integers(1, 100), gamma=st.floats(0.01, 1.0), step=steps)
def test_step_decay(every, gamma, step):
    assert mg.optim.StepDecay(every, gamma)(step) == gamma ** (step // every)


def test_step_decay_values():
    schedule = mg.optim.StepDecay(every=10, gamma=0.5)
    assert [schedule(s) for s in (0, 9, 10, 19, 20, 35)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]


@given(total=st.integers(1, 1000), min_factor=st.floats(0.0, 1.0), step=steps)
def test_cosine_annealing(total, min_factor, step):
    schedule = mg.optim.CosineAnnealing(total, min_factor)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(total) == pytest.approx(min_factor)
    assert schedule(total + step) == pytest.approx(min_factor)
    value = schedule(step)
    assert min_factor - 1e-12 <= value <= 1.0 + 1e-12
    assert schedule(step + 1) <= value + 1e-12  # never increases
    expected = min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    assert value == pytest.approx(expected)


def test_cosine_annealing_midpoint():
    assert mg.optim.CosineAnnealing(100, min_factor=0.2)(50) == pytest.approx(0.6)


@given(warm=st.integers(1, 200), step=steps)
def test_warmup_ramps_then_follows_inner_schedule(warm, step):
    inner = mg.optim.CosineAnnealing(5000, 0.1)
    schedule = mg.optim.Warmup(warm, inner)
    assert schedule(step) == pytest.approx(min(1.0, (step + 1) / warm) * inner(step))
    assert mg.optim.Warmup(warm)(step) == pytest.approx(min(1.0, (step + 1) / warm))
    assert schedule(0) > 0


def test_warmup_values():
    schedule = mg.optim.Warmup(4, mg.optim.StepDecay(10, 0.5))
    assert [schedule(s) for s in (0, 1, 3, 9, 10)] == [0.25, 0.5, 1.0, 1.0, 0.5]
    assert mg.optim.Warmup(3, lambda step: 2.0)(0) == pytest.approx(2.0 / 3)


@given(base=st.floats(1e-4, 1.0), n=st.integers(0, 30))
def test_lr_scheduler_sets_optimizer_lr(base, n):
    opt = mg.optim.SGD([param()], lr=base)
    schedule = mg.optim.Warmup(5, mg.optim.CosineAnnealing(20, 0.05))
    scheduler = mg.optim.LRScheduler(opt, schedule)
    assert opt.lr == pytest.approx(base * schedule(0))
    for _ in range(n):
        scheduler.step()
    assert scheduler.step_count == n
    assert opt.lr == pytest.approx(base * schedule(n)) and scheduler.lr == opt.lr

    other_opt = mg.optim.SGD([param()], lr=123.0)
    other = mg.optim.LRScheduler(other_opt, schedule)
    other.load_state_dict(to_npz_and_back(scheduler.state_dict()))
    assert other.base_lr == base and other.step_count == n and other_opt.lr == opt.lr


def test_lr_scheduler_explicit_base_lr_and_zero_lr():
    opt = mg.optim.SGD([param()], lr=1.0)
    scheduler = mg.optim.LRScheduler(opt, mg.optim.CosineAnnealing(2), base_lr=0.4)
    assert opt.lr == 0.4
    scheduler.step()
    scheduler.step()
    assert opt.lr == pytest.approx(0.0, abs=1e-15)


def test_schedule_errors():
    with pytest.raises(ValueError, match="StepDecay: every: expected an integer >= 1, got 0"):
        mg.optim.StepDecay(0)
    with pytest.raises(ValueError, match=r"StepDecay: gamma: expected a number in \(0, 1\], got 0.0"):
        mg.optim.StepDecay(10, gamma=0.0)
    with pytest.raises(ValueError, match=r"CosineAnnealing: min_factor: expected a number in \[0, 1\], got 2.0"):
        mg.optim.CosineAnnealing(10, min_factor=2)
    with pytest.raises(TypeError, match=r"CosineAnnealing: total_steps: expected an integer >= 1, got float 10.5"):
        mg.optim.CosineAnnealing(10.5)
    with pytest.raises(ValueError, match="Warmup: steps: expected an integer >= 1, got 0"):
        mg.optim.Warmup(0)
    with pytest.raises(TypeError, match="Warmup: schedule: expected a callable"):
        mg.optim.Warmup(5, 0.5)
    with pytest.raises(ValueError, match="StepDecay: step: expected an integer >= 0, got -1"):
        mg.optim.StepDecay(3)(-1)
    opt = mg.optim.SGD([param()], lr=0.1)
    with pytest.raises(TypeError, match="LRScheduler: optimizer: expected a minigrad Optimizer, got list"):
        mg.optim.LRScheduler([opt], mg.optim.StepDecay(3))
    with pytest.raises(ValueError, match=r"LRScheduler: schedule\(0\): expected a number >= 0, got -1.0"):
        mg.optim.LRScheduler(opt, lambda step: -1.0)
    scheduler = mg.optim.LRScheduler(opt, mg.optim.StepDecay(3))
    with pytest.raises(KeyError, match=r"expected the keys \['base_lr', 'step'\]"):
        scheduler.load_state_dict({"step": 1})
