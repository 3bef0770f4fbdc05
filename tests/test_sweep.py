"""The schedule of a run (warm-up rules, explicit ramps and limits) and ``minigrad reproduce --vary``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.norm import schedule as S

pytestmark = pytest.mark.backends("numpy")  # schedules and end-to-end runs; no array code of their own

# ----------------------------------------------------------------------------
# The schedule of a run: renorm_schedule_for_run
# ----------------------------------------------------------------------------


def test_the_default_rule_is_one_constant_and_keeps_the_warmup_five_time_constants_long():
    assert S.DEFAULT_WARMUP_RULE == "time-constants" and S.DEFAULT_WARMUP_RULE in S.WARMUP_RULES
    assert mg.nn.renorm_schedule_for_run is S.renorm_schedule_for_run
    default = S.renorm_schedule_for_run(1000, momentum=0.1)
    assert default == S.renorm_schedule_for_run(1000, momentum=0.1, rule="time-constants")
    assert (default.warmup_steps, default.d_max_ramp_end, default.r_max_ramp_end) == (50, 204, 320)


def test_proportional_rule_is_the_paper_recipe_shrunk():
    for total in (300, 1000, 13_000, 130_000):
        assert S.renorm_schedule_for_run(total, 0.01, "proportional") == mg.nn.renorm_schedule().scaled(total)
    short = S.renorm_schedule_for_run(13_000, rule="proportional")  # no rate needed
    assert (short.warmup_steps, short.d_max_ramp_end, short.r_max_ramp_end) == (500, 2500, 4000)


@given(
    total=st.integers(1, 200_000),
    rate=st.floats(1e-4, 1.0),
    r_final=st.floats(1.0, 10.0),
    d_final=st.floats(0.0, 10.0),
)
def test_time_constants_rule_waits_five_time_constants_or_the_whole_run(total, rate, r_final, d_final):
    schedule = S.renorm_schedule_for_run(total, rate, "time-constants", r_max_final=r_final, d_max_final=d_final)
    proportional = S.renorm_schedule_for_run(total, rate, "proportional", r_max_final=r_final, d_max_final=d_final)
    assert schedule.warmup_steps == min(total, max(proportional.warmup_steps, math.ceil(5 / rate)))
    assert schedule.warmup_steps >= proportional.warmup_steps
    assert (1 - rate) ** schedule.warmup_steps < 0.01 or schedule.warmup_steps == total  # e^-5 of (0, 1) left
    for step in (0, schedule.warmup_steps):
        assert (schedule.r_max(step), schedule.d_max(step)) == (1.0, 0.0)
    assert (schedule.r_max(10**9), schedule.d_max(10**9)) == (r_final, d_final)
    if schedule.warmup_steps > proportional.warmup_steps:  # lengthened: the ramps start later and end by the end
        assert schedule.r_max_ramp_end <= total and schedule.d_max_ramp_end <= total


@given(
    total=st.integers(1, 100_000),
    rate=st.floats(1e-3, 1.0),
    rule=st.sampled_from(S.WARMUP_RULES),
    warmup=st.none() | st.integers(0, 10_000),
    ramp=st.none() | st.integers(0, 50_000),
    r_final=st.floats(1.0, 10.0),
    d_final=st.floats(0.0, 10.0),
)
def test_explicit_warmup_and_ramp_are_taken_as_given(total, rate, rule, warmup, ramp, r_final, d_final):
    schedule = S.renorm_schedule_for_run(total, rate, rule, warmup, ramp, r_final, d_final)
    derived = S.renorm_schedule_for_run(total, rate, rule, r_max_final=r_final, d_max_final=d_final)
    start = derived.warmup_steps if warmup is None else warmup
    assert schedule.warmup_steps == start
    assert (schedule.r_max_final, schedule.d_max_final) == (r_final, d_final)
    if ramp is not None:  # d_max's ramp keeps the paper's proportion: 20k steps for r_max's 35k
        assert schedule.r_max_ramp_end == start + ramp
        assert schedule.d_max_ramp_end == start + round(ramp * 20 / 35)
    elif warmup is None:
        assert schedule == derived
    else:  # the scaled ramp lengths, after the given warm-up
        assert schedule.r_max_ramp_end - start == round(35_000 * total / 130_000)
        assert schedule.d_max_ramp_end - start == round(20_000 * total / 130_000)
    for step in range(max(0, start - 2), start + 1):
        assert (schedule.r_max(step), schedule.d_max(step)) == (1.0, 0.0)
    assert schedule.r_max(schedule.r_max_ramp_end) == r_final and schedule.d_max(schedule.d_max_ramp_end) == d_final


def test_a_ramp_of_zero_jumps_to_the_final_limits_when_the_warmup_ends():
    schedule = S.renorm_schedule_for_run(100, 0.1, warmup=10, ramp=0, r_max_final=2.0, d_max_final=0.5)
    assert [schedule.r_max(s) for s in (9, 10, 11)] == [1.0, 2.0, 2.0]
    assert [schedule.d_max(s) for s in (9, 10, 11)] == [0.0, 0.5, 0.5]
    halfway = S.renorm_schedule_for_run(1000, 0.1, warmup=100, ramp=70)  # r_max 1 -> 3 over 70 steps, d_max over 40
    assert halfway.r_max(135) == pytest.approx(2.0) and halfway.d_max(120) == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 0}, r"total_steps: expected a positive integer, got 0"),
        ({"rule": "linear"}, r"rule: expected one of proportional, time-constants, got 'linear'"),
        ({"warmup": -1}, r"warmup: expected a non-negative integer, got -1"),
        ({"warmup": 2.5}, r"warmup: expected a non-negative integer, got 2.5"),
        ({"ramp": -3}, r"ramp: expected a non-negative integer, got -3"),
        ({"r_max_final": 0.5}, r"r_max_final: expected a finite number >= 1, got 0.5"),
        ({"r_max_final": float("nan")}, r"r_max_final: expected a finite number >= 1, got nan"),
        ({"d_max_final": -1.0}, r"d_max_final: expected a finite number >= 0, got -1.0"),
        ({"d_max_final": float("inf")}, r"d_max_final: expected a finite number >= 0, got inf"),
        ({"momentum": None}, r"momentum: the time-constants rule .* needs the update rate Δ"),
        ({"momentum": 1.5}, r"momentum: expected a number in \[0, 1\] .*got 1.5"),
        ({"momentum": float("nan")}, r"momentum: expected a number in \[0, 1\]"),
    ],
)
def test_schedule_for_run_refuses_nonsense_naming_the_argument(kwargs, message):
    arguments = {"total_steps": 100, "momentum": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        S.renorm_schedule_for_run(**arguments)


# ----------------------------------------------------------------------------
# --vary: parsing
# ----------------------------------------------------------------------------


def test_parse_vary_order_and_folders_do_not_depend_on_the_order_given():
    from minigrad.sweep import combination_folder, parse_vary

    one = parse_vary(["renorm-ramp=10,0", "norm-momentum=0.1,1e-2", "d-max-final=2"])
    other = parse_vary(["d-max-final=2.0", "norm-momentum=0.1,0.01", "renorm-ramp=10,0"])
    assert one == other == {"norm-momentum": (0.1, 0.01), "renorm-ramp": (10, 0), "d-max-final": (2.0,)}
    assert list(one) == ["norm-momentum", "renorm-ramp", "d-max-final"]
    values = {"d-max-final": 2.0, "renorm-ramp": 10, "norm-momentum": 0.01}
    assert combination_folder(values) == "norm-momentum=0.01_renorm-ramp=10_d-max-final=2.0"
    assert combination_folder({}) == "not-varied"


@given(
    momenta=st.lists(st.floats(0, 1), min_size=1, max_size=4, unique=True),
    ramps=st.lists(st.integers(0, 10**6), min_size=1, max_size=4, unique=True),
    rules=st.lists(st.sampled_from(S.WARMUP_RULES), min_size=1, max_size=2, unique=True),
)
def test_every_combination_has_its_own_folder_and_the_text_parses_back(momenta, ramps, rules):
    from minigrad.sweep import combination_folder, combinations, parse_vary, value_text

    given = (("renorm-warmup-rule", rules), ("renorm-ramp", ramps), ("norm-momentum", momenta))
    items = [f"{name}={','.join(map(value_text, values))}" for name, values in given]
    vary = parse_vary(items)
    assert vary == {"norm-momentum": tuple(momenta), "renorm-ramp": tuple(ramps), "renorm-warmup-rule": tuple(rules)}
    grid = combinations(vary, list(vary))
    assert len(grid) == len(momenta) * len(ramps) * len(rules)
    folders = [combination_folder(values) for values in grid]
    assert len(set(folders)) == len(folders) and all("/" not in f and " " not in f for f in folders)
    for values, folder in zip(grid, folders):  # the folder names its values, and parses back to them
        assert parse_vary(folder.split("_")) == {name: (value,) for name, value in values.items()}


def test_sweep_figure_marks_defaults_on_the_axis_and_draws_one_line_per_series():
    pytest.importorskip("matplotlib")
    from minigrad import plots

    values = [0.003, 0.01, 0.1]
    series = {"brn-iid": [(v, [0.5 + v, 0.6 + v]) for v in values], "bn-iid (does not apply)": [(v, [0.4]) for v in values]}
    ticks = {0.01: "0.01 [default]", 0.1: "0.1"}
    figure = plots.sweep_figure(series, values, ticks, xlabel="Δ", title="t", references=["bn-iid (does not apply)"])
    (ax,) = figure.axes
    assert plots.count_lines(figure) == [2] and ax.get_xscale() == "log"
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels == ["0.003", "0.01\n[default]", "0.1"]
    solid, dashed = ax.get_lines()
    assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
    assert list(solid.get_ydata()) == pytest.approx([100 * (0.55 + v) for v in values])
    rules = plots.sweep_figure({"brn": [("proportional", [0.3]), ("time-constants", [0.4])]},
                               ["proportional", "time-constants"], {}, xlabel="rule", title="t")  # fmt: skip
    assert rules.axes[0].get_xscale() == "linear" and list(rules.axes[0].get_lines()[0].get_xdata()) == [0.0, 1.0]


def test_heatmap_shows_mean_and_spread_per_cell_and_leaves_missing_cells_blank():
    pytest.importorskip("matplotlib")
    from minigrad import plots

    cells = [[[0.5, 0.7], [0.9]], [[], [0.2, 0.2, 0.2]]]
    figure = plots.heatmap_figure(cells, ["0.01 [default]", "0.1"], ["a", "b"], ylabel="Δ", xlabel="rule", title="t")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["60.0\n± 14.1", "90.0", "20.0\n± 0.0"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    from minigrad.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    ("vary", "needles"),
    [
        (["warmup=1,2"], ["unknown name 'warmup'", "renorm-warmup"]),
        (["renorm-warmup"], ["expected NAME=V1,V2,...", "'renorm-warmup'"]),
        (["=1,2"], ["expected NAME=V1,V2,..."]),
        (["renorm-ramp="], ["renorm-ramp: no values given"]),
        (["renorm-ramp=,"], ["renorm-ramp: no values given"]),
        (["norm-momentum=0.1", "norm-momentum=0.3"], ["norm-momentum is given twice"]),
        (["renorm-warmup=-1"], ["renorm-warmup: expected an integer >= 0, got '-1'"]),
        (["renorm-ramp=2.5"], ["renorm-ramp: expected an integer >= 0, got '2.5'"]),
        (["norm-momentum=0.1,2"], ["norm-momentum: expected a number in [0, 1], got '2'"]),
        (["norm-momentum=nan"], ["norm-momentum: expected a number in [0, 1], got 'nan'"]),
        (["r-max-final=0.5"], ["r-max-final: expected a finite number >= 1, got '0.5'"]),
        (["d-max-final=-1"], ["d-max-final: expected a finite number >= 0, got '-1'"]),
        (["d-max-final=inf"], ["d-max-final: expected a finite number >= 0, got 'inf'"]),
        (["renorm-warmup-rule=linear"], ["renorm-warmup-rule: expected one of proportional, time-constants"]),
        (["d-max-final=1,1.0"], ["d-max-final: the value 1.0 is given twice"]),
        (["renorm-warmup=2", "renorm-warmup-rule=proportional"], ["renorm-warmup-rule", "renorm-warmup is varied"]),
    ],
)
def test_bad_vary_is_one_line_naming_vary_and_the_name(tmp_path, capsys, vary, needles):
    out = tmp_path / "sweep"
    argv = ["reproduce", "--quick", "--arms", "bn-iid,brn-iid", "--out", str(out), "--no-progress"]
    for item in vary:
        argv += ["--vary", item]
    status, _, err = _run(capsys, *argv)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigrad reproduce: error: --vary: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()


@pytest.mark.parametrize("also", [[], ["--vary", "norm-momentum=0.1,0.3"]])
def test_schedule_names_without_a_batch_renorm_arm_are_refused(tmp_path, capsys, also):
    out = tmp_path / "sweep"
    status, _, err = _run(capsys, "reproduce", "--quick", "--arms", "bn-iid,bn-micro", "--vary", "renorm-ramp=1,2",
                          *also, "--out", str(out))  # fmt: skip
    assert status == 2
    assert err.startswith("minigrad reproduce: error: --vary: renorm-ramp changes only Batch Renorm's schedule")
    assert "leave renorm-ramp out" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_vary_with_the_recurrent_study_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    status, _, err = _run(capsys, "reproduce", "--study", "recurrent", "--vary", "norm-momentum=0.1", "--out", str(out))
    assert status == 2
    assert err.startswith("minigrad reproduce: error: --vary: the sweep runs the arms of --study paper")
    assert not out.exists()


# ----------------------------------------------------------------------------
# --vary end to end: 2 arms x 2 x 2 values, 1 seed, 8 steps on digits
# ----------------------------------------------------------------------------

SWEEP = ["reproduce", "--quick", "--arms", "bn-iid,brn-iid", "--steps", "8", "--eval-every", "4", "--no-progress",
         "--vary", "renorm-warmup=2,4", "--vary", "norm-momentum=0.1,0.3"]  # fmt: skip
FOLDERS = {
    "norm-momentum=0.1/bn-iid-seed0", "norm-momentum=0.3/bn-iid-seed0",
    "norm-momentum=0.1_renorm-warmup=2/brn-iid-seed0", "norm-momentum=0.1_renorm-warmup=4/brn-iid-seed0",
    "norm-momentum=0.3_renorm-warmup=2/brn-iid-seed0", "norm-momentum=0.3_renorm-warmup=4/brn-iid-seed0",
}  # fmt: skip


@pytest.fixture(scope="module")
def sweep_study(tmp_path_factory) -> Path:
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    pytest.importorskip("matplotlib", reason="the figures need matplotlib")
    from minigrad.cli import main

    out = tmp_path_factory.mktemp("sweep") / "study"
    assert main([*SWEEP, "--out", str(out)]) == 0
    return out


def _run_folders(out) -> set[str]:
    return {f"{p.parent.parent.name}/{p.parent.name}" for p in (out / "sweep").glob("*/*/checkpoint.npz")}


def test_sweep_runs_every_arm_at_every_combination_in_its_own_folder(sweep_study):
    import json

    assert _run_folders(sweep_study) == FOLDERS
    for folder in FOLDERS:
        combination, run = folder.split("/")
        config = json.loads((sweep_study / "sweep" / combination / run / "config.json").read_text())
        values = dict(part.split("=") for part in combination.split("_"))
        assert config["norm_momentum"] == float(values["norm-momentum"])
        assert config["extra"]["varied"] == {k: (float(v) if k == "norm-momentum" else int(v)) for k, v in values.items()}
        if run.startswith("brn"):
            assert config["renorm_warmup"] == int(values["renorm-warmup"])
        else:
            assert config["norm"] == "bn" and config["renorm_warmup"] is None  # BatchNorm has no schedule
    assert not (sweep_study / "runs").exists()  # the plain study's folders are not touched


def test_sweep_results_json_keeps_every_run_with_its_values(sweep_study):
    import json

    document = json.loads((sweep_study / "results.json").read_text())
    assert document["vary"] == {"norm-momentum": [0.1, 0.3], "renorm-warmup": [2, 4]}
    assert document["complete"] and document["seeds"] == [0]
    assert len(document["runs"]) == 6
    assert {f"{r['combination']}/{r['arm']}-seed{r['seed']}" for r in document["runs"]} == FOLDERS
    for run in document["runs"]:
        assert 0 <= run["test_accuracy"] <= 1 and run["steps"] == 8
        assert set(run["varied"]) == ({"norm-momentum", "renorm-warmup"} if run["arm"] == "brn-iid" else {"norm-momentum"})
    brn = document["arms"]["brn-iid"]
    assert brn["varied"] == ["norm-momentum", "renorm-warmup"]
    assert [row["values"] for row in brn["combinations"]] == [
        {"norm-momentum": m, "renorm-warmup": w} for m in (0.1, 0.3) for w in (2, 4)
    ]
    for row in brn["combinations"]:
        warmup = row["values"]["renorm-warmup"]  # the schedule run: the given warm-up, then the scaled ramps
        assert row["schedule"] == {"warmup": warmup, "d_max_ramp_end": warmup + 1, "r_max_ramp_end": warmup + 2}
        (run,) = [r for r in document["runs"] if r["arm"] == "brn-iid" and r["varied"] == row["values"]]
        assert row["summary"]["test_accuracy"] == {"mean": run["test_accuracy"], "std": 0.0, "n": 1}
    bn = document["arms"]["bn-iid"]
    assert bn["varied"] == ["norm-momentum"] and [r["schedule"] for r in bn["combinations"]] == [None, None]
    assert document["defaults"]["renorm-warmup"] == {"minigrad": 8, "paper": 0}  # 5/Δ = 500 > 8 steps: all warm-up


def test_sweep_results_md_has_a_table_per_arm(sweep_study):
    table = (sweep_study / "results.md").read_text()
    assert table.splitlines()[0] == "# Batch Renorm sweep: smoke test (--quick), not results"
    assert "## bn-iid" in table and "## brn-iid" in table
    assert "| norm-momentum | renorm-warmup | schedule (warm-up, d_max end, r_max end) | test (final) |" in table
    assert "| norm-momentum | schedule (warm-up, d_max end, r_max end) | test (final) |" in table
    for momentum in ("0.1", "0.3"):
        mark = " [default]" if float(momentum) == mg.norm.DEFAULT_MOMENTUM else ""  # the value an unvaried run takes
        for warmup in ("2", "4"):
            assert f"| {momentum}{mark} | {warmup} | {warmup}, " in table


def test_sweep_writes_a_figure_per_varied_name(sweep_study):
    import json

    info = json.loads((sweep_study / "figures.json").read_text())
    assert set(info) == {"sweep_norm-momentum.png", "sweep_renorm-warmup.png", "sweep_heatmap_brn-iid.png"}
    for name, meta in info.items():
        assert (sweep_study / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "smoke test" in meta["title"]
    assert info["sweep_heatmap_brn-iid.png"] == {"vary": ["norm-momentum", "renorm-warmup"], "arm": "brn-iid",
                                                 "title": info["sweep_heatmap_brn-iid.png"]["title"]}  # fmt: skip
    assert info["sweep_norm-momentum.png"]["lines"] == [3]  # bn-iid, and brn-iid at each warm-up
    assert info["sweep_renorm-warmup.png"]["lines"] == [4]  # bn-iid (flat) and brn-iid, at each norm momentum
    assert info["sweep_renorm-warmup.png"]["series"][0].endswith("(renorm-warmup does not apply)")
    assert not list(sweep_study.glob(".*.tmp"))


def test_sweep_rerun_skips_finished_runs_and_a_changed_sweep_adds_its_own(sweep_study, capsys):
    from minigrad.cli import main

    before = {f: (sweep_study / "sweep" / f / "checkpoint.npz").read_bytes() for f in FOLDERS}
    assert main([*SWEEP, "--out", str(sweep_study)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, reusing") == 6
    argv = [*SWEEP, "--vary", "d-max-final=1", "--out", str(sweep_study)]  # a third name: new folders for brn only
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, reusing") == 2  # bn-iid: d_max does not apply, the same runs
    assert _run_folders(sweep_study) - FOLDERS == {
        f"norm-momentum={m}_renorm-warmup={w}_d-max-final=1.0/brn-iid-seed0" for m in ("0.1", "0.3") for w in (2, 4)
    }
    assert {f: (sweep_study / "sweep" / f / "checkpoint.npz").read_bytes() for f in FOLDERS} == before


def test_an_interrupted_sweep_finishes_the_rest(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")
    from minigrad.reproduce import ReproduceConfig, reproduce

    config = ReproduceConfig(quick=True, arms=["brn-iid"], steps=4, eval_every=2, out=str(tmp_path), progress=False,
                             vary=["renorm-ramp=0,2"])  # fmt: skip
    first = reproduce(config, log=None, stop_after=1, figures=False)
    assert first.interrupted and len(first.runs) == 1
    second = reproduce(config, log=None, figures=False)
    assert not second.interrupted and len(second.runs) == 2
    assert {r["combination"] for r in second.runs} == {"renorm-ramp=0", "renorm-ramp=2"}
