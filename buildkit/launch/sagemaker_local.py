"""SageMaker's container contract on this machine: N hosts through docker-compose v1.

What SageMaker does for a training job, done locally for `efakit
sagemaker-verify --local`: one container per host named algo-1..algo-N on a
shared network, each with /opt/ml/input/config (resourceconfig.json as local
mode writes it, with its `ethwe` interface name, and hyperparameters.json),
the job's environment, `train` as the command, and /opt/ml/output mounted so
the reports can be read afterwards.  The compose project is removed at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from verify.cliutil import CliError
from verify.exitcodes import Exit


def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if not found:
        raise CliError("--local needs docker-compose v1 (Debian: apt-get install "
                       "docker-compose)", Exit.NO_ENGINE)
    return found


def prepare(workdir: Path, image: str, count: int, env: dict[str, str],
            hyper: dict[str, str]) -> Path:
    """Write each host's /opt/ml tree and the compose file; return the compose file.

    Volume sources are absolute: docker-compose v1 reads a relative `out/...:/opt/ml/...`
    as a named volume, and the job never starts (issue #26)."""
    workdir = workdir.absolute()
    hosts = [f"algo-{i}" for i in range(1, count + 1)]
    services = {}
    for host in hosts:
        config = workdir / host / "input" / "config"
        config.mkdir(parents=True)
        (workdir / host / "output").mkdir()
        (config / "resourceconfig.json").write_text(json.dumps({
            "current_host": host, "current_group_name": "homogeneousCluster",
            "current_instance_type": "local", "hosts": hosts,
            "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                 "instance_type": "local", "hosts": hosts}],
            "network_interface_name": "ethwe"}))
        (config / "hyperparameters.json").write_text(json.dumps(hyper))
        (config / "inputdataconfig.json").write_text("{}")
        services[host] = {
            "image": image, "hostname": host, "command": ["train"],
            "environment": {**env, "EFAKIT_IMDS": "off"},
            "networks": {"sagemaker-local": {"aliases": [host]}},
            "volumes": [f"{config}:/opt/ml/input/config",
                        f"{workdir / host / 'output'}:/opt/ml/output"],
        }
    compose = workdir / "docker-compose.yaml"
    compose.write_text(json.dumps({"version": "2.3", "services": services,
                                   "networks": {"sagemaker-local": {}}}, indent=2))
    return compose


def run(workdir: Path, image: str, count: int, env: dict[str, str], hyper: dict[str, str],
        timeout: int, echo) -> tuple[int, Path]:
    """Run the job; returns algo-1's exit status and its /opt/ml/output directory."""
    binary = compose_binary()
    compose = prepare(workdir, image, count, env, hyper)
    project = f"efakit-{uuid.uuid4().hex[:8]}"
    base = [binary, "-f", str(compose), "-p", project]
    # MaxRuntimeInSeconds, as SageMaker enforces it: kill the containers when it is up.
    watchdog = threading.Timer(timeout, subprocess.run, [base + ["kill"]],
                               {"capture_output": True})
    watchdog.start()
    try:
        with subprocess.Popen(base + ["up", "--no-color", "--abort-on-container-exit",
                                      "--exit-code-from", "algo-1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                echo(line.rstrip("\n"))
            code = proc.wait()
    finally:
        watchdog.cancel()
        subprocess.run(base + ["down", "--volumes", "--timeout", "5"], capture_output=True,
                       timeout=300)
    return code, workdir / "algo-1" / "output"
