"""Seeded random numbers that land on any backend: :class:`Generator`, the default one, :func:`manual_seed`.

NumPy's PCG64 draws on the host for NumPy and array-api-strict, so both give
the same numbers for one seed; CuPy draws on the GPU with its own generator,
seeded from the host one. The libraries are reached through
:mod:`minigrad.backend` (``backend.host``, ``backend.import_library``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minigrad import backend


class Generator:
    """A seeded random-number generator that makes arrays on any backend.

    The state can be saved and restored (checkpoints) while nothing has been
    drawn on a CuPy device.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._host = backend.host.random.default_rng(seed)
        self._seed = seed
        self._cupy = None

    def _device_rng(self):
        if self._cupy is None:
            cupy = backend.import_library("cupy")
            self._cupy = cupy.random.default_rng(self._host.integers(2**63))
        return self._cupy

    def _draw(self, kind: str, shape: Sequence[int], dtype: Any, library: str | None) -> backend.Array:
        """Samples of distribution `kind` ("standard_normal" or "random") drawn where `library` wants them."""
        library = library or backend.active_backend()
        name = backend.dtype_name(dtype)
        if library == "cupy":
            return getattr(self._device_rng(), kind)(tuple(shape), dtype=name)
        return backend.from_numpy(getattr(self._host, kind)(tuple(shape)).astype(name), library)

    def normal(self, shape: Sequence[int], dtype: Any = "float32", library: str | None = None) -> backend.Array:
        """Standard normal samples of `shape` and `dtype` on `library` (default: active)."""
        return self._draw("standard_normal", shape, dtype, library)

    def uniform(self, shape: Sequence[int], dtype: Any = "float32", library: str | None = None) -> backend.Array:
        """Samples uniform on [0, 1) of `shape` and `dtype` on `library` (default: active)."""
        return self._draw("random", shape, dtype, library)

    @property
    def host(self) -> Any:
        """The host NumPy generator (for index shuffles and other host-side draws)."""
        return self._host

    def get_state(self) -> dict:
        """The generator's state as plain Python data (JSON-serialisable)."""
        if self._cupy is not None:
            raise NotImplementedError("saving the state of a CuPy-side generator is not supported yet")
        return self._host.bit_generator.state

    def set_state(self, state: dict) -> None:
        """Restore a state returned by :meth:`get_state`."""
        self._host.bit_generator.state = state
        self._cupy = None


_default_generator = Generator(0)


def default_generator() -> Generator:
    """The generator used where no generator is passed (seed it with :func:`manual_seed`)."""
    return _default_generator


def manual_seed(seed: int) -> Generator:
    """Reseed the default generator and return it."""
    global _default_generator
    _default_generator = Generator(seed)
    return _default_generator
