"""Each runtime's conditions, emulated with Docker, running the GENERATED launcher commands
against worker containers of the test-built image (issue #26), not just their schema.

* mpi-operator: the Secret mounted read-only over /root/.ssh with the operator's file
  names and modes (id_rsa holding its ECDSA key, id_rsa.pub, authorized_keys), the
  workers' host list in /etc/mpi/hostfile and the environment the operator sets on the
  launcher; the MPIJob's own worker and launcher commands run as the containers'
  commands (Kubernetes' `command` replaces the image's entrypoint, as here).
* pyxis/enroot: the sbatch script itself runs, with `srun` and `enroot` standing in for
  Slurm's step launch only (each step runs its command by `docker exec` in the node
  containers, on every node or on the first); the node containers have enroot's mounts
  (tmpfs on /run, /var/run and /tmp) and a read-only root.  Not emulated: pyxis'
  --container-remap-root user namespace (this Docker engine runs without userns-remap).

The ranks are the stand-in nccl-tests of tests/fixtures/run (no GPU here); the policy
drops the GPU and EFA device checks, as tests/test_slurm.py does.  Each test prints the
ranks started and the wall time to the first rank's log (run pytest with -s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import CI_EC2, FIXTURES
from tests.procs import EFAKIT
from tests.services import DOCKER

pytestmark = pytest.mark.docker
FAKE_ARGS = ("--arg", "--tests-dir", "--arg", "/fake", "--arg", "--policy", "--arg",
             "/fake/policy.yaml")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    assert not check or done.returncode == 0, done.stderr[-2000:]
    return done


def efakit(*args: str) -> str:
    done = subprocess.run([*EFAKIT, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fake_dir(tmp_path: Path) -> Path:
    fake = tmp_path / "fake"
    fake.mkdir()
    shutil.copy(FIXTURES / "run" / "fake_nccl_tests.py", fake / "all_reduce_perf")
    (fake / "all_reduce_perf").chmod(0o755)
    (fake / "policy.yaml").write_text("required: {gpus: false, efa_devices: false}\n")
    return fake


class FirstRank(threading.Thread):
    """Seconds from start until the first rank log appears under `root`."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.start_time, self.seconds = root, time.monotonic(), None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.seconds is None:
            if self.root.exists() and next(self.root.glob("**/rank.0.log"), None):
                self.seconds = time.monotonic() - self.start_time
            time.sleep(0.1)


@pytest.fixture
def network():
    name = f"efakit-test-rt-{uuid.uuid4().hex[:8]}"
    docker("network", "create", name)
    containers: list[str] = []
    yield name, containers
    if containers:
        docker("rm", "-f", *containers, check=False)
    docker("network", "rm", name, check=False)


def secret_dir(tmp_path: Path) -> Path:
    """mpi-operator's Secret as the kubelet mounts it: read-only, 0600 files, its names."""
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o755)
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-b", "521", "-N", "", "-f",
                    str(secret / "id_rsa")], check=True)
    shutil.copy(secret / "id_rsa.pub", secret / "authorized_keys")
    for name in ("id_rsa", "id_rsa.pub", "authorized_keys"):
        (secret / name).chmod(0o600)
    return secret


def test_mpijob_launcher_reaches_its_workers_with_the_secret_over_root_ssh(
        ci_images, tmp_path, network):
    net, containers = network
    job = yaml.safe_load(efakit("launch", "eks", "--instance-type", "p5", "--nodes", "2",
                                "--command", "run", "--gpus-per-node", "1", "--image", CI_EC2,
                                "--allow-tag", "--output-dir", "/out/run", *FAKE_ARGS))
    specs = job["spec"]["mpiReplicaSpecs"]
    worker = specs["Worker"]["template"]["spec"]["containers"][0]["command"]
    launcher = specs["Launcher"]["template"]["spec"]["containers"][0]["command"]
    assert job["spec"]["sshAuthMountPath"] == "/root/.ssh"
    secret, fake, out = secret_dir(tmp_path), fake_dir(tmp_path), tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    # The operator's names: <job>-worker-N, reached as <job>-worker-N.<job>.<ns>.svc.
    hosts = [f"efa-verify-worker-{i}.efa-verify.default.svc" for i in range(2)]
    (tmp_path / "hostfile").write_text("".join(f"{h} slots=1\n" for h in hosts))
    mounts = ["-v", f"{secret}:/root/.ssh:ro", "-v", f"{fake}:/fake:ro"]
    for i, host in enumerate(hosts):
        name = f"{net}-w{i}"
        containers.append(name)
        docker("run", "-d", "--name", name, "--hostname", f"efa-verify-worker-{i}",
               "--network", net, "--network-alias", host, "--cap-add", "IPC_LOCK",
               "-e", "EFAKIT_IMDS=off", *mounts, "--entrypoint", worker[0], CI_EC2,
               *worker[1:])
    # A control: without the image's /etc/ssh options the Secret mount leaves ssh
    # prompting for the host key, which is how this failed before (issue #26).
    empty = tmp_path / "empty.conf"
    empty.write_text("")
    control = docker("run", "--rm", "--network", net, *mounts, "-v",
                     f"{empty}:/etc/ssh/ssh_config.d/50-efakit-mpi.conf:ro", "--entrypoint",
                     "bash", CI_EC2, "-c", f"sleep 3; ssh -o BatchMode=yes {hosts[0]} true",
                     check=False)
    assert control.returncode == 255 and "Host key verification failed" in control.stderr
    operator_env = {"OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile",
                    "OMPI_MCA_plm_rsh_args": "-o ConnectionAttempts=10",
                    "OMPI_MCA_orte_keep_fqdn_hostnames": "true",
                    "OMPI_MCA_orte_set_default_slots": "1", "K_MPI_JOB_ROLE": "launcher",
                    "EFAKIT_IMDS": "off"}
    first = FirstRank(out / "run")
    first.start()
    done = docker("run", "--rm", "--name", f"{net}-launcher", "--network", net, *mounts,
                  "-v", f"{tmp_path / 'hostfile'}:/etc/mpi/hostfile:ro", "-v", f"{out}:/out",
                  *[w for k, v in operator_env.items() for w in ("-e", f"{k}={v}")],
                  "--entrypoint", launcher[0], CI_EC2, *launcher[1:], timeout=600,
                  check=False)
    wall = time.monotonic() - first.start_time
    first.done.set()
    result = json.loads((out / "run" / "result.json").read_text())
    print(f"mpi-operator-like: {result['run']['ranks_launched']} ranks started, first rank "
          f"log after {first.seconds:.1f} s, launcher {wall:.1f} s, verdict "
          f"{result['verdict']}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert result["run"]["hosts"] == hosts and result["run"]["hosts_source"].startswith(
        "--hostfile")
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["rank_logs"]["status"] == "pass" and checks["benchmark"]["status"] == "pass"


STUB_SRUN = r"""#!/bin/bash
# srun for the emulation: --nodes=1 runs on the first node, else on every node; the
# command runs by `docker exec` in the node containers (enroot start's options and the
# container name are dropped: the node container is the container).
IFS=, read -r -a nodes <<< "$EMU_NODES"
while [[ $1 == --* ]]; do [[ $1 == --nodes=1 ]] && nodes=("${nodes[0]}"); shift; done
if [[ $1 == enroot ]]; then
    [[ $2 == start ]] || exit 0
    shift 2
    while [[ $1 == --* ]]; do [[ $1 == --mount ]] && shift; shift; done
    shift
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; exit 143' TERM  # srun passes SIGTERM to its tasks
for n in "${nodes[@]}"; do
    "$EMU_DOCKER" exec -e SLURM_JOB_ID="$SLURM_JOB_ID" -e SLURM_JOB_NODELIST="$EMU_NODELIST" \
        -e EFAKIT_IMDS=off "$EMU_PREFIX-$n" "$@" & pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""


@pytest.mark.parametrize("container", ["pyxis", "enroot"])
def test_the_sbatch_script_runs_under_enroots_mounts(ci_images, tmp_path, network, container):
    net, containers = network
    shared = tmp_path / "fsx"
    (shared / "out").mkdir(parents=True)
    shared.chmod(0o777)
    out = shared / "out"
    fake = fake_dir(tmp_path)
    script = efakit("launch", "slurm", "--instance-type", "p5", "--nodes", "2", "--command",
                    "run", "--gpus-per-node", "1", "--container", container, "--image", CI_EC2,
                    "--output-dir", str(out), *FAKE_ARGS)
    nodes = ["n1", "n2"]
    for node in nodes:
        name = f"{net}-{node}"
        containers.append(name)
        docker("run", "-d", "--name", name, "--hostname", node, "--network", net,
               "--network-alias", node, "--read-only", "--tmpfs", "/run", "--tmpfs",
               "/var/run", "--tmpfs", "/tmp", "-v", f"{shared}:{shared}", "-v",
               f"{fake}:/fake:ro", "--entrypoint", "sleep", CI_EC2, "infinity")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text(STUB_SRUN)
    (bindir / "enroot").write_text("#!/bin/sh\nexit 0\n")
    for stub in ("srun", "enroot"):
        (bindir / stub).chmod(0o755)
    (tmp_path / "job.sbatch").write_text(script)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "SLURM_JOB_ID": "42",
           "EMU_NODES": ",".join(nodes), "EMU_NODELIST": ",".join(nodes),
           "EMU_PREFIX": net, "EMU_DOCKER": DOCKER}
    first = FirstRank(out / "efa-verify-run-42")
    first.start()
    log = tmp_path / "slurm-42.out"  # a file, as sbatch --output: no pipe for a step to hold
    with log.open("w") as handle:
        done = subprocess.run(["bash", str(tmp_path / "job.sbatch")], stdout=handle,
                              stderr=subprocess.STDOUT, env=env, timeout=600)
    wall = time.monotonic() - first.start_time
    first.done.set()
    output = log.read_text()
    result_file = out / "efa-verify-run-42" / "result.json"
    assert result_file.exists(), output[-3000:]
    result = json.loads(result_file.read_text())
    print(f"{container}-like (read-only root, tmpfs /run): "
          f"{result['run']['ranks_launched']} ranks started, first rank log after "
          f"{first.seconds:.1f} s, script {wall:.1f} s, verdict {result['verdict']}")
    assert done.returncode == 0, output[-3000:]
    assert result["run"]["hosts"] == nodes
    assert {c["name"]: c["status"] for c in result["checks"]}["rank_logs"] == "pass"
    assert not (out / ".efa-verify-ssh-42").exists()  # the job's keys go with the job


def test_no_private_key_in_the_image_and_static_fails_one_built_with_one(ci_images, tmp_path):
    """The image's layers made no key (docker history) and hold none (a search); an image
    built FROM it with one fails static's required `ssh` check, so the gate refuses it."""
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", CI_EC2).stdout
    assert "ssh-keygen -q -t" not in history and "id_ed25519" not in history
    search = docker("run", "--rm", "--entrypoint", "sh", CI_EC2, "-c",
                    "grep -rlI 'PRIVATE KEY-----' /root /home /etc/ssh 2>/dev/null; true")
    assert search.stdout.strip() == ""  # no key anywhere a key would be used from
    tag = f"efakit-test/keyed:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {CI_EC2}\nRUN mkdir -p /root/.ssh && ssh-keygen -q -t ed25519 -N '' "
        "-f /root/.ssh/id_ed25519\n")
    docker("build", "-q", "-t", tag, str(tmp_path), timeout=300)
    try:
        done = docker("run", "--rm", "-e", "EFAKIT_IMDS=off", tag, "efa-verify", "static",
                      "--json", check=False)
    finally:
        docker("rmi", "-f", tag, check=False)
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["ssh"]["status"] == "fail" and checks["ssh"]["required"]
    assert "private key baked into the image: /root/.ssh/id_ed25519" in checks["ssh"]["message"]
    assert done.returncode == 1
