"""Data-parallel training throughput on the CPU: images per second of the whole job on 1 and 2 MPI ranks.

Each row launches ``mpiexec -n K`` on this script in worker mode. Every rank
trains the model on its shard of each global batch (the paper's setting:
each rank normalizes its own shard), the gradients are averaged with one
allreduce, and the running statistics with one tiny allreduce per
normalization layer; then SGD takes the step. Images are random (the model's
input shape), so that data loading is not measured. After `--warmup` steps
the ranks meet at a barrier and `--steps` steps are timed; throughput is
global batch x steps / wall time. "allreduce" is the share of the step spent
in the gradient allreduce (waiting for the slower rank included).

The global batch is fixed (default 64), so 2 ranks each compute half of it:
with one BLAS thread per rank, 2 ranks use 2 cores where 1 rank uses one. On a
machine that is busy with other work, the speed-up is smaller than it would be
on idle cores.

    python benchmarks/bench_ranks.py                                   # digits_cnn, global batch 64, 1 and 2 ranks
    python benchmarks/bench_ranks.py --model cifar_cnn --batch-size 32 --steps 20
    python benchmarks/bench_ranks.py --ranks 1 2 4 --norm brn --json ranks.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

MODELS = {"digits_cnn": (1, 8), "cifar_cnn": (3, 32)}  # input channels and image size


def worker(args: argparse.Namespace) -> None:
    """One rank: time `args.steps` data-parallel SGD steps; rank 0 prints the numbers as one JSON line."""
    import minigrad as mg
    from minigrad import distributed

    comm = distributed.world()
    channels, size = MODELS[args.model]
    generator = mg.Generator(0)
    common = dict(norm=args.norm, in_channels=channels, generator=generator)
    model = mg.models.CifarCNN(**common) if args.model == "cifar_cnn" else mg.models.DigitsCNN(**common)
    optimizer = mg.optim.SGD(list(model.named_parameters()), lr=0.01, momentum=0.9)
    start, stop = distributed.shard_bounds(args.batch_size, comm.rank, comm.size)
    share = (stop - start) / args.batch_size
    rng = np.random.default_rng(comm.rank)
    images = mg.Tensor(rng.normal(size=(stop - start, channels, size, size)).astype(np.float32))
    labels = mg.Tensor(rng.integers(0, 10, size=stop - start), dtype="int64")
    reduce_seconds = 0.0

    def step() -> None:
        nonlocal reduce_seconds
        loss = mg.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        tick = time.perf_counter()
        distributed.average_gradients(model.parameters(), comm, share, extra=[share * loss.item()])
        reduce_seconds += time.perf_counter() - tick
        optimizer.step()

    distributed.share_running_stats(model, comm)
    for _ in range(args.warmup):
        step()
    comm.barrier()
    reduce_seconds = 0.0
    began = time.perf_counter()
    for _ in range(args.steps):
        step()
    comm.barrier()
    wall = time.perf_counter() - began
    distributed.check_in_sync(model, comm)
    if comm.is_root:
        library = "none"
        if isinstance(comm, distributed.MPICommunicator):
            from mpi4py import MPI

            library = MPI.Get_library_version().splitlines()[0].strip()
        speed = args.batch_size * args.steps / wall
        record = {"ranks": comm.size, "wall": wall, "images_per_sec": speed, "allreduce_share": reduce_seconds / wall}
        print(json.dumps({**record, "mpi": library}))


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("mpiexec not found: pip install -e '.[mpi]' (mpi4py and the MPICH wheels)")
    return found


def launch(ranks: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run the worker on `ranks` MPI processes; the JSON line rank 0 printed."""
    threads = str(args.threads)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    options = ["--model", args.model, "--norm", args.norm, "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
    command = [_mpiexec(), "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "--worker", *options]
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="digits_cnn")
    parser.add_argument("--norm", choices=("bn", "brn", "none"), default="bn")
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch, split over the ranks")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per rank")
    parser.add_argument("--repeat", type=int, default=3, help="launches per row; the best is reported")
    parser.add_argument("--json", metavar="FILE", help="also save the numbers here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print("# Data-parallel training throughput (minigrad.distributed, CPU)")
    print()
    print(
        f"- model {args.model}, norm {args.norm}, global batch {args.batch_size}, {args.steps} timed steps after "
        f"{args.warmup}; {args.threads} BLAS thread(s) per rank; best of {args.repeat} launches"
    )
    print(f"- nproc {os.cpu_count()}, load average (1, 5, 15 min) {[round(v, 2) for v in os.getloadavg()]}, "
          f"python {platform.python_version()}, numpy {np.__version__}")  # fmt: skip
    rows, results = [], []
    base = None
    for ranks in args.ranks:
        runs = [launch(ranks, args) for _ in range(args.repeat)]
        best = max(runs, key=lambda r: r["images_per_sec"])
        results.append({"ranks": ranks, "runs": runs, "best": best})
        base = base or best["images_per_sec"]
        per_rank = ", ".join(map(str, sorted(set(_shards(args.batch_size, ranks)))))
        rows.append([str(ranks), per_rank, f"{best['images_per_sec']:.0f}", f"{best['images_per_sec'] / base:.2f}x",
                     f"{100 * best['allreduce_share']:.0f}%"])  # fmt: skip
    print(f"- MPI: {results[-1]['best']['mpi']}")
    print()
    header = ["ranks", "examples per rank", "images/s", "vs 1 rank", "allreduce"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
        print(f"\nsaved {args.json}")


def _shards(total: int, ranks: int) -> list[int]:
    base, extra = divmod(total, ranks)
    return [base + (1 if r < extra else 0) for r in range(ranks)]


if __name__ == "__main__":
    main()
