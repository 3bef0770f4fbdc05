"""BatchNorm2d and BatchRenorm2d, forward plus backward in training mode: minigrad against PyTorch and the memory floor.

Timed cases, all on the same input x and output gradient dy (float32):

* minigrad's layers ``mg.nn.BatchNorm2d`` / ``mg.nn.BatchRenorm2d`` as a user
  calls them: ``layer(Tensor(x, requires_grad=True)).backward(dy)``, through
  autograd, running statistics updated;
* minigrad's raw kernels (``batch_norm_forward`` + ``batch_norm_backward``, and
  the Batch Renorm pair) on arrays, without the layer and autograd around them;
* ``torch.nn.BatchNorm2d``, forward plus backward (PyTorch has no Batch Renorm,
  so both minigrad layers are compared with it);
* a large NumPy copy (256 MiB), which measures the memory bandwidth in the same
  run; it is timed before and after each shape's cases rather than between
  them, since it empties the caches and would slow whichever case came next.

The memory floor is the time that the bytes that must move take at that
bandwidth. Counted per element of x: read x, write y (forward); read dy, read
x again (or x̂), write dx (backward): 5 passes, ``5 * x.nbytes`` bytes (the
per-channel statistics and parameters are negligible). A copy counts its bytes
read plus written. No real implementation reaches the floor: the forward must
see x once for the statistics before it can write y, and caches make small
shapes look faster than main memory.

Layouts: "nchw" is a C-contiguous x; "chwn" is an (N, C, H, W) view of
channel-major, batch-innermost memory, which is what minigrad's convolutions
hand to the normalization layers inside a model. PyTorch always gets a
contiguous NCHW tensor, its own layout.

Targets: minigrad's layers no slower than PyTorch's BatchNorm2d (ratio <= 1)
at 1 and at 2 threads, and at most 3x the memory floor at 1 thread. Verdicts
are informational; the exit code is 0.

    python benchmarks/bench_norm.py
    python benchmarks/bench_norm.py --shape 32,128,8,8 --shape 32,64,32,32 --layouts nchw --json norm.json
"""

from __future__ import annotations

import argparse
import os
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
    save_json,
    set_threads,
    summary,
    time_interleaved,
)

import minigrad as mg
from minigrad.norm import kernels as K

TARGET = 1.0  # minigrad's layer time over PyTorch's BatchNorm2d, at most
FLOOR_TARGET = 3.0  # minigrad's layer time over the memory floor, at most (judged at 1 thread)
PASSES = 5  # read x, write y, read dy, read x (or x̂), write dx
EPS, R_MAX, D_MAX = 1e-5, 3.0, 5.0
COPY_BYTES = 256 * 2**20  # the bandwidth copy: far larger than any cache


def parse_shape(text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected N,C,H,W (four positive integers), got {text!r}")
    return shape  # type: ignore[return-value]


def in_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """`a` (N, C, H, W) with the same values in the memory order `layout`."""
    if layout == "nchw":
        return np.ascontiguousarray(a)
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def copy_seconds(reps: int) -> np.ndarray:
    """Seconds per copy of COPY_BYTES between two NumPy arrays (pages touched first), `reps` times."""
    source = np.ones(COPY_BYTES // 4, np.float32)
    target = np.zeros_like(source)
    return time_interleaved({"copy": lambda: np.copyto(target, source)}, 1, reps)["copy"]


def make_cases(torch: Any, shape: tuple[int, ...], layout: str, seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The timed functions for one shape and layout, and the largest gaps to PyTorch's y and dx."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = in_layout(rng.standard_normal(shape).astype(np.float32) * 2 + 0.5, layout)
    dy = in_layout(rng.standard_normal(shape).astype(np.float32), layout)
    gamma = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
    running_mean, running_std = np.zeros(c, np.float32), np.ones(c, np.float32)

    def with_affine(layer: mg.nn.Module) -> mg.nn.Module:
        layer.weight.data, layer.bias.data = gamma.copy(), beta.copy()
        return layer.train()

    bn_layer = with_affine(mg.nn.BatchNorm2d(c, eps=EPS))
    brn_layer = with_affine(mg.nn.BatchRenorm2d(c, eps=EPS, r_max=R_MAX, d_max=D_MAX))
    twin = torch.nn.BatchNorm2d(c, eps=EPS).train()
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(gamma))
        twin.bias.copy_(torch.from_numpy(beta))
    tx, tdy = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(dy))

    def layer_step(layer: mg.nn.Module):
        def step() -> Any:
            xt = mg.Tensor(x, requires_grad=True)
            layer(xt).backward(dy)
            return xt.grad

        return step

    def bn_kernels() -> None:
        _, cache = K.batch_norm_forward(x, gamma, beta, EPS)
        K.batch_norm_backward(dy, cache)

    def brn_kernels() -> None:
        _, cache = K.batch_renorm_forward(x, gamma, beta, running_mean, running_std, R_MAX, D_MAX, EPS)
        K.batch_renorm_backward(dy, cache)

    def torch_step() -> Any:
        xt = tx.detach().requires_grad_()
        out = twin(xt)
        out.backward(tdy)
        return out, xt.grad

    # Agreement with PyTorch (same batch statistics, same eps) before timing.
    xt = mg.Tensor(x, requires_grad=True)
    out = with_affine(mg.nn.BatchNorm2d(c, eps=EPS))(xt)
    out.backward(dy)
    t_out, t_dx = torch_step()
    gaps = {
        "y": float(np.max(np.abs(out.numpy() - t_out.detach().numpy()))),
        "dx": float(np.max(np.abs(np.asarray(xt.grad) - t_dx.numpy()))),
    }
    cases = {
        "minigrad BatchNorm2d": layer_step(bn_layer),
        "minigrad BatchRenorm2d": layer_step(brn_layer),
        "kernels batch_norm": bn_kernels,
        "kernels batch_renorm": brn_kernels,
        "PyTorch BatchNorm2d": torch_step,
    }
    return cases, gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=parse_shape, action="append", help="N,C,H,W of x; repeat for several (default 32,64,32,32)"
    )
    parser.add_argument("--layouts", default="nchw,chwn", help="comma-separated memory orders among nchw, chwn")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads for both (default 1)")
    parser.add_argument("--reps", type=int, default=30, help="timed calls per case (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--copy-reps", type=int, default=5, help="bandwidth copies before and after each shape (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also save every number (and the raw times) as JSON")
    args = parser.parse_args(argv)
    shapes = args.shape or [(32, 64, 32, 32)]
    layouts = [v.strip() for v in args.layouts.split(",") if v.strip()]
    if not layouts or any(v not in ("nchw", "chwn") for v in layouts):
        parser.error(f"--layouts: expected some of nchw, chwn, got {args.layouts!r}")

    torch = import_torch()
    mg.use_backend("numpy")
    set_threads(args.threads, torch)
    env = environment(torch, args.threads)
    print_header("BatchNorm2d / BatchRenorm2d forward + backward (training mode), float32, CPU", env)

    results = []
    for shape in shapes:
        for layout in layouts:
            cases, gaps = make_cases(torch, shape, layout, args.seed)
            before = copy_seconds(args.copy_reps)
            times = time_interleaved(cases, args.warmup, args.reps)
            copies = np.concatenate([before, copy_seconds(args.copy_reps)])
            bandwidth = 2 * COPY_BYTES / np.median(copies)  # bytes read + written per second
            nbytes = PASSES * 4 * int(np.prod(shape))
            floor_seconds = copies * (nbytes / (2 * COPY_BYTES))
            floor_ms = float(np.median(floor_seconds)) * 1e3
            reference = times["PyTorch BatchNorm2d"]
            entry = {
                "shape": list(shape),
                "layout": layout,
                "bytes_that_must_move": nbytes,
                "copy_bandwidth_GBps": bandwidth / 1e9,
                "floor": summary(floor_seconds),
                "max_abs_diff_to_torch": gaps,
                "cases": {},
            }
            rows = []
            for name in cases:
                seconds = times[name]
                vs_torch = paired_ratio(seconds, reference)
                vs_torch_cpu = paired_ratio(times.cpu[name], times.cpu["PyTorch BatchNorm2d"])
                vs_floor = paired_ratio(seconds, np.full_like(seconds, floor_ms / 1e3))
                is_layer = name.startswith("minigrad")
                verdict = ("PASS" if vs_torch["median"] <= TARGET else "FAIL") if is_layer else ""
                floor_verdict = ""
                if is_layer and args.threads == 1:
                    floor_verdict = "PASS" if vs_floor["median"] <= FLOOR_TARGET else "FAIL"
                entry["cases"][name] = {
                    **summary(seconds),
                    "vs_torch": vs_torch,
                    "vs_torch_cpu_time": vs_torch_cpu,
                    "cpu": summary(times.cpu[name]),
                    "page_faults_per_call": float(np.median(times.faults[name])),
                    "vs_floor": vs_floor,
                    "raw_seconds": seconds.tolist(),
                }
                row = [name, fmt_ms(summary(seconds)), fmt_ratio(vs_torch), fmt_ratio(vs_torch_cpu), fmt_ratio(vs_floor)]
                rows.append([*row, verdict, floor_verdict])
            rows.append(["memory floor", fmt_ms(summary(floor_seconds)), "", "", "1", "", ""])
            results.append(entry)
            print(f"## x {shape}, layout {layout}")
            print()
            header = ["case", "ms", "/ PyTorch", "/ PyTorch, CPU time", "/ floor", f"<= {TARGET} x PyTorch"]
            header.append(f"<= {FLOOR_TARGET} x floor (1 thread)")
            print_table(header, rows)
            print()
            print(
                f"floor: {nbytes / 2**20:.1f} MiB ({PASSES} passes over x) at {bandwidth / 1e9:.1f} GB/s "
                f"(copy of {COPY_BYTES // 2**20} MiB, read + write); "
                f"max |minigrad - PyTorch|: y {gaps['y']:.1e}, dx {gaps['dx']:.1e}"
            )
            print()
    print(f"ms: median (IQR) of {args.reps} calls after {args.warmup} warm-up calls, cases alternating.")
    print("Ratios: median (IQR) of the paired per-repetition ratios of wall-clock time (the verdict), or of CPU time;")
    print("/ floor: the median over the memory floor. Verdicts are informational.")
    print(f"load average after the run: {[round(v, 2) for v in os.getloadavg()]}")
    payload = {"benchmark": "norm", "target": TARGET, "floor_target": FLOOR_TARGET, "environment": env, "results": results}
    save_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
