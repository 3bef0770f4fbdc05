# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.16.4
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 1 — Autodiff from scratch
#
# A neural network is trained by following the gradient of a loss. Writing every gradient by hand is slow
# and error-prone, so libraries compute them for you: this is **automatic differentiation** (autodiff).
# This tutorial opens up minigrad's autodiff engine and rebuilds its core on the page.
#
# You will see:
#
# 1. what a `Tensor` is, and the graph that ops record as they run;
# 2. the chain rule done by hand on a small expression, then by `.backward()`;
# 3. **reverse accumulation**: why the engine visits the graph in *topological order*, and why the
#    gradient of a tensor used twice is a *sum*;
# 4. how broadcasting in the forward pass becomes a sum in the backward pass;
# 5. how to write a new op as a `mg.Function` subclass, register it on `Tensor`, and check it with
#    `mg.gradcheck` — including a deliberately wrong backward that the check catches.
#
# You need calculus (partial derivatives, the chain rule) and a little NumPy. Every formula below is
# also computed, and every claim is an `assert`: if one were false, running this file would fail.
#
# **Running it.** `python tutorials/01_autodiff_from_scratch.py` runs every cell as a script. To get a
# notebook: `pip install jupytext notebook && jupytext --to notebook tutorials/01_autodiff_from_scratch.py`.
# On Colab, upload the `.ipynb`, make the minigrad repository available in the runtime and
# `pip install -e` it, then run the cells in order.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minigrad as mg

# The derivations compare against NumPy in float64 on the CPU, so this page uses the NumPy backend.
mg.use_backend("numpy")
here = Path(__file__).parent if "__file__" in globals() else Path()  # a script, or a notebook in tutorials/
out = Path(os.environ.get("MINIGRAD_TUTORIAL_OUT", here / "output"))  # figures go here (git ignores it)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A tensor
#
# A `mg.Tensor` holds an array (`.data`, a NumPy array here) and, when you ask for it with
# `requires_grad=True`, a slot `.grad` for the gradient of some scalar with respect to it.
#
# Floating data defaults to float32, the usual choice for training. For checking derivatives we use
# float64: a finite-difference estimate in float32 is only good to about three digits.

# %%
x = mg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
print(x)
print("dtype:", x.dtype, " shape:", x.shape, " grad:", x.grad)
assert x.dtype == np.float32 and x.grad is None

a = mg.Tensor(2.0, requires_grad=True, dtype="float64")
b = mg.Tensor(3.0, requires_grad=True, dtype="float64")
assert a.dtype == np.float64 and a.is_leaf

# %% [markdown]
# ## 2. A graph
#
# Take the expression
#
# $$f(a, b) = (a\,b + a)^2 .$$
#
# Evaluating it with tensors runs three ops — a multiplication, an addition and a square — and each op
# leaves a record. Every tensor an op makes remembers its **creator**, the op instance (a
# `mg.Function`), and every op remembers its **inputs**. Tensors you make yourself have no creator:
# they are the **leaves** of the graph.
#
# Name the intermediate values: $u = a b$, $s = u + a$, $f = s^2$.

# %%
u = a * b
s = u + a
f = s**2
print("f =", f.item())
assert f.item() == (2.0 * 3.0 + 2.0) ** 2


def show_graph(tensor, names, indent=0):
    """Print the graph that produced `tensor`, from the output down to the leaves."""
    label = names.get(id(tensor), "?")
    op = "leaf" if tensor.creator is None else f"made by {type(tensor.creator).__name__}"
    print("    " * indent + f"{label} = {tensor.item():g}  ({op})")
    if tensor.creator is not None:
        for parent in tensor.creator.inputs:
            show_graph(parent, names, indent + 1)


names = {id(a): "a", id(b): "b", id(u): "u", id(s): "s", id(f): "f"}
show_graph(f, names)
assert type(f.creator).__name__ == "PowScalar" and f.creator.inputs[0] is s
assert [t is p for t, p in zip(s.creator.inputs, (u, a))] == [True, True]  # `is`: == on tensors is elementwise
assert [t is p for t, p in zip(u.creator.inputs, (a, b))] == [True, True]

# %% [markdown]
# Notice that `a` appears twice: it feeds the multiplication *and* the addition. The graph is not a
# tree but a directed acyclic graph (DAG), and that will matter.
#
# ## 3. The chain rule, by hand
#
# Each op knows only its **local derivatives**, the derivatives of its output with respect to its
# own inputs:
#
# $$\frac{\partial f}{\partial s} = 2s, \qquad
# \frac{\partial s}{\partial u} = 1, \quad \frac{\partial s}{\partial a} = 1, \qquad
# \frac{\partial u}{\partial a} = b, \quad \frac{\partial u}{\partial b} = a .$$
#
# The chain rule glues them together. For a value $v$ that influences $f$ through several paths, the
# derivative is the **sum over the paths**, each path contributing the product of the local
# derivatives along it. `a` reaches `f` along two paths ($a \to u \to s \to f$ and $a \to s \to f$):
#
# $$\frac{\partial f}{\partial a}
#   = \underbrace{\frac{\partial f}{\partial s}\,\frac{\partial s}{\partial u}\frac{\partial u}{\partial a}}_{\text{via } u}
#   + \underbrace{\frac{\partial f}{\partial s}\,\frac{\partial s}{\partial a}}_{\text{directly}}
#   = 2s\,b + 2s,$$
#
# $$\frac{\partial f}{\partial b}
#   = \frac{\partial f}{\partial s}\,\frac{\partial s}{\partial u}\,\frac{\partial u}{\partial b} = 2s\,a .$$
#
# **Reverse accumulation** evaluates this from the output backwards. Write $\bar v = \partial f / \partial v$
# (the *adjoint* of $v$). Start with $\bar f = 1$; then each op turns the adjoint of its output into
# contributions to the adjoints of its inputs, and contributions that arrive at the same value are added:
#
# | step | rule | value at $a=2, b=3$ |
# |---|---|---|
# | $\bar f = 1$ | seed | 1 |
# | $\bar s = \bar f \cdot 2s$ | square | 16 |
# | $\bar u = \bar s \cdot 1$, $\ \bar a \mathrel{+}= \bar s \cdot 1$ | addition | 16, 16 |
# | $\bar a \mathrel{+}= \bar u \cdot b$, $\ \bar b \mathrel{+}= \bar u \cdot a$ | multiplication | 16 + 48 = 64, 32 |
#
# As a check, $f = a^2 (b+1)^2$, so $\partial f/\partial a = 2a(b+1)^2 = 64$ and
# $\partial f/\partial b = 2a^2(b+1) = 32$.

# %%
av, bv = 2.0, 3.0
sv = av * bv + av
f_bar = 1.0
s_bar = f_bar * 2 * sv
u_bar = s_bar * 1.0
a_bar = s_bar * 1.0  # the direct path a -> s
a_bar += u_bar * bv  # the path a -> u -> s: added to what a already has
b_bar = u_bar * av
print(f"by hand: df/da = {a_bar}, df/db = {b_bar}")
assert (a_bar, b_bar) == (2 * av * (bv + 1) ** 2, 2 * av**2 * (bv + 1)) == (64.0, 32.0)

# %% [markdown]
# Now let minigrad do it. `f.backward()` seeds $\bar f = 1$ (for a one-element output), sweeps the
# graph backwards and stores the adjoint of every leaf in its `.grad`.

# %%
f.backward()
print("by .backward():", a.grad, b.grad)
assert a.grad == a_bar and b.grad == b_bar

# %% [markdown]
# One backward sweep gave the derivative with respect to *every* input at once, for about the cost of
# one more forward pass. That is why reverse mode suits deep learning: one scalar loss, millions of
# parameters. (Forward-mode differentiation would need one sweep per input.)
#
# Before trusting any derivative, compare it with a **central finite difference**,
# $\partial f/\partial a \approx \big(f(a+h, b) - f(a-h, b)\big)/2h$, whose error shrinks like $h^2$.


# %%
def f_numbers(a_value, b_value):
    return (a_value * b_value + a_value) ** 2


h = 1e-6
numeric_da = (f_numbers(av + h, bv) - f_numbers(av - h, bv)) / (2 * h)
numeric_db = (f_numbers(av, bv + h) - f_numbers(av, bv - h)) / (2 * h)
print(f"finite differences: {numeric_da:.8f}, {numeric_db:.8f}")
np.testing.assert_allclose([numeric_da, numeric_db], [a.grad, b.grad], rtol=1e-7)

# %% [markdown]
# ## 4. Topological order, and why it matters
#
# In the table above, `a` received two contributions, and we only knew $\bar a$ once **both** had
# arrived. In general a node may pass its adjoint on only when every node that *uses* it has already
# been processed. An ordering of the graph with that property is a **topological order** (here:
# output first, each node before its inputs).
#
# We can write the whole engine in a dozen lines on top of minigrad's graph records, which are
# public: `tensor.creator`, `creator.inputs`, and the op's own `backward`, which maps the gradient of
# its output to one gradient per input. `mg.sum_to` is explained in section 6; ignore it for now.


# %%
def topological_order(root):
    """Tensors that need a gradient, each one listed before all of its inputs (depth-first search)."""
    order, visited = [], set()

    def visit(node):
        if id(node) in visited:
            return
        visited.add(id(node))
        if node.creator is not None:
            for parent in node.creator.inputs:
                if parent.requires_grad:
                    visit(parent)
        order.append(node)  # appended after all of its inputs...

    visit(root)
    return order[::-1]  # ...so reversed, every node comes before its inputs


def backward_topological(root):
    """Reverse accumulation: every node is processed exactly once, with its complete adjoint."""
    adjoint = {id(root): np.ones(root.shape)}
    leaf_grads = {}
    calls = 0
    for node in topological_order(root):
        grad = adjoint.pop(id(node))
        if node.creator is None:
            leaf_grads[id(node)] = grad
            continue
        input_grads = node.creator.backward(grad)  # the op's local chain rule
        calls += 1
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(node.creator.inputs, input_grads):
            if parent.requires_grad:
                parent_grad = mg.sum_to(parent_grad, parent.shape)
                adjoint[id(parent)] = adjoint.get(id(parent), 0) + parent_grad  # accumulate
    return leaf_grads, calls


a = mg.Tensor(2.0, requires_grad=True, dtype="float64")
b = mg.Tensor(3.0, requires_grad=True, dtype="float64")
u = a * b
s = u + a
f = s**2
names = {id(a): "a", id(b): "b", id(u): "u", id(s): "s", id(f): "f"}
order = topological_order(f)
print("topological order:", [names[id(t)] for t in order])
position = {id(t): i for i, t in enumerate(order)}
assert position[id(a)] > position[id(u)] and position[id(a)] > position[id(s)]  # a after both of its users

ours, calls = backward_topological(f)
assert ours[id(a)] == 64.0 and ours[id(b)] == 32.0 and calls == 3  # each of the 3 ops ran once

# %% [markdown]
# Why wait at all? The obvious alternative is to push every contribution on down as soon as it arrives.
# Because the chain rule is linear, that gives the right answer — it literally enumerates the paths of
# section 3 one by one — but the number of paths can explode. (What would give a *wrong* answer is to
# pass a node's adjoint on once, before all contributions had arrived, and drop the late ones.)
#
# Consider $y_{k+1} = y_k \cdot \sigma(y_k)$ (the "SiLU" activation, applied $n$ times). Each layer uses
# $y_k$ twice, so the number of paths from $y_n$ back to $y_0$ doubles with every layer.


# %%
def backward_by_paths(node, grad, counter):
    """Push every contribution down immediately: correct, but visits every path separately."""
    if node.creator is None:
        node_grads = counter.setdefault("leaves", {})
        node_grads[id(node)] = node_grads.get(id(node), 0) + grad
        return
    counter["calls"] += 1
    input_grads = node.creator.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    for parent, parent_grad in zip(node.creator.inputs, input_grads):
        if parent.requires_grad:
            backward_by_paths(parent, mg.sum_to(parent_grad, parent.shape), counter)


depth = 12
y0 = mg.Tensor(0.5, requires_grad=True, dtype="float64")
y = y0
for _ in range(depth):
    y = y * y.sigmoid()

by_order, calls_in_order = backward_topological(y)
counter = {"calls": 0}
backward_by_paths(y, np.ones(()), counter)
print(f"{depth} layers: topological order ran {calls_in_order} op backwards, path by path ran {counter['calls']}")
y.backward()  # minigrad's own engine (it frees the graph afterwards, so it runs last)
np.testing.assert_allclose(by_order[id(y0)], y0.grad, rtol=1e-12)
np.testing.assert_allclose(counter["leaves"][id(y0)], y0.grad, rtol=1e-12)
assert calls_in_order == 2 * depth and counter["calls"] == 2 * (2**depth - 1)

# %% [markdown]
# Same gradient, but $2n = 24$ op backwards against $2(2^n - 1) = 8190$. With 30 layers the path-by-path
# version would need two billion. Processing in topological order makes the cost proportional to the
# size of the graph: each node adds up all of its contributions first, then passes the total on once.
#
# minigrad's `Tensor.backward` does exactly what `backward_topological` does, plus a few chores done
# once for all ops: casting gradients to each input's dtype, skipping inputs that need no gradient,
# freeing saved arrays after use (so the graph cannot be walked or run again afterwards; pass
# `retain_graph=True` to run backward twice), and an iterative
# rather than recursive search, so a graph 100,000 ops deep does not overflow Python's stack.
#
# ## 5. Gradients accumulate
#
# The "+=" in the engine is the multivariable chain rule: when a tensor is used twice, its gradient is
# the sum of both contributions. The simplest case is $x \cdot x$: the multiplication sends $x$ to *both*
# of its inputs, and they are the same tensor, so $\partial (x^2)/\partial x = x + x = 2x$.

# %%
x = mg.Tensor([1.0, -2.0, 3.0], requires_grad=True, dtype="float64")
(x * x).sum().backward()
print("d/dx sum(x*x) =", x.grad)
np.testing.assert_array_equal(x.grad, 2 * x.numpy())

# %% [markdown]
# Leaves also accumulate **across** calls: a second `backward()` adds to `.grad` rather than replacing
# it. This is deliberate (it lets you sum gradients over several losses or micro-batches), and it is why
# a training loop clears the gradients before each step (`zero_grad`).

# %%
(x * x).sum().backward()  # a fresh graph, the same leaf
np.testing.assert_array_equal(x.grad, 4 * x.numpy())  # 2x + 2x
x.zero_grad()
(x * x).sum().backward()
np.testing.assert_array_equal(x.grad, 2 * x.numpy())
print("after zero_grad and one more backward:", x.grad)

# %% [markdown]
# ## 6. Broadcasting is summed back
#
# Adding a bias vector $w \in \mathbb{R}^3$ to every row of a matrix $X \in \mathbb{R}^{4 \times 3}$
# works by **broadcasting**: NumPy behaves as if $w$ were copied into 4 rows. A copy is a use, so each
# of the 4 copies sends a gradient back and they add up: the gradient of a broadcast operand is the
# output gradient **summed over the broadcast axes**.
#
# For $L = \sum_{n,j} (X_{nj} w_j + w_j)$ we get $\partial L/\partial w_j = \sum_n X_{nj} + 4$ and
# $\partial L/\partial X_{nj} = w_j$.

# %%
rng = np.random.default_rng(0)
X = mg.Tensor(rng.standard_normal((4, 3)), requires_grad=True, dtype="float64")
w = mg.Tensor([0.5, -1.0, 2.0], requires_grad=True, dtype="float64")
L = (X * w + w).sum()
L.backward()
print("dL/dw =", w.grad, " shape", w.grad.shape)
np.testing.assert_allclose(w.grad, X.numpy().sum(axis=0) + 4)
np.testing.assert_allclose(X.grad, np.broadcast_to(w.numpy(), (4, 3)))

# %% [markdown]
# The ops themselves do not deal with this: `Mul.backward` returns a gradient of the broadcast shape
# (4, 3) for both operands, and the engine reduces it with `mg.sum_to(grad, shape)`. `sum_to` sums over
# the leading axes that broadcasting added, and over the size-1 axes that it stretched (keeping them as
# size 1), so the result has the operand's own shape.

# %%
g = np.arange(12.0).reshape(4, 3)
np.testing.assert_array_equal(mg.sum_to(g, (3,)), g.sum(axis=0))  # leading axis added
np.testing.assert_array_equal(mg.sum_to(g, (1, 3)), g.sum(axis=0, keepdims=True))  # axis stretched from 1
np.testing.assert_array_equal(mg.sum_to(g, (4, 1)), g.sum(axis=1, keepdims=True))
print(mg.sum_to(g, (4, 1)).ravel())

# %% [markdown]
# ## 7. A new op: softplus
#
# Every op in minigrad is a subclass of `mg.Function` with two methods:
#
# * `forward(self, *arrays)` computes the output from plain arrays (not tensors) and saves on `self`
#   whatever the backward will need;
# * `backward(self, grad)` receives $\partial L/\partial \text{output}$ (an array of the output's
#   shape) and returns $\partial L/\partial \text{input}$ for each input — the local chain rule.
#
# `Function.apply(*tensors)` runs `forward` on the tensors' arrays and, when some input requires a
# gradient, records the op in the graph. The engine handles the rest (order, accumulation,
# broadcasting, dtypes). Backward passes are plain array code and are not recorded, so minigrad has
# first derivatives only.
#
# **Softplus** is a smooth version of ReLU:
#
# $$\operatorname{softplus}(x) = \log(1 + e^x), \qquad
# \frac{d}{dx}\operatorname{softplus}(x) = \frac{e^x}{1 + e^x} = \sigma(x) = \frac{1}{1 + e^{-x}} .$$
#
# Two numerical details. Computing $\log(1+e^x)$ literally overflows for $x \gtrsim 710$ in float64,
# so we use the equivalent $\max(x, 0) + \log(1 + e^{-|x|})$ (with `log1p` for accuracy when the
# second term is small). And $\sigma(x) = \tfrac12(1 + \tanh(x/2))$ never overflows.
#
# The code asks `mg.backend.namespace(x)` for the array library of its input instead of
# calling NumPy directly, so the same op runs on CuPy arrays on a GPU. (minigrad's own ops do the same
# through `minigrad.backend.namespace`.)


# %%
class Softplus(mg.Function):
    def forward(self, x):
        xp = mg.backend.namespace(x)
        self.x = x  # saved for backward
        return (x + xp.abs(x)) / 2 + xp.log1p(xp.exp(-xp.abs(x)))  # max(x, 0) + log(1 + e^-|x|)

    def backward(self, grad):
        xp = mg.backend.namespace(grad)
        return grad * 0.5 * (1 + xp.tanh(self.x / 2))  # dL/dx = dL/dy * sigmoid(x)


# %% [markdown]
# To make it a method of every tensor, register a public function with `mg.tensor_method` (this is
# how `exp`, `+`, `sum` and every other op get attached to `Tensor`):


# %%
@mg.tensor_method("softplus")
def softplus(x: mg.Tensor) -> mg.Tensor:
    """log(1 + e^x), computed without overflow."""
    return Softplus.apply(x)


t = mg.Tensor([-1000.0, -2.0, 0.0, 2.0, 1000.0], requires_grad=True, dtype="float64")
y = t.softplus()
print("softplus:", y.numpy())
with np.errstate(over="ignore"):
    naive = np.log(1 + np.exp(t.numpy()))  # inf at x = 1000
assert np.isinf(naive[-1]) and np.all(np.isfinite(y.numpy()))
np.testing.assert_allclose(y.numpy()[1:4], naive[1:4], rtol=1e-15)
np.testing.assert_allclose(y.numpy()[[0, 4]], [0.0, 1000.0])

y.sum().backward()
print("gradient:", t.grad)
with np.errstate(over="ignore"):  # e^1000 is inf, and 1 / (1 + inf) = 0 is still the right limit
    np.testing.assert_allclose(t.grad, 1 / (1 + np.exp(-t.numpy())))

# %% [markdown]
# A picture of the op and its derivative, next to the ReLU it smooths:

# %%
grid = mg.Tensor(np.linspace(-5, 5, 201), requires_grad=True, dtype="float64")
grid.softplus().sum().backward()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(grid.numpy(), grid.softplus().numpy(), label="softplus(x)")
ax.plot(grid.numpy(), np.maximum(grid.numpy(), 0), "--", label="relu(x)")
ax.plot(grid.numpy(), grid.grad, label="d softplus / dx (from backward)")
ax.set_xlabel("x")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(out / "01_softplus.png", dpi=100)
plt.show()  # inline in a notebook and on the site; a script has only the saved file
assert (out / "01_softplus.png").stat().st_size > 0

# %% [markdown]
# ## 8. Checking it with `mg.gradcheck`
#
# The spot checks above used a formula we already trusted. `mg.gradcheck(fn, inputs)` needs no formula:
#
# * it copies the inputs to float64 and runs `fn` and its backward;
# * if the output is not a scalar, it checks the scalar $\sum_k v_k \,\text{out}_k$ for a fixed random
#   vector $v$ — a random direction, so every output element counts and errors are very unlikely to cancel;
# * it perturbs **every element** of every input that requires a gradient by $\pm\varepsilon$
#   ($\varepsilon = 10^{-6}$) and compares the central difference with the backward's value, with
#   tolerance $|\text{analytic} - \text{numeric}| \le \text{atol} + \text{rtol}\,|\text{numeric}|$.
#
# It returns `True` or raises `mg.GradcheckError` naming the worst element. Here it checks softplus
# alone, then inside a larger expression with broadcasting and a tensor used twice.

# %%
x = mg.Tensor(rng.uniform(-4, 4, size=(3, 4)), requires_grad=True, dtype="float64")
w = mg.Tensor(rng.uniform(-2, 2, size=(4,)), requires_grad=True, dtype="float64")
assert mg.gradcheck(lambda t: t.softplus(), [x])
assert mg.gradcheck(lambda t, v: (t * v).softplus() * t + v, [x, w])
print("softplus passes gradcheck")

# %% [markdown]
# ## 9. A wrong backward, caught
#
# Now the kind of slip that is easy to make on paper. Differentiating $\log(1 + e^x)$ we must multiply
# $1/(1+e^x)$ by the derivative of the inside, $e^x$. Forget that inner factor and you get
# $1/(1 + e^x) = \sigma(-x)$ — which even looks plausible: it lies between 0 and 1, like the right answer.


# %%
class SoftplusWrongBackward(Softplus):
    def backward(self, grad):
        xp = mg.backend.namespace(grad)
        return grad / (1 + xp.exp(self.x))  # forgot the inner derivative e^x


try:
    mg.gradcheck(lambda t: SoftplusWrongBackward.apply(t), [x])
except mg.GradcheckError as error:
    message = str(error)
    print("GradcheckError:", message)
else:
    raise AssertionError("gradcheck should have rejected the wrong backward")
assert "input 0 (shape (3, 4))" in message and "analytic gradient" in message and "finite differences give" in message

# %% [markdown]
# The message names the input, the element with the largest error and both values, which is where to
# start debugging. With `raise_exception=False` you get `False` instead of an exception.
#
# Notice that the wrong formula is *right* at $x = 0$, where $\sigma(0) = \sigma(-0) = \tfrac12$. A check
# at a single, "simple" point could have missed the bug. That is the motivation for
# [tutorial 4](04_proving_gradients_with_properties.py), which lets a library generate the inputs.

# %%
at_zero = mg.Tensor([0.0], requires_grad=True, dtype="float64")
assert mg.gradcheck(lambda t: SoftplusWrongBackward.apply(t), [at_zero])  # the bug hides at x = 0
assert not mg.gradcheck(lambda t: SoftplusWrongBackward.apply(t), [x], raise_exception=False)

# %% [markdown]
# ## Summary
#
# * Ops record a DAG: each tensor knows its `creator`, each op its `inputs`.
# * `backward()` applies the chain rule from the output down, in topological order, so that every node
#   adds up all its contributions before passing the total on. Cost: one sweep, whatever the number of
#   inputs.
# * A tensor used several times gets the **sum** of the gradients of its uses; a broadcast operand is a
#   tensor used many times, so its gradient is summed over the broadcast axes (`mg.sum_to`).
# * A new op is a `mg.Function` with `forward` and `backward` on arrays, made a method with
#   `mg.tensor_method`, and verified with `mg.gradcheck` in float64.
#
# Next: [tutorial 2](02_batchnorm_backward.py) uses the same chain rule on a real layer, Batch
# Normalization, whose gradient is famously subtle because every output depends on every input.
