"""Find a Docker client that can build with BuildKit, and an engine that answers.

On Debian with docker.io two clients can exist: the one first on PATH (28.x,
no buildx) refuses BuildKit, while Debian's 20.10 client builds with
DOCKER_BUILDKIT=1.  Prefer `docker buildx`, else a client whose built-in
BuildKit works, and say exactly what is missing otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from verify.cliutil import CliError
from verify.exitcodes import Exit

CANDIDATES = ("docker", "/usr/bin/docker", "/usr/local/bin/docker")


@dataclass(frozen=True)
class Engine:
    client: str
    buildx: bool

    def build_cmd(self) -> list[str]:
        return [self.client, "buildx", "build", "--load"] if self.buildx else \
            [self.client, "build"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_BUILDKIT": "1"}

    def run(self, *args: str, check: bool = True, timeout: int = 600,
            input_text: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.client, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(), input=input_text)
        if check and proc.returncode != 0:
            raise CliError(f"docker {args[0]} failed: {proc.stderr.strip()[-400:]}",
                           Exit.FAIL)
        return proc


def _clients() -> list[str]:
    seen, out = set(), []
    for name in CANDIDATES:
        path = shutil.which(name)
        if path and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            out.append(path)
    return out


def _version(client: str) -> tuple[int, ...] | None:
    proc = subprocess.run([client, "version", "--format", "{{.Client.Version}}"],
                          capture_output=True, text=True, timeout=30)
    text = proc.stdout.strip().split("+")[0]
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return None


def find_engine() -> Engine:
    """A BuildKit-capable client talking to a running engine, or a clear exit-4 error."""
    clients = _clients()
    if not clients:
        raise CliError("no docker client found: install Docker (Debian: apt-get install "
                       "docker.io) and start dockerd", Exit.NO_ENGINE)
    info = subprocess.run([clients[0], "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        err = info.stderr.strip().splitlines()[-1:] or ["?"]
        if "permission denied" in err[0].lower():
            raise CliError("permission denied on the Docker socket: run as root or join the "
                           "docker group", Exit.NO_ENGINE)
        raise CliError(f"no Docker engine answers ({err[0]}): start dockerd", Exit.NO_ENGINE)
    for client in clients:
        probe = subprocess.run([client, "buildx", "version"], capture_output=True, text=True,
                               timeout=30)
        if probe.returncode == 0:
            return Engine(client, buildx=True)
    for client in clients:
        version = _version(client)
        if version is not None and version < (23, 0):
            return Engine(client, buildx=False)  # built-in BuildKit (DOCKER_BUILDKIT=1)
    names = ", ".join(f"{c} ({'.'.join(map(str, _version(c) or ())) or '?'})" for c in clients)
    raise CliError(f"no docker client here can build with BuildKit: {names} lack buildx, and "
                   "clients >= 23 need it (install docker-buildx, or Debian's docker.io "
                   "client at /usr/bin/docker)", Exit.NO_ENGINE)


def image_exists(engine: Engine, ref: str) -> bool:
    return engine.run("image", "inspect", ref, check=False).returncode == 0


def image_id(engine: Engine, ref: str) -> str:
    return engine.run("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def repo_root_revision(root: Path) -> str:
    proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    rev = proc.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                           capture_output=True, text=True).stdout.strip()
    return rev + ("-dirty" if dirty else "")
