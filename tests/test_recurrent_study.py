"""The recurrent study end to end: ``minigrad reproduce --study recurrent --quick``, its files, resuming, its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minigrad import cli
from minigrad.norm.recurrent import MODES
from minigrad.studies import recurrent as study

pytestmark = pytest.mark.backends("numpy")


@pytest.mark.slow  # about 12 s alone, 35 s on a busy 2-core machine
def test_quick_study_runs_every_arm_writes_its_files_and_resumes(tmp_path, capsys):
    out = tmp_path / "recurrent"
    assert cli.main(["reproduce", "--study", "recurrent", "--quick", "--out", str(out), "--no-progress"]) == 0
    document = json.loads((out / "results.json").read_text())
    tasks = [t.name for t in study.make_tasks(quick=True)]
    assert set(document["runs"]) == {study.run_key(t, n, 0) for t in tasks for n in MODES}
    for key, run in document["runs"].items():
        assert run["diverged_at"] is None, key
        if run["norm"] in ("none", "layer"):  # no batch statistics: training mode and inference agree exactly
            assert abs(run["gap"]) < 1e-6, key
            assert run["running_statistics"] == 0
    adding = document["runs"][study.run_key("adding", "renorm-shared", 0)]
    assert set(adding["test"]) == {"1", "2", "4"}
    per_step = document["summary"]["digits-pixels|batch-per-step"]["running_statistics"]
    shared = document["summary"]["digits-pixels|renorm-shared"]["running_statistics"]
    assert per_step == 64 * shared  # one set per timestep against one set for all
    markdown = (out / "results.md").read_text()
    assert "## adding" in markdown and "renorm-shared" in markdown and "at 4T" in markdown
    for name in document["figures"].values():
        assert (out / name).stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary behind

    before = (out / "results.json").read_text()
    capsys.readouterr()
    assert cli.main(["reproduce", "--study", "recurrent", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert "0 runs trained" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["runs"] == json.loads(before)["runs"]


def test_a_folder_with_other_settings_is_refused_in_one_line(tmp_path, capsys):
    config = study.StudyConfig(out=str(tmp_path), seeds=1, quick=True, progress=False)
    study.run_study(config, figures=False, tasks=["digits-rows"], norms=["none"])
    code = cli.main(["reproduce", "--study", "recurrent", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "other settings" in err and "Traceback" not in err


def test_a_partial_folder_is_finished_without_retraining(tmp_path):
    config = study.StudyConfig(out=str(tmp_path), seeds=1, quick=True, progress=False)
    first = study.run_study(config, figures=False, tasks=["adding"], norms=["none", "layer"])
    assert first.trained == 2
    second = study.run_study(config, figures=False, tasks=["adding"], norms=MODES)
    assert second.trained == len(MODES) - 2
    key = study.run_key("adding", "none", 0)
    assert second.document["runs"][key] == first.document["runs"][key]


def test_the_adding_problem_marks_one_number_in_each_half():
    x, y = study.adding_problem(50, 12, np.random.default_rng(0))
    assert x.shape == (50, 12, 2) and y.shape == (50,)
    markers = x[:, :, 1]
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :6].sum(axis=1) == 1).all()
    np.testing.assert_allclose((x[:, :, 0] * markers).sum(axis=1), y, rtol=1e-6)


def test_single_label_batches_hold_one_label():
    task = next(t for t in study.make_tasks() if t.sampler == "single-label")
    labels = np.repeat(np.arange(10), 20)
    batches = study.Batches(task, np.random.default_rng(0), np.zeros((200, 8, 8)), labels)
    for _ in range(5):
        _, y = batches.next()
        assert len(y) == task.batch_size and len(set(y.tolist())) == 1


@pytest.mark.parametrize(("rule", "warmup"), [("time-constants", 50), ("proportional", 10)])
def test_renorm_shared_takes_the_schedule_minigrad_train_takes(rule, warmup):
    """At Δ = 0.1 a 250-step run keeps r_max = 1, d_max = 0 for 5/Δ = 50 steps by default (10 by the paper's ratio)."""
    from minigrad.norm.recurrent import RecurrentNorm

    task = next(t for t in study.make_tasks() if t.name == "digits-pixels")
    model = study.SequenceModel(task, "renorm-shared", 8, 250, 0.1, rule)
    norms = [m for m in model.modules() if isinstance(m, RecurrentNorm)]
    assert norms
    for norm in norms:
        assert (norm.limits_at(warmup - 1).r_max, norm.limits_at(warmup - 1).d_max) == (1.0, 0.0)
        assert norm.limits_at(warmup + 10).r_max > 1.0 and norm.limits_at(warmup + 10).d_max > 0.0
    assert study.StudyConfig().renorm_warmup_rule == "time-constants"
