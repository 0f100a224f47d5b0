"""Shared fixtures: paths, a CLI runner, and markers that skip with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# The labelled public corpus (each log's source in its LABELS.json), kept in the repository.
CORPUS = ROOT / "tests" / "corpus"
# Nothing a test runs may ask an instance-metadata address (169.254.169.254).
QUIET_ENV = {"EFAKIT_IMDS": "off", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(autouse=True)
def _no_metadata_service(monkeypatch):
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)


def docker_available() -> str | None:
    """None when a Docker engine answers, else the reason it does not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if result.returncode != 0:
        return "no Docker engine answers (docker info: " + \
            (result.stderr.strip().splitlines() or ["?"])[-1] + ")"
    return None


def gpu_reason() -> str | None:
    """None when NVML sees a GPU, else why not."""
    from verify.detect import gpu_model

    return None if gpu_model() else "no NVIDIA GPU visible through NVML"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_reason = None
    needs_docker = any("docker" in item.keywords for item in items)
    if needs_docker:
        docker_reason = docker_available()
    require = os.environ.get("EFAKIT_REQUIRE_DOCKER") == "1"
    for item in items:
        # With EFAKIT_REQUIRE_DOCKER=1 (CI) docker tests run and fail loudly instead.
        if "docker" in item.keywords and docker_reason and not require:
            item.add_marker(pytest.mark.skip(reason=f"docker: {docker_reason}"))
        if "mpi" in item.keywords and shutil.which("mpirun") is None:
            item.add_marker(pytest.mark.skip(reason="mpi: no mpirun on PATH (openmpi-bin)"))
        if "gpu" in item.keywords and gpu_reason():
            item.add_marker(pytest.mark.skip(reason=f"gpu: {gpu_reason()}"))


@pytest.fixture
def pytorch_spec_raw() -> dict:
    return yaml.safe_load((ROOT / "images" / "pytorch.yaml").read_text())


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec dict as `<tmp>/pytorch.yaml` and return its path."""

    def write(raw: dict, name: str = "pytorch") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def ci_images():
    """The offline CI images, built once per session by the target users run."""
    proc = subprocess.run(["make", "ci-image"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout
