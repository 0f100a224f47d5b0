"""Run one stage (an `mpirun`) so that it cannot hang, and keep every rank's output.

mpirun's `--tag-output` stream is split here, on the launching host, into one
log per rank: no shared filesystem is needed and every line keeps its rank.
A stage ends when the launcher exits, when its hard timeout expires, when no
rank has printed anything for the stall timeout, or on SIGINT/SIGTERM; in the
last three cases the whole process tree is killed, on this host by process
group and by a marker in the environment, and on the other hosts through the
same remote shell MPI used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from verify.run.hosts import is_local

# How a launcher names the rank of each line: mpirun --tag-output, srun --label.
TAG_RE = re.compile(rb"^\[(\d+),(?P<rank>\d+)\]<(stdout|stderr|stddiag)>: ?")
SRUN_LABEL_RE = re.compile(rb"^ *(?P<rank>\d+): ")
MARKER = "EFAKIT_RUN_ID"
TAIL = 8


@dataclass
class RankStream:
    path: Path
    lines: int = 0
    last_time: float | None = None
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL))


@dataclass
class StageOutcome:
    name: str
    argv: list[str]
    ended: str  # exited | timeout | stalled | interrupted | not_started
    returncode: int | None
    elapsed: float
    ranks: dict[int, RankStream]
    launcher: RankStream
    detail: str = ""
    stopped_at: float = 0.0  # monotonic time the stage ended, to measure each rank's silence

    @property
    def ok(self) -> bool:
        return self.ended == "exited" and self.returncode == 0


class Demux:
    """Route tagged lines to per-rank files; untagged ones to the launcher log."""

    def __init__(self, logs: Path, prefix: str, tags: re.Pattern[bytes] = TAG_RE) -> None:
        self.logs, self.prefix, self.tags = logs, prefix, tags
        self.ranks: dict[int, RankStream] = {}
        self.launcher = RankStream(logs / f"{prefix}launcher.log")
        self._files: dict[Path, object] = {}
        self.last_output = time.monotonic()
        self.lock = threading.Lock()

    def _write(self, stream: RankStream, text: bytes) -> None:
        handle = self._files.get(stream.path)
        if handle is None:
            handle = self._files[stream.path] = stream.path.open("ab")
        handle.write(text)
        handle.flush()
        now = time.monotonic()
        with self.lock:
            stream.lines += 1
            stream.last_time = self.last_output = now
            stream.tail.append(text.decode("utf-8", "replace").rstrip("\r\n"))

    def feed(self, line: bytes) -> None:
        match = self.tags.match(line)
        if not match:
            self._write(self.launcher, line)
            return
        rank = int(match.group("rank"))
        stream = self.ranks.get(rank)
        if stream is None:
            stream = self.ranks[rank] = RankStream(self.logs / f"{self.prefix}rank.{rank}.log")
        self._write(stream, line[match.end():])

    def pump(self, pipe) -> None:
        for line in iter(pipe.readline, b""):
            self.feed(line if line.endswith(b"\n") else line + b"\n")
        for handle in self._files.values():
            handle.close()


def reap_local(run_id: str) -> list[int]:
    """SIGKILL every process on this host whose environment carries the run's marker."""
    needle = f"{MARKER}={run_id}".encode()
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(int(proc.name))
        except (OSError, PermissionError):
            continue
    return killed


def rsh_command() -> list[str]:
    """The remote shell MPI uses (Open MPI's plm_rsh_agent), for cleanup on other hosts."""
    # Open MPI spells its MCA variables in lower case.
    agent = (os.environ.get("OMPI_MCA_plm_rsh_agent")  # noqa: SIM112
             or "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5")
    return shlex.split(agent)


def reap_remote(hosts: list[str], run_id: str, timeout: float = 30) -> dict[str, str]:
    """Ask each other host to kill the run's processes; returns per-host outcome."""
    outcome = {}
    for host in hosts:
        if is_local(host):
            continue
        rsh = rsh_command()
        # `--`: ssh takes nothing after it as an option (hosts are checked names anyway).
        operands = ["--", host] if os.path.basename(rsh[0]) == "ssh" else [host]
        argv = rsh + operands + [sys.executable, "-m", "verify", "reap", run_id]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            outcome[host] = "reaped" if done.returncode == 0 else \
                f"reap failed ({done.returncode}): {done.stderr.decode(errors='replace')[-200:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            outcome[host] = f"reap failed: {exc}"
    return outcome


def _stop_tree(proc: subprocess.Popen, run_id: str, grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    reap_local(run_id)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything left in the group, e.g. orphans
    proc.wait()


def run_stage(name: str, argv: list[str], env: dict[str, str], logs: Path, run_id: str,
              hosts: list[str], timeout: float, stall: float, grace: float,
              interrupted: threading.Event, poll: float = 0.2,
              tags: re.Pattern[bytes] = TAG_RE) -> StageOutcome:
    """Run argv under the watch described in the module docstring.

    `hosts` are reaped through the remote shell when the stage is stopped; a launcher
    that stops its own remote ranks on SIGTERM (srun) passes none."""
    logs.mkdir(parents=True, exist_ok=True)
    demux = Demux(logs, f"{name}." if name != "benchmark" else "", tags)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**env, MARKER: run_id},
                                start_new_session=True)
    except OSError as exc:
        return StageOutcome(name, argv, "not_started", None, 0.0, {}, demux.launcher,
                            f"cannot start {argv[0]}: {exc.strerror}")
    reader = threading.Thread(target=demux.pump, args=(proc.stdout,), daemon=True)
    reader.start()
    ended, detail = "exited", ""
    while proc.poll() is None:
        now = time.monotonic()
        if interrupted.is_set():
            ended, detail = "interrupted", "stopped by a signal"
        elif now - start > timeout:
            ended, detail = "timeout", f"still running after the {timeout:g} s stage timeout"
        elif now - demux.last_output > stall:
            ended, detail = "stalled", f"no rank printed anything for {stall:g} s"
        if ended != "exited":
            _stop_tree(proc, run_id, grace)
            remote = reap_remote(hosts, run_id)
            failed = {h: o for h, o in remote.items() if o != "reaped"}
            if failed:
                detail += "; " + "; ".join(f"{h}: {o}" for h, o in failed.items())
            break
        time.sleep(poll)
    stopped_at = time.monotonic()
    reader.join(timeout=grace)
    return StageOutcome(name, argv, ended, proc.returncode, stopped_at - start,
                        dict(sorted(demux.ranks.items())), demux.launcher, detail, stopped_at)
