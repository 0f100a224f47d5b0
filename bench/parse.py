"""Parser throughput against grep on ~1 GiB NCCL logs, at 1k, 8k and 64k ranks.

The log is made of line shapes from the shared corpus (aws-ofi-nccl 1.16 init
lines of corpus 018, channel lines over Libfabric with GDRDMA, P2P lines,
nccl-tests rows of corpus 004).  Each rank count gets the same bytes: every
rank prints its lines under its own `host:pid:tid` prefix (a pid per rank, a
host per 8 ranks, as real jobs do), and the job's lines repeat (its next
communicators) until the size is reached; at 64k ranks (an 8,192-node p5 job)
1 GiB holds each rank's lines about once and a half.  grep and the parser run
on the same file in the same run; the ratio is what counts (machines are noisy).

    python bench/parse.py [--size-mb 1024] [--ranks 1024,8192,65536] [--repeat 3]
                          [--per-rank-files] [--keep]

--per-rank-files writes one file per rank in a directory (the
NCCL_DEBUG_FILE=%h.%p layout) and runs `grep -r` against it.

Each tool runs --repeat times, alternating, and the medians count: the parser
uses every core and grep one, so a busy neighbour on a shared machine skews a
single pair of runs.

Floor: the parser at >= 1/4 of grep's throughput at every rank count; stretch:
1/2.  Peak RSS of the parser's biggest process is printed against its budget,
200 MB plus 2 KB per rank.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANK_COUNTS = (1024, 8192, 65536)  # 64k ranks: an 8,192-node p5 job
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
{h}:{pid}:{t} [{d}] NCCL INFO ncclCommInitRankConfig comm 0x556d504b7460 rank {r} nranks {nranks} cudaDev {d} nvmlDev {d} busId 101d0 commId 0xb079519ed44b724 - Init START
{h}:{pid}:{t} [{d}] NCCL INFO Bootstrap timings total 8.128340 (create 0.000044, send 0.000162, recv 1.970281, ring 0.000162, delay 0.000000)
{h}:{pid}:{t} [{d}] NCCL INFO comm 0x556d504b7460 rank {r} nRanks {nranks} nNodes {nnodes} localRanks 8 localRank {d} MNNVL 0
{h}:{pid}:{t} [{d}] NCCL INFO Setting affinity for GPU {d} to ffffffff,ffff0000,00000000
{h}:{pid}:{t} [{d}] NCCL INFO P2P Chunksize set to 524288
{h}:{pid}:{t} [{d}] NCCL INFO PROFILER/Plugin: Could not find: libnccl-profiler.so.
{h}:{pid}:{t} [{d}] NCCL INFO Check P2P Type isAllDirectP2p 0 directMode 0
{h}:{pid}:{t} [{d}] NCCL INFO threadThresholds 8/8/64 | 8192/8/64 | 512 | 512
{h}:{pid}:{t} [{d}] NCCL INFO 32 coll channels, 32 collnet channels, 16 nvls channels, 32 p2p channels, 32 p2p channels per peer
{h}:{pid}:{t} [{d}] NCCL INFO TUNER/Plugin: Using tuner plugin nccl_ofi_tuner
{h}:{pid}:{t} [{d}] NCCL INFO ncclCommInitRankConfig comm 0x556d504b7460 rank {r} nranks {nranks} cudaDev {d} nvmlDev {d} busId 101d0 commId 0xb079519ed44b724 - Init COMPLETE
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


def rank_lines(rank: int, ranks: int) -> bytes:
    """One rank's lines of a job: its init lines and its channel lines, under its
    own `host:pid:tid` prefix (host per node, pid per rank as real jobs print)."""
    node, dev = divmod(rank, PER_NODE)
    pid = 4000 + rank  # distinct per rank even on one node
    ids = {"h": f"p5-node-{node:05d}", "pid": pid, "t": pid + 100_000, "d": dev, "n": node % 256,
           "r": rank, "p": (rank - PER_NODE) % ranks, "q": (rank + PER_NODE) % ranks,
           "e": (dev + 1) % PER_NODE, "nranks": ranks, "nnodes": -(-ranks // PER_NODE)}
    lines = [INIT.format(**ids)]
    for channel in range(16):
        lines.append(NET.format(c=channel, **ids))
        lines.append(P2P.format(c=channel, **ids))
    return "".join(lines).encode()


def build(path: Path, size_mb: int, ranks: int, per_rank: bool) -> int:
    """`size_mb` of log from a job of `ranks` ranks: every rank's lines in turn
    (rank 0 also prints the nccl-tests table), and the job's lines again (its
    next communicators) until the size is reached, so every rank count gets the
    same bytes.  One file, or (per_rank) one file per rank (NCCL_DEBUG_FILE=%h.%p)."""
    target = size_mb << 20
    rows = "".join(ROW.format(size=8 << i, count=2 << i) for i in range(28))
    table = TABLE.format(rows=rows).encode()
    if per_rank:
        path.mkdir()
    written, rank, single = 0, 0, None if per_rank else path.open("wb")
    try:
        while written < target:
            text = rank_lines(rank % ranks, ranks) + (table if rank % ranks == 0 else b"")
            if single is not None:
                single.write(text)
            else:
                with (path / f"rank{rank % ranks:05d}.log").open("ab") as handle:
                    handle.write(text)
            written += len(text)
            rank += 1
    finally:
        if single is not None:
            single.close()
    return written


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess, int]:
    """Wall time, the result, and peak RSS in KiB of the command's biggest process
    (wait4's usage covers the command and the workers it waited for)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "LC_ALL": "C"})
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(cmd, proc.returncode, out.read().decode(),
                                             err.read().decode())
    return elapsed, result, usage.ru_maxrss


def bench_one(workdir: Path, ranks: int, args: argparse.Namespace) -> bool:
    """Build the log for one rank count, time grep and the parser alternately, print
    the medians; True when the parser read the log right."""
    log = workdir / (f"ranks{ranks}" if args.per_rank_files else f"ranks{ranks}.log")
    size = build(log, args.size_mb, ranks, args.per_rank_files)
    files = sorted(log.iterdir()) if args.per_rank_files else [log]
    subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)  # warm
    grep_runs, parse_runs = [], []
    for _ in range(args.repeat):
        grep_runs.append(timed(["grep", "-rcE", GREP_PATTERN, str(log)]))
        parse_runs.append(timed([sys.executable, "-m", "verify.cli", "parse", str(log),
                                 "--json", "--instance-type", "p5"]))
    parsed = parse_runs[-1][1]
    if not args.keep:
        shutil.rmtree(log) if args.per_rank_files else log.unlink()
    try:
        result = json.loads(parsed.stdout)
    except ValueError:
        result = {}
    ok = parsed.returncode in (0, 1, 3) and result.get("efa_used") is True \
        and result.get("ranks") == ranks and result.get("gdr_used") is True
    if not ok:
        print(f"{ranks} ranks: parser failed (exit {parsed.returncode}): {parsed.stderr[-500:]}")
        return False
    grep_s = statistics.median([run[0] for run in grep_runs])
    parse_s = statistics.median([run[0] for run in parse_runs])
    mb = size / 1e6
    peak_mb = max(run[2] for run in parse_runs) / 1024
    budget_mb = 200 + 2 * ranks / 1024
    matched = sum(int(line.rsplit(":", 1)[-1]) for line in grep_runs[-1][1].stdout.split())
    print(f"{ranks:>6} ranks  {mb:5.0f} MB  grep {grep_s:6.2f} s ({mb / grep_s:5.0f} MB/s, "
          f"{matched} lines)  efa-verify {parse_s:6.2f} s ({mb / parse_s:5.0f} MB/s)  "
          f"ratio {grep_s / parse_s:.2f}  RSS {peak_mb:.0f} MB of {budget_mb:.0f}")
    for name, runs in (("grep", grep_runs), ("efa-verify", parse_runs)):
        print(f"{'':14}{name} runs (s): " + " ".join(f"{run[0]:.2f}" for run in runs))
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--ranks", default=",".join(map(str, RANK_COUNTS)),
                        help="comma-separated rank counts (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per tool")
    parser.add_argument("--per-rank-files", action="store_true",
                        help="one file per rank in a directory (grep -r against it)")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="efakit-bench-"))
    print("ratio = parser throughput / grep throughput, medians of alternating runs "
          "(floor 0.25, stretch 0.50); RSS budget 200 MB + 2 KB/rank")
    try:
        results = [bench_one(workdir, int(ranks), args) for ranks in args.ranks.split(",")]
    finally:
        if not args.keep:
            shutil.rmtree(workdir)
        else:
            print(f"kept {workdir}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
