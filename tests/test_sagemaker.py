"""`efakit sagemaker-verify` and the verifier's SageMaker mode.

Input checks and --dry-run need nothing; the job's life (create, describe,
wait, download, mark verified) runs against moto's server; --local runs the
offline sagemaker image as two real containers with docker-compose v1.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import boto3
import pytest

from tests import procs, services
from tests.conftest import CI_EC2, CI_SAGEMAKER, ROOT, missing
from tests.parsehelp import check, parse_text
from tests.procs import EFAKIT
from tests.test_parse_formats import good, table
from verify import smjob

IMAGE = f"{services.MOTO_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/efakit-pytorch:cafe-verify"
ROLE = f"arn:aws:iam::{services.MOTO_ACCOUNT}:role/SageMakerEFA"
BASE = ["--image-uri", IMAGE, "--role", ROLE, "--output", "s3://efakit-test/jobs"]


def efakit(*args, env=None, cwd=ROOT, timeout=600):
    return procs.run([*EFAKIT, *args], capture_output=True, text=True, cwd=cwd,
                     timeout=timeout, env={**os.environ, **(env or {})})


def test_dry_run_prints_the_exact_request_and_calls_nothing(tmp_path):
    proc = efakit("sagemaker-verify", *BASE, "--dry-run", "--job-name", "j1", "--full",
                  "--instance-count", "4", "--subnets", "subnet-1,subnet-2",
                  "--security-groups", "sg-1", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert proc.returncode == 0, proc.stderr
    req = json.loads(proc.stdout)
    assert req["ResourceConfig"] == {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 4,
                                     "VolumeSizeInGB": 100}
    assert req["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert req["Environment"] == {"EFAKIT_SAGEMAKER_VERIFY": "1"}
    assert req["HyperParameters"]["sweep"] == "full"
    assert req["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    names = [m["Name"] for m in req["AlgorithmSpecification"]["MetricDefinitions"]]
    assert names == [name for _, name in smjob.METRICS] + ["efa_verify_pass"]


@pytest.mark.parametrize("args, message", [
    (["--role", "SageMakerRole"], "--role 'SageMakerRole': expected an IAM role ARN"),
    (["--image-uri", CI_EC2], f"--image-uri '{CI_EC2}': expected an ECR"),
    (["--region", "eu-west-1"], "--region eu-west-1 does not match the image's region us-east-1"),
    (["--instance-type", "g5.xlarge"], "--instance-type ml.g5.xlarge has no EFA"),
    (["--instance-type", "p3.16xlarge"], "unknown instance type 'p3.16xlarge'; known: "),
    (["--instance-count", "1"], "--instance-count must be at least 2"),
    (["--output", "bucket/prefix"], "--output 'bucket/prefix': expected s3://bucket/prefix"),
    (["--max-run", "99999999"], "--max-run must be between 60 and 2419200 seconds"),
    (["--subnets", "subnet-1"], "--subnets and --security-groups go together"),
    (["--job-name", "my_job"], "--job-name 'my_job': 1 to 63 letters, digits and hyphens"),
    (["--job-name", "x" * 64], "1 to 63 letters, digits and hyphens"),
    (["--poll", "0"], "--poll must be more than 0 seconds"),
])
def test_input_errors_stop_before_any_call(args, message):
    proc = efakit("sagemaker-verify", *BASE, *args, env={"AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("efakit: error: ") and message in proc.stderr
    assert proc.stderr.count("\n") == 1


def _result_archive(tmp_path: Path) -> bytes:
    """output.tar.gz as the job leaves it: a real efa-verify result of a healthy p5 log."""
    result = parse_text(tmp_path, good() + good("node-b", 1, 0) + table(), instance="p5")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = json.dumps(result).encode()
        info = tarfile.TarInfo("efa-verify/result.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def moto_env(tmp_path):
    with services.moto(tmp_path) as endpoint:
        yield services.aws_env(endpoint)


def _clients(env):
    kw = {"endpoint_url": env["AWS_ENDPOINT_URL"], "region_name": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client("sagemaker", **kw), boto3.client("s3", **kw), boto3.client("ecr", **kw)


def test_job_is_created_as_asked(moto_env, tmp_path):
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-j2",
                  "--max-run", "7200", "--out", str(tmp_path), env=moto_env)
    assert proc.returncode == 0, proc.stderr
    assert "cannot read Service Quotas" in proc.stderr  # moto has no quotas API: a warning
    sagemaker, _, _ = _clients(moto_env)
    job = sagemaker.describe_training_job(TrainingJobName="efakit-j2")
    assert job["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["RoleArn"] == ROLE
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://efakit-test/jobs"
    assert job["HyperParameters"]["sweep"] == "quick"
    # moto does not echo Environment or MetricDefinitions back: the request as sent is kept
    sent = json.loads((tmp_path / "efakit-j2" / "request.json").read_text())
    # A key pair made for this job (the image has none), never printed by --dry-run.
    key = sent["Environment"].pop("EFAKIT_SSH_KEY")
    assert key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and len(key) <= 512
    assert sent["Environment"] == {"EFAKIT_SAGEMAKER_VERIFY": "1"}
    assert key not in proc.stdout + proc.stderr
    assert sent["AlgorithmSpecification"]["MetricDefinitions"][-1] == \
        {"Name": "efa_verify_pass", "Regex": "efa_verify_pass=([0-9.eE+-]+)"}


def test_wait_download_verdict_and_verified_tag(moto_env, tmp_path):
    sagemaker, s3, ecr = _clients(moto_env)
    s3.create_bucket(Bucket="efakit-test")
    s3.put_object(Bucket="efakit-test", Key="jobs/efakit-j3/output/output.tar.gz",
                  Body=_result_archive(tmp_path))
    ecr.create_repository(repositoryName="efakit-pytorch", imageTagMutability="IMMUTABLE")
    manifest = json.dumps({"schemaVersion": 2, "mediaType":
                           "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": "sha256:" + "c" * 64}, "layers": []})
    ecr.put_image(repositoryName="efakit-pytorch", imageManifest=manifest,
                  imageTag="cafe-verify", imageDigest="sha256:" + "d" * 64)
    kw = {"endpoint_url": moto_env["AWS_ENDPOINT_URL"], "region_name": "us-east-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    logs = boto3.client("logs", **kw)  # the job's log stream, as SageMaker names it
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs",
                           logStreamName="efakit-j3/algo-1-1764100000")
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                        logStreamName="efakit-j3/algo-1-1764100000",
                        logEvents=[{"timestamp": int(time.time() * 1000),
                                    "message": "efa_verify_pass=1"}])
    proc = efakit("sagemaker-verify", *BASE, "--job-name", "efakit-j3", "--poll", "0.1",
                  "--instance-type", "p5",
                  "--out", str(tmp_path / "out"), env=moto_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # where the job is goes to stderr; the verdict is the data, on stdout
    assert "efakit-j3: Completed / Completed" in proc.stderr
    assert "[algo-1-1764100000] efa_verify_pass=1" in proc.stderr
    assert "VERDICT: PASS" in proc.stdout and "efa_verify_pass" not in proc.stdout
    assert (tmp_path / "out" / "efakit-j3" / "busbw.png").stat().st_size > 1000
    assert "verified: efakit-pytorch:cafe-verify-verified-p5" in proc.stdout
    tags = [t for i in ecr.describe_images(repositoryName="efakit-pytorch")["imageDetails"]
            for t in i.get("imageTags", [])]
    assert sorted(tags) == ["cafe-verify", "cafe-verify-verified-p5"]


def test_refused_credentials_are_one_line(tmp_path):
    auth = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    with services.moto(tmp_path, env=auth) as endpoint:
        proc = efakit("sagemaker-verify", *BASE, "--no-wait", env=services.aws_env(endpoint))
    assert proc.returncode == 5
    assert "CreateTrainingJob: AWS refused the credentials" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_smjob_contract_pieces(tmp_path):
    job = smjob.JobConfig(["algo-1", "algo-2"], "algo-2", "algo-1", "ethwe", "ml.p4d.24xlarge",
                          {"sweep": "full", "timeout": "900"}, tmp_path / "output")
    args = smjob.run_args(job, tmp_path / "out")
    assert args[args.index("--hosts") + 1] == "algo-1,algo-2" and "--full" in args
    assert args[args.index("--instance-type") + 1] == "ml.p4d.24xlarge"
    assert args[args.index("--timeout") + 1] == "900"
    (tmp_path / "net" / "eth0").mkdir(parents=True)
    assert smjob.interface("ethwe", tmp_path / "net")[0] == "eth0"
    result = {"verdict": "fail", "verdict_reason": "gpus: " + "x" * 2000, "efa_used": None,
              "gdr_used": False, "busbw_avg_GBps": 12.5,
              "checks": [{"name": "gpus", "status": "fail", "required": True},
                         {"name": "efa_devices", "status": "fail", "required": True}]}
    reason = smjob.failure_reason(result)
    assert len(reason) == smjob.FAILURE_LIMIT and reason.endswith("...")
    short = smjob.failure_reason({**result, "verdict_reason": "gpus: none"})
    assert short == "efa-verify FAIL: gpus: none; also fail: efa_devices"
    assert smjob.metric_lines(result) == ["efa_verify_busbw_avg_GBps=12.5",
                                          "efa_verify_gdr_used=0", "efa_verify_pass=0"]


@pytest.mark.docker
def test_local_mode_runs_two_containers_and_fails_truthfully(ci_images, tmp_path):
    if procs.run(["sh", "-c", "command -v docker-compose"]).returncode != 0:
        missing("docker-compose", "not installed (.ci/run installs Debian's docker-compose)")
    # --out relative, as its default is: docker-compose v1 read a relative volume source
    # as a named volume and the job never started (issue #26).  The two hosts reach each
    # other over ssh with the key sagemaker-verify made for this job (the image has none).
    proc = efakit("sagemaker-verify", "--image-uri", CI_SAGEMAKER, "--local",
                  "--instance-count", "2", "--job-name", "local1", "--max-run", "600",
                  "--out", "sm", "--json", timeout=900, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    printed = json.loads(proc.stdout)  # --json: stdout is the result, nothing else
    result = json.loads((tmp_path / "sm" / "local1" / "algo-1" / "output" / "data" / "efa-verify"
                         / "result.json").read_text())
    assert result["run"]["hosts"] == ["algo-1", "algo-2"]
    assert printed["verdict"] == result["verdict"] and printed["checks"] == result["checks"]
    fabric = check(result, "fabric")
    assert fabric["status"] == "pass"
    assert fabric["message"].startswith("libfabric tcp from algo-1 to algo-2")
    assert check(result, "gpus")["status"] == "fail"
    assert check(result, "efa_devices")["message"].startswith("no EFA device on algo-1, algo-2")
    assert result["verdict"] == "fail"
    failure = (tmp_path / "sm" / "local1" / "algo-1" / "output" / "failure").read_text()
    # The image's nccl-tests really ran and failed without a GPU: its error line and the
    # missing GPUs are both named.
    assert failure.startswith("efa-verify FAIL: ") and "gpus" in failure
    assert "efa_verify_pass=0" in proc.stderr  # the job's own lines: progress, on stderr


@pytest.mark.docker
def test_the_job_reads_its_cluster_through_the_toolkits_environment(ci_images, tmp_path):
    """load_config in the sagemaker image: sagemaker-training's Environment, pinned there."""
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-2", "hosts": ["algo-2", "algo-1"],
         "current_instance_type": "ml.p4d.24xlarge", "network_interface_name": "ethwe"}))
    (config / "hyperparameters.json").write_text(json.dumps({"sweep": "\"full\"",
                                                             "timeout": "900"}))
    (config / "inputdataconfig.json").write_text("{}")
    script = ("import json, dataclasses, importlib.metadata as md; from verify import smjob; "
              "c = dataclasses.asdict(smjob.load_config()); c['output_dir'] = str(c['output_dir']); "
              "print(json.dumps({'toolkit': md.version('sagemaker-training'), **c}))")
    proc = procs.run(["/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker",
                           "run", "--rm", "-e", "EFAKIT_IMDS=off", "-e",
                           "AWS_EC2_METADATA_DISABLED=true", "-e", "SAGEMAKER_BASE_DIR=/sm",
                           "-v", f"{tmp_path}:/sm", "--entrypoint", "python3",
                           CI_SAGEMAKER, "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = json.loads(proc.stdout.strip().splitlines()[-1])
    from buildkit.spec import load_spec

    pins = load_spec(ROOT / "images" / "pytorch.yaml").variants["sagemaker"]["packages"]
    assert f"sagemaker-training=={job['toolkit']}" in pins
    # the leader is the toolkit's master_hostname: the first host as the resource config
    # lists them (SageMaker lists them sorted; this one does not, to tell the two apart)
    assert (job["hosts"], job["current"], job["leader"]) == (["algo-1", "algo-2"], "algo-2",
                                                             "algo-2")
    assert (job["interface"], job["instance_type"]) == ("ethwe", "ml.p4d.24xlarge")
    assert job["hyper"] == {"sweep": "full", "timeout": "900"}
    assert job["output_dir"] == "/sm/output"


def test_local_job_that_never_ran_exits_3_not_1(tmp_path):
    """A compose error (here: the image cannot be pulled) leaves no result: the verifier
    never ran, so the exit is 3 (the evidence cannot decide), never 1, which the README's
    table keeps for a verification that ran and failed (issue 27 item 5).  docker-compose
    is a stand-in that fails `up` as v1 does on a missing image; no Docker is used."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    compose = bindir / "docker-compose"
    compose.write_text('#!/bin/sh\ncase " $* " in *" up "*)\n'
                       '  echo "ERROR: pull access denied for efakit-test/nosuch" >&2; exit 1;;\n'
                       'esac\nexit 0\n')
    compose.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = efakit("sagemaker-verify", "--image-uri", "efakit-test/nosuch:1", "--local",
                  "--instance-count", "2", "--job-name", "never", "--out",
                  str(tmp_path / "sm"), env=env, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "no efa-verify result" in proc.stderr and "Traceback" not in proc.stderr
