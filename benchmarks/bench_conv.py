"""Conv2d 3x3, padding 1, forward plus backward (input and weight gradients): minigrad against PyTorch.

Timed cases, on the same x, weight and output gradient (float32, no bias, as
before a normalization layer):

* ``minigrad``: ``conv2d(x, w, stride=s, padding=1).backward(dy)`` through
  autograd, x and w both needing gradients;
* for stride 1, ``minigrad, dx by col2im``: the same with the input gradient
  computed the textbook way (``col2im(W.T @ g)``) instead of as a convolution
  of the output gradient, to show what that choice is worth;
* ``torch``: ``torch.nn.functional.conv2d`` forward plus ``backward`` on the
  same arrays.

The minigrad input is what a convolution receives inside a model: an NCHW view
of channel-major, batch-innermost memory (the output of the previous layer);
PyTorch gets a contiguous NCHW tensor, its own layout.

Target: minigrad's conv at most 1.2x PyTorch's, at 1 and 2 threads. Verdicts
are informational; the exit code is 0.

    python benchmarks/bench_conv.py                          # 64->64 at 16x16, stride 1 and 2; 128->128 at 8x8
    python benchmarks/bench_conv.py --threads 2 --case 32,64,64,16,1 --json conv.json
"""

from __future__ import annotations

import argparse
import os
from typing import Any
from unittest import mock

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
from minigrad.memory import keep_freed_memory
from minigrad.ops import conv as conv_module

TARGET = 1.2  # minigrad's forward + backward over PyTorch's, at most
DEFAULT_CASES = [(32, 64, 64, 16, 1), (32, 64, 64, 16, 2), (32, 128, 128, 8, 1)]


def parse_case(text: str) -> tuple[int, int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,C_IN,C_OUT,H,STRIDE, got {text!r}") from None
    if len(values) != 5 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected five positive integers N,C_IN,C_OUT,H,STRIDE, got {text!r}")
    return values  # type: ignore[return-value]


def make_cases(torch: Any, case: tuple[int, int, int, int, int], seed: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The timed calls of one case, and the largest differences to PyTorch (y, dx, dw)."""
    n, c_in, c_out, h, stride = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c_in, h, h)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
    oh = (h + 2 - 3) // stride + 1
    dy = rng.standard_normal((n, c_out, oh, oh)).astype(np.float32)
    x_chwn = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)  # a previous layer's output
    dy_chwn = np.ascontiguousarray(dy.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)

    def minigrad_call() -> tuple[mg.Tensor, mg.Tensor, mg.Tensor]:
        tx, tw = mg.Tensor(x_chwn, requires_grad=True), mg.Tensor(w, requires_grad=True)
        y = mg.conv2d(tx, tw, stride=stride, padding=1)
        y.backward(dy_chwn)
        return y, tx, tw

    def minigrad_col2im() -> None:
        with mock.patch.object(conv_module, "transposed_convolution_applies", lambda *a: False):
            minigrad_call()

    tx, tw, tdy = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)

    def torch_call() -> tuple[Any, Any, Any]:
        x_, w_ = tx.detach().requires_grad_(), tw.detach().requires_grad_()
        y = torch.nn.functional.conv2d(x_, w_, stride=stride, padding=1)
        y.backward(tdy)
        return y, x_, w_

    ours, theirs = minigrad_call(), torch_call()
    gaps = {
        "y": float(np.abs(mg.backend.to_numpy(ours[0].data) - theirs[0].detach().numpy()).max()),
        "dx": float(np.abs(mg.backend.to_numpy(ours[1].grad) - theirs[1].grad.numpy()).max()),
        "dw": float(np.abs(mg.backend.to_numpy(ours[2].grad) - theirs[2].grad.numpy()).max()),
    }
    cases = {"minigrad": minigrad_call}
    if stride == 1:
        cases["minigrad, dx by col2im"] = minigrad_col2im
    cases["torch"] = torch_call
    return cases, gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case", type=parse_case, action="append", help="N,C_IN,C_OUT,H,STRIDE; repeat for several (default: three)"
    )
    parser.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads for both (default 1)")
    parser.add_argument("--reps", type=int, default=20, help="timed calls per case (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also save every number (and the raw times) as JSON")
    args = parser.parse_args(argv)

    torch = import_torch()
    mg.use_backend("numpy")
    set_threads(args.threads, torch)
    env = environment(torch, args.threads)
    env["allocator"] = keep_freed_memory()
    print_header("Conv2d 3x3, padding 1, forward + backward (dx and dw), float32, CPU: minigrad vs PyTorch", env)

    rows, results = [], []
    for case in args.case or DEFAULT_CASES:
        cases, gaps = make_cases(torch, case, args.seed)
        times = time_interleaved(cases, args.warmup, args.reps)
        entry: dict[str, Any] = {"case": list(case), "max_abs_diff_to_torch": gaps, "cases": {}}
        n, c_in, c_out, h, stride = case
        for name in cases:
            ratio = paired_ratio(times[name], times["torch"])
            entry["cases"][name] = {**summary(times[name]), "vs_torch": ratio, "raw_seconds": times[name].tolist()}
            verdict = ("PASS" if ratio["median"] <= TARGET else "FAIL") if name == "minigrad" else ""
            label = f"({n}, {c_in}, {h}, {h}) -> {c_out}, stride {stride}"
            rows.append([label, name, fmt_ms(summary(times[name])), fmt_ratio(ratio), verdict])
        results.append(entry)
    print_table(["x -> out channels", "case", "ms", "/ PyTorch", f"target <= {TARGET}"], rows)
    print()
    print(f"ms: median (IQR) of {args.reps} calls after {args.warmup} warm-up calls, cases alternating;")
    print("/ PyTorch: median (IQR) of the paired per-repetition ratios. Verdicts are informational.")
    worst = {key: max(r["max_abs_diff_to_torch"][key] for r in results) for key in ("y", "dx", "dw")}
    print(f"max |minigrad - PyTorch|: y {worst['y']:.1e}, dx {worst['dx']:.1e}, dw {worst['dw']:.1e}")
    print(f"load average after the run: {[round(v, 2) for v in os.getloadavg()]}")
    save_json(args.json, {"benchmark": "conv", "target": TARGET, "environment": env, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
