"""Every CuPy name minigrad calls exists in the installed CuPy, with a signature that accepts the call.

CuPy imports without a GPU (``pip install 'minigrad[gpu]'`` works on any
Linux machine), so a misspelled ``cupy.X``, a function that moved, or a
keyword that CuPy does not take can be caught on the CPU. The package's source
is scanned (AST) for

* attribute chains on the CuPy modules: ``cupy.X.Y`` and ``cupyx.Y`` where
  ``cupy`` / ``cupyx`` come from an import or from ``backend.import_library``,
  including a library variable used inside an ``if ... == "cupy":`` branch;
* calls ``xp.NAME(...)`` on an array-API namespace, which on CuPy is
  ``array_api_compat.cupy``;
* the few names called through ``getattr`` (listed below, and checked to still
  be in the source).

Each name is looked up in CuPy; a call with keywords is bound against
``inspect.signature`` where CuPy exposes one (its Cython functions and ufuncs
often do not: ufuncs are checked for their number of inputs, the others for
existence only). The scan itself runs
everywhere; the look-ups run where CuPy is importable and skip elsewhere.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest

import minigrad as mg
from tests import fake_cupy

pytestmark = pytest.mark.backends("numpy")  # a scan of the source: once is enough

PACKAGE = Path(mg.__file__).parent
CUPY_MODULES = ("cupy", "cupyx")
# Names reached through getattr(generator, kind) in random.Generator._draw: (chain, text that must be in random.py)
DYNAMIC = (
    (("cupy", "random", "Generator", "standard_normal"), '"standard_normal"'),
    (("cupy", "random", "Generator", "random"), '"random"'),
)


@dataclass(frozen=True)
class Use:
    """One use of a CuPy name: where, the attribute chain, and the call's shape (None when not called)."""

    where: str
    chain: tuple[str, ...]
    positional: int | None = None
    keywords: tuple[str, ...] = ()


def _chain(node: ast.expr) -> tuple[ast.expr, list[str]]:
    """The base of an attribute chain and its attribute names, outermost last (``a.b.c`` -> a, [b, c])."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return node, names[::-1]


def _is_import_library(node: ast.expr, literal_cupy: bool) -> bool:
    """True for a call ``import_library(...)`` (inside the backend) or ``backend.import_library(...)``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    named = isinstance(func, ast.Name) and func.id == "import_library"
    attribute = isinstance(func, ast.Attribute) and func.attr == "import_library"
    if not (named or attribute):
        return False
    if not literal_cupy:
        return True
    return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value in CUPY_MODULES


def _mentions_cupy(test: ast.expr) -> bool:
    return any(isinstance(n, ast.Constant) and n.value == "cupy" for n in ast.walk(test))


class _Scanner(ast.NodeVisitor):
    """Collects :class:`Use`\\ s in one module."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.uses: list[Use] = []
        self.cupy_names: dict[str, str] = {}  # local name -> "cupy" or "cupyx"
        self.library_names: set[str] = set()  # names bound to import_library(<variable>)
        self.cupy_branch = 0  # depth of `if ... "cupy" ...:` bodies around the current node

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in CUPY_MODULES:
                self.cupy_names[alias.asname or alias.name] = alias.name

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Name) and _is_import_library(node.value, literal_cupy=True):
                self.cupy_names[target.id] = node.value.args[0].value
            elif isinstance(target, ast.Name) and _is_import_library(node.value, literal_cupy=False):
                self.library_names.add(target.id)
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        guarded = _mentions_cupy(node.test)
        self.cupy_branch += guarded
        for child in node.body:
            self.visit(child)
        self.cupy_branch -= guarded
        for child in node.orelse:
            self.visit(child)

    def _root(self, base: ast.expr) -> tuple[str, ...] | None:
        if isinstance(base, ast.Name) and base.id in self.cupy_names:
            return (self.cupy_names[base.id],)
        if isinstance(base, ast.Name) and base.id in self.library_names and self.cupy_branch:
            return ("cupy",)
        if isinstance(base, ast.Name) and base.id == "xp":
            return ("xp",)
        if _is_import_library(base, literal_cupy=True):
            return (base.args[0].value,)
        return None

    def _record(self, node: ast.expr, call: ast.Call | None) -> bool:
        base, names = _chain(node)
        root = self._root(base)
        if root is None or not names:
            return False
        if call is None:
            self.uses.append(Use(self.where, root + tuple(names)))
        else:
            keywords = tuple(k.arg for k in call.keywords if k.arg is not None)
            self.uses.append(Use(self.where, root + tuple(names), len(call.args), keywords))
        return True

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Attribute) and self._record(node.func, node):
            base, _ = _chain(node.func)
            self.visit(base)
        else:
            self.visit(node.func)
        for arg in (*node.args, *(k.value for k in node.keywords)):
            self.visit(arg)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self._record(node, None):
            self.generic_visit(node)


def scan() -> list[Use]:
    """Every use of a CuPy name (or an ``xp.`` namespace name) in the package's source."""
    uses: list[Use] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        scanner = _Scanner(str(path.relative_to(PACKAGE.parent)))
        scanner.visit(ast.parse(path.read_text(encoding="utf-8")))
        uses.extend(scanner.uses)
    random_source = (PACKAGE / "random.py").read_text(encoding="utf-8")
    for chain, text in DYNAMIC:
        assert text in random_source, f"{text} no longer in random.py: update DYNAMIC in {__file__}"
        uses.append(Use("minigrad/random.py (getattr)", chain, 1, ("dtype",)))
    return uses


def resolve(chain: tuple[str, ...], roots: dict[str, object]) -> object:
    """The object `chain` names, importing submodules on the way; AttributeError naming the missing part."""
    obj = roots[chain[0]]
    for i, name in enumerate(chain[1:], start=1):
        if hasattr(obj, name):
            obj = getattr(obj, name)
            continue
        dotted = ".".join(chain[: i + 1])
        if inspect.ismodule(obj):
            try:
                obj = importlib.import_module(dotted)
                continue
            except ImportError:
                pass
        raise AttributeError(f"{dotted} does not exist")
    return obj


def incompatibility(obj: object, use: Use) -> str | None:
    """Why the call in `use` would not bind to `obj`'s signature, or None (also when there is no signature)."""
    if use.positional is None:
        return None
    if not callable(obj):
        return "is not callable"
    nin = getattr(obj, "nin", None)  # a ufunc (NumPy's or CuPy's): no signature, but its arity
    if isinstance(nin, int):
        return None if use.positional <= nin + obj.nout else f"is a ufunc of {nin} inputs, called with {use.positional}"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # a Cython function without an introspectable signature: existence only
    try:
        signature.bind(*([None] * use.positional), **dict.fromkeys(use.keywords))
    except TypeError as exc:
        return f"does not accept {use.positional} positional argument(s) and keywords {list(use.keywords)}: {exc}"
    return None


def check(uses: list[Use], roots: dict[str, object]) -> list[str]:
    """One line per use that does not resolve or whose call does not fit."""
    problems = []
    for use in uses:
        shown = ".".join(use.chain)
        try:
            obj = resolve(use.chain, roots)
        except AttributeError as exc:
            problems.append(f"{use.where}: {shown}: {exc}")
            continue
        reason = incompatibility(obj, use)
        if reason:
            problems.append(f"{use.where}: {shown} {reason}")
    return problems


# ----------------------------------------------------------------------------
# The scan (everywhere)
# ----------------------------------------------------------------------------


def test_the_scan_finds_the_cupy_names_the_backend_calls():
    chains = {use.chain for use in scan()}
    for expected in (
        ("cupy", "cuda", "runtime", "getDeviceCount"),
        ("cupy", "cuda", "Device"),
        ("cupy", "asarray"),
        ("cupy", "lib", "stride_tricks", "as_strided"),
        ("cupy", "random", "default_rng"),
        ("cupyx", "scatter_add"),
    ):
        assert expected in chains
    namespace_names = {chain[1] for chain in chains if chain[0] == "xp"}
    assert {"sum", "zeros", "reshape", "permute_dims", "sqrt", "where"} <= namespace_names


def test_the_check_reports_a_missing_name_and_a_keyword_that_does_not_fit():
    import types

    def zeros(shape, *, dtype=None):
        return shape

    root = types.SimpleNamespace(zeros=zeros)
    uses = [Use("x.py", ("cupy", "zerros"), 1), Use("x.py", ("cupy", "zeros"), 1, ("device",))]
    problems = check(uses, {"cupy": root})
    assert len(problems) == 2 and "cupy.zerros does not exist" in problems[0] and "device" in problems[1]
    assert check([Use("x.py", ("cupy", "zeros"), 1, ("dtype",))], {"cupy": root}) == []
    import numpy as np

    ufuncs = {"cupy": types.SimpleNamespace(exp=np.exp)}
    assert check([Use("x.py", ("cupy", "exp"), 2)], ufuncs) == []  # x and out
    assert "ufunc of 1 inputs" in check([Use("x.py", ("cupy", "exp"), 3)], ufuncs)[0]


def test_the_cupy_stand_in_has_every_cupy_name_minigrad_uses():
    """tests/fake_cupy.py must offer what the package calls, or the stand-in tests would not run its CuPy branches."""
    uses = [use for use in scan() if use.chain[0] in CUPY_MODULES and "Generator" not in use.chain]
    with fake_cupy.installed():
        import cupy
        import cupyx

        assert check(uses, {"cupy": cupy, "cupyx": cupyx}) == []


# ----------------------------------------------------------------------------
# Against the installed CuPy (where it imports; no GPU needed)
# ----------------------------------------------------------------------------


def _import_cupy():
    try:
        import cupy
        import cupyx
    except ImportError as exc:
        pytest.skip(f"CuPy is not installed ({exc}); pip install 'minigrad[gpu]' to check its API without a GPU")
    return cupy, cupyx


def test_every_cupy_name_exists_with_a_compatible_signature():
    cupy, cupyx = _import_cupy()
    uses = [use for use in scan() if use.chain[0] in CUPY_MODULES]
    assert check(uses, {"cupy": cupy, "cupyx": cupyx}) == []


def test_array_api_compat_cupy_imports_and_has_every_namespace_name_used():
    _import_cupy()
    xp = importlib.import_module("array_api_compat.cupy")
    uses = [use for use in scan() if use.chain[0] == "xp"]
    assert uses
    assert check(uses, {"xp": xp}) == []
