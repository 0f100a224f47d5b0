"""`efa-verify run` across two hosts: two containers of the offline image, ssh and MPI.

The ranks are the stand-in of tests/fixtures/run (nccl-tests cannot be built here).
Across hosts, killing a hung run depends on the run's marker reaching the remote
ranks and on the reap over ssh: a rank that ignores SIGTERM and leaves a detached
child behind on the second host must leave nothing running there.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pytest

from tests import procs
from tests.conftest import CI_EC2, FIXTURES

pytestmark = pytest.mark.docker
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
IMAGE = CI_EC2


def docker(*args, check=True):
    proc = procs.run([DOCKER, *args], capture_output=True, text=True, timeout=600)
    assert not check or proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def two_hosts(ci_images, tmp_path):
    """Containers h1 and h2 on their own network, sshd running, the stand-in at /fake."""
    fake = tmp_path / "fake"
    fake.mkdir()
    shutil.copy(FIXTURES / "run" / "fake_nccl_tests.py", fake / "all_reduce_perf")
    (fake / "all_reduce_perf").chmod(0o755)
    # The image carries no ssh key: the hosts get one made for this test the way a
    # SageMaker job hands its own over (EFAKIT_SSH_KEY, installed by the entrypoint).
    procs.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")],
              check=True)
    key = (tmp_path / "key").read_text().strip()
    tag = uuid.uuid4().hex[:8]
    network, names = f"efakit-test-{tag}", [f"h1-{tag}", f"h2-{tag}"]
    docker("network", "create", network)
    try:
        for name in names:
            docker("run", "-d", "--rm", "--name", name, "--hostname", name, "--network",
                   network, "-v", f"{fake}:/fake:ro", "-e", "EFAKIT_IMDS=off", "-e",
                   f"EFAKIT_SSH_KEY={key}", IMAGE,
                   "/usr/sbin/sshd", "-D")
        for _ in range(60):  # sshd needs a moment to listen (SageMaker mode waits the same way)
            if docker("exec", names[0], "ssh", names[1], "true", check=False).returncode == 0:
                break
            time.sleep(0.5)
        yield names
    finally:
        docker("rm", "-f", *names, check=False)
        docker("network", "rm", network, check=False)


def leftovers(container: str) -> list[str]:
    out = docker("exec", container, "ps", "-eo", "args").stdout.splitlines()[1:]
    return [line for line in out if "sshd" not in line and not line.startswith("ps ")]


def test_a_hang_across_hosts_is_killed_on_both(two_hosts):
    first, second = two_hosts
    proc = docker("exec", "-e", "EFAKIT_FAKE_MODE=ignore-term", first, "efa-verify", "run",
                  "--hosts", f"{first},{second}", "--gpus-per-host", "1", "--tests-dir",
                  "/fake", "--stall-timeout", "5", "--output-dir", "/tmp/run", "--json",
                  check=False)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    stages = {s["name"]: s for s in result["run"]["stages"]}
    assert stages["benchmark"]["ended"] == "stalled"
    assert stages["benchmark"]["detail"] == "no rank printed anything for 5 s"  # reap worked
    assert sorted(e["rank"] for e in result["errors"] if e["kind"] == "hang") == [0, 1]
    fabric = next(c for c in result["checks"] if c["name"] == "fabric")
    assert fabric["status"] == "pass"
    assert fabric["message"].startswith(f"libfabric tcp from {first} to {second}")
    # rank 1 ran on the second host and left a detached child (its own session)
    assert leftovers(second) == [] and leftovers(first) == []
