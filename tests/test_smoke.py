import numpy as np

import minigrad as mg


def test_issue_example_runs_as_written():
    x = mg.Tensor(np.random.randn(4, 3), requires_grad=True)
    w = mg.Tensor(np.random.randn(3, 2), requires_grad=True)
    loss = ((x @ w).relu() ** 2).mean()
    loss.backward()
    assert x.grad.shape == (4, 3) and w.grad.shape == (3, 2)
    assert mg.gradcheck(lambda a, b: ((a @ b).tanh()).sum(), [x, w]) is True
