"""`efakit build --reuse-from`: a content tag the registry already holds is pulled and
tagged, not rebuilt to a new digest (issue 14: fresh CI runners).

Real parts: Debian's docker-registry with the password moto's ECR hands out (the
login and the manifest check are the product's own), the real `efakit build` CLI
and the real engine.  The stack image is far too big for a test, so the spec is the
real pytorch spec in an EFAKIT_HOME whose base is a tiny imported image, and the
registry holds a tiny stand-in under the content tag the product's own functions
compute for those inputs.  A docker client on PATH that records each call before
running Debian's client shows that no build ran.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from buildkit.build import content_tag
from buildkit.spec import load_spec
from tests import procs, services
from tests.conftest import ROOT, TEST_NAMESPACE, TEST_REPO
from tests.procs import EFAKIT

pytestmark = pytest.mark.docker
DOCKER = services.DOCKER
URI = f"{services.MOTO_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
REPOSITORY = "build-reuse"
# The production spec's default base, replaced by a tiny image in the test's home.
PRODUCTION_BASE = ("pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime@sha256:"
                   "db80a41f8428644cebcb3d75b0b62df334ab6c0e75785951eb25f48bfbd42407")
PRODUCTION_BUILDER = ("nvidia/cuda:13.0.2-devel-ubuntu24.04@sha256:"
                      "5dc1bca23d05bd37b011be68ec470c03b403a5da07ec3a86e41af9470e9d0cc6")
# Where a regressed reuse would fall back to building: a closed loopback port, so that
# build fails at once instead of pulling CUDA images from the internet.
NO_BUILDER = "127.0.0.1:9/efakit-test/no-builder@sha256:" + "0" * 64


def docker(*args: str, stdin: bytes | None = None, check: bool = True):
    proc = procs.run([DOCKER, *args], capture_output=True, input=stdin, timeout=300)
    assert proc.returncode == 0 or not check, (args[:3], proc.stderr.decode()[-2000:])
    return proc


def imported(ref: str, text: str) -> str:
    """A one-file image made with `docker import` (no build), tagged `ref`; its id."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("efakit-test.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return docker("import", "-", ref, stdin=buffer.getvalue()).stdout.decode().strip()


def image_id(ref: str) -> str | None:
    proc = docker("image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def home_with_base(home: Path, base: str) -> Path:
    """An EFAKIT_HOME: this checkout, with the production spec's default base and builder
    replaced."""
    (home / "images").mkdir(parents=True)
    for name in ("templates", "verify", "buildkit", "pyproject.toml", "README.md"):
        (home / name).symlink_to(ROOT / name)
    (home / "images" / "ecr.yaml").symlink_to(ROOT / "images" / "ecr.yaml")
    # render reads the bases' facts (#25): the stand-ins take the rows of what they replace
    facts = (ROOT / "images" / "base-facts.yaml").read_text()
    for real, stand_in in ((PRODUCTION_BASE, base), (PRODUCTION_BUILDER, NO_BUILDER)):
        row = "images: [" + real.split("@")[0] + "]"
        assert facts.count(row) == 1, row
        facts = facts.replace(row, f"images: [{real.split('@')[0]}, {stand_in.split('@')[0]}]")
    (home / "images" / "base-facts.yaml").write_text(facts)
    spec = (ROOT / "images" / "pytorch.yaml").read_text()
    assert spec.count(PRODUCTION_BASE) == 1 and spec.count(PRODUCTION_BUILDER) >= 1
    spec = spec.replace(PRODUCTION_BASE, base).replace(PRODUCTION_BUILDER, NO_BUILDER)
    (home / "images" / "pytorch.yaml").write_text(spec)
    return home


def expected_tag(home: Path, base_id: str, out: Path) -> str:
    """The content tag a build in `home` gives, from `efakit render` and the product's
    own content_tag (the build renders the same context with the same function)."""
    render = procs.run([*EFAKIT, "render", "pytorch", "--variant", "ec2", "-o", str(out)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "EFAKIT_HOME": str(home)})
    assert render.returncode == 0, render.stderr
    spec = load_spec(home / "images" / "pytorch.yaml")
    return content_tag(spec, "ec2", out, base_id)


def push(local: str, remote: str, registry: str) -> None:
    """docker login (moto's password) and push, in a config of its own."""
    with tempfile.TemporaryDirectory(prefix="efakit-test-docker-") as config:
        login = procs.run([DOCKER, "--config", config, "login", "--username", "AWS",
                           "--password-stdin", registry], input=services.MOTO_PASSWORD,
                          capture_output=True, text=True, timeout=120)
        assert login.returncode == 0, login.stderr
        docker("tag", local, remote)
        pushed = procs.run([DOCKER, "--config", config, "push", remote], capture_output=True,
                           text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stderr


def recording_client(directory: Path) -> tuple[Path, Path]:
    """(bin directory, call log): `docker` there logs its arguments, then runs Debian's
    client (the one efakit would pick: BuildKit without buildx)."""
    real = shutil.which(DOCKER)  # absolute: the recorder must not find itself on PATH
    assert real is not None
    directory.mkdir()
    calls = directory / "calls.log"
    shim = directory / "docker"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\nexec {real} "$@"\n')
    shim.chmod(0o755)
    return directory, calls


def test_a_content_tag_in_the_registry_is_pulled_and_tagged_not_rebuilt(tmp_path):
    run = uuid.uuid4().hex[:12]  # every image of this run is new: no earlier copy can help
    base, stand_in = f"{TEST_NAMESPACE}/reuse-base:{run}", f"{TEST_NAMESPACE}/reuse-stand-in:{run}"
    made = [base, stand_in]
    try:
        base_id = imported(base, f"base of the build-reuse test {run}\n")
        home = home_with_base(tmp_path / "home", base)
        name = expected_tag(home, base_id, tmp_path / "render")
        local = f"{TEST_REPO}:{name}"
        made.append(local)
        assert image_id(local) is None  # not built here: only the registry can supply it
        pushed_id = imported(stand_in, f"the image CI built from these inputs {run}\n")
        with services.registry(tmp_path / "registry") as reg, \
                services.moto(tmp_path / "moto") as endpoint:
            remote = f"{reg}/{REPOSITORY}:{name}"
            made.append(remote)
            push(stand_in, remote, reg)
            _, manifest = services.registry_get(reg, f"/v2/{REPOSITORY}/manifests/{name}")
            assert manifest["config"]["digest"] == pushed_id
            docker("image", "rm", stand_in, remote)
            assert image_id(pushed_id) is None  # the pull below must fetch it
            bin_dir, calls = recording_client(tmp_path / "client")
            env = {**os.environ, **services.aws_env(endpoint), "EFAKIT_HOME": str(home),
                   "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
            # --allow-unpinned: the base is this run's local tag, never pulled (build
            # refuses a floating base tag otherwise).
            proc = procs.run([*EFAKIT, "build", "pytorch", "--variant", "ec2",
                              "--allow-unpinned", "--out", str(tmp_path / "out"), "--json",
                              "--reuse-from", f"{URI}/{REPOSITORY}", "--registry", reg],
                             capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
        assert f"efakit: {local} is in the registry (sha256:" in proc.stderr
        assert "pulled, not rebuilt" in proc.stderr and "building" not in proc.stderr
        assert image_id(local) == pushed_id  # the registry's image, under the content tag
        built = json.loads(proc.stdout)["builds"]
        assert [(b["image_id"], b["tags"]) for b in built] == [(pushed_id, [local])]
        assert Path(built[0]["log"]).read_text() == (
            f"{local} pulled from {remote}: same inputs, nothing built\n")
        called = [line.split() for line in calls.read_text().splitlines()]
        assert ["pull", remote] in called  # the recorder saw efakit's engine at work
        assert not [c for c in called if c[0] == "build" or c[:2] == ["buildx", "build"]]
    finally:
        docker("image", "rm", *made, check=False)
