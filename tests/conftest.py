"""Shared test set-up: every test runs on each backend, and hypothesis profiles.

The `backend` fixture parametrizes the whole suite over NumPy, array-api-strict
and CuPy. array-api-strict implements the array API standard and nothing more,
so code that only works on NumPy fails here, on the CPU. CuPy runs where CUDA
exists and skips elsewhere. Mark a test ``@pytest.mark.backends("numpy")`` to
limit it (for end-to-end runs that test no array code of their own).

Hypothesis profiles: ``ci`` (default, quick), ``dev`` and ``intense``;
choose with HYPOTHESIS_PROFILE=intense.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import minigrad as mg

ALL_BACKENDS = ("numpy", "array_api_strict", "cupy")

_common = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=50, print_blob=True, **_common)
settings.register_profile("intense", max_examples=500, print_blob=True, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else ALL_BACKENDS
    params = [pytest.param(name, marks=pytest.mark.gpu) if name == "cupy" else name for name in names]
    metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest):
    """The name of the backend this test runs on (already made active)."""
    name = request.param
    if name == "cupy" and not mg.cuda_available():
        pytest.skip("CuPy backend: CuPy or a CUDA device is not available on this machine")
    with mg.using_backend(name):
        yield name


@pytest.fixture(autouse=True)
def _run_on_every_backend(backend: str):
    """Makes every test depend on `backend`, so the whole suite runs once per backend."""
    yield
