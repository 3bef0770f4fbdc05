# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 3 — Why Batch Renormalization
#
# Batch normalization ("batchnorm") normalizes every activation with the mean and standard
# deviation of the *minibatch* it arrives in. That makes a network easy to train, but it
# also means the network computes something different while training (batch statistics)
# than at inference (moving averages). Ioffe's *Batch Renormalization* (2017) removes that
# difference with a small per-channel correction, $r$ and $d$, that is treated as a
# constant when differentiating.
#
# This tutorial builds the idea up from arrays, checking every formula as it goes:
#
# 1. batchnorm in four lines, and its two modes;
# 2. the train/inference mismatch, measured: small batches and non-i.i.d. batches;
# 3. Algorithm 1 of the paper line by line, against minigrad's kernel and layer;
# 4. why $r$ and $d$ must be constants, and what a gradient check then says;
# 5. the null-space identities of the backward pass and their projection picture;
# 6. the $r_{\max}$ / $d_{\max}$ schedule and the clipping telemetry of a real training run.
#
# You need calculus and NumPy; no prior knowledge of batchnorm. Every formula below is also
# computed, and every claim is checked by an `assert`: if this notebook runs, its claims hold.
#
# **Running it.** `python tutorials/03_why_batch_renormalization.py` runs every cell as a
# script. To get a notebook: `pip install jupytext notebook && jupytext
# --to notebook tutorials/03_why_batch_renormalization.py`. On Colab, upload the `.ipynb`,
# make the minigrad repository available in the runtime and `pip install -e` it (with the
# `train` extra, for matplotlib and the digits data), then run the cells in order.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minigrad as mg

# The kernels below are fed NumPy arrays and checked in float64 on the CPU: use the NumPy backend.
mg.use_backend("numpy")
K = mg.norm.kernels  # the array kernels of BatchNorm and Batch Renorm
here = Path(__file__).parent if "__file__" in globals() else Path()  # a script, or a notebook in tutorials/
out = Path(os.environ.get("MINIGRAD_TUTORIAL_OUT", here / "output"))  # figures go here (git ignores it)
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=True)


def as_tensor(a, requires_grad=False):
    """A float64 minigrad tensor (float64 so that the checks below can be tight)."""
    return mg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad, dtype="float64")


def set_state(layer, **values):
    """Overwrite some parameters or buffers of a layer (weight, bias, running_mean, running_std)."""
    state = layer.state_dict()
    # load_state_dict copies the values it is given, so a training step, which updates the running
    # statistics in place, never changes our own `mu` and `sigma`
    state.update({name: np.asarray(v, dtype=np.float64) for name, v in values.items()})
    layer.load_state_dict(state)


# %% [markdown]
# ## 1. Batch normalization in four lines
#
# Take one channel (one feature) of a layer and a minibatch $\mathcal{B}$ of $m$ examples;
# the channel's values are $x_1, \dots, x_m$. Batchnorm computes
#
# $$
# \mu_{\mathcal{B}} = \frac{1}{m}\sum_{i=1}^m x_i, \qquad
# \sigma_{\mathcal{B}} = \sqrt{\epsilon + \frac{1}{m}\sum_{i=1}^m (x_i - \mu_{\mathcal{B}})^2}, \qquad
# \hat{x}_i = \frac{x_i - \mu_{\mathcal{B}}}{\sigma_{\mathcal{B}}}, \qquad
# y_i = \gamma \hat{x}_i + \beta,
# $$
#
# independently for every channel. $\gamma$ and $\beta$ are learned; $\epsilon$ (here
# $10^{-5}$) only protects against dividing by zero. The normalized values $\hat{x}_i$ have
# mean 0 and standard deviation (almost exactly) 1 *within the batch*, whatever the scale
# and offset of $x$.
#
# In a layer, `x` has shape `(N, C)`: N examples (the batch, $m = N$) and C channels.

# %%
m, C = 8, 3
x = rng.normal(loc=[2.0, -1.0, 0.5], scale=[1.0, 3.0, 0.2], size=(m, C))
gamma, beta, eps = np.array([1.5, 0.5, -1.0]), np.array([0.0, 1.0, 2.0]), 1e-5

mu_b = x.mean(axis=0)  # one mean per channel
sigma_b = np.sqrt(eps + ((x - mu_b) ** 2).mean(axis=0))
x_hat = (x - mu_b) / sigma_b
y = gamma * x_hat + beta

bn = mg.nn.BatchNorm1d(C, dtype="float64")  # eps=1e-5 and momentum=0.1 by default
set_state(bn, weight=gamma, bias=beta)
y_layer = bn(as_tensor(x)).numpy()  # a new layer is in training mode

np.testing.assert_allclose(y_layer, y, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(x_hat.mean(axis=0), 0.0, atol=1e-12)
np.testing.assert_allclose(x_hat.std(axis=0), 1.0, atol=1e-3)  # not exactly 1 because of eps:
np.testing.assert_allclose(x_hat.std(axis=0), np.sqrt(x.var(axis=0) / (x.var(axis=0) + eps)), rtol=1e-12, atol=1e-12)
print("batch means:", mu_b, " batch stds:", sigma_b)

# %% [markdown]
# At inference time there is no batch: an image arrives alone and its output must not
# depend on which other images happen to be processed with it. So the layer also keeps
# *moving averages* $\mu$ and $\sigma$ of the batch statistics, updated after every
# training step with a rate $\Delta$ (`momentum`, 0.1 by default),
#
# $$
# \mu \leftarrow \mu + \Delta(\mu_{\mathcal{B}} - \mu), \qquad
# \sigma \leftarrow \sigma + \Delta(\sigma_{\mathcal{B}} - \sigma),
# $$
#
# and in inference mode (`layer.eval()`) it computes
# $y = \gamma \cdot \frac{x - \mu}{\sigma} + \beta$, a fixed affine function of each
# example alone. The layer's averages start at $\mu = 0$, $\sigma = 1$; we just did one
# training step:

# %%
np.testing.assert_allclose(bn.running_mean, 0.0 + 0.1 * (mu_b - 0.0), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(bn.running_std, 1.0 + 0.1 * (sigma_b - 1.0), rtol=1e-12, atol=1e-12)

bn.eval()
y_inference = bn(as_tensor(x)).numpy()
np.testing.assert_allclose(y_inference, gamma * (x - bn.running_mean) / bn.running_std + beta, rtol=1e-12, atol=1e-12)
bn.train()  # back to training mode
print("running mean:", bn.running_mean, " running std:", bn.running_std)

# %% [markdown]
# ## 2. The train/inference mismatch, measured
#
# During training, every layer above a batchnorm sees $\hat{x}$ computed with batch
# statistics; at inference it sees $(x - \mu)/\sigma$ instead. How different are the two?
# Below, a BatchNorm1d layer first sees 300 training batches (so that its moving
# averages settle), then we push each of 200 new batches through it **twice**, in
# inference mode and in training mode, and measure the mean absolute difference of the
# two outputs. We do this for two kinds of batches of $m$ examples with $C = 4$ channels:
#
# * **i.i.d.**: every value drawn independently from $\mathcal{N}(0, 1)$;
# * **non-i.i.d.**: the examples of a batch share a random offset $s \sim \mathcal{N}(0, 1.5^2)$
#   per channel, $x_i = s + z_i$ with $z_i \sim \mathcal{N}(0, 1)$. Think of a batch whose
#   images all come from one class, one camera, or one user: they have something in common
#   that other batches do not.

# %%
C = 4
SHIFT_SD = 1.5


def make_batch(m, shifted):
    z = rng.standard_normal((m, C))
    return z + SHIFT_SD * rng.standard_normal((1, C)) if shifted else z


def train_inference_gap(layer, m, shifted, warmup=300, batches=200):
    """Mean |y_train - y_inference| per batch, and the layer's telemetry for each (Batch Renorm only)."""
    layer.train()
    for _ in range(warmup):
        layer(as_tensor(make_batch(m, shifted)))
    gaps, records = [], []
    for _ in range(batches):
        x = as_tensor(make_batch(m, shifted))
        layer.eval()
        y_inf = layer(x).numpy()  # uses mu, sigma as they are *before* this batch's update
        layer.train()
        y_train = layer(x).numpy()  # batch statistics, then mu and sigma are updated
        gaps.append(np.abs(y_train - y_inf).mean())
        records.append(dict(getattr(layer, "telemetry", {})))
    return np.array(gaps), records


sizes = [2, 4, 8, 16, 32, 128, 512]
gap_iid = {m: train_inference_gap(mg.nn.BatchNorm1d(C, dtype="float64"), m, False)[0].mean() for m in sizes}
gap_shifted = {m: train_inference_gap(mg.nn.BatchNorm1d(C, dtype="float64"), m, True)[0].mean() for m in sizes}
for m in sizes:
    print(f"m = {m:4d}   i.i.d. gap {gap_iid[m]:.3f}   non-i.i.d. gap {gap_shifted[m]:.3f}")

# %% [markdown]
# **Small batches.** For i.i.d. batches the gap shrinks as the batch grows, but slowly.
# For large $m$ the batch statistics are noisy estimates of $\mu$ and $\sigma$:
# $\mu_{\mathcal{B}} - \mu \approx \mathcal{N}(0, \sigma^2/m)$ and
# $\sigma_{\mathcal{B}}/\sigma - 1 \approx \mathcal{N}(0, \tfrac{1}{2m})$, so for a standardized
# value $u = (x-\mu)/\sigma$,
#
# $$
# \frac{x - \mu_{\mathcal{B}}}{\sigma_{\mathcal{B}}} - u
#   \approx -\frac{\mu_{\mathcal{B}} - \mu}{\sigma} - u \Big(\frac{\sigma_{\mathcal{B}}}{\sigma} - 1\Big),
# $$
#
# a zero-mean error of variance $\frac{1}{m} + \frac{\mathrm{E}[u^2]}{2m} = \frac{3}{2m}$,
# whose mean absolute value is $\sqrt{2/\pi}\sqrt{3/(2m)} = \sqrt{3/\pi}/\sqrt{m} \approx 0.98/\sqrt{m}$.
# With $m = 32$ that is still an error of 0.17 standard deviations on every activation.
#
# For $m = 2$ it is much worse: with two values, $\hat{x} = \pm(x_1 - x_2)/|x_1 - x_2| = \pm 1$
# whatever the inputs (up to $\epsilon$). Batchnorm on pairs throws away everything but
# which of the two is larger.

# %%
gaps = np.array([gap_iid[m] for m in sizes])
assert np.all(np.diff(gaps) < 0), "the i.i.d. gap should shrink as the batch grows"
np.testing.assert_allclose(np.sqrt(3 / np.pi), 0.98, atol=0.005)
np.testing.assert_allclose(np.sqrt(3 / np.pi) / np.sqrt(32), 0.17, atol=0.005)
for m in (32, 128, 512):
    ratio = gap_iid[m] / (np.sqrt(3 / np.pi) / np.sqrt(m))
    assert 0.8 < ratio < 1.2, (m, ratio)

pair = mg.nn.BatchNorm1d(1, dtype="float64")(as_tensor([[0.3], [1.7]])).numpy()
print("batchnorm of the pair (0.3, 1.7):", pair.ravel())
np.testing.assert_allclose(pair.ravel(), [-1.0, 1.0], atol=1e-4)

# %% [markdown]
# **Non-i.i.d. batches.** Here the gap does not shrink at all. In training mode batchnorm
# subtracts the batch mean, which contains the shared offset $s$: the layers above never
# see $s$. In inference mode the moving average $\mu \approx 0$ is subtracted instead, and
# $s$ passes straight through: the layers above now receive an input shifted by about
# $s/\sigma$, something they never saw in training. The mean absolute size of that shift
# is $\mathrm{E}|s| = 1.5\sqrt{2/\pi} \approx 1.2$, however large the batch.
# (Section 4.3 of the paper sees exactly this in a model trained on batches made of pairs
# of same-label images; tutorial 05 reproduces it on digits.)

# %%
np.testing.assert_allclose(SHIFT_SD * np.sqrt(2 / np.pi), 1.2, atol=0.005)
for m in (32, 128, 512):
    assert 1.0 < gap_shifted[m] < 1.5, (m, gap_shifted[m])
    assert gap_shifted[m] > 5 * gap_iid[m]

# %% [markdown]
# **Batch Renorm's answer.** Section 3 of the paper observes that the two normalizations
# are related by an affine map:
#
# $$\frac{x_i - \mu}{\sigma} = \frac{x_i - \mu_{\mathcal{B}}}{\sigma_{\mathcal{B}}} \cdot r + d,
# \qquad r = \frac{\sigma_{\mathcal{B}}}{\sigma}, \quad d = \frac{\mu_{\mathcal{B}} - \mu}{\sigma}.$$
#
# Batchnorm uses $r = 1$, $d = 0$. Batch Renorm computes $r$ and $d$ from the batch and the
# moving averages and applies them, so in training the layers above receive the *inference*
# activation. To keep training stable, $r$ is clipped to $[1/r_{\max}, r_{\max}]$ and $d$
# to $[-d_{\max}, d_{\max}]$ (defaults 3 and 5). When neither is clipped, the training
# output equals the inference output **exactly**. Let us run the same non-i.i.d. experiment
# with a BatchRenorm1d layer, and use its `telemetry` (which records, for the last training
# step, the fraction of channels whose $r$ or $d$ was clipped) to split the batches.

# %%
brn_results = {}
for m in sizes:
    gaps_m, records = train_inference_gap(mg.nn.BatchRenorm1d(C, dtype="float64"), m, True)
    clipped = np.array([rec["r_clipped_fraction"] > 0 or rec["d_clipped_fraction"] > 0 for rec in records])
    brn_results[m] = (gaps_m, clipped, records)
    worst_unclipped = gaps_m[~clipped].max() if (~clipped).any() else 0.0
    print(
        f"m = {m:4d}   batches with clipping: {clipped.mean():5.1%}   "
        f"largest gap without clipping: {worst_unclipped:.1e}   mean gap: {gaps_m.mean():.4f}"
    )
    assert worst_unclipped < 1e-12  # identical outputs whenever nothing was clipped
    assert gaps_m.mean() < 0.2 * gap_shifted[m]
for m in sizes[2:]:
    assert brn_results[m][1].mean() < 0.05  # clipping is rare once m >= 8


def clipped_records(m):
    _, clipped, records = brn_results[m]
    return [rec for rec, c in zip(records, clipped) if c]


r_share_pairs = np.mean([rec["r_clipped_fraction"] > 0 for rec in brn_results[2][2]])
large = [rec for m in sizes[2:] for rec in clipped_records(m)]
d_share_large = np.mean([rec["d_clipped_fraction"] > 0 for rec in large])
print(f"m = 2: r was clipped in {r_share_pairs:.0%} of all batches")
print(f"m >= 8: d was clipped in {d_share_large:.0%} of the few clipped batches")
assert r_share_pairs > 0.5 and d_share_large > 0.8

# %% [markdown]
# With $m = 2$ the batch standard deviation $|x_1 - x_2|/2$ is often tiny: $r < 1/3$ is
# clipped in most batches, and those batches differ. From $m = 8$ on, clipping is rare
# (mostly an offset beyond $d_{\max} = 5$ standard deviations), and every other batch gives
# the inference output to machine precision. The figure shows the gap against $m$, and one non-i.i.d. batch of 32
# through both layers.

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
ms = np.array(sizes)
ax0.loglog(ms, [gap_iid[m] for m in sizes], "o-", label="BatchNorm, i.i.d. batches")
ax0.loglog(ms, [gap_shifted[m] for m in sizes], "s-", label="BatchNorm, batches sharing an offset")
ax0.loglog(ms, np.sqrt(3 / np.pi) / np.sqrt(ms), "k--", lw=1, label=r"$\sqrt{3/\pi}\,/\sqrt{m}$")
ax0.loglog(ms, [max(brn_results[m][0].mean(), 1e-6) for m in sizes], "^-", label="Batch Renorm, sharing an offset")
ax0.set_xlabel("batch size m")
ax0.set_ylabel("mean |train output - inference output|")
ax0.set_title("Train/inference mismatch")
ax0.legend(fontsize=8)

x_demo = as_tensor(make_batch(32, True))
for name, layer in (
    ("BatchNorm", mg.nn.BatchNorm1d(C, dtype="float64")),
    ("Batch Renorm", mg.nn.BatchRenorm1d(C, dtype="float64")),
):
    train_inference_gap(layer, 32, True, warmup=300, batches=0)
    layer.eval()
    y_inf = layer(x_demo).numpy()
    layer.train()
    y_tr = layer(x_demo).numpy()
    ax1.scatter(y_inf.ravel(), y_tr.ravel(), s=12, label=name)
lim = [-5, 5]
ax1.plot(lim, lim, "k:", lw=1)
ax1.set_xlabel("inference-mode output")
ax1.set_ylabel("training-mode output")
ax1.set_title("One batch of 32 sharing an offset")
ax1.legend()
fig.tight_layout()
fig.savefig(out / "03_train_inference_gap.png", dpi=120)
plt.show()

# %% [markdown]
# ## 3. Algorithm 1, line by line
#
# Here is the training half of Algorithm 1 of the paper, for one channel, given the
# moving averages $\mu, \sigma$ from *before* this step:
#
# $$
# \begin{aligned}
# \mu_{\mathcal{B}} &\leftarrow \frac{1}{m}\sum_{i=1}^m x_i, &
# \sigma_{\mathcal{B}} &\leftarrow \sqrt{\epsilon + \frac{1}{m}\sum_{i=1}^m (x_i - \mu_{\mathcal{B}})^2}, \\
# r &\leftarrow \text{stop\_gradient}\Big(
#   \text{clip}_{[1/r_{\max},\, r_{\max}]}\Big(\frac{\sigma_{\mathcal{B}}}{\sigma}\Big)\Big), &
# d &\leftarrow \text{stop\_gradient}\Big(
#   \text{clip}_{[-d_{\max},\, d_{\max}]}\Big(\frac{\mu_{\mathcal{B}} - \mu}{\sigma}\Big)\Big), \\
# \hat{x}_i &\leftarrow \frac{x_i - \mu_{\mathcal{B}}}{\sigma_{\mathcal{B}}} \cdot r + d, &
# y_i &\leftarrow \gamma \hat{x}_i + \beta, \\
# \mu &:= \mu + \Delta(\mu_{\mathcal{B}} - \mu), &
# \sigma &:= \sigma + \Delta(\sigma_{\mathcal{B}} - \sigma).
# \end{aligned}
# $$
#
# and inference is unchanged: $y = \gamma \cdot \frac{x - \mu}{\sigma} + \beta$.
#
# We compute every line with NumPy for a batch of 8 examples and 3 channels, with limits
# $r_{\max} = 2$, $d_{\max} = 1$, moving averages $\mu = (0.3, 0, 0)$, $\sigma = (1, 1, 1)$,
# and a batch made to have means $(0.5, 0.2, 3)$ and standard deviations $(1.2, 4, 1)$:
# channel 0 needs no clipping, channel 1's spread is 4 times $\sigma$ (so $r$ is clipped
# to 2) and channel 2's mean is 3 $\sigma$ away from $\mu$ (so $d$ is clipped to 1).

# %%
m, C = 8, 3
z = rng.standard_normal((m, C))
z = (z - z.mean(axis=0)) / z.std(axis=0)  # a random batch with mean exactly 0 and std exactly 1 ...
x = np.array([0.5, 0.2, 3.0]) + np.array([1.2, 4.0, 1.0]) * z  # ... given these means and stds
mu, sigma = np.array([0.3, 0.0, 0.0]), np.array([1.0, 1.0, 1.0])  # moving averages before the step
gamma, beta = np.array([2.0, 1.0, 0.5]), np.array([0.1, -0.2, 0.3])
r_max, d_max, eps, delta = 2.0, 1.0, 1e-5, 0.1

mu_b = x.mean(axis=0)
sigma_b = np.sqrt(eps + ((x - mu_b) ** 2).mean(axis=0))
r_raw, d_raw = sigma_b / sigma, (mu_b - mu) / sigma
r = np.clip(r_raw, 1 / r_max, r_max)
d = np.clip(d_raw, -d_max, d_max)
x_hat = (x - mu_b) / sigma_b * r + d
y = gamma * x_hat + beta
mu_new, sigma_new = mu + delta * (mu_b - mu), sigma + delta * (sigma_b - sigma)

print("sigma_B / sigma      :", r_raw, "-> r =", r)
print("(mu_B - mu) / sigma  :", d_raw, "-> d =", d)
assert r_raw[0] == r[0] and d_raw[0] == d[0]  # channel 0: nothing clipped
assert r[1] == r_max and r_raw[1] > r_max  # channel 1: r clipped
assert d[2] == d_max and d_raw[2] > d_max  # channel 2: d clipped

# %% [markdown]
# Now the same batch through the kernel `mg.norm.kernels.batch_renorm_forward` (pure arrays
# in, output and a cache of the statistics out; it never changes its inputs), and through
# a `BatchRenorm1d` layer given the same parameters and moving averages. The kernel's
# statistics have a "group" axis for ghost batches; `per_group` flattens them to
# `(groups, C)`, here `(1, 3)`.

# %%
y_kernel, cache = K.batch_renorm_forward(x, gamma, beta, mu, sigma, r_max, d_max, eps)
np.testing.assert_allclose(y_kernel, y, rtol=1e-12, atol=1e-12)
for name, mine in (("mu_b", mu_b), ("sigma_b", sigma_b), ("r", r), ("d", d)):
    np.testing.assert_allclose(K.per_group(getattr(cache, name))[0], mine, rtol=1e-12, atol=1e-12)

layer = mg.nn.BatchRenorm1d(C, r_max=r_max, d_max=d_max, eps=eps, momentum=delta, dtype="float64")
set_state(layer, weight=gamma, bias=beta, running_mean=mu, running_std=sigma)
y_layer = layer(as_tensor(x)).numpy()
np.testing.assert_allclose(y_layer, y, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(layer.running_mean, mu_new, rtol=1e-12, atol=1e-12)  # the last two lines of Algorithm 1
np.testing.assert_allclose(layer.running_std, sigma_new, rtol=1e-12, atol=1e-12)
print("layer telemetry:", layer.telemetry)
assert layer.telemetry["r_clipped_fraction"] == layer.telemetry["d_clipped_fraction"] == 1 / 3  # one channel of three each

# %% [markdown]
# Where nothing was clipped (channel 0), the training output is exactly the inference
# output computed with the moving averages *before* the update; where $r$ or $d$ was
# clipped, it is not. That is the identity of section 2, now per channel:

# %%
y_would_be_inference = gamma * (x - mu) / sigma + beta
np.testing.assert_allclose(y[:, 0], y_would_be_inference[:, 0], rtol=1e-12, atol=1e-12)
assert not np.allclose(y[:, 1], y_would_be_inference[:, 1])
assert not np.allclose(y[:, 2], y_would_be_inference[:, 2])

layer.eval()  # the inference line of Algorithm 1, with the updated averages
np.testing.assert_allclose(layer(as_tensor(x)).numpy(), gamma * (x - mu_new) / sigma_new + beta, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 4. $r$ and $d$ are constants for the gradient
#
# If $r = \sigma_{\mathcal{B}}/\sigma$ and $d = (\mu_{\mathcal{B}} - \mu)/\sigma$ are not
# clipped, then $\hat{x}_i = (x_i - \mu)/\sigma$: as a *function of $x$*, the training
# forward is just the inference affine map. Differentiating that function honestly would
# give $\partial \hat{x}_i / \partial x_j = \delta_{ij}/\sigma$, i.e. normalizing with moving
# averages, which section 2 of the paper recalls "has been observed to lead to the model
# blowing up": the gradient no longer knows that shifting or scaling all $x_i$ together
# changes nothing after normalization, so the weights before the layer can drift without
# bound.
#
# Batch Renorm therefore marks $r$ and $d$ with `stop_gradient`: for the backward pass
# they are constants, and the gradient is batchnorm's gradient scaled by $r$ (section 3's
# equations; we check them in section 5). The price is that the backward pass is **not**
# the derivative of the forward function, and a finite-difference check of the whole
# function must fail. Let us see it.
#
# `mg.gradcheck(fn, inputs)` perturbs every input element by $\pm 10^{-6}$, compares the
# central difference of $\sum_i v_i\, \mathrm{fn}(x)_i$ (a fixed random $v$) with the
# gradient that backward computes, and raises `mg.GradcheckError` when they disagree. We
# use the Tensor-level function `mg.norm.batch_renorm_train`, which reads the moving
# averages but does not update them, so repeated calls compute the same function.

# %%
m = 6
x = rng.normal(0.4, 1.1, size=(m, 1))
mu, sigma = np.array([0.2]), np.array([1.3])
R_MAX, D_MAX, EPS = 3.0, 5.0, 0.0


def renorm_whole(t):
    """Batch Renorm's training forward; r and d are recomputed from t at every call."""
    return mg.norm.batch_renorm_train(t, None, None, mu, sigma, R_MAX, D_MAX, EPS)[0]


_, cache = K.batch_renorm_forward(x, None, None, mu, sigma, R_MAX, D_MAX, EPS)
telemetry = K.clip_telemetry(cache)  # fractions of r and d clipped, ranges of the unclipped values
assert telemetry["r_clipped_fraction"] == telemetry["d_clipped_fraction"] == 0.0  # nothing clipped
r0, d0 = K.per_group(cache.r), K.per_group(cache.d)  # this batch's r and d, shape (1, 1)

failure = None
try:
    mg.gradcheck(renorm_whole, [as_tensor(x, requires_grad=True)])
except mg.GradcheckError as err:
    failure = str(err)
print(failure)
assert failure is not None, "the naive gradient check should fail"

# %% [markdown]
# How wrong? Write $\ell = \sum_i v_i y_i$ and compare the backward gradient $a$ with the
# finite-difference gradient $n$ by the relative error $\|a - n\| / \|n\|$. For
# $v = (1, \dots, 1)$ the true derivative is $n_j = 1/\sigma$ for every $j$ (the function is
# $(x - \mu)/\sigma$), while Batch Renorm's backward gives exactly 0, because batchnorm's
# output always sums to the same value whatever $x$ is: a relative error of exactly 1.
# For a random $v$ the error is $\|\text{fit}\| / \|v\|$, where "fit" is the least-squares
# fit of $v$ by $a\,(1, \dots, 1) + b\,(x_1, \dots, x_m)$: the part of $v$ that Batch
# Renorm's backward removes (section 5 explains why), again of order 1.


# %%
def finite_difference_grad(fn, x, v, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        grad[index] = ((fn(as_tensor(plus)).numpy() - fn(as_tensor(minus)).numpy()) * v).sum() / (2 * h)
    return grad


def backward_grad(fn, x, v):
    t = as_tensor(x, requires_grad=True)
    fn(t).backward(v)
    return t.grad


def relative_error(a, n):
    return np.linalg.norm(a - n) / np.linalg.norm(n)


v_ones, v_random = np.ones((m, 1)), rng.standard_normal((m, 1))
for v in (v_ones, v_random):
    numeric = finite_difference_grad(renorm_whole, x, v)
    np.testing.assert_allclose(numeric, v / sigma, rtol=1e-6)  # the derivative of (x - mu)/sigma
v = v_ones
err_ones = relative_error(backward_grad(renorm_whole, x, v), finite_difference_grad(renorm_whole, x, v))
v = v_random
err_random = relative_error(backward_grad(renorm_whole, x, v), finite_difference_grad(renorm_whole, x, v))
print(f"relative error, v = ones: {err_ones:.6f};  v random: {err_random:.3f}")
np.testing.assert_allclose(err_ones, 1.0, atol=1e-6)
A = np.stack([np.ones(m), x[:, 0]], axis=1)
fit = A @ np.linalg.lstsq(A, v_random[:, 0], rcond=None)[0]
np.testing.assert_allclose(err_random, np.linalg.norm(fit) / np.linalg.norm(v_random), rtol=1e-5)
assert err_random > 0.3

# %% [markdown]
# The backward pass is right for the function it is meant to differentiate: Batch Renorm
# with **this batch's** $r$ and $d$ held fixed. The kernels take `r=` and `d=` for exactly
# this purpose. With them, every finite-difference probe sees the same constants, and the
# check passes. A slow version built from primitive ops, which detaches $r$ and $d$ as the
# paper's stop_gradient says, gives the same gradient through ordinary autograd.


# %%
def renorm_fixed(t):
    """The same forward with r and d frozen at this batch's values."""
    return mg.norm.batch_renorm_train(t, None, None, mu, sigma, R_MAX, D_MAX, EPS, r=r0, d=d0)[0]


assert mg.gradcheck(renorm_fixed, [as_tensor(x, requires_grad=True)])
np.testing.assert_allclose(renorm_fixed(as_tensor(x)).numpy(), renorm_whole(as_tensor(x)).numpy(), rtol=1e-12, atol=1e-12)
err_fixed = relative_error(backward_grad(renorm_fixed, x, v_random), finite_difference_grad(renorm_fixed, x, v_random))
print(f"relative error with r and d fixed: {err_fixed:.1e}")
assert err_fixed < 1e-7


def renorm_reference(t):
    """Batch Renorm from primitive Tensor ops; r and d computed from the batch, then detached (plain arrays)."""
    mu_b = t.mean(axis=0, keepdims=True)
    sigma_b = (((t - mu_b) ** 2).mean(axis=0, keepdims=True) + EPS).sqrt()
    r = np.clip(sigma_b.numpy() / sigma, 1 / R_MAX, R_MAX)  # stop_gradient(clip(σ_B/σ))
    d = np.clip((mu_b.numpy() - mu) / sigma, -D_MAX, D_MAX)  # stop_gradient(clip((μ_B − μ)/σ))
    return (t - mu_b) / sigma_b * as_tensor(r) + as_tensor(d)


np.testing.assert_allclose(
    backward_grad(renorm_reference, x, v_random), backward_grad(renorm_whole, x, v_random), rtol=1e-10
)

# %% [markdown]
# ## 5. The null space of the gradient
#
# Fix $r$ and $d$ and let $\epsilon = 0$. Then $\hat{x}_i = r\,(x_i - \mu_{\mathcal{B}})/\sigma_{\mathcal{B}} + d$
# does not change when every $x_i$ is shifted by the same $t$ ($\mu_{\mathcal{B}}$ moves by
# $t$, $\sigma_{\mathcal{B}}$ stays) or scaled by the same $1 + t$ (both moments scale). So
# for any loss $\ell$ computed from the $\hat{x}_i$, the functions
# $t \mapsto \ell(\{x_i + t\})$ and $t \mapsto \ell(\{x_i (1 + t)\})$ are constant, and their
# derivatives at $t = 0$ (chain rule) vanish:
#
# $$\sum_{i=1}^m \frac{\partial \ell}{\partial x_i} = 0, \qquad \sum_{i=1}^m x_i \frac{\partial \ell}{\partial x_i} = 0.$$
#
# In words: the gradient vector $\big(\frac{\partial \ell}{\partial x_1}, \dots, \frac{\partial \ell}{\partial x_m}\big)$
# is orthogonal to $p_0 = (1, \dots, 1)$ and to $p_1 = (x_1, \dots, x_m)$; it lies in
# their *null space*, of dimension $m - 2$.
#
# The paper's backprop equations, with $g_i = \partial \ell/\partial \hat{x}_i = \gamma\, \partial\ell/\partial y_i$:
#
# $$
# \frac{\partial \ell}{\partial \sigma_{\mathcal{B}}}
#   = \sum_i g_i (x_i - \mu_{\mathcal{B}}) \frac{-r}{\sigma_{\mathcal{B}}^2}, \quad
# \frac{\partial \ell}{\partial \mu_{\mathcal{B}}} = \sum_i g_i \frac{-r}{\sigma_{\mathcal{B}}}, \quad
# \frac{\partial \ell}{\partial x_i} = g_i \frac{r}{\sigma_{\mathcal{B}}}
#   + \frac{\partial \ell}{\partial \sigma_{\mathcal{B}}} \frac{x_i - \mu_{\mathcal{B}}}{m \sigma_{\mathcal{B}}}
#   + \frac{\partial \ell}{\partial \mu_{\mathcal{B}}} \frac{1}{m},
# $$
#
# $$
# \frac{\partial \ell}{\partial \gamma} = \sum_i \frac{\partial \ell}{\partial y_i} \hat{x}_i, \qquad
# \frac{\partial \ell}{\partial \beta} = \sum_i \frac{\partial \ell}{\partial y_i}.
# $$
#
# We code them by hand, compare with `mg.norm.kernels.batch_renorm_backward`, and check both
# identities, for a batch of 8 with two channels and an upstream gradient
# $\partial\ell/\partial y$ drawn at random.

# %%
m, C = 8, 2
x = rng.normal([1.0, -2.0], [0.7, 2.5], size=(m, C))
mu, sigma = np.array([0.5, -1.0]), np.array([1.0, 2.0])
gamma, beta = np.array([1.3, 0.8]), np.array([0.0, 0.5])
dl_dy = rng.standard_normal((m, C))

y, cache = K.batch_renorm_forward(x, gamma, beta, mu, sigma, 3.0, 5.0, 0.0)  # eps = 0
dx, dgamma, dbeta = K.batch_renorm_backward(dl_dy, cache)

mu_b, sigma_b = x.mean(axis=0), x.std(axis=0)
r, d = K.per_group(cache.r)[0], K.per_group(cache.d)[0]
x_hat = (x - mu_b) / sigma_b * r + d
g = dl_dy * gamma
dl_dsigma_b = (g * (x - mu_b) * -r / sigma_b**2).sum(axis=0)
dl_dmu_b = (g * -r / sigma_b).sum(axis=0)
dx_paper = g * r / sigma_b + dl_dsigma_b * (x - mu_b) / (m * sigma_b) + dl_dmu_b / m
np.testing.assert_allclose(dx, dx_paper, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(dgamma, (dl_dy * x_hat).sum(axis=0), rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(dbeta, dl_dy.sum(axis=0), rtol=1e-12, atol=1e-12)

print("sum_i dl/dx_i      :", dx.sum(axis=0))
print("sum_i x_i dl/dx_i  :", (x * dx).sum(axis=0))
scale = np.abs(dx).max() * np.abs(x).max() * m
np.testing.assert_allclose(dx.sum(axis=0), 0.0, atol=1e-13 * scale)
np.testing.assert_allclose((x * dx).sum(axis=0), 0.0, atol=1e-13 * scale)

# %% [markdown]
# (With $\epsilon > 0$ the scaling invariance is only approximate: scaling $x$ does not
# scale $\sqrt{\epsilon + \mathrm{var}}$ exactly. Then the first identity still holds but
# $\sum_i x_i \partial \ell/\partial x_i = r\,\epsilon \sum_i g_i (x_i - \mu_{\mathcal{B}}) / \sigma_{\mathcal{B}}^3$,
# which follows from the equations above using $\sum_i (x_i - \mu_{\mathcal{B}})^2 = m(\sigma_{\mathcal{B}}^2 - \epsilon)$.
# Small, but not zero:)

# %%
eps = 0.1
_, cache_eps = K.batch_renorm_forward(x, gamma, beta, mu, sigma, 3.0, 5.0, eps)
dx_eps, _, _ = K.batch_renorm_backward(dl_dy, cache_eps)
sigma_b_eps = np.sqrt(eps + x.var(axis=0))
r_eps = K.per_group(cache_eps.r)[0]
expected = r_eps * eps * (g * (x - mu_b)).sum(axis=0) / sigma_b_eps**3
np.testing.assert_allclose(dx_eps.sum(axis=0), 0.0, atol=1e-13 * scale)
np.testing.assert_allclose((x * dx_eps).sum(axis=0), expected, rtol=1e-9)
print("eps = 0.1: sum_i x_i dl/dx_i =", (x * dx_eps).sum(axis=0), "= r eps S / sigma_B^3 =", expected)

# %% [markdown]
# ### The projection picture
#
# The paper goes further: to get $\partial\ell/\partial x$ from $g = \partial\ell/\partial\hat{x}$,
# *scale $g$ by $r/\sigma_{\mathcal{B}}$, then project it onto the null space of $p_0$ and
# $p_1$*:
#
# $$
# \frac{\partial \ell}{\partial x} = \frac{r}{\sigma_{\mathcal{B}}}\, P g, \qquad
# P = I - A (A^\top A)^{-1} A^\top, \quad A = [\,p_0 \;\; p_1\,] \in \mathbb{R}^{m \times 2}.
# $$
#
# $P$ is the orthogonal projector that removes from a vector its least-squares fit by
# $a\,p_0 + b\,p_1$. (To see why: the bracket in $\partial\ell/\partial x_j =
# \frac{r}{\sigma_{\mathcal{B}}}\big[g_j - \bar{g} - u_j \overline{g u}\big]$, with
# $u_j = (x_j - \mu_{\mathcal{B}})/\sigma_{\mathcal{B}}$, subtracts from $g$ its mean and
# its regression on the centred $u$, which is exactly the least-squares fit on $p_0$ and
# $p_1$.) With $r = \sigma_{\mathcal{B}}/\sigma$ the factor is $1/\sigma$: Batch Renorm's
# backward is the backward of $(x - \mu)/\sigma$, **plus** the projection, and the
# projection is what keeps normalizing with moving averages from blowing up.
#
# We check it with `numpy.linalg`, both as a least-squares residual and as the matrix $P$.

# %%
for c in range(C):
    A = np.stack([np.ones(m), x[:, c]], axis=1)  # columns p0 and p1
    coefficients = np.linalg.lstsq(A, g[:, c], rcond=None)[0]
    residual = g[:, c] - A @ coefficients  # g minus its least-squares fit in span(p0, p1)
    P = np.eye(m) - A @ np.linalg.inv(A.T @ A) @ A.T
    np.testing.assert_allclose(P @ g[:, c], residual, atol=1e-12)
    np.testing.assert_allclose(dx[:, c], r[c] / sigma_b[c] * residual, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)  # a projector ...
    np.testing.assert_allclose(P, P.T, atol=1e-12)  # ... an orthogonal one ...
    assert np.linalg.matrix_rank(P) == m - 2  # ... onto an (m - 2)-dimensional space
print("dl/dx = (r / sigma_B) * P g  holds for both channels")

# %% [markdown]
# Two small cases make this concrete. With $m = 2$ the null space is $\{0\}$: the gradient
# with respect to $x$ is zero, as it must be since the output is always $\pm 1$ (section 2).
# With $m = 3$ the null space of $p_0$ and $p_1$ is a line in $\mathbb{R}^3$, spanned by
# the cross product $p_0 \times p_1$: every gradient that reaches $x$ points along it.

# %%
x2 = np.array([[0.3], [1.7]])
_, cache2 = K.batch_renorm_forward(x2, None, None, np.array([0.0]), np.array([1.0]), 3.0, 5.0, 0.0)
dx2, _, _ = K.batch_renorm_backward(rng.standard_normal((2, 1)), cache2)
np.testing.assert_allclose(dx2, 0.0, atol=1e-14)

x3 = np.array([0.5, 1.0, 2.5])
g3 = np.array([1.0, -0.3, 0.4])
_, cache3 = K.batch_renorm_forward(x3[:, None], None, None, np.array([1.0]), np.array([1.0]), 3.0, 5.0, 0.0)
dx3 = K.batch_renorm_backward(g3[:, None], cache3)[0][:, 0]
p0, p1 = np.ones(3), x3
normal = np.cross(p0, p1) / np.linalg.norm(np.cross(p0, p1))
cosine = dx3 @ normal / np.linalg.norm(dx3)
print("cosine between dl/dx and p0 x p1:", cosine)
np.testing.assert_allclose(abs(cosine), 1.0, atol=1e-12)
r3, sigma_b3 = K.per_group(cache3.r)[0, 0], x3.std()
np.testing.assert_allclose(dx3, r3 / sigma_b3 * (g3 @ normal) * normal, atol=1e-12)

# %%
fig = plt.figure(figsize=(6.5, 6))
ax = fig.add_subplot(projection="3d")
e0 = p0 / np.linalg.norm(p0)
e1 = p1 - (p1 @ e0) * e0
e1 /= np.linalg.norm(e1)
s, t = np.meshgrid(np.linspace(-0.9, 0.9, 2), np.linspace(-0.9, 0.9, 2))
plane = s[..., None] * e0 + t[..., None] * e1
ax.plot_surface(plane[..., 0], plane[..., 1], plane[..., 2], alpha=0.25, color="tab:gray")
in_plane = g3 - (g3 @ normal) * normal
arrows = [
    (g3, "tab:blue", r"$g = \partial\ell/\partial\hat{x}$"),
    (in_plane, "tab:gray", r"removed: fit by $p_0, p_1$"),
    ((g3 @ normal) * normal, "tab:green", r"$P g \propto \partial\ell/\partial x$"),
    (0.8 * e0, "k", r"$p_0$ direction"),
    (0.8 * p1 / np.linalg.norm(p1), "tab:red", r"$p_1$ direction"),
]
for vec, color, label in arrows:
    ax.quiver(0, 0, 0, *vec, color=color, arrow_length_ratio=0.1, lw=2, label=label)
ax.plot(*np.stack([in_plane, g3], axis=1), "k:", lw=1)  # g = (part in the plane) + (part along the normal)
ax.set_xlim(-1, 1)
ax.set_ylim(-1, 1)
ax.set_zlim(-1, 1)
ax.set_xlabel("example 1")
ax.set_ylabel("example 2")
ax.set_zlabel("example 3")
ax.set_title("m = 3: the gradient keeps only the part of g\nnormal to the plane spanned by p0 and p1")
ax.legend(loc="upper left", fontsize=8)
fig.savefig(out / "03_null_space_m3.png", dpi=120)
plt.show()

# %% [markdown]
# ## 6. Clipping and its schedule
#
# Early in training the moving averages are poor estimates and the weights change fast;
# large corrections then hurt ("large gradients were observed to suddenly and severely
# increase the loss", section 4). The paper therefore starts with $r_{\max} = 1$,
# $d_{\max} = 0$, which is plain batchnorm, for 5 000 of its 130 000 steps, then relaxes
# the limits linearly to $d_{\max} = 5$ at 25k steps and $r_{\max} = 3$ at 40k.
# `mg.nn.renorm_schedule()` is that recipe, and `.scaled(total_steps)` shrinks it
# proportionally to a shorter run. Its two halves are plain functions of the step, which
# the layers accept in place of numbers.

# %%
total = 1000
schedule = mg.nn.renorm_schedule().scaled(total_steps=total)
print(schedule)
assert (schedule.warmup_steps, schedule.d_max_ramp_end, schedule.r_max_ramp_end) == (38, 192, 308)  # 5k, 25k, 40k of 130k
steps = np.arange(total + 1)
r_limits = np.array([schedule.r_max(s) for s in steps])
d_limits = np.array([schedule.d_max(s) for s in steps])
assert np.all(r_limits[:39] == 1.0) and np.all(d_limits[:39] == 0.0)  # warm-up: plain batchnorm
assert np.all(r_limits[308:] == 3.0) and np.all(d_limits[192:] == 5.0)
np.testing.assert_allclose(schedule.r_max(173), 1 + 2 * (173 - 38) / (308 - 38))  # linear ramps
np.testing.assert_allclose(schedule.d_max(115), 5 * (115 - 38) / (192 - 38))

fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(steps, r_limits, label=r"$r_{\max}$: $r \in [1/r_{\max}, r_{\max}]$")
ax.plot(steps, d_limits, label=r"$d_{\max}$: $d \in [-d_{\max}, d_{\max}]$")
ax.axvspan(0, schedule.warmup_steps, color="gray", alpha=0.2, label="warm-up (plain batchnorm)")
ax.set_xlabel("training step")
ax.set_title(f"renorm_schedule().scaled(total_steps={total})")
ax.legend()
fig.tight_layout()
fig.savefig(out / "03_renorm_schedule.png", dpi=120)
plt.show()

# %% [markdown]
# Proportional scaling ignores one clock: the moving averages'. With update rate $\Delta$
# they forget their initial values $(\mu, \sigma) = (0, 1)$ as $(1-\Delta)^n \approx e^{-n\Delta}$,
# so they need a few time constants $1/\Delta$ before $r$ and $d$ correct towards anything
# meaningful. The paper's warm-up of 5 000 steps is 50 time constants at $\Delta = 0.01$;
# scaled to 300 steps it becomes 12 steps, an eighth of one. `.scaled(total_steps, momentum=Δ)`
# therefore also makes the warm-up last at least $5/\Delta$ steps (leaving
# $e^{-5} < 1\%$ of the initial values) and starts the ramps after it.

# %%
for rate in (0.01, 0.1):
    fast = mg.nn.renorm_schedule().scaled(total_steps=total, momentum=rate)
    left = (1 - rate) ** fast.warmup_steps  # weight of the initial values at the end of the warm-up
    print(f"Δ = {rate}: warm-up {fast.warmup_steps} steps, initial values weigh {left:.4f} at its end")
    assert fast.warmup_steps == max(schedule.warmup_steps, round(5 / rate)) and left < 0.01
    assert fast.r_max_ramp_end - fast.warmup_steps == schedule.r_max_ramp_end - schedule.warmup_steps  # same ramp
assert (1 - 0.01) ** schedule.warmup_steps > 0.6  # the proportional warm-up at Δ = 0.01: most of (0, 1) remains

# %% [markdown]
# The two ways of shrinking the schedule have names, `"proportional"` and `"time-constants"`,
# and `mg.nn.renorm_schedule_for_run` builds a run's schedule from its length, $\Delta$, the
# rule, and optionally an explicit warm-up, ramp length and final limits. `minigrad train`
# builds its layers' limits with it (`--renorm-warmup-rule`, `--renorm-warmup`, `--renorm-ramp`,
# `--r-max-final`, `--d-max-final`), and `"time-constants"` is its default
# (`mg.norm.DEFAULT_WARMUP_RULE`). An explicit ramp sets $r_{\max}$'s ramp;
# $d_{\max}$'s keeps the paper's proportion, 20k steps for $r_{\max}$'s 35k.

# %%
for rule in ("proportional", "time-constants"):
    built = mg.nn.renorm_schedule_for_run(total, momentum=0.1, rule=rule)
    ends = f"d_max = 5 at {built.d_max_ramp_end}, r_max = 3 at {built.r_max_ramp_end}"
    print(f"{rule:>14}: warm-up {built.warmup_steps}, {ends}")
assert mg.nn.renorm_schedule_for_run(total, momentum=0.1, rule="proportional") == schedule
assert mg.nn.renorm_schedule_for_run(total, momentum=0.1) == mg.nn.renorm_schedule().scaled(total, momentum=0.1)
assert mg.norm.DEFAULT_WARMUP_RULE == "time-constants"
explicit = mg.nn.renorm_schedule_for_run(total, momentum=0.1, warmup=100, ramp=350, r_max_final=2.0)
assert (explicit.warmup_steps, explicit.d_max_ramp_end, explicit.r_max_ramp_end) == (100, 300, 450)

# %% [markdown]
# How much does the clipping actually do? Every Batch Renorm layer records, after each
# training forward, the limits in force and the fraction of its channels whose $r$ and
# $d$ were clipped, plus the range of the unclipped values. `mg.nn.renorm_telemetry(model)`
# collects these records by layer name. We train the small digits CNN of `mg.models` with
# Batch Renorm everywhere (three conv layers and one fully connected layer), on
# **small batches of 8**, for 300 steps with the schedule scaled to 300 steps, and keep
# the telemetry of every step.

# %%
STEPS, BATCH = 300, 8
train_set, test_set = mg.data.load_dataset("digits")
normalize = mg.data.Normalize.fit(train_set)
loader = mg.data.DataLoader(train_set, batch_size=BATCH, transform=normalize, seed=0)
schedule = mg.nn.renorm_schedule().scaled(total_steps=STEPS)
r_sched, d_sched = schedule  # the two limits, as functions of the step
model = mg.models.DigitsCNN(norm="brn", r_max=r_sched, d_max=d_sched, generator=mg.Generator(0))
optimizer = mg.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)

history = []  # one telemetry dict (by layer) per step
batches = loader.batches()
model.train()
for _ in range(STEPS):
    images, labels = next(batches)
    loss = mg.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history.append(mg.nn.renorm_telemetry(model))

layer_names = list(history[0])
print("Batch Renorm layers:", layer_names)
print("telemetry after the last step:")
for name, record in history[-1].items():
    print(f"  {name:14s}", {k: round(v, 3) for k, v in record.items()})

# %% [markdown]
# During the warm-up the limits are $r_{\max} = 1$, $d_{\max} = 0$: every $r$ and every
# $d$ is clipped (to 1 and 0), which is plain batchnorm. As the limits open up, the
# fractions fall quickly; after the ramps only a small fraction of the $r$'s (under 5%) and
# almost none of the $d$'s (under 1%) hit the limits, which is what the paper reports for
# its final limits too ("clipping a small fraction of $r$s, and none of $d$s"). Most
# clipping happens in the
# fully connected layer `head.2`: a convolution channel is normalized over
# 8 images $\times$ the pixels of its feature map, while `head.2` really normalizes over
# only 8 values, so its $\sigma_{\mathcal{B}}/\sigma$ scatters most.

# %%
r_frac = np.array([[h[n]["r_clipped_fraction"] for n in layer_names] for h in history])  # (steps, layers)
d_frac = np.array([[h[n]["d_clipped_fraction"] for n in layer_names] for h in history])
warmup = schedule.warmup_steps
assert np.all(r_frac[:warmup] > 0.99) and np.all(d_frac[:warmup] > 0.99)
late = slice(STEPS - 100, STEPS)  # the last 100 steps, well after the ramps
print(f"last 100 steps: r clipped {r_frac[late].mean():.1%} of channels, d clipped {d_frac[late].mean():.2%}")
assert r_frac[late].mean() < 0.05
assert d_frac[late].mean() < 0.01
ramped = slice(schedule.r_max_ramp_end, STEPS)  # both limits at their final values
clips_per_layer = dict(zip(layer_names, r_frac[ramped].sum(axis=0)))
spread = {
    n: np.mean([h[n]["r_largest_unclipped"] - h[n]["r_smallest_unclipped"] for h in history[ramped]]) for n in layer_names
}
print("after the ramps, r clipped (summed over steps):", {n: round(float(v), 3) for n, v in clips_per_layer.items()})
print("mean spread largest - smallest of the unclipped r:", {n: round(float(v), 3) for n, v in spread.items()})
assert max(clips_per_layer, key=clips_per_layer.get) == "head.2"
assert max(spread, key=spread.get) == "head.2"

model.eval()
test_loader = mg.data.eval_loader(test_set, 500, transform=normalize)
with mg.no_grad():
    correct = sum(int((model(im).argmax(axis=1) == lab).numpy().sum()) for im, lab in test_loader)
print(f"test accuracy in inference mode after {STEPS} steps: {correct / len(test_set):.3f}")
assert correct / len(test_set) > 0.8

fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(r_frac.mean(axis=1), label="fraction of r clipped (mean over layers)")
ax.plot(d_frac.mean(axis=1), label="fraction of d clipped")
ax2 = ax.twinx()
ax2.plot([r_sched(s) for s in range(STEPS)], "k--", lw=1, label=r"$r_{\max}$")
ax2.plot([d_sched(s) for s in range(STEPS)], "k:", lw=1, label=r"$d_{\max}$")
ax2.set_ylabel("limit")
ax.set_xlabel("training step")
ax.set_ylabel("fraction clipped")
ax.set_title("Clipping telemetry, digits CNN with Batch Renorm, batches of 8")
ax.legend(loc="center right")
ax2.legend(loc="upper right")
fig.tight_layout()
fig.savefig(out / "03_clipping_telemetry.png", dpi=120)
plt.show()

# %% [markdown]
# ## Summary
#
# * Batchnorm trains on $(x - \mu_{\mathcal{B}})/\sigma_{\mathcal{B}}$ and infers with
#   $(x - \mu)/\sigma$. The difference is about $1/\sqrt{m}$ standard deviations for i.i.d.
#   batches of $m$, total for $m = 2$, and does not shrink at all when the examples of a
#   batch share something.
# * Batch Renorm multiplies by $r = \sigma_{\mathcal{B}}/\sigma$ and adds
#   $d = (\mu_{\mathcal{B}} - \mu)/\sigma$, clipped, so the training activations *are* the
#   inference activations whenever nothing is clipped.
# * $r$ and $d$ are constants for the gradient. The backward is then batchnorm's, scaled
#   by $r$: the scaled projection of $\partial\ell/\partial\hat{x}$ onto the null space of
#   $(1, \dots, 1)$ and $(x_1, \dots, x_m)$. A finite-difference check of the whole
#   function fails (relative error 1 in the direction $(1, \dots, 1)$); one with $r$ and
#   $d$ held fixed passes.
# * Limits start at plain batchnorm and are relaxed on a schedule; the telemetry shows how
#   often they bite.
#
# Tutorial 05 trains CNNs with both methods on strongly non-i.i.d. batches and shows the
# consequence for test accuracy.
