"""`efakit sagemaker-verify`: prove an image on real SageMaker instances, one job.

SDK choice: boto3 (already the `build` extra's ECR client, about 100 MB with
botocore).  One CreateTrainingJob with the image's own entrypoint, then
Describe/Logs/S3 reads, is all this needs; the SageMaker Python SDK v3
(~1.2 GB) or sagemaker-core (~450 MB) would add size and a second way to
describe the same request without doing anything we use.  Local mode is
efakit's own (buildkit.smlocal): the same container contract through
docker-compose v1.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass

from verify.cliutil import CliError
from verify.exitcodes import Exit
from verify.profiles import Profile

ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
IMAGE_RE = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
                      r"(?:\.cn)?/(?P<repo>[a-z0-9][a-z0-9._/-]*)"
                      r"(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))$")
S3_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
MAX_RUN_LIMIT = 28 * 24 * 3600  # SageMaker's ceiling for MaxRuntimeInSeconds
TERMINAL = ("Completed", "Failed", "Stopped")
METRICS = ("efa_verify_busbw_avg_GBps", "efa_verify_busbw_peak_GBps", "efa_verify_efa_used",
           "efa_verify_gdr_used", "efa_verify_pass")


@dataclass
class JobSpec:
    image_uri: str
    role: str | None
    profile: Profile
    count: int
    output: str | None
    max_run: int
    region: str | None
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    sweep: str
    name: str

    @property
    def instance_type(self) -> str:
        return self.profile.sagemaker_name or f"ml.{self.profile.name}"


def validate(spec: JobSpec, local: bool) -> None:
    """Every input error, before any AWS call: one line each, exit 2."""
    if spec.profile.efa_devices < 1:
        raise CliError(f"--instance-type {spec.instance_type} has no EFA: nothing to verify")
    if not spec.profile.sagemaker_name and not local:
        raise CliError(f"--instance-type {spec.profile.name} is not offered by SageMaker")
    if spec.count < 2:
        raise CliError("--instance-count must be at least 2: EFA is only used between hosts")
    if not 60 <= spec.max_run <= MAX_RUN_LIMIT:
        raise CliError(f"--max-run must be between 60 and {MAX_RUN_LIMIT} seconds")
    if bool(spec.subnets) != bool(spec.security_groups):
        raise CliError("--subnets and --security-groups go together (a VPC needs both)")
    if local:
        return
    match = IMAGE_RE.match(spec.image_uri)
    if not match:
        raise CliError(f"--image-uri {spec.image_uri!r}: expected an ECR image "
                       "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG (or @sha256:...)")
    if spec.region and spec.region != match["region"]:
        raise CliError(f"--region {spec.region} does not match the image's region "
                       f"{match['region']} (SageMaker pulls from the same region)")
    spec.region = match["region"]
    if not spec.role or not ROLE_RE.match(spec.role):
        raise CliError(f"--role {spec.role!r}: expected an IAM role ARN "
                       "arn:aws:iam::ACCOUNT:role/NAME")
    if not spec.output or not S3_RE.match(spec.output):
        raise CliError(f"--output {spec.output!r}: expected s3://bucket/prefix")


def request(spec: JobSpec) -> dict:
    """The exact CreateTrainingJob request (printed by --dry-run)."""
    req = {
        "TrainingJobName": spec.name,
        "AlgorithmSpecification": {
            "TrainingImage": spec.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": m, "Regex": rf"{m}=([0-9.eE+-]+)"} for m in METRICS],
        },
        "RoleArn": spec.role,
        "OutputDataConfig": {"S3OutputPath": spec.output},
        "ResourceConfig": {"InstanceType": spec.instance_type,
                           "InstanceCount": spec.count, "VolumeSizeInGB": 100},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_run},
        # The image's entrypoint runs `efa-verify sagemaker` for `train` with this set.
        "Environment": {"EFAKIT_SAGEMAKER_VERIFY": "1"},
        "HyperParameters": {"sweep": spec.sweep,
                            "instance-type": spec.instance_type,
                            "timeout": str(max(60, spec.max_run - 300))},
        "EnableNetworkIsolation": False,  # the hosts must reach each other over ssh
        "Tags": [{"Key": "efakit:purpose", "Value": "efa-verify"}],
    }
    if spec.subnets:
        req["VpcConfig"] = {"Subnets": list(spec.subnets),
                            "SecurityGroupIds": list(spec.security_groups)}
    return req


def client(service: str, region: str | None, attempts: int | None = None):
    from buildkit.ecr import make_client

    return make_client(service, region, attempts)


def check_quotas(spec: JobSpec, warn) -> None:
    """Stop when the account's quotas cannot run this job; warn when they cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    wanted = {f"{spec.instance_type} for training job usage": spec.count,
              "Longest run time for a training job": spec.max_run}
    found: dict[str, float] = {}
    try:
        quotas = client("service-quotas", spec.region, attempts=2)  # advisory: fail fast
        for page in quotas.get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"):
            for quota in page.get("Quotas", []):
                if quota.get("QuotaName") in wanted:
                    found[quota["QuotaName"]] = quota.get("Value", 0)
    except (BotoCoreError, ClientError) as exc:
        first = str(exc).splitlines()[0][:200]
        warn(f"warning: cannot read Service Quotas ({first}); continuing without the check")
        return
    for name, need in wanted.items():
        if name not in found:
            warn(f"warning: Service Quotas has no '{name}' quota for sagemaker here; "
                 "not checked")
        elif found[name] < need:
            raise CliError(f"quota '{name}' is {found[name]:g}, this job needs {need}: request "
                           "an increase in the Service Quotas console (service: Amazon "
                           "SageMaker) or `aws service-quotas request-service-quota-increase`",
                           Exit.FAIL)


def wait(sm, logs, name: str, echo, poll: float) -> dict:
    """Poll until the job ends, printing status transitions and new log lines."""
    seen: tuple = ()
    tokens: dict[str, str | None] = {}
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        state = (job["TrainingJobStatus"], job.get("SecondaryStatus"))
        if state != seen:
            echo(f"{name}: {state[0]} / {state[1]}")
            seen = state
        _stream_logs(logs, name, tokens, echo)
        if state[0] in TERMINAL:
            return job
        time.sleep(poll)


def _stream_logs(logs, name: str, tokens: dict[str, str | None], echo) -> None:
    from botocore.exceptions import ClientError

    group = "/aws/sagemaker/TrainingJobs"
    try:
        streams = logs.describe_log_streams(logGroupName=group,
                                            logStreamNamePrefix=f"{name}/")["logStreams"]
        for stream in streams:
            key = stream["logStreamName"]
            kwargs = {"logGroupName": group, "logStreamName": key, "startFromHead": True}
            if tokens.get(key):
                kwargs["nextToken"] = tokens[key]
            events = logs.get_log_events(**kwargs)
            for event in events["events"]:
                echo(f"[{key.split('/', 1)[-1]}] {event['message']}")
            tokens[key] = events.get("nextForwardToken")
    except ClientError:
        return  # no logs yet (the group appears when the first container starts)


def fetch_result(s3, job: dict, dest) -> dict | None:
    """Download the job's output.tar.gz and return efa-verify's result, if it wrote one."""
    import tarfile

    path = f"{job['OutputDataConfig']['S3OutputPath'].rstrip('/')}/" \
           f"{job['TrainingJobName']}/output/output.tar.gz"
    bucket, _, key = path[len("s3://"):].partition("/")
    archive = dest / "output.tar.gz"
    try:
        s3.download_file(bucket, key, str(archive))
    except Exception as exc:  # botocore raises several unrelated types here
        raise CliError(f"cannot download {path}: {exc}", Exit.FAIL) from None
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "output", filter="data")
    result = dest / "output" / "efa-verify" / "result.json"
    return json.loads(result.read_text()) if result.exists() else None


def mark_verified(ecr, image_uri: str, family: str) -> str:
    """Tag the verified digest `<tag>-verified-<family>` (immutable in efakit's repositories)."""
    match = IMAGE_RE.match(image_uri)
    if not match:
        raise CliError(f"{image_uri}: not an ECR image URI, cannot mark it verified")
    image_id = {"imageDigest": match["digest"]} if match["digest"] else \
        {"imageTag": match["tag"]}
    found = ecr.batch_get_image(repositoryName=match["repo"], imageIds=[image_id])["images"]
    if not found:
        raise CliError(f"{image_uri} not found in ECR", Exit.FAIL)
    tag = f"{match['tag'] or match['digest'][7:19]}-verified-{family}"
    with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):  # already marked
        ecr.put_image(repositoryName=match["repo"], imageManifest=found[0]["imageManifest"],
                      imageTag=tag, imageDigest=found[0]["imageId"]["imageDigest"])
    return f"{match['repo']}:{tag}"
