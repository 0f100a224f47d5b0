"""The CI workflows hold what a reviewer of a cluster tool's CI looks for (issue #24):
zizmor finds nothing; values reach `run:` only through `env:`; every action is pinned
by commit, with its tag in a comment; checkout leaves no token behind; each job asks
for the permissions it uses; and the make target a dispatch calls never lets make
expand a dispatcher's text."""

from __future__ import annotations

import re

import pytest
import yaml

from tests import procs
from tests.conftest import ROOT, tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+(\.\d+)*")


def _steps(workflow: dict):
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


def test_zizmor_finds_nothing_in_the_workflows():
    proc = procs.run([tool("zizmor"), "--offline", "--format", "plain",
                      str(ROOT / ".github" / "workflows")], capture_output=True, text=True,
                     timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_values_reach_run_steps_only_through_env(path):
    for step in _steps(yaml.safe_load(path.read_text())):
        assert "${{" not in step.get("run", ""), step


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_with_the_tag_in_a_comment(path):
    lines = [line.strip() for line in path.read_text().splitlines()
             if re.match(r"\s*-?\s*uses:", line)]
    assert lines
    for line in lines:
        assert PINNED.fullmatch(line.split("uses:", 1)[1].strip()), line


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_checkout_keeps_no_credentials_and_each_job_asks_for_its_permissions(path):
    workflow = yaml.safe_load(path.read_text())
    for step in _steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step.get("with", {}).get("persist-credentials") is False, step
    assert workflow["permissions"] == {}
    assert all("permissions" in job for job in workflow["jobs"].values())


def test_the_image_gate_jobs_have_the_least_permissions():
    """Read the code everywhere; an OIDC token only where AWS is called; no write."""
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "image-gate.yml").read_text())["jobs"]
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "lint-and-test": {"contents": "read"},
        "build-gate-push": {"contents": "read", "id-token": "write"},
        "verify-on-p4d": {"contents": "read", "id-token": "write"},
    }


def test_the_dispatch_target_passes_a_dispatchers_text_as_text(tmp_path):
    """`make sagemaker-verify` with `$(shell ...)` and a quote in the environment: make
    expands nothing (it used to splice $(IMAGE) into the recipe) and the shell gets each
    value as one quoted argument."""
    marker = tmp_path / "ran"
    env = {**procs.env_with_bin(), "IMAGE": f'$(shell touch {marker})"; touch {marker} #',
           "COUNT": "2", "ROLE": "r", "S3": "s3://b/p", "SUBNETS": "", "SGS": ""}
    proc = procs.run(["make", "-n", "-C", str(ROOT), "sagemaker-verify"], env=env,
                     capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '--image-uri="$IMAGE"' in proc.stdout and str(marker) not in proc.stdout
    assert not marker.exists()
