"""Where a BatchNorm2d forward + backward spends its time: the fused kernel stage by stage, beside PyTorch.

``bench_norm.py`` times whole layers; this script times the stages of the
fused NumPy kernels (:mod:`minigrad.norm.fused`) that the layers run in
training mode, on one shape and layout, and two plain NumPy passes over the
same array as units of cost (a copy, an in-place multiply). PyTorch's
forward alone and its forward + backward are timed in the same turns.

    python benchmarks/profile_norm.py                              # (32, 64, 32, 32), nchw, 1 thread
    python benchmarks/profile_norm.py --layout chwn --reps 50
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from _common import environment, fmt_ms, import_torch, print_header, print_table, set_threads, summary, time_interleaved
from bench_norm import EPS, in_layout, parse_shape

from minigrad.norm import fused


def make_stages(torch: Any, shape: tuple[int, ...], layout: str, seed: int) -> dict[str, Any]:
    """The timed stages, each a function of no arguments."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = in_layout(rng.standard_normal(shape).astype(np.float32) * 2 + 0.5, layout)
    dy = in_layout(rng.standard_normal(shape).astype(np.float32), layout)
    gamma = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
    rows = fused._rows(x, None)
    ones = np.ones(rows.matrix.shape[1], np.float32)
    mu_b, sigma_b, _ = fused._moments(rows, EPS, np.float32)
    _, cache = fused.batch_norm_forward(x, gamma, beta, EPS)
    scratch = np.empty_like(x)
    twin = torch.nn.BatchNorm2d(c, eps=EPS).train()
    tx, tdy = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(dy))

    def torch_forward() -> Any:
        with torch.no_grad():
            return twin(tx)

    def torch_step() -> Any:
        xt = tx.detach().requires_grad_()
        twin(xt).backward(tdy)
        return xt.grad

    scale = (gamma / sigma_b).reshape(1, c)
    return {
        "forward: row sums (x @ ones)": lambda: rows.matrix @ ones,
        "forward: moments (row sums, then Σ(x − μ_B)² by blocks)": lambda: fused._moments(rows, EPS, np.float32),
        "forward: y = (x − μ_B)·γ/σ_B + β by blocks": lambda: fused._affine(
            rows, tuple(x.shape), mu_b, scale, beta.reshape(1, c), np.float32
        ),
        "forward, whole": lambda: fused.batch_norm_forward(x, gamma, beta, EPS),
        "backward: Σ dy and Σ dy·(x − μ_B) only": lambda: fused.training_backward(dy, cache, need_dx=False),
        "backward, whole": lambda: fused.training_backward(dy, cache),
        "NumPy copy x → buffer (2 passes)": lambda: np.copyto(scratch, x),
        "NumPy buffer *= 2 in place (2 passes)": lambda: np.multiply(scratch, 2, out=scratch),
        "PyTorch forward": torch_forward,
        "PyTorch forward + backward": torch_step,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=parse_shape, default=(32, 64, 32, 32), help="N,C,H,W (default 32,64,32,32)")
    parser.add_argument("--layout", choices=("nchw", "chwn"), default="nchw", help="memory order of x (default nchw)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads for both (default 1)")
    parser.add_argument("--reps", type=int, default=30, help="timed calls per stage (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch = import_torch()
    set_threads(args.threads, torch)
    print_header(
        f"Stages of BatchNorm2d forward + backward, x {args.shape} {args.layout}, float32, CPU",
        environment(torch, args.threads),
    )
    times = time_interleaved(make_stages(torch, args.shape, args.layout, args.seed), args.warmup, args.reps)
    print_table(["stage", "ms"], [[name, fmt_ms(summary(times[name]))] for name in times])
    print(f"\nms: median (IQR) of {args.reps} calls after {args.warmup} warm-up calls, the stages alternating.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
