"""Where one CifarCNN training step spends its time, op by op, and how much of it is matrix products.

Every autograd op's ``forward`` and ``backward`` is timed (wall clock, summed
over the step and averaged over the repetitions), and so are ``im2col`` and
``col2im`` (inside the convolution and pooling ops, so their time is part of
those ops' rows as well). Then three things are timed in turns, in the same
run: the minigrad step, the matrix products (GEMMs) of its convolutions alone
(the same shapes, on arrays prepared beforehand), and the PyTorch step of
``bench_train_step.py``. The GEMMs are the part no reordering of memory can
remove: when they alone take most of PyTorch's step, a ratio near 1 needs
faster products, not less copying.

    python benchmarks/profile_train_step.py                   # bn, 1 thread
    python benchmarks/profile_train_step.py --norm brn --threads 2 --reps 20
"""

from __future__ import annotations

import argparse
import collections
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import (
    environment,
    fmt_ms,
    fmt_ratio,
    import_torch,
    paired_ratio,
    print_header,
    print_table,
    set_threads,
    summary,
    time_interleaved,
)
from bench_train_step import make_steps

import minigrad as mg
from minigrad.memory import keep_freed_memory
from minigrad.ops import conv as conv_module
from minigrad.ops.im2col import conv_output_size
from minigrad.tensor import Function


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def instrument(totals: dict[str, float]) -> Callable[[], None]:
    """Time every Function's forward and backward and the im2col/col2im calls into `totals`; returns the undo."""
    undo = []

    def timed(owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                totals[label] += time.perf_counter() - start

        setattr(owner, attribute, wrapper)
        undo.append(lambda: setattr(owner, attribute, original))

    for cls in set(_subclasses(Function)):
        for phase in ("forward", "backward"):
            if phase in cls.__dict__:
                timed(cls, phase, f"{cls.__name__} {phase}")
    for name in ("im2col", "col2im"):
        timed(conv_module, name, f"  of which {name}")
    return lambda: [fn() for fn in reversed(undo)]


def conv_gemms(model: mg.nn.Module, batch: int, rng: np.random.Generator) -> tuple[Callable[[], None], float]:
    """The step's convolution GEMMs (forward, weight gradient, input gradient) as one call, and their GFLOP."""
    shapes = []
    h = 32
    for module in model.modules():
        if isinstance(module, mg.nn.MaxPool2d):
            h //= 2
        if isinstance(module, mg.nn.Conv2d):
            out_c, in_c, kh, kw = module.weight.shape
            n = conv_output_size(h, kh, 1, 1) ** 2 * batch
            shapes.append((out_c, in_c, kh * kw, n, len(shapes) > 0))
    products, flop = [], 0.0
    for out_c, in_c, taps, n, needs_dx in shapes:
        k = in_c * taps
        w = rng.standard_normal((out_c, k)).astype(np.float32)
        cols = rng.standard_normal((k, n)).astype(np.float32)
        g = rng.standard_normal((out_c, n)).astype(np.float32)
        products += [(w, cols), (cols, g.T)]  # forward; weight gradient
        flop += 2 * 2 * out_c * k * n
        if needs_dx:  # input gradient as a convolution: (C, O*kh*kw) @ (O*kh*kw, N), the same count
            flipped = rng.standard_normal((in_c, out_c * taps)).astype(np.float32)
            products.append((flipped, rng.standard_normal((out_c * taps, n)).astype(np.float32)))
            flop += 2 * in_c * out_c * taps * n

    def run() -> None:
        for a, b in products:
            a @ b

    return run, flop / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="bn", choices=("bn", "brn", "none"))
    parser.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads (default 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=15, help="profiled steps, then timed turns (default 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch = import_torch()
    mg.use_backend("numpy")
    set_threads(args.threads, torch)
    env = environment(torch, args.threads)
    env["allocator"] = keep_freed_memory()
    print_header(f"Profile of one CifarCNN training step ({args.norm}, batch {args.batch}, float32, CPU)", env)

    steps, _ = make_steps(torch, args.norm, args.batch, args.seed)
    for _ in range(3):
        steps["minigrad"]()
    totals: dict[str, float] = collections.defaultdict(float)
    undo = instrument(totals)
    start = time.perf_counter()
    for _ in range(args.reps):
        steps["minigrad"]()
    step_ms = (time.perf_counter() - start) / args.reps * 1e3
    undo()
    rows = [
        [label, f"{seconds / args.reps * 1e3:.1f}", f"{seconds / args.reps * 1e3 / step_ms:.0%}"]
        for label, seconds in sorted(totals.items(), key=lambda item: -item[1])
        if seconds / args.reps * 1e3 >= 0.05
    ]
    rows.append(["whole step (instrumented)", f"{step_ms:.1f}", "100%"])
    print_table(["op and phase", "ms per step", "share"], rows)
    print()

    model = mg.models.CifarCNN(norm=args.norm, generator=mg.Generator(args.seed))
    gemms, gflop = conv_gemms(model, args.batch, np.random.default_rng(args.seed))
    cases = {"minigrad step": steps["minigrad"], "its conv GEMMs alone": gemms, "PyTorch step": steps["torch"]}
    times = time_interleaved(cases, 2, args.reps)
    rows = []
    for name in cases:
        ratio = paired_ratio(times[name], times["PyTorch step"])
        rows.append([name, fmt_ms(summary(times[name])), fmt_ratio(ratio)])
    print_table(["case", "ms", "/ PyTorch step"], rows)
    print()
    gemm_ms = summary(times["its conv GEMMs alone"])["median_ms"]
    print(f"conv GEMMs: {gflop:.2f} GFLOP per step, {gflop / gemm_ms * 1e3:.0f} GFLOP/s in this run ({env['numpy_blas']}).")
    print(f"ms: median (IQR) of {args.reps} turns, the cases alternating; ratios paired per turn.")
    print(f"load average after the run: {[round(v, 2) for v in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
