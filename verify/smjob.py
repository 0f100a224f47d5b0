"""`efa-verify sagemaker`: the verifier as a SageMaker training job.

SageMaker starts the container on every host.  Each host starts sshd; the
leader (the toolkit's master host) waits for port 22 on every host, runs
`efa-verify run` over all of them, writes the reports where SageMaker
uploads them (/opt/ml/output/data), prints the figures as `name=value` lines
for the job's metric definitions, puts the verdict summary in
/opt/ml/output/failure when it is not a pass, and tells the other
hosts to exit.  The others serve sshd until told, or until the run's time is up.

What comes from the sagemaker-training toolkit (pinned in the spec's sagemaker
variant): its public `environment.Environment` says the hosts, this host, the
leader (`master_hostname`), the network interface, the instance type and the
hyperparameters, and its module paths say where outputs go (SAGEMAKER_BASE_DIR
moves them, as the toolkit itself allows).  What stays efakit's own: the
toolkit's MPI runner wraps a user entry point on every rank and its sshd start
and host wait are private functions, while `efa-verify run` must launch mpirun
itself (its own rank layout, timeouts and log capture), so the sshd start, the
wait for port 22 and the follower's wait are here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from verify.boundary.values import host_name

DONE_MARKER = Path("/tmp/efakit-verify-leader-done")
FAILURE_LIMIT = 1024  # characters of FailureReason SageMaker keeps
METRICS = (("busbw_avg_GBps", "efa_verify_busbw_avg_GBps"),
           ("busbw_peak_GBps", "efa_verify_busbw_peak_GBps"),
           ("efa_used", "efa_verify_efa_used"), ("gdr_used", "efa_verify_gdr_used"))


@dataclass
class JobConfig:
    hosts: list[str]
    current: str
    leader: str
    interface: str
    instance_type: str | None
    hyper: dict[str, str]
    output_dir: Path  # /opt/ml/output: data/ is uploaded, failure is the FailureReason


def load_config() -> JobConfig:
    """The job as the sagemaker-training toolkit's Environment reads it."""
    try:
        from sagemaker_training import environment
    except ImportError:
        raise ValueError("the sagemaker-training toolkit is not installed (the image's "
                         "sagemaker variant has it)") from None
    try:
        env = environment.Environment()
    except OSError as exc:
        raise ValueError(f"{exc.filename}: {exc.strerror} (not inside a SageMaker job?)") \
            from None
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{environment.input_config_dir}: unreadable job configuration "
                         f"({exc})") from None
    # Host names go to ssh and mpirun: one that is no host name (`-oProxyCommand=...`)
    # is refused here, whatever wrote the job's configuration.
    hosts = sorted(host_name(h, "resourceconfig.json: host") for h in env.hosts)
    if env.current_host not in hosts:
        raise ValueError("resourceconfig.json: current_host is not among hosts")
    # The toolkit decodes JSON-encoded hyperparameters; the run's flags take strings.
    hyper = {k: str(v) for k, v in env.hyperparameters.items()}
    return JobConfig(hosts, env.current_host, env.master_hostname, env.network_interface_name,
                     env.current_instance_type, hyper, Path(environment.output_dir))


def interface(name: str, sys_net: Path = Path("/sys/class/net")) -> tuple[str, str]:
    """The interface MPI and NCCL's bootstrap should use, and how it was chosen.

    Local mode's config names `ethwe` while the container only has eth0.
    """
    if (sys_net / name).exists():
        return name, f"{name} (resource config)"
    return "eth0", f"eth0 (the resource config's {name} does not exist here)"


def run_args(config: JobConfig, outdir: Path) -> list[str]:
    hyper = config.hyper
    args = [sys.executable, "-m", "verify", "run", "--hosts", ",".join(config.hosts),
            "--output-dir", str(outdir), "--json", "--expect-nodes", str(len(config.hosts))]
    args.append("--full" if hyper.get("sweep") == "full" else "--quick")
    for key in ("test", "engine", "timeout", "stall-timeout", "gpus-per-host", "policy"):
        if hyper.get(key):
            args += [f"--{key}", hyper[key]]
    instance = hyper.get("instance-type") or config.instance_type
    if instance and instance != "local":
        args += ["--instance-type", instance]
    return args


def wait_for_ssh(hosts: list[str], timeout: float) -> list[str]:
    """Hosts whose sshd never answered within the timeout."""
    waiting = set(hosts)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for host in sorted(waiting):
            try:
                with socket.create_connection((host, 22), timeout=2):
                    waiting.discard(host)
            except OSError:
                pass
        if waiting:
            time.sleep(1)
    return sorted(waiting)


def metric_lines(result: dict) -> list[str]:
    """Stable `name=value` lines for the job's MetricDefinitions (unknown: no line)."""
    lines = []
    for key, name in METRICS:
        value = result.get(key)
        if value is None:
            continue
        lines.append(f"{name}={int(value) if isinstance(value, bool) else value}")
    lines.append(f"efa_verify_pass={int(result.get('verdict') == 'pass')}")
    return lines


def failure_reason(result: dict) -> str:
    """The verdict's reason, then the names of the other required checks that did not pass."""
    text = f"efa-verify {result.get('verdict', '?').upper()}: {result.get('verdict_reason', '')}"
    deciding = text.split(": ", 2)[1] if text.count(": ") >= 2 else ""
    for status in ("fail", "unknown"):
        names = [c["name"] for c in result.get("checks", []) if c["status"] == status
                 and c["required"] and c["name"] != deciding]
        if names:
            text += f"; also {status}: {', '.join(names)}"
    return text if len(text) <= FAILURE_LIMIT else text[:FAILURE_LIMIT - 3] + "..."


def start_sshd() -> str | None:
    done = subprocess.run(["/usr/sbin/sshd"], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or "sshd failed")


def notify_followers(config: JobConfig) -> None:
    from verify.run.supervise import rsh_command

    for host in config.hosts:
        if host == config.leader:
            continue
        subprocess.run(rsh_command() + [host, "touch", str(DONE_MARKER)],
                       capture_output=True, timeout=60, check=False)


def follow(max_wait: float) -> int:
    deadline = time.monotonic() + max_wait
    while not DONE_MARKER.exists() and time.monotonic() < deadline:
        time.sleep(2)
    print("efa-verify: leader finished" if DONE_MARKER.exists() else
          "efa-verify: leader did not finish in time; exiting", flush=True)
    return 0


def lead(config: JobConfig, ssh_timeout: float) -> int:
    outdir = config.output_dir / "data" / "efa-verify"
    outdir.parent.mkdir(parents=True, exist_ok=True)
    iface, why = interface(config.interface)
    print(f"efa-verify: leading {len(config.hosts)} hosts {config.hosts}; interface {why}",
          flush=True)
    silent = wait_for_ssh(config.hosts, ssh_timeout)
    if silent:
        print(f"efa-verify: sshd did not answer on {', '.join(silent)}", flush=True)
    env = {**os.environ, "OMPI_MCA_btl_tcp_if_include": iface,
           "OMPI_MCA_oob_tcp_if_include": iface, "NCCL_SOCKET_IFNAME": iface,
           "FI_TCP_IFACE": iface}
    done = subprocess.run(run_args(config, outdir), env=env, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {"verdict": "fail", "verdict_reason": f"efa-verify run exited "
                  f"{done.returncode} without a result: {done.stderr.strip()[-300:]}"}
    from verify import report

    if "checks" in result:
        print(report.to_table(result), end="", flush=True)
    for line in metric_lines(result):
        print(line, flush=True)
    if result.get("verdict") != "pass":
        failure = config.output_dir / "failure"
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(failure_reason(result))
    notify_followers(config)
    return done.returncode


def main(ssh_timeout: float = 300, follower_wait: float = 86400) -> int:
    config = load_config()
    problem = start_sshd()
    if problem:
        print(f"efa-verify: {problem}", file=sys.stderr, flush=True)
    if config.current != config.leader:
        return follow(follower_wait)
    return lead(config, ssh_timeout)
