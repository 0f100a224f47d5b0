"""`efa-verify run`: launch nccl-tests (or torch all_reduce) over MPI and decide.

Stages, each under supervise.run_stage: EFA counters on every host, the
benchmark, counters again.  Then the parser decides from the per-rank logs,
with the stages' own checks (did the benchmark finish, did every rank speak,
did the EFA counters move) added to the same result and policy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from verify.checks import Check, Evidence
from verify.logparse.model import ErrorEntry
from verify.logparse.result import Options, build, parse_sources
from verify.logparse.sources import expand
from verify.policy import Policy
from verify.run.counters import counters_check, efa_devices, inventory_checks
from verify.run.hosts import HostPlan
from verify.run.ready import not_ready
from verify.run.supervise import (
    MARKER,
    SRUN_LABEL_RE,
    TAG_RE,
    RankStream,
    StageOutcome,
    run_stage,
)
from verify.tables import load_table

ENGINES = ("nccl-tests", "torch")
# How ranks start: mpirun over the remote shell (ssh), or srun steps inside a Slurm
# allocation (no sshd at all; --mpi=pmix where the cluster has PMIx).
LAUNCHERS = ("mpirun", "srun")
SRUN_MPI_RE = re.compile(r"[a-z][a-z0-9_]{0,15}")  # srun --mpi=TYPE: pmix, pmix_v4, pmi2, none
# A rank's number under either launcher (mpirun sets the first, srun the second).
RANK_VAR = "${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}"


class RunSetupError(ValueError):
    """The run cannot start (no mpirun, bad output directory): exit 2 or 4."""

    def __init__(self, message: str, missing_tool: bool = False) -> None:
        super().__init__(message)
        self.missing_tool = missing_tool


@dataclass
class RunOptions:
    plan: HostPlan
    gpus_per_host: int
    gpus_source: str
    outdir: Path
    engine: str = "nccl-tests"
    test: str = "all_reduce"
    sweep: str = "quick"
    options: Options = field(default_factory=Options)
    timeout: float | None = None
    stall: float | None = None
    sysfs: str = "/sys"
    tests_dir: str | None = None
    interrupted: threading.Event = field(default_factory=threading.Event)
    # Set in the local mpirun's environment only, never forwarded to the ranks.
    launcher_env: dict[str, str] = field(default_factory=dict)
    launcher: str = "mpirun"  # LAUNCHERS
    srun_mpi: str = "pmix"
    ready_timeout: float | None = None  # wait for every host's remote shell first (mpirun)


def table() -> dict:
    return load_table("run")


def check_outdir(path: Path) -> Path:
    """`path` when it is an empty directory or nothing yet: a run never mixes its logs
    with an older run's.  Creates nothing: a run that fails a precondition (no mpirun,
    hosts not ready) must leave no `logs/` behind, or its identical rerun is refused
    as "not an empty directory" (attack-1 D-3)."""
    try:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise RunSetupError(f"--output-dir {path}: exists and is not an empty directory")
        # Can it be made later?  A probe directory made and removed where it would go
        # (/proc/x, a read-only mount) refuses it now, before any work, leaving nothing.
        parent = next(p for p in (path, *path.absolute().parents) if p.exists())
        os.rmdir(tempfile.mkdtemp(prefix=".efa-verify-probe-", dir=parent))
    except OSError as exc:
        raise RunSetupError(f"--output-dir {path}: cannot create it ({exc.strerror})") from None
    return path


def make_logs(path: Path) -> Path:
    """Create `path`/logs, once every precondition has passed; its path."""
    try:
        (path / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunSetupError(f"--output-dir {path}: {exc.strerror}") from None
    return path / "logs"


def prepare_outdir(path: Path) -> Path:
    """`check_outdir` and `make_logs` at once, for a caller whose preconditions passed."""
    make_logs(check_outdir(path))
    return path


def find_mpirun() -> str:
    for candidate in (shutil.which("mpirun"), "/opt/amazon/openmpi/bin/mpirun"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RunSetupError("mpirun not found on PATH or in /opt/amazon/openmpi/bin",
                        missing_tool=True)


def find_launcher(opts: RunOptions) -> str:
    """The launcher binary the run will use, or a RunSetupError (exit 4) saying which."""
    if opts.launcher != "srun":
        return find_mpirun()
    found = shutil.which("srun")
    if found is None:
        raise RunSetupError("--launcher srun: srun not found on PATH (run inside a Slurm "
                            "allocation, or use --launcher mpirun)", missing_tool=True)
    return found


def srun_base(srun: str, hosts: list[tuple[str, int]], mpi: str, hostfile: Path) -> list[str]:
    """One srun step over `hosts` inside the job's allocation, ranks placed in our order.

    SLURM_HOSTFILE (written here, named in the step's environment by launch_base) lists
    each host once per rank: --distribution=arbitrary then puts ranks 0..n-1 on the
    first host, as mpirun does, whatever order Slurm keeps its nodes in.  --overlap
    lets the step share the nodes with the step efa-verify itself runs in; --label
    names each line's rank (supervise.SRUN_LABEL_RE)."""
    hostfile.write_text("".join(f"{h}\n" * n for h, n in hosts), encoding="ascii")
    return [srun, "--overlap", f"--nodes={len(hosts)}", f"--ntasks={sum(n for _, n in hosts)}",
            f"--nodelist={','.join(h for h, _ in hosts)}", "--distribution=arbitrary",
            f"--mpi={mpi}", "--label", "--kill-on-bad-exit=1", "--export=ALL"]


def launch_base(opts: RunOptions, binary: str, hosts: list[tuple[str, int]],
                env: dict[str, str], stage: str) -> tuple[list[str], dict[str, str]]:
    """The launcher's argv before the rank command, and what its own environment adds."""
    if opts.launcher != "srun":
        return mpirun_base(binary, hosts, env), {}
    hostfile = opts.outdir / f"srun-{stage}.hosts"
    # srun exports its whole environment to the ranks: the per-run TMPDIR made for
    # mpirun's session directories (execute) exists on this node only.
    return srun_base(binary, hosts, opts.srun_mpi, hostfile), {
        "SLURM_HOSTFILE": str(hostfile), "TMPDIR": os.environ.get("TMPDIR", "/tmp")}


def _stage(opts: RunOptions, name: str, argv: list[str], env: dict[str, str], run_id: str,
           timeout: float, stall: float) -> StageOutcome:
    """run_stage with what the launcher needs: srun's rank labels, and no ssh reaping
    (srun stops its remote ranks itself on SIGTERM)."""
    srun = opts.launcher == "srun"
    return run_stage(name, argv, env, opts.outdir / "logs", run_id,
                     [] if srun else opts.plan.names(), timeout, stall,
                     table()["timeouts"]["grace"], opts.interrupted,
                     tags=SRUN_LABEL_RE if srun else TAG_RE)


def forwarded_env(env: dict[str, str]) -> dict[str, str]:
    rules = table()["forward_env"]
    keep = {k: v for k, v in env.items()
            if k in rules["names"] or k.startswith(tuple(rules["prefixes"]))}
    for name in rules["drop"]:
        keep.pop(name, None)
    for name, value in table()["nccl_debug"].items():
        keep.setdefault(name, value) if name != "NCCL_DEBUG" else keep.__setitem__(name, value)
    return keep


def mpirun_base(mpirun: str, hosts: list[tuple[str, int]], env: dict[str, str]) -> list[str]:
    argv = [mpirun, *table()["mpirun_args"], "-np", str(sum(n for _, n in hosts)),
            "--host", ",".join(f"{h}:{n}" for h, n in hosts)]
    for name in sorted(env):
        argv += ["-x", name]
    # `--`: what follows is the rank command, never an mpirun option (Open MPI 4.1.4
    # in the image takes it so; hosts are checked names anyway).
    return [*argv, "--"]


def benchmark_argv(opts: RunOptions, master: str) -> list[str] | str:
    """The per-rank command, or why there is none (a failed check, not a crash)."""
    sweep = table()["sweeps"][opts.sweep]
    if opts.engine == "torch":
        if shutil.which("torchrun") is None:
            return "torchrun not found on PATH (is torch installed in this image?)"
        script = ("exec torchrun --nnodes \"$1\" --nproc-per-node \"$2\" "
                  f"--node-rank \"{RANK_VAR}\" --master-addr \"$3\" "
                  "--master-port 29511 -m verify.torch_allreduce --sweep \"$4\"")
        return ["sh", "-c", script, "torchrun", str(len(opts.plan.hosts)),
                str(opts.gpus_per_host), master, opts.sweep]
    name = table()["benchmarks"][opts.test]
    directory = opts.tests_dir or table()["nccl_tests_dir"]
    for candidate in (Path(directory) / name, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return [str(candidate), *sweep]
    return f"{name} not found in {directory} or on PATH (nccl-tests missing from the image)"


def _slots(opts: RunOptions) -> list[tuple[str, int]]:
    if opts.engine == "torch":  # one torchrun per host starts the GPU workers itself
        return [(h.name, 1) for h in opts.plan.hosts]
    return [(h.name, h.slots or opts.gpus_per_host) for h in opts.plan.hosts]


def _counters(opts: RunOptions, mpirun: str, env: dict[str, str], run_id: str,
              phase: str) -> tuple[dict[str, dict], StageOutcome]:
    limits = table()["timeouts"]["counters"]
    base, extra = launch_base(opts, mpirun, [(h.name, 1) for h in opts.plan.hosts], env,
                              f"counters-{phase}")
    argv = base + [sys.executable, "-m", "verify", "counters", "--sysfs", opts.sysfs]
    outcome = _stage(opts, f"counters-{phase}", argv,
                     {**os.environ, **env, **opts.launcher_env, **extra}, run_id,
                     limits["stage"], limits["stall"])
    snaps = {}
    for stream in outcome.ranks.values():
        for line in stream.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                snap = json.loads(line)
            except ValueError:
                continue
            if isinstance(snap, dict) and "devices" in snap:
                snaps[snap["host"]] = snap
    return snaps, outcome


def _last(stream) -> Evidence:
    text = stream.tail[-1] if stream.tail else "(no output)"
    return Evidence(str(stream.path), stream.lines, None, text)


def _cause(stream: RankStream, patterns: list[re.Pattern]) -> Evidence:
    """The line of a failed stream that states why (run.yaml failure_lines), else its last."""
    found: dict[int, Evidence] = {}
    with stream.path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            for rank, pattern in enumerate(patterns):
                if rank not in found and pattern.search(line):
                    found[rank] = Evidence(str(stream.path), number, None,
                                           line.rstrip("\r\n")[:500])
            if 0 in found:
                break
    return found[min(found)] if found else _last(stream)


def failure_evidence(outcome: StageOutcome, limit: int) -> list[Evidence]:
    """For a failed stage: the line of each stream that says why (run.yaml failure_lines)."""
    patterns = [re.compile(p) for p in table()["failure_lines"]]
    return [_cause(s, patterns) for s in (*outcome.ranks.values(), outcome.launcher)
            if s.lines][:limit]


def stage_check(outcome: StageOutcome) -> Check:
    """`benchmark`: did the launcher finish on its own with status 0?"""
    streams = [s for s in (*outcome.ranks.values(), outcome.launcher) if s.lines]
    if outcome.ok:
        return Check("benchmark", "pass", True,
                     f"finished in {outcome.elapsed:.1f} s with status 0",
                     [_last(s) for s in streams][:1])
    evidence = failure_evidence(outcome, 4)
    if outcome.ended == "interrupted":
        return Check("benchmark", "unknown", True, "interrupted by a signal after "
                     f"{outcome.elapsed:.1f} s: the run proves nothing", evidence)
    if outcome.ended == "not_started":
        return Check("benchmark", "fail", True, outcome.detail, evidence)
    if outcome.ended == "exited":
        return Check("benchmark", "fail", True,
                     f"{Path(outcome.argv[0]).name} exited with status {outcome.returncode} "
                     f"after {outcome.elapsed:.1f} s", evidence)
    return Check("benchmark", "fail", True, f"hang: {outcome.detail}; the process tree was "
                 "killed, partial logs kept", evidence)


def hang_errors(outcome: StageOutcome, nranks: int, silent: float) -> list[ErrorEntry]:
    """One `hang` error per rank that had stopped printing when the stage was stopped.

    A rank is named when it had been silent for `silent` seconds at the stop, or
    had printed nothing at all; if every rank was still printing (a hard timeout
    on a slow run) all are named, since none finished.
    """
    if outcome.ended not in ("timeout", "stalled"):
        return []
    quiet = {}
    for rank in range(nranks):
        stream = outcome.ranks.get(rank)
        if stream is None or stream.last_time is None:
            quiet[rank] = None
        elif outcome.stopped_at - stream.last_time >= silent:
            quiet[rank] = outcome.stopped_at - stream.last_time
    chosen = quiet or dict.fromkeys(range(nranks), 0.0)
    errors = []
    for rank, seconds in sorted(chosen.items())[:64]:
        stream = outcome.ranks.get(rank)
        if stream is None:
            ev = Evidence(str(outcome.launcher.path.parent / f"rank.{rank}.log"), 0, rank,
                          "(no output)")
            message = f"rank {rank} printed nothing before the run was stopped ({outcome.ended})"
        else:
            ev = Evidence(str(stream.path), stream.lines, rank, stream.tail[-1])
            message = (f"rank {rank} had been silent for {seconds or 0:.0f} s when the run was "
                       f"stopped ({outcome.ended}); last line: {ev.text}")
        errors.append(ErrorEntry("hang", "error", message, ev, "the job stopped making "
                                 "progress: a rank waits on a peer that never answers",
                                 "read the first error in the other ranks' logs; on EFA, the "
                                 "security group must allow all traffic to and from itself"))
    return errors


def rank_logs_check(outcome: StageOutcome, nranks: int) -> Check:
    """`rank_logs`: every rank must speak, or its transport cannot be known."""
    missing = [r for r in range(nranks) if r not in outcome.ranks]
    if outcome.ended == "not_started":
        return Check("rank_logs", "skip", True, "the benchmark did not start")
    if missing:
        shown = ", ".join(map(str, missing[:16])) + (" ..." if len(missing) > 16 else "")
        return Check("rank_logs", "unknown", True, f"{len(missing)} of {nranks} ranks printed "
                     f"nothing (ranks {shown}): their transport cannot be known",
                     [Evidence(str(outcome.launcher.path), outcome.launcher.lines, None,
                               outcome.launcher.tail[-1])] if outcome.launcher.tail else [])
    return Check("rank_logs", "pass", True, f"all {nranks} ranks wrote a log",
                 [_last(outcome.ranks[0])] if outcome.ranks else [])


def execute(opts: RunOptions, policy: Policy, env: dict[str, str]) -> dict:
    """Run every stage and return the result (the caller writes the reports).

    Each run's mpirun gets a session directory base (TMPDIR) of its own: the
    sweep starts many at once on one host, and Open MPI 4 races creating the
    shared TMPDIR/ompi.<host>.<uid> ("mkdir ... File exists", orte_init
    failed), which failed healthy runs before any rank started.
    """
    with tempfile.TemporaryDirectory(prefix="efakit-mpi-") as session:
        return _execute(replace(opts, launcher_env={**opts.launcher_env, "TMPDIR": session}),
                        policy, env)


def _execute(opts: RunOptions, policy: Policy, env: dict[str, str]) -> dict:
    limits = table()["timeouts"]
    mpirun = find_launcher(opts)
    wait_ready(opts)
    make_logs(opts.outdir)  # the preconditions passed: only now is anything created
    run_id = uuid.uuid4().hex
    # The run's marker reaches every rank on every host (mpirun -x), so a stopped run
    # can be reaped there too, detached children included.
    fwd = forwarded_env({**env, MARKER: run_id})
    slots = _slots(opts)
    nranks = sum(n for _, n in slots)
    command = benchmark_argv(opts, opts.plan.hosts[0].name)
    before, first = _counters(opts, mpirun, fwd, run_id, "before")
    stages = [first]
    fabric, fabric_stage = _fabric(opts, mpirun, fwd, run_id, before)
    stages += [fabric_stage] if fabric_stage else []
    base, extra = launch_base(opts, mpirun, slots, fwd, "benchmark")
    bench = _benchmark(opts, command, base, {**env, **fwd, **opts.launcher_env, **extra}, run_id)
    stages.append(bench)
    after: dict[str, dict] = {}
    if not opts.interrupted.is_set():
        after, last = _counters(opts, mpirun, fwd, run_id, "after")
        stages.append(last)
    model, inputs = parse_sources(expand([str(p) for p in _bench_logs(opts.outdir / "logs")]))
    for entry in hang_errors(bench, nranks, limits["silent"]):
        model.add_error(entry)
    model.finish()
    counters, summary = _counters_result(before, after, model.nnodes or len(opts.plan.hosts),
                                         stages, opts.outdir / "counters.jsonl")
    expect_efa = opts.options.expect_provider == "efa"
    checks = (*inventory_checks(before, opts.plan.names(), opts.gpus_per_host, expect_efa),
              fabric,
              stage_check(bench), rank_logs_check(bench, nranks), counters)
    result = build(model, inputs, opts.options, policy, "run", checks)
    result["run"] = {
        "output_dir": str(opts.outdir), "engine": opts.engine, "test": opts.test,
        "sweep": opts.sweep, "hosts": opts.plan.names(), "hosts_source": opts.plan.source,
        "gpus_per_host": opts.gpus_per_host, "gpus_source": opts.gpus_source,
        "launcher": opts.launcher,
        "ranks_launched": nranks, "interrupted": opts.interrupted.is_set(),
        "stages": [{"name": s.name, "argv": s.argv, "ended": s.ended,
                    "returncode": s.returncode, "elapsed_s": round(s.elapsed, 3),
                    "detail": s.detail} for s in stages],
        "counters": summary,
    }
    return result


def _benchmark(opts: RunOptions, command: list[str] | str, launcher: list[str],
               env: dict[str, str], run_id: str) -> StageOutcome:
    """The benchmark stage, or a stage that did not start and says why."""
    if isinstance(command, str):
        return StageOutcome("benchmark", [], "not_started", None, 0.0, {},
                            RankStream(opts.outdir / "logs" / "launcher.log"), command)
    limits = table()["timeouts"]
    return _stage(opts, "benchmark", launcher + command, env, run_id,
                  opts.timeout or limits[opts.sweep]["stage"],
                  opts.stall or limits[opts.sweep]["stall"])


def _counters_result(before: dict, after: dict, nodes: int, stages: list[StageOutcome],
                     path: Path) -> tuple[Check, dict]:
    """`efa_counters`, unknown when a counters stage itself failed."""
    counters, summary = counters_check(before, after, nodes, path)
    failed = [s for s in stages if s.name.startswith("counters") and not s.ok]
    if failed and counters.status != "fail":
        counters = Check("efa_counters", "unknown", True, f"{failed[0].name} stage "
                         f"{failed[0].ended} ({failed[0].detail or failed[0].returncode}): "
                         "EFA counters could not be read on every host",
                         [_last(failed[0].launcher)] if failed[0].launcher.lines else [])
    return counters, summary


def _bench_logs(logs: Path) -> list[Path]:
    """The benchmark's rank and launcher logs (the counters stages' logs are not NCCL's)."""
    return sorted(p for p in logs.iterdir() if not p.name.startswith(("counters-", "fabric.")))


def _fabric(opts: RunOptions, mpirun: str, env: dict[str, str], run_id: str,
            snaps: dict[str, dict]) -> tuple[Check, StageOutcome | None]:
    """`fabric`: fi_pingpong between the first two hosts (and its stage), or why not run."""
    conf = table()["fabric"]
    hosts = opts.plan.names()
    if len(hosts) < 2:
        return Check("fabric", "skip", True, "one host: no fabric between hosts to check"), None
    if shutil.which(conf["binary"]) is None:
        return Check("fabric", "skip", True, f"{conf['binary']} not installed (libfabric's "
                     "fabtests: libfabric-bin on Debian, part of the EFA installer)"), None
    provider = "efa" if snaps and all(efa_devices(s) for s in snaps.values()) else "tcp"
    args = " ".join([conf["binary"], "-p", provider, *conf["args"]])
    script = (f'if [ "{RANK_VAR}" = 1 ]; then exec {args}; '
              f'else sleep 2; exec {args} "$1"; fi')
    base, extra = launch_base(opts, mpirun, [(hosts[0], 1), (hosts[1], 1)], env, "fabric")
    argv = base + ["sh", "-c", script, "fabric", hosts[1]]
    outcome = _stage(opts, "fabric", argv, {**os.environ, **env, **opts.launcher_env, **extra},
                     run_id, conf["timeout"], conf["timeout"])
    return fabric_check(outcome, f"libfabric {provider} from {hosts[0]} to {hosts[1]}"), outcome


def fabric_check(outcome: StageOutcome, where: str) -> Check:
    """Did fi_pingpong complete?  Its last result row is the evidence."""
    client = outcome.ranks.get(0)
    rows = [] if client is None else [
        (n, line) for n, line in enumerate(client.path.read_text(errors="replace")
                                           .splitlines(), 1)
        if re.match(r"^[0-9]+[kmg]?\s+[0-9]+\s+=[0-9]+", line)]
    if outcome.ok and rows:
        number, line = rows[-1]
        return Check("fabric", "pass", True, f"{where}: fi_pingpong completed "
                     f"({' '.join(line.split()[:1] + line.split()[5:6])} MB/s)",
                     [Evidence(str(client.path), number, 0, line)])
    return Check("fabric", "fail", True, f"{where}: fi_pingpong "
                 + (outcome.detail or f"exited with status {outcome.returncode}"),
                 failure_evidence(outcome, 3))


def wait_ready(opts: RunOptions) -> None:
    """Every host's remote shell answers before mpirun starts (--ready-timeout), or one
    line naming the hosts that did not; srun needs no sshd, so nothing to wait for."""
    if opts.launcher == "srun" or not opts.ready_timeout:
        return
    late = not_ready(opts.plan.names(), opts.ready_timeout)
    if late:
        shown = ", ".join(late[:8]) + (f" and {len(late) - 8} more" if len(late) > 8 else "")
        raise RunSetupError(f"not ready after {opts.ready_timeout:g} s: {shown} (their sshd "
                            "did not answer through the remote shell MPI uses)")
