"""Parser throughput against grep, on a ~1 GiB multi-rank NCCL log built from real lines.

The log is made of line shapes from the shared corpus (aws-ofi-nccl 1.16 init
lines of corpus 018, channel lines over Libfabric with and without GDRDMA, P2P
lines, nccl-tests rows of corpus 004) for 1024 ranks on 128 nodes, repeated as
successive jobs until it reaches the target size.  Baseline and parser run on
the same file in the same run; the ratio is what counts (machines are noisy).

    python bench/parse.py [--size-mb 1024] [--repeat 3] [--per-rank-files] [--keep]

--per-rank-files writes the same jobs as one file per rank in a directory (the
NCCL_DEBUG_FILE=%h.%p layout) and runs `grep -r` against it.

Each tool runs --repeat times, alternating, and its best time counts: the
parser uses every core and grep one, so a busy neighbour on a shared machine
skews a single pair of runs (seen here: ratios from 0.22 to 0.40 in three
consecutive single runs).

Floor: the parser at >= 1/4 of grep's throughput; stretch: 1/2.  Peak memory
of the parser process is printed too (target < 200 MB whatever the size).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANKS = 1024
PER_NODE = 8
GREP_PATTERN = "Selected [Pp]rovider|Using network|via NET/|Avg bus bandwidth"

INIT = """\
{h}:{pid}:{pid} [{d}] NCCL INFO Bootstrap: Using eth0:10.0.{n}.{d}<0>
{h}:{pid}:{pid} [{d}] NCCL INFO cudaDriverVersion 13000
{h}:{pid}:{pid} [{d}] NCCL INFO NCCL version 2.27.3+cuda12.9
{h}:{pid}:{t} [{d}] NCCL INFO NET/Plugin: Loaded net plugin Libfabric (v10)
{h}:{pid}:{t} [{d}] NCCL INFO Successfully loaded external plugin libnccl-net.so
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Initializing aws-ofi-nccl 1.16.2
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Using Libfabric version 2.1
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Using CUDA driver version 13000 with runtime 12090
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Configuring AWS-specific options
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Setting provider_filter to efa
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Running on p5.48xlarge platform, topology file /opt/amazon/ofi-nccl/share/aws-ofi-nccl/xml/p5.48xl-topo.xml
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Internode latency set at 75.0 us
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Selected provider is efa, fabric is efa (found 32 nics)
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Creating one domain per process
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Support for global registrations: true
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Support for DMA-BUF registrations: false
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Adding FI_EFA_FORK_SAFE=1 to environment
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Adding NCCL_BUFFSIZE=8388608 to environment
{h}:{pid}:{t} [{d}] NCCL INFO NET/OFI Adding NCCL_P2P_NET_CHUNKSIZE=524288 to environment
{h}:{pid}:{t} [{d}] NCCL INFO Initialized NET plugin Libfabric
{h}:{pid}:{t} [{d}] NCCL INFO Assigned NET plugin Libfabric to comm
{h}:{pid}:{t} [{d}] NCCL INFO Using network Libfabric
{h}:{pid}:{t} [{d}] NCCL INFO DMA-BUF is available on GPU device {d}
{h}:{pid}:{t} [{d}] NCCL INFO ncclCommInitRankConfig comm 0x556d504b7460 rank {r} nranks 1024 cudaDev {d} nvmlDev {d} busId 101d0 commId 0xb079519ed44b724 - Init START
{h}:{pid}:{t} [{d}] NCCL INFO Bootstrap timings total 8.128340 (create 0.000044, send 0.000162, recv 1.970281, ring 0.000162, delay 0.000000)
{h}:{pid}:{t} [{d}] NCCL INFO comm 0x556d504b7460 rank {r} nRanks 1024 nNodes 128 localRanks 8 localRank {d} MNNVL 0
{h}:{pid}:{t} [{d}] NCCL INFO Setting affinity for GPU {d} to ffffffff,ffff0000,00000000
{h}:{pid}:{t} [{d}] NCCL INFO P2P Chunksize set to 524288
{h}:{pid}:{t} [{d}] NCCL INFO PROFILER/Plugin: Could not find: libnccl-profiler.so.
{h}:{pid}:{t} [{d}] NCCL INFO Check P2P Type isAllDirectP2p 0 directMode 0
{h}:{pid}:{t} [{d}] NCCL INFO threadThresholds 8/8/64 | 8192/8/64 | 512 | 512
{h}:{pid}:{t} [{d}] NCCL INFO 32 coll channels, 32 collnet channels, 16 nvls channels, 32 p2p channels, 32 p2p channels per peer
{h}:{pid}:{t} [{d}] NCCL INFO TUNER/Plugin: Using tuner plugin nccl_ofi_tuner
{h}:{pid}:{t} [{d}] NCCL INFO ncclCommInitRankConfig comm 0x556d504b7460 rank {r} nranks 1024 cudaDev {d} nvmlDev {d} busId 101d0 commId 0xb079519ed44b724 - Init COMPLETE
"""
NET = "{h}:{pid}:{t} [{d}] NCCL INFO Channel {c:02d}/0 : {p}[{d}] -> {r}[{d}] [receive] via NET/Libfabric/{d}/GDRDMA\n" \
      "{h}:{pid}:{t} [{d}] NCCL INFO Channel {c:02d}/0 : {r}[{d}] -> {q}[{d}] [send] via NET/Libfabric/{d}/GDRDMA\n"
P2P = "{h}:{pid}:{t} [{d}] NCCL INFO Channel {c:02d}/1 : {r}[{d}] -> {q}[{e}] via P2P/CUMEM/read\n"
TABLE = """\
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
{rows}# Out of bounds values : 0 OK
# Avg bus bandwidth    : 79.9352
"""
ROW = "  {size:>10}  {count:>12}     float     sum      -1   4553.6  235.80  442.13      0   4553.0  235.83  442.19      0\n"


def one_job() -> list[bytes]:
    """Each rank's lines of one job, in rank order; rank 0 also prints the table."""
    ranks = []
    for rank in range(RANKS):
        node, dev = divmod(rank, PER_NODE)
        ids = {"h": f"p5-node-{node:03d}", "pid": 4000 + dev, "t": 4100 + dev, "d": dev,
               "n": node, "r": rank, "p": (rank - PER_NODE) % RANKS,
               "q": (rank + PER_NODE) % RANKS, "e": (dev + 1) % PER_NODE}
        lines = [INIT.format(**ids)]
        for channel in range(16):
            lines.append(NET.format(c=channel, **ids))
            lines.append(P2P.format(c=channel, **ids))
        ranks.append("".join(lines).encode())
    rows = "".join(ROW.format(size=8 << i, count=2 << i) for i in range(28))
    ranks[0] += TABLE.format(rows=rows).encode()
    return ranks


def build(path: Path, size_mb: int, per_rank: bool) -> int:
    """Jobs one after another until `size_mb`: one file with the ranks' lines in
    turn, or (per_rank) a directory with one file per rank (NCCL_DEBUG_FILE=%h.%p)."""
    job = one_job()
    repeats = -(-(size_mb << 20) // sum(map(len, job)))
    if per_rank:
        path.mkdir()
        outputs = [((path / f"rank{rank:04d}.log"), [text]) for rank, text in enumerate(job)]
    else:
        outputs = [(path, [b"".join(job)])]
    for file, texts in outputs:
        with file.open("wb") as handle:
            for _ in range(repeats):  # one job at a time: the bench holds no big buffer
                handle.writelines(texts)
    return sum(map(len, job)) * repeats


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    return time.perf_counter() - start, proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the best counts")
    parser.add_argument("--per-rank-files", action="store_true",
                        help="one file per rank in a directory (grep -r against it)")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="efakit-bench-"))
    log = workdir / ("ranks" if args.per_rank_files else "ranks.log")
    size = build(log, args.size_mb, args.per_rank_files)
    files = sorted(log.iterdir()) if args.per_rank_files else [log]
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # warm
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    grep_runs, parse_runs = [], []
    for _ in range(args.repeat):
        grep_runs.append(timed(["grep", "-rcE", GREP_PATTERN, str(log)]))
        parse_runs.append(timed([sys.executable, "-m", "verify.cli", "parse", str(log),
                                 "--json", "--instance-type", "p5"]))
    peak_kb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    grep_s, grep = min(grep_runs, key=lambda run: run[0])
    parse_s, parsed = min(parse_runs, key=lambda run: run[0])
    if parsed.returncode not in (0, 1, 3) or '"efa_used": true' not in parsed.stdout:
        print(f"parser failed (exit {parsed.returncode}): {parsed.stderr[-500:]}")
        return 1
    mb = size / 1e6
    ratio = grep_s / parse_s
    matched = sum(int(line.rsplit(":", 1)[-1]) for line in grep.stdout.split())
    layout = f"{len(files)} per-rank files" if args.per_rank_files else "one file"
    print(f"log: {mb:.0f} MB in {layout}, {RANKS} ranks per job, grep matched {matched} lines")
    print(f"{'tool':<12}{'best s':>10}{'MB/s':>10}  all runs (s)")
    for name, best, runs in (("grep -rcE", grep_s, grep_runs), ("efa-verify", parse_s, parse_runs)):
        times = " ".join(f"{run[0]:.2f}" for run in runs)
        print(f"{name:<12}{best:>10.2f}{mb / best:>10.0f}  {times}")
    print(f"throughput ratio parser/grep: {ratio:.2f} (floor 0.25, stretch 0.50)")
    print(f"parser peak RSS: {peak_kb / 1024:.0f} MB (target < 200 MB)")
    if not args.keep:
        shutil.rmtree(workdir)
    else:
        print(f"kept {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
