"""`efakit sagemaker-verify`: prove an image on real SageMaker instances, one job.

SDK choice: boto3 (already the `build` extra's ECR client, about 100 MB with
botocore).  One CreateTrainingJob with the image's own entrypoint, then
Describe/Logs/S3 reads, is all this needs; the SageMaker Python SDK v3
(~1.2 GB) or sagemaker-core (~450 MB) would add size and a second way to
describe the same request without doing anything we use.  Local mode is
efakit's own (buildkit.launch.sagemaker_local): the same container contract through
docker-compose v1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from verify.cliutil import CliError
from verify.exitcodes import Exit
from verify.profiles import Profile

# Patterns are used with fullmatch (never match with `$`: it accepts a final newline)
# and spell digits [0-9] (`\d` and `\w` match non-ASCII digits and letters too).
ROLE_RE = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}")
IMAGE_RE = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
                      r"(?:\.cn)?/(?P<repo>[a-z0-9][a-z0-9._/-]*)"
                      r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(?P<digest>sha256:[0-9a-f]{64}))")
S3_RE = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\x00-\x1f\x7f]*)?")
# More hosts than a one-off EFA check needs; a larger count is a typo that costs money.
MAX_COUNT = 64
JOB_NAME_RE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # SageMaker's TrainingJobName
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
    if not JOB_NAME_RE.fullmatch(spec.name):
        raise CliError(f"--job-name {spec.name!r}: 1 to 63 letters, digits and hyphens, "
                       "starting and ending with a letter or digit")
    if spec.profile.efa_devices < 1:
        raise CliError(f"--instance-type {spec.instance_type} has no EFA: nothing to verify")
    if not spec.profile.sagemaker_name and not local:
        raise CliError(f"--instance-type {spec.profile.name} is not offered by SageMaker")
    if spec.count < 2:
        raise CliError("--instance-count must be at least 2: EFA is only used between hosts")
    if spec.count > MAX_COUNT:
        raise CliError(f"--instance-count {spec.count}: at most {MAX_COUNT} (a one-off "
                       "verification needs a few hosts; a typo here costs real instances)")
    if not 60 <= spec.max_run <= MAX_RUN_LIMIT:
        raise CliError(f"--max-run must be between 60 and {MAX_RUN_LIMIT} seconds")
    if bool(spec.subnets) != bool(spec.security_groups):
        raise CliError("--subnets and --security-groups go together (a VPC needs both)")
    if local:
        return
    match = IMAGE_RE.fullmatch(spec.image_uri)
    if not match:
        raise CliError(f"--image-uri {spec.image_uri!r}: expected an ECR image "
                       "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG (or @sha256:...)")
    if spec.region and spec.region != match["region"]:
        raise CliError(f"--region {spec.region} does not match the image's region "
                       f"{match['region']} (SageMaker pulls from the same region)")
    spec.region = match["region"]
    if not spec.role or not ROLE_RE.fullmatch(spec.role):
        raise CliError(f"--role {spec.role!r}: expected an IAM role ARN "
                       "arn:aws:iam::ACCOUNT:role/NAME")
    if not spec.output or not S3_RE.fullmatch(spec.output):
        raise CliError(f"--output {spec.output!r}: expected s3://bucket/prefix")


def prepare_out(dest: Path, local: bool = False) -> list[Path]:
    """Create `dest` and prove it writable, before anything costs money: one line, exit 2.

    For a job (not `local`), also refuse a host without boto3 (that would fail only
    once the job has run).  Returns the directories this created, deepest first,
    for `discard_out`.
    """
    if not local and importlib.util.find_spec("boto3") is None:
        raise CliError("sagemaker-verify needs boto3: pip install 'efakit[build]'",
                       Exit.NO_ENGINE)
    made = []
    for path in (dest, *dest.parents):
        if os.path.lexists(path):
            break
        made.append(path)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".efakit-probe-", dir=dest)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        discard_out(made)
        raise CliError(f"--out: cannot write {dest}: {_why(exc, dest)}") from None
    return made


def _why(exc: OSError, path: Path) -> str:
    for part in (path, *path.parents):
        if os.path.lexists(part) and not part.is_dir():
            return f"{part} is not a directory"
    return exc.strerror or str(exc)


def discard_out(made: list[Path]) -> None:
    """Remove the directories `prepare_out` made, where nothing was written into them."""
    for path in made:
        try:
            path.rmdir()
        except OSError:
            return


def stop_command(name: str, region: str | None) -> str:
    region_arg = f" --region {region}" if region else ""
    return f"aws sagemaker stop-training-job --training-job-name {name}{region_arg}"


def stop_unfollowed(name: str, region: str | None, echo, sm=None) -> None:
    """A local step failed and this run cannot follow job `name` to its end: stop it if
    it exists and still runs (it bills until then), or print the command that does."""
    from botocore.exceptions import BotoCoreError, ClientError

    command = stop_command(name, region)
    try:
        sm = sm or client("sagemaker", region, attempts=3)
        status = sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ValidationException",
                                                        "ResourceNotFound"):
            return  # never created: nothing runs
        echo(f"training job {name} may still be running ({_first(exc)}); stop it with: "
             f"{command}")
        return
    except (BotoCoreError, CliError) as exc:
        echo(f"training job {name} may still be running ({_first(exc)}); stop it with: "
             f"{command}")
        return
    if status in TERMINAL or status == "Stopping":
        return
    try:
        sm.stop_training_job(TrainingJobName=name)
    except (BotoCoreError, ClientError) as exc:
        echo(f"training job {name} is {status} and could not be stopped ({_first(exc)}); "
             f"stop it with: {command}")
        return
    echo(f"stopping training job {name} (it was {status}): this run cannot follow it")


def _first(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def after_failure(exc: Exception, name: str, region: str | None, echo) -> CliError | None:
    """Stop job `name` if it runs, and turn a local (OSError) or AWS failure into the one
    line to print; None for anything else (a bug: its traceback is the report)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from verify.report import WriteError

    stop_unfollowed(name, region, echo)
    if isinstance(exc, WriteError):
        return CliError(f"{exc} (training job {name})")
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return CliError(f"{where}{exc.strerror} (training job {name})")
    if isinstance(exc, (BotoCoreError, ClientError)):
        return CliError(f"training job {name}: {_first(exc)}", Exit.FAIL)
    return None


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


def with_job_key(req: dict) -> dict:
    """The request with a key pair made for this job alone (EFAKIT_SSH_KEY): the image
    carries no ssh key, and its entrypoint installs this one on every host so mpirun
    reaches the others.  Added after --dry-run prints the request, so the key is never
    printed; it lives as long as the job (DescribeTrainingJob shows it to whoever may
    describe the job, never to whoever can pull the image)."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise CliError("ssh-keygen not found: sagemaker-verify makes a key pair per job "
                       "(Debian: apt-get install openssh-client)", Exit.NO_ENGINE)
    with tempfile.TemporaryDirectory(prefix="efakit-key-") as tmp:
        key = Path(tmp) / "id_ed25519"
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)],
                       check=True, capture_output=True, timeout=60)
        private = key.read_text(encoding="ascii").strip()
    return {**req, "Environment": {**req["Environment"], "EFAKIT_SSH_KEY": private}}


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
    from verify.boundary.archives import ArchiveError, extract

    path = f"{job['OutputDataConfig']['S3OutputPath'].rstrip('/')}/" \
           f"{job['TrainingJobName']}/output/output.tar.gz"
    bucket, _, key = path[len("s3://"):].partition("/")
    archive = dest / "output.tar.gz"
    try:
        s3.download_file(bucket, key, str(archive))
    except Exception as exc:  # botocore raises several unrelated types here
        raise CliError(f"cannot download {path}: {exc}", Exit.FAIL) from None
    try:  # the job's output is untrusted: checked member by member, on any Python
        extract(archive, dest / "output")
    except ArchiveError as exc:
        raise CliError(f"{path}: {exc}", Exit.FAIL) from None
    return read_result(dest / "output" / "efa-verify" / "result.json")


# A 64-host job's result with every rank's detail is well under this.
RESULT_MAX_BYTES = 64 * 1024 * 1024


def read_result(path: Path) -> dict | None:
    """The job's result.json, checked against verify/schema/result.schema.json by the
    boundary before anything reads it (it comes back from instances, not from us);
    None when the job wrote none."""
    from verify.boundary.records import RecordError, load

    if not path.exists():
        return None
    try:
        return load(path, "result", "efa-verify result", RESULT_MAX_BYTES)
    except RecordError as exc:
        raise CliError(str(exc), Exit.FAIL) from None


def mark_verified(ecr, image_uri: str, family: str) -> str:
    """Tag the verified digest `<tag>-verified-<family>` (immutable in efakit's repositories)."""
    match = IMAGE_RE.fullmatch(image_uri)
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
