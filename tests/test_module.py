"""Module: parameter discovery, modes, state dicts, moving to a device or dtype."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend as B


class Affine(mg.nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = mg.nn.Parameter(np.ones(n))
        self.bias = mg.nn.Parameter(np.zeros(n))
        self.register_buffer("running", B.asarray(np.zeros(n, dtype=np.float32)))
        self.register_buffer("count", 0)

    def forward(self, x):
        if self.training:
            self.count += 1
        return x * self.weight + self.bias


class Net(mg.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = Affine(3)
        self.second = Affine(3)
        self.shared = self.first  # the same module twice: its parameters are listed once

    def forward(self, x):
        return self.second(self.first(x))


def test_parameters_and_buffers_are_found_recursively_once():
    net = Net()
    names = [name for name, _ in net.named_parameters()]
    assert names == ["first.weight", "first.bias", "second.weight", "second.bias"]
    assert [name for name, _ in net.named_buffers()][:4] == [
        "first.running",
        "first.count",
        "second.running",
        "second.count",
    ]
    assert len(net.parameters()) == 4


def test_train_eval_and_zero_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    net(mg.Tensor(np.ones((2, 3)))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip_includes_buffers_and_numbers():
    net = Net()
    net(mg.Tensor(np.ones((2, 3))))
    net.first.weight.data = net.first.weight.data * 3
    state = net.state_dict()
    assert state["first.count"] == 1
    other = Net()
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.first.weight.numpy(), np.full(3, 3.0))
    assert other.first.count == 1
    # the state dict holds copies, not views of the live parameters
    net.first.weight.data = net.first.weight.data * 0
    np.testing.assert_array_equal(B.to_numpy(state["first.weight"]), np.full(3, 3.0))


def test_load_state_dict_refuses_wrong_names_and_shapes_without_changing_anything():
    net = Net()
    state = net.state_dict()
    state["first.weight"] = B.asarray(np.ones(4, dtype=np.float32))
    before = net.second.weight.numpy().copy()
    with pytest.raises(ValueError, match=r"'first.weight' expects shape \(3,\), got \(4,\)"):
        net.load_state_dict(state)
    np.testing.assert_array_equal(net.second.weight.numpy(), before)
    state.pop("first.weight")
    with pytest.raises(KeyError, match="missing keys \\['first.weight'\\]"):
        net.load_state_dict(state)


def test_to_moves_parameters_and_buffers():
    net = Net().to("float64")
    assert B.dtype_name(net.first.weight.dtype) == "float64"
    assert B.dtype_name(net.first.running.dtype) == "float64"
    assert net.first.count == 0
    with pytest.raises(ValueError, match="floating dtype"):
        net.to("int64")


@pytest.mark.backends("numpy")
def test_to_device_moves_buffers_too():
    net = Net().to("array_api_strict")
    assert net.first.weight.device == "array_api_strict"
    assert B.device_of(net.first.running) == "array_api_strict"


def test_forgetting_super_init_is_a_clear_error():
    class Broken(mg.nn.Module):
        def __init__(self):
            self.weight = mg.nn.Parameter(np.ones(1))

    with pytest.raises(RuntimeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


def test_load_state_dict_copies_so_training_does_not_change_the_callers_arrays():
    net = Net()
    state = net.state_dict()
    net.load_state_dict(state)
    net.first.running[...] = 5.0  # an in-place buffer update, as norm layers do
    net.first.weight.data[...] = 7.0
    assert float(B.to_numpy(state["first.running"])[0]) == 0.0
    assert float(B.to_numpy(state["first.weight"])[0]) == 1.0
