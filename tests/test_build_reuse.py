"""The content tag's registry copy is reused; where the registry cannot be asked, one
line says so and the build goes on (never a failure at push time)."""

from __future__ import annotations

import subprocess

import pytest

from buildkit.build import reuse_registry
from buildkit.ecr import parse_target
from buildkit.engine import Engine
from tests.conftest import ROOT

TAG = "efakit-test/pytorch:pytorch2.13-cuda13.3-efasrc-ofi1.21-nccl2.29-ec2-0123456789ab"


def test_without_a_registry_one_line_says_only_the_engine_was_checked(capsys):
    assert reuse_registry(Engine("docker", False), TAG, None) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in the local engine only" in err


def test_a_registry_that_cannot_be_asked_is_one_line_not_a_failure(capsys, monkeypatch,
                                                                    tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    target = parse_target("123456789012.dkr.ecr.us-east-1.amazonaws.com/efakit-test", None, {})
    assert reuse_registry(Engine("docker", False), TAG, target) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot check the registry" in err


@pytest.mark.docker
def test_two_clean_builds_of_the_same_inputs_get_new_digests(tmp_path):
    """The cause of digest drift, shown on a tiny fixture image in the tests' namespace:
    the same context built twice with --no-cache gives identical layers but a new image
    id, because the image config records build-time timestamps (created, and the
    created label efakit adds); Docker 20.10's BuildKit cannot pin them
    (SOURCE_DATE_EPOCH came later).  apt/pip resolution, the other cause, needs a
    network and is not shown here."""
    docker = "/usr/bin/docker"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text("same inputs\n")
    env = {"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"}
    refs = [f"efakit-test/drift:{n}" for n in ("first", "second")]
    try:
        facts = []
        for ref in refs:
            done = subprocess.run([docker, "build", "-q", "--no-cache", "-t", ref,
                                   str(tmp_path)], capture_output=True, text=True, env=env,
                                  timeout=300, cwd=ROOT)
            assert done.returncode == 0, done.stderr
            shown = subprocess.run([docker, "image", "inspect", "--format",
                                    "{{.Id}} {{.Created}} {{json .RootFS.Layers}}", ref],
                                   capture_output=True, text=True, timeout=60)
            facts.append(shown.stdout.split(" ", 2))
        (id1, created1, layers1), (id2, created2, layers2) = facts
        assert layers1 == layers2  # the same content
        assert created1 != created2 and id1 != id2  # a new digest all the same
    finally:
        subprocess.run([docker, "image", "rm", *refs], capture_output=True, timeout=120)
