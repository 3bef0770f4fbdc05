"""One SGD training step of the CIFAR model on the CPU: minigrad against the same model in PyTorch.

A step is what a training loop does per batch: zero the gradients, forward,
mean cross-entropy, backward, SGD update (lr 0.01, momentum 0.9), in training
mode (the normalization layers use batch statistics and update their running
ones). The PyTorch model has the same layers, the same shapes and the same
initial weights (copied from minigrad's). PyTorch has no Batch Renorm, so the
"brn" arm is compared with PyTorch's BatchNorm model: the price of the extra
correction shows up in that ratio.

Both libraries get the same thread count, and their repetitions alternate in
the same run; the ratio is the median of the paired per-repetition ratios.
Target: minigrad's step at most 1.2x PyTorch's, at 1 and at 2 threads. The
PASS/FAIL column is informational: the exit code is 0 whatever the numbers.

    python benchmarks/bench_train_step.py                # 1 thread, bn, brn and none
    python benchmarks/bench_train_step.py --threads 2 --reps 30 --json step.json
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
from minigrad.memory import keep_freed_memory

TARGET = 1.2  # minigrad's step time over PyTorch's, at most (at 1 and at 2 threads)
LR, MOMENTUM = 0.01, 0.9


def torch_cifar_cnn(torch: Any, norm: str, channels: tuple[int, int, int] = (32, 64, 128), num_classes: int = 10):
    """PyTorch's twin of :class:`minigrad.models.CifarCNN`, with the same module names (so weights copy by name)."""
    nn = torch.nn

    class GlobalAvgPool2d(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    def block(c_in: int, c_out: int):
        conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none")
        return nn.Sequential(conv, nn.BatchNorm2d(c_out) if norm != "none" else nn.Identity(), nn.ReLU())

    c1, c2, c3 = channels
    model = nn.Module()
    model.features = nn.Sequential(
        block(3, c1), nn.MaxPool2d(2), block(c1, c2), block(c2, c2), nn.MaxPool2d(2), block(c2, c3), block(c3, c3)
    )
    model.head = nn.Sequential(GlobalAvgPool2d(), nn.Linear(c3, num_classes))
    model.forward = lambda x: model.head(model.features(x))
    return model


def copy_weights(torch: Any, source: mg.nn.Module, target: Any) -> None:
    """Copy every minigrad parameter into the PyTorch parameter of the same name (shapes must match)."""
    theirs = dict(target.named_parameters())
    ours = dict(source.named_parameters())
    if set(theirs) != set(ours):
        raise RuntimeError(f"the two models differ: {sorted(set(theirs) ^ set(ours))}")
    with torch.no_grad():
        for name, param in ours.items():
            value = torch.from_numpy(np.array(mg.backend.to_numpy(param.data)))
            if tuple(value.shape) != tuple(theirs[name].shape):
                raise RuntimeError(f"{name}: minigrad shape {tuple(value.shape)}, PyTorch shape {tuple(theirs[name].shape)}")
            theirs[name].copy_(value)


def make_steps(torch: Any, norm: str, batch: int, seed: int) -> tuple[dict[str, Any], float | None]:
    """The two step functions for `norm`, and |loss difference| of the first forward (None for brn: no twin)."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, size=batch)

    model = mg.models.CifarCNN(norm=norm, generator=mg.Generator(seed)).train()
    optimizer = mg.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = mg.Tensor(images), mg.Tensor(labels)

    twin = torch_cifar_cnn(torch, "bn" if norm == "brn" else norm).train()
    copy_weights(torch, model, twin)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=LR, momentum=MOMENTUM)
    tx, ty = torch.from_numpy(images), torch.from_numpy(labels)

    loss_gap = None
    if norm != "brn":
        ours = mg.backend.item(mg.cross_entropy(model(x), y).data)
        theirs = torch.nn.functional.cross_entropy(twin(tx), ty).item()
        loss_gap = abs(ours - theirs)

    def minigrad_step() -> None:
        optimizer.zero_grad()
        loss = mg.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    def torch_step() -> None:
        twin_optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(twin(tx), ty)
        loss.backward()
        twin_optimizer.step()

    return {"minigrad": minigrad_step, "torch": torch_step}, loss_gap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads for both (default 1)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--norms", default="bn,brn,none", help="comma-separated arms among bn, brn, none")
    parser.add_argument("--reps", type=int, default=20, help="timed steps per library and arm (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="leave glibc's malloc as it is, instead of the tuning `minigrad train` applies (whole process, both libraries)",
    )
    parser.add_argument("--json", metavar="FILE", help="also save every number (and the raw times) as JSON")
    args = parser.parse_args(argv)
    norms = [n.strip() for n in args.norms.split(",") if n.strip()]
    if any(n not in mg.models.cnn.NORMS for n in norms):
        parser.error(f"--norms: expected some of {mg.models.cnn.NORMS}, got {args.norms!r}")

    torch = import_torch()
    mg.use_backend("numpy")
    set_threads(args.threads, torch)
    env = environment(torch, args.threads)
    env["allocator"] = "default" if args.default_allocator else keep_freed_memory()
    print_header(f"CIFAR CNN training step, batch {args.batch}, float32, CPU: minigrad vs PyTorch", env)

    rows, results = [], {}
    for norm in norms:
        steps, loss_gap = make_steps(torch, norm, args.batch, args.seed)
        times = time_interleaved(steps, args.warmup, args.reps)
        ratio = paired_ratio(times["minigrad"], times["torch"])
        cpu_ratio = paired_ratio(times.cpu["minigrad"], times.cpu["torch"])
        faults = {name: float(np.median(times.faults[name])) for name in steps}
        results[norm] = {
            "minigrad": summary(times["minigrad"]),
            "torch": summary(times["torch"]),
            "ratio": ratio,
            "cpu_time_ratio": cpu_ratio,
            "minigrad_cpu": summary(times.cpu["minigrad"]),
            "torch_cpu": summary(times.cpu["torch"]),
            "page_faults_per_step": faults,
            "first_loss_abs_diff": loss_gap,
            "raw_seconds": {k: v.tolist() for k, v in times.items()},
        }
        verdict = "PASS" if ratio["median"] <= TARGET else "FAIL"
        reference = "no norm" if norm == "none" else "BatchNorm2d"
        rows.append(
            [
                norm,
                fmt_ms(results[norm]["minigrad"]),
                f"{fmt_ms(results[norm]['torch'])} [{reference}]",
                fmt_ratio(ratio),
                fmt_ratio(cpu_ratio),
                f"{faults['minigrad']:.0f} / {faults['torch']:.0f}",
                f"<= {TARGET}",
                verdict,
            ]
        )
    header = ["norm", "minigrad ms", "PyTorch ms", "ratio", "CPU-time ratio", "page faults / step", "target", "verdict"]
    print_table(header, rows)
    print()
    print(f"ms: wall-clock median (IQR) of {args.reps} steps after {args.warmup} warm-up steps, the libraries alternating.")
    print("ratio: median (IQR) of minigrad / PyTorch over the paired repetitions, wall-clock (the verdict) and CPU time.")
    print("page faults / step: median minor page faults per step, minigrad / PyTorch. Verdicts are informational.")
    gaps = {n: r["first_loss_abs_diff"] for n, r in results.items() if r["first_loss_abs_diff"] is not None}
    if gaps:
        shown = ", ".join(f"{n} {g:.1e}" for n, g in gaps.items())
        print(f"same model check, |loss difference| of the first forward: {shown}")
    print(f"load average after the run: {[round(v, 2) for v in os.getloadavg()]}")
    save_json(
        args.json, {"benchmark": "train_step", "batch": args.batch, "target": TARGET, "environment": env, "results": results}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
