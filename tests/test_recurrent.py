"""Proofs for the recurrent layers and the normalizations inside the recurrence (minigrad.norm.recurrent).

* finite differences of RNNCell, LSTMCell and a short LSTM sequence (BPTT) for every normalization, r_t and d_t
  held fixed for renorm-shared;
* the null-space identities of the gradient at every timestep of a sequence;
* renorm-shared with r_max = 1, d_max = 0 equals batch-shared in training (outputs, gradients, averages);
* batch-per-step equals one BatchNorm1d layer per timestep (training, averages, inference, the last reused);
* the shared averages' update equals (1/T) Σ_t of the timesteps' μ_B,t and σ_B,t, once per sequence;
* in eval mode an example's output does not depend on the rest of the batch;
* PyTorch's shapes, and 500 timesteps without recursion.

Every test runs on NumPy and array-api-strict (the autouse backend fixture), in float64.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B
from minigrad.norm.recurrent import MODES, RecurrentNorm, held_corrections, recurrent_norms

SEEDS = st.integers(0, 2**16)
BATCH_MODES = ("batch-per-step", "batch-shared", "renorm-shared")


def host(a) -> np.ndarray:
    return a.numpy() if isinstance(a, mg.Tensor) else B.to_numpy(a)


def tensor(a, requires_grad: bool = False) -> mg.Tensor:
    return mg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad, dtype="float64")


@contextmanager
def swapped_parameters(module: mg.nn.Module, values: list[mg.Tensor]):
    """Run with `module`'s parameters replaced by `values` (in named_parameters order), then put them back."""
    names = [name for name, _ in module.named_parameters()]
    originals = dict(module.named_parameters())
    modules = dict(module.named_modules())
    owners = {name: modules[name.rpartition(".")[0]] for name in names}

    def put(name, value):
        object.__setattr__(owners[name], name.rpartition(".")[2], value)

    for name, value in zip(names, values):
        put(name, value)
    try:
        yield
    finally:
        for name in names:
            put(name, originals[name])


def gradcheck_module(module: mg.nn.Module, run, inputs: list[mg.Tensor]) -> bool:
    """Finite differences of `run(module, *inputs)` with respect to the inputs and every parameter."""
    params = [tensor(host(p), requires_grad=True) for p in module.parameters()]
    count = len(inputs)

    def fn(*args):
        with swapped_parameters(module, list(args[count:])):
            return run(module, *args[:count])

    return mg.gradcheck(fn, list(inputs) + params)


def randomize_running_stats(module: mg.nn.Module, rng: np.random.Generator) -> None:
    for norm in recurrent_norms(module):
        if norm.mode in BATCH_MODES:
            shape = norm.running_mean.shape
            norm.running_mean = B.from_numpy(rng.normal(0.0, 0.3, shape))
            norm.running_std = B.from_numpy(rng.uniform(0.3, 1.5, shape))


def make(kind: str, norm: str, input_size=2, hidden=2, **options):
    classes = {"rnn_cell": mg.nn.RNNCell, "lstm_cell": mg.nn.LSTMCell, "lstm": mg.nn.LSTM, "rnn": mg.nn.RNN}
    mg.manual_seed(0)
    return classes[kind](input_size, hidden, norm=norm, max_steps=3, dtype="float64", **options)


# ----------------------------------------------------------------------------
# 1. Finite differences, every normalization (r_t, d_t held for renorm-shared)
# ----------------------------------------------------------------------------


@settings(max_examples=2)
@given(seed=SEEDS)
@pytest.mark.parametrize("norm", MODES)
@pytest.mark.parametrize("kind", ["rnn_cell", "lstm_cell"])
def test_cell_gradients_match_finite_differences(kind: str, norm: str, seed: int):
    rng = np.random.default_rng(seed)
    cell = make(kind, norm, hidden=3)
    randomize_running_stats(cell, rng)
    n = 5
    x = tensor(rng.standard_normal((n, 2)), requires_grad=True)
    h = tensor(rng.standard_normal((n, 3)), requires_grad=True)
    c = tensor(rng.standard_normal((n, 3)), requires_grad=True)
    if kind == "rnn_cell":

        def run(module, x, h, c):
            return module(x, h, step=1)

    else:

        def run(module, x, h, c):
            h_new, c_new = module(x, (h, c), step=1)
            return h_new * c_new

    run(cell, x, h, c)  # one training call records r_t, d_t; held below so that finite differences see them fixed
    with held_corrections(cell):
        assert gradcheck_module(cell, run, [x, h, c])


@settings(max_examples=1)
@given(seed=SEEDS)
@pytest.mark.parametrize("norm", MODES)
def test_lstm_sequence_gradients_match_finite_differences(norm: str, seed: int):
    rng = np.random.default_rng(seed)
    lstm = make("lstm", norm, hidden=3)
    randomize_running_stats(lstm, rng)
    x = tensor(rng.standard_normal((3, 5, 2)), requires_grad=True)  # 3 timesteps, 5 examples

    def run(module, x):
        output, (_h_n, c_n) = module(x)
        return output * output + c_n

    run(lstm, x)
    with held_corrections(lstm):
        assert gradcheck_module(lstm, run, [x])


# ----------------------------------------------------------------------------
# 2. Null-space identities at every timestep of a sequence
# ----------------------------------------------------------------------------


@settings(max_examples=5)
@given(seed=SEEDS, eps=st.floats(1e-5, 0.3))
@pytest.mark.parametrize("mode", BATCH_MODES)
def test_gradient_at_every_timestep_lies_in_the_null_space(mode: str, seed: int, eps: float):
    # At timestep t, with g = ∂ℓ/∂x̂_t and S_t = Σ_i g_i (x_t,i − μ_B,t) per channel:
    #   Σ_i ∂ℓ/∂x_t,i = 0  and  Σ_i x_t,i ∂ℓ/∂x_t,i = r_t ε S_t / σ_B,t³  (r_t = 1 for batchnorm)
    rng = np.random.default_rng(seed)
    steps, n, c = 4, 6, 3
    norm = RecurrentNorm(c, mode, max_steps=2, eps=eps, weight_init=1.0, bias=False, dtype="float64")
    xs = [tensor(rng.normal(rng.normal(0, 2, c), rng.uniform(0.5, 2, c), (n, c)), requires_grad=True) for _ in range(steps)]
    vs = [rng.standard_normal((n, c)) for _ in range(steps)]
    with norm.sequence():
        ys = [norm(x, t) for t, x in enumerate(xs)]
    loss = ys[0] * tensor(vs[0])
    for t in range(1, steps):
        loss = loss + ys[t] * ys[t - 1] * tensor(vs[t])  # couples the timesteps, as a recurrence does
    loss.sum().backward()
    y_host = [host(y) for y in ys]
    for t, x in enumerate(xs):
        xh, dx = host(x), host(x.grad)
        dy = (vs[0] if t == 0 else vs[t] * y_host[t - 1]) + (vs[t + 1] * y_host[t + 1] if t + 1 < steps else 0)
        mu_b = xh.mean(axis=0)
        sigma_b = np.sqrt(eps + ((xh - mu_b) ** 2).mean(axis=0))
        r = host(norm.last_corrections[t][0]) if mode == "renorm-shared" else 1.0
        scale = np.abs(dy).max() * np.max(r) / sigma_b.min() * n
        np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-11 * scale)
        expected = r * eps * (dy * (xh - mu_b)).sum(axis=0) / sigma_b**3
        np.testing.assert_allclose((xh * dx).sum(axis=0), expected, rtol=1e-8, atol=1e-11 * scale * np.abs(xh).max())


# ----------------------------------------------------------------------------
# 3. renorm-shared with r_max = 1, d_max = 0 is batch-shared
# ----------------------------------------------------------------------------


@settings(max_examples=4)
@given(seed=SEEDS)
def test_renorm_shared_with_no_correction_equals_batch_shared_in_training(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 6, 2))
    runs = []
    for norm in ("batch-shared", "renorm-shared"):
        lstm = make("lstm", norm, hidden=3, norm_options={"r_max": 1.0, "d_max": 0.0})
        randomize_running_stats(lstm, np.random.default_rng(seed))
        xt = tensor(x, requires_grad=True)
        out, (_h_n, _c_n) = lstm(xt)
        (out * out).sum().backward()
        runs.append((lstm, out, xt))
    (bn, out_bn, x_bn), (brn, out_brn, x_brn) = runs
    np.testing.assert_allclose(host(out_brn), host(out_bn), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(x_brn.grad), host(x_bn.grad), rtol=1e-10, atol=1e-12)
    for (name, p_bn), (_, p_brn) in zip(bn.named_parameters(), brn.named_parameters()):
        np.testing.assert_allclose(host(p_brn.grad), host(p_bn.grad), rtol=1e-10, atol=1e-12, err_msg=name)
    for (name, b_bn), (_, b_brn) in zip(bn.named_buffers(), brn.named_buffers()):
        if name.endswith("step"):
            assert b_bn == b_brn == 1
        else:
            np.testing.assert_allclose(host(b_brn), host(b_bn), rtol=1e-12, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------
# 4. batch-per-step is one BatchNorm layer per timestep
# ----------------------------------------------------------------------------


@settings(max_examples=4)
@given(seed=SEEDS, momentum=st.floats(0.0, 1.0))
def test_batch_per_step_equals_one_batchnorm_layer_per_timestep(seed: int, momentum: float):
    rng = np.random.default_rng(seed)
    steps, max_steps, n, c = 4, 3, 5, 3
    norm = RecurrentNorm(c, "batch-per-step", max_steps=max_steps, momentum=momentum, dtype="float64")
    layers = [mg.nn.BatchNorm1d(c, momentum=momentum, dtype="float64") for _ in range(max_steps)]
    for layer in layers:
        layer.weight = mg.nn.Parameter(np.full(c, 0.1), dtype="float64")
    data = [rng.normal(rng.normal(0, 2, c), 1.0, (n, c)) for _ in range(steps)]
    xs = [tensor(d, requires_grad=True) for d in data]
    xs_ref = [tensor(d, requires_grad=True) for d in data]
    with norm.sequence():
        ys = [norm(x, t) for t, x in enumerate(xs)]
    ys_ref = [layers[min(t, max_steps - 1)](x) for t, x in enumerate(xs_ref)]  # beyond max_steps: the last layer
    for y, y_ref in zip(ys, ys_ref):
        np.testing.assert_allclose(host(y), host(y_ref), rtol=1e-12, atol=1e-12)
    v = [rng.standard_normal((n, c)) for _ in range(steps)]
    sum((y * tensor(w)).sum() for y, w in zip(ys, v)).backward()
    sum((y * tensor(w)).sum() for y, w in zip(ys_ref, v)).backward()
    for x, x_ref in zip(xs, xs_ref):
        np.testing.assert_allclose(host(x.grad), host(x_ref.grad), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(norm.weight.grad), sum(host(layer.weight.grad) for layer in layers), rtol=1e-10)
    for t, layer in enumerate(layers):
        np.testing.assert_allclose(host(norm.running_mean)[t], host(layer.running_mean), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(host(norm.running_std)[t], host(layer.running_std), rtol=1e-12, atol=1e-12)
    norm.eval()
    for layer in layers:
        layer.eval()
    probe = tensor(rng.standard_normal((2, c)))
    for t in range(steps + 2):  # the last statistics serve every later timestep
        expected = host(layers[min(t, max_steps - 1)](probe))
        np.testing.assert_allclose(host(norm(probe, t)), expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------
# 5. The shared update, once per sequence, from the means over timesteps
# ----------------------------------------------------------------------------


@settings(max_examples=6)
@given(seed=SEEDS, momentum=st.floats(0.0, 1.0), steps=st.integers(1, 5))
@pytest.mark.parametrize("mode", ["batch-shared", "renorm-shared"])
def test_shared_update_is_the_mean_over_timesteps_once_per_sequence(mode: str, seed: int, momentum: float, steps: int):
    rng = np.random.default_rng(seed)
    n, c, eps = 5, 3, 1e-5
    r_max, d_max = 1.5, 0.5
    norm = RecurrentNorm(c, mode, momentum=momentum, eps=eps, r_max=r_max, d_max=d_max, dtype="float64")
    mu0, sigma0 = rng.normal(0, 1, c), rng.uniform(0.5, 2.0, c)
    norm.running_mean, norm.running_std = B.from_numpy(mu0.copy()), B.from_numpy(sigma0.copy())
    data = [rng.normal(rng.normal(0, 2, c), rng.uniform(0.3, 3.0, c), (n, c)) for _ in range(steps)]
    with norm.sequence():
        for t, d in enumerate(data):
            norm(tensor(d), t)
            np.testing.assert_array_equal(host(norm.running_mean), mu0)  # read, never written, inside a sequence
    mu_b = np.stack([d.mean(axis=0) for d in data])
    sigma_b = np.stack([np.sqrt(eps + d.var(axis=0)) for d in data])
    np.testing.assert_allclose(host(norm.running_mean), mu0 + momentum * (mu_b.mean(axis=0) - mu0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(norm.running_std), sigma0 + momentum * (sigma_b.mean(axis=0) - sigma0), rtol=1e-12)
    assert norm.step == 1
    if mode == "renorm-shared":  # every r_t, d_t from the same μ, σ (those before the sequence)
        for t, (r, d) in enumerate(norm.last_corrections):
            np.testing.assert_allclose(host(r), np.clip(sigma_b[t] / sigma0, 1 / r_max, r_max), rtol=1e-12)
            np.testing.assert_allclose(host(d), np.clip((mu_b[t] - mu0) / sigma0, -d_max, d_max), rtol=1e-12, atol=1e-14)
        telemetry = norm.telemetry
        assert telemetry["step"] == 0 and telemetry["r_limit"] == r_max
        clipped = np.mean(np.abs((mu_b - mu0) / sigma0) > d_max)
        assert telemetry["d_clipped_fraction"] == pytest.approx(clipped)


def test_the_lstm_updates_each_shared_average_once_per_forward():
    lstm = make("lstm", "renorm-shared", hidden=3)
    lstm(tensor(np.random.default_rng(0).standard_normal((7, 4, 2))))
    assert [norm.step for norm in recurrent_norms(lstm)] == [1, 1, 1]
    assert lstm.state_size() == 2 * (12 + 12 + 3)
    assert make("lstm", "batch-per-step", hidden=3).state_size() == 3 * 2 * (12 + 12 + 3)  # max_steps = 3


# ----------------------------------------------------------------------------
# 6. Eval mode: an example's output does not depend on the rest of the batch
# ----------------------------------------------------------------------------


@settings(max_examples=3)
@given(seed=SEEDS)
@pytest.mark.parametrize("norm", ["renorm-shared", "layer", "batch-shared", "batch-per-step"])
def test_eval_outputs_do_not_depend_on_the_rest_of_the_batch(norm: str, seed: int):
    rng = np.random.default_rng(seed)
    lstm = make("lstm", norm, hidden=3, batch_first=True)
    for _ in range(3):
        lstm(tensor(rng.standard_normal((6, 5, 2))))  # a few training forwards move the averages
    lstm.eval()
    x = rng.standard_normal((6, 5, 2))
    out, (h_n, _) = lstm(tensor(x))
    i = int(rng.integers(0, 6))
    alone, (h_alone, _) = lstm(tensor(x[i : i + 1]))
    np.testing.assert_allclose(host(alone)[0], host(out)[i], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(h_alone)[:, 0], host(h_n)[:, i], rtol=1e-12, atol=1e-12)
    other = x.copy()
    other[np.arange(6) != i] = rng.standard_normal((5, 5, 2)) * 3.0  # change every other example
    changed, _ = lstm(tensor(other))
    np.testing.assert_allclose(host(changed)[i], host(out)[i], rtol=1e-12, atol=1e-12)


@settings(max_examples=3)
@given(seed=SEEDS)
def test_unclipped_renorm_shared_trains_on_exactly_the_inference_output(seed: int):
    # with limits that never bind, x̂_t = (x_t − μ_B,t)/σ_B,t · r_t + d_t = (x_t − μ)/σ at every timestep
    rng = np.random.default_rng(seed)
    lstm = make("lstm", "renorm-shared", hidden=3, norm_options={"r_max": 1e6, "d_max": 1e6})
    for _ in range(3):
        lstm(tensor(rng.standard_normal((5, 6, 2))))
    x = tensor(rng.standard_normal((5, 6, 2)))
    lstm.eval()
    inference, _ = lstm(x)
    lstm.train()  # the training forward reads the same averages (it updates them only when it ends)
    training, _ = lstm(x)
    np.testing.assert_allclose(host(training), host(inference), rtol=1e-10, atol=1e-12)
    assert max(norm.telemetry["r_clipped_fraction"] for norm in recurrent_norms(lstm)) == 0.0


def test_batch_shared_training_output_depends_on_the_rest_of_the_batch():
    # the contrast that makes the previous test meaningful: in training, batch statistics couple the examples
    rng = np.random.default_rng(1)
    lstm = make("lstm", "batch-shared", hidden=3)
    x = rng.standard_normal((4, 6, 2))
    out = host(lstm(tensor(x))[0])
    other = x.copy()
    other[:, 1:] *= 3.0
    assert not np.allclose(host(lstm(tensor(other))[0])[:, 0], out[:, 0])


# ----------------------------------------------------------------------------
# 7. PyTorch's shapes; long sequences; errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
def test_shapes_follow_pytorch(batch_first: bool):
    length, n = 5, 3
    shape = (n, length, 4) if batch_first else (length, n, 4)
    x = tensor(np.random.default_rng(0).standard_normal(shape))
    rnn = mg.nn.RNN(input_size=4, hidden_size=6, num_layers=2, batch_first=batch_first, dtype="float64")
    out, h_n = rnn(x, tensor(np.zeros((2, n, 6))))
    assert out.shape == ((n, length, 6) if batch_first else (length, n, 6)) and h_n.shape == (2, n, 6)
    np.testing.assert_allclose(host(h_n)[-1], host(out)[:, -1] if batch_first else host(out)[-1])
    lstm = mg.nn.LSTM(4, 6, num_layers=2, batch_first=batch_first, dtype="float64")
    out, (h_n, c_n) = lstm(x)
    assert out.shape == ((n, length, 6) if batch_first else (length, n, 6)) and h_n.shape == c_n.shape == (2, n, 6)
    names = {name for name, _ in mg.nn.LSTMCell(4, 6).named_parameters()}
    assert names == {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
    assert mg.nn.LSTMCell(4, 6).weight_ih.shape == (24, 4) and mg.nn.RNNCell(4, 6).weight_hh.shape == (6, 6)


def test_the_sequence_layer_equals_its_cell_unrolled_by_hand():
    rng = np.random.default_rng(3)
    lstm = make("lstm", "layer", hidden=3)
    x = rng.standard_normal((4, 2, 2))
    h0, c0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((1, 2, 3))
    out, (_h_n, c_n) = lstm(tensor(x), (tensor(h0), tensor(c0)))
    state = (tensor(h0[0]), tensor(c0[0]))
    for t in range(4):
        state = lstm.cell0(tensor(x[t]), state, t)
        np.testing.assert_allclose(host(out)[t], host(state[0]), rtol=1e-12)
    np.testing.assert_allclose(host(c_n)[0], host(state[1]), rtol=1e-12)


def test_five_hundred_timesteps_backpropagate_without_recursion():
    limit = sys.getrecursionlimit()
    rnn = mg.nn.RNN(1, 4, norm="renorm-shared", dtype="float64")
    x = tensor(np.random.default_rng(0).standard_normal((500, 3, 1)), requires_grad=True)
    _out, h_n = rnn(x)
    h_n.sum().backward()
    assert np.isfinite(host(x.grad)).all() and np.abs(host(x.grad)[-1]).sum() > 0
    assert np.isfinite(host(rnn.cell0.weight_hh.grad)).all()
    assert sys.getrecursionlimit() == limit


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="norm: expected one of none, layer"):
        mg.nn.LSTM(2, 3, norm="batch")
    with pytest.raises(ValueError, match="max_steps"):
        mg.nn.LSTM(2, 3, norm="batch-per-step")
    with pytest.raises(ValueError, match=r"input: expected shape \(L, N, input_size\) with input_size=2"):
        mg.nn.RNN(2, 3)(tensor(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c_0\): expected a tensor of shape \(1, 2, 3\)"):
        mg.nn.LSTM(2, 3)(tensor(np.zeros((4, 2, 2))), (tensor(np.zeros((1, 2, 3))), tensor(np.zeros((1, 3)))))
    with pytest.raises(ValueError, match="bidirectional=True: expected 0.0 and False"):
        mg.nn.LSTM(2, 3, bidirectional=True)
    with pytest.raises(ValueError, match="nonlinearity"):
        mg.nn.RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="holding: only renorm-shared"), RecurrentNorm(3, "batch-shared").holding([]):
        pass
