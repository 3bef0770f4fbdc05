"""The normalization layers: BatchNorm1d/2d, BatchRenorm1d/2d, the r_max/d_max schedule and telemetry.

Covers running-statistic updates (exact formulas, nothing in eval mode),
Batch Renorm with r_max = 1, d_max = 0 against BatchNorm, the schedule,
state dicts, moving between dtypes and devices, and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend as B

LAYERS = {
    "BatchNorm1d": [(6, 3), (6, 3, 4)],
    "BatchNorm2d": [(6, 3, 2, 2)],
    "BatchRenorm1d": [(6, 3), (6, 3, 4)],
    "BatchRenorm2d": [(6, 3, 2, 2)],
}
CASES = [(name, shape) for name, shapes in LAYERS.items() for shape in shapes]


def host(a) -> np.ndarray:
    return a.numpy() if isinstance(a, mg.Tensor) else B.to_numpy(a)


def sample(shape, seed=0, scale=2.0, shift=1.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape) * scale + shift


def tensor(a, requires_grad=False) -> mg.Tensor:
    return mg.Tensor(a, requires_grad=requires_grad, dtype="float64")


def per_channel_moments(x: np.ndarray, groups: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The groups' mean μ_B and mean σ_B per channel, on the host."""
    n, c = x.shape[:2]
    xg = np.moveaxis(x.reshape((groups, n // groups) + x.shape[1:]), 2, 1).reshape(groups, c, -1)
    mu = xg.mean(axis=2)
    sigma = np.sqrt(eps + ((xg - mu[..., None]) ** 2).mean(axis=2))
    return mu.mean(axis=0), sigma.mean(axis=0)


# ----------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYERS))
def test_defaults_parameters_and_buffers(name):
    layer = getattr(mg.nn, name)(3)
    assert (layer.eps, layer.momentum, layer.affine, layer.virtual_batch_size) == (1e-5, 0.1, True, None)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_std", "step"]
    np.testing.assert_array_equal(host(layer.weight), np.ones(3))
    np.testing.assert_array_equal(host(layer.bias), np.zeros(3))
    np.testing.assert_array_equal(host(layer.running_mean), np.zeros(3))
    np.testing.assert_array_equal(host(layer.running_std), np.ones(3))
    assert layer.step == 0
    assert {B.dtype_name(a.dtype) for a in (layer.weight.data, layer.bias.data, layer.running_mean, layer.running_std)} == {
        "float32"
    }
    if "Renorm" in name:
        assert layer.limits() == (3.0, 5.0)
        assert layer.telemetry == {}
    with pytest.raises(TypeError):
        getattr(mg.nn, name)(3, 1e-3)  # everything but num_features is keyword-only


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchRenorm1d"])
def test_affine_false_has_no_parameters_and_acts_as_unit_scale_zero_shift(name):
    layer = getattr(mg.nn, name)(2, affine=False, dtype="float64")
    affine = getattr(mg.nn, name)(2, dtype="float64")
    assert layer.parameters() == [] and layer.weight is None and layer.bias is None
    results = []
    for module in (layer, affine):
        x = tensor(sample((4, 2)), requires_grad=True)
        y = module(x)
        y.backward(B.from_numpy(sample((4, 2), seed=3)))
        results.append((host(y), host(x.grad)))
    for without, with_unit_affine in zip(*results):
        np.testing.assert_allclose(without, with_unit_affine, rtol=1e-12)
    np.testing.assert_allclose(host(layer.running_mean), host(affine.running_mean), rtol=1e-12)


# ----------------------------------------------------------------------------
# 7. Running statistics follow the update formulas exactly; nothing changes in eval mode
# ----------------------------------------------------------------------------


@given(
    case=st.sampled_from(CASES),
    momentum=st.floats(0.0, 1.0),
    eps=st.floats(1e-6, 0.5),
    groups=st.sampled_from([1, 2, 3]),
    seed=st.integers(0, 2**16),
)
def test_running_stats_follow_the_update_formulas_and_eval_changes_nothing(case, momentum, eps, groups, seed):
    name, shape = case
    vbs = None if groups == 1 else shape[0] // groups
    layer = getattr(mg.nn, name)(3, momentum=momentum, eps=eps, virtual_batch_size=vbs, dtype="float64")
    mean, std = np.zeros(3), np.ones(3)
    for step in range(3):
        x = sample(shape, seed=seed + step)
        layer(tensor(x))
        mu_b, sigma_b = per_channel_moments(x, groups, eps)
        mean, std = mean + momentum * (mu_b - mean), std + momentum * (sigma_b - std)  # Algorithm 1's update
        np.testing.assert_allclose(host(layer.running_mean), mean, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(host(layer.running_std), std, rtol=1e-13, atol=1e-14)
        assert layer.step == step + 1
    layer.eval()
    before = {k: host(v).copy() if B.is_array(v) else v for k, v in layer.state_dict().items()}
    telemetry = dict(getattr(layer, "telemetry", {}))
    layer(tensor(sample(shape, seed=seed + 10) * 5 + 3))
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(host(value) if B.is_array(value) else value, before[key])
    assert getattr(layer, "telemetry", {}) == telemetry


# ----------------------------------------------------------------------------
# 4. Batch Renorm with r_max = 1, d_max = 0 is BatchNorm: outputs, gradients, running stats
# ----------------------------------------------------------------------------


@given(
    dims=st.sampled_from([1, 2]),
    momentum=st.floats(0.0, 1.0),
    groups=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_renorm_with_unit_limits_equals_batch_norm(dims, momentum, groups, seed):
    shape = (4, 3) if dims == 1 else (4, 3, 2, 2)
    vbs = None if groups == 1 else 2
    kwargs = dict(momentum=momentum, virtual_batch_size=vbs, dtype="float64")
    bn = getattr(mg.nn, f"BatchNorm{dims}d")(3, **kwargs)
    brn = getattr(mg.nn, f"BatchRenorm{dims}d")(3, r_max=1.0, d_max=0.0, **kwargs)
    rng = np.random.default_rng(seed)
    for layer in (bn, brn):
        layer.weight.data = B.from_numpy(np.linspace(0.5, 2.0, 3))
        layer.bias.data = B.from_numpy(np.array([-1.0, 0.0, 1.0]))
    for step in range(3):
        x_host = rng.standard_normal(shape) * (step + 1) + 2 * step
        v = rng.standard_normal(shape)
        outputs = []
        for layer in (bn, brn):
            layer.zero_grad()
            x = tensor(x_host, requires_grad=True)
            y = layer(x)
            y.backward(B.from_numpy(v))
            outputs.append((host(y), host(x.grad), host(layer.weight.grad), host(layer.bias.grad)))
        for ours, theirs in zip(*outputs):
            np.testing.assert_allclose(theirs, ours, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(host(brn.running_mean), host(bn.running_mean), rtol=1e-14)
        np.testing.assert_allclose(host(brn.running_std), host(bn.running_std), rtol=1e-14)
    assert brn.telemetry["r_limit"] == 1.0 and brn.telemetry["d_limit"] == 0.0


# ----------------------------------------------------------------------------
# Eval mode
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape", CASES)
def test_eval_uses_running_stats_per_example(name, shape):
    layer = getattr(mg.nn, name)(3, virtual_batch_size=3, dtype="float64")
    layer.load_state_dict(
        {
            "weight": np.array([1.0, 2.0, -1.0]),
            "bias": np.array([0.0, 0.5, 1.0]),
            "running_mean": np.array([0.5, -1.0, 2.0]),
            "running_std": np.array([2.0, 0.5, 1.5]),
            "step": 7,
        }
    )
    layer.eval()
    x = sample(shape)
    view = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - np.array([0.5, -1.0, 2.0]).reshape(view)) / np.array([2.0, 0.5, 1.5]).reshape(view)
    expected = expected * np.array([1.0, 2.0, -1.0]).reshape(view) + np.array([0.0, 0.5, 1.0]).reshape(view)
    np.testing.assert_allclose(host(layer(tensor(x))), expected, rtol=1e-12)
    single = layer(tensor(x[:1]))  # one example works in eval mode, whatever virtual_batch_size says
    np.testing.assert_allclose(host(single), expected[:1], rtol=1e-12)
    assert layer.step == 7


# ----------------------------------------------------------------------------
# 10. The r_max / d_max schedule
# ----------------------------------------------------------------------------


@given(
    warmup=st.integers(0, 10_000),
    r_ramp=st.integers(0, 50_000),
    d_ramp=st.integers(0, 50_000),
    r_final=st.floats(1.0, 10.0),
    d_final=st.floats(0.0, 10.0),
)
def test_schedule_values_at_warmup_mid_ramp_end_and_long_after(warmup, r_ramp, d_ramp, r_final, d_final):
    schedule = mg.nn.renorm_schedule(
        warmup_steps=warmup, r_max=r_final, r_max_ramp_end=warmup + r_ramp, d_max=d_final, d_max_ramp_end=warmup + d_ramp
    )
    r_max, d_max = schedule  # unpacks into the two callables
    for step in {0, max(warmup - 1, 0), warmup}:  # warm-up: plain batchnorm
        if r_ramp > 0 or step < warmup:
            assert r_max(step) == 1.0
        if d_ramp > 0 or step < warmup:
            assert d_max(step) == 0.0
    if r_ramp % 2 == 0 and r_ramp > 0:
        assert r_max(warmup + r_ramp // 2) == pytest.approx((1.0 + r_final) / 2, rel=1e-12)
    if d_ramp % 2 == 0 and d_ramp > 0:
        assert d_max(warmup + d_ramp // 2) == pytest.approx(d_final / 2, rel=1e-12, abs=1e-12)
    if r_ramp > 2:
        assert 1.0 <= r_max(warmup + 1) <= r_max(warmup + r_ramp - 1) <= r_final
    for step in (warmup + r_ramp, warmup + r_ramp + 1, 10**9):
        assert r_max(step) == r_final
    for step in (warmup + d_ramp, warmup + d_ramp + 1, 10**9):
        assert d_max(step) == d_final


def test_paper_schedule_and_its_scaled_version():
    paper = mg.nn.renorm_schedule()
    assert (paper.r_max(0), paper.d_max(0)) == (1.0, 0.0)
    assert (paper.r_max(5000), paper.d_max(5000)) == (1.0, 0.0)
    assert paper.r_max(22_500) == pytest.approx(2.0)  # halfway from 5k to 40k
    assert paper.d_max(15_000) == pytest.approx(2.5)  # halfway from 5k to 25k
    assert (paper.r_max(40_000), paper.d_max(25_000)) == (3.0, 5.0)
    assert (paper.r_max(130_000), paper.d_max(10**7)) == (3.0, 5.0)
    short = paper.scaled(13_000)
    assert (short.warmup_steps, short.d_max_ramp_end, short.r_max_ramp_end) == (500, 2500, 4000)
    assert (short.r_max_final, short.d_max_final) == (3.0, 5.0)
    assert isinstance(short, mg.nn.RenormSchedule)


def test_scaled_warmup_lasts_a_few_time_constants_of_the_moving_averages():
    paper = mg.nn.renorm_schedule()
    plain = paper.scaled(300)
    assert (plain.warmup_steps, plain.d_max_ramp_end, plain.r_max_ramp_end) == (12, 58, 92)
    fast = paper.scaled(300, momentum=0.1)  # 5 / Δ = 50 steps of warm-up, then the scaled ramps
    assert (fast.warmup_steps, fast.d_max_ramp_end, fast.r_max_ramp_end) == (50, 96, 130)
    slow = paper.scaled(300, momentum=0.01)  # 500 steps would be the whole run and more: capped
    assert (slow.warmup_steps, slow.d_max_ramp_end, slow.r_max_ramp_end) == (300, 300, 300)
    assert paper.scaled(13_000, momentum=0.01) == paper.scaled(13_000)  # long enough already
    assert paper.scaled(1000, momentum=0.05, time_constants=10).warmup_steps == 200
    assert paper.scaled(1000, momentum=0.0).warmup_steps == paper.scaled(1000).warmup_steps  # Δ = 0: nothing to wait for
    for fast_step in range(fast.warmup_steps + 1):
        assert (fast.r_max(fast_step), fast.d_max(fast_step)) == (1.0, 0.0)
    assert fast.r_max(130) == 3.0 and fast.d_max(96) == 5.0
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\].*got 2"):
        paper.scaled(300, momentum=2)
    with pytest.raises(ValueError, match=r"time_constants: expected a finite number > 0, got 0"):
        paper.scaled(300, momentum=0.1, time_constants=0)


def test_schedule_without_a_ramp_jumps_at_the_end_of_the_warmup():
    r_max, d_max = mg.nn.renorm_schedule(warmup_steps=10, r_max=2.0, r_max_ramp_end=10, d_max=4.0, d_max_ramp_end=10)
    assert [r_max(s) for s in (0, 9, 10, 11)] == [1.0, 1.0, 2.0, 2.0]
    assert [d_max(s) for s in (0, 9, 10, 11)] == [0.0, 0.0, 4.0, 4.0]


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"r_max: expected a finite number >= 1, got 0.5"):
        mg.nn.renorm_schedule(r_max=0.5)
    with pytest.raises(ValueError, match=r"d_max: expected a finite number >= 0, got -1"):
        mg.nn.renorm_schedule(d_max=-1)
    with pytest.raises(ValueError, match=r"r_max_ramp_end: expected an integer >= warmup_steps \(5000\), got 100"):
        mg.nn.renorm_schedule(r_max_ramp_end=100)
    with pytest.raises(ValueError, match=r"warmup_steps: expected a non-negative integer, got -3"):
        mg.nn.renorm_schedule(warmup_steps=-3)
    with pytest.raises(ValueError, match=r"step: expected a non-negative integer, got -1"):
        mg.nn.renorm_schedule().r_max(-1)
    with pytest.raises(ValueError, match=r"total_steps: expected a positive integer, got 0"):
        mg.nn.renorm_schedule().scaled(0)


def test_layer_follows_its_schedule_and_records_telemetry():
    r_max, d_max = mg.nn.renorm_schedule(warmup_steps=2, r_max=2.0, r_max_ramp_end=4, d_max=1.0, d_max_ramp_end=3)
    layer = mg.nn.BatchRenorm1d(3, r_max=r_max, d_max=d_max, dtype="float64")
    seen = []
    for step in range(6):
        layer(tensor(sample((4, 3), seed=step)))
        record = layer.telemetry
        seen.append((record["step"], record["r_limit"], record["d_limit"]))
        assert set(record) == {
            "step",
            "r_limit",
            "d_limit",
            "r_clipped_fraction",
            "d_clipped_fraction",
            "r_smallest_unclipped",
            "r_largest_unclipped",
            "d_smallest_unclipped",
            "d_largest_unclipped",
        }
        assert all(
            isinstance(record[k], float)
            for k in (
                "r_clipped_fraction",
                "d_clipped_fraction",
                "r_smallest_unclipped",
                "r_largest_unclipped",
                "d_smallest_unclipped",
                "d_largest_unclipped",
            )
        )
        assert 0.0 <= record["r_clipped_fraction"] <= 1.0 and record["r_smallest_unclipped"] <= record["r_largest_unclipped"]
    assert seen == [(0, 1.0, 0.0), (1, 1.0, 0.0), (2, 1.0, 0.0), (3, 1.5, 1.0), (4, 2.0, 1.0), (5, 2.0, 1.0)]


def test_renorm_telemetry_gathers_every_renorm_layer_by_name():
    model = mg.nn.Sequential(
        mg.nn.BatchRenorm1d(3, dtype="float64"),
        mg.nn.BatchNorm1d(3, dtype="float64"),
        mg.nn.BatchRenorm1d(3, r_max=1.0, d_max=0.0, dtype="float64"),
    )
    assert mg.nn.renorm_telemetry(model) == {"0": {}, "2": {}}
    x = tensor(sample((8, 3)) * 3 + 5)  # far from the initial running stats (0, 1)
    model(x)
    telemetry = mg.nn.renorm_telemetry(model)
    assert list(telemetry) == ["0", "2"]
    # first layer: σ_B/σ ≈ 3 and μ_B/σ ≈ 5 against the initial (0, 1), near the limits (3, 5)
    first = telemetry["0"]
    x_host = host(x)
    np.testing.assert_allclose(
        [first["r_smallest_unclipped"], first["r_largest_unclipped"]],
        [np.min(x_host.std(0)), np.max(x_host.std(0))],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        [first["d_smallest_unclipped"], first["d_largest_unclipped"]],
        [x_host.mean(0).min(), x_host.mean(0).max()],
        rtol=1e-9,
    )
    expected_r = np.mean(np.sqrt(x_host.var(0) + 1e-5) > 3.0)
    assert first["r_clipped_fraction"] == pytest.approx(expected_r)
    assert telemetry["2"]["r_clipped_fraction"] == 1.0  # r_max = 1 clips every r that is not exactly 1
    clipped = first["r_clipped_fraction"]
    telemetry["0"]["r_clipped_fraction"] = -1.0  # a copy: the layer's record is untouched
    assert mg.nn.renorm_telemetry(model)["0"]["r_clipped_fraction"] == clipped


# ----------------------------------------------------------------------------
# State dicts, dtypes and devices
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape", CASES)
def test_state_dict_round_trip_includes_step(name, shape):
    layer = getattr(mg.nn, name)(3, dtype="float64")
    for step in range(3):
        layer(tensor(sample(shape, seed=step)))
    state = layer.state_dict()
    assert state["step"] == 3 and set(state) == {"weight", "bias", "running_mean", "running_std", "step"}
    clone = getattr(mg.nn, name)(3, dtype="float64")
    clone.load_state_dict(state)
    assert clone.step == 3 and isinstance(clone.step, int)
    for key in ("running_mean", "running_std"):
        np.testing.assert_array_equal(host(getattr(clone, key)), host(getattr(layer, key)))
    layer.eval()
    clone.eval()
    x = tensor(sample(shape, seed=9))
    np.testing.assert_array_equal(host(clone(x)), host(layer(x)))
    layer.train()
    layer(x)  # the saved copy does not follow the layer
    assert state["step"] == 3 and not np.array_equal(host(state["running_mean"]), host(layer.running_mean))


@pytest.mark.parametrize("name", list(LAYERS))
def test_to_float64_moves_parameters_and_buffers(name):
    layer = getattr(mg.nn, name)(3)
    shape = LAYERS[name][-1]
    layer(mg.Tensor(sample(shape)))  # float32
    before = host(layer.running_mean).astype(np.float64)
    assert layer.to("float64") is layer
    for array in (layer.weight.data, layer.bias.data, layer.running_mean, layer.running_std):
        assert B.dtype_name(array.dtype) == "float64"
    np.testing.assert_array_equal(host(layer.running_mean), before)
    assert layer.step == 1
    y = layer(tensor(sample(shape, seed=1)))
    assert B.dtype_name(y.dtype) == "float64" and B.dtype_name(layer.running_mean.dtype) == "float64"


def test_to_another_device_moves_buffers(backend):
    other = "array_api_strict" if backend == "numpy" else "cpu"
    layer = mg.nn.BatchRenorm2d(3, dtype="float64")
    layer(tensor(sample((4, 3, 2, 2))))
    layer.to(other)
    assert {B.device_of(a) for a in (layer.weight.data, layer.running_mean, layer.running_std)} == {
        B.device_of(B.to_device(B.from_numpy(np.zeros(1)), other))
    }
    x = tensor(sample((4, 3, 2, 2))).to(other)
    layer(x)
    with pytest.raises(mg.DeviceMismatchError):
        layer(tensor(sample((4, 3, 2, 2))))  # input left on the original device


# ----------------------------------------------------------------------------
# Bad input: each error names the argument, the expectation and what came
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_errors_name_the_argument_the_expectation_and_what_came(name):
    cls = getattr(mg.nn, name)
    shape = LAYERS[name][-1]
    layer = cls(3, dtype="float64")
    with pytest.raises(ValueError, match=rf"{name}: x: expected 3 channels on axis 1 \(num_features\), got shape \(6, 4"):
        layer(tensor(sample((6, 4) + shape[2:])))
    wrong_rank = (6, 3, 2, 2, 2) if name.endswith("1d") else (6, 3, 2)
    with pytest.raises(
        ValueError, match=rf"{name}: x: expected a tensor of shape \(N, C.*got shape \(6, 3, 2.*\({len(wrong_rank)}-d\)"
    ):
        layer(tensor(sample(wrong_rank)))
    with pytest.raises(ValueError, match=r"virtual_batch_size: expected a divisor of the batch size 6.*got 4"):
        cls(3, virtual_batch_size=4)(tensor(sample(shape)))
    single = (1, 3) + (1,) * (len(shape) - 2)
    with pytest.raises(ValueError, match=r"x: expected more than one value per channel .*got shape \(1, 3"):
        layer(tensor(sample(single)))
    layer.eval()
    with pytest.warns(RuntimeWarning, match="evaluated before any training step"):
        layer(tensor(sample(single)))  # fine in eval mode
    for eps in (0.0, -1e-5):
        with pytest.raises(ValueError, match=rf"eps: expected a finite number > 0, got {eps}"):
            cls(3, eps=eps)
    with pytest.raises(ValueError, match=r"momentum: expected a number in \[0, 1\].*got -0.1"):
        cls(3, momentum=-0.1)
    with pytest.raises(ValueError, match=r"num_features: expected a positive integer, got 0"):
        cls(0)
    with pytest.raises(ValueError, match=r"virtual_batch_size: expected None or a positive integer, got 0"):
        cls(3, virtual_batch_size=0)
    assert layer.step == 0  # failed forwards did not count


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchRenorm2d"])
@pytest.mark.parametrize("training", [True, False])
def test_non_finite_running_stats_are_rejected(name, training):
    layer = getattr(mg.nn, name)(2, dtype="float64").train(training)
    shape = (4, 2) if name.endswith("1d") else (4, 2, 2, 2)
    layer.running_mean[...] = B.from_numpy(np.array([0.0, np.nan]))
    if training and "Renorm" not in name:
        layer(tensor(sample(shape)))  # batchnorm does not read the running stats in training ...
        assert math.isnan(float(host(layer.running_mean)[1]))  # ... and NaN stays NaN
    else:
        with pytest.raises(ValueError, match=r"running_mean: expected finite values, got \[nan\] at channels \[1\]"):
            layer(tensor(sample(shape)))
    layer.running_mean[...] = B.from_numpy(np.zeros(2))
    layer.running_std[...] = B.from_numpy(np.array([np.inf, 1.0]))
    if training and "Renorm" not in name:
        return
    with pytest.raises(ValueError, match=r"running_std: expected finite positive values, got \[inf\] at channels \[0\]"):
        layer(tensor(sample(shape)))


def test_renorm_limits_are_checked():
    for r_max in (0.5, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"r_max: expected a number >= 1, got"):
            mg.nn.BatchRenorm1d(3, r_max=r_max)
    with pytest.raises(ValueError, match=r"d_max: expected a number >= 0, got -0.5"):
        mg.nn.BatchRenorm2d(3, d_max=-0.5)
    with pytest.raises(TypeError, match=r"r_max: expected a number or a callable of the step, got str"):
        mg.nn.BatchRenorm2d(3, r_max="3")
    layer = mg.nn.BatchRenorm1d(3, r_max=lambda step: 3.0 - step, dtype="float64")
    for _ in range(3):  # r_max = 3, 2, 1
        layer(tensor(sample((4, 3))))
    with pytest.raises(ValueError, match=r"r_max: expected a number >= 1 \(from its schedule at step 3\), got 0.0"):
        layer(tensor(sample((4, 3))))


@pytest.mark.parametrize("name", list(LAYERS))
def test_evaluating_an_untrained_layer_warns_once_and_a_trained_one_never(name, recwarn):
    shape = LAYERS[name][-1]
    layer = getattr(mg.nn, name)(3, dtype="float64").eval()
    with pytest.warns(RuntimeWarning, match=rf"{name}: evaluated before any training step"):
        layer(tensor(sample(shape)))
    layer(tensor(sample(shape)))
    trained = getattr(mg.nn, name)(3, dtype="float64")
    trained(tensor(sample(shape)))
    trained.eval()(tensor(sample(shape)))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]  # the second call and the trained layer


def test_running_stats_assigned_from_outside_are_checked_at_the_next_forward():
    layer = mg.nn.BatchRenorm1d(2, dtype="float64")
    layer(tensor(sample((4, 2))))
    layer.running_std = B.from_numpy(np.array([1.0, -1.0]))  # a new array: checked again
    with pytest.raises(ValueError, match=r"running_std: expected finite positive values, got \[-1.0\] at channels \[1\]"):
        layer(tensor(sample((4, 2))))
    state = mg.nn.BatchRenorm1d(2, dtype="float64").state_dict()
    state["running_mean"] = np.array([np.inf, 0.0])
    layer.load_state_dict(state)
    with pytest.raises(ValueError, match=r"running_mean: expected finite values, got \[inf\] at channels \[0\]"):
        layer(tensor(sample((4, 2))))
