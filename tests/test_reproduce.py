"""`minigrad reproduce` end to end (--quick on digits): arms, files, figures, resume, and bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minigrad.cli import main
from minigrad.reproduce import (
    ARM_FIELDS,
    ARM_NAMES,
    REGIMES,
    RUN_INFO,
    ReproduceConfig,
    ReproduceError,
    eval_curves,
    make_arms,
    reproduce,
)
from minigrad.train import CHECKPOINT, train

pytestmark = pytest.mark.backends("numpy")  # end-to-end runs; the array code is tested on every backend elsewhere
pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn (pip install 'minigrad[train]')")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quick(out: Path, **overrides) -> ReproduceConfig:
    settings = dict(quick=True, out=str(out), progress=False)
    settings.update(overrides)
    return ReproduceConfig(**settings)


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory) -> Path:
    """The whole --quick study, run once through the command line for the tests of its outputs."""
    pytest.importorskip("matplotlib", reason="the figures need matplotlib (pip install 'minigrad[train]')")
    out = tmp_path_factory.mktemp("quick") / "study"
    assert main(["reproduce", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out


def test_quick_study_runs_every_arm_and_writes_results(quick_study):
    document = json.loads((quick_study / "results.json").read_text())
    assert list(document["arms"]) == list(ARM_NAMES)
    assert document["complete"] and document["seeds"] == [0]
    for name, arm in document["arms"].items():
        (run,) = arm["runs"]
        assert run["steps"] == 60 and run["seed"] == 0
        for key in ("test_accuracy", "best_test_accuracy", "train_accuracy_inference"):
            assert 0 <= run[key] <= 1, (name, key)
        assert run["best_test_accuracy"] >= run["test_accuracy"]
        assert run["wall_time"] > 0
        has_batch_stats = name.startswith("bn-") and arm["regime"] == "noniid"
        assert (run["test_accuracy_batch_stats"] is not None) == has_batch_stats, name
        assert arm["summary"]["test_accuracy"]["mean"] == run["test_accuracy"]
    # i.i.d. batch norm learns something even in 60 steps (10 classes: chance is 10%)
    assert document["arms"]["brn-iid"]["runs"][0]["test_accuracy"] > 0.3
    table = (quick_study / "results.md").read_text()
    for arm in make_arms():
        assert f"| {arm.name} | {arm.regime} |" in table
        assert arm.paper.note in table
    assert "78.3% at 130k" in table and "| one label per batch |" in table


def test_quick_study_figures_are_pngs_with_one_line_per_arm(quick_study):
    from PIL import Image

    from minigrad import plots

    info = json.loads((quick_study / "figures.json").read_text())
    expected = {f"figure{i}_{regime}.png" for i, regime in enumerate(REGIMES, start=1)} | {"telemetry.png"}
    assert set(info) == expected
    arms = make_arms()
    for name, meta in info.items():
        data = (quick_study / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        with Image.open(quick_study / name) as image:
            image.load()
            assert image.format == "PNG" and image.width > 200 and image.height > 200
        if meta["regime"] == "telemetry":
            assert meta["arms"] == [a.name for a in arms if a.overrides["norm"] == "brn"]
            assert len(meta["lines"]) == 2 * len(meta["arms"]) and min(meta["lines"]) >= 1
            continue
        assert meta["arms"] == [a.name for a in arms if a.regime == meta["regime"]]
        assert meta["lines"] == [len(meta["arms"])]
    # redraw figure 3 from the run folders: one line per arm, whose last point is the arm's final test accuracy
    document = json.loads((quick_study / "results.json").read_text())
    members = info["figure3_noniid.png"]["arms"]
    curves = {name: [eval_curves(Path(r["run_dir"])) for r in document["arms"][name]["runs"]] for name in members}
    figure = plots.accuracy_figure(curves, title="test")
    lines = figure.axes[0].get_lines()
    assert len(lines) == len(members)
    for line, name in zip(lines, members):
        assert line.get_ydata()[-1] == pytest.approx(100 * document["arms"][name]["runs"][0]["test_accuracy"])
    plots.save(figure, quick_study / "redrawn.png")
    assert (quick_study / "redrawn.png").read_bytes().startswith(PNG_MAGIC)


def test_arms_differ_only_in_normalization_and_sampler():
    runs = ReproduceConfig(seeds=2).run_configs()
    assert [(arm.name, seed) for arm, seed, _ in runs] == [(name, s) for name in ARM_NAMES for s in (0, 1)]
    configs = {(arm.name, seed): dataclasses.asdict(config) for arm, seed, config in runs}
    reference = configs[("bn-iid", 0)]
    assert reference["model"] == "digits_gap_cnn" and reference["steps"] == 2000
    allowed = set(ARM_FIELDS) | {"out", "extra", "seed"}
    schedule = {"renorm_warmup_rule": "time-constants", "r_max_final": 3.0, "d_max_final": 5.0}  # what brn implies
    for (name, seed), config in configs.items():
        different = {key for key in config if config[key] != reference[key]}
        if config["norm"] == "brn":
            assert {key: config[key] for key in schedule} == schedule, name
            different -= set(schedule)
        assert different <= allowed, (name, different - allowed)
        assert config["seed"] == seed and config["extra"]["arm"] == name
        assert config["out"].endswith(f"runs/{name}-seed{seed}")
    by_arm = {name: configs[(name, 0)] for name in ARM_NAMES}
    assert {n for n, c in by_arm.items() if c["norm"] == "brn"} == {"brn-iid", "brn-micro", "brn-noniid", "brn-noniid1"}
    assert {n for n, c in by_arm.items() if c["virtual_batch_size"] == 4} == {"bn-micro", "brn-micro"}
    assert by_arm["bn-noniid"]["examples_per_label"] == by_arm["brn-noniid"]["examples_per_label"] == 2
    assert by_arm["bn-noniid1"]["examples_per_label"] == by_arm["brn-noniid1"]["examples_per_label"] == 32
    assert by_arm["bn-halfsplit"]["sampler"] == "halfsplit" and by_arm["bn-halfsplit"]["virtual_batch_size"] == 16
    assert {n for n, c in by_arm.items() if c["eval_batch_stats"]} == {"bn-noniid", "bn-halfsplit", "bn-noniid1"}
    # each pair of arms in a regime differs in the normalization only
    batch_stats = {"eval_batch_stats"}  # only the BatchNorm arms of the non-i.i.d. regime are also evaluated so
    pairs = {("bn-iid", "brn-iid"): set(), ("bn-micro", "brn-micro"): set(), ("bn-noniid", "brn-noniid"): batch_stats,
             ("bn-noniid1", "brn-noniid1"): batch_stats}  # fmt: skip
    for (bn, brn), also in pairs.items():
        different = {k for k in by_arm[bn] if by_arm[bn][k] != by_arm[brn][k]}
        assert different == {"norm", "out", "extra", *schedule} | also, (bn, brn)


def test_labels_per_batch_sets_the_group_size_and_must_divide_the_batch():
    arms = {arm.name: arm for arm, _, _ in ReproduceConfig(labels_per_batch=4).run_configs()}
    assert arms["bn-noniid"].overrides["examples_per_label"] == 8
    assert arms["bn-noniid1"].overrides["examples_per_label"] == 32  # the extreme arm keeps one label per batch
    with pytest.raises(ReproduceError, match="5 labels must divide the batch size 32"):
        ReproduceConfig(labels_per_batch=5).run_configs()


def test_microbatch_sets_the_group_of_the_micro_arms_and_the_paper_number_only_at_4():
    arms = {arm.name: arm for arm, _, _ in ReproduceConfig(microbatch=2).run_configs()}
    assert arms["bn-micro"].overrides["virtual_batch_size"] == 2
    assert arms["brn-micro"].overrides["virtual_batch_size"] == 2
    assert arms["bn-iid"].overrides.get("virtual_batch_size") is None
    assert arms["brn-micro"].paper.accuracy is None  # the paper's 76.5% is for microbatches of 4
    assert "microbatches of 2" in arms["brn-micro"].description
    default = {arm.name: arm for arm, _, _ in ReproduceConfig().run_configs()}
    assert default["brn-micro"].overrides["virtual_batch_size"] == 4 and default["brn-micro"].paper.accuracy == 0.765
    with pytest.raises(ReproduceError, match="microbatch: the microbatch arms normalize groups of 3"):
        ReproduceConfig(microbatch=3).run_configs()
    with pytest.raises(ReproduceError, match="microbatch: a group of 1 example has no variance"):
        ReproduceConfig(microbatch=1).run_configs()


def test_microbatch_flag_reaches_the_arms_and_bad_values_are_one_line(capsys):
    assert main(["reproduce", "--quick", "--microbatch", "3", "--no-progress", "--out", "unused"]) == 2
    error = capsys.readouterr().err
    assert "--microbatch: the microbatch arms normalize groups of 3" in error and "Traceback" not in error


def test_unknown_arm_lists_the_known_ones(capsys):
    with pytest.raises(ReproduceError, match="unknown arm\\(s\\) bn-foo; known arms: bn-iid, brn-iid"):
        ReproduceConfig(arms=["bn-iid", "bn-foo"]).selected_arms()
    assert main(["reproduce", "--quick", "--arms", "bn-iid,bn-foo", "--no-progress", "--out", "unused"]) == 2
    error = capsys.readouterr().err
    assert "unknown arm(s) bn-foo" in error and "brn-noniid1" in error
    assert not Path("unused").exists()


def test_interrupted_study_finishes_the_rest_and_keeps_the_finished_arms(tmp_path):
    arms = ["bn-iid", "brn-micro", "bn-noniid"]
    first = reproduce(_quick(tmp_path / "study", arms=arms), log=None, stop_after=1, figures=False)
    assert first.interrupted and [r["arm"] for r in first.runs] == ["bn-iid"]
    done = tmp_path / "study" / "runs" / "bn-iid-seed0"
    checkpoint = (done / CHECKPOINT).read_bytes()
    partial = json.loads((tmp_path / "study" / "results.json").read_text())
    assert not partial["complete"] and partial["arms"]["brn-micro"]["runs"] == []
    # the next arm is interrupted mid-run: the study must resume it from its checkpoint
    _, _, micro_config = _quick(tmp_path / "study", arms=arms).run_configs()[1]
    assert train(micro_config, log=None, stop_at=30).interrupted
    micro = tmp_path / "study" / "runs" / "brn-micro-seed0"
    head = (micro / "metrics.jsonl").read_text().splitlines()

    second = reproduce(_quick(tmp_path / "study", arms=arms), log=None, figures=False)
    assert not second.interrupted and [r["arm"] for r in second.runs] == arms
    assert (done / CHECKPOINT).read_bytes() == checkpoint  # not trained again
    assert second.runs[0] == first.runs[0]
    # resumed at step 30, not restarted: the first 30 steps' records (with their timings) are kept as they were
    assert (micro / "metrics.jsonl").read_text().splitlines()[: len(head)] == head
    assert json.loads((micro / RUN_INFO).read_text())["sessions"] == 1

    # the same arms run without interruption give the same numbers
    whole = reproduce(_quick(tmp_path / "whole", arms=arms), log=None, figures=False)
    keys = ("test_accuracy", "best_test_accuracy", "train_accuracy_inference", "test_accuracy_batch_stats", "steps")
    for a, b in zip(second.runs, whole.runs):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, a["arm"]
    assert json.loads((tmp_path / "study" / "results.json").read_text())["complete"]


def test_rerun_with_other_settings_in_the_same_folder_is_refused(tmp_path):
    reproduce(_quick(tmp_path / "study", arms=["bn-iid"]), log=None, figures=False)
    with pytest.raises(ReproduceError, match="other settings: steps \\(saved 60, now 80\\)"):
        reproduce(_quick(tmp_path / "study", arms=["bn-iid"], steps=80), log=None, figures=False)


def test_plots_without_matplotlib_say_how_to_install_it(monkeypatch):
    from minigrad import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install 'minigrad\\[train\\]'"):
        plots.accuracy_figure({"a": [([1, 2], [0.1, 0.2])]}, title="t")


def test_python_dash_m_shows_the_reproduce_options():
    result = subprocess.run(
        [sys.executable, "-m", "minigrad", "reproduce", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--quick", "--arms", "--seeds", "--labels-per-batch", "--train-subset", "--backend", "--out"):
        assert option in result.stdout


def test_quick_study_says_on_every_output_that_it_is_a_smoke_test(quick_study):
    table = (quick_study / "results.md").read_text()
    assert table.splitlines()[0] == "# Batch Renorm vs BatchNorm: smoke test (--quick), not results"
    assert "these numbers are not results" in table and "| regime | smoke test | paper |" in table
    assert "| regime | ours | paper |" not in table
    assert json.loads((quick_study / "results.json").read_text())["smoke_test"] is True
    info = json.loads((quick_study / "figures.json").read_text())
    assert all("smoke test" in meta["title"] for meta in info.values())


def test_quick_study_telemetry_is_sampled_during_the_ramp(quick_study):
    """Evaluations (which sample the clipping telemetry) see the warm-up clip every r and d, then the ramp let them go."""
    from minigrad.reproduce import telemetry_curves

    run_dirs = list((quick_study / "runs").glob("brn-*"))
    assert run_dirs
    for run_dir in run_dirs:
        layers = telemetry_curves(run_dir)
        assert layers, run_dir.name
        for name in ("r_clipped_fraction", "d_clipped_fraction"):
            samples = [value for series in layers.values() for value in series[name]]
            assert max(samples) > 0.5, (run_dir.name, name)  # the warm-up: r_max = 1, d_max = 0 clip nearly all
            assert min(samples) < max(samples), (run_dir.name, name)  # the ramp has opened the limits


def test_the_legend_of_an_accuracy_figure_covers_no_curve():
    pytest.importorskip("matplotlib")
    from minigrad import plots

    curves = {f"arm{i}": [(list(range(0, 100, 10)), [0.1 * i + 0.005 * s for s in range(10)])] for i in range(5)}
    figure = plots.accuracy_figure(curves, title="t", labels={name: name + " (a long label)" * 3 for name in curves})
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (ax,) = figure.axes
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert legend.y1 <= ax.get_window_extent(renderer).y0 and legend.y0 >= 0  # below the axes, inside the figure


def test_reproduce_console_marks_a_quick_study(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--arms", "bn-iid", "--steps", "4", "--no-progress", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("reproduce: smoke test (--quick)") and "(4 steps per run)" in printed[0]
    assert "(smoke test)" in printed[1] and "not results" in printed[-1]
