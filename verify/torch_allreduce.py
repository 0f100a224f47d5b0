"""`efa-verify run --engine torch`: the proof through torch.distributed, under torchrun.

For images without nccl-tests.  NCCL prints the same NCCL_DEBUG=INFO lines
whoever calls it, so the parser decides EFA and GDR exactly as for nccl-tests;
rank 0 prints the nccl-tests table layout (in-place columns only: torch's
all_reduce is in-place, so the out-of-place columns say N/A rather than
repeat a number) so bandwidth is read the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from verify.tables import load_table

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
HEADER = ("#       size         count      type   redop    root     time   algbw   busbw #wrong"
          "     time   algbw   busbw #wrong\n"
          "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)      "
          "      (us)  (GB/s)  (GB/s)\n")


def _bytes(text: str) -> int:
    unit = text[-1].upper() if text[-1].isalpha() else ""
    return int(text[: len(text) - len(unit)]) * UNITS[unit]


def sweep_sizes(sweep: str) -> tuple[list[int], int, int]:
    """Sizes, iterations and warm-up iterations from the same table nccl-tests gets."""
    args = load_table("run")["sweeps"][sweep]
    opts = dict(zip(args[::2], args[1::2], strict=True))
    size, end, factor = _bytes(opts["-b"]), _bytes(opts["-e"]), int(opts["-f"])
    sizes = []
    while size <= end:
        sizes.append(size)
        size *= factor
    return sizes, int(opts["-n"]), int(opts["-w"])


def bus_bandwidth(size: int, seconds: float, world: int) -> float:
    """nccl-tests' all_reduce bus bandwidth: algbw * 2(n-1)/n, in GB/s."""
    return size / seconds / 1e9 * 2 * (world - 1) / world


def row_text(size: int, seconds: float, world: int, wrong: int) -> str:
    """One result row in nccl-tests' layout (float, sum), in-place columns measured."""
    algbw = size / seconds / 1e9
    return (f"{size:>12} {size // 4:>13}     float     sum      -1      N/A     N/A     N/A"
            f"    N/A {seconds * 1e6:>8.1f} {algbw:>7.2f} "
            f"{bus_bandwidth(size, seconds, world):>7.2f} {wrong:>6}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.torch_allreduce")
    parser.add_argument("--sweep", choices=("quick", "full"), default="quick")
    args = parser.parse_args(argv)
    try:
        import torch
        import torch.distributed as dist
    except ImportError as exc:
        print(f"efa-verify torch engine: torch is not importable ({exc})", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print(f"efa-verify torch engine: CUDA is not available to torch {torch.__version__} "
              "(no GPU visible, or a CPU-only build): NCCL cannot run", file=sys.stderr)
        return 1
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    sizes, iters, warmup = sweep_sizes(args.sweep)
    if rank == 0:
        sys.stdout.write(HEADER)
    total, failed = 0.0, 0
    for size in sizes:
        count = size // 4
        data = torch.full((count,), float(rank + 1), device="cuda")
        for _ in range(warmup):
            dist.all_reduce(data)
        data.fill_(float(rank + 1))
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(data)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / iters
        data.fill_(float(rank + 1))  # one more, checked: every element is 1 + 2 + ... + world
        dist.all_reduce(data)
        wrong = int((data != float(world * (world + 1) // 2)).sum().item())
        failed += wrong > 0
        total += bus_bandwidth(size, seconds, world)
        if rank == 0:
            sys.stdout.write(row_text(size, seconds, world, wrong))
    if rank == 0:
        sys.stdout.write(f"# Out of bounds values : {failed} {'FAILED' if failed else 'OK'}\n"
                         f"# Avg bus bandwidth    : {total / len(sizes):.4f}\n")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
