"""`efakit gate`: the offline images, a real registry (docker-registry) and moto's ECR API.

The registry requires the password moto's GetAuthorizationToken hands out, so
the gate's login is real; repositories, immutability, lifecycle and scan
findings are read back from moto's ECR API.
"""

from __future__ import annotations

import json
import os
import urllib.error

import boto3
import pytest

from tests import procs, services
from tests.conftest import CI_EC2, CI_SAGEMAKER, ROOT, TEST_NAMESPACE
from tests.procs import EFAKIT

pytestmark = pytest.mark.docker
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
EC2, SAGEMAKER = CI_EC2, CI_SAGEMAKER
OFFLINE_POLICY = ROOT / "images" / "policies" / "offline-gate.yaml"
URI = f"{services.MOTO_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A registry and moto's server, for the whole module."""
    work = tmp_path_factory.mktemp("services")
    with services.registry(work / "registry") as reg, services.moto(work) as endpoint:
        yield reg, endpoint


def gate(*args, env=None, out=None):
    argv = [*EFAKIT, "gate", *args, "--json"]
    if out:
        argv += ["--out", str(out)]
    merged = {**os.environ, **(env or {})}
    proc = procs.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900,
                     env={k: v for k, v in merged.items() if v is not None})
    result = json.loads(proc.stdout) if proc.stdout.startswith("{") else None
    return proc, result


def catalog(reg):
    return services.registry_get(reg, "/v2/_catalog")[1]["repositories"]


def ecr(endpoint):
    return boto3.client("ecr", **{"endpoint_url": endpoint, "region_name": "us-east-1",
                                  "aws_access_key_id": "testing",
                                  "aws_secret_access_key": "testing"})


BROKEN = {
    "no-plugin": ("RUN rm -f /opt/amazon/ofi-nccl/lib/libnccl-net*.so*", "plugin"),
    "wrong-arch": ("COPY retarget_fatbin.py /tmp/\n"
                   "RUN python3 /tmp/retarget_fatbin.py /opt/nccl-tests/all_reduce_perf 100 75",
                   "nccl_tests_archs"),
    "second-nccl": ('RUN cp "$(readlink -f /opt/efakit-nccl/lib/libnccl.so.2)" '
                    "/usr/local/lib/libnccl.so.2 && ldconfig", "nccl_single"),
}


@pytest.fixture(scope="module")
def broken_images(ci_images, tmp_path_factory):
    """The CI image, deliberately broken three ways, under the tests' own namespace."""
    refs = {}
    for name, (step, _) in BROKEN.items():
        ctx = tmp_path_factory.mktemp(name)
        (ctx / "retarget_fatbin.py").write_text(
            (ROOT / "tests" / "fixtures" / "broken" / "retarget_fatbin.py").read_text())
        (ctx / "Dockerfile").write_text(f"FROM {EC2}\n{step}\n")
        refs[name] = f"efakit-test/broken:{name}"
        proc = procs.run([DOCKER, "build", "-q", "-t", refs[name], str(ctx)],
                         capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    yield refs
    procs.run([DOCKER, "image", "rm", *refs.values()], capture_output=True)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_image_fails_its_check_and_is_refused(broken_images, name, aws, tmp_path):
    reg, endpoint = aws
    before = catalog(reg)
    proc, result = gate(broken_images[name], "--policy", str(OFFLINE_POLICY),
                        "--push", f"{URI}/gate-broken", "--registry", reg,
                        env=services.aws_env(endpoint), out=tmp_path)
    assert proc.returncode == 1, proc.stderr
    check = BROKEN[name][1]
    failed = {c["name"] for c in result["checks"] if c["status"] == "fail"}
    assert check in failed and result["verdict"] == "fail", failed
    assert result["push"]["action"] == "refused" and catalog(reg) == before


def test_the_full_stack_passes_even_the_default_policy(ci_images, tmp_path):
    proc, result = gate(EC2, "--policy", str(ROOT / "verify" / "data" / "default_policy.yaml"),
                        out=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    statuses = {c["name"]: c["status"] for c in result["checks"]}
    assert statuses["efa_installer"] == "skip"
    assert {n for n, s in statuses.items() if s not in ("pass", "skip")} == set(), statuses


def test_passing_image_lands_with_the_printed_digest_then_is_a_no_op(ci_images, aws, tmp_path):
    reg, endpoint = aws
    env = services.aws_env(endpoint)
    proc, result = gate(EC2, "--push", f"{URI}/gate-pass", "--registry", reg, env=env,
                        out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    waived = sorted(c["name"] for c in result["checks"] if c["status"] == "waived")
    assert waived == ["efa_installer"]
    assert all("unreachable offline" in c["waiver"]["reason"] for c in result["checks"]
               if c["status"] == "waived")
    assert not [c["name"] for c in result["checks"] if c["status"] in ("fail", "unknown")]
    push = result["push"]
    assert push["action"] == "pushed"
    assert f"@{push['digest']}" in proc.stderr
    tag = result["image"]["content_tag"]
    headers, manifest = services.registry_get(reg, f"/v2/gate-pass/manifests/{tag}")
    assert headers["Docker-Content-Digest"] == push["digest"]
    assert manifest["config"]["digest"] == result["image"]["id"]
    assert push["aliases"] == {"ci": "skipped: the repository's tags are immutable"}
    api = ecr(endpoint)
    repo = api.describe_repositories(repositoryNames=["gate-pass"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    rules = json.loads(api.get_lifecycle_policy(repositoryName="gate-pass")
                       ["lifecyclePolicyText"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
    cache = api.describe_repositories(repositoryNames=["gate-pass-buildcache"])
    assert cache["repositories"][0]["imageTagMutability"] == "MUTABLE"
    assert [i["imageTags"] for i in api.describe_images(repositoryName="gate-pass")
            ["imageDetails"]] == [[tag]]
    scan = next(c for c in result["checks"] if c["name"] == "scan_findings")
    assert scan["status"] == "pass" and "HIGH 1" in scan["message"]  # moto's canned finding
    summary = (tmp_path / "gate.md").read_text()
    assert "| scan_findings |" in summary
    # The pushed digest, not 'not pushed', in gate.json, gate.md and the headline (issue 27).
    pushed = f"{push['reference']}@{push['digest']}"
    assert result["image"]["digest"] == pushed
    assert json.loads((tmp_path / "gate.json").read_text())["image"]["digest"] == pushed
    assert pushed in summary.split("\n\n")[1] and "not pushed" not in summary

    again, second = gate(EC2, "--push", f"{URI}/gate-pass", "--registry", reg, env=env)
    assert again.returncode == 0, again.stderr
    assert second["push"]["action"] == "already-present"
    assert second["push"]["digest"] == push["digest"]


def test_a_different_image_under_a_taken_tag_is_refused(ci_images, aws):
    reg, endpoint = aws
    env = services.aws_env(endpoint)
    first, result = gate(EC2, "--push", f"{URI}/gate-immutable", "--registry", reg, env=env)
    assert first.returncode == 0, first.stderr
    tag = result["image"]["content_tag"]
    impostor = f"{TEST_NAMESPACE}/impostor:{tag}"  # the sagemaker image under the ec2 image's tag
    procs.run([DOCKER, "tag", SAGEMAKER, impostor], check=True)
    try:
        proc, _ = gate(impostor, "--push", f"{URI}/gate-immutable", "--registry", reg, env=env)
    finally:
        procs.run([DOCKER, "image", "rm", impostor], capture_output=True)
    assert proc.returncode == 6, proc.stderr
    assert "already holds a different image" in proc.stderr and "nothing was pushed" in proc.stderr
    headers, manifest = services.registry_get(reg, f"/v2/gate-immutable/manifests/{tag}")
    assert manifest["config"]["digest"] == result["image"]["id"]  # the tag did not move


def test_aliases_go_only_to_a_mutable_repository(ci_images, aws):
    reg, endpoint = aws
    ecr(endpoint).create_repository(repositoryName="gate-mutable", imageTagMutability="MUTABLE")
    proc, result = gate(EC2, "--push", f"{URI}/gate-mutable", "--registry", reg,
                        env=services.aws_env(endpoint))
    assert proc.returncode == 0, proc.stderr
    assert result["push"]["aliases"] == {"ci": "pushed"}
    headers, _ = services.registry_get(reg, "/v2/gate-mutable/manifests/ci")
    assert headers["Docker-Content-Digest"] == result["push"]["digest"]
    details = ecr(endpoint).describe_images(repositoryName="gate-mutable")["imageDetails"]
    assert [sorted(d["imageTags"]) for d in details] == \
        [sorted(["ci", result["image"]["content_tag"]])]


def test_scan_findings_fail_the_gate_when_the_policy_says_so(ci_images, aws, tmp_path):
    reg, endpoint = aws
    policy = tmp_path / "strict.yaml"
    policy.write_text(OFFLINE_POLICY.read_text().replace("scan_fail_on: [CRITICAL]",
                                                         "scan_fail_on: [CRITICAL, HIGH]"))
    proc, result = gate(EC2, "--policy", str(policy), "--push", f"{URI}/gate-scan",
                        "--registry", reg, env=services.aws_env(endpoint))
    assert proc.returncode == 1
    assert result["verdict_reason"].startswith("scan_findings: HIGH 1")
    assert result["push"]["scan"]["findings"][0]["name"] == "CVE-9999-9999"


def error_of(stderr: str) -> str:
    """stderr without the gate's progress lines: the one-line error, newline included."""
    rest = [line for line in stderr.splitlines(keepends=True)
            if not line.startswith("efakit gate: ")]
    assert len(rest) == 1, stderr
    return rest[0]


def test_bad_registry_password_is_a_credentials_error(ci_images, aws, tmp_path):
    _, endpoint = aws
    with services.registry(tmp_path / "registry", password="another-password") as reg:
        proc, _ = gate(EC2, "--push", f"{URI}/gate-badpw", "--registry", reg,
                       env=services.aws_env(endpoint))
        assert proc.returncode == 5
        assert error_of(proc.stderr).startswith(f"efakit: error: docker login to {reg} refused")
        with pytest.raises(urllib.error.HTTPError):  # our password is not theirs
            catalog(reg)


def test_refused_aws_credentials_and_no_region_fail_fast(ci_images, tmp_path):
    auth = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}  # moto checks keys from now on
    with services.moto(tmp_path, env=auth) as endpoint:
        proc, _ = gate(EC2, "--push", f"{URI}/gate-auth", "--registry", "127.0.0.1:1",
                       env=services.aws_env(endpoint))
    assert proc.returncode == 5
    assert "AWS refused the credentials" in proc.stderr and "Traceback" not in proc.stderr
    nothing = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_PROFILE": None,
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None, "AWS_SESSION_TOKEN": None,
               "AWS_REGION": "us-east-1"}
    proc, _ = gate(EC2, "--push", f"{URI}/gate-nocreds", "--registry", "127.0.0.1:1",
                   env=nothing)
    assert proc.returncode == 5
    assert error_of(proc.stderr).startswith(
        "efakit: error: DescribeRepositories: no AWS credentials")
    proc, _ = gate(EC2, "--push", f"{URI}/gate-nocreds", env={**nothing, "AWS_PROFILE": "nope"})
    assert proc.returncode == 5 and error_of(proc.stderr)
    assert "The config profile (nope) could not be found" in proc.stderr
    env = {k: "" for k in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    proc, _ = gate(EC2, "--push", "gate-noregion", env=env)
    assert (proc.returncode, proc.stderr) == (5, "efakit: error: --push gate-noregion: no "
                                                 "region (give a full ECR URI, or set "
                                                 "AWS_REGION)\n")


def test_make_gate_gates_the_last_built_image(ci_images, ci_build_out, tmp_path):
    """`make gate` with no IMAGE: the image `make ci-image` built last (the sagemaker one)."""
    proc = procs.run(["make", "gate", f"OUT={tmp_path}", f"BUILD_OUT={ci_build_out}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert result["image"]["variant"] == "sagemaker" and result["verdict"] == "pass"
    assert result["push"] == {"action": "not-requested"}
    entry = next(c for c in result["checks"] if c["name"] == "entrypoint")
    assert "cmd ['train']" in entry["message"]
    # The table leads with the verdict, the image and the policy; offline waives the installer.
    lines = proc.stdout.splitlines()
    head = lines[next(i for i, line in enumerate(lines) if line.startswith("GATE: ")):][:4]
    assert head[0] == "GATE: PASS with 1 waiver (efa_installer)", head
    assert head[1].startswith(f"image:  {EC2.split(':')[0]}:") and result["image"]["id"] in head[1]
    assert head[2] == f"policy: {result['image']['policy']}"
    assert "default policy" in head[3]
    assert (tmp_path / "gate" / "gate.md").read_text().startswith(
        "**GATE: PASS with 1 waiver (efa_installer)**")
    assert "efakit gate: running efa-verify static inside" in proc.stderr
