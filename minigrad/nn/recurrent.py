"""Recurrent layers with PyTorch's names and shapes: RNNCell, LSTMCell, RNN, LSTM, with normalization inside.

Backpropagation through time is the engine's ordinary reverse mode: the
loop over timesteps builds one graph, and the engine's iterative topological
sort walks it (no recursion, so thousands of timesteps are fine).

Weights as in PyTorch: ``weight_ih`` (G·H, input_size), ``weight_hh``
(G·H, H), ``bias_ih`` and ``bias_hh`` (G·H,), with G = 1 for RNN and 4 for
LSTM (gates in PyTorch's order i, f, g, o), all drawn from
U(−1/√H, 1/√H).

``norm`` puts normalization inside the recurrence as in recurrent batchnorm
(Cooijmans et al., 2016): the input-to-hidden term x W_ihᵀ and the
hidden-to-hidden term h W_hhᵀ are normalized separately (γ = 0.1, no β: the
biases play that part), and an LSTM's cell state is normalized before its
output tanh (γ = 0.1, β = 0)::

    pre = N_ih(x_t W_ihᵀ) + N_hh(h_{t−1} W_hhᵀ) + b
    RNN:  h_t = tanh(pre)
    LSTM: c_t = σ(f) ⊙ c_{t−1} + σ(i) ⊙ tanh(g),  h_t = σ(o) ⊙ tanh(N_c(c_t))

The modes are those of :mod:`minigrad.norm.recurrent`: ``"none"``,
``"layer"``, ``"batch-per-step"`` (needs ``max_steps``), ``"batch-shared"``
and ``"renorm-shared"`` (with ``r_max``, ``d_max``, numbers or schedules).
Without an initial state h_0 = 0, so the hidden-to-hidden term of the first
timestep is exactly 0 and is left out rather than normalized (its batch
variance is 0: it would feed σ_B = √ε into the shared averages).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from minigrad import backend, validate
from minigrad.module import Module, Parameter
from minigrad.nn import init
from minigrad.norm.recurrent import MODES, RecurrentNorm, recurrent_norms
from minigrad.ops import stack
from minigrad.random import Generator
from minigrad.tensor import Tensor

__all__ = ["LSTM", "RNN", "LSTMCell", "RNNCell"]

np = backend.host


def _norm_options(norm: str, max_steps: int | None, norm_options: dict[str, Any] | None, dtype: Any) -> dict[str, Any]:
    if norm not in MODES:
        raise ValueError(f"norm: expected one of {', '.join(MODES)}, got {norm!r}")
    options = dict(norm_options or {})
    options.update(mode=norm, max_steps=max_steps, dtype=dtype)
    return options


class _Cell(Module):
    """What RNNCell and LSTMCell share: weights, the two normalized pre-activation terms and the checks."""

    gates = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        norm: str = "none",
        max_steps: int | None = None,
        norm_options: dict[str, Any] | None = None,
        dtype: Any = "float32",
        generator: Generator | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.input_size = validate.positive_int("input_size", input_size, owner=owner)
        self.hidden_size = validate.positive_int("hidden_size", hidden_size, owner=owner)
        if not backend.dtype_name(dtype).startswith("float"):
            raise ValueError(f"dtype: expected a floating dtype, got {dtype!r}")
        g, h = self.gates * self.hidden_size, self.hidden_size
        bound = 1.0 / math.sqrt(h)

        def weight(*shape: int) -> Parameter:
            return init.uniform_(Parameter(np.zeros(shape), dtype=dtype), -bound, bound, generator=generator)

        self.weight_ih = weight(g, self.input_size)
        self.weight_hh = weight(g, h)
        self.bias_ih = weight(g) if bias else None
        self.bias_hh = weight(g) if bias else None
        options = _norm_options(norm, max_steps, norm_options, dtype)
        self.norm = norm
        object.__setattr__(self, "_norm_settings", options)
        self.norm_ih = RecurrentNorm(g, bias=False, **options)  # N_ih(x W_ihᵀ)
        self.norm_hh = RecurrentNorm(g, bias=False, **options)  # N_hh(h W_hhᵀ)

    def _check(self, x: Any, state: Any, name: str = "hx") -> tuple[int, Any]:
        owner = type(self).__name__
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.input_size:
            got = f"shape {x.shape}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{owner}: input: expected a tensor of shape (N, input_size={self.input_size}), got {got}")
        if state is not None and (not isinstance(state, Tensor) or tuple(state.shape) != (x.shape[0], self.hidden_size)):
            got = f"shape {state.shape}" if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"{owner}: {name}: expected a tensor of shape ({x.shape[0]}, {self.hidden_size}), got {got}")
        return x.shape[0], state

    def pre_activation(self, x: Tensor, h: Tensor | None, step: int) -> Tensor:
        """N_ih(x W_ihᵀ) + N_hh(h W_hhᵀ) + b_ih + b_hh, the hidden-to-hidden term left out for h = None (h = 0)."""
        pre = self.norm_ih(x @ self.weight_ih.T, step)
        if h is not None:
            pre = pre + self.norm_hh(h @ self.weight_hh.T, step)
        if self.bias_ih is not None:
            pre = pre + (self.bias_ih + self.bias_hh)
        return pre

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}, norm={self.norm!r}"


class RNNCell(_Cell):
    """An Elman cell: h' = tanh(pre) (or relu with ``nonlinearity="relu"``); ``cell(input, hx=None, step=0)``.

    `input` (N, input_size), `hx` (N, hidden_size) or None for zeros; `step`
    is the timestep, for ``norm="batch-per-step"``. Returns h' (N, hidden_size).
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh", **options: Any
    ) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None, step: int = 0) -> Tensor:  # noqa: A002 - PyTorch's name
        _, hx = self._check(input, hx)
        pre = self.pre_activation(input, hx, step)
        return pre.tanh() if self.nonlinearity == "tanh" else pre.relu()


class LSTMCell(_Cell):
    """An LSTM cell; ``cell(input, (h, c)=None, step=0)`` returns (h', c'), each (N, hidden_size).

    Gates i, f, g, o (PyTorch's order) from one pre-activation of 4·H
    features; with normalization, the cell state is normalized before the
    output tanh (``norm_cell``, γ = 0.1, β = 0) while c' itself is carried on unnormalized.
    """

    gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, **options: Any) -> None:
        super().__init__(input_size, hidden_size, bias, **options)
        self.norm_cell = RecurrentNorm(self.hidden_size, bias=True, **self._norm_settings)  # N_c(c_t)

    def forward(
        self,
        input: Tensor,  # noqa: A002 - PyTorch's name
        hx: tuple[Tensor, Tensor] | None = None,
        step: int = 0,
    ) -> tuple[Tensor, Tensor]:
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise ValueError(f"LSTMCell: hx: expected None or a pair (h, c), got {type(hx).__name__}")
        h, c = (None, None) if hx is None else hx
        self._check(input, h, "hx[0] (h)")
        self._check(input, c, "hx[1] (c)")
        pre = self.pre_activation(input, h, step)
        k = self.hidden_size
        i = pre[:, 0:k].sigmoid()
        f = pre[:, k : 2 * k].sigmoid()
        g = pre[:, 2 * k : 3 * k].tanh()
        o = pre[:, 3 * k : 4 * k].sigmoid()
        c_new = i * g if c is None else f * c + i * g  # c_{t−1} = 0 without a state
        h_new = o * self.norm_cell(c_new, step).tanh()
        return h_new, c_new


class _Recurrent(Module):
    """What RNN and LSTM share: a stack of cells run over a sequence, layer by layer."""

    cell_class: type[_Cell] = RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        norm: str = "none",
        max_steps: int | None = None,
        norm_options: dict[str, Any] | None = None,
        dtype: Any = "float32",
        generator: Generator | None = None,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.input_size = validate.positive_int("input_size", input_size, owner=owner)
        self.hidden_size = validate.positive_int("hidden_size", hidden_size, owner=owner)
        self.num_layers = validate.positive_int("num_layers", num_layers, owner=owner)
        self.batch_first = bool(batch_first)
        if dropout != 0.0 or bidirectional:
            raise ValueError(
                f"{owner}: dropout={dropout!r}, bidirectional={bidirectional!r}: expected 0.0 and False "
                "(dropout between layers and bidirectional layers are not implemented)"
            )
        self.norm = norm
        for layer in range(self.num_layers):
            cell = self.cell_class(
                self.input_size if layer == 0 else self.hidden_size, self.hidden_size, bias, norm=norm,
                max_steps=max_steps, norm_options=norm_options, dtype=dtype, generator=generator, **cell_options,
            )  # fmt: skip
            setattr(self, f"cell{layer}", cell)

    @property
    def cells(self) -> list[_Cell]:
        return [getattr(self, f"cell{layer}") for layer in range(self.num_layers)]

    def _steps(self, input: Tensor) -> list[Tensor]:  # noqa: A002
        owner = type(self).__name__
        layout = "(N, L, input_size)" if self.batch_first else "(L, N, input_size)"
        if not isinstance(input, Tensor) or input.ndim != 3 or input.shape[2] != self.input_size:
            got = f"shape {input.shape}" if isinstance(input, Tensor) else type(input).__name__
            raise ValueError(f"{owner}: input: expected shape {layout} with input_size={self.input_size}, got {got}")
        length = input.shape[1] if self.batch_first else input.shape[0]
        if length < 1:
            raise ValueError(f"{owner}: input: expected at least one timestep, got shape {input.shape}")
        if self.batch_first:
            return [input[:, t, :] for t in range(length)]
        return [input[t, :, :] for t in range(length)]

    def _initial(self, state: Any, n: int, name: str) -> list[Tensor | None]:
        if state is None:
            return [None] * self.num_layers
        expected = (self.num_layers, n, self.hidden_size)
        if not isinstance(state, Tensor) or tuple(state.shape) != expected:
            got = f"shape {state.shape}" if isinstance(state, Tensor) else type(state).__name__
            raise ValueError(f"{type(self).__name__}: {name}: expected a tensor of shape {expected}, got {got}")
        return [state[layer, :, :] for layer in range(self.num_layers)]

    def _output(self, outputs: Sequence[Tensor]) -> Tensor:
        return stack(outputs, axis=1 if self.batch_first else 0)

    def state_size(self) -> int:
        """The running statistics kept by every normalization inside (0 for none and layer)."""
        return sum(norm.state_size() for norm in recurrent_norms(self))

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, batch_first={self.batch_first}, "
            f"norm={self.norm!r}"
        )


class RNN(_Recurrent):
    """A multi-layer Elman RNN over a sequence: ``rnn(input, hx=None)`` returns (output, h_n), as PyTorch's.

    `input` is (L, N, input_size), or (N, L, input_size) with `batch_first`;
    `hx` is h_0 (num_layers, N, hidden_size) or None for zeros. `output` holds
    the last layer's h_t for every t, (L, N, hidden_size) (batch first if
    asked); `h_n` the last h of every layer, (num_layers, N, hidden_size).
    ``nonlinearity`` is "tanh" (default) or "relu".
    """

    cell_class = RNNCell

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:  # noqa: A002
        steps = self._steps(input)
        initial = self._initial(hx, steps[0].shape[0], "hx")
        finals = []
        with ExitStack() as stack_:
            for norm in recurrent_norms(self):
                stack_.enter_context(norm.sequence())  # one update of the shared averages per forward
            for cell, h in zip(self.cells, initial):
                outputs = []
                for t, x in enumerate(steps):
                    h = cell(x, h, t)
                    outputs.append(h)
                steps = outputs
                finals.append(h)
        return self._output(steps), stack(finals, axis=0)


class LSTM(_Recurrent):
    """A multi-layer LSTM over a sequence: ``lstm(input, (h_0, c_0)=None)`` returns (output, (h_n, c_n)), as PyTorch's.

    Shapes as :class:`RNN`, with c_0 and c_n of h_0's shape.
    """

    cell_class = LSTMCell

    def forward(
        self,
        input: Tensor,  # noqa: A002
        hx: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        steps = self._steps(input)
        n = steps[0].shape[0]
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise ValueError(f"LSTM: hx: expected None or a pair (h_0, c_0), got {type(hx).__name__}")
        h0 = self._initial(None if hx is None else hx[0], n, "hx[0] (h_0)")
        c0 = self._initial(None if hx is None else hx[1], n, "hx[1] (c_0)")
        final_h, final_c = [], []
        with ExitStack() as stack_:
            for norm in recurrent_norms(self):
                stack_.enter_context(norm.sequence())
            for cell, h, c in zip(self.cells, h0, c0):
                state = None if h is None else (h, c)
                outputs = []
                for t, x in enumerate(steps):
                    state = cell(x, state, t)
                    outputs.append(state[0])
                steps = outputs
                final_h.append(state[0])
                final_c.append(state[1])
        return self._output(steps), (stack(final_h, axis=0), stack(final_c, axis=0))
