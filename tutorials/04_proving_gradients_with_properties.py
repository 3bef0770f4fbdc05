# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.4
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 4 — Proving gradients with properties
#
# Tutorials 1 and 2 checked gradients at a handful of hand-picked points. Tutorial 1 ended with a warning:
# a wrong backward for softplus passed the check at $x = 0$, the most "natural" test point. A test is only
# as good as its inputs.
#
# **Property-based testing** turns that around. Instead of writing examples, you state a *property*
# — "for every input of this kind, this holds" — and a library generates the inputs, hundreds of them,
# including nasty ones you would not think of. When it finds a failure it **shrinks** it: it searches for
# the simplest input that still fails and reports that one, which usually points straight at the bug.
#
# minigrad's test suite uses [hypothesis](https://hypothesis.readthedocs.io) this way for every op. In this
# tutorial we:
#
# 1. look at how the suite does it (`tests/strategies.py`, `tests/test_ops.py`,
#    `tests/test_norm_properties.py`);
# 2. write properties for a new op — finite differences, and invariants that need no reference at all;
# 3. state BatchNorm's null-space identity, $\sum_i \partial\ell/\partial x_i = 0$, as a property;
# 4. watch hypothesis find and shrink two deliberately buggy backward passes.
#
# Every property below is a decorated test function that we simply **call**; hypothesis runs it on many
# generated inputs and raises if any fails. We keep `max_examples` small so the page runs in seconds.

# %%
import numpy as np
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minigrad as mg

mg.use_backend("numpy")  # float64 NumPy on the CPU: the setting for finite differences
F = mg.nn.functional
K = mg.norm.kernels

# Settings for every property on this page: 25 examples, no time limit per example (a gradient check
# can take a few milliseconds), the same examples on every run (derandomize), and no example database
# written to disk.
quick = settings(max_examples=25, deadline=None, derandomize=True, database=None)

# %% [markdown]
# ## 1. How the test suite does it
#
# **Strategies** describe how to generate inputs. `tests/strategies.py` defines the few the op tests
# share: small array shapes (size-1 axes included, because broadcasting bugs hide there), pairs of shapes
# that broadcast together, and float64 arrays with bounded, finite, non-subnormal values (NaN and
# $10^{300}$ are not what a gradient check is about).
#
# **`tests/test_ops.py`** states one property per op: *the backward agrees with central finite
# differences*, i.e. `mg.gradcheck(op, inputs)` holds, for every generated shape and value. A few
# techniques recur:
#
# * the domain is restricted where the op is not defined (`log`, `sqrt`, `div` draw from $[0.2, 3]$ or
#   $[0.5, 3]$);
# * `assume(...)` discards examples where a finite difference is meaningless: a `relu` input within
#   $10^{-3}$ of its kink at 0, or ties in `max` and `maximum`;
# * binary ops draw *broadcastable pairs* of shapes, so the engine's summing-back of gradients is tested
#   for every op.
#
# **`tests/test_norm_properties.py`** does the same for BatchNorm and Batch Renorm, with one extra care:
# finite differences are ill-conditioned when a channel's variance is near zero
# (then $\sigma_B \approx \sqrt\epsilon$ and the gradient is huge), so its `cases` strategy *builds* well-spread inputs (an
# alternating $\pm1$ pattern plus bounded noise, scaled and shifted per channel) rather than filtering
# random ones. Beyond finite differences it checks identities that follow from the math:
# the gradient sums to zero over each normalization group and obeys a scaling identity
# (`test_gradient_is_orthogonal_to_shifts_and_obeys_the_scaling_identity`), it is exactly a null-space
# projection when $\epsilon = 0$, the hand-written backward equals autograd through primitive ops, the
# output is invariant to shifting and scaling a channel, and ghost batches equal normalizing each group
# alone.
#
# **`tests/conftest.py`** picks how hard hypothesis tries: the default profile `ci` runs 15 examples per
# property with a fixed seed, and `HYPOTHESIS_PROFILE=dev` (50) or `intense` (500) search harder, e.g.
# `HYPOTHESIS_PROFILE=intense python -m pytest tests/test_norm_properties.py`. Every test runs on NumPy
# and on array-api-strict.
#
# Here we write our own small versions of these strategies.


# %%
def shapes(min_dims=0, max_dims=3, max_side=4):
    """Small array shapes, including () and size-1 axes."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def arrays(shape, low=-3.0, high=3.0):
    """float64 arrays of `shape` with finite values in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_subnormal=False))


any_array = shapes().flatmap(arrays)  # first draw a shape, then an array of that shape


def leaf(a):
    return mg.Tensor(a, requires_grad=True, dtype="float64")


# %% [markdown]
# To see what a strategy produces, run a property that only records its inputs. Note how hypothesis mixes
# "simple" inputs (zeros, 0-d and one-element arrays) with random ones, and with extreme magnitudes inside
# the bounds (values like $10^{-250}$): both are where edge-case bugs live.

# %%
drawn = []


@quick
@given(x=any_array)
def record_inputs(x):
    drawn.append(x)


record_inputs()
for x in drawn[:6]:
    print(f"shape {x.shape!s:<10} values {np.array2string(x.ravel()[:4], precision=2)}")
assert len(drawn) >= 10 and any(x.ndim == 0 for x in drawn) and any(x.ndim == 3 for x in drawn)

# %% [markdown]
# ## 2. A new op and its properties
#
# Our op is a **smooth absolute value** with a parameter $\delta > 0$,
#
# $$f_\delta(x) = \sqrt{x^2 + \delta^2} - \delta, \qquad f_\delta'(x) = \frac{x}{\sqrt{x^2 + \delta^2}} .$$
#
# It behaves like $x^2 / 2\delta$ near 0 and like $|x| - \delta$ far away (it is the "pseudo-Huber"
# loss). Two implementation notes, in the style of tutorial 1:
#
# * for small $|x|$, $\sqrt{x^2+\delta^2} - \delta$ subtracts two nearly equal numbers and loses digits;
#   the equivalent $x^2 / (\sqrt{x^2+\delta^2} + \delta)$ does not;
# * $\delta$ is an op **parameter**, not an input tensor: keyword arguments of `Function.apply` reach the
#   op's `__init__` and become attributes (`self.delta`), and get no gradient.


# %%
class SmoothAbs(mg.Function):
    delta: float

    def forward(self, x):
        xp = mg.backend.namespace(x)
        self.x = x
        self.root = xp.sqrt(x * x + self.delta**2)
        return x * x / (self.root + self.delta)  # = sqrt(x² + δ²) − δ, without cancellation

    def backward(self, grad):
        return grad * self.x / self.root


@mg.tensor_method("smooth_abs")
def smooth_abs(x: mg.Tensor, delta: float = 1.0) -> mg.Tensor:
    """sqrt(x² + δ²) − δ: a smooth |x| (pseudo-Huber)."""
    if not delta > 0:
        raise ValueError(f"delta: expected a number > 0, got {delta!r}")
    return SmoothAbs.apply(x, delta=delta)


t = mg.Tensor([-3.0, 0.0, 1e-9, 2.0], dtype="float64")
print(t.smooth_abs(0.5).numpy())
np.testing.assert_allclose(t.smooth_abs(0.5).numpy(), np.sqrt(t.numpy() ** 2 + 0.25) - 0.5, atol=1e-15)
assert t.smooth_abs(0.5).numpy()[2] > 0  # 1e-18 / (2 δ) survives; the naive formula would give exactly 0

# %% [markdown]
# ### Property 1: the backward agrees with finite differences
#
# The core property of the suite, for our op: for **every** array shape and values in $[-3, 3]$ and
# every $\delta \in [0.05, 3]$, `mg.gradcheck` holds. `@example` adds an input that is always tried, on
# top of the generated ones: here $x = 0$ with the sharpest curve, $\delta = 0.05$.


# %%
@quick
@given(x=any_array, delta=st.floats(0.05, 3.0))
@example(x=np.zeros(3), delta=0.05)
def test_smooth_abs_matches_finite_differences(x, delta):
    assert mg.gradcheck(lambda t: t.smooth_abs(delta), [leaf(x)])


test_smooth_abs_matches_finite_differences()
print("property 1 holds on every generated example")

# %% [markdown]
# ### Property 2: invariants that need no reference
#
# Finite differences are one oracle. Often the mathematics gives others for free, which are exact, cheap
# and catch different bugs. For $f_\delta$:
#
# * it is **even**, $f(-x) = f(x)$, so its derivative is **odd**, $f'(-x) = -f'(x)$;
# * it is sandwiched, $|x| - \delta \le f(x) \le \min\!\big(|x|,\ x^2 / 2\delta\big)$;
# * its slope is bounded, $|f'(x)| < 1$.


# %%
def value_and_grad(x, delta):
    t = leaf(x)
    y = t.smooth_abs(delta)
    y.sum().backward()
    return y.numpy(), t.grad


@quick
@given(x=any_array, delta=st.floats(0.05, 3.0))
def test_smooth_abs_invariants(x, delta):
    fx, dfx = value_and_grad(x, delta)
    f_neg, df_neg = value_and_grad(-x, delta)
    np.testing.assert_array_equal(f_neg, fx)  # even: bit for bit, since (−x)² = x² exactly
    np.testing.assert_array_equal(df_neg, -dfx)  # odd derivative
    assert np.all(fx >= np.abs(x) - delta) and np.all(fx <= np.abs(x)) and np.all(fx <= x * x / (2 * delta))
    assert np.all(np.abs(dfx) < 1)


test_smooth_abs_invariants()
print("property 2 holds on every generated example")

# %% [markdown]
# ### Property 3: the op inside an expression, with broadcasting
#
# An op is rarely used alone. Here two inputs of *mutually broadcastable* shapes (drawn together by
# `hnp.mutually_broadcastable_shapes`) are multiplied, passed through the op and partly reduced. The
# gradient check then also covers the engine's summing-back of broadcast gradients for both inputs.


# %%
@quick
@given(data=st.data(), pair=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3))
def test_smooth_abs_in_a_broadcast_expression(data, pair):
    shape_a, shape_b = pair.input_shapes
    a, b = data.draw(arrays(shape_a)), data.draw(arrays(shape_b))

    def expression(p, q):
        z = (p * q).smooth_abs(0.5) + q
        return z.sum(axis=0) if z.ndim else z

    assert mg.gradcheck(expression, [leaf(a), leaf(b)])


test_smooth_abs_in_a_broadcast_expression()
print("property 3 holds on every generated example")

# %% [markdown]
# ## 3. BatchNorm's null-space identity as a property
#
# Tutorial 2 derived that BatchNorm's input gradient always **sums to zero over the batch**, channel by
# channel, for any upstream gradient, any $\gamma$, $\beta$ and $\epsilon$:
#
# $$\sum_{i=1}^m \frac{\partial \ell}{\partial x_i} = 0 ,$$
#
# because adding the same constant to every $x_i$ does not change the output. That is a property in the
# purest sense: no reference implementation, no finite differences, just a fact that must hold for every
# input. It is also a strong one: it fails for the most common wrong backward (section 4 shows this).
#
# To generate batches we need inputs whose channels are not (nearly) constant: with a spread near 0,
# $\sigma_B \approx \sqrt\epsilon$ and the gradient blows up, and rounding errors with it. Filtering with
# `assume(x.std() > 0.1)` would work but wastes examples (hypothesis likes to try all-zero arrays).
# Instead we **construct** well-spread batches: in every channel, the evenly spaced values
# $-1, \dots, 1$ in a drawn order, plus bounded noise, then a drawn scale and shift. Shapes are
# $(N, C)$ or $(N, C, H, W)$.


# %%
@st.composite
def batches(draw):
    """A float64 batch (N, C) or (N, C, H, W) whose channels have a standard deviation of at least ~0.2."""
    c = draw(st.integers(1, 3))
    spatial = draw(st.sampled_from([(), (1, 2), (2, 2)]))
    n = draw(st.integers(2, 6))
    m = n * int(np.prod(spatial))  # values per channel
    order = np.array(draw(st.permutations(range(m))))
    ramp = np.linspace(-1.0, 1.0, m)[order]  # the same spread in every channel, in a drawn order
    noise = draw(arrays((c, m), -0.2, 0.2))
    scale = draw(arrays((c, 1), 0.5, 3.0))
    shift = draw(arrays((c, 1), -5.0, 5.0))
    per_channel = (ramp + noise) * scale + shift  # (C, m)
    return np.moveaxis(per_channel.reshape((c, n, *spatial)), 0, 1).copy()  # (N, C, *spatial)


def per_channel(a):
    """(N, C, ...) -> (C, m): each channel's m values in one row."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


@quick
@given(x=batches(), data=st.data(), eps=st.floats(1e-5, 0.5))
def test_batch_norm_gradient_sums_to_zero(x, data, eps):
    c = x.shape[1]
    gamma, beta = data.draw(arrays((c,), -2.0, 2.0)), data.draw(arrays((c,), -2.0, 2.0))
    upstream = data.draw(arrays(x.shape))  # any dℓ/dy
    xt = leaf(x)
    y = F.batch_norm(xt, leaf(gamma), leaf(beta), None, None, training=True, eps=eps)
    y.backward(upstream)
    sums = per_channel(xt.grad).sum(axis=1)
    # Rounding: each dℓ/dx_i is about |γ| |dℓ/dy| / σ_B, and m of them are added.
    sigma_b = np.sqrt(per_channel(x).var(axis=1) + eps)
    size = np.abs(gamma) * np.abs(per_channel(upstream)).max(axis=1) / sigma_b * per_channel(x).shape[1]
    assert np.all(np.abs(sums) <= 1e-13 * size), (sums, size)  # exactly 0 when γ or dℓ/dy is 0


test_batch_norm_gradient_sums_to_zero()
print("Σ_i dℓ/dx_i = 0 on every generated batch")

# %% [markdown]
# The companion identity, from invariance to *scaling* the batch, holds exactly only for $\epsilon = 0$;
# tutorial 2 showed that in general
# $\sum_i x_i\,\partial\ell/\partial x_i = \frac{\epsilon}{\sigma_B^2}\sum_i g_i \hat x_i$
# with $g = \partial\ell/\partial\hat x$. A property that draws $\epsilon$ sometimes exactly 0
# (`st.just(0.0)`) and sometimes not pins down both cases. It calls the kernels directly, since the layer
# function requires $\epsilon > 0$ (the kernels accept 0 for identities like this one).


# %%
@quick
@given(x=batches(), data=st.data(), eps=st.one_of(st.just(0.0), st.floats(1e-4, 1.0)))
def test_batch_norm_scaling_identity(x, data, eps):
    upstream = data.draw(arrays(x.shape))
    _, cache = K.batch_norm_forward(x, None, None, eps)
    dx, _, _ = K.batch_norm_backward(upstream, cache)  # no γ: g = dℓ/dy
    xs, gs, dxs = per_channel(x), per_channel(upstream), per_channel(dx)
    sigma_b = np.sqrt(xs.var(axis=1) + eps)
    x_hat = (xs - xs.mean(axis=1, keepdims=True)) / sigma_b[:, None]
    expected = eps / sigma_b**2 * np.sum(gs * x_hat, axis=1)
    size = np.abs(gs).max() / sigma_b.min() * np.abs(xs).max() * xs.shape[1]
    np.testing.assert_allclose(np.sum(xs * dxs, axis=1), expected, rtol=1e-9, atol=1e-13 * size)


test_batch_norm_scaling_identity()
print("Σ_i x_i dℓ/dx_i = (ε/σ_B²) Σ_i g_i x̂_i on every generated batch, and 0 when ε = 0")

# %% [markdown]
# ## 4. When a property fails: shrinking
#
# Now the interesting part. We plant a bug and let hypothesis find it.
#
# **Bug 1.** A backward for the smooth absolute value that uses $|x|$ instead of $x$ in the numerator, so
# the sign of the gradient is lost. For $x \ge 0$ it is correct, which is why a test on positive inputs
# (or at 0) would pass.
#
# To show what hypothesis does, the property records every input on which it fails. Calling it raises the
# failure; we catch the exception and look at what it carries. In hypothesis's report the *falsifying
# example* is the **last** one it ran: after finding a failure, it keeps trying simpler variants (smaller
# shapes, fewer dimensions, values nearer 0 or to round numbers) as long as they still fail.


# %%
class SmoothAbsSignBug(SmoothAbs):
    def backward(self, grad):
        xp = mg.backend.namespace(grad)
        return grad * xp.abs(self.x) / self.root  # BUG: |x| instead of x


# Settings for hunting a planted bug: up to 100 examples, stop at the first bug found, and skip the
# "explain" phase (it re-runs failing examples under a tracer to list suspicious lines, which is slow).
hunt = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


def report(error):
    """Print the exception and the falsifying example that hypothesis attaches to it as notes."""
    print(f"{type(error).__name__}: {str(error).splitlines()[0]}")
    for note in getattr(error, "__notes__", []):
        print("   ", note)


failures = []


@hunt
@given(x=any_array, delta=st.floats(0.05, 3.0))
def test_buggy_smooth_abs(x, delta):
    try:
        assert mg.gradcheck(lambda t: SmoothAbsSignBug.apply(t, delta=delta), [leaf(x)])
    except AssertionError:
        failures.append((x.copy(), delta))
        raise


try:
    test_buggy_smooth_abs()
except AssertionError as error:  # mg.GradcheckError is an AssertionError
    report(error)
else:
    raise AssertionError("hypothesis should have found the planted bug")

first_x, _ = failures[0]
shrunk_x, shrunk_delta = failures[-1]
print(f"\nfirst failure found: shape {first_x.shape}, values {np.array2string(first_x.ravel(), precision=3)}")
print(f"after shrinking:     shape {shrunk_x.shape}, values {shrunk_x.ravel()}, delta {shrunk_delta}")
assert len(failures) >= 2  # found, then shrunk
assert shrunk_x.size == 1 and shrunk_x.item() < 0  # one negative number: the bug's signature
assert shrunk_x.size <= first_x.size and shrunk_x.ndim <= first_x.ndim

# %% [markdown]
# The shrunk example is a single negative number. It says, in one line, "the gradient is wrong for
# negative inputs" — almost the diagnosis. Compare the first failure hypothesis stumbled on: an array of
# several random values, where you would still have to find which element and why.
#
# **Bug 2.** A BatchNorm whose backward treats $\mu_B$ and $\sigma_B$ as constants,
# $\partial\ell/\partial x_i = g_i / \sigma_B$ — the classic mistake from tutorial 2. We test it against the same null-space
# identity as in section 3. No finite differences are involved; the identity alone exposes the bug.


# %%
class BatchNormConstantStats(mg.Function):
    """Correct forward, wrong backward: ignores that μ_B and σ_B depend on x."""

    eps: float

    def forward(self, x):
        y, _ = K.batch_norm_forward(x, None, None, self.eps)
        axes = (0, *range(2, x.ndim))  # every axis but the channel axis
        self.sigma_b = np.sqrt(x.var(axis=axes, keepdims=True) + self.eps)
        return y

    def backward(self, grad):
        return grad / self.sigma_b  # BUG: missing the paths through μ_B and σ_B


bn_failures = []


@hunt
@given(x=batches(), data=st.data())
def test_buggy_batch_norm_sums_to_zero(x, data):
    upstream = data.draw(arrays(x.shape))
    xt = leaf(x)
    BatchNormConstantStats.apply(xt, eps=1e-5).backward(upstream)
    sums = per_channel(xt.grad).sum(axis=1)
    if not np.all(np.abs(sums) <= 1e-9):
        bn_failures.append((x.copy(), upstream.copy(), sums))
        raise AssertionError(f"the input gradient sums to {sums} over the batch, not 0")


try:
    test_buggy_batch_norm_sums_to_zero()
except AssertionError as error:
    report(error)
else:
    raise AssertionError("hypothesis should have found the planted bug")

bn_x, bn_upstream, bn_sums = bn_failures[-1]
print(f"\nshrunk batch: shape {bn_x.shape}, x = {bn_x.ravel()}, dℓ/dy = {bn_upstream.ravel()}")
assert bn_x.shape == (2, 1)  # the smallest batch there is: two examples, one channel
# The wrong gradients sum to Σ_i (dℓ/dy_i) / σ_B: any upstream gradient with a non-zero sum exposes the bug.
sigma = np.sqrt(bn_x.var() + 1e-5)
np.testing.assert_allclose(bn_sums, bn_upstream.sum() / sigma)
assert bn_upstream.sum() != 0
# For a constant upstream gradient (the loss Σ y_i), the true input gradient is exactly zero.
_, bn_cache = K.batch_norm_forward(bn_x, None, None, 1e-5)
np.testing.assert_allclose(K.batch_norm_backward(np.ones_like(bn_x), bn_cache)[0], 0.0, atol=1e-15)

# %% [markdown]
# The smallest possible batch: two examples, one channel. The wrong backward returns $g_i/\sigma_B$,
# whose sum over the batch is $\sum_i g_i / \sigma_B$, so any upstream gradient with a non-zero sum
# exposes it. Hypothesis typically shrinks to the simplest such one, $\partial\ell/\partial y = (1, 1)$:
# the loss $\ell = \sum_i y_i$. For that loss the true input gradient is exactly zero — BatchNorm's
# output always has the same sum, $m\beta$, whatever $x$ is — yet the buggy backward sends $1/\sigma_B$
# to every example.
#
# ## 5. Writing good properties: a checklist
#
# * **Pick oracles that are independent of the code under test**: finite differences, a slow reference
#   built from primitives, an identity from the mathematics (symmetry, invariance, a conservation law).
# * **Generate the inputs the claim is about, and only those.** Bound the values; keep away from poles,
#   kinks and near-singular cases by *construction* where you can, by `assume` where you must.
# * **Scale tolerances with the problem** (here, with $|g|/\sigma_B$ and $m$), not with a fixed constant.
# * **Make runs reproducible** in CI (`derandomize=True`, or a profile), and search harder locally
#   (`HYPOTHESIS_PROFILE=intense`).
# * **Read the shrunk example.** It is the smallest witness of the bug, and usually the diagnosis.
#
# In the repository, a new op gets a line in `tests/test_ops.py` (its gradient check under `@given`), and
# a new identity of BatchNorm or Batch Renorm a property in `tests/test_norm_properties.py`.
