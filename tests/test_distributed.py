"""Data-parallel training (minigrad.distributed): ranks in threads on every backend, then real MPI processes.

The first part runs K "ranks" as threads of this process with an in-memory
communicator (:class:`ThreadGroup`), so that the arithmetic (sharding,
weighted gradient averaging, shared running statistics, synchronized
BatchNorm) is checked on every backend, array-api-strict included. The second
part launches ``mpiexec -n 2`` (skipped, with the reason, where mpi4py or
mpiexec is missing): the paper's setting against one process with ghost
batches, synchronized BatchNorm against plain BatchNorm, uneven shards, a
failing rank, and ``minigrad train`` on digits.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import minigrad as mg
from minigrad import distributed
from minigrad.train import ConfigError, TrainConfig, train
from tests import mpi_checks
from tests.helpers import host

REPO_ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------
# Ranks as threads
# ----------------------------------------------------------------------------


class ThreadGroup:
    """The shared state of K ranks that are threads of this process (for tests).

    minigrad keeps some state per process (whether graphs are recorded, the
    running-statistics reducer), so the ranks take turns: a rank computes only
    while it holds `lock`, and lets go of it while it waits in a collective.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list[Any] = [None] * size
        self.barrier = threading.Barrier(size, timeout=60)
        self.lock = threading.Lock()
        self.comms = [ThreadComm(rank, self) for rank in range(size)]


class ThreadComm(distributed.Communicator):
    """One rank of a :class:`ThreadGroup`: collectives through shared slots and a barrier; sums in rank order."""

    def __init__(self, rank: int, group: ThreadGroup) -> None:
        self.rank, self.size, self.group = rank, group.size, group

    def _exchange(self, value: Any) -> list[Any]:
        group = self.group
        group.slots[self.rank] = value
        group.lock.release()  # let the other ranks compute up to this collective
        try:
            group.barrier.wait()
            values = list(group.slots)
            group.barrier.wait()  # nobody writes the next value before everyone has read this one
        finally:
            group.lock.acquire()
        return values

    def allreduce_host(self, array: np.ndarray) -> np.ndarray:
        return np.sum(np.stack(self._exchange(np.asarray(array))), axis=0)

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self._exchange(obj)[root]

    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        values = self._exchange(obj)
        return values if self.rank == root else None

    def allgather(self, obj: Any) -> list[Any]:
        return self._exchange(obj)

    def barrier(self) -> None:
        self._exchange(None)

    def abort(self, code: int = 1):
        raise RuntimeError(f"abort({code})")


def run_ranks(size: int, work: Callable[[distributed.Communicator], Any]) -> list[Any]:
    """`work(comm)` on `size` thread ranks at once; the results in rank order (a rank's exception is re-raised)."""
    group = ThreadGroup(size)
    results: list[Any] = [None] * size
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        with group.lock:
            try:
                results[rank] = work(group.comms[rank])
            except BaseException as exc:
                errors.append(exc)
                group.barrier.abort()

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float = 1e-9) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        scale = max(float(np.abs(value).max()), 1e-12)
        np.testing.assert_allclose(got[key], value, rtol=0, atol=rtol * scale, err_msg=key)


# ----------------------------------------------------------------------------
# Sharding
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("total, size", [(32, 2), (33, 2), (10, 3), (5, 5), (7, 1)])
def test_shards_tile_the_batch_and_differ_by_at_most_one(total, size):
    bounds = [distributed.shard_bounds(total, rank, size) for rank in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(stop == start for (_, stop), (start, _) in itertools.pairwise(bounds))
    sizes = distributed.shard_sizes(total, size)
    assert sizes == [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(
    "batch_size, size, vbs, message",
    [
        (3, 4, None, "at least one example per rank, got a global batch of 3 for 4 ranks"),
        (32, 2, 5, "must divide every shard, got 5"),
        (33, 2, 16, r"shards of 16, 17\), so it must divide every shard"),
    ],
)
def test_batches_that_cannot_be_split_are_refused(batch_size, size, vbs, message):
    with pytest.raises(ValueError, match=message):
        distributed.check_shards(batch_size, size, vbs)


def test_uneven_shards_are_allowed_and_ranks_get_distinct_seeds():
    assert distributed.check_shards(33, 2) == [17, 16]
    assert distributed.check_shards(32, 2, 8) == [16, 16]
    seeds = {distributed.rank_seed(0, rank) for rank in range(4)}
    assert len(seeds) == 4 and distributed.rank_seed(0, 1) == distributed.rank_seed(0, 1)
    assert distributed.rank_seed(None, 1) is None


# ----------------------------------------------------------------------------
# The arithmetic, with ranks in threads (every backend)
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["bn", "brn"])
def test_ranks_normalizing_their_shards_match_one_process_with_ghost_batches(norm):
    """The paper's setting: 2 ranks x 16 = one process with batch 32 and virtual_batch_size=16, step for step."""
    want = mpi_checks.data_parallel_run(norm, 32, distributed.SingleProcess(), virtual_batch_size=16)
    ranks = run_ranks(
        2,
        lambda comm: mpi_checks.data_parallel_run(
            norm,
            32,
            comm,
        ),
    )
    _assert_close(ranks[0], want)
    _assert_close(ranks[1], want)  # every rank holds the same parameters and running statistics


def test_without_shared_statistics_the_running_statistics_drift_apart_and_the_check_says_so():
    """The test above can fail: each rank updating from its own μ_B, σ_B alone gives other running statistics."""

    def work(comm):
        return mpi_checks.data_parallel_run("bn", 32, comm, share_stats=False)  # ends with check_in_sync

    with pytest.raises(distributed.DistributedError, match="differ across ranks: 'features.0.1.running_mean'"):
        run_ranks(2, work)


@pytest.mark.parametrize("batch_size, size", [(32, 2), (33, 2), (30, 3)])
def test_synchronized_batchnorm_equals_batchnorm_over_the_global_batch(batch_size, size):
    """Forward, gradients, running statistics and later steps, even for uneven shards (17 + 16, weighted)."""
    want = mpi_checks.data_parallel_run("bn", batch_size, distributed.SingleProcess())
    ranks = run_ranks(size, lambda comm: mpi_checks.data_parallel_run("bn", batch_size, comm, sync_bn=True))
    for got in ranks:
        _assert_close(got, want)


def _uneven_reference() -> tuple[dict[str, np.ndarray], float]:
    """The gradients and loss of the mean loss over 33 examples, the first 17 and the last 16 normalized apart."""
    model = mpi_checks.make_model("bn")
    images, labels = mpi_checks.global_batches(33)[0]
    total = None
    for rank in range(2):
        start, stop = distributed.shard_bounds(33, rank, 2)
        logits = model(mg.Tensor(images[start:stop], dtype="float64"))
        loss = mg.cross_entropy(logits, mg.Tensor(labels[start:stop], dtype="int64")) * ((stop - start) / 33)
        total = loss if total is None else total + loss
    total.backward()
    return {f"grad/{name}": host(p.grad) for name, p in model.named_parameters()}, total.item()


def _grads(record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value for key, value in record.items() if key.startswith("grad/")}


def test_uneven_shards_give_the_gradient_of_the_global_mean_loss():
    """17 + 16 examples, each rank normalizing its own: the weights n_r / N make the mean over all 33 examples."""
    want, loss = _uneven_reference()
    ranks = run_ranks(
        2,
        lambda comm: mpi_checks.data_parallel_run(
            "bn",
            33,
            comm,
        ),
    )
    _assert_close(_grads(ranks[0]), want)
    np.testing.assert_allclose(ranks[0]["loss"][0], loss, rtol=1e-12)


def test_average_gradients_sums_weighted_gradients_and_extras_and_keeps_missing_ones_missing():
    def work(comm):
        a = mg.Tensor(np.full(3, 1.0 + comm.rank), requires_grad=True, dtype="float32")
        b = mg.Tensor(np.zeros((2, 2)), requires_grad=True, dtype="float32")
        c = mg.Tensor(np.zeros(2), requires_grad=True, dtype="float32")
        a.grad = a.data * (comm.rank + 1)  # rank 0: 1, rank 1: 4
        if comm.rank == 1:
            b.grad = b.data + 2.0  # only rank 1 has a gradient for b
        extras = distributed.average_gradients([a, b, c], comm, weight=0.5, extra=[comm.rank, 1.5])
        return host(a.grad), None if b.grad is None else host(b.grad), c.grad, extras

    (a0, b0, c0, e0), (a1, b1, c1, e1) = run_ranks(2, work)
    np.testing.assert_array_equal(a0, np.full(3, 2.5, dtype=np.float32))  # (1 + 4) / 2
    np.testing.assert_array_equal(b0, np.full((2, 2), 1.0, dtype=np.float32))  # (0 + 2) / 2
    assert a0.dtype == np.float32 and c0 is None and c1 is None
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(b0, b1)
    assert e0 == e1 == [1.0, 3.0]


def test_one_process_leaves_gradients_untouched():
    param = mg.Tensor(np.ones(3), requires_grad=True)
    param.grad = param.data * 3
    before = param.grad
    assert distributed.average_gradients([param], distributed.SingleProcess(), 1.0, extra=[2, 5]) == [2.0, 5.0]
    assert param.grad is before


def test_parameters_that_differ_across_ranks_are_named():
    def work(comm):
        model = mpi_checks.make_model("bn")
        distributed.check_in_sync(model, comm, step=3)  # identical: no error
        if comm.rank == 1:
            buffer = model.features[1][1].running_std
            buffer[...] = buffer * 1.0001
        try:
            distributed.check_in_sync(model, comm, step=4)
        except distributed.DistributedError as exc:
            return str(exc)
        return ""

    messages = run_ranks(2, work)
    assert messages[0] == messages[1]
    assert "differ across ranks at step 4: 'features.1.1.running_std'" in messages[0]
    assert "on rank 1" in messages[0]


def test_sync_batchnorm_is_refused_for_batch_renorm_and_ghost_batches():
    comm = distributed.SingleProcess()
    with pytest.raises(ValueError, match="BatchNorm only, got BatchRenorm2d at 'features.0.1'"):
        distributed.convert_sync_batchnorm(mpi_checks.make_model("brn"), comm)
    with pytest.raises(ValueError, match="virtual_batch_size=4; synchronized BatchNorm"):
        distributed.convert_sync_batchnorm(mpi_checks.make_model("bn", virtual_batch_size=4), comm)


# ----------------------------------------------------------------------------
# Launching, failing, configuration (one process)
# ----------------------------------------------------------------------------


@pytest.fixture
def fresh_world(monkeypatch):
    monkeypatch.setattr(distributed.communicators, "_world", None)
    for name in distributed._LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.backends("numpy")
def test_without_a_launcher_the_world_is_this_process(fresh_world):
    assert not distributed.launched_by_mpi()
    world = distributed.world()
    assert isinstance(world, distributed.SingleProcess) and (world.rank, world.size) == (0, 1)
    fresh_world.setattr(distributed.communicators, "_world", None)
    fresh_world.setenv("PMI_SIZE", "2")
    fresh_world.setenv("MINIGRAD_DISTRIBUTED", "none")
    assert distributed.launched_by_mpi() and isinstance(distributed.world(), distributed.SingleProcess)
    fresh_world.setattr(distributed.communicators, "_world", None)
    fresh_world.setenv("MINIGRAD_DISTRIBUTED", "sometimes")
    with pytest.raises(ValueError, match="expected auto, mpi or none, got 'sometimes'"):
        distributed.world()


@pytest.mark.backends("numpy")
def test_run_or_abort_in_one_process_returns_the_code_and_lets_errors_through():
    one = distributed.SingleProcess()
    assert distributed.run_or_abort(lambda: 0, one) == 0
    assert distributed.run_or_abort(lambda: 2, one) == 2

    def broken() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        distributed.run_or_abort(broken, one)


class _PretendRoot(distributed.SingleProcess):
    """Rank 0 of `size` ranks whose collectives are never reached (for errors raised before any)."""

    def __init__(self, size: int) -> None:
        self.size = size


@pytest.mark.backends("numpy")
@pytest.mark.parametrize(
    "overrides, size, message",
    [
        (dict(norm="brn", sync_bn=True), 1, "sync_bn: .* needs norm='bn', got norm='brn'"),
        (dict(norm="bn", sync_bn=True, virtual_batch_size=8), 1, "needs no virtual_batch_size .* got 8"),
        (dict(batch_size=3), 4, "at least one example per rank, got a global batch of 3 for 4 ranks"),
        (dict(batch_size=32, virtual_batch_size=32), 2, "must divide every shard, got 32"),
    ],
)
def test_distributed_options_that_cannot_work_are_refused_before_anything_is_written(tmp_path, overrides, size, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        train(TrainConfig(out=str(out), steps=2, progress=False, **overrides), log=None, comm=_PretendRoot(size))
    assert not out.exists()


@pytest.mark.backends("numpy")
def test_a_run_is_resumed_only_on_as_many_ranks_as_it_was_made_on(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    out = tmp_path / "run"
    settings = dict(out=str(out), steps=4, eval_every=4, progress=False, train_subset=200)
    train(TrainConfig(**settings), log=None, stop_at=2)
    assert json.loads((out / "config.json").read_text())["world_size"] == 1
    with pytest.raises(ConfigError, match=r"world_size \(checkpoint 1 ranks, now 2\)"):
        train(TrainConfig(resume=True, **settings), log=None, comm=_PretendRoot(2))


# ----------------------------------------------------------------------------
# Real MPI processes
# ----------------------------------------------------------------------------


def _mpiexec() -> str:
    """The mpiexec beside this Python (the MPICH wheel's), else the one on PATH; skips when mpi4py or it is missing."""
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed: pip install 'minigrad[mpi]'")
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found (pip install 'minigrad[mpi]' brings MPICH's into the environment)")
    return found


def _launch(args: list[str], ranks: int = 2, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MINIGRAD_BACKEND="numpy")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env.pop("MINIGRAD_DISTRIBUTED", None)
    command = [_mpiexec(), "-n", str(ranks), sys.executable, *args]
    return subprocess.run(
        command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def mpi_checks_result(tmp_path_factory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("mpi") / "checks.npz"
    done = _launch([str(REPO_ROOT / "tests" / "mpi_checks.py"), "checks", str(path)])
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def _case(result: dict[str, Any], case: str) -> dict[str, np.ndarray]:
    prefix = f"{case}/"
    return {key[len(prefix) :]: value for key, value in result.items() if key.startswith(prefix)}


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("norm", ["bn", "brn"])
def test_mpi_ranks_match_one_process_with_ghost_batches(mpi_checks_result, norm):
    want = mpi_checks.data_parallel_run(norm, 32, distributed.SingleProcess(), virtual_batch_size=16)
    _assert_close(_case(mpi_checks_result, norm), want)


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("case, batch_size", [("sync", 32), ("sync_uneven", 33)])
def test_mpi_synchronized_batchnorm_matches_one_process_batchnorm(mpi_checks_result, case, batch_size):
    want = mpi_checks.data_parallel_run("bn", batch_size, distributed.SingleProcess())
    _assert_close(_case(mpi_checks_result, case), want)


@pytest.mark.backends("numpy")
def test_mpi_uneven_shards_and_divergence_and_resume(mpi_checks_result):
    want, loss = _uneven_reference()
    got = _case(mpi_checks_result, "bn_uneven")
    _assert_close(_grads(got), want)
    np.testing.assert_allclose(got["loss"][0], loss, rtol=1e-12)
    extra = json.loads(str(mpi_checks_result["extra"]))
    assert "parameters differ across ranks at step 7: 'head.4.weight'" in extra["divergence"]
    whole, resumed = extra["resume"]["whole"], extra["resume"]["resumed"]
    assert len(whole) == 12 + 3  # one line per step and per evaluation: rank 0 alone writes
    assert resumed == whole
    assert extra["files"] == [f"{run}/{name}" for run in ("pieces", "whole")
                              for name in ("checkpoint.npz", "config.json", "metrics.jsonl")]  # fmt: skip


@pytest.mark.backends("numpy")
def test_a_failing_rank_stops_the_job_with_its_message():
    started = time.perf_counter()
    done = _launch([str(REPO_ROOT / "tests" / "mpi_checks.py"), "fail"], timeout=60)
    assert done.returncode != 0
    assert "[minigrad rank 1/2]" in done.stderr and "RuntimeError: rank 1 broke on purpose" in done.stderr
    assert time.perf_counter() - started < 30  # rank 0, waiting in an allreduce, was stopped


@pytest.mark.backends("numpy")
def test_mpi_train_refuses_a_batch_it_cannot_split_with_a_clear_message(tmp_path):
    done = _launch(["-m", "minigrad", "train", "--batch-size", "6", "--virtual-batch-size", "2",
                    "--out", str(tmp_path / "run"), "--no-progress"], ranks=2, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "--virtual-batch-size: each rank normalizes groups" in done.stderr and "shards of 3" in done.stderr
    assert not (tmp_path / "run").exists()


def _eval_records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "eval"]


def _train_losses(out: Path) -> np.ndarray:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return np.array([r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"])


@pytest.mark.backends("numpy")
@pytest.mark.parametrize(
    "ranks_options, one_process_options",
    [
        (["--norm", "bn"], dict(norm="bn", virtual_batch_size=16)),  # the paper's setting = ghost batches of 16
        (["--norm", "bn", "--sync-bn"], dict(norm="bn")),  # synchronized = plain BatchNorm over 32
    ],
    ids=["per-rank", "sync-bn"],
)
def test_two_rank_training_on_digits_matches_the_single_process_run(tmp_path, ranks_options, one_process_options):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    common = dict(steps=120, eval_every=60, batch_size=32)
    ranks_out, one_out = tmp_path / "ranks", tmp_path / "one"
    done = _launch(["-m", "minigrad", "train", *ranks_options, "--steps", "120", "--eval-every", "60",
                    "--batch-size", "32", "--out", str(ranks_out), "--no-progress"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy") == 3  # rank 0 alone logs: two evaluations and the summary
    train(TrainConfig(out=str(one_out), progress=False, **common, **one_process_options), log=None)
    config = json.loads((ranks_out / "config.json").read_text())
    assert config["world_size"] == 2 and config["sync_bn"] == ("--sync-bn" in ranks_options)
    ranks_evals, one_evals = _eval_records(ranks_out), _eval_records(one_out)
    assert [e["step"] for e in ranks_evals] == [e["step"] for e in one_evals] == [60, 120]
    assert ranks_evals[-1]["test_accuracy"] > 0.9
    for got, want in zip(ranks_evals, one_evals):
        assert abs(got["test_accuracy"] - want["test_accuracy"]) <= 2 / 360  # the same to a example or two
    ranks_losses, one_losses = _train_losses(ranks_out), _train_losses(one_out)
    assert len(ranks_losses) == len(one_losses) == 120
    np.testing.assert_allclose(ranks_losses[:20], one_losses[:20], rtol=1e-3)  # float32 rounding, not another run


@pytest.mark.backends("numpy")
def test_two_rank_reproduce_trains_every_arm_once_and_writes_one_study(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    pytest.importorskip("matplotlib", reason="the study's figures need matplotlib")
    out = tmp_path / "study"
    done = _launch(["-m", "minigrad", "reproduce", "--quick", "--arms", "bn-iid,brn-iid", "--out", str(out),
                    "--no-progress"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("reproduce done") == 1  # rank 0 alone reports and writes
    study = json.loads((out / "results.json").read_text())
    runs = [run for arm in study["arms"].values() for run in arm["runs"]]
    assert sorted(r["arm"] for r in runs) == ["bn-iid", "brn-iid"]  # each arm trained once, by both ranks together
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in runs)
    for run in (out / "runs").iterdir():
        assert json.loads((run / "config.json").read_text())["world_size"] == 2
        assert len(_eval_records(run)) >= 1
    assert (out / "results.md").is_file()
