"""What every launch backend shares: the checked Job, the verifier's argv, the env step.

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
from dataclasses import dataclass

from verify.cliutil import CliError
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


def env_step(job: Job, slurm: bool = False) -> str:
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
