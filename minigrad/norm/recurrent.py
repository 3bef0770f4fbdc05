"""Normalization inside a recurrence: one pre-activation normalized at every timestep, five ways.

A recurrent cell computes its pre-activations again at each timestep t from
x_t and h_{t−1}. Recurrent batchnorm (Cooijmans et al., 2016) normalizes the
input-to-hidden and hidden-to-hidden terms separately, and an LSTM's cell
state before its output tanh, each with a small γ (0.1). A
:class:`RecurrentNorm` is one such normalization; ``mode`` chooses how:

* ``"none"``: the identity (no parameters);
* ``"layer"``: layer norm over the features of each example (no batch
  statistics, so nothing differs between training and inference);
* ``"batch-per-step"``: batchnorm with separate moving averages for each
  timestep up to ``max_steps`` (the longest training sequence); a later
  timestep uses (and in training updates) the last ones. Cooijmans et al.'s
  method: each timestep's update is its own, right after that timestep;
* ``"batch-shared"``: batchnorm with one set of moving averages for every
  timestep; training normalizes each timestep by its own batch statistics,
  inference by the shared averages (the naive version, whose training and
  inference outputs differ whenever the statistics drift over time);
* ``"renorm-shared"``: section 5's proposal for Batch Renorm. One μ, σ for
  all timesteps; at timestep t the batch statistics μ_B,t, σ_B,t are
  corrected towards them with r_t = clip(σ_B,t/σ, 1/r_max, r_max) and
  d_t = clip((μ_B,t − μ)/σ, −d_max, d_max), held constant in the gradient.

**The update over timesteps** (both shared modes). μ and σ are read, never
written, during a training sequence, so every timestep's r_t, d_t use the
same μ, σ; when the sequence ends they are updated once, from all T timesteps:

    μ := μ + Δ · ((1/T) Σ_t μ_B,t − μ),   σ := σ + Δ · ((1/T) Σ_t σ_B,t − σ)

This is the ghost-batch rule of :func:`~minigrad.norm.kernels.running_stats_update`
with the timesteps as the groups (each timestep's batch counts equally), and
it is computed by that kernel: :func:`timesteps_as_groups` stacks the
timesteps' caches into one cache of T groups. One update per sequence,
rather than T, keeps Δ's meaning (how fast μ and σ forget, in training steps)
independent of the sequence length.

A sequence is delimited by :meth:`RecurrentNorm.sequence` (the recurrent
layers of :mod:`minigrad.nn.recurrent` enter it around their loop); a call
outside one is a sequence of one timestep. The kernels, Functions and checks
are those of Batch Norm and Batch Renorm (:mod:`minigrad.norm.functional`);
nothing here re-derives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from minigrad import backend, validate
from minigrad.module import Module, Parameter
from minigrad.norm import functional as NF
from minigrad.norm import kernels as K
from minigrad.norm.layernorm import layer_norm
from minigrad.norm.spec import NormSpec, RenormLimits, check_x
from minigrad.tensor import Tensor

np = backend.host
Array = Any
Limit = float | Callable[[int], float]

MODES = ("none", "layer", "batch-per-step", "batch-shared", "renorm-shared")
BATCH_MODES = ("batch-per-step", "batch-shared", "renorm-shared")
GAMMA_INIT = 0.1  # Cooijmans et al.: γ = 0.1 keeps tanh and the gates out of saturation at the start


def timesteps_as_groups(caches: Sequence[K.NormCache]) -> K.NormCache:
    """The caches of T timesteps (one group each) as one cache of T groups, for the kernels' ghost-batch rules.

    :func:`~minigrad.norm.kernels.running_stats_update` of the result is the
    update from the means over t of μ_B,t and σ_B,t, and
    :func:`~minigrad.norm.kernels.clip_statistics` the clipping over every
    (timestep, channel). ``x_bn`` is the first timestep's: only its shape is
    read (the values per group).
    """
    xp = backend.namespace(caches[0].mu_b)

    def joined(name: str) -> Array | None:
        values = [getattr(c, name) for c in caches]
        return None if any(v is None for v in values) else xp.concat(values, axis=0)

    first = caches[0]
    return K.NormCache(
        first.x_bn, joined("mu_b"), joined("sigma_b"), first.gamma, first.input_shape, first.axes,
        joined("r"), joined("d"), joined("r_unclipped"), joined("d_unclipped"),
    )  # fmt: skip


class RecurrentNorm(Module):
    """One normalization of a (N, C) pre-activation at each timestep of a recurrence; see the module docstring.

    Parameters: ``weight`` (γ, initialised to `weight_init`, 0.1) and, with
    `bias`, ``bias`` (β, 0); none for ``"none"``. Buffers (batch modes):
    ``running_mean`` and ``running_std``, shape (C,) for the shared modes and
    (max_steps, C) for ``"batch-per-step"``, and ``step``, the training
    sequences so far (it drives a schedule of r_max and d_max).
    """

    def __init__(
        self,
        num_features: int,
        mode: str = "none",
        *,
        max_steps: int | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        r_max: Limit = 3.0,
        d_max: Limit = 5.0,
        weight_init: float = GAMMA_INIT,
        bias: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        self.num_features = validate.positive_int("num_features", num_features)
        if mode not in MODES:
            raise ValueError(f"norm: expected one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        object.__setattr__(self, "spec", NormSpec(eps, momentum))
        if mode == "batch-per-step":
            self.max_steps = validate.positive_int("max_steps", max_steps, owner="batch-per-step normalization")
        elif max_steps is not None:
            self.max_steps = validate.positive_int("max_steps", max_steps)
        else:
            self.max_steps = None
        for name, limit in (("r_max", r_max), ("d_max", d_max)):
            if not (callable(limit) or validate.is_real(limit)):
                raise TypeError(f"{name}: expected a number or a callable of the step, got {type(limit).__name__}")
        self.r_max, self.d_max = r_max, d_max
        has_params = mode != "none"
        self.weight = Parameter(np.full(num_features, float(weight_init)), dtype=dtype) if has_params else None
        self.bias = Parameter(np.zeros(num_features), dtype=dtype) if has_params and bias else None
        if mode in BATCH_MODES:
            shape = (self.max_steps, num_features) if mode == "batch-per-step" else (num_features,)
            self.register_buffer("running_mean", backend.asarray(np.zeros(shape), dtype))  # μ
            self.register_buffer("running_std", backend.asarray(np.ones(shape), dtype))  # σ
            self.register_buffer("step", 0)
            self.limits_at(0)  # a bad schedule fails here
        self._open = 0  # depth of sequence() blocks
        self._caches: list[K.NormCache] = []  # this sequence's timesteps (shared modes)
        self._held: Sequence[tuple[Array, Array]] | None = None
        self.last_corrections: list[tuple[Array, Array]] = []  # (r_t, d_t) per timestep of the last sequence
        self._last_telemetry: tuple[int, RenormLimits, Array] | None = None

    # -- settings ---------------------------------------------------------------------------------

    eps = property(lambda self: self.spec.eps, doc="ε, added to the batch variance")
    momentum = property(lambda self: self.spec.momentum, doc="Δ, the update rate of the moving averages")

    def limits_at(self, step: int) -> RenormLimits:
        """r_max and d_max in force at training sequence `step` (numbers, or a schedule's values)."""
        r = self.r_max(step) if callable(self.r_max) else self.r_max
        d = self.d_max(step) if callable(self.d_max) else self.d_max
        return RenormLimits(r, d, source=f"at step {step}" if callable(self.r_max) or callable(self.d_max) else "")

    def state_size(self) -> int:
        """How many running statistics this normalization keeps (μ and σ values): its cost in state."""
        if self.mode not in BATCH_MODES:
            return 0
        return 2 * int(np.prod(self.running_mean.shape))

    # -- sequences --------------------------------------------------------------------------------

    @contextmanager
    def sequence(self) -> Iterator[RecurrentNorm]:
        """Delimit one training sequence: the shared averages are updated once, when it ends (nested blocks join)."""
        self._open += 1
        try:
            yield self
        finally:
            self._open -= 1
            if self._open == 0:
                self._end_sequence()

    def _end_sequence(self) -> None:
        caches, self._caches = self._caches, []
        if not caches:
            return
        stacked = timesteps_as_groups(caches)
        if self.mode in ("batch-shared", "renorm-shared"):
            NF.update_running_stats(self.running_mean, self.running_std, stacked, self.spec.momentum)
        if self.mode == "renorm-shared" and self._held is None:
            self._last_telemetry = (self.step, self.limits_at(self.step), K.clip_statistics(stacked))
        self.step += 1

    @contextmanager
    def holding(self, corrections: Sequence[tuple[Array, Array]]) -> Iterator[RecurrentNorm]:
        """Use the given (r_t, d_t), in the order of the sequence's calls, instead of computing them.

        Gradient checks hold them constant this way: run a training sequence,
        then hold its :attr:`last_corrections` while finite differences run.
        """
        if self.mode != "renorm-shared":
            raise ValueError(f"holding: only renorm-shared normalization has corrections r_t, d_t, got mode {self.mode!r}")
        self._held = list(corrections)
        try:
            yield self
        finally:
            self._held = None

    # -- forward ----------------------------------------------------------------------------------

    def forward(self, x: Tensor, step: int = 0) -> Tensor:
        """Normalize the pre-activation x (N, C) of timestep `step` (0 for the first)."""
        if self.mode == "none":
            return x
        if self.mode == "layer":
            return layer_norm(x, self.num_features, self.weight, self.bias, self.spec.eps)
        step = validate.non_negative_int("step", step)
        name = f"{type(self).__name__} ({self.mode})"
        if not isinstance(x, Tensor) or x.ndim != 2:
            got = f"shape {x.shape}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: x: expected a tensor of shape (N, {self.num_features}), got {got}")
        check_x(x, self.num_features, self.spec, self.training)
        with self.sequence():  # a call outside a sequence is a sequence of one timestep
            return self._normalize(x, step)

    def _row(self, step: int) -> int:
        return min(step, self.max_steps - 1)

    def _normalize(self, x: Tensor, step: int) -> Tensor:
        if self.mode == "batch-per-step":
            mean, std = self.running_mean[self._row(step), ...], self.running_std[self._row(step), ...]
        else:
            mean, std = self.running_mean, self.running_std
        if not self.training:
            return NF.normalize_inference(x, self.weight, self.bias, mean, std)
        position = len(self._caches)  # timesteps of this sequence so far
        if position == 0:
            self.last_corrections = []
        if self.mode == "renorm-shared":
            held = None if self._held is None else self._held[min(position, len(self._held) - 1)]
            r, d = (None, None) if held is None else held
            limits = self.limits_at(self.step)
            y, cache = NF.renormalize_train(x, self.weight, self.bias, mean, std, self.spec, limits, r=r, d=d)
            self.last_corrections.append((K.per_group(cache.r)[0, ...], K.per_group(cache.d)[0, ...]))
        else:
            y, cache = NF.normalize_train(x, self.weight, self.bias, self.spec)
        if self.mode == "batch-per-step":  # this timestep's own averages, updated now
            new_mean, new_std = K.running_stats_update(mean, std, cache, self.spec.momentum)
            row = self._row(step)
            self.running_mean[row, ...] = new_mean
            self.running_std[row, ...] = new_std
        self._caches.append(cache)
        return y

    @property
    def telemetry(self) -> dict[str, float]:
        """renorm-shared: the clipping of the last training sequence over every (timestep, channel); {} before one."""
        if self._last_telemetry is None:
            return {}
        step, limits, statistics = self._last_telemetry
        return {"step": step, "r_limit": limits.r_max, "d_limit": limits.d_max, **K.telemetry_record(statistics)}

    def extra_repr(self) -> str:
        text = f"{self.num_features}, mode={self.mode!r}"
        if self.mode == "batch-per-step":
            text += f", max_steps={self.max_steps}"
        return text


def recurrent_norms(module: Module) -> list[RecurrentNorm]:
    """Every :class:`RecurrentNorm` inside `module`."""
    return [m for m in module.modules() if isinstance(m, RecurrentNorm)]


@contextmanager
def sequence_of(module: Module) -> Iterator[None]:
    """One sequence for every recurrent normalization inside `module` (each updates its averages once at the end)."""
    with ExitStack() as stack:
        for norm in recurrent_norms(module):
            stack.enter_context(norm.sequence())
        yield


@contextmanager
def held_corrections(module: Module) -> Iterator[None]:
    """Hold every renorm-shared normalization in `module` at the r_t, d_t of its last training sequence."""
    with ExitStack() as stack:
        for norm in recurrent_norms(module):
            if norm.mode == "renorm-shared":
                stack.enter_context(norm.holding(list(norm.last_corrections)))
        yield
