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
    assert reuse_registry(Engine("docker", False), TAG, None) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "local engine only" in err


def test_a_registry_that_cannot_be_asked_is_one_line_not_a_failure(capsys, monkeypatch,
                                                                    tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    target = parse_target("123456789012.dkr.ecr.us-east-1.amazonaws.com/efakit-test", None, {})
    assert reuse_registry(Engine("docker", False), TAG, target) is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot check the registry" in err


@pytest.mark.docker
def test_two_clean_builds_of_the_same_inputs_differ_only_by_the_created_label(tmp_path):
    """The cause of digest drift, shown on a tiny fixture image in the tests' namespace:
    same context, --no-cache twice: same image id without the build-time label, a new one
    with it (apt/pip resolution is the other cause, not reproducible offline)."""
    docker = "/usr/bin/docker"
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    (tmp_path / "hello.txt").write_text("same inputs\n")
    env = {"DOCKER_BUILDKIT": "1", "PATH": "/usr/bin:/bin"}
    refs = [f"efakit-test/drift:{n}" for n in ("plain-1", "plain-2", "label-1", "label-2")]
    ids = []
    try:
        for n, ref in enumerate(refs):
            label = ["--label", f"org.opencontainers.image.created=2026-12-01T00:00:0{n}Z"] \
                if "label" in ref else []
            done = subprocess.run([docker, "build", "-q", "--no-cache", *label, "-t", ref,
                                   str(tmp_path)], capture_output=True, text=True, env=env,
                                  timeout=300, cwd=ROOT)
            assert done.returncode == 0, done.stderr
            ids.append(done.stdout.strip())
        assert ids[0] == ids[1]
        assert ids[2] != ids[3]
    finally:
        subprocess.run([docker, "image", "rm", *refs], capture_output=True, timeout=120)
