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
# # Tutorial 5 — Training a CNN with Batch Renorm
#
# Tutorial 03 showed, on a single layer, that batchnorm computes different activations in
# training (batch statistics) and at inference (moving averages), and that the gap does not
# shrink when the examples of a batch have something in common. Here we train whole
# convolutional networks and look at the consequence the paper reports in its section 4.3:
# trained on **non-i.i.d. minibatches**, a batchnorm model classifies well only when it is
# evaluated the way it was trained (with batch statistics, on batches composed like the
# training batches), and a Batch Renorm model does not have that problem.
#
# Sections 1 to 3 run on a CPU, on scikit-learn's 8x8 digits:
#
# 1. the data, and two ways to fill a minibatch (i.i.d. and single-label);
# 2. the pieces of a training loop, written by hand: `mg.data`, `mg.models`, `mg.optim`,
#    and the clipping telemetry of Batch Renorm at every step;
# 3. the same loop in one call, `minigrad.train.train(TrainConfig(...))`, for a controlled
#    comparison of BatchNorm and Batch Renorm, read back from `metrics.jsonl`;
# 4. the same code on CIFAR-10 on a GPU (`backend="cupy"`), and on the command line.
#
# Every number quoted is checked by an `assert`.
#
# **Running it.** `python tutorials/05_training_a_cnn_with_batch_renorm.py` runs every cell
# as a script. To get a notebook: `pip install jupytext notebook && jupytext --to notebook
# tutorials/05_training_a_cnn_with_batch_renorm.py`. On Colab, upload the `.ipynb`, make the
# minigrad repository available in the runtime and `pip install -e` it with the `train`
# extra (and the `gpu` extra on a GPU runtime, for section 4), then run the cells in order.

# %%
import json
import os
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minigrad as mg
from minigrad.train import TrainConfig, train

mg.use_backend("numpy")  # sections 1-3 run on the CPU; section 4 asks for CuPy in its configuration
here = Path(__file__).parent if "__file__" in globals() else Path()  # a script, or a notebook in tutorials/
out = Path(os.environ.get("MINIGRAD_TUTORIAL_OUT", here / "output"))  # figures and run folders (git ignores it)
out.mkdir(parents=True, exist_ok=True)
started = time.perf_counter()

# %% [markdown]
# ## 1. The data, and two ways to fill a minibatch
#
# `mg.data.load_dataset("digits")` returns a training and a test `Dataset` of 8x8 grey
# images (N, 1, 8, 8) with labels 0-9. `Normalize.fit` measures the mean and standard
# deviation of the training pixels; applied to a batch, it standardizes it.

# %%
train_set, test_set = mg.data.load_dataset("digits")
normalize = mg.data.Normalize.fit(train_set)
print(f"train: {len(train_set)} images of shape {train_set.image_shape}, test: {len(test_set)}")
print(f"{train_set.num_classes} classes; pixel mean {normalize.mean[0]:.3f}, std {normalize.std[0]:.3f}")
assert train_set.image_shape == (1, 8, 8) and train_set.num_classes == 10
assert len(train_set) + len(test_set) == 1797
standardized = normalize(train_set.images)
np.testing.assert_allclose([standardized.mean(), standardized.std()], [0.0, 1.0], atol=1e-4)

# %% [markdown]
# A **sampler** decides which examples form each batch; a `DataLoader` gathers them,
# applies the transform and hands out `(images, labels)` tensors.
#
# * `IIDSampler`: a fresh random permutation every epoch, cut into batches: the usual
#   i.i.d. regime.
# * `NonIIDSampler(labels, batch_size, examples_per_label=k)`: each batch holds
#   `batch_size / k` labels drawn at random, and `k` different examples of each. The paper
#   used $k = 2$ (16 labels $\times$ 2 images in a batch of 32, as in metric learning). We use
#   the extreme $k = 32$: **every batch holds 32 images of a single digit**. That makes the
#   effect large enough to see clearly in a one-minute run on a small data set.

# %%
BATCH = 32
iid_sampler = mg.data.IIDSampler(train_set.labels, BATCH, seed=0)
single_label_sampler = mg.data.NonIIDSampler(train_set.labels, BATCH, examples_per_label=BATCH, seed=0)

iid_batch = next(iter(iid_sampler))  # indices of the first batch
single_batch = next(iter(single_label_sampler))
print("labels of an i.i.d. batch      :", train_set.labels[iid_batch])
print("labels of a single-label batch :", train_set.labels[single_batch])
assert len(set(train_set.labels[iid_batch].tolist())) >= 5
assert len(set(train_set.labels[single_batch].tolist())) == 1  # one digit ...
assert len(set(single_batch.tolist())) == BATCH  # ... 32 different images of it

fig, axes = plt.subplots(2, 12, figsize=(10, 2.2))
for row, (name, batch) in enumerate((("i.i.d.", iid_batch), ("single-label", single_batch))):
    for col in range(12):
        axes[row, col].imshow(train_set.images[batch[col], 0], cmap="gray_r")
        axes[row, col].set_xticks([])
        axes[row, col].set_yticks([])
    axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
fig.suptitle("The first 12 images of a batch from each sampler")
fig.savefig(out / "05_batches.png", dpi=120, bbox_inches="tight")
plt.show()

# %% [markdown]
# Why is a single-label batch a problem for batchnorm? In training mode each channel is
# normalized with the mean and spread of *this batch*, which is all one digit. Whatever
# distinguishes a "3" from a "7" in the average activation of a channel is subtracted away,
# and the network learns to classify from what remains: how each image differs from the
# other images of its batch. At inference time the moving averages are computed over
# batches of *all* digits, so the subtracted mean is no longer the digit's own: every
# activation arrives shifted by an amount the network never saw during training.
#
# ## 2. The pieces: a training loop by hand
#
# We train Batch Renorm on the single-label batches, with every part spelled out:
#
# * the model `mg.models.DigitsCNN(norm="brn", global_pool=True)`: three 3x3 convolutions,
#   each followed by a `BatchRenorm2d` layer and a ReLU, with a max-pooling after the
#   second, then global average pooling and a linear layer to 10 logits. (`norm="bn"` gives the same
#   network with `BatchNorm2d`, the same initial weights for the same generator seed.)
#   The normalization options apply to every norm layer: `momentum` is the update rate
#   $\Delta$ of the moving averages, and `r_max`, `d_max` are the paper's schedule, shrunk to
#   our run length by minigrad's default rule (`renorm_schedule_for_run`, tutorial 03): a
#   warm-up of at least $5/\Delta$ steps, then the paper's ramps scaled to the run.
# * SGD with Nesterov momentum 0.9, learning rate 0.05 and weight decay $5 \cdot 10^{-4}$,
#   with the learning rate following half a cosine from 0.05 to 0 (`CosineAnnealing`).
# * the loop: forward, cross-entropy loss, `zero_grad`, `backward`, optimizer step,
#   learning-rate step; and after every step, `mg.nn.renorm_telemetry(model)`, the record of
#   how much each Batch Renorm layer clipped $r$ and $d$.
#
# About `momentum=0.1`: Batch Renorm *uses* the moving averages while training, and the
# paper asks for "a fairly high rate of update" so that they follow the weights rather than
# lag behind them. 0.1 is minigrad's default everywhere (`mg.norm.DEFAULT_MOMENTUM`: the layers,
# `minigrad train`, `minigrad reproduce`); we name it here so that both arms visibly share it.

# %%
STEPS, LR, NORM_MOMENTUM, SEED = 1000, 0.05, mg.norm.DEFAULT_MOMENTUM, 0

# a fresh sampler (the one above has already handed out a batch), seeded like train()'s
sampler = mg.data.NonIIDSampler(train_set.labels, BATCH, examples_per_label=BATCH, seed=SEED)
loader = mg.data.DataLoader(train_set, sampler=sampler, transform=normalize, seed=SEED)
test_loader = mg.data.eval_loader(test_set, 500, transform=normalize)  # in order, batches of 500
schedule = mg.nn.renorm_schedule_for_run(STEPS, momentum=NORM_MOMENTUM)  # what train() builds too
model = mg.models.DigitsCNN(
    norm="brn",
    global_pool=True,
    momentum=NORM_MOMENTUM,
    r_max=schedule.r_max,
    d_max=schedule.d_max,
    generator=mg.Generator(SEED),
)
optimizer = mg.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
lr_schedule = mg.optim.LRScheduler(optimizer, mg.optim.CosineAnnealing(STEPS, min_factor=0.0))
for name, module in model.named_modules():  # the layers (print(model) shows every option)
    if not list(module.children()):
        size = f"({module.num_features})" if hasattr(module, "num_features") else f"({module.extra_repr()})"
        print(f"{name:16s} {type(module).__name__}{size}")


def test_accuracy(model):
    """Accuracy on the test set in inference mode (moving averages), one image at a time in effect."""
    model.eval()
    correct = 0
    with mg.no_grad():  # no graph needed for evaluation
        for images, labels in test_loader:
            correct += int((model(images).argmax(axis=1) == labels).numpy().sum())
    model.train()
    return correct / len(test_set)


losses, telemetry, checkpoints = [], [], {}
batches = loader.batches()  # batches forever, epoch after epoch
model.train()
for step in range(1, STEPS + 1):
    images, labels = next(batches)
    loss = mg.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    lr_schedule.step()
    losses.append(loss.item())
    telemetry.append(mg.nn.renorm_telemetry(model))
    if step % 200 == 0:
        checkpoints[step] = test_accuracy(model)
        print(f"step {step:4d}  loss {np.mean(losses[-50:]):.3f}  test accuracy (inference) {checkpoints[step]:.3f}")

assert optimizer.lr < 1e-6  # the cosine has come down to 0
assert np.mean(losses[-100:]) < 0.5 * np.mean(losses[:100])
assert checkpoints[STEPS] > 0.9

# %% [markdown]
# ### What the clipping telemetry says
#
# Each entry of `telemetry` maps a layer name to its record for that step: the limits in
# force (`r_limit`, `d_limit`), the fraction of channels whose $r$ or $d$ was clipped
# (`r_clipped`, `d_clipped`), and the range of the unclipped values $\sigma_{\mathcal{B}}/\sigma$
# (`r_min`, `r_max`) and $(\mu_{\mathcal{B}} - \mu)/\sigma$ (`d_min`, `d_max`).

# %%
names = list(telemetry[0])
print("Batch Renorm layers:", names)
print("last step:", {k: round(v, 3) for k, v in telemetry[-1][names[-1]].items()})
r_clipped = np.array([[t[n]["r_clipped_fraction"] for n in names] for t in telemetry])  # (steps, layers)
d_clipped = np.array([[t[n]["d_clipped_fraction"] for n in names] for t in telemetry])
r_low = np.array([min(t[n]["r_smallest_unclipped"] for n in names) for t in telemetry])
r_high = np.array([max(t[n]["r_largest_unclipped"] for n in names) for t in telemetry])
d_low = np.array([min(t[n]["d_smallest_unclipped"] for n in names) for t in telemetry])
d_high = np.array([max(t[n]["d_largest_unclipped"] for n in names) for t in telemetry])
r_limit = np.array([t[names[0]]["r_limit"] for t in telemetry])
d_limit = np.array([t[names[0]]["d_limit"] for t in telemetry])

warm = schedule.warmup_steps
after = slice(schedule.r_max_ramp_end, STEPS)  # both limits at their final values
print(f"warm-up ({warm} steps): r clipped {r_clipped[:warm].mean():.0%}, d clipped {d_clipped[:warm].mean():.0%}")
print(f"after the ramps: r clipped {r_clipped[after].mean():.2%}, d clipped {d_clipped[after].mean():.2%}")
print(f"after the ramps: r in [{r_low[after].min():.2f}, {r_high[after].max():.2f}], ", end="")
print(f"d in [{d_low[after].min():.2f}, {d_high[after].max():.2f}]")
assert r_clipped[:warm].min() > 0.99 and d_clipped[:warm].min() > 0.99  # r_max = 1, d_max = 0: plain batchnorm
assert r_clipped[after].mean() < 0.01 and d_clipped[after].mean() < 0.01
assert r_low[after].min() > 1 / 3 and r_high[after].max() < 3 and np.abs([d_low[after], d_high[after]]).max() < 5

# %% [markdown]
# During the warm-up the limits are $r_{\max} = 1$ and $d_{\max} = 0$, so every $r$ and $d$
# is clipped: that is plain batchnorm, as the paper prescribes for the start of training.
# Once the limits open up, the corrections that the batches ask for stay well inside them,
# so (almost) nothing is clipped: each training activation is the inference activation.
# The figure shows both views.

# %%
steps = np.arange(1, STEPS + 1)
fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(14, 3.6))
ax0.plot(steps, r_clipped.mean(axis=1), label="r clipped")
ax0.plot(steps, d_clipped.mean(axis=1), label="d clipped")
ax0.set_xscale("log")
ax0.set_xlabel("training step")
ax0.set_ylabel("fraction of channels (mean over layers)")
ax0.set_title("Clipping")
ax0.legend()
ax1.fill_between(steps, r_low, r_high, alpha=0.4, label=r"range of $\sigma_B/\sigma$ over channels")
ax1.plot(steps, r_limit, "k--", lw=1, label=r"$r_{\max}$ and $1/r_{\max}$")
ax1.plot(steps, 1 / r_limit, "k--", lw=1)
ax1.set_xscale("log")
ax1.set_xlabel("training step")
ax1.set_title("r before clipping")
ax1.legend(fontsize=8)
ax2.fill_between(steps, d_low, d_high, alpha=0.4, color="tab:orange", label=r"range of $(\mu_B-\mu)/\sigma$")
ax2.plot(steps, d_limit, "k--", lw=1, label=r"$\pm d_{\max}$")
ax2.plot(steps, -d_limit, "k--", lw=1)
ax2.set_xscale("log")
ax2.set_xlabel("training step")
ax2.set_title("d before clipping")
ax2.legend(fontsize=8)
fig.suptitle("Batch Renorm telemetry, digits CNN, single-label batches of 32")
fig.tight_layout()
fig.savefig(out / "05_clipping_telemetry.png", dpi=120)
plt.show()

# %% [markdown]
# ## 3. BatchNorm against Batch Renorm with `train(TrainConfig(...))`
#
# `minigrad.train.train` runs the loop above from a `TrainConfig` and adds evaluation,
# logging and checkpoints. For the options we give it, it builds the same model with the
# same initial weights, the same sampler, optimizer and schedules: we check below that its
# Batch Renorm run takes the same first 100 steps as our loop, loss for loss. A run writes
# into its folder `out`:
#
# * `config.json`, every option of the run;
# * `metrics.jsonl`, one JSON line per training step (`"kind": "train"`: loss, batch accuracy,
#   learning rate) and one per evaluation (`"kind": "eval"`);
# * `checkpoint.npz`, from which `resume=True` continues an interrupted run exactly.
#
# Each evaluation measures three accuracies:
#
# * `test_accuracy`: the test set in inference mode, the number that matters;
# * `train_accuracy_inference`: training images (here a subset of 500) in inference mode;
# * `test_accuracy_batch_stats` (with `eval_batch_stats=True`): the paper's diagnostic.
#   Test batches are composed like the training batches (here: single-label batches of 32
#   test images) and every normalization layer uses *their* batch statistics, i.e. runs in
#   training mode, while its moving averages are left untouched.
#
# Three runs, identical except for the normalization and the sampler: BatchNorm on i.i.d.
# batches (a control run, shorter because i.i.d. training is quick), then BatchNorm and
# Batch Renorm on single-label batches. A run refuses to overwrite a folder that holds one,
# so we clear ours first.

# %%
# the batches of the batch-statistics evaluation: test images, composed like the training batches
stats_batches = mg.data.sampled_eval_loader(test_set, sampler, BATCH, transform=normalize, seed=SEED)
_, stats_labels = next(iter(stats_batches))
assert len(set(stats_labels.numpy().tolist())) == 1

runs_dir = out / "runs"


def run(name, **options):
    folder = runs_dir / name
    shutil.rmtree(folder, ignore_errors=True)  # start afresh when the notebook is re-run
    config = TrainConfig(
        model="digits_gap_cnn",  # DigitsCNN(global_pool=True)
        batch_size=BATCH,
        lr=LR,
        norm_momentum=NORM_MOMENTUM,
        eval_every=100,
        eval_batch_stats=True,
        train_eval_examples=500,
        seed=SEED,
        progress=False,
        out=str(folder),
        **options,
    )
    result = train(config, log=None)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return result, records


results = {
    "bn-iid": run("digits-bn-iid", norm="bn", sampler="iid", steps=300),
    "bn-single": run("digits-bn-single-label", norm="bn", sampler="noniid", examples_per_label=BATCH, steps=STEPS),
    "brn-single": run("digits-brn-single-label", norm="brn", sampler="noniid", examples_per_label=BATCH, steps=STEPS),
}
print(sorted(p.name for p in (runs_dir / "digits-brn-single-label").iterdir()))
for result, records in results.values():
    assert {"config.json", "metrics.jsonl", "checkpoint.npz"} <= {p.name for p in Path(result.out).iterdir()}
    n_steps = json.loads((Path(result.out) / "config.json").read_text())["steps"]
    assert sum(r["kind"] == "train" for r in records) == n_steps
    assert sum(r["kind"] == "eval" for r in records) == n_steps // 100

# train() repeats our hand-written loop: same initial weights, same batches, same updates
brn_losses = [r["loss"] for r in results["brn-single"][1] if r["kind"] == "train"]
np.testing.assert_allclose(brn_losses[:100], losses[:100], rtol=1e-5)

print(f"{'run':12s} {'test (inference)':>17s} {'test (batch stats)':>19s} {'train (inference)':>18s} {'time':>6s}")
for name, (result, _) in results.items():
    print(
        f"{name:12s} {result.test_accuracy:17.3f} {result.test_accuracy_batch_stats:19.3f}"
        f" {result.train_accuracy_inference:18.3f} {result.wall_time:5.1f}s"
    )

# %% [markdown]
# Read the table row by row.
#
# * **BatchNorm, i.i.d. batches** (the control): inference and batch-statistics accuracy
#   agree to within a few points. With i.i.d. batches of 32, the moving averages are a good
#   stand-in for the batch statistics.
# * **BatchNorm, single-label batches**: evaluated with batch statistics on single-label
#   test batches, the model is (nearly) perfect, but in inference mode, the way a model is
#   actually used, it falls far behind. Its accuracy on its own *training* images in
#   inference mode is low too: as the paper observes, it has not overfitted to particular
#   images but to the composition of its batches. (With batch statistics the task is also
#   easier than it looks: the statistics of a single-label batch say which digit all 32
#   images are.)
# * **Batch Renorm, single-label batches**: the inference accuracy is as high as the
#   batch-statistics one, and higher than batchnorm's inference accuracy. The network was
#   trained on the activations it sees at inference.
#
# (The runs are seeded, but floating-point sums can differ in the last bit between
# machines, and such differences grow during training; so the assertions below test the
# effect with margins, which we chose after running several seeds, rather than exact
# numbers.)

# %%
bn_iid, bn_single, brn_single = (results[k][0] for k in ("bn-iid", "bn-single", "brn-single"))
gap = {k: r.test_accuracy_batch_stats - r.test_accuracy for k, r in ((k, v[0]) for k, v in results.items())}
print("batch-statistics accuracy minus inference accuracy:", {k: round(v, 3) for k, v in gap.items()})

assert bn_iid.test_accuracy > 0.9 and abs(gap["bn-iid"]) < 0.05  # the control: no mismatch
assert bn_single.test_accuracy_batch_stats > 0.95  # BN is right when evaluated as it was trained ...
assert gap["bn-single"] > 0.08  # ... and falls behind in inference mode
assert gap["brn-single"] < 0.04  # Batch Renorm does not fall behind
assert brn_single.test_accuracy > 0.9
assert brn_single.test_accuracy > bn_single.test_accuracy + 0.03
assert brn_single.train_accuracy_inference > bn_single.train_accuracy_inference + 0.03

# %% [markdown]
# ### Accuracy and loss against the step, from `metrics.jsonl`
#
# The same runs, read back from their `metrics.jsonl` files: solid lines are inference mode,
# dashed lines batch statistics. The circles are the hand-written loop of section 2, on the
# Batch Renorm run's line.
#
# Early on, every model is poor in every mode: a batch of a single digit pulls the output
# layer towards that digit, and while the learning rate is large the network mostly predicts
# the digits it saw last. Note also the training loss (right): batchnorm's is *lower* than
# Batch Renorm's. It is measured in training mode, on the batch statistics, where the
# composition of the batch helps; it says nothing about inference.

# %%
colors = {"bn-iid": "tab:gray", "bn-single": "tab:blue", "brn-single": "tab:orange"}
labels = {"bn-iid": "BatchNorm, i.i.d.", "bn-single": "BatchNorm, single-label", "brn-single": "Batch Renorm, single-label"}
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4))
for name, (_, records) in results.items():
    evals = [r for r in records if r["kind"] == "eval"]
    x = [r["step"] for r in evals]
    ax0.plot(x, [r["test_accuracy"] for r in evals], "-", color=colors[name], label=labels[name] + " (inference)")
    ax0.plot(x, [r["test_accuracy_batch_stats"] for r in evals], "--", color=colors[name], label="... batch statistics")
    train_losses = np.array([r["loss"] for r in records if r["kind"] == "train"])
    smooth = np.convolve(train_losses, np.ones(20) / 20, mode="valid")
    ax1.plot(np.arange(20, len(train_losses) + 1), smooth, color=colors[name], label=labels[name])
ax0.plot(list(checkpoints), list(checkpoints.values()), "o", color="tab:orange", mfc="none", label="hand-written loop")
ax0.set_xlabel("training step")
ax0.set_ylabel("test accuracy")
ax0.set_ylim(0, 1.02)
ax0.legend(fontsize=7, loc="lower right")
ax1.set_yscale("log")
ax1.set_xlabel("training step")
ax1.set_ylabel("training loss (mean of 20 steps)")
ax1.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out / "05_accuracy_vs_step.png", dpi=120)
plt.show()

final_loss = {k: np.mean([r["loss"] for r in v[1] if r["kind"] == "train"][-100:]) for k, v in results.items()}
print("mean training loss over the last 100 steps:", {k: round(float(v), 3) for k, v in final_loss.items()})
assert final_loss["bn-single"] < final_loss["brn-single"]

# %% [markdown]
# ## 4. The same code on CIFAR-10, on a GPU
#
# Nothing above is specific to digits or to the CPU. `backend="cupy"` runs every array
# operation with CuPy on the GPU (install the extra: `pip install -e ".[gpu]"`), and
# `dataset="cifar10"` loads CIFAR-10: `data` may be the python-format archive
# `cifar-10-python.tar.gz`, its extracted folder, or an image folder (or tar of one) with
# `train/` and `test/`; without `data`, `download=True` fetches the archive (checked
# against its MD5) into `$MINIGRAD_DATA` or `~/.cache/minigrad`. The model is `cifar_cnn` (five convolutions),
# and random crops and flips are on by default.
#
# The test suite runs this notebook on a CPU, where the cell below only checks that the
# configurations are valid; the training runs need a CUDA device. Set `MINIGRAD_CIFAR10`
# to your copy of the data, or leave it unset to download.

# %%
cifar_data = os.environ.get("MINIGRAD_CIFAR10")  # None: download into the cache
cifar_configs = {
    norm: TrainConfig(
        dataset="cifar10",
        data=cifar_data,
        download=cifar_data is None,
        backend="cupy",
        model="cifar_cnn",
        norm=norm,
        sampler="noniid",
        examples_per_label=BATCH,
        batch_size=BATCH,
        steps=5000,
        lr=LR,
        norm_momentum=NORM_MOMENTUM,
        eval_every=500,
        eval_batch_stats=True,
        seed=SEED,
        out=str(runs_dir / f"cifar10-{norm}-single-label"),
    )
    for norm in ("bn", "brn")
}
for config in cifar_configs.values():
    resolved = config.resolved()  # validates every option; needs neither a GPU nor the data
    assert resolved.augment and resolved.backend == "cupy"

if mg.cuda_available():
    for norm, config in cifar_configs.items():
        shutil.rmtree(config.out, ignore_errors=True)
        result = train(config)
        print(
            f"CIFAR-10 {norm}: test accuracy {result.test_accuracy:.3f} in inference mode, "
            f"{result.test_accuracy_batch_stats:.3f} with batch statistics"
        )
else:
    print("No CUDA device here: the CIFAR-10 runs are skipped.")

# %% [markdown]
# The same runs from a shell, one per arm (`--norm bn` for batchnorm); `minigrad train
# --help` lists every option, with the same names as `TrainConfig`'s fields:
#
# ```bash
# minigrad train --dataset cifar10 --data PATH --backend cupy \
#     --norm brn --sampler noniid --examples-per-label 32 --steps 5000 \
#     --eval-every 500 --eval-batch-stats --out runs/cifar10-brn
# ```
#
# (`python -m minigrad train ...` is the same command.) The digits runs of section 3 are
# `minigrad train --model digits_gap_cnn --norm bn --sampler noniid --examples-per-label 32
# --steps 1000 --eval-every 100 --eval-batch-stats`, on the CPU.
#
# ## Summary
#
# * With single-label batches, a batchnorm CNN learns to rely on the statistics of each
#   batch: it is nearly perfect when evaluated on batches composed the same way, and much
#   worse on images one at a time (inference mode), even on its own training images.
# * Swapping in Batch Renorm (`norm="brn"`, nothing else changed) closes that gap: after a
#   short warm-up as batchnorm, its layers train on the inference activations, and the
#   telemetry shows the corrections $r$ and $d$ staying inside their limits.
# * `train(TrainConfig(...))` is the hand-written loop plus evaluation, logs and
#   checkpoints; the same configuration runs CIFAR-10 on a GPU with `backend="cupy"`.

# %%
elapsed = time.perf_counter() - started
print(f"this notebook ran in {elapsed:.0f} s")
