"""Real local services for tests: Debian's docker-registry, moto's server, a Slurm cluster.

Each is started on a free 127.0.0.1 port for the tests that need it and
stopped afterwards; a missing binary is a skip with the reason, a failure in CI
(docker-registry comes from .ci/run, moto with the test extra).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests import procs
from tests.conftest import CI_EC2, missing

REGISTRY_BIN = "/usr/bin/docker-registry"
MOTO_ACCOUNT = "123456789012"  # moto's default account
MOTO_PASSWORD = f"{MOTO_ACCOUNT}-auth-token"  # what moto's GetAuthorizationToken hands out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(100):
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, with auth required
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _process(argv: list[str], url: str, log: Path, env: dict | None = None) -> Iterator[None]:
    """A service for the life of the with-block (a module's tests may share it)."""
    with log.open("w") as out:
        proc = procs.start(argv, stdout=out, stderr=subprocess.STDOUT, env=env, track=False)
    try:
        _wait(url, proc, log)
        yield
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        procs.reap(proc)


@contextlib.contextmanager
def registry(workdir: Path, password: str = MOTO_PASSWORD) -> Iterator[str]:
    """An OCI registry on 127.0.0.1 with htpasswd auth (user AWS), as ECR logins use."""
    if not Path(REGISTRY_BIN).exists():
        missing("registry", "Debian's docker-registry is not installed (.ci/run installs it)")
    import bcrypt

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "htpasswd").write_text(
        "AWS:" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode() + "\n")
    port = free_port()
    config = {"version": 0.1, "log": {"level": "warn"},
              "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                          "delete": {"enabled": True}},
              "http": {"addr": f"127.0.0.1:{port}"},
              "auth": {"htpasswd": {"realm": "efakit-test", "path": str(workdir / "htpasswd")}}}
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    with _process([REGISTRY_BIN, "serve", str(workdir / "config.yml")],
                  f"http://127.0.0.1:{port}/v2/", workdir / "registry.log"):
        yield f"127.0.0.1:{port}"


def registry_get(address: str, path: str, password: str = MOTO_PASSWORD,
                 method: str = "GET") -> tuple[dict, dict]:
    """(headers, JSON body) of one authenticated registry API call."""
    request = urllib.request.Request(
        f"http://{address}{path}", method=method,
        headers={"Authorization": "Basic " + base64.b64encode(
            f"AWS:{password}".encode()).decode(),
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
        return dict(response.headers), json.loads(body) if body else {}


@contextlib.contextmanager
def moto(workdir: Path, env: dict | None = None) -> Iterator[str]:
    """moto's server (ECR and friends) on 127.0.0.1; yields its endpoint URL."""
    binary = shutil.which("moto_server", path=str(procs.BIN))
    if binary is None:
        missing("moto", "moto_server not installed (the test extra installs moto[server])")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _process([binary, "-H", "127.0.0.1", "-p", str(port)], url,
                  workdir / f"moto-{port}.log", env):
        yield url


def aws_env(endpoint: str) -> dict[str, str]:
    """Environment for a client of moto: fake keys, a region, the endpoint."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


SLURM_IMAGE = "efakit-test/slurm:bookworm"
SLURM_NODES = ("n1", "n2", "n3")
SLURM_CONTEXT = Path(__file__).resolve().parent / "fixtures" / "slurm"
# Debian's client speaks to Debian's engine (another client first on PATH may not).
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"


def _docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {proc.stderr.strip()[-2000:]}")
    return proc


def slurm_image(base: str) -> str:
    """The Slurm node image's tag: its context and its base image's id, so a rebuilt CI
    image (or a changed Dockerfile) never runs the tests on a stale node image."""
    import hashlib

    digest = hashlib.sha256(_docker("image", "inspect", "-f", "{{.Id}}", base).stdout.encode())
    for path in sorted(SLURM_CONTEXT.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return f"{SLURM_IMAGE}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def slurm_cluster(shared: Path, base: str = CI_EC2) -> Iterator[str]:
    """Debian's Slurm in containers of the offline image: a controller `ctl` and
    compute nodes n1-n3 (munge, slurmd, sshd) on their own Docker network, with
    `shared` mounted at /fsx on all.  Yields the controller's container name.

    The image (tests/fixtures/slurm) is built on first use from `base`.
    """
    image = slurm_image(base)
    if _docker("image", "inspect", image, check=False).returncode != 0:
        _docker("build", "--build-arg", f"BASE={base}", "-t", image,
                str(SLURM_CONTEXT), timeout=1800)
    tag = uuid.uuid4().hex[:8]
    network = f"efakit-test-slurm-{tag}"
    names = {host: f"efakit-test-{host}-{tag}" for host in ("ctl", *SLURM_NODES)}
    _docker("network", "create", network)
    try:
        for host, name in names.items():
            _docker("run", "-d", "--rm", "--name", name, "--hostname", host, "--network",
                    network, "--network-alias", host, "-v", f"{shared}:/fsx",
                    "-v", f"{SLURM_CONTEXT / 'slurm.conf'}:/etc/slurm/slurm.conf:ro",
                    "-v", f"{SLURM_CONTEXT / 'gres.conf'}:/etc/slurm/gres.conf:ro",
                    # this tree's verifier, not the one the image was built with
                    "-v", f"{SLURM_CONTEXT.parents[2]}:/src:ro", "-e", "PYTHONPATH=/src",
                    "-e", "EFAKIT_IMDS=off", image, "start-node", host)
        for _ in range(120):
            idle = _docker("exec", names["ctl"], "sinfo", "-h", "-N", "-o", "%N %T",
                           check=False).stdout.split("\n")
            if sum(line.endswith("idle") for line in idle) == len(SLURM_NODES):
                break
            time.sleep(1)
        else:
            logs = _docker("exec", names["ctl"], "cat", "/var/log/slurm/slurmctld.log",
                           check=False).stdout
            raise RuntimeError(f"Slurm nodes never became idle: {idle}\n{logs[-2000:]}")
        yield names["ctl"]
    finally:
        _docker("rm", "-f", *names.values(), check=False)
        _docker("network", "rm", network, check=False)
