"""Push a gated image to Amazon ECR: repositories, login, immutable tags, scan findings.

The API side is boto3 (moto's server in tests, via AWS_ENDPOINT_URL).  The
registry side is the Docker client and the registry's HTTP API, normally the
ECR registry itself; `registry` overrides it (a mirror, or a local test
registry), in which case the pushed manifest is recorded in the ECR
repository with PutImage, the same call ECR documents for retagging.

Credentials never touch a command line or a log: the registry password goes
to `docker login --password-stdin`, into a throwaway DOCKER_CONFIG.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from buildkit.paths import REPO_ROOT
from verify.cliutil import CliError
from verify.exitcodes import Exit
from verify.tables import load_yaml_file

# fullmatch only: `$` with match accepts a final newline; [0-9], not \d (any digit).
ECR_URI_RE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
                        r"(?:\.cn)?/(?P<name>[a-z0-9][a-z0-9._/-]*)")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._/-]{1,255}")
AUTH_CODES = {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
              "InvalidSignatureException", "AccessDeniedException", "AuthFailure",
              "SignatureDoesNotMatch", "MissingAuthenticationToken"}
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json"))


class PushRefused(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.PUSH_REFUSED)


def settings() -> dict:
    return load_yaml_file(REPO_ROOT / "images" / "ecr.yaml")


@dataclass
class Target:
    repository: str
    region: str
    registry: str  # host[:port] docker pushes to
    ecr_registry: bool  # False when --registry overrides the ECR endpoint

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"


def parse_target(push: str, registry: str | None, env: dict[str, str]) -> Target:
    """`--push` takes an ECR repository URI, or a name with the region from the env."""
    match = ECR_URI_RE.fullmatch(push)
    if match:
        return Target(match["name"], match["region"],
                      registry or push.split("/", 1)[0], registry is None)
    if not NAME_RE.fullmatch(push):
        raise CliError(f"--push {push!r}: expected an ECR repository URI "
                       "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME) or a repository name")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise CliError(f"--push {push}: no region (give a full ECR URI, or set AWS_REGION)",
                       Exit.NO_CREDENTIALS)
    return Target(push, region, registry or "", registry is None)


def make_client(service: str, region: str | None, attempts: int | None = None):
    """A boto3 client whose throttling and transient errors retry with backoff
    (botocore's standard mode); a missing AWS profile is a credentials error."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    attempts = attempts or settings()["retries"]["api_attempts"]
    try:
        return boto3.client(service, region_name=region,
                            config=Config(retries={"mode": "standard",
                                                   "max_attempts": attempts}))
    except ProfileNotFound as exc:
        raise CliError(f"{service}: {exc} (check AWS_PROFILE)", Exit.NO_CREDENTIALS) from None


def client(region: str):
    return make_client("ecr", region)


def aws_call(what: str, func, *args, passthrough: tuple[str, ...] = (), **kwargs):
    """One API call; credential and region trouble become exit 5, other API errors exit 1,
    each as one clear line; error codes in `passthrough` are raised for the caller."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        return func(*args, **kwargs)
    except (NoCredentialsError, PartialCredentialsError):
        raise CliError(f"{what}: no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                       "AWS_SECRET_ACCESS_KEY, or use an OIDC role in CI)",
                       Exit.NO_CREDENTIALS) from None
    except NoRegionError:
        raise CliError(f"{what}: no AWS region (set AWS_REGION)", Exit.NO_CREDENTIALS) from None
    except EndpointConnectionError as exc:
        raise CliError(f"{what}: cannot reach {exc.kwargs.get('endpoint_url')}",
                       Exit.NO_CREDENTIALS) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        found = re.search(r"<Message>(.*?)</Message>", message)  # an XML body from a proxy
        message = found.group(1) if found else message
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in passthrough:
            raise
        if code in AUTH_CODES or status in (401, 403):
            raise CliError(f"{what}: AWS refused the credentials ({code}: {message})",
                           Exit.NO_CREDENTIALS) from None
        raise CliError(f"{what}: {code}: {message}", Exit.FAIL) from None


def ensure_repository(ecr, name: str, kind: str = "image_repository") -> dict:
    """The repository, created with the table's settings if missing."""
    conf = settings()[kind]
    try:
        repo = aws_call("DescribeRepositories", ecr.describe_repositories,
                        repositoryNames=[name],
                        passthrough=("RepositoryNotFoundException",))["repositories"][0]
        repo["created"] = False
        return repo
    except ecr.exceptions.RepositoryNotFoundException:
        pass
    repo = aws_call("CreateRepository", ecr.create_repository, repositoryName=name,
                    imageTagMutability=conf["tag_mutability"],
                    imageScanningConfiguration={"scanOnPush": conf["scan_on_push"]})["repository"]
    aws_call("PutLifecyclePolicy", ecr.put_lifecycle_policy, repositoryName=name,
             lifecyclePolicyText=json.dumps(conf["lifecycle_policy"]))
    repo["created"] = True
    return repo


@dataclass
class Session:
    """A logged-in Docker client config for one push; removed afterwards."""

    docker: str
    target: Target
    password: str
    config_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="efakit-docker-"))

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_CONFIG": self.config_dir}

    def run(self, *args: str, stdin: str | None = None,
            timeout: int = 3600) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], capture_output=True, text=True,
                              input=stdin, env=self.env(), timeout=timeout)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.config_dir, ignore_errors=True)


def login(docker: str, ecr, target: Target) -> Session:
    data = aws_call("GetAuthorizationToken", ecr.get_authorization_token)["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    if target.ecr_registry:
        target.registry = target.registry or data["proxyEndpoint"].split("://", 1)[-1]
    session = Session(docker, target, password)
    done = session.run("login", "--username", user, "--password-stdin", target.registry,
                       stdin=password, timeout=120)
    if done.returncode != 0:
        session.close()
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise CliError(f"docker login to {target.registry} refused: {last}", Exit.NO_CREDENTIALS)
    return session


def remote_manifest(session: Session, tag: str) -> tuple[str, dict, str] | None:
    """(digest, manifest, its exact text) of a tag, or None: the registry's own HTTP API."""
    target = session.target
    scheme = "http" if target.registry.startswith(("127.", "localhost")) else "https"
    request = urllib.request.Request(
        f"{scheme}://{target.registry}/v2/{target.repository}/manifests/{tag}",
        headers={"Accept": MANIFEST_TYPES, "Authorization": "Basic " + base64.b64encode(
            f"AWS:{session.password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read().decode()
            return response.headers["Docker-Content-Digest"], json.loads(raw), raw
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        if exc.code in (401, 403):
            raise CliError(f"registry {target.registry} refused the credentials (HTTP "
                           f"{exc.code})", Exit.NO_CREDENTIALS) from None
        raise CliError(f"registry {target.registry}: HTTP {exc.code} reading {tag}",
                       Exit.FAIL) from None
    except urllib.error.URLError as exc:
        raise CliError(f"registry {target.registry} unreachable: {exc.reason}",
                       Exit.FAIL) from None


PERMANENT = re.compile(r"denied|unauthorized|immutable|tag invalid|cannot be overwritten", re.I)


def _push(session: Session, ref: str) -> str:
    """docker push with retries on transient errors; returns the manifest digest."""
    retries = settings()["retries"]
    for attempt in range(1, retries["push_attempts"] + 1):
        done = session.run("push", ref)
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", done.stdout)
        if done.returncode == 0 and match:
            return match.group(1)
        last = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["?"])[-1]
        if PERMANENT.search(done.stderr + done.stdout) or attempt == retries["push_attempts"]:
            raise PushRefused(f"push of {ref} refused: {last}")
        time.sleep(retries["push_backoff_s"] * attempt)
    raise AssertionError("unreachable")


@dataclass
class PushOutcome:
    reference: str
    digest: str
    action: str  # pushed | already-present
    aliases: dict[str, str]  # alias -> pushed | skipped: why

    def as_dict(self) -> dict:
        return {"reference": self.reference, "digest": self.digest, "action": self.action,
                "aliases": self.aliases}


def _push_tag(session: Session, ecr, image_id: str, tag: str) -> str:
    """docker tag + push one tag (the temporary local tag is removed); returns the digest."""
    ref = session.target.ref(tag)
    tagged = session.run("tag", image_id, ref)
    if tagged.returncode != 0:
        raise CliError(f"docker tag {ref} failed: {tagged.stderr.strip()}", Exit.FAIL)
    try:
        digest = _push(session, ref)
    finally:
        session.run("image", "rm", ref)
    if not session.target.ecr_registry:
        _record(ecr, session, tag)
    return digest


def push_image(session: Session, ecr, repo: dict, image_id: str, content_tag: str,
               aliases: list[str]) -> PushOutcome:
    """Push the content tag under the immutable-tag rule, then aliases where allowed."""
    target = session.target
    existing = remote_manifest(session, content_tag)
    ref = target.ref(content_tag)
    if existing is not None:
        digest, manifest, _ = existing
        if manifest.get("config", {}).get("digest") != image_id:
            raise PushRefused(f"{ref} already holds a different image (config "
                              f"{manifest.get('config', {}).get('digest')}, this image "
                              f"{image_id}); tags are immutable, nothing was pushed")
        action = "already-present"
    else:
        digest = _push_tag(session, ecr, image_id, content_tag)
        action = "pushed"
    results = {}
    mutable = repo.get("imageTagMutability", "IMMUTABLE") == "MUTABLE"
    for alias in aliases:
        if not mutable:
            results[alias] = "skipped: the repository's tags are immutable"
        elif target.ecr_registry:  # ECR's own retag: PutImage with the manifest, no upload
            _, _, raw = remote_manifest(session, content_tag) or (None, None, "")
            aws_call("PutImage", ecr.put_image, repositoryName=target.repository,
                     imageManifest=raw, imageTag=alias, imageDigest=digest)
            results[alias] = "pushed"
        else:
            _push_tag(session, ecr, image_id, alias)
            results[alias] = "pushed"
    return PushOutcome(ref, digest, action, results)


def _record(ecr, session: Session, tag: str) -> None:
    """Tell the ECR API about a manifest pushed to an overriding registry (PutImage)."""
    found = remote_manifest(session, tag)
    if found is None:
        raise CliError(f"{session.target.ref(tag)} missing right after its push", Exit.FAIL)
    try:
        aws_call("PutImage", ecr.put_image, repositoryName=session.target.repository,
                 imageManifest=found[2], imageTag=tag, imageDigest=found[0],
                 passthrough=("ImageTagAlreadyExistsException", "ImageAlreadyExistsException"))
    except ecr.exceptions.ImageTagAlreadyExistsException as exc:
        raise PushRefused(f"ECR refused tag {tag}: {exc}") from None
    except ecr.exceptions.ImageAlreadyExistsException:
        pass  # the same manifest under the same tag: a second push is a no-op


def scan_findings(ecr, repository: str, digest: str, timeout: float,
                  poll: float = 5) -> dict:
    """Scan status and severity counts for the pushed digest (starting a scan if none ran)."""
    image = {"imageDigest": digest}
    deadline = time.monotonic() + timeout
    started = False
    while True:
        try:
            found = aws_call("DescribeImageScanFindings", ecr.describe_image_scan_findings,
                             repositoryName=repository, imageId=image,
                             passthrough=("ScanNotFoundException",))
        except ecr.exceptions.ScanNotFoundException:
            if started:
                found = {"imageScanStatus": {"status": "PENDING"}}
            else:
                aws_call("StartImageScan", ecr.start_image_scan, repositoryName=repository,
                         imageId=image)
                started = True
                continue
        status = found.get("imageScanStatus", {}).get("status", "UNKNOWN")
        if status in ("COMPLETE", "FAILED", "UNSUPPORTED_IMAGE") or time.monotonic() > deadline:
            findings = found.get("imageScanFindings", {})
            return {"status": status,
                    "description": found.get("imageScanStatus", {}).get("description", ""),
                    "counts": findings.get("findingSeverityCounts", {}),
                    "findings": [{"name": f.get("name"), "severity": f.get("severity"),
                                  "uri": f.get("uri")}
                                 for f in findings.get("findings", [])[:50]]}
        time.sleep(poll)
