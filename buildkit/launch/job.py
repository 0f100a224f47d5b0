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

from verify.boundary.emit import shell_line
from verify.boundary.values import BadValue, count, matching
from verify.cliutil import CliError
from verify.profiles import Profile
from verify.run.hosts import MAX_SLURM_HOSTS
from verify.tables import load_table

COMMANDS = ("run", "sweep")
CONTAINERS = ("pyxis", "enroot", "none")
# Slurm: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (sbatch's --time forms)
TIME_RE = re.compile(r"(?:([0-9]{1,3})-)?([0-9]{1,5})(?::([0-9]{2}))?(?::([0-9]{2}))?")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@#+-]{0,254}")
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}\Z")
K8S_NAME_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,50}[a-z0-9])?")
# Shared storage every node mounts: absolute, and only characters that survive every
# place it is written (#SBATCH --output, pyxis --container-mounts SRC:DST and enroot
# --mount, which split on ',' and ':'; sbatch's %-patterns; shell words are quoted).
OUTPUT_DIR_RE = re.compile(r"/(?:[A-Za-z0-9_.+@=-]+/?)*")
# A job on more nodes than a Slurm host list may name is a typo (MAX_SLURM_HOSTS).
MAX_NODES = MAX_SLURM_HOSTS
# A week: longer verification jobs are typos (and sbatch's 0 means no limit at all).
MAX_TIME_S = 7 * 24 * 3600


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
    """Every launcher's inputs, checked once: a value that passes fits every file a
    backend writes it into (the backends still quote it)."""
    if command not in COMMANDS:
        raise LaunchError(f"--command {command}: one of {', '.join(COMMANDS)}")
    if command == "sweep" and nodes < 2:
        raise LaunchError(f"--nodes {nodes}: a sweep needs at least 2 nodes")
    try:
        count(nodes, "--nodes", MAX_NODES)
        gpus = profile.gpu_count if gpus_per_node is None else count(
            gpus_per_node, "--gpus-per-node", profile.gpu_count)
    except BadValue as exc:
        hint = f" ({profile.name} has {profile.gpu_count} GPUs)" if "gpus" in str(exc) else ""
        raise LaunchError(f"{exc}{hint}") from None
    if profile.efa_devices is None:
        raise LaunchError(f"{profile.name}: its EFA device count is unknown "
                          f"({dict(profile.unknown)['efa_devices']}), so the job cannot "
                          "request them (instances.yaml)")
    if profile.efa_devices < 1:
        raise LaunchError(f"{profile.name} has no EFA device (instances.yaml)")
    if image is not None and not IMAGE_RE.fullmatch(image):
        raise LaunchError(f"--image {image!r}: not an image reference")
    if not OUTPUT_DIR_RE.fullmatch(output_dir) or "/../" in f"{output_dir}/":
        raise LaunchError(f"--output-dir {output_dir!r}: an absolute path on storage every "
                          "node shares (letters, digits, '_', '.', '+', '@', '=', '-' and '/')")
    reserved = _reserved_top(output_dir)
    if reserved is not None:
        raise LaunchError(f"--output-dir {output_dir!r}: at or under {reserved}, which the job "
                          "would bind-mount over the image's own system tree; use shared "
                          "storage such as /fsx/... (launch.yaml reserved_output_dirs)")
    return Job(command, nodes, profile, gpus, image, output_dir, extra_args)


def _reserved_top(output_dir: str) -> str | None:
    """The reserved system directory that `output_dir` is or lies under (a mount there
    would show the host's /etc in the container, or hide /opt/amazon), else None."""
    parts = [p for p in output_dir.split("/") if p not in ("", ".")]
    top = "/" + parts[0] if parts else "/"
    return top if top in table()["reserved_output_dirs"]["paths"] else None


def name(value: str | None, flag: str, pattern: re.Pattern[str] = NAME_RE,
         rule: str = "letters, digits, '_', '.', '-' only") -> str | None:
    """A name that goes into a generated file (job, partition, MPIJob, namespace)."""
    if value is None:
        return None
    try:
        return matching(pattern, value, flag)
    except BadValue:
        raise LaunchError(f"{flag} {value!r}: {rule}") from None


def time_limit(value: str) -> str:
    """sbatch's --time, more than zero (0 is no limit) and at most MAX_TIME_S."""
    found = TIME_RE.fullmatch(value)
    if not found:
        raise LaunchError(f"--time {value!r}: not a Slurm time (MM, HH:MM:SS, D-HH:MM)")
    days, first, second, third = (int(g) if g else 0 for g in found.groups())
    if found.group(1) is not None:  # D-HH[:MM[:SS]]
        seconds = ((days * 24 + first) * 60 + second) * 60 + third
    elif found.group(4) is not None:  # HH:MM:SS
        seconds = (first * 60 + second) * 60 + third
    else:  # MM or MM:SS
        seconds = first * 60 + second
    if not 0 < seconds <= MAX_TIME_S:
        raise LaunchError(f"--time {value!r}: more than zero (sbatch reads 0 as no limit) "
                          f"and at most {MAX_TIME_S // 86400} days")
    return value


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
    env = shell_line(["efa-verify", "env", "--shell", "--instance-type", job.profile.name])
    step = f'eval "$({env})"'
    # Inside an allocation Open MPI would start its daemons with srun (plm) in a
    # step that holds one node, and take its host list from that step (ras: "All
    # nodes which are allocated for this job are already filled", seen here);
    # efa-verify names the hosts itself, and its reaping needs ssh anyway.
    mpi = "export OMPI_MCA_plm=rsh OMPI_MCA_ras=^slurm"
    return f"unset SLURM_NTASKS_PER_NODE; {mpi}; {step}" if slurm else step
