"""Image ENV extends the base's search paths, never replaces them.

The production bases set LD_LIBRARY_PATH (pytorch/pytorch and NVIDIA's CUDA
images carry /usr/local/nvidia/lib64, where the NVIDIA container runtime
mounts the driver's libraries); replacing it would hide the driver.  A base
without the variable must get no empty entry either: an empty entry in
LD_LIBRARY_PATH means the current directory.
"""

import json
import os
import re
import uuid

import pytest

from tests import procs
from tests.conftest import ROOT

GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.Dockerfile"))
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
BASE_IMAGE = "efakit/base:bookworm"  # made by `make ci-image` (efakit base-image)
EXTEND = "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"


def env_block(dockerfile: str) -> str:
    """The final stage's ENV instruction that sets LD_LIBRARY_PATH, continuation lines joined."""
    blocks = re.findall(r"^ENV (?:.*\\\n)*.*$", dockerfile, re.M)
    return [b for b in blocks if "LD_LIBRARY_PATH=" in b][-1]


def ld_value(block: str) -> str:
    return re.search(r"LD_LIBRARY_PATH=(\S+)", block).group(1)


@pytest.mark.parametrize("golden", GOLDEN, ids=[g.stem for g in GOLDEN])
def test_every_variant_extends_ld_library_path(golden):
    """The base's own entries are kept (extended once, never replaced); the plugin and
    libfabric come first.  Only on a base with HPC-X (NGC) does anything follow the base's
    entries: the installer's Open MPI, which must not shadow HPC-X's Open MPI 5 that NGC
    torch links (images/base-facts.yaml; issue #25 finding 7)."""
    value = ld_value(env_block(golden.read_text()))
    assert value.count(EXTEND) == 1, value
    head, tail = value.split(EXTEND)
    ours = head.split(":")
    assert all(ours) and "/opt/amazon/ofi-nccl/lib" in ours, ours
    after = [entry for entry in tail.split(":") if entry]
    assert tail == "" or (tail.startswith(":") and after == ["/opt/amazon/openmpi/lib"]), value
    assert not after or "-ngc-" in golden.stem, value


@pytest.mark.parametrize("golden", [g for g in GOLDEN if not g.stem.startswith("offline")],
                         ids=lambda g: g.stem)
def test_production_variants_put_the_installers_open_mpi_on_the_path(golden):
    entries = ld_value(env_block(golden.read_text())).replace(EXTEND, ":").split(":")
    assert "/opt/amazon/openmpi/lib" in entries


def _built_env(block: str, base_env: str) -> dict[str, str]:
    """Build FROM the offline base with an optional base ENV plus our block; read its Env."""
    tag = f"efakit-test/ldpath:{uuid.uuid4().hex[:12]}"
    dockerfile = f"FROM {BASE_IMAGE}\n{base_env}\n{block}\n"
    build = procs.run([DOCKER, "build", "-q", "-t", tag, "-"], input=dockerfile,
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"})
    try:
        assert build.returncode == 0, build.stderr
        inspect = procs.run([DOCKER, "image", "inspect", "--format",
                                  "{{json .Config.Env}}", tag],
                                 capture_output=True, text=True, check=True)
        return dict(item.split("=", 1) for item in json.loads(inspect.stdout))
    finally:
        procs.run([DOCKER, "image", "rm", "-f", tag], capture_output=True)


@pytest.mark.docker
@pytest.mark.parametrize("golden", ["default-pytorch-runtime-ec2", "offline-default-ec2"])
def test_the_bases_entries_survive_and_no_empty_entry_is_added(golden, ci_images):
    block = env_block((ROOT / "tests" / "golden" / f"{golden}.Dockerfile").read_text())
    ours = ld_value(block).removesuffix(EXTEND)

    base_dirs = "/usr/local/nvidia/lib:/usr/local/nvidia/lib64"  # pytorch/pytorch's own value
    env = _built_env(block, f"ENV LD_LIBRARY_PATH={base_dirs}")
    assert env["LD_LIBRARY_PATH"] == f"{ours}:{base_dirs}"

    env = _built_env(block, "")
    assert env["LD_LIBRARY_PATH"] == ours  # no trailing ':' (the current directory)
