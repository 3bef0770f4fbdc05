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
# # Tutorial 2 — BatchNorm's backward, derived
#
# Batch Normalization (BatchNorm) standardizes each feature over the examples of a minibatch before
# passing it on. It is a few lines of forward code, but its gradient is subtle: the mean and standard
# deviation are computed *from the batch itself*, so every output depends on every input of the batch.
#
# In this tutorial we derive that gradient with nothing but the chain rule, one small step at a time,
# and check **each step numerically as soon as it is written**. Then we meet the same result in three
# other forms and check that they all agree:
#
# 1. the backprop equations of Ioffe, *Batch Renormalization* (2017), section 3, which are BatchNorm's
#    when the paper's correction is switched off ($r = 1$, $d = 0$);
# 2. a compact closed form, which shows why the gradient sums to zero over the batch;
# 3. minigrad's hand-written kernels, `mg.norm.kernels.batch_norm_forward` / `batch_norm_backward`, and
#    autograd through primitive ops (tutorial 1's engine).
#
# Prerequisites: [tutorial 1](01_autodiff_from_scratch.py) (reverse accumulation, adjoints, finite
# differences). No prior knowledge of BatchNorm is needed.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minigrad as mg

mg.use_backend("numpy")  # everything here is float64 NumPy on the CPU
here = Path(__file__).parent if "__file__" in globals() else Path()  # a script, or a notebook in tutorials/
out = Path(os.environ.get("MINIGRAD_TUTORIAL_OUT", here / "output"))  # figures go here (git ignores it)
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(2017)

# %% [markdown]
# ## 1. The forward pass as a graph of small steps
#
# Take **one feature** (one channel) and its values over a minibatch of $m$ examples,
# $x_1, \dots, x_m$. BatchNorm in training mode computes (Algorithm 1 of the paper, with $r=1$, $d=0$):
#
# $$\mu_B = \frac1m \sum_{i=1}^m x_i, \qquad
#   c_i = x_i - \mu_B, \qquad
#   v = \frac1m \sum_{i=1}^m c_i^2, \qquad
#   \sigma_B = \sqrt{v + \epsilon},$$
#
# $$\hat x_i = \frac{c_i}{\sigma_B}, \qquad y_i = \gamma\, \hat x_i + \beta .$$
#
# So $\hat x$ has mean 0 and (almost, because of the small $\epsilon > 0$ that protects against
# division by zero) variance 1; then the learned scale $\gamma$ and shift $\beta$ give the layer back the
# freedom to choose any mean and spread. Drawn as a graph, $x$ is used twice (for $\mu_B$ and for $c$),
# and so are the centred values $c$ (for the variance and for $\hat x$):
#
# ```
# x ─┬────────► c = x − μ_B ─┬─────────────────► x̂ = c / σ_B ──► y = γ x̂ + β ──► ℓ
#    └─► μ_B ─┘              └─► v ──► σ_B ────┘
# ```
#
# For the backward pass we only need to know $\partial \ell / \partial y_i$, whatever the rest of the
# network is. So we stand in for "the rest of the network" with a linear loss
# $\ell = \sum_i w_i y_i$ for a fixed random $w$: then $\partial \ell / \partial y_i = w_i$, an
# arbitrary upstream gradient.

# %%
m = 8
x = rng.normal(loc=3.0, scale=2.0, size=m)  # one feature over a batch of 8 examples
gamma, beta, eps = 1.7, -0.4, 1e-3
w = rng.standard_normal(m)  # dℓ/dy: the upstream gradient

mu_b = x.mean()
c = x - mu_b
v = np.mean(c**2)
sigma_b = np.sqrt(v + eps)
x_hat = c / sigma_b
y = gamma * x_hat + beta
loss = np.sum(w * y)

print(f"mu_B = {mu_b:.4f}, sigma_B = {sigma_b:.4f}")
print("mean and variance of x_hat:", x_hat.mean(), x_hat.var())
assert abs(x_hat.mean()) < 1e-12 and abs(x_hat.var() - v / (v + eps)) < 1e-12

# %% [markdown]
# ## 2. A numerical referee
#
# To check a derivative $\partial \ell / \partial z$ for an intermediate value $z$, we write
# "the part of the graph **after** $z$" as a function of $z$ alone — everything computed *before* $z$
# is held fixed — and differentiate that function by central finite differences in float64. That is
# exactly the quantity reverse accumulation computes at node $z$: the total derivative of the loss
# through every path that leaves $z$.


# %%
def numerical_gradient(fn, at, h=1e-6):
    """Central differences of the scalar function `fn` at `at` (a number or an array), in float64."""
    at = np.array(at, dtype=np.float64)
    grad = np.zeros_like(at)
    for i in np.ndindex(at.shape):
        up, down = at.copy(), at.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (fn(up) - fn(down)) / (2 * h)
    return grad


def check(name, analytic, fn, at):
    """Assert that `analytic` is the gradient of `fn` at `at`, and report the largest difference."""
    numeric = numerical_gradient(fn, at)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    print(f"{name:>14}: ok, max |analytic − numeric| = {np.max(np.abs(analytic - numeric)):.1e}")


# The loss as a function of each intermediate value, with everything upstream of it held fixed.
def loss_from_y(y_):
    return np.sum(w * y_)


def loss_from_x_hat(x_hat_):
    return loss_from_y(gamma * x_hat_ + beta)


def loss_from_sigma_b(sigma_):  # c is upstream of σ_B: held fixed
    return loss_from_x_hat(c / sigma_)


def loss_from_v(v_):
    return loss_from_sigma_b(np.sqrt(v_ + eps))


def loss_from_c(c_):  # c reaches the loss along two paths: through v and σ_B, and directly into x̂
    return loss_from_x_hat(c_ / np.sqrt(np.mean(c_**2) + eps))


def loss_from_mu_b(mu_):  # x is upstream of μ_B: held fixed
    return loss_from_c(x - mu_)


def loss_from_x(x_):  # the whole layer
    return loss_from_c(x_ - x_.mean())


assert np.isclose(loss_from_x(x), loss) and np.isclose(loss_from_mu_b(mu_b), loss)

# %% [markdown]
# ## 3. The backward pass, one step at a time
#
# We walk the graph from the loss back to $x$, writing $\bar z$ for $\partial \ell / \partial z$.
#
# **Step 1: the affine output** $y_i = \gamma \hat x_i + \beta$. Each $y_i$ depends on $\hat x_i$ alone,
# while $\gamma$ and $\beta$ are shared by all $m$ outputs, so their gradients are sums:
#
# $$\bar y_i = w_i, \qquad
#   g_i := \frac{\partial \ell}{\partial \hat x_i} = \bar y_i\, \gamma, \qquad
#   \frac{\partial \ell}{\partial \gamma} = \sum_i \bar y_i\, \hat x_i, \qquad
#   \frac{\partial \ell}{\partial \beta} = \sum_i \bar y_i .$$

# %%
y_bar = w
g = y_bar * gamma  # dℓ/dx̂, called g from here on
gamma_bar = np.sum(y_bar * x_hat)
beta_bar = np.sum(y_bar)
check("dℓ/dy", y_bar, loss_from_y, y)
check("dℓ/dx̂ = g", g, loss_from_x_hat, x_hat)
check("dℓ/dγ", gamma_bar, lambda gm: loss_from_y(gm * x_hat + beta), gamma)
check("dℓ/dβ", beta_bar, lambda bt: loss_from_y(gamma * x_hat + bt), beta)

# %% [markdown]
# **Step 2: the division** $\hat x_i = c_i / \sigma_B$. Its inputs are $c_i$ and the scalar $\sigma_B$,
# which is shared by all $m$ outputs (so again a sum):
#
# $$\frac{\partial \ell}{\partial \sigma_B} = \sum_i g_i \cdot \frac{\partial \hat x_i}{\partial \sigma_B}
#   = \sum_i g_i\, c_i \cdot \frac{-1}{\sigma_B^2}, \qquad
#   \bar c_i \mathrel{+}= \frac{g_i}{\sigma_B} .$$
#
# The second is only **one** of the two contributions that $c$ receives; we write it with $+=$ and check
# it as a partial derivative (with $\sigma_B$ held fixed). It is *not* yet $\partial \ell / \partial c$,
# and the numerical referee says so.

# %%
sigma_b_bar = np.sum(g * c) * (-1 / sigma_b**2)
c_bar = g / sigma_b  # first contribution, through x̂ directly
check("dℓ/dσ_B", sigma_b_bar, loss_from_sigma_b, sigma_b)
check("∂ℓ/∂c | σ_B", c_bar, lambda c_: loss_from_x_hat(c_ / sigma_b), c)
incomplete = np.max(np.abs(c_bar - numerical_gradient(loss_from_c, c)))
print(f"…but as the total dℓ/dc it is off by {incomplete:.3f}: the path through σ_B is missing")
assert incomplete > 0.1

# %% [markdown]
# **Step 3: the square root** $\sigma_B = \sqrt{v + \epsilon}$, with
# $\frac{d\sigma_B}{dv} = \frac{1}{2\sqrt{v+\epsilon}} = \frac{1}{2\sigma_B}$:
#
# $$\bar v = \frac{\partial \ell}{\partial \sigma_B} \cdot \frac{1}{2 \sigma_B} .$$

# %%
v_bar = sigma_b_bar / (2 * sigma_b)
check("dℓ/dv", v_bar, loss_from_v, v)

# %% [markdown]
# **Step 4: the variance** $v = \frac1m \sum_i c_i^2$, with $\partial v / \partial c_i = 2 c_i / m$. This is
# the second path into $c$, so its contribution is **added** to $\bar c$ — the rule from tutorial 1 for a
# value used twice. Now $\bar c$ is complete:
#
# $$\bar c_i = \frac{g_i}{\sigma_B} + \bar v \cdot \frac{2 c_i}{m} .$$

# %%
c_bar = c_bar + v_bar * 2 * c / m  # second contribution, through v and σ_B
check("dℓ/dc", c_bar, loss_from_c, c)

# %% [markdown]
# **Step 5: the centring** $c_i = x_i - \mu_B$. Each $c_i$ sends $\bar c_i$ to $x_i$ (local derivative 1)
# and $-\bar c_i$ to the shared $\mu_B$:
#
# $$\bar\mu_B = -\sum_i \bar c_i, \qquad \bar x_i \mathrel{+}= \bar c_i .$$

# %%
mu_b_bar = -np.sum(c_bar)
x_bar = c_bar.copy()  # first contribution to x̄, through c
check("dℓ/dμ_B", mu_b_bar, loss_from_mu_b, mu_b)

# %% [markdown]
# **Step 6: the mean** $\mu_B = \frac1m \sum_i x_i$, with $\partial \mu_B / \partial x_i = 1/m$. Second
# contribution to $\bar x$, and we are done:
#
# $$\bar x_i = \bar c_i + \frac{\bar\mu_B}{m} .$$

# %%
x_bar = x_bar + mu_b_bar / m
check("dℓ/dx", x_bar, loss_from_x, x)

# %% [markdown]
# Six steps, each a one-line local derivative, each verified. That is the whole derivation.
#
# For contrast: a common mistake is to treat $\mu_B$ and $\sigma_B$ as constants and write
# $\bar x_i = g_i / \sigma_B$. That *is* the right gradient at inference time, when BatchNorm uses fixed
# running averages instead of batch statistics, but in training it is wrong:

# %%
naive = g / sigma_b
naive_error = np.max(np.abs(naive - x_bar))
print(f"treating μ_B and σ_B as constants is off by up to {naive_error:.3f}")
assert naive_error > 0.1

# %% [markdown]
# ## 4. The paper's equations (section 3)
#
# Batch Renormalization generalizes BatchNorm with a per-feature correction,
# $\hat x_i = \frac{x_i - \mu_B}{\sigma_B} \cdot r + d$, where $r$ and $d$ are treated as constants by
# the gradient. Its section 3 gives the backward pass; with $r = 1$ and $d = 0$ it is BatchNorm's:
#
# $$\frac{\partial \ell}{\partial \sigma_B} = \sum_{i=1}^m \frac{\partial \ell}{\partial \hat x_i}
#     \cdot (x_i - \mu_B) \cdot \frac{-r}{\sigma_B^2}, \qquad
#   \frac{\partial \ell}{\partial \mu_B} = \sum_{i=1}^m \frac{\partial \ell}{\partial \hat x_i}
#     \cdot \frac{-r}{\sigma_B},$$
#
# $$\frac{\partial \ell}{\partial x_i} = \frac{\partial \ell}{\partial \hat x_i} \cdot \frac{r}{\sigma_B}
#   + \frac{\partial \ell}{\partial \sigma_B} \cdot \frac{x_i - \mu_B}{m\, \sigma_B}
#   + \frac{\partial \ell}{\partial \mu_B} \cdot \frac1m .$$
#
# How do these match our six steps?
#
# * $\partial \ell / \partial \sigma_B$ is our step 2, word for word.
# * $\frac{x_i - \mu_B}{m \sigma_B}$ is $\partial \sigma_B / \partial x_i$ with $\mu_B$ held fixed: our steps
#   3 and 4 combined, $\frac{1}{2\sigma_B} \cdot \frac{2 c_i}{m}$. The paper skips the variable $v$.
# * The paper's $\partial \ell / \partial \mu_B$ has only the direct path $\mu_B \to \hat x$. Ours (step 5)
#   also went through the variance, via $-\bar v \cdot \frac{2}{m} \sum_i c_i$ (since
#   $\partial v / \partial \mu_B = -\frac{2}{m} \sum_i c_i$), but $\sum_i c_i = 0$ because $\mu_B$ is the mean:
#   that path contributes exactly nothing. (Intuitively, the mean is the point that minimizes the sum of
#   squares, so a small change of the centre does not change $v$.)

# %%
r = 1.0  # BatchNorm: no correction
paper_sigma_b = np.sum(g * (x - mu_b)) * (-r / sigma_b**2)
paper_mu_b = np.sum(g) * (-r / sigma_b)
paper_x = g * r / sigma_b + paper_sigma_b * (x - mu_b) / (m * sigma_b) + paper_mu_b / m

variance_path = -v_bar * 2 * np.sum(c) / m  # μ_B → v → σ_B, left out by the paper
print(f"contribution of the path μ_B → v to dℓ/dμ_B: {variance_path:.1e}")
assert abs(variance_path) < 1e-12
np.testing.assert_allclose(paper_sigma_b, sigma_b_bar, rtol=1e-12)
np.testing.assert_allclose(paper_mu_b, mu_b_bar, rtol=1e-12)
np.testing.assert_allclose(paper_x, x_bar, rtol=1e-12, atol=1e-12)
check("paper's dℓ/dx", paper_x, loss_from_x, x)

# %% [markdown]
# ## 5. A compact closed form
#
# Substitute the first two equations into the third ($r = 1$), and write $c_i = \sigma_B \hat x_i$:
#
# $$\frac{\partial \ell}{\partial x_i}
#   = \frac{g_i}{\sigma_B} - \frac{\sum_j g_j c_j}{\sigma_B^2} \cdot \frac{c_i}{m \sigma_B} - \frac{\sum_j g_j}{m \sigma_B}
#   = \frac{1}{m\sigma_B}\Big( m g_i - \sum_j g_j - \hat x_i \sum_j g_j \hat x_j \Big).$$
#
# This is how fast implementations compute it: two sums per feature ($\sum g$ and $\sum g \hat x$, the
# latter being $\partial\ell/\partial\gamma$ up to the factor $\gamma$), then one elementwise pass. No
# intermediate for $\mu_B$ or $\sigma_B$ gradients is stored.


# %%
def batchnorm_backward_compact(g_, x_hat_, sigma_b_):
    """dℓ/dx from g = dℓ/dx̂ for one feature: (1 / (m σ_B)) (m g − Σ g − x̂ Σ g x̂)."""
    m_ = g_.shape[0]
    return (m_ * g_ - g_.sum() - x_hat_ * np.sum(g_ * x_hat_)) / (m_ * sigma_b_)


compact = batchnorm_backward_compact(g, x_hat, sigma_b)
np.testing.assert_allclose(compact, x_bar, rtol=1e-12, atol=1e-12)
check("compact dℓ/dx", compact, loss_from_x, x)

# %% [markdown]
# ### What the closed form says: a projection
#
# Divide by $m$ inside the bracket:
# $\frac{\partial \ell}{\partial x_i} = \frac{1}{\sigma_B}\big(g_i - \overline{g} - \hat x_i\, \overline{g \hat x}\big)$,
# where the bars are batch means. Compare with fitting a straight line $g_i \approx \alpha + \beta' \hat x_i$
# by least squares: since $\hat x$ has mean 0, the best $\alpha$ is $\overline{g}$, and the best slope is
# $\overline{g \hat x} / \overline{\hat x^2}$. When $\epsilon = 0$, $\overline{\hat x^2} = 1$ and so:
#
# > $\sigma_B \cdot \partial \ell / \partial x$ is the **residual** of regressing $g$ on $(1, \hat x)$: the
# > upstream gradient with its components along two directions removed — moving all inputs together
# > (the direction $1$) and spreading them out together (the direction $\hat x$), the two changes of the
# > batch that BatchNorm's output ignores.
#
# That is the paper's remark that $\partial\ell/\partial x$ is $g$ scaled by $r/\sigma_B$ and projected onto
# the null space of $p_0 = (1,\dots,1)$ and $p_1 = (x_1,\dots,x_m)$ (the same plane as the one spanned by
# $1$ and $\hat x$, since $\hat x$ is $x$ shifted and scaled). It follows from the layer's
# invariances: adding the same $t$ to every $x_i$ changes nothing, so $\sum_i \partial\ell/\partial x_i = 0$;
# and with $\epsilon = 0$, scaling every $x_i$ by $(1+t)$ changes nothing, so
# $\sum_i x_i\, \partial\ell/\partial x_i = 0$.
#
# With $\epsilon > 0$ the second invariance is only approximate ($\sigma_B$ of a scaled batch is not
# the scaled $\sigma_B$, because of the $\epsilon$). From the closed form,
# $\sum_i \hat x_i^2 = m(1 - \epsilon/\sigma_B^2)$, which gives exactly
#
# $$\sum_i \frac{\partial \ell}{\partial x_i} = 0, \qquad
#   \sum_i x_i \frac{\partial \ell}{\partial x_i} = \frac{\epsilon}{\sigma_B^2} \sum_i g_i \hat x_i .$$
#
# We check all of this, first with our $\epsilon = 10^{-3}$, then with $\epsilon = 0$.


# %%
def forward_one_feature(x_, eps_):
    mu_ = x_.mean()
    sigma_ = np.sqrt(np.mean((x_ - mu_) ** 2) + eps_)
    return (x_ - mu_) / sigma_, sigma_


np.testing.assert_allclose(forward_one_feature(x + 5.0, eps)[0], x_hat, atol=1e-12)  # shift: invariant
assert np.max(np.abs(forward_one_feature(3.0 * x, eps)[0] - x_hat)) > 1e-6  # scale: not quite, ε > 0
np.testing.assert_allclose(forward_one_feature(3.0 * x, 0.0)[0], forward_one_feature(x, 0.0)[0], atol=1e-12)

assert abs(np.sum(x_bar)) < 1e-12
np.testing.assert_allclose(np.sum(x * x_bar), eps / sigma_b**2 * np.sum(g * x_hat), rtol=1e-9)
print(f"ε = {eps}: Σ dℓ/dx = {np.sum(x_bar):.1e},  Σ x dℓ/dx = {np.sum(x * x_bar):.2e} (= ε/σ_B² Σ g x̂)")

x_hat0, sigma0 = forward_one_feature(x, 0.0)
dx0 = batchnorm_backward_compact(g, x_hat0, sigma0)
design = np.stack([np.ones(m), x_hat0], axis=1)  # columns 1 and x̂
coefficients, *_ = np.linalg.lstsq(design, g, rcond=None)
residual = g - design @ coefficients
np.testing.assert_allclose(sigma0 * dx0, residual, atol=1e-12)
assert abs(np.sum(dx0)) < 1e-12 and abs(np.sum(x * dx0)) < 1e-11
print(f"ε = 0: Σ x dℓ/dx = {np.sum(x * dx0):.1e}, and σ_B dℓ/dx equals the least-squares residual")

# %% [markdown]
# The picture: each dot is one example. The line is the least-squares fit of $g$ on $\hat x$; the
# vertical segments are the residuals, i.e. $\sigma_B\,\partial\ell/\partial x_i$.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
order = np.argsort(x_hat0)
ax.plot(x_hat0[order], (design @ coefficients)[order], color="tab:gray", label="fit α + β' x̂")
ax.scatter(x_hat0, g, color="tab:blue", zorder=3, label="g = dℓ/dx̂")
ax.vlines(x_hat0, design @ coefficients, g, color="tab:red", label="residual = σ_B · dℓ/dx")
ax.set_xlabel("x̂ (normalized input)")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out / "02_projection.png", dpi=100)
plt.show()  # inline in a notebook and on the site; a script has only the saved file
assert (out / "02_projection.png").stat().st_size > 0

# %% [markdown]
# ## 6. minigrad's kernels
#
# Real inputs have many features. For a batch `x` of shape $(N, C)$ — $N$ examples, $C$ features or
# channels — every channel is normalized separately with its own $\mu_B$, $\sigma_B$, $\gamma$ and $\beta$,
# over $m = N$ values. For images $(N, C, H, W)$ the statistics of a channel run over the batch *and*
# the pixels, so $m = N H W$.
#
# minigrad implements this as two pure functions on arrays in `mg.norm.kernels`:
#
# * `batch_norm_forward(x, gamma, beta, eps)` returns `y` and a cache (holding $\hat x$, $\mu_B$,
#   $\sigma_B$, $\gamma$ — what the backward needs);
# * `batch_norm_backward(dy, cache)` returns `(dx, dgamma, dbeta)`.
#
# Its core, `mg.norm.kernels.normalized_grad`, is written line by line from the paper's three equations
# (with Batch Renorm's $r$ as a parameter). We compare it with our per-channel code.

# %%
K = mg.norm.kernels
N, C = 16, 3
X = rng.normal(size=(N, C)) * np.array([0.5, 2.0, 5.0]) + np.array([1.0, -3.0, 10.0])
GAMMA = np.array([1.5, -0.7, 2.0])
BETA = np.array([0.1, 0.2, -0.3])
DY = rng.standard_normal((N, C))

Y, cache = K.batch_norm_forward(X, GAMMA, BETA, eps)
DX, DGAMMA, DBETA = K.batch_norm_backward(DY, cache)

for ch in range(C):
    x_hat_ch, sigma_ch = forward_one_feature(X[:, ch], eps)
    np.testing.assert_allclose(Y[:, ch], GAMMA[ch] * x_hat_ch + BETA[ch], rtol=1e-12, atol=1e-12)
    g_ch = DY[:, ch] * GAMMA[ch]
    np.testing.assert_allclose(DX[:, ch], batchnorm_backward_compact(g_ch, x_hat_ch, sigma_ch), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(DGAMMA[ch], np.sum(DY[:, ch] * x_hat_ch), rtol=1e-12)
    np.testing.assert_allclose(DBETA[ch], np.sum(DY[:, ch]), rtol=1e-12)

# The cache holds the batch statistics, in a grouped layout; per_group gives them as (groups, C).
np.testing.assert_allclose(K.per_group(cache.mu_b)[0], X.mean(axis=0), rtol=1e-12)
np.testing.assert_allclose(K.per_group(cache.sigma_b)[0], np.sqrt(X.var(axis=0) + eps), rtol=1e-12)
np.testing.assert_allclose(DX.sum(axis=0), 0.0, atol=1e-12)  # Σ_i dℓ/dx_i = 0 in every channel
print("kernel == our derivation for every channel; dx sums to", DX.sum(axis=0))

# %% [markdown]
# And for images: the same kernel on $(N, C, H, W)$ matches our one-feature code applied to each channel's
# $N H W$ values.

# %%
X4 = rng.normal(size=(4, 2, 3, 3)) * 2.0 + 1.0
DY4 = rng.standard_normal(X4.shape)
Y4, cache4 = K.batch_norm_forward(X4, None, None, eps)  # no γ, β: then g = dℓ/dy
DX4, _, _ = K.batch_norm_backward(DY4, cache4)


def channels_first(a):
    """(N, C, H, W) -> (C, N*H*W): the m values of each channel in one row."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


for ch in range(X4.shape[1]):
    x_hat_ch, sigma_ch = forward_one_feature(channels_first(X4)[ch], eps)
    np.testing.assert_allclose(channels_first(Y4)[ch], x_hat_ch, rtol=1e-12, atol=1e-12)
    expected = batchnorm_backward_compact(channels_first(DY4)[ch], x_hat_ch, sigma_ch)
    np.testing.assert_allclose(channels_first(DX4)[ch], expected, rtol=1e-10, atol=1e-12)
print("m per channel for (4, 2, 3, 3):", channels_first(X4).shape[1])

# %% [markdown]
# ## 7. Autograd through primitives agrees
#
# Finally, forget every formula above and let tutorial 1's engine differentiate the forward pass, written
# with ordinary Tensor ops (mean, subtract, square, sqrt, divide). The engine discovers on its own that
# $x$ reaches the loss through $\mu_B$, through $\sigma_B$ and directly, and adds the three contributions.
# Such a version is slow but obviously correct (the test suite keeps one as its oracle, in
# `tests/reference/norm.py`); here it takes four lines.


# %%
def leaf(a):
    return mg.Tensor(a, requires_grad=True, dtype="float64")


def batch_norm_from_primitives(x_, gamma_, beta_, eps_):
    mu = x_.mean(axis=0, keepdims=True)
    sigma = (((x_ - mu) ** 2).mean(axis=0, keepdims=True) + eps_).sqrt()
    return (x_ - mu) / sigma * gamma_ + beta_  # γ and β (C,) broadcast over the batch


xt, gt, bt = leaf(X), leaf(GAMMA), leaf(BETA)
yt = batch_norm_from_primitives(xt, gt, bt, eps)
np.testing.assert_allclose(yt.numpy(), Y, rtol=1e-12, atol=1e-12)
yt.backward(DY)
for autograd, kernel in zip((xt.grad, gt.grad, bt.grad), (DX, DGAMMA, DBETA)):
    np.testing.assert_allclose(autograd, kernel, rtol=1e-9, atol=1e-12)
print("autograd through primitives == hand-written kernel, for x, γ and β")

# %% [markdown]
# The layer-facing function `mg.nn.functional.batch_norm(..., training=True)` runs the kernels inside
# a `mg.Function` (one op in the graph, hand-written backward, as in tutorial 1), so `mg.gradcheck` can
# verify it end to end, for all three inputs at once.

# %%
F = mg.nn.functional


def batch_norm_layer(x_, gamma_, beta_):
    return F.batch_norm(x_, gamma_, beta_, None, None, training=True, eps=eps)


assert mg.gradcheck(batch_norm_layer, [leaf(X), leaf(GAMMA), leaf(BETA)])
assert mg.gradcheck(lambda x_: F.batch_norm(x_, None, None, None, None, training=True, eps=eps), [leaf(X4)])
print("gradcheck passes for the (N, C) and (N, C, H, W) layers")

# %% [markdown]
# ## Summary
#
# * BatchNorm's forward is six small steps; its backward is six one-line local derivatives, glued by the
#   chain rule, with contributions **added** where a value is used twice ($c$, then $x$).
# * The mean's path through the variance contributes nothing, which is why the paper's
#   $\partial\ell/\partial\mu_B$ has a single term.
# * Compactly, $\partial\ell/\partial x = \frac{1}{m\sigma_B}\big(m g - \sum g - \hat x \sum g\hat x\big)$: $g$
#   with its batch mean and its component along $\hat x$ removed, scaled by $1/\sigma_B$. So the gradient
#   always sums to zero over the batch, and (for $\epsilon = 0$) is orthogonal to $x$.
# * minigrad's kernels, the paper's equations, the compact form, finite differences and autograd
#   through primitives all agree to rounding error.
#
# Batch *Re*normalization multiplies $\hat x$ by a constant $r$ (and adds $d$); since $r$ and $d$ get no
# gradient, the BatchNorm part receives $r\,g$ instead of $g$, and the backward above is linear in $g$:
# Batch Renorm's $\partial\ell/\partial x$ is BatchNorm's, scaled by $r$ (per feature), as
# [tutorial 3](03_why_batch_renormalization.py) shows.
# [Tutorial 4](04_proving_gradients_with_properties.py) turns the zero-sum identity into a property that
# hypothesis tests on thousands of generated batches.
