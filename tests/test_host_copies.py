"""A training step copies nothing from the device to the host.

On a GPU every device-to-host copy is a synchronization: the host waits until
the GPU has finished everything queued before it, so one ``.item()`` in the
step path serializes the whole step. Every host read in minigrad goes through
``backend.to_numpy`` (``backend.item``, ``backend.to_device``, ``Tensor.item``,
``Tensor.numpy``, ``repr`` and ``bool`` of a tensor all call it), so counting
its calls during a step counts the copies a GPU would make. The counter runs
on the CPU backends, where the same code paths run; ``tests/test_fake_cupy.py``
runs the step again on a stand-in for CuPy whose arrays refuse any implicit
conversion, which catches host reads that bypass the backend.

The first step is a warm-up: a normalization layer checks its running
statistics once, on its first forward, and the EMA and the optimizer create
their state. The loss read at a logging step is the caller's and is counted
apart.
"""

from __future__ import annotations

import pytest

import minigrad as mg
from minigrad import array_extras, backend
from tests.training_step import make_trainer

HOST_READS = ("to_numpy", "item", "to_device")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts of the backend's host-read functions, by name, from now on."""
    counts = dict.fromkeys(HOST_READS, 0)

    def counting(name):
        original = getattr(backend, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(backend, name, wrapper)

    for name in HOST_READS:
        counting(name)
    return counts


@pytest.mark.backends("numpy", "array_api_strict")
@pytest.mark.parametrize("norm", ["brn", "bn"])
@pytest.mark.parametrize("model_name", ["digits", "cifar"])
def test_a_training_step_makes_no_host_copy(host_reads, norm, model_name, backend):
    trainer = make_trainer(model_name, norm)
    trainer.step()  # warm-up: first-forward checks, optimizer and EMA state
    host_reads.update(dict.fromkeys(HOST_READS, 0))
    for _ in range(2):
        loss = trainer.step()
    assert host_reads == dict.fromkeys(HOST_READS, 0)
    loss.item()  # a logging step's read of the loss: one copy, the caller's
    assert host_reads["to_numpy"] == 1


@pytest.mark.backends("numpy")
def test_the_counter_sees_a_host_read_in_the_step(host_reads):
    """The test above can fail: a gradient-norm check written with .item() is seen, one copy per parameter."""
    trainer = make_trainer("digits", "brn")
    trainer.step()
    host_reads.update(dict.fromkeys(HOST_READS, 0))
    trainer.step()
    for param in trainer.model.parameters():
        (mg.Tensor(param.grad) ** 2).sum().item()
    assert host_reads["to_numpy"] == len(trainer.model.parameters()) > 0


@pytest.mark.backends("numpy")
def test_the_warm_up_step_reads_the_running_statistics_once_per_layer(host_reads):
    """What the warm-up excludes, named: the first forward checks each layer's running statistics on the host."""
    trainer = make_trainer("digits", "brn")
    trainer.step()
    layers = [m for m in trainer.model.modules() if isinstance(m, mg.nn.BatchRenorm2d | mg.nn.BatchRenorm1d)]
    assert layers and host_reads["to_numpy"] == 2 * len(layers)  # running mean and running std, once each


def test_labels_out_of_range_make_the_loss_nan_without_a_host_read(host_reads, backend, monkeypatch):
    """Off the host the label check runs on the device: an out-of-range label poisons loss and gradient."""
    logits = mg.Tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], requires_grad=True)
    labels = mg.Tensor([0, 3], dtype="int64")
    if backend in ("numpy", "array_api_strict"):  # host memory: checked at once, with a clear error
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values from 0 to 3"):
            mg.cross_entropy(logits, labels)
        monkeypatch.setattr(array_extras, "host_view", lambda array: None)  # then as if the labels were on a device
    loss = mg.cross_entropy(logits, labels)
    loss.backward()
    assert host_reads == dict.fromkeys(HOST_READS, 0)
    grad = mg.backend.to_numpy(logits.grad)
    assert loss.item() != loss.item()  # NaN
    assert (grad[1] != grad[1]).all() and (grad[0] == grad[0]).all()


# ----------------------------------------------------------------------------
# The training loop of `minigrad train`: reads at boundaries only
# ----------------------------------------------------------------------------


def _run_reads(tmp_path, host_reads, steps: int, **overrides) -> tuple[int, list[dict]]:
    """(host reads, metric records) of a `minigrad train` run of `steps` steps with one evaluation, at its end."""
    import json

    from minigrad.train import train
    from minigrad.train_config import TrainConfig

    out = tmp_path / f"run-{steps}"
    config = TrainConfig(steps=steps, eval_every=steps, progress=False, out=str(out), **overrides)
    host_reads.update(dict.fromkeys(HOST_READS, 0))
    train(config, log=None)
    reads = sum(host_reads.values())
    return reads, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("norm", ["brn", "bn"])
def test_the_training_loop_reads_the_device_only_at_read_boundaries(tmp_path, host_reads, monkeypatch, norm):
    """Steps between read boundaries copy nothing: 16 more steps cost 16 / READ_EVERY reads, one per boundary."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    monkeypatch.setattr("minigrad.train.READ_EVERY", 4)
    short, _ = _run_reads(tmp_path, host_reads, 8, norm=norm)
    long, long_records = _run_reads(tmp_path, host_reads, 24, norm=norm)
    assert long - short == (24 - 8) // 4
    steps = [r for r in long_records if r["kind"] == "train"]  # still one line per step, in order, each with its loss
    assert [r["step"] for r in steps] == list(range(1, 25))
    assert all(r["loss"] > 0 and 0 <= r["batch_accuracy"] <= 1 and r["images_per_sec"] > 0 for r in steps)
    assert [r["kind"] for r in long_records][-1] == "eval"


@pytest.mark.backends("numpy")
def test_the_loop_counter_sees_a_read_every_step(tmp_path, host_reads, monkeypatch):
    """The test above can fail: reading every step (READ_EVERY = 1) is seen, one read per step."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    monkeypatch.setattr("minigrad.train.READ_EVERY", 1)
    short, _ = _run_reads(tmp_path, host_reads, 8)
    long, _ = _run_reads(tmp_path, host_reads, 24)
    assert long - short == 24 - 8


@pytest.mark.backends("numpy")
def test_an_evaluation_reads_the_device_once_whatever_its_batches(host_reads):
    trainer = make_trainer("digits", "brn", batch_size=8)
    trainer.step()
    images, labels = next(trainer.batches)
    from minigrad.train import evaluate

    evaluate(trainer.model, [(images, labels)])  # warm-up: the first inference forward checks the running statistics
    counts = []
    for batches in (1, 5):
        host_reads.update(dict.fromkeys(HOST_READS, 0))
        result = evaluate(trainer.model, [(images, labels)] * batches)
        counts.append(sum(host_reads.values()))
        assert result["examples"] == 8 * batches and 0 <= result["accuracy"] <= 1 and result["loss"] > 0
    assert counts == [1, 1]


@pytest.mark.backends("numpy")
def test_a_loss_that_turns_nan_between_reads_is_reported_at_its_own_step(tmp_path, monkeypatch):
    """Divergence is found at the next read boundary, and the message names the step where the loss broke."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    from minigrad.train import train
    from minigrad.train_config import TrainConfig

    monkeypatch.setattr("minigrad.train.READ_EVERY", 10)
    original = mg.cross_entropy
    calls = []

    def breaking(logits, labels):
        calls.append(1)
        loss = original(logits, labels)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(mg, "cross_entropy", breaking)
    out = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"training diverged: the loss is nan at step 3; lower --lr"):
        train(TrainConfig(steps=40, eval_every=40, progress=False, out=str(out)), log=None)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the steps before the broken one are logged
