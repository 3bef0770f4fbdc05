"""Property tests of Batch Normalization and Batch Renormalization (Ioffe 2017), kernels and autograd ops.

Hypothesis draws ranks (N, C), (N, C, L), (N, C, H, W), group sizes, values,
eps, momentum and the clipping limits. Inputs are an alternating ±1 pattern
within every normalization group plus bounded noise, scaled and shifted per
channel, so every group's variance stays well away from 0 (finite
differences are ill-conditioned near it). Every test runs on NumPy and on
array-api-strict through the autouse backend fixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg
from minigrad import backend as B
from minigrad.nn import functional as F
from minigrad.norm import functional as NF
from minigrad.norm import kernels as K
from tests.reference.norm import batch_norm_reference, batch_renorm_reference

# ----------------------------------------------------------------------------
# Strategies and host-side helpers
# ----------------------------------------------------------------------------


@dataclass
class Case:
    x: np.ndarray  # (N, C, *S), float64
    groups: int
    k: int  # examples per group
    virtual_batch_size: int | None

    @property
    def c(self) -> int:
        return self.x.shape[1]


def _alternating(groups: int, k: int, c: int, spatial: tuple[int, ...]) -> np.ndarray:
    """±1 alternating over the positions of each group, in the (N, C, *S) layout."""
    size = k * math.prod(spatial)
    sign = np.where(np.arange(size) % 2 == 0, 1.0, -1.0).reshape((k, *spatial))
    grouped = np.broadcast_to(sign[None, :, None], (groups, k, c, *spatial))
    return grouped.reshape((groups * k, c, *spatial))


@st.composite
def cases(draw, max_groups: int = 3, ranks: tuple[int, ...] = (2, 3, 4), min_groups: int = 1) -> Case:
    rank = draw(st.sampled_from(ranks))
    c = draw(st.integers(1, 3))
    if rank == 2:
        spatial: tuple[int, ...] = ()
    elif rank == 3:
        spatial = (draw(st.integers(1, 3)),)
    else:
        spatial = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    k = draw(st.integers(2 if math.prod(spatial) == 1 else 1, 4))
    groups = draw(st.integers(min_groups, max_groups))
    virtual_batch_size = k if groups > 1 else draw(st.sampled_from([None, k]))
    shape = (groups * k, c, *spatial)
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.4, 0.4, allow_subnormal=False)))
    scale = draw(hnp.arrays(np.float64, (c,), elements=st.floats(0.5, 3.0)))
    shift = draw(hnp.arrays(np.float64, (c,), elements=st.floats(-3.0, 3.0)))
    view = (1, c) + (1,) * len(spatial)
    x = (_alternating(groups, k, c, spatial) + noise) * scale.reshape(view) + shift.reshape(view)
    return Case(x, groups, k, virtual_batch_size)


def channel_vectors(c: int, low: float, high: float) -> st.SearchStrategy:
    return hnp.arrays(np.float64, (c,), elements=st.floats(low, high, allow_subnormal=False))


def host_groups(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, *S) -> (G, C, m): the values of each channel in each normalization group."""
    n, c = a.shape[:2]
    grouped = a.reshape((groups, n // groups) + a.shape[1:])
    return np.moveaxis(grouped, 2, 1).reshape(groups, c, -1)


def host_moments(x: np.ndarray, groups: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """μ_B and σ_B per (group, channel), computed on the host in float64."""
    xg = host_groups(x, groups)
    mu = xg.mean(axis=2)
    return mu, np.sqrt(eps + ((xg - mu[..., None]) ** 2).mean(axis=2))


def leaf(a: np.ndarray) -> mg.Tensor:
    return mg.Tensor(a, requires_grad=True, dtype="float64")


def arr(a: np.ndarray):
    """A float64 copy of `a` on the active backend (a copy: buffers made here are updated in place)."""
    return B.from_numpy(np.array(a, dtype=np.float64, copy=True))


def host(a) -> np.ndarray:
    return a.numpy() if isinstance(a, mg.Tensor) else B.to_numpy(a)


def seed_grad(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def running_stats_for(case: Case, regime: str, offsets: np.ndarray, ratios: np.ndarray):
    """(μ, σ, r_max, d_max) that make clipping inactive ("unclipped") or active everywhere ("clipped")."""
    mu_b, sigma_b = host_moments(case.x, case.groups, 0.0)
    if regime == "unclipped":
        # σ within a factor 2 of every σ_B and μ within a few σ of every μ_B; limits far beyond both
        mean = mu_b.mean(axis=0) + offsets
        std = sigma_b.mean(axis=0) * ratios
        return mean, std, 1e3, 1e3
    # σ ten times smaller than every σ_B and μ far below every μ_B: r ≥ 10 and d ≥ 20, beyond the limits
    std = 0.1 * sigma_b.min(axis=0)
    mean = mu_b.min(axis=0) - 2.0 * sigma_b.max(axis=0)
    return mean, std, 2.0, 1.0


regimes = st.sampled_from(["unclipped", "clipped"])


# ----------------------------------------------------------------------------
# 1. Finite differences for BatchNorm, training and inference, all ranks, ghost batches
# ----------------------------------------------------------------------------


@given(case=cases(), data=st.data(), eps=st.floats(1e-5, 0.5))
def test_batch_norm_training_gradients_match_finite_differences(case: Case, data, eps: float):
    gamma = data.draw(channel_vectors(case.c, -2.0, 2.0))
    beta = data.draw(channel_vectors(case.c, -2.0, 2.0))

    def fn(x, w, b):
        return F.batch_norm(x, w, b, None, None, training=True, eps=eps, virtual_batch_size=case.virtual_batch_size)

    assert mg.gradcheck(fn, [leaf(case.x), leaf(gamma), leaf(beta)])


@given(case=cases(), data=st.data())
def test_batch_norm_inference_gradients_match_finite_differences(case: Case, data):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    mean, std = arr(data.draw(channel_vectors(case.c, -2.0, 2.0))), arr(data.draw(channel_vectors(case.c, 0.3, 3.0)))

    def fn(x, w, b):
        return F.batch_norm(x, w, b, mean, std, training=False, virtual_batch_size=case.virtual_batch_size)

    assert mg.gradcheck(fn, [leaf(case.x), leaf(gamma), leaf(beta)])


# ----------------------------------------------------------------------------
# 2. Finite differences for Batch Renorm with r and d held fixed, clipped and unclipped
# ----------------------------------------------------------------------------


@given(case=cases(), data=st.data(), regime=regimes, eps=st.floats(0.0, 0.5))
def test_batch_renorm_gradients_with_fixed_r_d_match_finite_differences(case: Case, data, regime: str, eps: float):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    offsets, ratios = data.draw(channel_vectors(case.c, -1.0, 1.0)), data.draw(channel_vectors(case.c, 0.5, 2.0))
    mean, std, r_max, d_max = running_stats_for(case, regime, offsets, ratios)
    mean, std = arr(mean), arr(std)
    vbs = case.virtual_batch_size
    _, cache = K.batch_renorm_forward(arr(case.x), None, None, mean, std, r_max, d_max, eps, vbs)
    telemetry = K.clip_telemetry(cache)
    expected_fraction = 0.0 if regime == "unclipped" else 1.0
    assert telemetry["r_clipped_fraction"] == expected_fraction and telemetry["d_clipped_fraction"] == expected_fraction
    r, d = K.per_group(cache.r), K.per_group(cache.d)  # this batch's r and d, now held constant

    def fn(x, w, b):
        return NF.batch_renorm_train(x, w, b, mean, std, r_max, d_max, eps, vbs, r=r, d=d)[0]

    assert mg.gradcheck(fn, [leaf(case.x), leaf(gamma), leaf(beta)])


@given(case=cases(), data=st.data())
def test_batch_renorm_inference_gradients_match_finite_differences(case: Case, data):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    mean, std = arr(data.draw(channel_vectors(case.c, -2.0, 2.0))), arr(data.draw(channel_vectors(case.c, 0.3, 3.0)))

    def fn(x, w, b):
        return F.batch_renorm(x, w, b, mean, std, training=False)

    assert mg.gradcheck(fn, [leaf(case.x), leaf(gamma), leaf(beta)])


# ----------------------------------------------------------------------------
# 3. Null-space identities of the backward (section 3)
# ----------------------------------------------------------------------------
#
# With x̂_i = r (x_i − μ_B)/σ_B + d, g_i = ∂ℓ/∂x̂_i and σ_B² = ε + (1/m) Σ (x_i − μ_B)²:
#   ∂ℓ/∂x_j = (r/σ_B) [g_j − mean(g) − (x_j − μ_B) Σ_i g_i (x_i − μ_B) / (m σ_B²)]
# so Σ_j ∂ℓ/∂x_j = 0 and, since Σ_j (x_j − μ_B)² = m (σ_B² − ε),
#   Σ_j x_j ∂ℓ/∂x_j = Σ_j (x_j − μ_B) ∂ℓ/∂x_j = (r/σ_B) S (1 − (σ_B² − ε)/σ_B²) = r ε S / σ_B³,
# with S = Σ_i g_i (x_i − μ_B). It vanishes for ε = 0, where ∂ℓ/∂x is (r/σ_B) times
# the projection of g onto the null space of p0 = (1, ..., 1) and p1 = (x_1, ..., x_m).


def _renorm_backward_on_host(case: Case, data, eps: float):
    """Run the Batch Renorm kernels (no γ, β, so g = dℓ/dy) and return host arrays per (group, channel)."""
    offsets, ratios = data.draw(channel_vectors(case.c, -1.0, 1.0)), data.draw(channel_vectors(case.c, 0.5, 2.0))
    regime = data.draw(regimes)
    mean, std, r_max, d_max = running_stats_for(case, regime, offsets, ratios)
    g = seed_grad(case.x.shape, data.draw(st.integers(0, 2**16)))
    _, cache = K.batch_renorm_forward(
        arr(case.x), None, None, arr(mean), arr(std), r_max, d_max, eps, case.virtual_batch_size
    )
    dx, _, _ = K.batch_renorm_backward(arr(g), cache)
    r = host(K.per_group(cache.r))
    groups = case.groups
    return host_groups(case.x, groups), host_groups(g, groups), host_groups(host(dx), groups), r


@given(case=cases(), data=st.data(), eps=st.one_of(st.just(0.0), st.floats(1e-4, 1.0)))
def test_gradient_is_orthogonal_to_shifts_and_obeys_the_scaling_identity(case: Case, data, eps: float):
    xg, gg, dxg, r = _renorm_backward_on_host(case, data, eps)
    mu_b, sigma_b = host_moments(case.x, case.groups, eps)  # computed independently on the host
    scale = np.abs(gg).max() * r.max() / sigma_b.min()
    np.testing.assert_allclose(dxg.sum(axis=2), 0.0, atol=1e-11 * scale * xg.shape[2])
    centred = xg - mu_b[..., None]
    expected = r * eps * (gg * centred).sum(axis=2) / sigma_b**3  # Σ_i x_i ∂ℓ/∂x_i = r ε Σ_i g_i (x_i − μ_B) / σ_B³
    magnitude = scale * np.abs(xg).max() * xg.shape[2]
    np.testing.assert_allclose((xg * dxg).sum(axis=2), expected, rtol=1e-9, atol=1e-11 * magnitude)


@given(case=cases(), data=st.data())
def test_gradient_is_the_scaled_null_space_projection_when_eps_is_zero(case: Case, data):
    xg, gg, dxg, r = _renorm_backward_on_host(case, data, 0.0)
    _, sigma_b = host_moments(case.x, case.groups, 0.0)
    for gi in range(xg.shape[0]):
        for ci in range(xg.shape[1]):
            p = np.stack([np.ones(xg.shape[2]), xg[gi, ci]], axis=1)  # columns p0 = (1..1), p1 = (x_1..x_m)
            coefficients = B.host.linalg.lstsq(p, gg[gi, ci], rcond=None)[0]
            projection = gg[gi, ci] - p @ coefficients  # g minus its least-squares fit in span(p0, p1)
            expected = r[gi, ci] / sigma_b[gi, ci] * projection
            size = r[gi, ci] / sigma_b[gi, ci] * np.abs(gg[gi, ci]).max()  # m = 2 leaves an empty null space
            np.testing.assert_allclose(dxg[gi, ci], expected, rtol=1e-8, atol=1e-10 * size)


# ----------------------------------------------------------------------------
# 5. With clipping inactive, training output = inference output under the pre-update statistics
# ----------------------------------------------------------------------------


@given(case=cases(), data=st.data(), eps=st.floats(1e-5, 0.1), momentum=st.floats(0.0, 1.0))
def test_unclipped_training_output_equals_inference_with_the_old_running_stats(case: Case, data, eps, momentum):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    offsets, ratios = data.draw(channel_vectors(case.c, -1.0, 1.0)), data.draw(channel_vectors(case.c, 0.5, 2.0))
    mean, std, r_max, d_max = running_stats_for(case, "unclipped", offsets, ratios)
    running_mean, running_std = arr(mean), arr(std)
    x, w, b = leaf(case.x), leaf(gamma), leaf(beta)
    expected = F.batch_renorm(x, w, b, arr(mean), arr(std), training=False)  # pre-update copies
    telemetry: dict = {}
    y = F.batch_renorm(
        x, w, b, running_mean, running_std, True, r_max, d_max, momentum, eps,
        virtual_batch_size=case.virtual_batch_size, telemetry=telemetry,
    )  # fmt: skip
    assert telemetry["r_clipped_fraction"] == 0.0 and telemetry["d_clipped_fraction"] == 0.0
    np.testing.assert_allclose(host(y), host(expected), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------
# 6. Invariance to shifting and scaling a channel (ε = 0; r and d fixed)
# ----------------------------------------------------------------------------


@given(case=cases(), data=st.data(), a=st.floats(0.05, 20.0), shift=st.floats(-100.0, 100.0))
def test_output_is_invariant_to_shifting_and_scaling_a_channel(case: Case, data, a: float, shift: float):
    channel = data.draw(st.integers(0, case.c - 1))
    gamma, beta = arr(data.draw(channel_vectors(case.c, -2.0, 2.0))), arr(data.draw(channel_vectors(case.c, -2.0, 2.0)))
    r, d = arr(data.draw(channel_vectors(case.c, 0.2, 3.0))), arr(data.draw(channel_vectors(case.c, -2.0, 2.0)))
    moved = case.x.copy()
    moved[:, channel] = a * moved[:, channel] + shift
    stats = arr(np.zeros(case.c)), arr(np.ones(case.c))
    vbs = case.virtual_batch_size

    def outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y_bn, _ = K.batch_norm_forward(arr(x), gamma, beta, 0.0, vbs)
        y_brn, _ = K.batch_renorm_forward(arr(x), gamma, beta, *stats, 3.0, 5.0, 0.0, vbs, r=r, d=d)
        return host(y_bn), host(y_brn)

    for before, after in zip(outputs(case.x), outputs(moved)):
        np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------
# 8. The hand-written backward equals autograd through primitive ops (r, d detached)
# ----------------------------------------------------------------------------


def _assert_same_forward_and_backward(ours, reference, inputs_ours, inputs_ref, seed: int) -> None:
    np.testing.assert_allclose(host(ours), host(reference), rtol=1e-10, atol=1e-10)
    v = seed_grad(ours.shape, seed)
    ours.backward(v)
    reference.backward(v)
    for mine, theirs in zip(inputs_ours, inputs_ref):
        np.testing.assert_allclose(host(mine.grad), host(theirs.grad), rtol=1e-8, atol=1e-9)


@given(case=cases(), data=st.data(), eps=st.floats(0.0, 0.5), affine=st.booleans())
def test_batch_norm_backward_equals_autograd_of_the_reference(case: Case, data, eps: float, affine: bool):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    ours = [leaf(case.x), leaf(gamma), leaf(beta)]
    theirs = [leaf(case.x), leaf(gamma), leaf(beta)]
    if not affine:
        ours, theirs = ours[:1], theirs[:1]
    pad = [None] * (3 - len(ours))
    y, _ = NF.batch_norm_train(*ours, *pad, eps, case.virtual_batch_size)
    y_ref = batch_norm_reference(*theirs, *pad, eps, case.virtual_batch_size)
    _assert_same_forward_and_backward(y, y_ref, ours, theirs, data.draw(st.integers(0, 2**16)))


@given(case=cases(), data=st.data(), eps=st.floats(0.0, 0.5), regime=regimes)
def test_batch_renorm_backward_equals_autograd_of_the_reference(case: Case, data, eps: float, regime: str):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    offsets, ratios = data.draw(channel_vectors(case.c, -1.0, 1.0)), data.draw(channel_vectors(case.c, 0.5, 2.0))
    mean, std, r_max, d_max = running_stats_for(case, regime, offsets, ratios)
    mean, std = arr(mean), arr(std)
    ours = [leaf(case.x), leaf(gamma), leaf(beta)]
    theirs = [leaf(case.x), leaf(gamma), leaf(beta)]
    y, _ = NF.batch_renorm_train(*ours, mean, std, r_max, d_max, eps, case.virtual_batch_size)
    y_ref = batch_renorm_reference(*theirs, mean, std, r_max, d_max, eps, case.virtual_batch_size)
    _assert_same_forward_and_backward(y, y_ref, ours, theirs, data.draw(st.integers(0, 2**16)))


# ----------------------------------------------------------------------------
# 9. Ghost batches equal normalizing each group on its own, forward and backward
# ----------------------------------------------------------------------------


@given(case=cases(min_groups=2), data=st.data(), eps=st.floats(1e-5, 0.5), momentum=st.floats(0.0, 1.0))
@pytest.mark.parametrize("method", ["batch_norm", "batch_renorm"])
def test_ghost_batches_equal_normalizing_each_group_alone(method: str, case: Case, data, eps, momentum):
    gamma, beta = data.draw(channel_vectors(case.c, -2.0, 2.0)), data.draw(channel_vectors(case.c, -2.0, 2.0))
    offsets, ratios = data.draw(channel_vectors(case.c, -1.0, 1.0)), data.draw(channel_vectors(case.c, 0.5, 2.0))
    mean, std, r_max, d_max = running_stats_for(case, data.draw(regimes), offsets, ratios)
    v = seed_grad(case.x.shape, data.draw(st.integers(0, 2**16)))
    k = case.k
    normalize = getattr(F, method)
    limits = () if method == "batch_norm" else (r_max, d_max)

    whole_mean, whole_std = arr(mean), arr(std)
    x, w, b = leaf(case.x), leaf(gamma), leaf(beta)
    y = normalize(x, w, b, whole_mean, whole_std, True, *limits, momentum, eps, virtual_batch_size=k)
    y.backward(arr(v))
    mu_parts, sigma_parts = host_moments(case.x, case.groups, eps)
    dw_sum, db_sum = np.zeros(case.c), np.zeros(case.c)
    for g in range(case.groups):
        rows = slice(g * k, (g + 1) * k)
        v_rows = v[rows]
        part = case.x[rows]
        x_g, w_g, b_g = leaf(part), leaf(gamma), leaf(beta)
        y_g = normalize(x_g, w_g, b_g, arr(mean), arr(std), True, *limits, momentum, eps)  # the pre-update stats
        y_g.backward(arr(v_rows))
        np.testing.assert_allclose(host(y)[rows], host(y_g), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(host(x.grad)[rows], host(x_g.grad), rtol=1e-9, atol=1e-10)
        dw_sum += host(w_g.grad)
        db_sum += host(b_g.grad)
    np.testing.assert_allclose(host(w.grad), dw_sum, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(host(b.grad), db_sum, rtol=1e-9, atol=1e-10)
    # one update per call, from the groups' means of μ_B and σ_B
    np.testing.assert_allclose(host(whole_mean), mean + momentum * (mu_parts.mean(axis=0) - mean), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(whole_std), std + momentum * (sigma_parts.mean(axis=0) - std), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------
# 11. Float32 inputs with a large mean and a small spread
# ----------------------------------------------------------------------------


@given(case=cases(ranks=(2, 4)), offset=st.floats(5e3, 2e4), spread=st.floats(0.5, 4.0))
def test_float32_statistics_are_finite_and_accurate_for_a_large_mean(case: Case, offset: float, spread: float):
    x32 = (offset + spread * case.x / np.abs(case.x).max()).astype(np.float32)
    exact = x32.astype(np.float64)  # the same float32 values, analysed in float64
    mu_exact, sigma_exact = host_moments(exact, case.groups, 1e-5)
    x = mg.Tensor(x32, dtype="float32")
    running_mean, running_std = B.from_numpy(np.zeros(case.c, np.float32)), B.from_numpy(np.ones(case.c, np.float32))
    y, cache = NF.batch_norm_train(x, None, None, 1e-5, case.virtual_batch_size)
    F.batch_norm(x, None, None, running_mean, running_std, True, 1.0, 1e-5, virtual_batch_size=case.virtual_batch_size)
    mu_b, sigma_b = host(K.per_group(cache.mu_b)), host(K.per_group(cache.sigma_b))
    assert np.isfinite(host(y)).all() and np.isfinite(sigma_b).all()
    # μ_B is good to float32's resolution at 1e4 (an ulp of ~1e-3); σ_B far better than that, being
    # insensitive to a small error in μ_B. E[x²] − E[x]² would lose everything: x² ~ 1e8 has an ulp of 8.
    ulp = float(np.spacing(np.float32(np.abs(x32).max())))
    np.testing.assert_allclose(mu_b, mu_exact, rtol=0, atol=2 * ulp)
    np.testing.assert_allclose(sigma_b, sigma_exact, rtol=2e-3, atol=1e-4)
    np.testing.assert_allclose(host(running_mean), mu_exact.mean(axis=0), rtol=0, atol=2 * ulp)
    np.testing.assert_allclose(host(running_std), sigma_exact.mean(axis=0), rtol=2e-3, atol=1e-4)
    y_exact = (host_groups(exact, case.groups) - mu_exact[..., None]) / sigma_exact[..., None]
    y_groups = host_groups(host(y).astype(np.float64), case.groups)
    np.testing.assert_allclose(y_groups, y_exact, rtol=0, atol=4 * ulp / sigma_exact.min())
