"""`efakit launch slurm|eks`: an sbatch script or a Kubeflow MPIJob for `efa-verify run|sweep`.

Nothing is submitted: the output is text a user reads, then submits.  The
instance profile (verify/data/instances.yaml) gives GPUs and EFA devices; the
site conventions (ssh port, labels, memory sizes) come from
verify/data/launch.yaml.  In both, the image's own `efa-verify env` applies
the instance's env rules at start, and `efa-verify run|sweep` writes one log
per rank under its output directory, launching the other nodes' ranks over
ssh into the image's sshd, as SageMaker mode does.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

import yaml

from verify.cliutil import CliError
from verify.hosts import MAX_SLURM_HOSTS
from verify.nodelist import expand_nodelist
from verify.profiles import Profile
from verify.tables import load_table

COMMANDS = ("run", "sweep")
CONTAINERS = ("pyxis", "enroot", "none")
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{2}){0,2}$")  # Slurm: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@#+-]*$")
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


class LaunchError(CliError):
    """Input that cannot make a correct job: one line, exit 2 (the CLI's error handler
    prints it as it prints every CliError)."""


@dataclass(frozen=True)
class Job:
    command: str  # run | sweep
    nodes: int
    profile: Profile
    gpus_per_node: int
    image: str | None
    output_dir: str
    extra_args: tuple[str, ...] = ()


def table() -> dict:
    return load_table("launch")


def make_job(command: str, nodes: int, profile: Profile, gpus_per_node: int | None,
             image: str | None, output_dir: str, extra_args: tuple[str, ...] = ()) -> Job:
    if command not in COMMANDS:
        raise LaunchError(f"--command {command}: one of {', '.join(COMMANDS)}")
    if nodes < 1 or (command == "sweep" and nodes < 2):
        raise LaunchError(f"--nodes {nodes}: a sweep needs at least 2 nodes" if command ==
                          "sweep" else f"--nodes {nodes}: must be at least 1")
    gpus = gpus_per_node or profile.gpu_count
    if gpus < 1 or gpus > profile.gpu_count:
        raise LaunchError(f"--gpus-per-node {gpus}: {profile.name} has {profile.gpu_count} GPUs")
    if image is not None and not IMAGE_RE.match(image):
        raise LaunchError(f"--image {image!r}: not an image reference")
    if not output_dir.startswith("/") or any(c in output_dir for c in "\n'\"$`\\"):
        raise LaunchError(f"--output-dir {output_dir!r}: an absolute path on storage every "
                          "node shares, without quotes or $")
    return Job(command, nodes, profile, gpus, image, output_dir, extra_args)


def verifier_argv(job: Job, hostfile: str | None = None) -> list[str]:
    """The efa-verify command every launcher runs once, on the first node."""
    argv = ["efa-verify", job.command, "--instance-type", job.profile.name,
            "--gpus-per-host", str(job.gpus_per_node)]
    if hostfile:
        argv += ["--hostfile", hostfile]
    return [*argv, *job.extra_args]


def _env_step(job: Job, slurm: bool = False) -> str:
    """The image applies its instance env rules itself (its env record, its versions).

    Under Slurm the batch step has one task per node: SLURM_NTASKS_PER_NODE=1
    must not become the ranks per host (--gpus-per-host sets those).
    """
    step = f'eval "$(efa-verify env --shell --instance-type {job.profile.name})"'
    # Inside an allocation Open MPI would start its daemons with srun (plm) in a
    # step that holds one node, and take its host list from that step (ras: "All
    # nodes which are allocated for this job are already filled", seen here);
    # efa-verify names the hosts itself, and its reaping needs ssh anyway.
    mpi = "export OMPI_MCA_plm=rsh OMPI_MCA_ras=^slurm"
    return f"unset SLURM_NTASKS_PER_NODE; {mpi}; {step}" if slurm else step


def slurm_script(job: Job, container: str, partition: str | None, time_limit: str | None,
                 nodelist: str | None, exclude: str | None, job_name: str) -> str:
    """An sbatch script: sshd on every node, then efa-verify once on the first node."""
    conf = table()
    time_limit = time_limit or conf["slurm"]["time"]
    if container not in CONTAINERS:
        raise LaunchError(f"--container {container}: one of {', '.join(CONTAINERS)}")
    if container != "none" and not job.image:
        raise LaunchError(f"--container {container} needs --image")
    if not TIME_RE.match(time_limit):
        raise LaunchError(f"--time {time_limit!r}: not a Slurm time (MM, HH:MM:SS, D-HH:MM)")
    for flag, value in (("--partition", partition), ("--job-name", job_name)):
        if value is not None and not NAME_RE.match(value):
            raise LaunchError(f"{flag} {value!r}: letters, digits, '_', '.', '-' only")
    for flag, value in (("--nodelist", nodelist), ("--exclude", exclude)):
        if value is None:
            continue
        try:
            names = expand_nodelist(value, MAX_SLURM_HOSTS)
        except ValueError as exc:
            raise LaunchError(f"{flag}: {exc}") from None
        if flag == "--nodelist" and len(names) > job.nodes:
            raise LaunchError(f"--nodelist {value} expands to {len(names)} nodes, more than "
                              f"--nodes {job.nodes}")
    port = conf["ssh"]["container_port"]
    out = job.output_dir
    lines = [
        "#!/bin/bash",
        f"# efakit launch slurm: efa-verify {job.command} on {job.nodes} x {job.profile.name} "
        f"({job.gpus_per_node} GPUs each, {job.profile.efa_devices} EFA devices).",
        "# Nothing is submitted by efakit: read this, then `sbatch` it.",
        f"# Create {job.output_dir} first: Slurm opens --output before the script runs.",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={job.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={job.gpus_per_node}",
        "#SBATCH --exclusive",
        f"#SBATCH --time={time_limit}",
        f"#SBATCH --output={out}/slurm-%j.out",
    ]
    lines += [f"#SBATCH --partition={partition}"] if partition else []
    lines += [f"#SBATCH --nodelist={nodelist}"] if nodelist else []
    lines += [f"#SBATCH --exclude={exclude}"] if exclude else []
    run_dir = f"{out}/efa-verify-{job.command}-$SLURM_JOB_ID"
    verify = " ".join([*map(shlex.quote, verifier_argv(job)), "--output-dir", f'"{run_dir}"'])
    lines += ["set -euo pipefail", f"mkdir -p {out}", ""]
    if container == "none":
        lines += [
            "# Bare metal: the image's binaries (efa-verify, nccl-tests, Open MPI) are installed",
            "# on every node; mpirun reaches the other nodes over the hosts' own ssh.",
            "# Per-rank NCCL logs: " + run_dir + "/**/rank.N.log",
            "srun --nodes=1 --ntasks=1 bash -c "
            + shlex.quote(f"{_env_step(job, True)}; exec {verify}"),
        ]
        return "\n".join(lines) + "\n"
    image = shlex.quote(job.image or "")
    mounts = f"--container-mounts={out}:{out}"
    rsh = f"ssh -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no -o ConnectTimeout=5"
    sshd = f"ssh-keygen -A && exec /usr/sbin/sshd -D -p {port}"
    inner = (f"export OMPI_MCA_plm_rsh_agent={shlex.quote(rsh)}; {_env_step(job, True)}; "
             f"exec {verify}")
    name = conf["slurm"]["container_name"]
    if container == "pyxis":
        lines += [
            "# pyxis: every node runs the image's sshd in a named container; the verifier step",
            "# then runs in the same container on the first node and reaches the others over",
            f"# port {port}.  Per-rank NCCL logs: {run_dir}/**/rank.N.log",
            f"srun --ntasks-per-node=1 --container-image={image} --container-name={name} "
            f"{mounts} --container-remap-root --no-container-mount-home bash -c "
            f"{shlex.quote(sshd)} &",
            "sleep 20  # sshd up on every node",
            f"srun --overlap --nodes=1 --ntasks=1 --container-name={name} {mounts} "
            f"--container-remap-root --no-container-mount-home bash -c {shlex.quote(inner)}",
        ]
    else:
        lines += [
            "# enroot without pyxis: import the image once, create the container on every",
            "# node, start sshd in it, then the verifier on the first node.",
            f"# Per-rank NCCL logs: {run_dir}/**/rank.N.log",
            f"SQSH={out}/{name}.sqsh",
            f"[ -f \"$SQSH\" ] || enroot import --output \"$SQSH\" docker://{image}",
            f"srun --ntasks-per-node=1 enroot create --force --name {name} \"$SQSH\"",
            f"srun --ntasks-per-node=1 enroot start --root --rw --mount {out}:{out} {name} "
            f"bash -c {shlex.quote(sshd)} &",
            "sleep 20  # sshd up on every node",
            f"srun --overlap --nodes=1 --ntasks=1 enroot start --root --rw --mount {out}:{out} "
            f"{name} bash -c {shlex.quote(inner)}",
        ]
    return "\n".join(lines) + "\n"


def mpijob(job: Job, name: str, namespace: str | None, allow_tag: bool) -> dict:
    """A Kubeflow MPIJob (v2beta1): one launcher running efa-verify, N workers with sshd."""
    conf = table()["eks"]
    if not job.image:
        raise LaunchError("launch eks needs --image")
    if not DIGEST_RE.search(job.image) and not allow_tag:
        raise LaunchError(f"--image {job.image}: no digest (@sha256:...); a tag can move "
                          "between pulls on different nodes; pin it, or pass --allow-tag")
    for flag, value in (("--name", name), ("--namespace", namespace)):
        if value is not None and not K8S_NAME_RE.match(value):
            raise LaunchError(f"{flag} {value!r}: lower-case letters, digits and '-' "
                              "(at most 52 characters)")
    if job.profile.efa_devices < 1:
        raise LaunchError(f"{job.profile.name} has no EFA device (instances.yaml)")
    verify = " ".join(shlex.quote(a) for a in verifier_argv(job, conf["hostfile"]))
    launcher_cmd = (f"{_env_step(job)}; exec {verify} --output-dir "
                    f"{shlex.quote(job.output_dir)}")
    limits = {conf["gpu_resource"]: job.gpus_per_node,
              conf["efa_resource"]: job.profile.efa_devices,
              "hugepages-2Mi": conf["hugepages_2Mi"], "memory": conf["memory"]}
    worker = {
        "nodeSelector": {conf["instance_label"]: job.profile.name},
        "containers": [{
            "name": "worker",
            "image": job.image,
            "command": ["bash", "-c", "ssh-keygen -A && exec /usr/sbin/sshd -De"],
            "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
            "resources": {"limits": dict(limits), "requests": dict(limits)},
            "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
        }],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory",
                                                 "sizeLimit": conf["shm_size"]}}],
    }
    launcher = {
        "containers": [{
            "name": "launcher",
            "image": job.image,
            "command": ["bash", "-c", launcher_cmd],
            "resources": {"limits": {"cpu": "2", "memory": "4Gi"},
                          "requests": {"cpu": "1", "memory": "2Gi"}},
        }],
    }
    metadata: dict = {"name": name, "labels": {"app.kubernetes.io/managed-by": "efakit"}}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "kubeflow.org/v2beta1",
        "kind": "MPIJob",
        "metadata": metadata,
        "spec": {
            "slotsPerWorker": job.gpus_per_node,
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
            "mpiImplementation": "OpenMPI",
            "sshAuthMountPath": "/root/.ssh",
            "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "restartPolicy": "Never",
                             "template": {"spec": launcher}},
                "Worker": {"replicas": job.nodes, "restartPolicy": "Never",
                           "template": {"spec": worker}},
            },
        },
    }


def mpijob_yaml(manifest: dict) -> str:
    header = ("# efakit launch eks: a Kubeflow MPIJob (v2beta1). Nothing is applied by efakit:\n"
              "# read this, then `kubectl apply -f` it.  The exclude list a sweep prints names\n"
              "# the workers' pod host names; `kubectl get pods -o wide` maps them to nodes.\n")
    return header + yaml.safe_dump(manifest, sort_keys=False)
