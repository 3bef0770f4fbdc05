"""The package's structure, guarded: who may import what, and what a normalization step costs.

* Only ``minigrad/backend.py`` imports an array library (numpy, cupy,
  array_api_compat, array_api_strict); everything else goes through it, and
  only ``minigrad/random.py`` and ``minigrad/array_extras.py`` take a device
  library's own module from it.
* The package's import graph (module-level imports) has no cycle.
* Every module belongs to one layer of ``docs/architecture.md``, and imports
  (anywhere in a module) run downwards but for one listed exception; imports
  inside functions close no circle but the one that exception closes.
* The core (``backend.py`` and ``tensor.py``) stays short enough to read in
  one sitting.
* ``minigrad/norm/`` does not import the training, reproduction or MPI code.
* A Batch Renorm training forward checks each argument once and copies
  nothing to the host.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, validate
from minigrad.norm import spec

PACKAGE = Path(mg.__file__).parent
ARRAY_LIBRARIES = {"numpy", "cupy", "cupyx", "array_api_compat", "array_api_strict"}
UPPER_LAYERS = (
    "minigrad.train",
    "minigrad.reproduce",
    "minigrad.cli",
    "minigrad.run",
    "minigrad.distributed",
    "minigrad.data",
)
# The layers of docs/architecture.md, lowest first: a module may import from its own layer and those below.
LAYERS = (
    ("array libraries", ("minigrad.backend", "minigrad.array_extras")),
    (
        "engine",
        (
            "minigrad.tensor",
            "minigrad.random",
            "minigrad.module",
            "minigrad.validate",
            "minigrad.creation",
            "minigrad.gradcheck",
        ),
    ),
    ("ops", ("minigrad.ops",)),
    ("normalization", ("minigrad.norm",)),
    (
        "layers, optimizers, data, files",
        ("minigrad.nn", "minigrad.optim", "minigrad.data", "minigrad.models", "minigrad.npz", "minigrad.checkpoint"),
    ),
    ("public names", ("minigrad",)),  # the package's __init__ alone, not its submodules
    (
        "running",
        (
            "minigrad.threads",
            "minigrad.distributed",
            "minigrad.train",
            "minigrad.train_config",
            "minigrad.evaluation",
            "minigrad.run_log",
            "minigrad.resume",
            "minigrad.runfolder",
            "minigrad.memory",
            "minigrad.arms",
            "minigrad.report",
            "minigrad.reproduce",
            "minigrad.sweep",
            "minigrad.aggregate",
            "minigrad.plots",
            "minigrad.studies",
            "minigrad.cli",
            "minigrad.__main__",
        ),
    ),
)
# The imports allowed to run upwards, each with its reason; at most one.
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}  # (lower, upper): why; at most one entry
CORE = ("backend.py", "tensor.py")
CORE_LINE_LIMIT = 680


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Modules imported when `path` is imported: module-level statements only (not those inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: {m for m in top_level_imports(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as a list of modules, or None (a package importing its own submodules is no cycle)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package's __init__ importing its own submodule
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_of(module: str) -> int | None:
    """The index in LAYERS of `module`'s layer (the longest matching prefix), or None when it has none."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "minigrad" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def all_imports(path: Path, modules: set[str]) -> set[str]:
    """The minigrad modules `path` imports anywhere (inside functions too): ``from a import b`` names a.b if a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                names.add(full if full in modules else node.module)
    return names


def upward_imports(imports: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The (importer, imported) pairs of `imports` where the imported module's layer is above the importer's."""
    return {
        (name, target)
        for name, targets in imports.items()
        for target in targets
        if not target.startswith(name + ".") and layer_of(target) > layer_of(name)
    }


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in all_modules() if layer_of(name) is None)
    assert unplaced == [], f"add these modules to LAYERS here and to the table in docs/architecture.md: {unplaced}"


def test_imports_run_downwards_but_for_the_one_listed_exception():
    modules = all_modules()
    imports = {name: all_imports(path, set(modules)) for name, path in modules.items()}
    upward = upward_imports(imports)
    assert len(UPWARD_ALLOWED) <= 1, "at most one import may run from a lower layer up"
    assert upward == set(UPWARD_ALLOWED), (
        f"imports from a lower layer up: {sorted(upward - set(UPWARD_ALLOWED))}; "
        f"listed but gone: {sorted(set(UPWARD_ALLOWED) - upward)}"
    )


def test_deferred_imports_close_no_circle_but_through_the_listed_exception():
    """Imports inside functions too: the only circle allowed is the one the listed upward import closes."""
    modules = all_modules()
    graph = {name: all_imports(path, set(modules)) - {name} for name, path in modules.items()}
    for importer, imported in UPWARD_ALLOWED:
        graph[importer].discard(imported)
    assert find_cycle(graph) is None


def test_the_upward_check_sees_an_upward_import():
    imports = {"minigrad.tensor": {"minigrad.backend", "minigrad.nn.layers"}, "minigrad.ops.shape": {"minigrad.ops"}}
    assert upward_imports(imports) == {("minigrad.tensor", "minigrad.nn.layers")}
    assert layer_of("minigrad") < layer_of("minigrad.train") and layer_of("minigrad.nn") < layer_of("minigrad")


def test_the_core_reads_in_one_sitting():
    lines = {name: len((PACKAGE / name).read_text(encoding="utf-8").splitlines()) for name in CORE}
    assert sum(lines.values()) <= CORE_LINE_LIMIT, (
        f"the core {lines} has {sum(lines.values())} lines, over {CORE_LINE_LIMIT}: it should read in one sitting; "
        "move what has a job of its own next to its users (as minigrad/random.py, array_extras.py, ops/scatter.py "
        "and ops/conversion.py hold random numbers, library calls the standard lacks, scatter-add and host "
        "conversions)"
    )


def test_only_the_backend_imports_an_array_library():
    offenders = {}
    for name, path in all_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        if imported & ARRAY_LIBRARIES and name != "minigrad.backend":
            offenders[name] = sorted(imported & ARRAY_LIBRARIES)
    assert offenders == {}


def test_only_the_random_numbers_reach_a_device_library_through_the_backend():
    """``backend.import_library`` hands out a library module itself; outside the backend only random.py and
    array_extras.py (the library calls the standard lacks) use it."""
    callers = set()
    for name, path in all_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "import_library" and name != "minigrad.backend":
                callers.add(name)
    assert callers == {"minigrad.random", "minigrad.array_extras"}


def test_the_import_graph_has_no_cycle():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"p": {"p.q"}, "p.q": {"r"}, "r": set()}) is None


def test_norm_does_not_import_training_reproduction_or_mpi_code():
    offenders = {}
    for name, path in all_modules().items():
        if name == "minigrad.norm" or name.startswith("minigrad.norm."):
            upward = {m for m in top_level_imports(path) if m.startswith(UPPER_LAYERS)}
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):  # imports inside functions count too here
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(UPPER_LAYERS):
                    upward.add(node.module)
            if upward:
                offenders[name] = sorted(upward)
    assert offenders == {}


# ----------------------------------------------------------------------------
# What one Batch Renorm training step costs: checks and host copies, counted
# ----------------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch):
    """Counts of every validator call and every device-to-host copy, by name."""
    counts: dict[str, int] = {}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("positive_int", "non_negative_int", "number_at_least", "positive_number", "fraction", "is_real"):
        counting(validate, name)
    for name in ("check_x", "check_affine", "check_buffer", "check_running_stats"):
        counting(spec, name)
    monkeypatch.setattr("minigrad.norm.layers.check_x", spec.check_x)
    monkeypatch.setattr("minigrad.norm.layers.check_running_stats", spec.check_running_stats)
    for name in ("to_numpy", "item"):
        counting(backend, name)
    return counts


@pytest.mark.parametrize("limits", ["numbers", "schedule"])
def test_a_batch_renorm_training_step_checks_its_input_once_and_copies_nothing_to_the_host(counted, limits):
    r_max, d_max = (
        (3.0, 5.0) if limits == "numbers" else mg.nn.renorm_schedule(warmup_steps=1, r_max_ramp_end=5, d_max_ramp_end=5)
    )
    layer = mg.nn.BatchRenorm2d(3, r_max=r_max, d_max=d_max, virtual_batch_size=2)
    x = mg.Tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)), requires_grad=True)
    layer(x)  # the first forward checks the running statistics it was built with
    assert counted.pop("check_running_stats") == 1
    counted.clear()
    for _ in range(3):
        y = layer(x)
        (y * y).sum().backward()
    expected = {"check_x": 3}  # the input, once per step; no host copy
    if limits == "schedule":  # a schedule's limits are new numbers each step: each checked once (r and d) ...
        expected |= {"is_real": 6, "non_negative_int": 6}  # ... and the schedule checks the step it is given
    assert counted == expected
    record = layer.telemetry  # reading the telemetry is the one copy, when asked
    assert counted.get("to_numpy") == 1 and record["step"] == 3


def test_the_counter_sees_a_host_copy():
    """The test above can fail: the functional form checks its running statistics, a host copy."""
    import minigrad.norm.layers  # noqa: F401

    counts = {}
    original = backend.to_numpy
    try:
        backend.to_numpy = lambda a: (counts.__setitem__("n", counts.get("n", 0) + 1), original(a))[1]
        running_mean, running_std = backend.from_numpy(np.zeros(3)), backend.from_numpy(np.ones(3))
        mg.nn.functional.batch_renorm(
            mg.Tensor(np.ones((4, 3)) * np.arange(4)[:, None]), None, None, running_mean, running_std, True
        )
    finally:
        backend.to_numpy = original
    assert counts["n"] >= 2
