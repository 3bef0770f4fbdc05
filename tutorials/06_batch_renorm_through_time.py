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
# # Tutorial 6 — Batch Renorm through time
#
# A recurrent network applies the same cell at every timestep. Normalizing inside it (Cooijmans
# et al., *Recurrent Batch Normalization*, 2016) runs into a problem that a feed-forward network
# does not have: the statistics of a pre-activation change with the timestep, so batchnorm has to
# keep separate moving averages for every timestep, and has nothing to offer beyond the longest
# training sequence. The conclusion of the Batch Renorm paper proposes a way out: "Batch
# Renormalization may make it possible to use the same running averages to normalize all
# timesteps, and then update those averages using all timesteps."
#
# This tutorial builds that proposal and checks every step:
#
# 1. why per-timestep batchnorm needs per-timestep statistics;
# 2. what sharing one set of statistics breaks (the train/inference mismatch of `batch-shared`);
# 3. why the corrections $r_t$, $d_t$ repair it (`renorm-shared`);
# 4. the update of the shared averages over the timesteps, derived and checked, and its fixed point;
# 5. an LSTM with each normalization, and a small run of the study `minigrad reproduce --study recurrent`.
#
# It assumes tutorial 3 (Batch Renorm's $r$ and $d$). Every formula is computed and every claim
# asserted: if this notebook runs, its claims hold.

# %%
import json
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minigrad as mg
from minigrad.norm.recurrent import RecurrentNorm
from minigrad.studies import recurrent as study

started = time.perf_counter()
mg.use_backend("numpy")
out = Path(os.environ.get("MINIGRAD_TUTORIAL_OUT", "."))  # where figures go
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
np.set_printoptions(precision=3, suppress=True)


def as_tensor(a):
    return mg.Tensor(np.asarray(a, dtype=np.float64), dtype="float64")


# %% [markdown]
# ## 1. The statistics of a pre-activation move with the timestep
#
# An LSTM computes at every timestep $t$ the pre-activation
# $W_x x_t + W_h h_{t-1} + b$ of its four gates. Recurrent batchnorm normalizes the two terms
# separately, $\mathrm{BN}(W_x x_t) + \mathrm{BN}(W_h h_{t-1}) + b$, and the cell state before its
# output $\tanh$. Take the hidden-to-hidden term $W_h h_{t-1}$ of an LSTM fed the 8x8 digits one
# row per timestep: $h_0 = 0$, and $h_t$ fills up as rows arrive, so the batch statistics
# $\mu_{\mathcal{B},t}$ and $\sigma_{\mathcal{B},t}$ of $W_h h_{t-1}$ depend on $t$.

# %%
x_train, y_train, x_test, y_test = study.digits_sequences(pixels=False)  # (N, 8 rows, 8 pixels)
mg.manual_seed(0)
cell = mg.nn.LSTMCell(8, 16, dtype="float64")
batch = x_train[:64]
h = c = None
sigma_by_step, mu_by_step = [], []
with mg.no_grad():
    for t in range(8):
        state = cell(as_tensor(batch[:, t]), None if h is None else (h, c), t)
        h, c = state
        pre_hh = (h @ cell.weight_hh.T).numpy()  # the term normalized at timestep t + 1
        mu_by_step.append(pre_hh.mean(axis=0))
        sigma_by_step.append(pre_hh.std(axis=0))
sigma_by_step, mu_by_step = np.array(sigma_by_step), np.array(mu_by_step)
ratio = sigma_by_step[-1] / sigma_by_step[0]
print("median over units of sigma_B at t = 8 over sigma_B at t = 1:", np.median(ratio))
assert np.median(ratio) > 1.5  # the spread of W_h h grows as h fills up

# %% [markdown]
# The spread of the same unit's pre-activation grows by more than half over 8 timesteps. Batchnorm in
# training normalizes each timestep with its own $\mu_{\mathcal{B},t}, \sigma_{\mathcal{B},t}$,
# which is fine; at inference it needs moving averages that match each timestep, hence
# Cooijmans et al.'s separate averages $\mu_t, \sigma_t$ per timestep (`norm="batch-per-step"`),
# with the last ones reused for any timestep beyond the longest training sequence. That is
# $T_{\max}$ times the state, and nothing principled past $T_{\max}$.
#
# ## 2. Sharing one set of averages: what breaks
#
# The naive alternative, `norm="batch-shared"`, keeps one $\mu, \sigma$ for all timesteps:
# each timestep is still normalized by its own batch statistics in training, and the averages
# pool all timesteps. At inference every timestep gets $(x - \mu)/\sigma$. For a timestep whose
# statistics differ from the pooled ones the two modes disagree. To see it without a network,
# feed a normalization a sequence whose statistics drift: at timestep $t$ the channel has mean
# $m_t$ and standard deviation $s_t$.

# %%
T, N, C = 6, 32, 3
means_t = np.linspace(-2.0, 2.0, T)[:, None] * np.array([1.0, 0.5, 0.2])  # m_t per channel
stds_t = np.linspace(0.5, 2.0, T)[:, None] * np.ones(C)  # s_t per channel


def drifting_sequence(rng):
    return [rng.normal(means_t[t], stds_t[t], (N, C)) for t in range(T)]


def train_and_compare(mode, sequences=300, **options):
    """Train a normalization on drifting sequences; return mean |train - inference| per timestep on a new one."""
    norm = RecurrentNorm(C, mode, max_steps=T, momentum=0.1, weight_init=1.0, dtype="float64", **options)
    local = np.random.default_rng(1)
    for _ in range(sequences):
        with norm.sequence(), mg.no_grad():
            for t, x in enumerate(drifting_sequence(local)):
                norm(as_tensor(x), t)
    probe = drifting_sequence(local)
    norm.eval()  # inference first: the training pass below updates the averages when it ends
    with mg.no_grad():
        eval_out = [norm(as_tensor(x), t).numpy() for t, x in enumerate(probe)]
    norm.train()
    with norm.sequence(), mg.no_grad():
        train_out = [norm(as_tensor(x), t).numpy() for t, x in enumerate(probe)]
    return norm, np.array([np.abs(a - b).mean() for a, b in zip(train_out, eval_out)])


_, gap_shared = train_and_compare("batch-shared")
_, gap_per_step = train_and_compare("batch-per-step")
print("batch-shared   |train - inference| per timestep:", gap_shared)
print("batch-per-step |train - inference| per timestep:", gap_per_step)
assert gap_shared.mean() > 3 * gap_per_step.mean()

# %% [markdown]
# Per-timestep averages track each timestep, and the mismatch is only the batch noise (of order
# $1/\sqrt{m}$: about 0.15 for $m$ = 32 examples). Shared averages are wrong for every timestep but
# the "average" one, by up to the whole drift: four times the noise here, more for a longer drift.
#
# ## 3. Why $r_t$ and $d_t$ fix it
#
# `renorm-shared` keeps the shared $\mu, \sigma$ and applies Batch Renorm at every timestep:
#
# $$
# r_t = \mathrm{clip}_{[1/r_{\max}, r_{\max}]}\!\left(\frac{\sigma_{\mathcal{B},t}}{\sigma}\right), \qquad
# d_t = \mathrm{clip}_{[-d_{\max}, d_{\max}]}\!\left(\frac{\mu_{\mathcal{B},t} - \mu}{\sigma}\right), \qquad
# \hat{x}_{t,i} = \frac{x_{t,i} - \mu_{\mathcal{B},t}}{\sigma_{\mathcal{B},t}}\, r_t + d_t,
# $$
#
# with $r_t, d_t$ constants in the gradient. Where neither is clipped,
#
# $$
# \hat{x}_{t,i} = \frac{x_{t,i} - \mu_{\mathcal{B},t}}{\sigma} + \frac{\mu_{\mathcal{B},t} - \mu}{\sigma}
# = \frac{x_{t,i} - \mu}{\sigma},
# $$
#
# the inference output, at *every* timestep, whatever that timestep's own statistics: the
# per-timestep differences go into $r_t$ and $d_t$ instead of into separate averages. The
# gradient still sees the batch normalization (through $\mu_{\mathcal{B},t}$, $\sigma_{\mathcal{B},t}$),
# which is what keeps training stable. With generous limits, the mismatch is zero to rounding:

# %%
renorm, gap_renorm = train_and_compare("renorm-shared", r_max=10.0, d_max=10.0)
print("renorm-shared  |train - inference| per timestep:", gap_renorm)
assert gap_renorm.max() < 1e-12
print("corrections of the probe sequence, r_t (channel 0):", [float(r[0]) for r, _ in renorm.last_corrections])
print("                                   d_t (channel 0):", [float(d[0]) for _, d in renorm.last_corrections])
seen = renorm.telemetry  # the range of the unclipped corrections over every (timestep, channel)
assert seen["r_smallest_unclipped"] > 1 / 3 and seen["r_largest_unclipped"] < 3
assert seen["d_smallest_unclipped"] > -5 and seen["d_largest_unclipped"] < 5

# %% [markdown]
# With the paper's final limits $r_{\max} = 3$, $d_{\max} = 5$ the drift here stays inside them
# too; with tight limits the corrections saturate at the timesteps farthest from the pooled
# statistics, and there training departs from inference again, by exactly the clipped part.
# The layer's telemetry counts how often that happens, over every (timestep, channel):

# %%
tight, gap_tight = train_and_compare("renorm-shared", r_max=1.5, d_max=0.5)
print("r_max = 1.5, d_max = 0.5: |train - inference| per timestep:", gap_tight)
print("clipping:", {k: round(v, 3) for k, v in tight.telemetry.items()})
assert tight.telemetry["d_clipped_fraction"] > 0 and gap_tight.max() > 1e-3
assert gap_tight.mean() < gap_shared.mean()  # still closer than no correction at all

# %% [markdown]
# ## 4. The update over timesteps
#
# In a training sequence every timestep reads the same $\mu, \sigma$ (those from before the
# sequence), so that all $r_t, d_t$ refer to one reference. When the sequence ends, the
# averages are updated once, from all $T$ timesteps:
#
# $$
# \mu \leftarrow \mu + \Delta\Big(\tfrac{1}{T}\textstyle\sum_t \mu_{\mathcal{B},t} - \mu\Big), \qquad
# \sigma \leftarrow \sigma + \Delta\Big(\tfrac{1}{T}\textstyle\sum_t \sigma_{\mathcal{B},t} - \sigma\Big).
# $$
#
# This is the ghost-batch rule of Batch Renorm with the timesteps as the groups: each
# timestep's batch counts once, and one update per training step keeps $\Delta$'s meaning
# (how many steps the averages remember) independent of $T$. The alternative, $T$ updates per
# sequence, would make the averages forget $T$ times faster and weight the last timesteps most.
#
# Check one update against the formula, with statistics computed here:

# %%
norm = RecurrentNorm(C, "renorm-shared", momentum=0.3, dtype="float64")
mu0, sigma0 = np.array([0.5, -0.2, 0.1]), np.array([1.5, 0.8, 1.0])
norm.running_mean, norm.running_std = mu0.copy(), sigma0.copy()
sequence = drifting_sequence(rng)
with norm.sequence(), mg.no_grad():
    for t, x in enumerate(sequence):
        norm(as_tensor(x), t)
        assert np.array_equal(norm.running_mean, mu0)  # read only during the sequence
mu_bt = np.array([x.mean(axis=0) for x in sequence])
sigma_bt = np.array([np.sqrt(norm.eps + x.var(axis=0)) for x in sequence])
np.testing.assert_allclose(norm.running_mean, mu0 + 0.3 * (mu_bt.mean(axis=0) - mu0), rtol=1e-12)
np.testing.assert_allclose(norm.running_std, sigma0 + 0.3 * (sigma_bt.mean(axis=0) - sigma0), rtol=1e-12)
print("one update, mu:", norm.running_mean, " sigma:", norm.running_std)

# %% [markdown]
# **The fixed point.** Averaged over sequences, the update stops moving when
# $\mu = \frac{1}{T}\sum_t \mathbb{E}[\mu_{\mathcal{B},t}] = \bar m$ and
# $\sigma = \frac{1}{T}\sum_t \mathbb{E}[\sigma_{\mathcal{B},t}] \approx \bar s$: the mean of the
# timesteps' means and the mean of their standard deviations. Note that $\sigma$ is *not* the
# standard deviation of all timesteps pooled, $\sqrt{\frac1T\sum_t (s_t^2 + (m_t - \bar m)^2)}$,
# which also counts the drift of the means; that drift is $d_t$'s job. So $r_t$ is close to 1 on
# average over $t$ and $d_t$ averages to 0: the corrections stay as small as a shared reference
# allows, which is what makes them likely to stay inside $r_{\max}, d_{\max}$.

# %%
fixed, _ = train_and_compare("renorm-shared", sequences=400, r_max=10.0, d_max=10.0)
m_bar, s_bar = means_t.mean(axis=0), stds_t.mean(axis=0)
pooled = np.sqrt((stds_t**2 + (means_t - m_bar) ** 2).mean(axis=0))
print("running mean:", fixed.running_mean, " expected:", m_bar)
print("running std: ", fixed.running_std, " expected:", s_bar, " (pooled std would be", pooled, ")")
np.testing.assert_allclose(fixed.running_mean, m_bar, atol=0.1)
np.testing.assert_allclose(fixed.running_std, s_bar, rtol=0.05)
assert (pooled > 1.1 * s_bar)[0]
r_t = np.array([r for r, _ in fixed.last_corrections])
d_t = np.array([d for _, d in fixed.last_corrections])
print("mean over t of r_t:", r_t.mean(axis=0), " of d_t:", d_t.mean(axis=0))
np.testing.assert_allclose(d_t.mean(axis=0), 0.0, atol=0.15)

# %% [markdown]
# ## 5. Inside an LSTM, and the study
#
# `mg.nn.LSTM(input_size, hidden_size, norm=...)` puts one such normalization on each of the
# three places of recurrent batchnorm, with $\gamma = 0.1$ as Cooijmans et al. recommend. The
# cost in state differs by a factor $T_{\max}$:

# %%
for mode in ("none", "layer", "batch-per-step", "batch-shared", "renorm-shared"):
    lstm = mg.nn.LSTM(8, 32, batch_first=True, norm=mode, max_steps=8)
    output, (h_n, c_n) = lstm(mg.Tensor(x_train[:16].astype(np.float32)))
    print(f"{mode:>15}: output {output.shape}, running statistics kept: {lstm.state_size()}")
assert mg.nn.LSTM(8, 32, norm="batch-per-step", max_steps=8).state_size() == 8 * lstm.state_size()

# %% [markdown]
# The study `minigrad reproduce --study recurrent` trains this LSTM with every normalization on
# sequential digits (by rows and by pixels), the adding problem (trained at length $T$, tested at
# $T$, $2T$ and $4T$), batches of 4 and single-label batches, and reports test metrics in inference
# mode, the train/inference gap, divergences and the state. Here is a small run of two of its
# tasks (one seed, a few dozen steps: enough to draw the figures, too little to rank the methods;
# the full study's numbers are in the project's results):

# %%
config = study.StudyConfig(
    out=str(out / "06_study"), seeds=1, quick=True, progress=False, steps={"adding": 80, "digits-rows-single-label": 80}
)
result = study.run_study(config, log=None, tasks=["adding", "digits-rows-single-label"])
summary = result.document["summary"]
print((out / "06_study" / "results.md").read_text())
for mode in ("none", "layer"):  # no batch statistics: training mode and inference agree exactly
    assert abs(summary[f"adding|{mode}"]["gap"]["mean"]) < 1e-6
assert set(result.document["figures"]) >= {"length-generalization", "train-inference-gap"}
print(json.dumps(result.document["figures"], indent=1))

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
for ax, name in zip(axes, ("length-generalization.png", "train-inference-gap.png")):
    ax.imshow(plt.imread(out / "06_study" / name))
    ax.axis("off")
fig.tight_layout()
fig.savefig(out / "06_study_figures.png", dpi=100)
plt.show()
assert (out / "06_study_figures.png").stat().st_size > 0

# %% [markdown]
# The same study in full, from a shell (3 seeds; about half an hour on 2 CPU cores):
#
# ```bash
# minigrad reproduce --study recurrent --seeds 3 --out runs/recurrent
# minigrad reproduce --study recurrent --quick          # every arm, a few steps: under a minute
# ```
#
# ## Summary
#
# * Batch statistics of a recurrent pre-activation move with the timestep, so batchnorm needs
#   moving averages per timestep ($T_{\max}$ times the state, and none past $T_{\max}$).
# * Sharing one set of averages without correction makes training and inference disagree at
#   every timestep whose statistics differ from the pooled ones.
# * Batch Renorm's $r_t, d_t$ map each timestep's batch normalization onto the shared one: where
#   unclipped, training computes exactly the inference output; the clipping telemetry says where not.
# * The shared averages are updated once per sequence with the means over timesteps of
#   $\mu_{\mathcal{B},t}$ and $\sigma_{\mathcal{B},t}$; they settle at the mean of the timesteps'
#   means and standard deviations, which keeps $d_t$ centred on 0 and $r_t$ near 1.

# %%
print(f"this notebook ran in {time.perf_counter() - started:.0f} s")
