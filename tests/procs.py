"""Processes started by tests: the project's CLIs found through the installed package,
and every process tree reaped, even when the test fails.

Each process a test starts gets its own process group (start_new_session) and a
token in its environment (EFAKIT_TEST_TOKEN).  On a timeout or any error the
helper kills the group at once; at the end of every test an autouse fixture in
conftest.py kills whatever is left, by group and by token, so a grandchild that
left the group (a daemonised helper, an MPI rank) dies too.  Tests that check
the product reaps its own children assert `carriers(token) == []` before that.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

TOKEN_VAR = "EFAKIT_TEST_TOKEN"
# The installed package's own interpreter and entry points, whatever is first on PATH.
BIN = Path(sys.executable).parent
VERIFY = [sys.executable, "-m", "verify"]
EFAKIT = [sys.executable, "-m", "buildkit"]

_started: list[subprocess.Popen] = []


def env_with_bin(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: ours) with the package's bin directory first on PATH, for scripts
    and tools that call `efa-verify` or `hadolint` by name as they do in an image."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def start(argv: list[str], *, env: dict[str, str] | None = None, token: str | None = None,
          track: bool = True, **popen: object) -> subprocess.Popen:
    """Popen in a new session, carrying a token; reaped at the end of the test unless
    `track` is false (a service a module-scoped fixture stops with reap())."""
    env = dict(os.environ if env is None else env)
    env[TOKEN_VAR] = token or uuid.uuid4().hex  # never an inherited one: that is a parent's
    proc = subprocess.Popen(argv, env=env, start_new_session=True, **popen)  # type: ignore[arg-type]
    proc.token = env[TOKEN_VAR]  # type: ignore[attr-defined]
    if track:
        _started.append(proc)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 600,
           input: str | bytes | None = None) -> tuple[object, object]:
    """communicate(); on a timeout or any error the whole tree is killed first."""
    try:
        return proc.communicate(input=input, timeout=timeout)
    except BaseException:
        reap(proc)
        raise


def run(argv: list[str], *, timeout: float = 600, input: str | bytes | None = None,
        capture_output: bool = False, check: bool = False,
        **popen: object) -> subprocess.CompletedProcess:
    """subprocess.run's contract, with the process tree reaped on timeout or failure."""
    if capture_output:
        popen["stdout"] = popen["stderr"] = subprocess.PIPE
    if input is not None:
        popen["stdin"] = subprocess.PIPE
    proc = start(argv, **popen)  # type: ignore[arg-type]
    out, err = finish(proc, timeout, input)
    done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done


def carriers(token: str | Path) -> list[str]:
    """Command lines of live processes whose environment carries this token."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def _kill_carriers(token: str) -> None:
    needle = f"{TOKEN_VAR}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)


def reap(proc: subprocess.Popen) -> None:
    """SIGKILL the process's group and every process carrying its token; wait for it."""
    if proc.poll() is None:  # not yet waited for: its pid, so its group id, is still ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _kill_carriers(proc.token)  # type: ignore[attr-defined]
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            with contextlib.suppress(OSError):
                stream.close()


def reap_all() -> None:
    """Every process tree started since the last call (the conftest teardown)."""
    while _started:
        reap(_started.pop())
