"""No silent skips in CI: with CI=true or EFAKIT_REQUIRE, a test whose part is missing
fails with the reason; only hardware parts (gpu, efa-host) may still skip.

Each case runs a real pytest, with this suite's conftest, on a few tests that
find their part missing in each of the ways the suite's tests do."""

import os
import sys

import pytest

from tests import procs
from tests.conftest import ROOT

CASES = '''
import pytest
from tests.conftest import missing

def test_missing_tool():
    missing("hadolint", "hadolint not found")

def test_service_skip():
    pytest.skip("moto: moto_server not installed")

@pytest.mark.skipif(True, reason="no ../shared/artifacts/sources here")
def test_unnamed_part():
    pass

@pytest.mark.mpi
def test_mpi():
    pass

@pytest.mark.docker
def test_docker():
    pass

@pytest.mark.gpu
def test_gpu():
    pass

def test_efa_host():
    missing("efa-host", "the EFA installer's mpirun exists")
'''


def outcomes(tmp_path, **env):
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import *  # noqa: F403\n"
        "from tests.conftest import pytest_collection_modifyitems, pytest_runtest_makereport\n")
    (tmp_path / "test_parts.py").write_text(CASES)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    docker: d\n    gpu: g\n    mpi: m\n")
    base = {k: v for k, v in os.environ.items()
            if k not in ("CI", "EFAKIT_REQUIRE", "EFAKIT_REQUIRE_DOCKER")}
    # No mpirun, no Docker engine, whatever this machine has.
    base.update(PATH=str(procs.BIN), PYTHONPATH=str(ROOT),
                DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock", **env)
    proc = procs.run([sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider",
                      str(tmp_path / "test_parts.py")], cwd=tmp_path, env=base,
                     capture_output=True, text=True, timeout=300)
    return proc


def test_without_a_switch_missing_parts_skip_with_their_reason(tmp_path):
    proc = outcomes(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "SKIPPED" in proc.stdout and "FAILED" not in proc.stdout
    for reason in ("hadolint: hadolint not found", "moto: moto_server not installed",
                   "mpi: no mpirun on PATH", "docker: ", "gpu: "):
        assert reason in proc.stdout


@pytest.mark.parametrize("switch", [{"CI": "true"}, {"EFAKIT_REQUIRE": "all"}])
def test_in_ci_every_missing_part_but_hardware_fails_with_the_reason(tmp_path, switch):
    proc = outcomes(tmp_path, **switch)
    assert proc.returncode == 1
    said = next(iter(switch.items()))
    for part, why in (("hadolint", "hadolint not found"), ("moto", "moto_server not installed"),
                      ("unnamed", "no ../shared/artifacts/sources here"),
                      ("mpi", "no mpirun on PATH"), ("docker", "")):
        assert f"{part} is required here ({said[0]}={said[1]}) but missing: " in proc.stdout
        assert why in proc.stdout
    # GPU and EFA-host tests are the listed exceptions: they still skip.
    assert "SKIPPED" in proc.stdout and "gpu: no NVIDIA GPU" in proc.stdout
    assert "efa-host: the EFA installer's mpirun exists" in proc.stdout
    assert proc.stdout.count("FAILED") + proc.stdout.count("ERROR") >= 5


def test_named_parts_only(tmp_path):
    proc = outcomes(tmp_path, EFAKIT_REQUIRE="mpi")
    assert "mpi is required here (EFAKIT_REQUIRE=mpi) but missing" in proc.stdout
    assert "hadolint is required" not in proc.stdout and "docker is required" not in proc.stdout
    assert "hadolint: hadolint not found" in proc.stdout


def test_the_old_docker_switch_still_requires_docker(tmp_path):
    proc = outcomes(tmp_path, EFAKIT_REQUIRE_DOCKER="1")
    assert "docker is required here" in proc.stdout
    assert "mpi is required" not in proc.stdout
