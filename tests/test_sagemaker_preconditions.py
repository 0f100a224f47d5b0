"""`efakit sagemaker-verify` checks everything local before a job exists (a job bills from
CreateTrainingJob), and stops a job it can no longer follow, or says how to.

Against moto's server, as tests/test_sagemaker.py: moto's jobs are Completed at once
and it has no StopTrainingJob, so stopping a running job is tested with a stub client.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from click.testing import CliRunner

from buildkit import cli
from buildkit import sagemaker as sm
from tests import services
from tests.conftest import QUIET_ENV
from tests.test_sagemaker import BASE, efakit

QUIET = QUIET_ENV


@pytest.fixture
def moto_env(tmp_path):
    with services.moto(tmp_path / "moto") as endpoint:
        yield {**services.aws_env(endpoint), **QUIET}


def _jobs(env) -> list[str]:
    client = boto3.client("sagemaker", endpoint_url=env["AWS_ENDPOINT_URL"],
                          region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return [j["TrainingJobName"] for j in client.list_training_jobs()["TrainingJobSummaries"]]


def _one_line(proc, code: int, text: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("efakit: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr
    assert text in proc.stderr, proc.stderr


# --- an unwritable --out: exit 2, one line, no job, no AWS call at all ------------------

def test_out_under_a_regular_file_creates_no_job(moto_env, tmp_path):
    (tmp_path / "file").write_text("keep")
    proc = efakit("sagemaker-verify", *BASE, "--job-name", "efakit-pre1",
                  "--out", str(tmp_path / "file" / "reports"), env=moto_env)
    _one_line(proc, 2, f"--out: cannot write {tmp_path / 'file' / 'reports' / 'efakit-pre1'}: "
                       f"{tmp_path / 'file'} is not a directory")
    assert proc.stdout == ""
    assert _jobs(moto_env) == []
    assert (tmp_path / "file").read_text() == "keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="linux: needs Linux's /proc")
@pytest.mark.parametrize("out", ["/proc/efakit-out", "/proc/self/status"])
def test_out_in_proc_creates_no_job(moto_env, out):
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-pre2",
                  "--out", out, env=moto_env)
    _one_line(proc, 2, f"--out: cannot write {out}/efakit-pre2: ")
    assert "Service Quotas" not in proc.stderr  # stopped before even the free calls
    assert _jobs(moto_env) == []


def test_out_that_is_a_file_creates_no_job(moto_env, tmp_path):
    (tmp_path / "efakit-pre3").write_text("an older file of that name")
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-pre3",
                  "--out", str(tmp_path), env=moto_env)
    _one_line(proc, 2, f"{tmp_path / 'efakit-pre3'} is not a directory")
    assert _jobs(moto_env) == []


def test_a_new_out_is_created_before_the_job(moto_env, tmp_path):
    out = tmp_path / "new" / "deeper"
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-pre4",
                  "--out", str(out), env=moto_env)
    assert proc.returncode == 0, proc.stderr
    assert _jobs(moto_env) == ["efakit-pre4"]
    assert (out / "efakit-pre4" / "request.json").is_file()
    assert sorted(p.name for p in (out / "efakit-pre4").iterdir()) == ["request.json"]


def test_a_refused_job_leaves_no_empty_out(tmp_path):
    auth = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    with services.moto(tmp_path / "moto", env=auth) as endpoint:
        proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-pre5",
                      "--out", str(tmp_path / "new" / "out"),
                      env={**services.aws_env(endpoint), **QUIET})
    assert proc.returncode == 5, proc.stderr
    assert "CreateTrainingJob: AWS refused the credentials" in proc.stderr
    assert not (tmp_path / "new").exists()


# --- a local failure once the job exists ---------------------------------------------------

def test_a_local_failure_after_creation_is_one_line(moto_env, tmp_path):
    """request.json is written after CreateTrainingJob; make that write fail."""
    (tmp_path / "efakit-pre6" / "request.json").mkdir(parents=True)
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-pre6",
                  "--out", str(tmp_path), env=moto_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"efakit: error: {tmp_path / 'efakit-pre6' / 'request.json'}: Is a directory "
        "(training job efakit-pre6)")
    assert _jobs(moto_env) == ["efakit-pre6"]  # created, and Completed in moto: not stopped


def test_a_failure_while_waiting_stops_the_job(moto_env, tmp_path, monkeypatch):
    """In process, so the wait can fail: the job that exists is handed to stop_unfollowed."""
    for key, value in moto_env.items():
        monkeypatch.setenv(key, value)
    stopped = []

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x"))

    monkeypatch.setattr(sm, "wait", full)
    monkeypatch.setattr(sm, "stop_unfollowed",
                        lambda name, region, echo, sm=None: stopped.append((name, region)))
    result = CliRunner().invoke(cli.main, ["sagemaker-verify", *BASE, "--job-name",
                                           "efakit-pre7", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        f"efakit: error: {tmp_path / 'x'}: No space left on device (training job efakit-pre7)")
    assert stopped == [("efakit-pre7", "us-east-1")]
    assert _jobs(moto_env) == ["efakit-pre7"]


# --- stop_unfollowed: stop a running job, or print the exact command ----------------------

class StubSageMaker:
    def __init__(self, status=None, describe_error=None, stop_error=None):
        self.status, self.describe_error, self.stop_error = status, describe_error, stop_error
        self.stopped: list[str] = []

    def describe_training_job(self, TrainingJobName):  # noqa: N803 (boto3's spelling)
        if self.describe_error:
            raise self.describe_error
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": self.status}

    def stop_training_job(self, TrainingJobName):  # noqa: N803
        if self.stop_error:
            raise self.stop_error
        self.stopped.append(TrainingJobName)


def _client_error(code: str, message: str, op: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


COMMAND = "aws sagemaker stop-training-job --training-job-name job1 --region us-east-1"


def _stop(stub) -> list[str]:
    lines: list[str] = []
    sm.stop_unfollowed("job1", "us-east-1", lines.append, sm=stub)
    return lines


def test_a_running_job_is_stopped():
    stub = StubSageMaker("InProgress")
    assert _stop(stub) == ["stopping training job job1 (it was InProgress): "
                           "this run cannot follow it"]
    assert stub.stopped == ["job1"]


def test_a_job_that_cannot_be_stopped_gets_the_command():
    stub = StubSageMaker("InProgress", stop_error=_client_error(
        "AccessDeniedException", "not allowed", "StopTrainingJob"))
    lines = _stop(stub)
    assert len(lines) == 1 and lines[0].endswith(f"stop it with: {COMMAND}")
    assert "job1 is InProgress and could not be stopped" in lines[0]


def test_a_job_that_cannot_be_described_gets_the_command():
    lines = _stop(StubSageMaker(describe_error=EndpointConnectionError(
        endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com")))
    assert len(lines) == 1 and lines[0].endswith(f"stop it with: {COMMAND}")
    assert lines[0].startswith("training job job1 may still be running")


@pytest.mark.parametrize("stub", [
    StubSageMaker("Completed"), StubSageMaker("Failed"), StubSageMaker("Stopped"),
    StubSageMaker("Stopping"),
    StubSageMaker(describe_error=_client_error("ValidationException",
                                               "Requested resource not found.",
                                               "DescribeTrainingJob")),
])
def test_nothing_to_stop(stub):
    assert _stop(stub) == [] and stub.stopped == []


def test_the_command_is_exact():
    assert sm.stop_command("efakit-verify-1", None) == \
        "aws sagemaker stop-training-job --training-job-name efakit-verify-1"


def test_prepare_out_removes_only_what_it_made(tmp_path):
    made = sm.prepare_out(tmp_path / "a" / "b" / "job")
    assert made == [tmp_path / "a" / "b" / "job", tmp_path / "a" / "b", tmp_path / "a"]
    (tmp_path / "a" / "keep").write_text("x")
    sm.discard_out(made)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["keep"]
    assert sm.prepare_out(tmp_path) == [] and tmp_path.is_dir()
    assert not list(Path(tmp_path).glob(".efakit-probe-*"))


# --- the audit's AWS-side cases, against moto ---------------------------------------------

@pytest.mark.parametrize("case_id,env", [
    ("sm-badprofile", {"AWS_PROFILE": "nope"}),
    ("sm-deadendpoint", {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}),
])
def test_unusable_aws_settings_are_one_error_line(moto_env, tmp_path, case_id, env):
    proc = efakit("sagemaker-verify", *BASE, "--no-wait", "--job-name", "efakit-x",
                  "--out", str(tmp_path / "out"), env={**moto_env, **env})
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("efakit: error: ")]
    assert len(errors) == 1, proc.stderr
    assert not (tmp_path / "out").exists()
