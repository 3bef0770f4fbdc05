"""minigrad's CuPy code paths, run on the CPU against the stand-in of ``tests/fake_cupy.py``.

The stand-in proves code paths, not GPU numerics or speed: its arrays are
NumPy arrays that refuse every implicit conversion to the host, so these tests
fail when a CuPy branch of the backend calls something the stand-in lacks, or
when a training step reads a device array on the host. The same tests on a
real GPU are the ``gpu``-marked copies of the whole suite (``pytest -m gpu``).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import minigrad as mg
from minigrad import array_extras, backend, random
from minigrad.ops import scatter
from tests import fake_cupy
from tests.training_step import make_trainer

pytestmark = pytest.mark.backends("numpy")  # each test switches to the stand-in itself


@pytest.fixture
def fake():
    """The stand-in installed as ``cupy`` and made the active backend."""
    with fake_cupy.installed() as cupy, mg.using_backend("cupy"):
        yield cupy


# ----------------------------------------------------------------------------
# The stand-in behaves as CuPy does where it matters
# ----------------------------------------------------------------------------


def test_the_stand_in_refuses_implicit_host_conversions(fake):
    x = fake.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError, match="host numpy.ndarray"):
        x + np.ones(3)
    for read in (float, int, bool):
        with pytest.raises(TypeError, match="synchronization"):
            read(x[0, 0])
    with pytest.raises(AttributeError, match="item"):
        x.item()
    with pytest.raises(TypeError, match=r"numpy\.sum called on a device array"):
        np.sum(x)
    assert fake_cupy.copies() == 0
    assert np.array_equal(x.get(), np.arange(6.0).reshape(2, 3)) and fake_cupy.copies() == 1


def test_the_stand_in_is_removed_again():
    import array_api_compat

    before = sys.modules.get("cupy")
    with fake_cupy.installed():
        assert sys.modules["cupy"] is fake_cupy.MODULES["cupy"]
    assert sys.modules.get("cupy") is before
    assert getattr(array_api_compat, "cupy", None) is not fake_cupy.MODULES["cupy"]


# ----------------------------------------------------------------------------
# The backend's CuPy branches
# ----------------------------------------------------------------------------


def test_choosing_the_cupy_backend_and_its_namespace(fake):
    assert backend.cuda_available() and backend.active_backend() == "cupy"
    x = backend.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert isinstance(x, fake.ndarray) and backend.library_of(x) == "cupy" and backend.is_array(x)
    assert backend.namespace(x).__name__ == "array_api_compat.cupy"
    assert backend.namespace().__name__ == "array_api_compat.cupy"
    assert backend.device_of(x) == "cuda:0" and backend.device(x).id == 0
    assert backend.dtype_name(x.dtype) == "float64" and backend.is_floating(x)
    assert backend.astype(x, "float32").dtype == np.float32


def test_host_transfers_are_explicit_and_counted(fake):
    host = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = backend.from_numpy(host)
    assert isinstance(x, fake.ndarray) and fake_cupy.copies() == 0
    assert np.array_equal(backend.to_numpy(x), host) and fake_cupy.copies() == 1
    on_cpu = backend.to_device(x, "cpu")
    assert isinstance(on_cpu, np.ndarray) and fake_cupy.copies() == 2
    assert backend.to_device(x, "cuda:0") is x
    assert isinstance(backend.to_device(host, "cuda"), fake.ndarray)
    assert backend.item(backend.asarray(np.float32(2.5))) == 2.5 and fake_cupy.copies() == 3
    assert array_extras.host_view(x) is None and array_extras.host_view(host) is host


def test_tensors_on_the_device(fake):
    t = mg.Tensor(np.ones((2, 3)), requires_grad=True)
    assert t.device == "cuda:0" and isinstance(t.data, fake.ndarray)
    on_cpu = t.to("cpu")
    assert on_cpu.device == "cpu" and on_cpu.requires_grad
    assert on_cpu.to("cuda").device == "cuda:0"
    with pytest.raises(backend.DeviceMismatchError, match="cuda:0"):
        t + on_cpu


def test_scatter_add_uses_cupyx_and_equals_the_portable_version(fake):
    values = backend.asarray(np.arange(1.0, 7.0).reshape(3, 2))
    rows = backend.asarray(np.array([0, 2, 0]))
    fast = scatter.scatter_add_rows(4, rows, values)
    portable = scatter.scatter_add_rows_portable(4, rows, values)
    assert isinstance(fast, fake.ndarray)
    assert np.array_equal(fast.get(), portable.get())
    assert np.array_equal(fast.get(), [[6.0, 8.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    key = (backend.asarray(np.array([1, 1])), slice(None))
    assert np.array_equal(scatter.scatter_add((2, 2), key, values[:2]).get(), [[0.0, 0.0], [4.0, 6.0]])


def test_strided_views(fake):
    x = backend.asarray(np.arange(6.0))
    assert array_extras.has_strided_views(x)
    view = array_extras.as_strided(x, (2, 3), (x.itemsize * 3, x.itemsize))
    assert isinstance(view, fake.ndarray) and np.array_equal(view.get(), np.arange(6.0).reshape(2, 3))


def test_the_generator_draws_on_the_device(fake):
    generator = random.Generator(3)
    normal, uniform = generator.normal((4, 5)), generator.uniform((100,), dtype="float64")
    assert isinstance(normal, fake.ndarray) and normal.dtype == np.float32 and normal.shape == (4, 5)
    u = uniform.get()
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    again = random.Generator(3).normal((4, 5))
    assert np.array_equal(again.get(), normal.get())  # seeded
    assert isinstance(generator.normal((2,), library="numpy"), np.ndarray)
    with pytest.raises(NotImplementedError, match="CuPy-side generator"):
        generator.get_state()


# ----------------------------------------------------------------------------
# A short training run
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["brn", "bn"])
@pytest.mark.parametrize("model_name", ["digits", "cifar"])
def test_training_steps_run_on_the_device_without_a_host_copy(fake, norm, model_name):
    trainer = make_trainer(model_name, norm)
    first = trainer.step()  # warm-up: Batch Renorm checks its running statistics once, on the host
    fake_cupy.reset()
    losses = [trainer.step() for _ in range(2)]
    assert fake_cupy.copies() == 0
    for param in trainer.model.parameters():
        assert isinstance(param.data, fake.ndarray) and isinstance(param.grad, fake.ndarray)
    values = [loss.item() for loss in (first, *losses)]  # the caller's reads at logging steps
    assert fake_cupy.copies() == 3 and all(np.isfinite(values))


def test_the_copy_counter_sees_a_host_read_in_a_step(fake):
    """The test above can fail: a step that reads its loss each time is seen."""
    trainer = make_trainer("digits", "brn")
    trainer.step()
    fake_cupy.reset()
    for _ in range(2):
        trainer.step().item()
    assert fake_cupy.copies() == 2


@pytest.mark.parametrize("norm", ["brn", "bn"])
def test_the_training_loop_copies_only_at_read_boundaries_on_the_device(fake, tmp_path, monkeypatch, norm):
    """`minigrad train --backend cupy` on the stand-in: steps between boundaries make no copy, none is implicit."""
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    import json

    from minigrad.train import train
    from minigrad.train_config import TrainConfig

    monkeypatch.setattr("minigrad.train.READ_EVERY", 4)
    counts = []
    for steps in (8, 24):
        out = tmp_path / f"run-{steps}"
        fake_cupy.reset()
        train(TrainConfig(backend="cupy", norm=norm, steps=steps, eval_every=steps, progress=False, out=str(out)), log=None)
        counts.append(fake_cupy.copies())
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, steps + 1))
    assert counts[0] > 0  # the evaluation, the checkpoint and the boundaries read, explicitly
    assert counts[1] - counts[0] == (24 - 8) // 4  # one copy per read boundary, none per step
